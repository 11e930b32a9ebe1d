"""The metric names a sweep may optimise and an ablation may tabulate (METHOD.md "Evaluation").

Each is a value a trial reports every epoch, in percent unless noted. The names are the ones the
trainables report and MLflow records; a name outside this list would never arrive, so files naming
one are refused before any trial starts.
"""
from __future__ import annotations

METRICS: dict[str, str] = {
    "train_r": "Acc(D_r), accuracy on the retain set",
    "train_f": "Acc(D_f), accuracy on the forget set",
    "test": "Acc(D_test), the whole test set (data-level tasks)",
    "test_r": "accuracy on Test_r, test samples of retained classes (class-level tasks)",
    "test_f": "accuracy on Test_f, test samples of the forgotten class (class-level tasks)",
    "ua": "SalUn UA = 100 - Acc(D_f)",
    "ra": "SalUn RA = Acc(D_r)",
    "ta": "SalUn TA = Acc(D_test)",
    "mia_efficacy": "SalUn MIA-Efficacy: fraction of D_f an SVM calls non-member",
    "asr": "LAF's ASR: membership-inference attacker accuracy on D_f vs unseen test samples",
    "mia_efficacy_std": "sample std of MIA-Efficacy over the attacker's draws (cfg.attack_draws): the judge's own noise",
    "asr_std": "sample std of ASR over the attacker's draws",
    "du_mia_std": "sample std of Deep Unlearn's MIA term over the attacker's draws",
    "avg_gap": "mean |metric - Retrain's| over UA, RA, TA, MIA-Efficacy; lower is better",
    "oracle_nll": "mean NLL of the model's true-class margins under the audit pool's oracle Gaussians (forget, retain, "
                  "test points; needs judge_models >= 3); lower is better",
    "unlearn_seconds": "wall time of the unlearning loop, seconds",
    # Deep Unlearn's objective (mixunlearn/metrics.py du_objective), all minimised, in percentage points
    "du_retain_gap": "Deep Unlearn: |Acc(D_r) - Retrain's| / 3",
    "du_forget_gap": "Deep Unlearn: |Acc(D_f) - Retrain's| / 3",
    "du_test_gap": "Deep Unlearn: |Acc(D_test) - Retrain's| / 3 (its Acc_val)",
    "du_mia": "Deep Unlearn: 100 (1 - indiscernibility) of a 10-fold logistic-regression loss MIA, D_f vs test",
    "du_norm": "Deep Unlearn's best-trial rule: the Euclidean norm of its four terms; lower is better",
    # MixUnlearn's mask diagnostics (mixunlearn/methods/mixunlearn.py MixUnlearn.diagnostics), over the epoch's G mixes
    "mask_forget_share": "mean of G's mask M[:,0], the forget side's share (0.5 = an even blend)",
    "mask_lambda_corr": "correlation of each G mix's mean forget share with its lambda",
    "mask_spatial_std": "mean within-image std of G's mask M[:,0] (0 = a constant blend)",
    "mask_lambda_gap": "mean |mean(M[:,0]) - lambda| of G's mixes (0 = lambda is the real mixing ratio)",
}

MODES = ("min", "max")

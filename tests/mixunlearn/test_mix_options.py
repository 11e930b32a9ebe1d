"""The generator's options in the loop: one lambda per batch, the mask regulariser, the diagnostics."""
import math

import pytest
import torch

from mixunlearn.config import ConfigError, UnlearnConfig
from mixunlearn.run import epochs, prepare
from mixunlearn.methods import MixUnlearn

TINY = UnlearnConfig(dataset="tiny", model="cnn_small", ref_epochs=2, epochs=2, batch_size=16, mia_samples=200)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return prepare(TINY, device="cpu", cache_dir=tmp_path_factory.mktemp("cache"))


def loop_for(prepared, cfg):
    return MixUnlearn(cfg, prepared.data, prepared.split, original=prepared.references.original,
                      device=prepared.device)


def lambdas_seen(loop):
    """Run one epoch, recording the lambda every generator and unlearner step receives."""
    seen = {"generator": [], "unlearner": []}
    gen_step, unlearn_step = loop._generator_step, loop._unlearner_step
    loop._generator_step = lambda f, r, lam, keys: seen["generator"].append(lam.clone()) or gen_step(f, r, lam, keys)
    loop._unlearner_step = lambda f, r, lam, keys: seen["unlearner"].append(lam.clone()) or unlearn_step(f, r, lam, keys)
    loop.train_epoch()
    return seen


def test_batch_draw_gives_every_pair_of_a_mix_one_lambda_and_the_two_mixes_different_ones(tiny):
    seen = lambdas_seen(loop_for(tiny, TINY.replace(gen_interval=1)))
    assert len(seen["generator"]) == len(seen["unlearner"]) >= 3
    for lam_g, lam_u in zip(seen["generator"], seen["unlearner"]):
        assert len(lam_g) > 1 and torch.all(lam_g == lam_g[0]) and torch.all(lam_u == lam_u[0])
        assert lam_g[0] != lam_u[0]
    assert len({float(lam[0]) for lam in seen["unlearner"]}) == len(seen["unlearner"])   # fresh every step


def test_pair_draw_gives_each_pair_its_own_lambda(tiny):
    seen = lambdas_seen(loop_for(tiny, TINY.replace(gen_interval=1, lambda_draw="pair")))
    for lam in seen["generator"] + seen["unlearner"]:
        assert len(set(lam.tolist())) == len(lam)


def test_batch_is_the_default_and_unknown_forms_are_refused():
    assert UnlearnConfig().lambda_draw == "batch" and UnlearnConfig().mask_lambda_weight == 0.0
    for field, value in (("lambda_draw", "step"), ("mixblock_form", "three_way"), ("mixblock_act", "gelu"),
                         ("mask_lambda_weight", -1.0)):
        with pytest.raises(ConfigError, match=field):
            UnlearnConfig(**{field: value})


def lambda_spread(loop):
    """G's mean forget share at lambda = 0.9 minus at lambda = 0.1 on 16 fixed pairs: 0 for a mask that
    ignores lambda, 0.8 when the mask's mean is lambda."""
    h_f, h_r = loop.forget_features[:16], loop.retain_features[:16]
    with torch.no_grad():
        share = [loop.generator(h_f, h_r, torch.full((16,), lam), 28)[:, 0].mean().item() for lam in (0.1, 0.9)]
    return share[1] - share[0]


# Measured on 2 cores (tiny set, 16 G steps per epoch at lr_generator 1e-2; a spread of 0.8 would be a
# perfect pull): two_way after 32 steps 0.109 with weight 1 vs -0.020 without; one_way (OpenMixup form)
# after 64 steps 0.055 vs -0.001. The thresholds leave about a third of the measured effect as margin.
@pytest.mark.parametrize("form, act, epochs, at_least", [("two_way", "relu", 2, 0.07), ("one_way", "none", 4, 0.035)])
def test_mask_regulariser_pulls_gs_mask_mean_towards_lambda(tiny, form, act, epochs, at_least):
    cfg = TINY.replace(epochs=epochs, gen_interval=1, gen_steps=4, lr_generator=1e-2, mixblock_form=form,
                       mixblock_act=act)
    spreads = {}
    for weight in (0.0, 1.0):
        loop = loop_for(tiny, cfg.replace(mask_lambda_weight=weight))
        assert abs(lambda_spread(loop)) < 0.01   # at initialisation the mask ignores lambda
        while loop.epoch < epochs:
            loop.train_epoch()
        spreads[weight] = lambda_spread(loop)
    assert spreads[1.0] >= at_least, spreads
    assert spreads[0.0] < at_least / 2, spreads   # L_gen alone does not make lambda the mix's ratio


def test_each_epoch_reports_the_mask_diagnostics_and_the_mean_losses(tiny):
    cfg = TINY.replace(epochs=2, gen_interval=1)
    reported = list(epochs(tiny, loop_for(tiny, cfg)))
    for metrics in reported:
        assert 0.45 < metrics["mask_forget_share"] < 0.55          # G has hardly moved in a few steps
        assert 0.0 <= metrics["mask_spatial_std"] < 0.01
        assert -1.0 <= metrics["mask_lambda_corr"] <= 1.0
        assert 0.0 <= metrics["mask_lambda_gap"] <= 0.5
        for loss in ("gen_loss", "mix_loss", "real_loss", "unlearn_loss"):
            assert math.isfinite(metrics[loss]), loss
        # Eq. 7: the total is L_mix + omega L_real step by step, hence also in the epoch's mean.
        assert metrics["unlearn_loss"] == pytest.approx(metrics["mix_loss"] + cfg.omega * metrics["real_loss"],
                                                        rel=1e-5)


def test_without_a_generator_there_are_no_mask_diagnostics_but_the_losses_remain(tiny):
    metrics = next(epochs(tiny, loop_for(tiny, TINY.replace(use_mixblock=False))))
    assert not any(key.startswith("mask_") for key in metrics) and "gen_loss" not in metrics
    assert math.isfinite(metrics["mix_loss"]) and math.isfinite(metrics["real_loss"])


def test_mix_samples_hold_eight_pairs_of_each_kind_whose_mix_is_the_masked_blend(tiny):
    loop = loop_for(tiny, TINY.replace(epochs=1))
    loop.train_epoch()
    samples = loop.mix_samples()
    assert set(samples) == {"generator", "unlearner"}
    for parts in samples.values():
        assert parts["forget"].shape == parts["mix"].shape == (8, 1, 28, 28)
        share = parts["forget_share"][:, None]
        torch.testing.assert_close(parts["mix"], parts["forget"] * share + parts["retain"] * (1 - share))

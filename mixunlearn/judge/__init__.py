"""The judge: an unlearned model against many oracles (../shared/docs/EVALUATION.md).

Plain numpy statistics, checkable on constructed cases:
- `margins`: the true-class margin phi = z_y - logsumexp_{j != y} z_j, the one statistic every metric reads;
- `klom`: KLOM, the KL divergence of margins per point, with its split-half noise floor;
- `ulira`: U-LiRA in oracle mode, per forget example, and the ROC readings it reports;
- `intervals`: bootstrap intervals and when two of them separate.
And what trains and scores the models they read (torch, no Ray or MLflow):
- `pool`: N originals and N oracles as entries of the reference store, their margins beside each;
- `audit`: the pool, each method's unlearned models and the figures, in one process or farmed out;
- `objective`: a sweep trial's margins against the pool's oracles (`oracle_nll`).
"""

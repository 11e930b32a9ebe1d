"""Is a sweep objective a property of the config, or a coin toss? Kendall's tau between two seeds' orderings.

    python benchmarks/objective_stability.py                     # 8 NegGrad+ configs x seeds 0, 1, N = 16
    python benchmarks/objective_stability.py --cache /tmp/judge  # a cache whose store holds the pool already

The same 8 trial configs (drawn once, numpy seed 0, from NegGrad+'s quick ranges: lr log-uniform in
[1e-4, 1e-1], alpha in [0.5, 1], epochs 1-5) run under run seeds 0 and 1 on the judge's setting where f_D
memorises its forget set (Fashion-MNIST, 20 images per class, random 10%, cnn_small, 10 reference epochs
of Adam at 1e-3). Each final model is scored by:
- avg_gap: as the sweep reports it now (attackers drawn from eval_seed 0, 5 draws averaged);
- avg_gap_run_seeded: as before issue 18 (one attacker draw seeded by the run's seed);
- oracle_nll: the margins under the N = 16 oracles' Gaussians (mixunlearn/judge/objective.py).
For each objective: Kendall's tau (scipy.stats.kendalltau, tau-b) of the seed-0 and seed-1 values over the
8 configs; 1 = the two seeds order the configs alike. One run, in process, CPU; the JSON in
benchmarks/results/objective_stability.json names hardware, versions and the commit measured.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau

from code_version import code_measured
from mixsweep.evidence import cpu_model, versions
from mixunlearn.config import UnlearnConfig
from mixunlearn.methods import build_method
from mixunlearn.run import prepare

RESULTS = Path(__file__).resolve().parent / "results"
BASE = {"dataset": "fashion_mnist", "train_subset": 20, "test_subset": 50, "task": "random", "model": "cnn_small",
        "ref_epochs": 10, "ref_lr": 1e-3, "mia_samples": 100, "method": "neggrad_plus", "batch_size": 64}


def configs(count: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"lr": float(10 ** rng.uniform(-4, -1)), "alpha": float(rng.uniform(0.5, 1.0)),
             "epochs": int(rng.integers(1, 6))} for _ in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default="/tmp/mixsweep-objective-stability")
    parser.add_argument("--models", type=int, default=16)
    parser.add_argument("--configs", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    drawn = configs(args.configs)
    values: dict[str, dict[int, list[float]]] = {k: {0: [], 1: []} for k in ("avg_gap", "avg_gap_run_seeded",
                                                                           "oracle_nll")}
    started = time.perf_counter()
    base = UnlearnConfig.from_dict({**BASE, "judge_models": args.models})
    prepared = prepare(base, device="cpu", cache_dir=args.cache)   # trains the pool's missing oracles once
    pool_seconds = time.perf_counter() - started
    rows = []
    for index, fields in enumerate(drawn):
        for seed in (0, 1):
            cfg = base.replace(**fields, seed=seed)
            prepared.cfg = cfg
            loop = build_method(cfg, prepared.data, prepared.split, original=prepared.references.original,
                                device="cpu")
            while loop.epoch < loop.epochs:
                loop.train_epoch()
            outputs = prepared.outputs(loop.model)
            accuracies = prepared.accuracies(outputs)
            now = prepared.attack(outputs, accuracies)
            prepared.cfg = cfg.replace(eval_seed=seed, attack_draws=1)   # the attacker of the run's seed
            before = prepared.attack(outputs, accuracies)
            values["avg_gap"][seed].append(now["avg_gap"])
            values["avg_gap_run_seeded"][seed].append(before["avg_gap"])
            values["oracle_nll"][seed].append(now["oracle_nll"])
            rows.append({"config": index, "seed": seed, **fields, "avg_gap": now["avg_gap"],
                         "avg_gap_run_seeded": before["avg_gap"], "oracle_nll": now["oracle_nll"],
                         "mia_efficacy": now["mia_efficacy"], "ua": now["ua"]})
            print(f"config {index} seed {seed}: avg_gap {now['avg_gap']:.2f}  run-seeded {before['avg_gap']:.2f}  "
                  f"oracle_nll {now['oracle_nll']:.3f}", flush=True)
    taus = {}
    for name, by_seed in values.items():
        result = kendalltau(by_seed[0], by_seed[1])
        taus[name] = {"tau": float(result.statistic), "p_value": float(result.pvalue)}
        print(f"{name:<20} Kendall tau {result.statistic:+.3f} (p = {result.pvalue:.3f})")
    record = {"benchmark": "objective_stability", "code": code_measured(), "cpu": cpu_model(), "versions": versions(),
              "torch_threads": 1, "runs": 1, "configs": drawn, "base": BASE, "models": args.models, "taus": taus,
              "rows": rows, "pool_seconds": round(pool_seconds, 1),
              "total_seconds": round(time.perf_counter() - started, 1)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "objective_stability.json").write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()

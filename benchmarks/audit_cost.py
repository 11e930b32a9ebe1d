"""What one audit costs on the CPU track, and what Ray buys for its pool trainings.

    python benchmarks/audit_cost.py                  # N = 16, GA, the judge's Fashion-MNIST setting, 2 CPUs
    python benchmarks/audit_cost.py --models 8 --ratio-models 4

(a) One `mixsweep audit` (mixsweep/audit.py `audit`, in process, on a fresh local Ray of --cpus CPUs, one CPU
    per task, a fresh reference store): the judge's setting where f_D memorises (Fashion-MNIST, 20 images
    per class, random 10%, cnn_small, 10 reference epochs of Adam at 1e-3), method GA, N originals, N oracles,
    N held-out oracles and N unlearned models. Split into pool training (the 3N reference models), the N
    unlearning runs, and scoring; both as the sum of the tasks' own seconds and as wall time.
(b) Throughput of pool trainings: the same --ratio-models Retrain seeds (not in the store) trained (i) one
    after the other in this process and (ii) as Ray tasks on the same local Ray, each into a fresh store,
    after one untimed task per worker (this process is warm too: torch imported, data decoded); the ratio
    is models/s through Ray over models/s in one process. One run each, same machine.
The JSON in benchmarks/results/audit_cost-cpu.json names hardware, versions, load and the commit measured.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import ray
import torch

from code_version import code_measured
from mixsweep.audit import Target, audit
from mixsweep.evidence import cpu_model, versions
from mixunlearn.config import UnlearnConfig
from mixunlearn.data import load_data
from mixunlearn.judge.pool import RETRAIN, Job, Pool
from mixunlearn.reference_store import ReferenceStore
from mixunlearn.run import deterministic_kernels
from mixunlearn.tasks import make_split
from trainables.pool_jobs import PoolSettings, pool_job

RESULTS = Path(__file__).resolve().parent / "results"
BASE = {"dataset": "fashion_mnist", "train_subset": 20, "test_subset": 50, "task": "random", "model": "cnn_small",
        "ref_epochs": 10, "ref_lr": 1e-3, "mia_samples": 100, "method": "ga"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=16)
    parser.add_argument("--ratio-models", type=int, default=8)
    parser.add_argument("--cpus", type=int, default=2)
    args = parser.parse_args()
    os.environ["RAY_AUTH_MODE"] = "disabled"
    root = Path(tempfile.mkdtemp(prefix="audit-cost-"))
    os.environ["MIXSWEEP_CACHE"] = str(root / "cache-a")   # Ray's workers inherit it
    cfg = UnlearnConfig.from_dict(BASE)
    load_before = os.getloadavg()
    ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level="WARNING",
             _temp_dir=tempfile.mkdtemp(prefix="r", dir="/tmp"))
    try:
        started = time.perf_counter()
        result = audit(Target(cfg, "ga", f"sqlite:///{root / 'mlflow.db'}", None, None), models=args.models,
                       folder=root / "audit")
        audit_wall = time.perf_counter() - started

        # (b) the same trainings in one process, then as Ray tasks, each into a fresh store.
        torch.set_num_threads(1)
        deterministic_kernels()
        jobs = [Job(RETRAIN, 1000 + i) for i in range(args.ratio_models)]
        data = load_data(cfg)
        pool = Pool(cfg, data, make_split(cfg, data), ReferenceStore(root / "cache-b" / "references"),
                    models=args.models)
        started = time.perf_counter()
        for job in jobs:
            pool.run(job, device="cpu")
        in_process = time.perf_counter() - started
        settings = PoolSettings(config=cfg.to_dict(), models=args.models, cache_dir=str(root / "cache-c"),
                                references=None, cpus=1, gpus=0)
        # Warm the workers as this process is warm (torch imported, data decoded): one untimed task each.
        ray.get([pool_job.options(num_cpus=1).remote(settings, Job(RETRAIN, 2000 + i)) for i in range(args.cpus)])
        started = time.perf_counter()
        ray.get([pool_job.options(num_cpus=1).remote(settings, job) for job in jobs])
        through_ray = time.perf_counter() - started
    finally:
        ray.shutdown()
    record = {
        "benchmark": "audit_cost", "code": code_measured(), "cpu": cpu_model(), "cpus": args.cpus,
        "versions": versions(), "runs": 1, "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "config": BASE, "models": args.models,
        "audit": {"wall_s": round(audit_wall, 1), "counts": result.counts,
                  "pool_training_task_s": round(result.seconds["pool_training"], 1),
                  "unlearning_runs_task_s": round(result.seconds["unlearning_runs"], 1),
                  "farming_wall_s": round(result.seconds["farming_wall"], 1),
                  "scoring_s": round(result.seconds["scoring"], 1)},
        "throughput": {"models": args.ratio_models, "in_process_s": round(in_process, 1),
                       "ray_s": round(through_ray, 1), "ray_tasks_at_once": args.cpus,
                       "ratio_ray_over_in_process": round(in_process / through_ray, 2)},
    }
    print(json.dumps(record, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "audit_cost-cpu.json").write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()

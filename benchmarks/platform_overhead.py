"""What the platform costs: the same N trials (a) in-process back to back, (b) through `mixsweep run`.

    python benchmarks/platform_overhead.py                      # N = 4 trials of the quick preset, CPU
    python benchmarks/platform_overhead.py --trials 8 --epochs 5 --gpu-packing   # on a GPU machine

(b) is `mixsweep run` as a user runs it (a fresh process: imports, a local Ray, the Optuna study, MLflow
records, a checkpoint every epoch, the model artifacts), one trial at a time with --cpus-per-trial CPUs.
(a) then runs the very configs (b)'s trials ran, with mixunlearn.run() in this process, with no Ray
and no MLflow, one after the other at the same torch thread count. ASHA is kept from stopping any trial
(grace period = epochs), so both do the same work. The reference models and the decoded data are put
in the cache first, untimed, and the SQLite MLflow store is created first: both are one-off costs.

Reported: wall(b) / wall(a); the fixed seconds per trial the platform adds, (wall(b) - wall(a)) / N;
and its two parts: start-up (wall(b) minus the trials' own time in Tune) and the in-trial overhead per
trial (Tune's time of a trial minus (a)'s time of the same config). On a GPU, --gpu-packing also runs
(b) at 1, 2 and 4 trials per GPU (--gpus-per-trial 1, 0.5, 0.25, concurrency 1, 2, 4).
Everything is printed and written to benchmarks/results/platform_overhead-<device>.json with the
hardware, the versions and the number of runs behind each figure.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from mixsweep import tracking
from mixsweep.evidence import cpu_model, versions
from mixunlearn.config import UnlearnConfig
from mixunlearn.run import prepare, run
from search_spaces import load_space, preset_path

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4, help="N: trials in each of (a) and (b)")
    parser.add_argument("--epochs", type=int, default=3, help="unlearning epochs per trial (quick preset: 5)")
    parser.add_argument("--cpus-per-trial", type=int, default=1, help="CPUs of (b)'s trials = torch threads of both")
    parser.add_argument("--gpu-packing", action="store_true", help="also time 1, 2 and 4 trials per GPU")
    return parser.parse_args()


def sweep_space(folder: Path, epochs: int) -> Path:
    """The quick preset with its searched ranges, every trial running all `epochs` (no early stop)."""
    preset = yaml.safe_load(preset_path("quick").read_text())
    base = {**load_space(preset_path("quick")).base, "epochs": epochs}
    document = {"base": base, "search": preset["search"], "sweep": {"grace_epochs": epochs}, "seed_defaults": True}
    path = folder / "bench.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def mixsweep_run(space: Path, folder: Path, name: str, *, trials: int, concurrency: int, cpus: int, gpus: float,
                 uri: str, env: dict[str, str]) -> tuple[float, list[dict]]:
    """Time one `mixsweep run` in a fresh process; return its wall seconds and its trials (config, time)."""
    command = [sys.executable, "-m", "mixsweep", "run", str(space), "--trials", str(trials), "--concurrency",
               str(concurrency), "--cpus-per-trial", str(cpus), "--gpus-per-trial", str(gpus), "--storage",
               str(folder / "sweeps"), "--tracking-uri", uri, "--name", name]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"mixsweep run failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    from ray import tune   # after the subprocess: this process never starts Ray

    trials_run = [{"config": t.config, "seconds": float(t.last_result["time_total_s"]),
                   "avg_gap": float(t.last_result["avg_gap"])}
                  for t in tune.ExperimentAnalysis(str(folder / "sweeps" / name)).trials]
    return wall, trials_run


def main() -> None:
    args = parse_args()
    cuda = torch.cuda.is_available()
    folder = Path(tempfile.mkdtemp(prefix="mixsweep-bench-"))
    cache = folder / "cache"
    env = {**os.environ, "MIXSWEEP_CACHE": str(cache), "RAY_AUTH_MODE": "disabled",
           "RAY_TMPDIR": tempfile.mkdtemp(prefix="mxb", dir="/tmp")}
    os.environ["MIXSWEEP_CACHE"] = str(cache)
    space = sweep_space(folder, args.epochs)
    uri = f"sqlite:///{folder / 'mlflow.db'}"

    # ---- one-off costs, untimed: data decoded, f_D and Retrain trained into the cache, the MLflow store --------
    prepare(UnlearnConfig.from_dict(load_space(space).base), device="cuda" if cuda else "cpu")
    tracking.ready_experiment(uri)

    # ---- (b) the platform, then (a) the same configs in-process ---------------------------------------------------
    wall_b, trials_b = mixsweep_run(space, folder, "overhead", trials=args.trials, concurrency=1,
                                    cpus=args.cpus_per_trial, gpus=1.0 if cuda else 0.0, uri=uri, env=env)
    torch.set_num_threads(args.cpus_per_trial)
    seconds_a, identical = [], True
    for trial in trials_b:
        start = time.perf_counter()
        result = run(UnlearnConfig.from_dict(trial["config"]))
        seconds_a.append(time.perf_counter() - start)
        # Same config, seed and threads: on the CPU the platform must not change a single number.
        identical &= result.rows["MixUnlearn"]["avg_gap"] == trial["avg_gap"]
    wall_a = sum(seconds_a)
    n = len(trials_b)
    figures = {
        "wall_a_s": round(wall_a, 2), "wall_b_s": round(wall_b, 2), "ratio_b_over_a": round(wall_b / wall_a, 3),
        "fixed_s_per_trial": round((wall_b - wall_a) / n, 2),
        "startup_s": round(wall_b - sum(t["seconds"] for t in trials_b), 2),
        "in_trial_overhead_s_per_trial": round(sum(t["seconds"] - a for t, a in zip(trials_b, seconds_a)) / n, 2),
        "identical_avg_gap": identical,
        "trial_s_a": [round(s, 2) for s in seconds_a], "trial_s_b": [round(t["seconds"], 2) for t in trials_b],
    }

    packing = []
    if args.gpu_packing and cuda:
        for per_gpu in (1, 2, 4):
            wall, _ = mixsweep_run(space, folder, f"pack{per_gpu}", trials=max(args.trials, 4), concurrency=per_gpu,
                                   cpus=args.cpus_per_trial, gpus=1.0 / per_gpu, uri=uri, env=env)
            packing.append({"trials_per_gpu": per_gpu, "gpus_per_trial": 1.0 / per_gpu, "wall_s": round(wall, 2),
                            "trials_per_min": round(60 * max(args.trials, 4) / wall, 2)})

    record = {
        "benchmark": "platform_overhead",
        "hardware": {"cpu": cpu_model(), "cores": os.cpu_count(),
                     "gpu": torch.cuda.get_device_name(0) if cuda else None},
        "versions": versions(),
        "runs": 1,   # each figure comes from one run of (a) and one of (b): a ratio measured side by side
        "trials": n, "epochs": args.epochs, "cpus_per_trial": args.cpus_per_trial,
        "device": "cuda" if cuda else "cpu", "preset": "quick",
        "load_average_1min": round(os.getloadavg()[0], 2),
        **figures, "gpu_packing": packing,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"platform_overhead-{record['device']}.json"
    out.write_text(json.dumps(record, indent=2) + "\n")

    print(f"platform overhead | {n} trials of the quick preset, {args.epochs} epochs, {args.cpus_per_trial} thread(s) "
          f"| {record['hardware']['cpu']}, {record['hardware']['cores']} cores, GPU {record['hardware']['gpu']} "
          f"| {', '.join(f'{k} {v}' for k, v in record['versions'].items())} | 1 run, load avg {record['load_average_1min']}")
    print(f"(a) in-process, no Ray/MLflow : {wall_a:8.1f} s   per trial {figures['trial_s_a']}")
    print(f"(b) mixsweep run              : {wall_b:8.1f} s   per trial in Tune {figures['trial_s_b']}")
    print(f"wall(b) / wall(a)             : {figures['ratio_b_over_a']:8.2f}   (same avg_gap in (a) and (b): {identical})")
    print(f"fixed seconds per trial added : {figures['fixed_s_per_trial']:8.1f} s  = start-up {figures['startup_s']:.1f} s / N "
          f"+ in-trial {figures['in_trial_overhead_s_per_trial']:.1f} s")
    for row in packing:
        print(f"{row['trials_per_gpu']} trial(s) per GPU: {row['wall_s']:.1f} s, {row['trials_per_min']:.2f} trials/min")
    print(f"written: {out}")


if __name__ == "__main__":
    main()

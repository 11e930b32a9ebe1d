"""What the platform costs: the same N trials (a) in-process back to back, (b) through `mixsweep run`.

    python benchmarks/platform_overhead.py                      # N = 4 trials of the quick preset, 5 epochs, CPU
    python benchmarks/platform_overhead.py --runs 3             # the median of 3 (a)/(b) pairs
    python benchmarks/platform_overhead.py --trials 8 --gpu-packing   # on a GPU machine
    cd OLD_CHECKOUT && PYTHONPATH=$PWD python NEW_CHECKOUT/benchmarks/platform_overhead.py --label before

(b) is `mixsweep run` as a user runs it (a fresh process: imports, a local Ray, the Optuna study, MLflow
records, a checkpoint every epoch, the model artifacts), one trial at a time with --cpus-per-trial CPUs.
(a) then runs the very configs (b)'s trials ran, in this process, with no Ray and no MLflow, one after
the other at the same torch thread count, evaluating as (b)'s trials evaluated (the sweep's
attack_epochs and curve budget; mixunlearn.run() where the code predates them). ASHA is kept from stopping any trial
(grace period = epochs), so both do the same work. The reference models and the decoded data are put
in the cache first, untimed, and the SQLite MLflow store is created first: both are one-off costs.

Reported: wall(b) / wall(a); the fixed seconds per trial the platform adds, (wall(b) - wall(a)) / N;
and its two parts: start-up (wall(b) minus the trials' own time in Tune) and the in-trial overhead per
trial (Tune's time of a trial minus (a)'s time of the same config), also as a share of a 60-second trial.
Start-up, process start to the first trial running (its MLflow run opened), is broken down by phase:
imports, Ray start, Optuna study and MLflow store are each timed alone in a fresh process as `mixsweep
run` does them; "first trial" is the rest (Tune, the trial's actor and its imports, until the trial's
first line). On a GPU, --gpu-packing also runs (b) at 1, 2 and 4 trials per GPU (--gpus-per-trial 1,
0.5, 0.25, concurrency 1, 2, 4). With --runs R each figure is the median of R runs.
Everything is printed and written to benchmarks/results/platform_overhead-<device>[-<label>].json with the
hardware, the versions and the number of runs behind each figure.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from code_version import code_measured
from mixsweep import tracking
from mixsweep.evidence import cpu_model, versions
from mixunlearn.config import UnlearnConfig
from mixunlearn.run import prepare, run
from search_spaces import load_space, preset_path

try:
    from mixunlearn.run import evaluated_epochs
except ImportError:   # the code before the evaluation schedule: run() evaluates everything every epoch
    evaluated_epochs = None

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4, help="N: trials in each of (a) and (b)")
    parser.add_argument("--epochs", type=int, default=5, help="unlearning epochs per trial (the quick preset's 5)")
    parser.add_argument("--runs", type=int, default=1, help="(a)/(b) pairs; figures are their medians")
    parser.add_argument("--label", default="", help="appended to the result file's name, e.g. before")
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
                 uri: str, env: dict[str, str]) -> tuple[float, float, list[dict], list[int] | None]:
    """Time one `mixsweep run` in a fresh process. Returns its wall seconds, the seconds from its start to the
    first trial's first line (its MLflow run's start), its trials (config, Tune time) and how they evaluated
    (the sweep state's attack_epochs and curve_budget, None where the code has none)."""
    command = [sys.executable, "-m", "mixsweep", "run", str(space), "--trials", str(trials), "--concurrency",
               str(concurrency), "--cpus-per-trial", str(cpus), "--gpus-per-trial", str(gpus), "--storage",
               str(folder / "sweeps"), "--tracking-uri", uri, "--name", name]
    launched = time.time()
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"mixsweep run failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    from mlflow.tracking import MlflowClient
    from ray import tune   # after the subprocess: this process never starts Ray

    state = json.loads((folder / "sweeps" / name / "mixsweep.json").read_text())
    children = MlflowClient(uri).search_runs(
        [state["experiment_id"]], filter_string=f"tags.`mlflow.parentRunId` = '{state['parent_run_id']}'")
    to_first_trial = min(c.info.start_time for c in children) / 1000 - launched
    trials_run = [{"config": t.config, "seconds": float(t.last_result["time_total_s"]),
                   "avg_gap": float(t.last_result["avg_gap"])}
                  for t in tune.ExperimentAnalysis(str(folder / "sweeps" / name)).trials]
    return wall, to_first_trial, trials_run, {"attack_epochs": state.get("attack_epochs"),
                                              "curve_budget": state.get("curve_budget")}


def in_fresh_process(code: str, env: dict[str, str]) -> float:
    """Seconds a snippet reports for itself (it prints them last), run in a fresh interpreter."""
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"phase timing failed:\n{code}\n{done.stderr[-3000:]}")
    return float(done.stdout.strip().splitlines()[-1])


def startup_phases(folder: Path, uri: str, env: dict[str, str]) -> dict[str, float]:
    """Each start-up phase of `mixsweep run`, alone in a fresh process, in the order the command runs them."""
    timer = "import time\nt = time.perf_counter()\n"
    done = "\nprint(time.perf_counter() - t)"
    study = folder / f"phase-{time.time_ns()}.db"
    return {
        "imports_s": in_fresh_process(timer + "import mixsweep.cli, mixsweep.sweep" + done, env),
        "ray_start_s": in_fresh_process(
            "import ray, time\nt = time.perf_counter()\nray.init(address='local', include_dashboard=False, "
            "logging_level='WARNING')\nprint(time.perf_counter() - t, flush=True)\nray.shutdown()", env),
        "mlflow_store_s": in_fresh_process(
            f"from mixsweep import tracking\n{timer}tracking.ready_experiment({uri!r}){done}", env),
        "optuna_study_s": in_fresh_process(
            f"import optuna\n{timer}optuna.create_study(study_name='s', storage=optuna.storages.RDBStorage("
            f"'sqlite:///{study}')){done}", env),
    }


def trial_in_process(config: dict, schedule: dict) -> tuple[float, float]:
    """(a): one trial's work with no Ray and no MLflow, evaluated where (b)'s trial evaluated; (seconds, avg_gap)."""
    start = time.perf_counter()
    cfg = UnlearnConfig.from_dict(config)
    if evaluated_epochs is None:
        avg_gap = run(cfg).rows["MixUnlearn"]["avg_gap"]
    else:
        prepared = prepare(cfg)
        options = {k: v for k, v in schedule.items() if v is not None}
        avg_gap = [e.metrics for e in evaluated_epochs(prepared, **options)][-1]["avg_gap"]
    return time.perf_counter() - start, avg_gap


def one_run(space: Path, folder: Path, index: int, args: argparse.Namespace, uri: str, env: dict[str, str],
            cuda: bool) -> dict:
    wall_b, to_first_trial, trials_b, schedule = mixsweep_run(
        space, folder, f"overhead{index}", trials=args.trials, concurrency=1, cpus=args.cpus_per_trial,
        gpus=1.0 if cuda else 0.0, uri=uri, env=env)
    phases = startup_phases(folder, uri, env)
    phases["first_trial_s"] = to_first_trial - sum(phases.values())
    seconds_a, identical = [], True
    for trial in trials_b:
        seconds, avg_gap = trial_in_process(trial["config"], schedule)
        seconds_a.append(seconds)
        # Same config, seed and threads: on the CPU the platform must not change a single number.
        identical &= avg_gap == trial["avg_gap"]
    wall_a = sum(seconds_a)
    n = len(trials_b)
    in_trial = sum(t["seconds"] - a for t, a in zip(trials_b, seconds_a)) / n
    return {
        "wall_a_s": round(wall_a, 2), "wall_b_s": round(wall_b, 2), "ratio_b_over_a": round(wall_b / wall_a, 3),
        "fixed_s_per_trial": round((wall_b - wall_a) / n, 2),
        "startup_s": round(wall_b - sum(t["seconds"] for t in trials_b), 2),
        "startup_to_first_trial_s": round(to_first_trial, 2),
        "startup_phases_s": {k: round(v, 2) for k, v in phases.items()},
        "in_trial_overhead_s_per_trial": round(in_trial, 2),
        "in_trial_overhead_share_of_60s_trial": round(in_trial / 60, 4),
        "identical_avg_gap": identical, **schedule,
        "trial_s_a": [round(s, 2) for s in seconds_a], "trial_s_b": [round(t["seconds"], 2) for t in trials_b],
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


def median_of(runs: list[dict]) -> dict:
    """Each figure's median over the runs (the phases one by one); the per-run records stay beside it."""
    keys = ("wall_a_s", "wall_b_s", "ratio_b_over_a", "fixed_s_per_trial", "startup_s", "startup_to_first_trial_s",
            "in_trial_overhead_s_per_trial", "in_trial_overhead_share_of_60s_trial")
    figures = {k: round(statistics.median(r[k] for r in runs), 4) for k in keys}
    figures["startup_phases_s"] = {k: round(statistics.median(r["startup_phases_s"][k] for r in runs), 2)
                                   for k in runs[0]["startup_phases_s"]}
    figures["identical_avg_gap"] = all(r["identical_avg_gap"] for r in runs)
    return figures


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
    torch.set_num_threads(args.cpus_per_trial)

    # ---- (b) the platform, then (a) the same configs in-process, --runs times ---------------------------------------
    load_before = [round(x, 2) for x in os.getloadavg()]
    runs = [one_run(space, folder, i, args, uri, env, cuda) for i in range(args.runs)]
    figures = median_of(runs)

    packing = []
    if args.gpu_packing and cuda:
        for per_gpu in (1, 2, 4):
            wall, _, _, _ = mixsweep_run(space, folder, f"pack{per_gpu}", trials=max(args.trials, 4),
                                         concurrency=per_gpu, cpus=args.cpus_per_trial, gpus=1.0 / per_gpu,
                                         uri=uri, env=env)
            packing.append({"trials_per_gpu": per_gpu, "gpus_per_trial": 1.0 / per_gpu, "wall_s": round(wall, 2),
                            "trials_per_min": round(60 * max(args.trials, 4) / wall, 2)})

    record = {
        "benchmark": "platform_overhead",
        "hardware": {"cpu": cpu_model(), "cores": os.cpu_count(),
                     "gpu": torch.cuda.get_device_name(0) if cuda else None},
        "versions": versions(),
        "runs": args.runs,   # each figure: the median over this many (a)/(b) pairs, measured side by side
        "trials": args.trials, "epochs": args.epochs, "cpus_per_trial": args.cpus_per_trial,
        "device": "cuda" if cuda else "cpu", "preset": "quick", "code": code_measured(),
        "load_average_1_5_15_before": load_before,
        "load_average_1_5_15_after": [round(x, 2) for x in os.getloadavg()],
        **figures, "per_run": runs, "gpu_packing": packing,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"platform_overhead-{record['device']}{'-' + args.label if args.label else ''}.json"
    out.write_text(json.dumps(record, indent=2) + "\n")

    n = args.trials
    print(f"platform overhead | {n} trials of the quick preset, {args.epochs} epochs, {args.cpus_per_trial} thread(s) "
          f"| {record['hardware']['cpu']}, {record['hardware']['cores']} cores, GPU {record['hardware']['gpu']} "
          f"| {', '.join(f'{k} {v}' for k, v in record['versions'].items())} | median of {args.runs} run(s), load "
          f"avg {record['load_average_1_5_15_before']} -> {record['load_average_1_5_15_after']}")
    print(f"(a) in-process, no Ray/MLflow : {figures['wall_a_s']:8.1f} s   per trial {runs[-1]['trial_s_a']} (last run)")
    print(f"(b) mixsweep run              : {figures['wall_b_s']:8.1f} s   per trial in Tune {runs[-1]['trial_s_b']}")
    print(f"wall(b) / wall(a)             : {figures['ratio_b_over_a']:8.2f}   (same avg_gap in (a) and (b): "
          f"{figures['identical_avg_gap']})")
    print(f"fixed seconds per trial added : {figures['fixed_s_per_trial']:8.1f} s  = start-up {figures['startup_s']:.1f} s "
          f"/ N + in-trial {figures['in_trial_overhead_s_per_trial']:.2f} s "
          f"({100 * figures['in_trial_overhead_share_of_60s_trial']:.1f}% of a 60 s trial)")
    print(f"start-up to the first trial   : {figures['startup_to_first_trial_s']:8.1f} s  = "
          + " + ".join(f"{k.removesuffix('_s').replace('_', ' ')} {v:.1f}" for k, v in figures["startup_phases_s"].items()))
    for row in packing:
        print(f"{row['trials_per_gpu']} trial(s) per GPU: {row['wall_s']:.1f} s, {row['trials_per_min']:.2f} trials/min")
    print(f"written: {out}")


if __name__ == "__main__":
    main()

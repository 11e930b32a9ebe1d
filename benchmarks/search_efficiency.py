"""How many trials each searcher needs to find a good MixUnlearn config: random search, TPE as it was before
issue 20 (ASHA-stopped trials told COMPLETE at their stop value) and TPE after it (told PRUNED, every value
an intermediate value at its epoch); each with and without ASHA.

    python benchmarks/search_efficiency.py --label full                 # the quick space as shipped: hours on 2 cores
    python benchmarks/search_efficiency.py --label cpu-small --train-subset 60 --test-subset 30 \\
        --mia-samples 200 --table-size 48                               # what fits on 2 shared cores (the committed run)
    python benchmarks/search_efficiency.py --judge real --label full    # every suggested config trained (a big machine)

One judge for every searcher. Each configuration's objective is avg_gap after each epoch, from one
evaluation with a fixed seed (the space's seed and ref_seed): the searchers are compared, not the judge's
noise. Two judges:
- `surrogate` (default, cheap): `--table-size` configurations of the space (a scrambled Sobol design over
  its own ranges, log scale where the space says log, plus METHOD.md's defaults) are trained for all their
  epochs and judged at every epoch, in-process as a trial is (mixunlearn.run.epochs); a searcher's
  configuration then gets the inverse-distance-weighted mean of its K_NEAREST table neighbours' curves, in
  the space's normalised coordinates. A surrogate of the quick space's landscape, said plainly: it is as
  smooth as the table is sparse, and no searcher can exploit structure finer than the table's.
- `real`: every configuration a searcher suggests is trained and judged (cached by its parameters, so a
  configuration two searchers suggest is trained once). 6 searchers x 5 seeds x 32 trials: a big machine.
The trained curves are kept in benchmarks/results/search_efficiency-table-<label>.json and reused.

The searchers run in this process through the sweep's own pieces, driven as Tune's controller drives
them (ray/tune/execution/tune_controller.py, _process_trial_result and stop_trial), one trial at a time:
- random: Optuna's RandomSampler in mixsweep's searcher;
- TPE before: Ray's OptunaSearch as the sweep used it before issue 20 (ray.tune.search.optuna);
- TPE after: mixsweep.optuna_search.ResumableOptunaSearch (the sweep's searcher now);
- with ASHA: Ray's ASHAScheduler with the sweep's settings (time_attr epoch, max_t = the space's epochs,
  grace = its grace_epochs, reduction 2); a trial reports at ASHA's rungs and its last epoch, and one
  stopped at a rung reaches the searcher only through on_trial_complete, as in Tune. Without ASHA (FIFO)
  every trial runs its epochs, and TPE before and after coincide (a check of the harness).
Samplers seeded 0..4. The sweep's first point, METHOD.md's defaults (points_to_evaluate), is left out
unless `--seed-defaults`: on the quick space it ranks 10th of the 64 trained configurations, so every
searcher would share a near-best trial 1 and the comparison would be of one fixed point
(search_efficiency-cpu-small-defaults.json shows it).

Measured, per searcher and seed: after k trials, the best final objective (avg_gap at the last epoch)
among the trials that ran all their epochs (what a user would take from the sweep; a stopped trial has
no final value); its mean and spread over seeds at k = 8, 16, 32; the epochs trained; and how many trials
TPE + ASHA needs to reach random search's best at k = 32 (random without ASHA: plain random search), as
a ratio of 32 (per seed, then the median), run on to `--ratio-trials` so the ratio can exceed 1.
Results: benchmarks/results/search_efficiency-<label>.json and .png (best so far against trials, a band
from the best to the worst seed around the mean), with hardware, versions, runs and the code measured.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))   # code_version, when run from the repository root

from code_version import code_measured   # noqa: E402
from mixsweep.evidence import cpu_model, versions   # noqa: E402
from search_spaces import CategoricalParam, IntParam, load_space, preset_path   # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
K_NEAREST = 3            # surrogate: neighbours averaged (inverse-distance weighted)
KS = (8, 16, 32)         # trials after which the best is read
SEARCHERS = ("random", "TPE before", "TPE after")
ASHA_REDUCTION = 2       # mixsweep.sweep.ASHA_REDUCTION


# ---- the space in normalised coordinates ----------------------------------------------------------------

def unit(param: Any, value: Any) -> float:
    """A parameter's value in [0, 1]: log scale where the space says log, a category's index otherwise."""
    if isinstance(param, CategoricalParam):
        return param.choices.index(value) / max(1, len(param.choices) - 1)
    low, high = float(param.low), float(param.high)
    if getattr(param, "log", False):
        return (math.log(value) - math.log(low)) / (math.log(high) - math.log(low))
    return (float(value) - low) / (high - low)


def from_unit(param: Any, u: float) -> Any:
    if isinstance(param, CategoricalParam):
        return param.choices[min(len(param.choices) - 1, int(u * len(param.choices)))]
    low, high = float(param.low), float(param.high)
    value = math.exp(math.log(low) + u * (math.log(high) - math.log(low))) if getattr(param, "log", False) \
        else low + u * (high - low)
    return int(round(value)) if isinstance(param, IntParam) else value


def design(space, size: int, seed: int = 0) -> list[dict[str, Any]]:
    """METHOD.md's defaults, then a scrambled Sobol design over the searched parameters."""
    from scipy.stats import qmc

    names = list(space.search)
    points = qmc.Sobol(d=len(names), scramble=True, seed=seed).random(max(0, size - 1))
    return [space.paper_defaults()] + [{n: from_unit(space.search[n], u) for n, u in zip(names, row)}
                                       for row in points]


# ---- the judge: per-epoch avg_gap of a configuration ------------------------------------------------------

class Table:
    """Trained configurations and their per-epoch avg_gap, kept in a JSON file."""

    def __init__(self, path: Path, space, overrides: dict[str, Any], threads: int) -> None:
        self.path, self.space, self.overrides, self.threads = path, space, overrides, threads
        saved = json.loads(path.read_text()) if path.is_file() else {}
        if saved and saved.get("overrides") != overrides:
            raise SystemExit(f"{path} was trained with {saved.get('overrides')}, not {overrides}: pass another --label")
        self.rows: list[dict[str, Any]] = saved.get("rows", [])
        self.seconds = saved.get("seconds", 0.0)
        self.code = saved.get("code") or code_measured()   # the code that trained the table
        self.prepared = None

    def key(self, params: dict[str, Any]) -> str:
        return json.dumps({n: params[n] for n in self.space.search}, sort_keys=True)

    def curve(self, params: dict[str, Any]) -> list[float]:
        """The trained curve of `params`, training it first if it is not in the table."""
        found = {self.key(r["params"]): r["avg_gap"] for r in self.rows}
        key = self.key(params)
        if key not in found:
            found[key] = self.train(params)
        return found[key]

    def train(self, params: dict[str, Any]) -> list[float]:
        import torch

        from mixunlearn.config import UnlearnConfig
        from mixunlearn.run import epochs, prepare

        torch.set_num_threads(self.threads)
        cfg = UnlearnConfig.from_dict(self.space.config_for({**self.overrides, **params}))
        if self.prepared is None:
            self.prepared = prepare(cfg, device="cpu")
        start = time.perf_counter()
        curve = [float(m["avg_gap"]) for m in epochs(dataclasses.replace(self.prepared, cfg=cfg))]
        seconds = time.perf_counter() - start
        self.rows.append({"params": params, "avg_gap": curve, "seconds": seconds})
        self.seconds += seconds
        self.path.write_text(json.dumps({"overrides": self.overrides, "code": self.code, "seconds": self.seconds,
                                         "hardware": f"{cpu_model()}, {os.cpu_count()} cores, CPU only (torch "
                                                     f"threads {self.threads})", "rows": self.rows}, indent=1) + "\n")
        print(f"  trained {len(self.rows)}: avg_gap by epoch {[round(v, 2) for v in curve]} in {seconds:.1f} s",
              flush=True)
        return curve


def surrogate(table: Table) -> Callable[[dict[str, Any]], list[float]]:
    """Inverse-distance-weighted mean of the K_NEAREST table curves, in normalised coordinates."""
    names = list(table.space.search)
    points = np.array([[unit(table.space.search[n], r["params"][n]) for n in names] for r in table.rows])
    curves = np.array([r["avg_gap"] for r in table.rows])

    def curve(params: dict[str, Any]) -> list[float]:
        x = np.array([unit(table.space.search[n], params[n]) for n in names])
        distance = np.linalg.norm(points - x, axis=1)
        nearest = np.argsort(distance)[:K_NEAREST]
        if distance[nearest[0]] < 1e-12:
            return curves[nearest[0]].tolist()
        weights = 1.0 / distance[nearest]
        return (weights @ curves[nearest] / weights.sum()).tolist()
    return curve


# ---- one search, driven as Tune's controller drives a searcher and a scheduler ---------------------------

@dataclasses.dataclass
class TrialStub:
    trial_id: str
    config: dict[str, Any]


def search(kind: str, asha: bool, seed: int, trials: int, space, judge, epochs: int, grace: int,
           seed_defaults: bool) -> list[dict]:
    """`trials` trials of one searcher; each: its params, the epochs it ran, its final value if it ran all."""
    import optuna
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler
    from ray.tune.search.optuna import OptunaSearch

    from mixsweep.optuna_search import ResumableOptunaSearch
    from mixsweep.sweep import SpaceFunction, asha_rungs

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    sampler = optuna.samplers.RandomSampler(seed=seed) if kind == "random" else optuna.samplers.TPESampler(seed=seed)
    searcher_class = OptunaSearch if kind == "TPE before" else ResumableOptunaSearch
    searcher = searcher_class(space=SpaceFunction(space, {}), metric="avg_gap", mode="min", sampler=sampler,
                              points_to_evaluate=space.points_to_evaluate() if seed_defaults else None)
    scheduler = ASHAScheduler(time_attr="epoch", metric="avg_gap", mode="min", max_t=epochs,
                              grace_period=min(grace, epochs), reduction_factor=ASHA_REDUCTION) if asha else None
    reported = set(asha_rungs(space, None)) | {epochs} if asha else set(range(1, epochs + 1))
    done = []
    for number in range(trials):
        trial = TrialStub(f"t{number:04d}", {})
        trial.config = searcher.suggest(trial.trial_id)
        params = {n: trial.config[n] for n in space.search}
        curve = judge(params)
        if scheduler is not None:
            scheduler.on_trial_add(None, trial)
        iteration, ran, result = 0, epochs, None
        for epoch in sorted(reported):
            iteration += 1
            result = {"avg_gap": curve[epoch - 1], "epoch": epoch, "planned_epochs": epochs,
                      "training_iteration": iteration}
            decision = scheduler.on_trial_result(None, trial, result) if scheduler else TrialScheduler.CONTINUE
            if decision == TrialScheduler.STOP:   # Tune: no on_trial_result for this result, then complete
                ran = epoch
                break
            searcher.on_trial_result(trial.trial_id, result)
        searcher.on_trial_complete(trial.trial_id, result=result)
        if scheduler is not None:
            scheduler.on_trial_complete(None, trial, result)
        done.append({"params": params, "epochs": ran, "final": curve[-1] if ran == epochs else math.nan})
    return done


def best_so_far(done: list[dict]) -> list[float]:
    best, out = math.inf, []
    for trial in done:
        if math.isfinite(trial["final"]):
            best = min(best, trial["final"])
        out.append(best if math.isfinite(best) else math.nan)
    return out


# ---- the benchmark ---------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", default="quick", help="a shipped space (default quick) or a space file")
    parser.add_argument("--label", default="full")
    parser.add_argument("--table-label", help="reuse the table trained under another label (default: --label)")
    parser.add_argument("--judge", choices=("surrogate", "real"), default="surrogate")
    parser.add_argument("--table-size", type=int, default=64, help="surrogate: configurations trained")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=max(KS))
    parser.add_argument("--ratio-trials", type=int, default=96, help="TPE + ASHA runs this long for the ratio")
    parser.add_argument("--train-subset", type=int, help="a cheaper surrogate: fewer images per class")
    parser.add_argument("--test-subset", type=int)
    parser.add_argument("--mia-samples", type=int)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed-defaults", action="store_true", help="every searcher's trial 1 is METHOD.md's "
                        "defaults, as in a sweep")
    args = parser.parse_args()

    space_path = Path(args.space) if Path(args.space).is_file() else preset_path(args.space)
    space = load_space(space_path)
    overrides = {k: v for k, v in (("train_subset", args.train_subset), ("test_subset", args.test_subset),
                                   ("mia_samples", args.mia_samples)) if v is not None}
    epochs, grace = int(space.base["epochs"]), space.sweep.grace_epochs
    RESULTS.mkdir(exist_ok=True)
    load_before = os.getloadavg()
    table = Table(RESULTS / f"search_efficiency-table-{args.table_label or args.label}.json", space, overrides,
                  args.threads)
    if args.judge == "surrogate":
        wanted = design(space, args.table_size)
        print(f"table: {len(wanted)} configurations of {space_path.name} {overrides or '(as shipped)'}, "
              f"{epochs} epochs each, avg_gap at every epoch ({len(table.rows)} already trained)", flush=True)
        for params in wanted:
            table.curve(params)
        judge = surrogate(table)
    else:
        judge = table.curve

    runs: dict[str, list[list[dict]]] = {}
    started = time.perf_counter()
    for asha in (False, True):
        for kind in SEARCHERS:
            name = f"{kind} + ASHA" if asha else kind
            length = args.ratio_trials if (kind == "TPE after" and asha) else args.trials
            runs[name] = [search(kind, asha, seed, length, space, judge, epochs, grace, args.seed_defaults)
                          for seed in range(args.seeds)]
            print(f"{name}: best at {args.trials} per seed "
                  f"{[round(best_so_far(r)[args.trials - 1], 3) for r in runs[name]]}", flush=True)
    search_seconds = time.perf_counter() - started

    results = {}
    for name, per_seed in runs.items():
        curves = np.array([best_so_far(r)[:args.trials] for r in per_seed])
        results[name] = {
            "best_at": {str(k): {"mean": float(np.nanmean(curves[:, k - 1])), "std": float(np.nanstd(curves[:, k - 1], ddof=1)),
                                 "per_seed": curves[:, k - 1].tolist()} for k in KS if k <= args.trials},
            "curve_mean": np.nanmean(curves, axis=0).tolist(), "curve_min": np.nanmin(curves, axis=0).tolist(),
            "curve_max": np.nanmax(curves, axis=0).tolist(),
            "epochs_per_trial": statistics.fmean(t["epochs"] for r in per_seed for t in r[:args.trials]),
            "completed_share": statistics.fmean(math.isfinite(t["final"]) for r in per_seed for t in r[:args.trials]),
        }
    target = [best_so_far(r)[args.trials - 1] for r in runs["random"]]
    needed = []
    for seed, run in enumerate(runs["TPE after + ASHA"]):
        curve = best_so_far(run)
        needed.append(next((i + 1 for i, v in enumerate(curve) if v <= target[seed]), math.inf))
    ratios = [n / args.trials for n in needed]
    mean_target = float(np.mean(target))
    mean_curve = np.nanmean([best_so_far(r) for r in runs["TPE after + ASHA"]], axis=0)
    mean_needed = next((i + 1 for i, v in enumerate(mean_curve) if v <= mean_target), None)
    ratio = {"trials_needed_per_seed": [n if math.isfinite(n) else None for n in needed],
             "ratio_per_seed": [r if math.isfinite(r) else None for r in ratios],
             "median_ratio": statistics.median(ratios) if all(map(math.isfinite, ratios)) else
             (statistics.median(ratios) if sum(map(math.isfinite, ratios)) > len(ratios) / 2 else None),
             "ratio_of_seed_means": mean_needed / args.trials if mean_needed else None,
             "definition": f"trials TPE after + ASHA needs until its best completed trial is as good as random "
                           f"search's best after {args.trials} (same seed), divided by {args.trials}; None: not "
                           f"reached within {args.ratio_trials}"}
    record = {
        "benchmark": "search_efficiency", "label": args.label, "judge": args.judge,
        "space": str(space_path.relative_to(Path(__file__).resolve().parents[1])) if space_path.is_relative_to(
            Path(__file__).resolve().parents[1]) else str(space_path),
        "overrides": overrides, "seed_defaults": args.seed_defaults, "epochs": epochs, "asha": {"grace": grace, "reduction": ASHA_REDUCTION,
                                                           "rungs": sorted(set(range(1, epochs + 1)) & set(
                                                               grace * ASHA_REDUCTION ** k for k in range(8)))},
        "table": {"configurations": len(table.rows), "train_seconds": round(table.seconds, 1), "code": table.code,
                  "eval_seed": space.base.get("seed", 0), "k_nearest": K_NEAREST if args.judge == "surrogate" else None},
        "hardware": f"{cpu_model()}, {os.cpu_count()} cores, CPU only (torch threads {args.threads})",
        "versions": versions(), "runs": f"{args.seeds} search seeds per searcher; one evaluation per configuration",
        "code": code_measured(), "load_average_1_5_15_before": [round(v, 2) for v in load_before],
        "load_average_1_5_15_after": [round(v, 2) for v in os.getloadavg()],
        "search_seconds": round(search_seconds, 1), "trials": args.trials, "results": results,
        "tpe_asha_vs_random": ratio, "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    path = RESULTS / f"search_efficiency-{args.label}.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    plot(record, RESULTS / f"search_efficiency-{args.label}.png")
    print(json.dumps({name: r["best_at"] for name, r in results.items()}, indent=1))
    print(f"TPE + ASHA reaches random search's best at {args.trials}: {ratio}")
    print(f"written: {path} and its .png")


def plot(record: dict[str, Any], path: Path) -> None:
    """Two panels (without ASHA, with it): each searcher's mean best-so-far, a band from its best to its
    worst seed."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.0, 4.2), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    colours = {"random": "tab:gray", "TPE before": "tab:orange", "TPE after": "tab:blue"}
    for ax, asha in zip(axes, (False, True)):
        for kind, colour in colours.items():
            result = record["results"][f"{kind} + ASHA" if asha else kind]
            xs = np.arange(1, len(result["curve_mean"]) + 1)
            ax.plot(xs, result["curve_mean"], color=colour, linestyle="--" if kind == "TPE before" else "-",
                    label=f"{kind} ({result['epochs_per_trial']:.1f} epochs/trial)")
            ax.fill_between(xs, result["curve_min"], result["curve_max"], color=colour, alpha=0.08)
        ax.set_title("with ASHA" if asha else "without ASHA (TPE before = after)", fontsize=9)
        ax.set_xlabel("trials started")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("best final avg_gap of the completed trials\n(mean over seeds; band: best to worst seed)")
    ratio = record["tpe_asha_vs_random"]
    fig.suptitle(f"Search efficiency on {Path(record['space']).name} ({record['judge']} judge): TPE after + ASHA "
                 f"reaches random search's best at {record['trials']} in {ratio['median_ratio']} x the trials "
                 f"(median over seeds; {ratio['ratio_of_seed_means']} on the seed means)", fontsize=9)
    versions_text = ", ".join(f"{k} {v}" for k, v in record["versions"].items())
    footer = (f"{record['runs']}. {record['hardware']}. {versions_text}. code {record['code']}.\n"
              f"table: {record['table']['configurations']} configs, 1 evaluation each, eval seed "
              f"{record['table']['eval_seed']}, overrides {record['overrides'] or 'none'}; defaults seeded: "
              f"{record['seed_defaults']}")
    fig.text(0.0, 0.0, footer, fontsize=6, color="0.3", ha="left", va="top", family="monospace")
    fig.savefig(path, dpi=120, bbox_inches="tight", pad_inches=0.15)


if __name__ == "__main__":
    main()

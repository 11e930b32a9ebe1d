"""What `mixsweep benchmark full` costs on 2 cores, from each method's measured epoch on the full track.

    python benchmarks/full_plan_cost.py                     # every method of search_spaces/benchmarks/full.yaml
    python benchmarks/full_plan_cost.py --methods ga scrub  # some of them

For each method of the plan, on its full space's base (its defaults: a sweep's trial 1) with the plan's
common fields, on 1 torch thread (a trial's CPU): building the loop, one unlearning epoch, and one
evaluation in its two parts (the accuracies, the attackers), each timed once. A trial's cost is then
build + E x epoch + the evaluations a sweep trial gives (the attackers and accuracies at ASHA's rungs and
the last epoch, mixsweep.sweep.asha_rungs) + the platform's fixed cost per trial (README: 4 s), at E = the
method's default epochs. The plan's total on 2 cores: every method's `budget.trials` trials plus its
`seeds` re-runs of the winner, two at a time, with no trial stopped early (ASHA only shortens it: an upper
bound) - the same count `mixsweep benchmark` runs. Written to benchmarks/results/full_plan_cost.json with
the hardware, load, versions and commit.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from code_version import code_measured
from mixsweep.evidence import cpu_model, versions
from mixunlearn.config import UnlearnConfig
from mixunlearn.methods import build_method
from mixunlearn.methods.common import Diverged
from mixunlearn.run import prepare
from search_spaces import benchmark_path, load_benchmark_plan

RESULTS = Path(__file__).resolve().parent / "results"
PLATFORM_S_PER_TRIAL = 4.0   # README "What the platform costs": fixed seconds `mixsweep run` adds per trial
ASHA_REDUCTION = 2           # mixsweep.sweep.ASHA_REDUCTION (not imported: that module pulls in Ray)


def rungs(grace: int, epochs: int) -> set[int]:
    count = int(np.log(epochs / min(grace, epochs)) / np.log(ASHA_REDUCTION) + 1)
    return {min(grace, epochs) * ASHA_REDUCTION ** k for k in range(count)} | {epochs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", default="full")
    parser.add_argument("--methods", nargs="*")
    parser.add_argument("--keep", metavar="JSON", help="take the methods this earlier record of the same code "
                        "measured from it and measure only the others (a run cut short goes on)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    plan = load_benchmark_plan(benchmark_path(args.plan))
    load_start = os.getloadavg()
    measured = {}
    if args.keep:
        kept = json.loads(Path(args.keep).read_text())
        assert kept["code"] == code_measured(), f"{args.keep} measured other code ({kept['code']})"
        measured = kept["methods"]
    for method in plan.methods:
        if (args.methods and method.name not in args.methods) or method.name in measured:
            continue
        cfg = UnlearnConfig.from_dict({**method.space["base"], "device": "cpu"})   # the plan's base over the space's
        prepared = prepare(cfg, device="cpu")
        t0 = time.perf_counter()
        loop = build_method(cfg, prepared.data, prepared.split, original=prepared.references.original,
                            device=prepared.device)
        t1 = time.perf_counter()
        try:
            epoch_s, diverged = loop.train_epoch(), False
        except Diverged:
            # The epoch ran to its end before the check (a sweep's trial would end FAILED here): its time is
            # the epoch's all the same, and the record says which defaults diverge on this track.
            epoch_s, diverged = time.perf_counter() - t1, True
        t2 = time.perf_counter()
        # A diverged model's outputs are NaN, which the attackers refuse; an evaluation costs the same on any
        # weights of the architecture, so f_D stands in for it.
        outputs = prepared.outputs(prepared.references.original if diverged else loop.model)
        accuracies = prepared.accuracies(outputs)
        t3 = time.perf_counter()
        prepared.attack(outputs, accuracies)
        t4 = time.perf_counter()
        epochs = cfg.unlearn_epochs
        evaluations = len(rungs(plan.budget.grace_epochs, epochs))
        trial_s = (t1 - t0) + epochs * epoch_s + evaluations * (t4 - t2) + PLATFORM_S_PER_TRIAL
        measured[method.name] = {"epochs": epochs, "build_s": round(t1 - t0, 1), "epoch_s": round(epoch_s, 1),
                                 "accuracies_s": round(t3 - t2, 1), "attackers_s": round(t4 - t3, 1),
                                 "evaluations": evaluations, "trial_s": round(trial_s, 1),
                                 "diverged_at_defaults": diverged}
        print(method.name, measured[method.name], flush=True)
    trials = plan.budget.trials
    runs = {m: (1 if m == "retrain" else trials) + len(plan.seeds) for m in measured}
    total_s = sum(runs[m] * measured[m]["trial_s"] for m in measured) / 2   # two trials at a time on 2 cores
    record = {"benchmark": "full_plan_cost", "code": code_measured(), "runs": 1,
              "hardware": f"{os.cpu_count()} CPU, {cpu_model()}; torch threads 1",
              "load_average_start": [round(x, 1) for x in load_start],
              "load_average_end": [round(x, 1) for x in os.getloadavg()], "versions": versions(),
              "plan": args.plan, "trials_per_method": trials, "seeds": plan.seeds, "methods": measured,
              "runs_per_method": runs, "estimated_total_h_on_2_cores_no_early_stopping": round(total_s / 3600, 1)}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"full_plan_cost{'' if not args.methods else '-' + '-'.join(args.methods)}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"estimated total on 2 cores, no trial stopped early: {record['estimated_total_h_on_2_cores_no_early_stopping']} h"
          f"\nwritten: {path}")


if __name__ == "__main__":
    main()

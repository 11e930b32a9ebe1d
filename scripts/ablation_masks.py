"""What G's mask did in an ablation, epoch by epoch, and whether two variants differ beyond the seeds' spread.

    python scripts/ablation_masks.py mixblock_forms_full --storage /tmp/sweeps            # full vs no_mixblock
    python scripts/ablation_masks.py mixunlearn_components_full --storage /tmp/sweeps --against no_mixblock

Reads the ablation's finished runs as `mixsweep ablate` does (mixsweep.ablate.finished_runs: the last
finished run of each variant and seed) and their MLflow metric histories, and writes
<ablation>/ablation/masks.md (printed too):
- per variant with a generator, at each of `--epochs`: mean ± sample std over the seeds of G's mean forget
  share, its within-image std and its correlation with lambda (MixUnlearn.diagnostics, over each epoch's
  G mixes);
- for each metric of the plan, `full` against `--against`: the means, their difference and Welch's t-test
  (scipy.stats.ttest_ind, equal_var=False) on the seeds' last-epoch values. With 3 seeds a side the test
  is weak: p < 0.05 needs a difference several times the spread.
"""
from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path

from scipy import stats

from mixsweep import ablate, state as sweep_state
from trainables import records

MASKS = ("mask_forget_share", "mask_spatial_std", "mask_lambda_corr")


def mean_std(values: list[float]) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ablation")
    parser.add_argument("--storage")
    parser.add_argument("--against", default="no_mixblock", help="the variant `full` is compared with")
    parser.add_argument("--epochs", default="1,2,3,5,8,11", help="the epochs of the mask table")
    args = parser.parse_args()
    state = sweep_state.load(args.ablation, args.storage)
    info = ablate.load_info(state)
    client = records.client(state.tracking_uri)
    runs = ablate.finished_runs(state, info)
    epochs = [int(e) for e in args.epochs.split(",")]

    lines = [f"# What G's mask did: ablation {state.name}", "",
             f"Mean ± sample std over seeds {info.seeds} ({len(runs)} finished runs); the mask numbers are "
             "MixUnlearn.diagnostics() over each epoch's G mixes.", ""]
    for metric in MASKS:
        lines += [f"## {metric}", "", "| variant | " + " | ".join(f"epoch {e}" for e in epochs) + " |",
                  "|---|" + "---:|" * len(epochs)]
        for variant in info.variants:
            seeds = [runs[(variant, s)] for s in info.seeds if (variant, s) in runs]
            histories = [{m.step: m.value for m in client.get_metric_history(r.info.run_id, metric)} for r in seeds]
            if not any(histories):
                continue   # no generator in this variant
            cells = [mean_std([h[e] for h in histories if e in h]) for e in epochs]
            lines.append(f"| {variant} | " + " | ".join(cells) + " |")
        lines.append("")

    lines += [f"## full against {args.against}: the last epoch, Welch's t-test over the seeds", "",
              f"| metric | full | {args.against} | difference | p |", "|---|---:|---:|---:|---:|"]
    for metric in info.metrics:
        a = [runs[("full", s)].data.metrics.get(metric, math.nan) for s in info.seeds if ("full", s) in runs]
        b = [runs[(args.against, s)].data.metrics.get(metric, math.nan) for s in info.seeds
             if (args.against, s) in runs]
        a, b = [v for v in a if not math.isnan(v)], [v for v in b if not math.isnan(v)]
        if len(a) < 2 or len(b) < 2:
            continue
        test = stats.ttest_ind(a, b, equal_var=False)
        p = f"{test.pvalue:.3f}" if math.isfinite(test.pvalue) else "–"
        lines.append(f"| {metric} | {mean_std(a)} | {mean_std(b)} | {statistics.mean(a) - statistics.mean(b):+.3f} "
                     f"| {p} |")
    text = "\n".join(lines) + "\n"
    out = Path(state.local_dir) / ablate.TABLE_FOLDER / "masks.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    print(f"written: {out}")


if __name__ == "__main__":
    main()

"""How long `mixsweep` takes to answer --help and to refuse bad input, each in a fresh process.

    python benchmarks/cli_refusals.py                    # the checkout `mixunlearn` imports from, 5 runs each
    PYTHONPATH=OLD_CHECKOUT python benchmarks/cli_refusals.py --label before

Cases: --help; a bad path; a bad flag (`--trials 0` of a shipped space); a space file whose MixUnlearn field
is bad (alpha's range reversed) and one whose GA field is bad (lr's range reversed). The last two check the
field against its method's Hyper, which lives in the method's file: since issue 19 MixUnlearn's, too, so
both import the methods and torch. Each figure is the median wall time of --runs fresh processes, process
start to exit, with the heavy packages each case imported. Written to
benchmarks/results/cli_refusals-<label>.json with the hardware, versions and the commit measured.
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

from code_version import code_measured
from mixsweep.evidence import cpu_model, versions

RESULTS = Path(__file__).resolve().parent / "results"
HEAVY = ("torch", "ray", "mlflow", "optuna")
PROBE = ("import json, sys\nfrom mixsweep.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n"
         "    pass\nprint(json.dumps(sorted(m for m in %r if m in sys.modules)), file=sys.stderr)" % (HEAVY,))


def cases(folder: Path) -> dict[str, list[str]]:
    bad_mix = folder / "bad_mixunlearn_field.yaml"
    bad_mix.write_text("base: {dataset: tiny, epochs: 2}\nsearch:\n  alpha: {low: 4.0, high: 0.1}\n")
    bad_ga = folder / "bad_ga_field.yaml"
    bad_ga.write_text("base: {method: ga, dataset: tiny, epochs: 2}\nsearch:\n  lr: {low: 0.1, high: 0.001}\n")
    return {"--help": ["--help"], "bad path": ["run", "no_such_space.yaml"],
            "bad flag": ["run", "quick", "--trials", "0"],
            "bad MixUnlearn field": ["run", str(bad_mix)], "bad GA field": ["run", str(bad_ga)]}


def timed(args: list[str], cwd: Path) -> tuple[float, list[str]]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ}, timeout=120)
    seconds = time.perf_counter() - started
    return seconds, json.loads(done.stderr.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--label", default="after")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="cli-refusals-"))
    timed(["--help"], folder)   # warm the page cache: the first process reads every .pyc from disk
    results = {}
    for name, argv in cases(folder).items():
        runs = [timed(argv, folder) for _ in range(args.runs)]
        results[name] = {"median_s": round(statistics.median(s for s, _ in runs), 3),
                         "runs_s": [round(s, 3) for s, _ in runs], "heavy_imports": runs[-1][1]}
        print(f"{name:22s} {results[name]['median_s']:6.2f} s  (median of {args.runs}; imports {results[name]['heavy_imports']})")
    load = os.getloadavg()
    record = {"benchmark": "cli_refusals", "label": args.label, "code": code_measured(), "runs": args.runs,
              "hardware": f"{os.cpu_count()} CPU, {cpu_model()}", "load_average": [round(x, 1) for x in load],
              "versions": versions(), "results": results}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"cli_refusals-{args.label}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"written: {path}")


if __name__ == "__main__":
    main()

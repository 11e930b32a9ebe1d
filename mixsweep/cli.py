"""The `mixsweep` command: sweeps, export, re-runs, resume, the MLflow UI and the demo.

    mixsweep demo
    mixsweep run search_spaces/quick.yaml --trials 8 --concurrency 2
    mixsweep export quick
    mixsweep train sweeps/quick/export/best.yaml
    mixsweep resume quick
    mixsweep ui
    mixsweep ablate search_spaces/ablations/mixunlearn_components.yaml
    mixsweep report quick
    mixsweep compare quick sweeps/paper/export/best.yaml
    mixsweep benchmark quick
    mixsweep audit sweeps/quick/export/best.yaml --models 16 [--metrics klom,ulira] [--dry-run]

Environment: MIXSWEEP_STORAGE (default of --storage), MLFLOW_TRACKING_URI (of --tracking-uri),
RAY_ADDRESS (of --address), MIXSWEEP_CACHE (each machine's cache), MIXSWEEP_REFERENCES (of
--references: the reference models every node shares), RAY_TMPDIR (a local Ray's temp folder). A bad flag, file or resource request prints one sentence and exits with status 2.

Parsing and the checks of the user's input (`preflight`) import neither torch, Ray nor MLflow, so
`mixsweep --help` and a refused command answer at once; each command imports its module after them.
"""
from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path

from .errors import EXIT_USAGE, UsageError, user_errors

EXIT_DIVERGED = 1   # `mixsweep train` of a run whose loss went NaN or Inf
EXIT_INCOMPLETE = 3   # a benchmark interrupted before its table: `mixsweep resume NAME` finishes it


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mixsweep", description="Ray Tune + Optuna + MLflow sweeps of MixUnlearn and the unlearning baselines.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="start a sweep of a space YAML (a file or a preset name)")
    run.add_argument("space", help="a sweep space YAML file, or a shipped preset name (quick, paper, ...) "
                                   "or method space (quick/ga, paper/scrub, ...)")
    run.add_argument("--trials", type=int, help="trials in total (default: the space's sweep.trials)")
    run.add_argument("--concurrency", type=int, help="trials at once (default: the space's sweep.concurrency)")
    run.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs per trial = its torch threads")
    run.add_argument("--gpus-per-trial", type=float, default=0.0, help="GPUs per trial; fractions share a GPU")
    run.add_argument("--epochs", type=int, help="override the space's epochs for every trial")
    run.add_argument("--checkpoint-every", type=int, default=1, help="epochs between checkpoints")
    run.add_argument("--name", help="sweep name (default: the space file's stem)")
    run.add_argument("--seed", type=int, default=0, help="seed of Optuna's TPE sampler")
    _common(run, address=True, storage=True, tracking=True, references=True)

    export = commands.add_parser("export", help="write the best config(s) and every trial as Parquet")
    export.add_argument("sweep", help="a sweep name under --storage, or a sweep folder")
    export.add_argument("--register", metavar="NAME", help="also register the best model in the MLflow Model "
                                                           "Registry as a new version of NAME")
    export.add_argument("--alias", default="best", help="the alias of that version (default: best)")
    _common(export, storage=True)

    train = commands.add_parser("train", help="one run of a config YAML, recorded in MLflow")
    train.add_argument("config", help="a flat config YAML, e.g. an exported best.yaml")
    train.add_argument("--threads", type=int, help="torch threads (default: the file's mixsweep-threads line)")
    train.add_argument("--references", help="a shared reference store (folder or URI) to read f_D and Retrain "
                                            "from (default: $MIXSWEEP_REFERENCES, else the file's "
                                            "mixsweep-references line, else this machine's cache)")
    _common(train, tracking=True)

    resume = commands.add_parser("resume", help="finish an interrupted sweep, ablation or benchmark")
    resume.add_argument("sweep", help="a sweep, ablation or benchmark name under --storage, or its folder")
    _common(resume, address=True, storage=True)

    ui = commands.add_parser("ui", help="serve the MLflow UI over the tracking store, or optuna-dashboard")
    ui.add_argument("--optuna", metavar="SWEEP", help="serve optuna-dashboard on this sweep's Optuna study instead")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, help="default: 5000 for MLflow, 8080 for optuna-dashboard")
    _common(ui, storage=True, tracking=True)

    demo = commands.add_parser("demo", help="the quick preset on CPU: 8 trials, export, UI command")
    demo.add_argument("--trials", type=int, default=8)
    demo.add_argument("--concurrency", type=int, default=2)
    _common(demo, storage=True, tracking=True)

    ablate = commands.add_parser("ablate", help="run an ablation plan's variants x seeds and tabulate them")
    ablate.add_argument("plan", help="an ablation plan YAML, e.g. search_spaces/ablations/mixunlearn_components.yaml")
    ablate.add_argument("--concurrency", type=int, help="runs at once (default: as many as the cluster holds)")
    ablate.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs per run = its torch threads")
    ablate.add_argument("--gpus-per-trial", type=float, default=0.0, help="GPUs per run; fractions share a GPU")
    ablate.add_argument("--checkpoint-every", type=int, default=1, help="epochs between checkpoints")
    ablate.add_argument("--name", help="ablation name (default: the plan file's stem)")
    ablate.add_argument("--register", metavar="NAME", help="register each variant's best seed (lowest avg_gap) "
                                                           "as a version of NAME, aliased by the variant")
    ablate.add_argument("--reuse", metavar="ABLATION", action="append",
                        help="an earlier ablation under --storage (name or folder) whose finished runs with the same "
                             "config and seed go into this table instead of running again; repeatable")
    _common(ablate, address=True, storage=True, tracking=True, references=True)

    benchmark = commands.add_parser("benchmark", help="every method's sweep under one budget at once, then each "
                                                      "winner over seeds, in one table")
    benchmark.add_argument("plan", help="a benchmark plan YAML, or a shipped plan name (quick, paper)")
    benchmark.add_argument("--name", help="benchmark name (default: the plan file's stem); the same name again "
                                          "adds the plan's new seeds")
    benchmark.add_argument("--cpus-per-trial", type=float, help="CPUs per trial = its torch threads (default 1)")
    benchmark.add_argument("--gpus-per-trial", type=float, help="GPUs per trial; fractions share a GPU (default 0)")
    benchmark.add_argument("--register", metavar="NAME", help="register each method's best seed run (lowest "
                                                              "avg_gap) as a version of NAME, aliased by the method")
    _common(benchmark, address=True, storage=True, tracking=True, references=True)

    audit = commands.add_parser("audit", help="judge a config against N oracles: KLOM and U-LiRA over a pool of "
                                              "originals, oracles and the method's unlearned models")
    audit.add_argument("source", help="a config YAML (e.g. an exported best.yaml) or a sweep name under --storage "
                                      "(its best config)")
    audit.add_argument("--models", type=int, required=True, help="N: originals, oracles and unlearned models per "
                                                                 "pool (at least 3; 16 or more to separate methods)")
    audit.add_argument("--metrics", help="comma-separated subset of klom,ulira (default: both)")
    audit.add_argument("--dry-run", action="store_true", help="print the trainings and unlearning runs needed, how "
                                                              "many are cached and an estimate of their time; start "
                                                              "nothing")
    audit.add_argument("--out", help="the audit's folder (default: audits/<name>-N<models>)")
    audit.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs per training task = its torch threads")
    audit.add_argument("--gpus-per-trial", type=float, default=0.0, help="GPUs per training task; fractions share "
                                                                         "a GPU")
    _common(audit, address=True, storage=True, tracking=True, references=True)

    report = commands.add_parser("report", help="a Markdown + PNG report folder of a sweep, ablation or benchmark")
    report.add_argument("sweep", help="a sweep, ablation or benchmark name under --storage, or its folder")
    report.add_argument("--out", help="the report folder (default: <sweep folder>/report)")
    _common(report, storage=True)

    compare = commands.add_parser("compare", help="runs side by side in the paper's table format")
    compare.add_argument("inputs", nargs="+", help="sweeps (name or folder), exported configs, or MLflow run ids")
    compare.add_argument("--out", help="also write the table here (a .md file; the .csv goes beside it)")
    _common(compare, storage=True, tracking=True)
    return parser


def _common(parser: argparse.ArgumentParser, *, address: bool = False, storage: bool = False,
            tracking: bool = False, references: bool = False) -> None:
    if address:
        parser.add_argument("--address", help="Ray cluster: auto or host:port (default: $RAY_ADDRESS, else a "
                                              "local Ray)")
    if storage:
        parser.add_argument("--storage", help="Tune results: a folder or URI (default: $MIXSWEEP_STORAGE, "
                                              "else ./sweeps)")
    if tracking:
        parser.add_argument("--tracking-uri", help="MLflow: sqlite:///PATH or http://HOST:PORT (default: "
                                                   "$MLFLOW_TRACKING_URI, else ./mlflow.db)")
    if references:
        parser.add_argument("--references", help="where every node shares f_D and Retrain: a folder or URI "
                                                 "(default: $MIXSWEEP_REFERENCES, else <storage>/references)")


def space_file(value: str) -> Path:
    """A path, or the name of a shipped preset (quick, paper, ...) or method space (quick/ga, paper/scrub, ...)."""
    from search_spaces import is_preset, list_presets, preset_path

    path = Path(value).expanduser()
    if path.is_file():
        return path
    if is_preset(value):
        return preset_path(value)
    raise UsageError(f"{value}: no such space file; pass a YAML path, a preset ({', '.join(list_presets())}) "
                     "or a method's space <track>/<method> such as quick/ga or paper/scrub")


def preflight(args: argparse.Namespace) -> None:
    """The user's input checked before any heavy import: the files exist and validate, counts are positive.
    The commands check again (they are also called from Python); this makes a refusal take a blink."""
    if args.command == "run":
        # The flags and the path first: validating the file's fields looks up its method (torch, ~2 s).
        for flag, value in (("--trials", args.trials), ("--concurrency", args.concurrency),
                            ("--checkpoint-every", args.checkpoint_every), ("--epochs", args.epochs)):
            if value is not None and value < 1:
                raise UsageError(f"{flag} {value}: it must be a positive whole number")
        path = space_file(args.space)
        from search_spaces import load_space

        load_space(path)
    elif args.command == "train" and not Path(args.config).expanduser().is_file():
        raise UsageError(f"{args.config}: no such file; pass a config YAML such as an exported best.yaml")
    elif args.command == "ablate":
        from search_spaces import list_plans, load_plan, plan_path

        path = Path(args.plan).expanduser()
        if not path.is_file() and args.plan.removesuffix(".yaml") in list_plans():
            path = plan_path(args.plan)
        if not path.is_file():
            raise UsageError(f"{args.plan}: no such plan file; pass an ablation plan YAML or a shipped plan "
                             f"({', '.join(list_plans())})")
        load_plan(path)
    elif args.command == "benchmark":
        from search_spaces import load_benchmark_plan

        from .benchmark_state import resolve_plan

        load_benchmark_plan(resolve_plan(args.plan))
    elif args.command == "audit":
        from .audit import parse_metrics

        if args.models < 3:
            raise UsageError(f"--models {args.models}: an audit needs at least 3 models per pool (U-LiRA leaves a "
                             "pair out); 16 or more separate methods")
        parse_metrics(args.metrics)
        if not Path(args.source).expanduser().is_file():
            from .state import load

            load(args.source, args.storage)
    elif args.command in ("export", "resume", "report"):
        from .benchmark_state import find
        from .state import load

        if not (args.command != "export" and find(args.sweep, args.storage)):
            load(args.sweep, args.storage)


def dispatch(args: argparse.Namespace) -> int:
    # Imported per command, after preflight: `mixsweep --help` and a refused command never load Ray or torch.
    if args.command == "run":
        from .sweep import run_sweep
        run_sweep(space_file(args.space), trials=args.trials, concurrency=args.concurrency,
                  cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial, address=args.address,
                  storage=args.storage, tracking_uri=args.tracking_uri, name=args.name,
                  checkpoint_every=args.checkpoint_every, epochs=args.epochs, seed=args.seed,
                  references=args.references)
        return 0
    if args.command == "export":
        from .export import export_sweep
        if args.register:
            from .registry import check_alias
            check_alias(args.alias)   # before the export's work, not after it
        exported = export_sweep(args.sweep, storage=args.storage)
        for path in exported.configs:
            print(f"config:  {path}")
        print(f"trials:  {exported.parquet}")
        print("(also logged on the sweep's MLflow parent run under export/)")
        if args.register:
            from .registry import register_export
            for registered in register_export(args.sweep, exported, storage=args.storage, name=args.register,
                                              alias=args.alias):
                print(f"registered: {registered.uri}  (version {registered.version}, run {registered.run_id}); "
                      f"{registered.load_hint()} loads it")
        return 0
    if args.command == "train":
        from .train import train
        result = train(args.config, tracking_uri=args.tracking_uri, threads=args.threads,
                       references=args.references)
        print(result.table)
        print(f"MLflow run {result.run_id}")
        return 0
    if args.command == "resume":
        from .benchmark_state import find
        if find(args.sweep, args.storage):
            from .benchmark import resume_benchmark
            return 0 if resume_benchmark(args.sweep, storage=args.storage, address=args.address) else EXIT_INCOMPLETE
        from .resume import resume_sweep
        resume_sweep(args.sweep, storage=args.storage, address=args.address)
        return 0
    if args.command == "benchmark":
        from .benchmark import register_benchmark, run_benchmark
        result = run_benchmark(args.plan, name=args.name, storage=args.storage, tracking_uri=args.tracking_uri,
                               address=args.address, cpus_per_trial=args.cpus_per_trial,
                               gpus_per_trial=args.gpus_per_trial, references=args.references)
        if result is None:
            return EXIT_INCOMPLETE
        if args.register:
            for registered in register_benchmark(result.state, name=args.register):
                print(f"registered: {registered.uri}  (version {registered.version}, run {registered.run_id})")
        return 0
    if args.command == "ui":
        if args.optuna:
            from .ui import open_optuna
            return open_optuna(args.optuna, storage=args.storage, host=args.host, port=args.port)
        from .ui import open_ui
        return open_ui(tracking_uri=args.tracking_uri, host=args.host, port=args.port)
    if args.command == "demo":
        from .demo import demo
        return demo(trials=args.trials, concurrency=args.concurrency, storage=args.storage,
                    tracking_uri=args.tracking_uri)
    if args.command == "ablate":
        from .ablate import run_ablation
        result = run_ablation(args.plan, concurrency=args.concurrency, cpus_per_trial=args.cpus_per_trial,
                              gpus_per_trial=args.gpus_per_trial, address=args.address, storage=args.storage,
                              tracking_uri=args.tracking_uri, name=args.name, checkpoint_every=args.checkpoint_every,
                              references=args.references, reuse=args.reuse)
        if args.register and result is not None:
            from .registry import register_ablation
            for registered in register_ablation(result.state, name=args.register):
                print(f"registered: {registered.uri}  (version {registered.version}, run {registered.run_id})")
        return 0
    if args.command == "audit":
        from .audit import run_audit
        run_audit(args.source, models=args.models, metrics=args.metrics, dry_run=args.dry_run, storage=args.storage,
                  tracking_uri=args.tracking_uri, address=args.address, references=args.references,
                  cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial, out=args.out)
        return 0
    if args.command == "report":
        from .benchmark_state import find
        if find(args.sweep, args.storage):
            from . import benchmark_state
            from .benchmark import write_benchmark_report
            figures = write_benchmark_report(benchmark_state.load(args.sweep, args.storage), out=args.out)
            print(f"report: {len(figures)} figures in {figures[0].parent if figures else args.out}")
            return 0
        from .report import write_report
        written = write_report(args.sweep, storage=args.storage, out=args.out)
        print(f"report: {written.markdown} ({len(written.figures)} figures)")
        from .state import load
        from .ui import ui_hint
        state = load(args.sweep, args.storage)
        print(f"MLflow UI: {ui_hint(state.tracking_uri, state.experiment_id, state.parent_run_id)}")
        return 0
    if args.command == "compare":
        from .compare import compare, document, write
        comparison = compare(args.inputs, storage=args.storage, tracking_uri=args.tracking_uri)
        print(document(comparison))
        if args.out:
            markdown, csv_path = write(comparison, args.out)
            print(f"written: {markdown} and {csv_path}")
        return 0
    raise AssertionError(args.command)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        preflight(args)
        return dispatch(args)
    except user_errors() as error:
        print(f"mixsweep: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as error:
        # A run that diverged (mixsweep train): a result, in one line, exit 1. The class is looked up, not
        # imported: this module stays free of torch until a command needs it.
        diverged = getattr(sys.modules.get("mixunlearn.methods.common"), "Diverged", None)
        if diverged is not None and isinstance(error, diverged):
            print(f"mixsweep: {error}", file=sys.stderr)
            return EXIT_DIVERGED
        raise


def console() -> int:
    """The `mixsweep` program: main(), then an exit that skips the interpreter's last garbage collection
    over everything Ray, Tune, MLflow and Optuna loaded (gc.freeze): 1.4 s of a sweep's exit, measured.
    Every file and run is closed by then; only main(), which tests call in-process, collects as usual."""
    status = main()
    gc.freeze()
    return status


if __name__ == "__main__":
    sys.exit(console())

"""`mixsweep train CONFIG.yaml`: one run of the config's method without search, as a top-level MLflow run.

    mixsweep train sweeps/quick/export/best.yaml            # the exported best config, its thread count
    mixsweep train my.yaml --threads 4 --tracking-uri http://127.0.0.1:5000

The run gets what a sweep's trial gets: the config as params, per-epoch metrics (step = epoch), the
unlearned model (and MixUnlearn's generator weights), the MLflow PyTorch model, config.yaml and the metrics table,
and the sha256 of the f_D and Retrain it used (tags mixsweep.reference.*).
An exported config re-runs its trial exactly on CPU: same seed, same reference models,
same torch thread count (the file's `# mixsweep-threads:` line is the default of --threads); its
`# mixsweep-references:` line names the sweep's reference store, the default of --references.
A run whose loss goes NaN or Inf is closed FAILED and tagged diverged (with the epoch), and Diverged
is raised: the CLI prints its one line and exits 1.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from mixunlearn.config import UnlearnConfig
from mixunlearn.methods import Diverged, build_method
from mixunlearn.run import epochs, prepare, resolve_device
from mixunlearn.table import format_table
from trainables import datasets, mix_pictures, records
from trainables.trial import close_diverged, finish_rows, input_example, table_title
from trainables.references import provenance_tags, trial_store

from . import tracking
from .errors import UsageError
from .export import references_of, threads_of


@dataclass
class TrainResult:
    run_id: str
    metrics: dict[str, float]   # the last epoch's
    table: str


def read_config_file(config_file: str | Path) -> tuple[UnlearnConfig, str]:
    """The config of a flat config YAML (an exported best.yaml, say) and the file's text (its header lines
    name the trial's run, threads and reference store); a bad file is refused in one sentence."""
    path = Path(config_file).expanduser()
    if not path.is_file():
        raise UsageError(f"{path}: no such file; pass a config YAML such as an exported best.yaml")
    text = path.read_text()
    try:
        values = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise UsageError(f"{path}: not valid YAML ({str(error).splitlines()[0]}); fix the file") from None
    if not isinstance(values, dict):
        raise UsageError(f"{path}: expected a mapping of config fields (field: value), found {type(values).__name__}")
    return UnlearnConfig.from_dict(values, source=str(path)), text


def train(config_file: str | Path, *, tracking_uri: str | None = None, threads: int | None = None,
          cache_dir: str | None = None, references: str | None = None) -> TrainResult:
    """`references`: a shared reference store (a sweep's, to re-run its trial against the same models);
    None = $MIXSWEEP_REFERENCES, else the file's `# mixsweep-references:` line, else this machine's cache."""
    path = Path(config_file).expanduser()
    cfg, text = read_config_file(path)
    threads = threads or threads_of(text)
    if threads is not None:
        if threads < 1:
            raise UsageError(f"--threads {threads}: it must be a positive whole number")
        torch.set_num_threads(threads)
    uri = tracking.tracking_uri(tracking_uri)
    device = resolve_device(cfg.device)

    client = records.client(uri)
    experiment_id = tracking.ready_experiment(uri)
    run_id = records.open_run(client, experiment_id=experiment_id, run_name=f"train-{path.stem}", kind="train",
                              params=cfg.to_dict(), tags={"mixsweep.config_file": str(path.resolve()),
                                                          "mixsweep.threads": str(torch.get_num_threads()),
                                                          **tracking.git_commit()})
    print(f"MLflow run {run_id} ({uri}); {torch.get_num_threads()} torch threads on {device}", flush=True)
    status = "FAILED"
    try:
        prepared = prepare(cfg, device=device, cache_dir=cache_dir, store=trial_store(
            cache_dir, references or os.environ.get("MIXSWEEP_REFERENCES") or references_of(text), cluster=False))
        client.log_batch(run_id, tags=provenance_tags(prepared.references))
        datasets.log_dataset_inputs(client, run_id, prepared)
        loop = build_method(cfg, prepared.data, prepared.split, original=prepared.references.original,
                            device=prepared.device)
        final: dict[str, float] = {}
        for final in epochs(prepared, loop):
            records.log_metrics(client, run_id, final, step=int(final["epoch"]))
            if final["epoch"] in (1, loop.epochs):   # the mixes before and after training G (if it mixes)
                mix_pictures.log_mix_grids(client, run_id, loop, prepared.data, epoch=int(final["epoch"]))
            print(f"epoch {final['epoch']:>3}/{loop.epochs}  avg_gap {final['avg_gap']:6.2f}  train_f "
                  f"{final['train_f']:6.2f}  ta {final['ta']:6.2f}  ({final['epoch_seconds']:.1f} s)", flush=True)
        rows = finish_rows(prepared, final)
        state = loop.state_dict()
        records.log_results(uri, run_id, model=loop.model,
                            extra_states={key: state[key] for key in loop.artifact_keys if state.get(key)},
                            example=input_example(prepared), config=cfg.to_dict(), rows=rows, epoch=loop.epoch,
                            title=table_title(cfg))
        status = "FINISHED"
    except Diverged as diverged:
        close_diverged(client, run_id, diverged)
        status = "FAILED"   # closed already; the finally below finds it closed
        raise
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        records.close_run(client, run_id, status)
    return TrainResult(run_id=run_id, metrics=final, table=format_table(rows, title=table_title(cfg)))

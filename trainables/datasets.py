"""A run's data as MLflow dataset inputs: the UI's Dataset column, and runs found by the data they saw.

    log_dataset_inputs(client, run_id, prepared)      # once per run, after prepare()
    client.search_runs([exp], "dataset.digest = '<split digest>'")   # every run of the same forget split

Two inputs per run, each a metadata-only MLflow dataset (name, digest, source, schema, profile: never
the images themselves):
- D, context "training": the data set's name (`fashion_mnist`), the first 32 hex digits of the data
  fingerprint as digest (MLflow keeps at most 36 characters; the full sha256 is in the profile), the
  folder it was read from, the image/label schema, and the subset sizes and image counts as profile.
- D_f, context "forget": named `<data>/<task>` (`fashion_mnist/class`), the split key (sha256 of the
  fingerprint and the task spec, mixunlearn/tasks.py) as digest, the task spec in profile and input
  tags, and the Parquet of D_f indices (ForgetSplit.save_parquet), logged on the run under
  forget_split/ so the exact indices travel with the record (the input tag `mixsweep.forget_split`).
MLflow stores a dataset once per experiment by (name, digest): runs of the same split share it, and its
source is the Parquet of the first run that logged it (the same indices: the digest is their key).
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np
from mlflow.data.schema import TensorDatasetSchema
from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.tracking import MlflowClient
from mlflow.types import Schema, TensorSpec

from mixunlearn.run import Prepared

DIGEST_CHARS = 32                 # MLflow's limit is 36; 128 bits name a data set or a split uniquely
CONTEXT_TAG = "mlflow.data.context"   # MLflow's own input tag: the UI shows it beside the dataset
TRAINING, FORGET = "training", "forget"
SPLIT_FOLDER = "forget_split"     # run artifact folder of the D_f Parquet


def log_dataset_inputs(client: MlflowClient, run_id: str, prepared: Prepared, *,
                       also_on: tuple[str, ...] = ()) -> None:
    """Log D and D_f of `prepared` as the run's dataset inputs, and as those of the runs `also_on` (its
    sweep's, a benchmark's), so that their collapsed rows name the data too. MLflow ignores an input
    logged twice on a run: a resumed trial, and every trial of a sweep on the same data, may call this
    again."""
    data, split, cfg = prepared.data, prepared.split, prepared.cfg
    client.log_artifact(run_id, str(prepared.split_path), artifact_path=SPLIT_FOLDER)
    split_uri = f"runs:/{run_id}/{SPLIT_FOLDER}/{prepared.split_path.name}"
    spec = json.dumps(split.spec, sort_keys=True)
    whole = Dataset(
        name=data.name, digest=data.fingerprint[:DIGEST_CHARS], source_type="local",
        source=json.dumps({"uri": data.source}), schema=image_schema(data.in_channels, data.image_size),
        profile=json.dumps({
            "fingerprint": data.fingerprint, "train_subset": cfg.train_subset, "test_subset": cfg.test_subset,
            "train_images": len(data.train_labels), "test_images": len(data.test_labels),
            "num_classes": data.num_classes}))
    forget = Dataset(
        name=f"{data.name}/{split.task}", digest=split.key()[:DIGEST_CHARS], source_type="mlflow_run_artifact",
        source=json.dumps({"uri": split_uri}),
        schema=json.dumps({"mlflow_colspec": [{"type": "long", "name": n, "required": True}
                                              for n in ("forget_idx", "original_label", "train_label")]}),
        profile=json.dumps({"spec": split.spec, "forget_samples": len(split.forget_idx),
                            "retain_samples": len(split.retain_idx), "data_fingerprint": data.fingerprint}))
    inputs = [
        DatasetInput(whole, tags=[InputTag(CONTEXT_TAG, TRAINING),
                                  *tags({"mixsweep.train_subset": cfg.train_subset,
                                         "mixsweep.test_subset": cfg.test_subset})]),
        DatasetInput(forget, tags=[InputTag(CONTEXT_TAG, FORGET),
                                   *tags({"mixsweep.task_spec": spec, "mixsweep.forget_split": split_uri})]),
    ]
    for run in dict.fromkeys((run_id, *filter(None, also_on))):
        client.log_inputs(run, datasets=inputs)


def image_schema(channels: int, size: int) -> str:
    """uint8 images [n, C, H, W] and int64 labels, in MLflow's tensor-spec form."""
    schema = TensorDatasetSchema(
        features=Schema([TensorSpec(np.dtype(np.uint8), (-1, channels, size, size), "images")]),
        targets=Schema([TensorSpec(np.dtype(np.int64), (-1,), "labels")]))
    return json.dumps(schema.to_dict())


def tags(values: dict[str, Any]) -> list[InputTag]:
    # Input tag values hold at most 500 characters; a task spec is a few dozen.
    return [InputTag(k, str(v)[:500]) for k, v in values.items()]

"""What a trial writes into a `ray.tune.Checkpoint` directory, and how anyone reads it back.

    <checkpoint>/state.pt      torch.save of the loop's state_dict(): tensors and plain types only, so
                               torch.load(..., weights_only=True) reads it (it must contain "unlearner",
                               and "generator" where the method has one)
    <checkpoint>/meta.json     the epoch, the model to rebuild (name, classes, channels, size), the metrics
                               rows f_D / Retrain / <method> at that epoch
    <checkpoint>/example.pt    two normalised training images: the MLflow model's input example

The trial reads it to resume; the driver reads it to log the model of a trial that ASHA stopped (its
function never runs again after the blocked `tune.report`), so every child run ends with a model.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mixunlearn.models import build_model

STATE_FILE = "state.pt"
META_FILE = "meta.json"
EXAMPLE_FILE = "example.pt"


@dataclass
class SavedTrial:
    """One checkpoint, read back."""
    state: dict[str, Any]          # the loop's state_dict()
    epoch: int                     # epochs trained when it was written
    model: dict[str, Any]          # build_model arguments: name, num_classes, in_channels, image_size; and
                                   # state_key / artifact_keys: where in `state` the model and its extras are
    rows: dict[str, dict[str, float]]   # "f_D", "Retrain", method name -> metrics at `epoch`
    example: torch.Tensor          # float32 [2, C, H, W], normalised like the training inputs

    def unlearner(self) -> nn.Module:
        """The unlearned model at `epoch`, on the CPU in eval mode."""
        model = build_model(self.model["name"], num_classes=self.model["num_classes"],
                            in_channels=self.model["in_channels"], image_size=self.model["image_size"])
        model.load_state_dict(self.state[self.model.get("state_key", "unlearner")])
        return model.eval()

    def artifact_states(self) -> dict[str, dict[str, torch.Tensor]]:
        """The method's other networks kept beside the model (MixUnlearn's generator; {} for none)."""
        keys = self.model.get("artifact_keys", ["generator"])
        return {key: self.state[key] for key in keys if self.state.get(key)}


def write(directory: str | Path, *, state: dict[str, Any], epoch: int, model: dict[str, Any],
          rows: dict[str, dict[str, float]], example: torch.Tensor) -> None:
    directory = Path(directory)
    torch.save(to_cpu(state), directory / STATE_FILE)
    torch.save(example.detach().to("cpu", torch.float32).contiguous(), directory / EXAMPLE_FILE)
    meta = {"epoch": epoch, "model": model, "rows": rows}
    (directory / META_FILE).write_text(json.dumps(meta, indent=2))


def read(directory: str | Path) -> SavedTrial:
    directory = Path(directory)
    meta = json.loads((directory / META_FILE).read_text())
    return SavedTrial(
        state=torch.load(directory / STATE_FILE, map_location="cpu", weights_only=True),
        epoch=int(meta["epoch"]),
        model=meta["model"],
        rows=meta["rows"],
        example=torch.load(directory / EXAMPLE_FILE, map_location="cpu", weights_only=True),
    )


def to_cpu(value: Any) -> Any:
    """A copy of a nested state dict with every tensor on the CPU (a GPU trial's checkpoint loads anywhere)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", memory_format=torch.contiguous_format)
    if isinstance(value, dict):
        return {k: to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_cpu(v) for v in value)
    return value

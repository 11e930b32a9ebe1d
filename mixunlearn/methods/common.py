"""What every unlearning method repeats, written once: the epoch contract and its parts.

    loop = METHODS["ga"](cfg, data, split, original=refs.original, device=device)   # hyper = its defaults
    while loop.epoch < loop.epochs:
        seconds = loop.train_epoch()         # raises Diverged when the epoch's loss is NaN or Inf
        state = loop.state_dict()            # tensors and plain types: torch.load(weights_only=True) reads it
    metrics = evaluate(loop.model, ...)      # the same class as f_D

The parts (../shared/docs/BASELINES.md "What every method shares"):
- Label access: `self.labels` holds, for every training sample, the label a method may read: the true
  label for `targets: aware`, f_D's arg-max for `agnostic` (computed once, never the split's labels), and
  on the semi task the true label where it is visible, as MixUnlearn's targets do.
- Data: the uint8 images stay on the device and a batch is an index gather, as in reference.train_classifier.
- Devices: CUDA runs in bf16 autocast with channels_last; CPU runs in float32 (run.prepare makes them
  deterministic under the seed).
- Randomness: every order and random label comes from one numpy Generator seeded by cfg.seed whose state is
  checkpointed; new weights (a shadow row, a re-initialised stage) come from a forked torch RNG seeded by
  cfg.seed, so a resumed run replays the uninterrupted one exactly.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from mixunlearn.fields import CommonFields
from mixunlearn.data import ImageData
from mixunlearn.models import CNN_MODELS
from mixunlearn.tasks import ForgetSplit

# DU's and SU's common optimiser on CIFAR where a method names none (BASELINES.md).
SGD_MOMENTUM = 0.9
SGD_WEIGHT_DECAY = 5e-4


class Diverged(FloatingPointError):
    """A method's loss went NaN or Inf: a result (the run failed, tagged diverged), not a crash."""

    def __init__(self, method: str, epoch: int, loss: float, *, weights: bool = False) -> None:
        self.method, self.epoch, self.loss = method, epoch, loss
        what = "its weights are no longer finite" if weights else f"its mean loss is {loss}"
        super().__init__(f"{method} diverged in epoch {epoch}: {what}; "
                         "lower its learning rate or its number of epochs")


class Method:
    """The epoch contract every method follows (MixUnlearn and every baseline); a method file fills in
    `run_epoch` and its networks.

    Subclasses set `name`, `Hyper` (a dataclass of typed hyperparameters with defaults), `reads_labels`
    (which labels it reads: "retain", "forget") and `checkpointed` (attribute names whose state resumes).
    `cfg` is a config (mixunlearn.config.UnlearnConfig: the common fields, and `cfg.hyper` for its method);
    a method reads only its common fields and, when cfg is of this method, its hyper. This package never
    imports config.py: the config is the layer above the methods.
    """

    name: ClassVar[str]               # the config's spelling: `method: ga`
    title: ClassVar[str]              # the paper's spelling, for tables: "GA"
    Hyper: ClassVar[type]
    reads_labels: ClassVar[tuple[str, ...]] = ()
    # The Fashion-MNIST track's values (cnn_small): chosen on the tests' real subset so that the method
    # forgets and keeps Test_r over seeds 0-2; the measurements are in tests/mixunlearn/methods/test_contract.py.
    cnn_defaults: ClassVar[dict[str, Any]] = {}
    checkpointed: ClassVar[tuple[str, ...]] = ("model", "optimizer")
    model_key: ClassVar[str] = "model"                # the state_dict() entry with the evaluated model's weights
    artifact_keys: ClassVar[tuple[str, ...]] = ()     # entries a run keeps as artifacts beside it

    def __init__(self, cfg: CommonFields, data: ImageData, split: ForgetSplit, *, original: nn.Module,
                 device: torch.device | str, hyper: Any = None) -> None:
        self.cfg = cfg
        if hyper is None:   # a config of this method carries its values; any other config, the defaults
            hyper = cfg.hyper if cfg.method == self.name else self.default_hyper(cfg)
        self.hyper = hyper
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.memory_format = torch.channels_last if self.cuda else torch.contiguous_format
        self.data = data.to(self.device)
        self.split = split
        self.num_classes = data.num_classes
        self.original = original.eval()
        self.forget_idx = split.forget_idx.to(self.device)
        self.retain_idx = split.retain_idx.to(self.device)
        self.labels = self.visible_labels() if self.reads_labels else None
        self.rng = np.random.Generator(np.random.PCG64(cfg.seed))
        self.epochs = self.hyper.epochs
        self.epoch = 0
        self.steps = 0            # optimiser steps taken (benchmarks report steps/s)
        self.images = 0           # images forwarded with gradients, i.e. trained on (benchmarks report images/s)
        self.seconds = 0.0        # wall time spent unlearning (evaluation excluded)
        self.last_loss = math.nan
        self._losses: list[torch.Tensor] = []

    @classmethod
    def default_hyper(cls, cfg: CommonFields) -> Any:
        """The source's (CIFAR) defaults; on the CNN track (cnn_small, cnn_laf) the measured Fashion-MNIST values."""
        return cls.Hyper(**(cls.cnn_defaults if cfg.model in CNN_MODELS else {}))

    # ---- what the config reads (mixunlearn/config.py) ---------------------------------------------
    @classmethod
    def config_fields(cls) -> list[str]:
        """The method's own config fields: its Hyper's, by their plain names."""
        return [f.name for f in dataclasses.fields(cls.Hyper)]

    @classmethod
    def field_types(cls) -> dict[str, Any]:
        """{field: type} of the method's own config fields (a Hyper's ClassVars, like `choices`, are not fields)."""
        hints = typing.get_type_hints(cls.Hyper)
        return {name: hints[name] for name in cls.config_fields()}

    @classmethod
    def complete_hyper(cls, hyper: Any, given: set[str]) -> Any:
        """The hyperparameters of a config that gave the fields `given`: defaults that depend on another
        field of the method (MixUnlearn's lr_generator on gen_optimizer) are set here. None by default."""
        return hyper

    @classmethod
    def total_epochs(cls, cfg: CommonFields) -> int:
        """The epochs a run of cfg trains (LAF+R adds its head stage)."""
        return cfg.hyper.epochs

    @classmethod
    def truncated_fields(cls, cfg: CommonFields, epochs: int) -> dict[str, Any]:
        """The field changes that make a run of cfg stop after `epochs` epochs."""
        return {"epochs": epochs}

    # ---- the contract -----------------------------------------------------------------------------
    def run_epoch(self) -> None:
        raise NotImplementedError

    def train_epoch(self) -> float:
        """Train one epoch; returns its wall seconds. Raises Diverged if its loss is NaN or Inf."""
        assert self.epoch < self.epochs, f"{self.name} has run all its {self.epochs} epochs"
        if self.cuda:
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        self._losses = []
        self.run_epoch()
        # One host sync per epoch: the step losses stay on the device until here.
        loss = float(torch.stack(self._losses).mean()) if self._losses else 0.0
        seconds = time.perf_counter() - start
        self.seconds += seconds
        if not math.isfinite(loss):
            raise Diverged(self.name, self.epoch + 1, loss)
        if not self.weights_finite():   # the last step's update overflowed after its (finite) loss was taken
            raise Diverged(self.name, self.epoch + 1, math.nan, weights=True)
        self.epoch += 1
        self.last_loss = loss
        return seconds

    def weights_finite(self) -> bool:
        """Whether every weight of the evaluated model is finite (one host sync per epoch)."""
        params = [p.detach() for p in self.model.parameters()]
        return bool(torch.stack([torch.isfinite(p).all() for p in params]).all()) if params else True

    def state_dict(self) -> dict:
        """Everything a resume needs; only tensors and plain types, so torch.load(weights_only=True) reads it."""
        state = {"epoch": self.epoch, "steps": self.steps, "seconds": self.seconds,
                 "rng": self.rng.bit_generator.state}
        for name in self.checkpointed:
            value = getattr(self, name)
            if isinstance(value, torch.Generator):
                state[name] = value.get_state()
            elif hasattr(value, "state_dict"):
                state[name] = value.state_dict()
            elif isinstance(value, dict):
                state[name] = {k: v.clone() for k, v in value.items()}
            elif isinstance(value, list):   # a list a method appends to (SCRUB's kept epochs): a snapshot
                state[name] = list(value)
            else:
                state[name] = value
        return state

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.steps, self.seconds = int(state["epoch"]), int(state["steps"]), float(state["seconds"])
        self.rng.bit_generator.state = state["rng"]
        for name in self.checkpointed:
            value = getattr(self, name)
            if isinstance(value, torch.Generator):
                value.set_state(state[name])
            elif hasattr(value, "load_state_dict"):
                value.load_state_dict(state[name])
            elif isinstance(value, dict):
                for k, v in state[name].items():
                    value[k].copy_(v)
            else:
                setattr(self, name, state[name])

    # ---- the parts a method file uses ---------------------------------------------------------------
    def trainable_copy(self, module: nn.Module) -> nn.Module:
        net = copy.deepcopy(module).to(self.device, memory_format=self.memory_format).train()
        return net.requires_grad_(True)

    def inputs(self, idx: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            self.images += len(idx)
        return self.data.normalize(self.data.train_images[idx]).contiguous(memory_format=self.memory_format)

    def logits(self, net: nn.Module, idx: torch.Tensor) -> torch.Tensor:
        """float32 logits of the training samples idx (bf16 autocast on CUDA)."""
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.cuda):
            return net(self.inputs(idx)).float()

    @torch.no_grad()
    def frozen_logits(self, net: nn.Module, idx: torch.Tensor) -> torch.Tensor:
        """A frozen network's logits for idx in eval mode, batched: computed once per run, not every step."""
        was_training = net.training
        net.eval()
        out = torch.cat([self.logits(net, chunk) for chunk in idx.split(self.cfg.eval_batch_size)])
        net.train(was_training)
        return out

    def visible_labels(self) -> torch.Tensor:
        """int64 [n]: per training sample, the label this run may read (BASELINES.md "Label access")."""
        truth = self.split.train_labels.to(self.device)
        if self.cfg.targets == "aware" and self.cfg.task != "semi":
            return truth
        everyone = torch.arange(len(truth), device=self.device)
        predicted = self.frozen_logits(self.original, everyone).argmax(1)
        if self.cfg.task == "semi":
            return torch.where(self.split.labelled.to(self.device), truth, predicted)
        return predicted

    def batches(self, idx: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
        """idx in a fresh order from the run's Generator, split into batches (the last may be smaller)."""
        order = torch.as_tensor(self.rng.permutation(len(idx)), device=self.device)
        return list(idx[order].split(batch_size))

    def step(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.before_step()
        optimizer.step()
        self.after_step()
        self.steps += 1
        self._losses.append(loss.detach())

    def before_step(self) -> None:
        """Hook between backward and the optimiser step (SalUn masks gradients here)."""

    def after_step(self) -> None:
        """Hook after the optimiser step (SalUn resets masked-out weights here)."""

    def sgd(self, params, *, lr: float, momentum: float, weight_decay: float) -> torch.optim.SGD:
        return torch.optim.SGD(list(params), lr=lr, momentum=momentum, weight_decay=weight_decay)

    def copy_with_sgd(self, original: nn.Module) -> tuple[nn.Module, torch.optim.SGD]:
        """f_D's trainable copy and SGD over all of it with the method's lr, momentum and weight decay:
        the set-up of every method that fine-tunes the whole network (BASELINES.md, optimiser defaults)."""
        model = self.trainable_copy(original)
        h = self.hyper
        return model, self.sgd(model.parameters(), lr=h.lr, momentum=h.momentum, weight_decay=h.weight_decay)

    @staticmethod
    def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
        for group in optimizer.param_groups:
            group["lr"] = lr

    @contextmanager
    def seeded(self, offset: int) -> Iterator[None]:
        """Fresh weights from cfg.seed (+ offset), leaving the global torch RNG untouched."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.cfg.seed + offset)
            yield


# ---- where in a network things are (the three models of mixunlearn.models) -------------------------

def last_linear(net: nn.Module) -> nn.Linear:
    """The output layer (the last nn.Linear in registration order, which is also forward order here)."""
    return [m for m in net.modules() if isinstance(m, nn.Linear)][-1]


def classifier_linears(net: nn.Module) -> list[nn.Linear]:
    """The linear layers of the network's classifier, in forward order (cnn_small and cnn_laf: 3;
    resnet18_laf: 2; resnet18_cifar: 1)."""
    return [m for m in net.classifier.modules() if isinstance(m, nn.Linear)]


def stages(net: nn.Module) -> list[nn.Module]:
    """The network's stages in forward order, the output layer last: CF-k / EU-k free the last k + head.

    ResNet-18: stem, layer1..layer4, then the classifier. cnn_small: each conv and linear layer."""
    if hasattr(net, "layer4"):
        return [net.stem, net.layer1, net.layer2, net.layer3, net.layer4, net.classifier]
    return [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


@contextmanager
def captured_input(layer: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Record the input `layer` receives during a forward pass (Boundary Expanding, LAF read it)."""
    box: list[torch.Tensor] = []
    handle = layer.register_forward_pre_hook(lambda _m, args: box.append(args[0]))
    try:
        yield box
    finally:
        handle.remove()


@contextmanager
def captured_output(layer: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Record the output of `layer` during a forward pass (LAF's embedding is fc1's output). A copy: an
    in-place activation after the layer (cnn_small's ReLU(inplace=True)) would change the output itself."""
    box: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _args, out: box.append(out.clone()))
    try:
        yield box
    finally:
        handle.remove()

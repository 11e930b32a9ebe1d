"""MixUnlearn (Peng, Tang & Yang, ICLR 2025): the generator G and the unlearner f_U, one epoch at a time.

    loop = METHODS["mixunlearn"](cfg, data, split, original=refs.original, device=device)
    while loop.epoch < loop.epochs:
        seconds = loop.train_epoch()          # a caller reports / checkpoints between epochs; Diverged on NaN
        state = loop.state_dict()             # f_U, G, optimisers, EMA, epoch and RNG: resumes exactly

The method as ../shared/docs/METHOD.md specifies it, under common.Method's contract like every baseline;
its hyperparameters are MixUnlearnHyper below. METHOD.md "Loop": per epoch, D_f is reshuffled and zipped
with an equally sized, freshly shuffled slice of D_r; every `gen_interval` unlearner steps G takes
`gen_steps` steps on L_gen (Eq. 3); f_U then steps on L_mix + omega * L_real (Eqs. 5-7).

lambda is drawn once per step for G's mix and once for f_U's (`lambda_draw = "batch"`, the release's
scalar draw) or once per pair (`"pair"`, the spec's reading). After every epoch `diagnostics()` says
what G's masks did (their mean forget share, its correlation with lambda, their within-image std,
their distance to lambda) and the epoch's mean losses; `mix_samples()` holds the last step's first
pairs of each mix for pictures (METHOD.md: at initialisation every form mixes a near-constant 50/50,
whatever lambda is; these are how a run shows whether the mask has moved).

Everything f_D contributes (targets p(x), the feature maps G reads) is computed once here, and all
the randomness of an epoch (orders, lambdas, pairings) is drawn up front from the contract's numpy
Generator, whose state is part of the checkpoint, so a resumed run replays the uninterrupted one exactly.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from mixunlearn.fields import ConfigError
from mixunlearn.losses import generator_loss, make_targets, mask_lambda_loss, mix_loss, real_loss
from mixunlearn.mixblock import ACTS, FORMS, UPSAMPLES, MixBlock, mix, plain_mixup_mask

from .common import Method

SAMPLE_PAIRS = 8   # pairs of each kind of mix mix_samples() keeps: one picture's worth
# AdAutoMix trains its mask generator (AdaptiveMask) with SGD, lr 0.1, momentum 0.9 (OpenMixup
# configs/classification/*/adautomix: `optimizer = dict(type='SGD', lr=0.1, momentum=0.9, ...)`; its weight
# decay 1e-4 and cosine schedule are the whole model's and are not applied to G here).
SGD_LR_GENERATOR = 0.1
SGD_MOMENTUM_GENERATOR = 0.9


@dataclass
class MixUnlearnHyper:
    """METHOD.md "Hyperparameters" and the [choice] fields it leaves open; defaults are METHOD.md's."""
    choices: ClassVar[dict[str, tuple[str, ...]]] = {
        "gen_target": ("current", "ema", "frozen"), "reduction": ("sum", "mean"), "lambda_draw": ("batch", "pair"),
        "mixblock_form": FORMS, "mixblock_act": ACTS, "mixblock_upsample": UPSAMPLES, "gen_optimizer": ("adam", "sgd")}
    # Which reading of the generator runs (METHOD.md "What the released code shows"): ablation plans compare
    # these, a sweep keeps one (search_spaces refuses to search them).
    fixed: ClassVar[tuple[str, ...]] = ("lambda_draw", "mixblock_form", "mixblock_act", "mixblock_upsample",
                                        "lambda_concat", "gen_optimizer", "mask_lambda_weight")

    sharpen_T: float = 0.3             # Sharpen temperature T
    alpha: float = 0.75                # lambda ~ Beta(alpha, alpha)
    omega: float = 1.0                 # weight of L_real in Eq. 7 (0 = the "without L_real" ablation)
    tau_gen: float = 20.0              # temperature of L_gen (Eq. 3)
    tau_mix: float = 20.0              # temperature of L_mix (Eq. 5)
    tau_real: float = 20.0             # temperature of L_real (Eq. 6)
    gen_interval: int = 4              # K: unlearner steps per generator update
    gen_steps: int = 1                 # generator steps each time it is updated
    gen_target: str = "current"        # network G attacks: f_U (paper), its EMA (released code), or f_D
    ema_momentum: float = 0.999        # for gen_target = "ema"
    lr_unlearner: float = 5e-5         # Adam; METHOD.md: 1e-5 for ResNet, 5e-5 for the CNN
    lr_generator: float = 1e-3         # G's learning rate; with gen_optimizer sgd and none given, SGD_LR_GENERATOR
    epochs: int = 20                   # unlearning epochs (LAF: 20 for the CNN, 40 for ResNet)
    batch_size: int = 32               # N: (forget, retain) pairs per step
    reduction: str = "sum"             # how C reduces over the batch: "sum" (released) or "mean"

    # ---- the generator's form (METHOD.md "What the released code shows, and what it leaves open")
    lambda_draw: str = "batch"         # "batch": one lambda per step for G's mix, another for f_U's (the
                                       # release's scalar np.random.beta); "pair": one per pair (the spec's reading)
    mixblock_form: str = "two_way"     # "two_way": AdaptiveMask, the release's G (cross-attention both ways, softmax
                                       # over 2 channels); "one_way": AutoMix's PixelMixBlock, sigmoid mask, 33,282 params
    mixblock_act: str = "relu"         # after q and k: "relu" (AdaptiveMask, the spec) or "none" (PixelMixBlock's default)
    mixblock_upsample: str = "nearest" # G's mask to the image size: "nearest" (AdaptiveMask's default) or
                                       # "bilinear" (AdAutoMix's ResNet configs)
    lambda_concat: bool = True         # lambda (forget side) and 1 - lambda (retain side) as an extra channel of
                                       # G's input (AdaptiveMask's lam_concat); false: G never sees lambda
                                       # (AdAutoMix's CIFAR configs), it still weights the losses
    gen_optimizer: str = "adam"        # G's optimiser: "adam", or "sgd" with momentum 0.9 (AdAutoMix's for its
                                       # mask generator, lr 0.1 there); the release does not say
    mask_lambda_weight: float = 0.0    # AutoMix's L1 pull of G's mask mean towards lambda, added to L_gen;
                                       # 0 = none, as in the MixUnlearn release

    # ---- ablation switches (paper Table 3) --------------------------------------------------
    use_mix_loss: bool = True          # False = "without L_mix": L_unlearn = omega * L_real
    use_mixblock: bool = True          # False = "without MixBlock": plain Beta(alpha, alpha) mixup masks
    use_sharpen: bool = True           # False = "without Sharpen": agnostic targets are plain softmax
    exclude_same_class_pairs: bool = False  # never mix a forget sample with a retain sample of its class

    def validate(self) -> None:
        """The checks common.check_hyper cannot read off a field's name."""
        def need(ok: bool, name: str, allowed: str) -> None:
            if not ok:
                raise ConfigError(f"{name} = {getattr(self, name)!r} is not allowed; {allowed}")

        for name in ("gen_interval", "gen_steps"):
            need(getattr(self, name) >= 1, name, "it must be a positive integer")
        for name in ("alpha", "tau_gen", "tau_mix", "tau_real", "sharpen_T"):
            need(getattr(self, name) > 0, name, "it must be positive")
        need(self.omega >= 0, "omega", "it must be >= 0 (0 disables L_real)")
        need(self.mask_lambda_weight >= 0, "mask_lambda_weight", "it must be >= 0 (0 disables the mask regulariser)")
        need(0.0 <= self.ema_momentum < 1.0, "ema_momentum", "it must lie in [0, 1)")
        need(self.use_mix_loss or self.omega > 0, "omega", "with use_mix_loss = false, omega must be > 0 "
             "or nothing is optimised")


class MixUnlearn(Method):
    name = "mixunlearn"
    title = "MixUnlearn"
    Hyper = MixUnlearnHyper
    reads_labels = ("retain", "forget")   # targets: aware reads one-hot y of both; agnostic, f_D's outputs
    checkpointed = ("unlearner", "opt_unlearner", "generator", "opt_generator", "ema")
    model_key = "unlearner"                 # state_dict() entries: f_U's weights, and G's kept beside them
    artifact_keys = ("generator",)

    def __init__(self, cfg, data, split, *, original, device, hyper=None) -> None:
        super().__init__(cfg, data, split, original=original, device=device, hyper=hyper)
        h = self.hyper

        # ---- f_D's outputs, once per run --------------------------------------------------
        self.needs_generator = h.use_mix_loss and h.use_mixblock
        mode = "semi" if cfg.task == "semi" else cfg.targets
        both = torch.cat([self.forget_idx, self.retain_idx])
        logits, features = self._original_outputs(both, with_features=self.needs_generator)
        labelled = split.labelled.to(self.device)[both]
        targets = make_targets(logits, self.labels[both] if self.labels is not None else None, labelled,
                               mode=mode, use_sharpen=h.use_sharpen, sharpen_T=h.sharpen_T)
        nf = len(self.forget_idx)
        self.forget_targets, self.retain_targets = targets[:nf], targets[nf:]
        # The class a pair exclusion compares: the label where targets are one-hot, else f_D's prediction.
        self.forget_class_of, self.retain_class_of = targets[:nf].argmax(1), targets[nf:].argmax(1)
        if features is not None:
            self.forget_features, self.retain_features = features[:nf], features[nf:]

        # ---- the trained networks -----------------------------------------------------------
        torch.manual_seed(cfg.seed)
        self.unlearner = copy.deepcopy(original).to(self.device, memory_format=self.memory_format).train()
        for p in self.unlearner.parameters():
            p.requires_grad_(True)
        self.opt_unlearner = torch.optim.Adam(self.unlearner.parameters(), lr=h.lr_unlearner)
        self.generator: MixBlock | None = None
        self.opt_generator: torch.optim.Optimizer | None = None
        if self.needs_generator:
            self.generator = MixBlock(original.feature_channels, form=h.mixblock_form, act=h.mixblock_act,
                                      upsample=h.mixblock_upsample, lambda_concat=h.lambda_concat).to(self.device)
            self.opt_generator = (torch.optim.Adam(self.generator.parameters(), lr=h.lr_generator)
                                  if h.gen_optimizer == "adam" else
                                  torch.optim.SGD(self.generator.parameters(), lr=h.lr_generator,
                                                  momentum=SGD_MOMENTUM_GENERATOR))
        self.ema: nn.Module | None = None
        if self.needs_generator and h.gen_target == "ema":
            self.ema = copy.deepcopy(self.unlearner).eval().requires_grad_(False)

        self._records: dict[str, list[torch.Tensor]] = {}   # this epoch's masks and losses, on the device
        self._diagnostics: dict[str, float] = {}            # the last trained epoch's, from the records
        self._samples: dict[str, dict[str, torch.Tensor]] = {}

    @classmethod
    def complete_hyper(cls, hyper: MixUnlearnHyper, given: set[str]) -> MixUnlearnHyper:
        """gen_optimizer sgd without a lr_generator of its own takes AdAutoMix's rate, 0.1."""
        if hyper.gen_optimizer == "sgd" and "lr_generator" not in given:
            hyper.lr_generator = SGD_LR_GENERATOR
        return hyper

    def visible_labels(self) -> torch.Tensor | None:
        """The contract's labels where MixUnlearn's targets read them (aware: one-hot y; semi: y where
        visible). Label-agnostic targets are f_D's sharpened outputs, so no arg-max pass is made for them."""
        if self.cfg.targets == "agnostic" and self.cfg.task != "semi":
            return None
        return super().visible_labels()

    @property
    def model(self) -> nn.Module:
        """The model to evaluate: the unlearner f_U."""
        return self.unlearner

    @property
    def generator_steps(self) -> int:
        """G's optimiser steps so far: gen_steps at every gen_interval-th of f_U's steps (the first included)."""
        h = self.hyper
        return -(-self.steps // h.gen_interval) * h.gen_steps if self.needs_generator else 0

    # ---- one epoch ------------------------------------------------------------------------------
    def run_epoch(self) -> None:
        h = self.hyper
        plan = self._draw_epoch()
        self._records = {}
        for it in range(plan["steps"]):
            f = plan["forget"][it]
            r = plan["retain"][it][: len(f)]
            if self.needs_generator and self.steps % h.gen_interval == 0:
                for g in range(h.gen_steps):
                    self._generator_step(f, r, plan["lam_gen"][it, g, : len(f)], plan["pair_gen"][it, g])
            self._unlearner_step(f, r, plan["lam_unlearn"][it, : len(f)], plan["pair_unlearn"][it])
        self._diagnostics = self._summarise_records()

    def _draw_epoch(self) -> dict:
        """All of an epoch's randomness in one draw, moved to the device once."""
        h = self.hyper
        n, nf, nr = h.batch_size, len(self.forget_idx), len(self.retain_idx)
        steps = min(-(-nf // n), -(-nr // n))
        forget_order = self.rng.permutation(nf)
        retain_order = self.rng.permutation(nr)
        if h.lambda_draw == "pair":
            lam = self.rng.beta(h.alpha, h.alpha, size=(steps, h.gen_steps + 1, n))
        else:   # the release: one scalar np.random.beta(alpha, alpha) per mix, shared by the batch's pairs
            lam = self.rng.beta(h.alpha, h.alpha, size=(steps, h.gen_steps + 1, 1)).repeat(n, axis=2)
        pair_keys = self.rng.random(size=(steps, h.gen_steps + 1, n, n if h.exclude_same_class_pairs else 1))
        to = lambda a, dtype: torch.as_tensor(a, dtype=dtype, device=self.device)  # noqa: E731
        forget_order, retain_order = to(forget_order, torch.long), to(retain_order, torch.long)
        lam, pair_keys = to(lam, torch.float32), to(pair_keys, torch.float32)
        return {
            "steps": steps,
            "forget": [forget_order[i * n:(i + 1) * n] for i in range(steps)],
            "retain": [retain_order[i * n:(i + 1) * n] for i in range(steps)],
            "lam_gen": lam[:, :-1], "lam_unlearn": lam[:, -1],
            "pair_gen": pair_keys[:, :-1], "pair_unlearn": pair_keys[:, -1],
        }

    def _pairing(self, f: torch.Tensor, r: torch.Tensor, keys: torch.Tensor, *, shuffle: bool) -> torch.Tensor:
        """Positions in the retain batch to pair with each forget sample.

        Without exclusion: a random permutation (pi of Eq. 5) or, for G's own pairs, the identity.
        With exclusion: each forget sample takes a random retain sample of another class (with
        replacement); a forget sample whose batch holds only its own class falls back to any."""
        b = len(f)
        if not self.hyper.exclude_same_class_pairs:
            return torch.argsort(keys[:b, 0]) if shuffle else torch.arange(b, device=self.device)
        other = self.forget_class_of[f][:, None] != self.retain_class_of[r][None, :]
        return (keys[:b, :b] + 2.0 * other).argmax(dim=1)

    def _inputs(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.data.normalize(self.data.train_images[idx])
        return x.contiguous(memory_format=self.memory_format)

    def _mask(self, f: torch.Tensor, r_pos: torch.Tensor, r: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        if self.generator is None:
            return plain_mixup_mask(lam, self.data.image_size)
        return self.generator(self.forget_features[f], self.retain_features[r[r_pos]], lam, self.data.image_size)

    def _generator_step(self, f: torch.Tensor, r: torch.Tensor, lam: torch.Tensor, keys: torch.Tensor) -> None:
        """Eq. 3: G makes the mixes f_T finds hardest; only G's parameters are updated."""
        h = self.hyper
        pos = self._pairing(f, r, keys, shuffle=False)
        target_net = {"current": self.unlearner, "ema": self.ema, "frozen": self.original}[h.gen_target]
        was_training = target_net.training
        target_net.eval()   # attacking f_T must not move its batch-norm statistics
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.cuda):
            mask = self._mask(f, pos, r, lam)
            x_mix = mix(self._inputs(self.forget_idx[f]), self._inputs(self.retain_idx[r[pos]]), mask)
            probs = torch.softmax(target_net(x_mix).float(), dim=1)
        gen_loss = generator_loss(probs, self.retain_targets[r[pos]], self.forget_targets[f], lam, h.tau_gen,
                                  reduction=h.reduction)
        loss = gen_loss
        if h.mask_lambda_weight > 0:
            loss = loss + h.mask_lambda_weight * mask_lambda_loss(mask[:, 0], lam, reduction=h.reduction)
        params = list(self.generator.parameters())
        # autograd.grad on G alone: gradients pass through f_T to the mask but never accumulate in f_T.
        grads = torch.autograd.grad(loss, params)
        for p, g in zip(params, grads):
            p.grad = g
        self.opt_generator.step()
        target_net.train(was_training)
        self._record_mask(mask.detach(), lam)
        self._record("gen_loss", gen_loss)
        self._keep_samples("generator", x_mix, mask, lam, self.forget_idx[f], self.retain_idx[r[pos]])

    def _unlearner_step(self, f: torch.Tensor, r: torch.Tensor, lam: torch.Tensor, keys: torch.Tensor) -> None:
        """Eq. 7: f_U steps on L_mix (a detached mask on a fresh pairing pi) + omega * L_real."""
        h, b = self.hyper, len(f)
        x_f, x_r = self._inputs(self.forget_idx[f]), self._inputs(self.retain_idx[r])
        p_f, p_r = self.forget_targets[f], self.retain_targets[r]
        batches = [x_r, x_f]
        if h.use_mix_loss:
            pi = self._pairing(f, r, keys, shuffle=True)
            with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.cuda):
                mask = self._mask(f, pi, r, lam)
            batches.insert(0, mix(x_f, x_r[pi], mask))
            self._keep_samples("unlearner", batches[0], mask, lam, self.forget_idx[f], self.retain_idx[r[pi]])
        # One forward over [mix, retain, forget]: three images per pair in a single launch sequence.
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.cuda):
            logits = self.unlearner(torch.cat(batches))
        self.images += len(logits)
        probs = torch.softmax(logits.float(), dim=1)
        loss = torch.zeros((), device=self.device)
        if h.use_mix_loss:
            term = mix_loss(probs[:b], p_r[pi], p_f, lam, h.tau_mix, reduction=h.reduction)
            self._record("mix_loss", term)
            loss = loss + term
        if h.omega > 0:
            term = real_loss(probs[-2 * b:-b], p_r, probs[-b:], p_f, h.tau_real, reduction=h.reduction)
            self._record("real_loss", term)
            loss = loss + h.omega * term
        self._record("unlearn_loss", loss)
        self.step(self.opt_unlearner, loss)   # the contract's step: its loss is the epoch's divergence check
        if self.ema is not None:
            with torch.no_grad():
                for e, u in zip(self.ema.parameters(), self.unlearner.parameters()):
                    e.lerp_(u, 1.0 - h.ema_momentum)
                for e, u in zip(self.ema.buffers(), self.unlearner.buffers()):
                    e.copy_(u)

    # ---- what the masks did: diagnostics and samples ----------------------------------------------
    def diagnostics(self) -> dict[str, float]:
        """The last trained epoch's mask diagnostics and mean losses (empty before the first epoch):

        mask_forget_share  mean of M[:,0] (the forget side's share) over the epoch's generator mixes
        mask_lambda_corr   Pearson correlation of each mix's mean M[:,0] with its lambda, over all the
                           epoch's generator mixes (so it is defined with one lambda per step, too);
                           NaN when either is constant (e.g. one G step in the epoch, lambda_draw batch)
        mask_spatial_std   the mean over mixes of the std of M[:,0] within the image
        mask_lambda_gap    the mean |mean(M[:,0]) - lambda|: 0 when lambda is the mix's real ratio
        gen_loss           L_gen (Eq. 3) without the mask regulariser, mean over the epoch's G steps
        mix_loss, real_loss, unlearn_loss   L_mix (Eq. 5), L_real (Eq. 6), L_mix + omega L_real (Eq. 7),
                           means over the epoch's f_U steps
        The mask entries exist only where G exists (not for use_mixblock = false or use_mix_loss = false)."""
        return dict(self._diagnostics)

    def mix_samples(self) -> dict[str, dict[str, torch.Tensor]]:
        """The first (at most SAMPLE_PAIRS) pairs of the last epoch's last mix of each kind, on the CPU:
        {"generator" | "unlearner": {"forget", "retain", "mix" (normalised images [k, C, H, W]),
        "forget_share" (M[:,0], [k, H, W]), "lam" ([k])}}. "unlearner" is the detached mask on pi."""
        return {kind: {k: v.cpu() for k, v in parts.items()} for kind, parts in self._samples.items()}

    def _record(self, name: str, value: torch.Tensor) -> None:
        self._records.setdefault(name, []).append(value.detach().float().reshape(-1))

    def _record_mask(self, mask: torch.Tensor, lam: torch.Tensor) -> None:
        share = mask[:, 0].float().flatten(1)   # [B, H*W]
        self._record("share", share.mean(dim=1))
        self._record("spatial_std", share.std(dim=1))
        self._record("lam", lam)

    def _keep_samples(self, kind: str, x_mix: torch.Tensor, mask: torch.Tensor, lam: torch.Tensor,
                      forget_idx: torch.Tensor, retain_idx: torch.Tensor) -> None:
        k = min(SAMPLE_PAIRS, len(lam))
        self._samples[kind] = {"forget": self._inputs(forget_idx[:k]), "retain": self._inputs(retain_idx[:k]),
                               "mix": x_mix[:k].detach().float().clone(),
                               "forget_share": mask[:k, 0].detach().float().clone(), "lam": lam[:k].clone()}

    def _summarise_records(self) -> dict[str, float]:
        """One device-to-host copy per epoch: the records' means and the share's correlation with lambda."""
        rec = {name: torch.cat(values) for name, values in self._records.items()}
        out = {name: rec[name].mean() for name in ("gen_loss", "mix_loss", "real_loss", "unlearn_loss")
               if name in rec}
        if "share" in rec:
            share, lam = rec["share"], rec["lam"]
            out.update(mask_forget_share=share.mean(), mask_spatial_std=rec["spatial_std"].mean(),
                       mask_lambda_gap=(share - lam).abs().mean())
            defined = len(share) > 1 and share.std() > 0 and lam.std() > 0
            out["mask_lambda_corr"] = torch.corrcoef(torch.stack([share, lam]))[0, 1] if defined else math.nan
        return {name: float(value) for name, value in out.items()}

    @torch.no_grad()
    def _original_outputs(self, idx: torch.Tensor, *, with_features: bool):
        """f_D's logits (and feature maps G reads) for the given training samples, batched."""
        logits, features = [], []
        for chunk in idx.split(self.cfg.eval_batch_size):
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.cuda):
                h = self.original.features(self._inputs(chunk))
                logits.append(self.original.head(h).float())
            if with_features:
                # bf16 on the GPU halves the cache (ResNet-18 layer3 on CIFAR-10: 1.6 GB instead of 3.3).
                features.append(h.to(torch.bfloat16 if self.cuda else torch.float32).contiguous())
        return torch.cat(logits), (torch.cat(features) if with_features else None)

    # ---- checkpoint: the contract's state_dict (epoch, steps, seconds, rng, `checkpointed`) -------------
    def load_state_dict(self, state: dict) -> None:
        if "step" in state:   # a checkpoint written before MixUnlearn followed the contract (issue 19)
            state = {**state, "steps": state["step"],
                     **{name: state[name] or None for name in ("generator", "opt_generator", "ema")}}
        super().load_state_dict(state)

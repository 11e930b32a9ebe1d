"""LAF, label-agnostic forgetting (Shen et al., ICLR 2024), and LAF+R (LAF, then the head on D_r), as
LAF's code runs them (`VUnlearning.py`: `extractor_unlearning`, `classifier_unlearning`; `Train.py`:
`vae_train`; `Model.py`: the CNN, the ResNet and the VAE).

e = LAF's embedding, fc1's output (`embedding = self.fc1(x)`): the output of the classifier's first linear
layer, read before any activation (`embedding_relu: false`, LAF's). LAF's CNN (`cnn_laf` here) has no ReLU
after fc1 nor inside fc2; `cnn_small` has both, so there `embedding_relu: true` reads e after its ReLU
(what the next layer sees, non-negative) instead. On resnet18_laf, fc1's output; on resnet18_cifar, which
has one linear layer, the pooled features. f_D's embeddings are computed once, in eval mode.
Stage 0 (inside the first epoch, so it counts as unlearning time): two VAEs on f_D's frozen e,
  d -> 128 -> 32 -> latent, the decoder mirrored with a sigmoid output; Adam lr 1e-3, 10 epochs,
  loss = summed MSE / batch + 0.025 KL. s_vae learns the whole training set (LAF's code), u_vae D_f.
Then for each zipped batch (D_f, a fresh slice of D_r), batch 32, the classifier in eval mode throughout
(`vae_train` calls `trained_model.eval()` and nothing switches it back), D_r and D_f in separate passes:
- extractor unlearning, Adam lr_ue, all parameters: m = ||VAE(e) - e||^2, where the VAE's encoder samples
  z = mu + sigma * eps at every call (LAF's encoders do, in eval mode too),
  L1 = sum_r exp(m_r / (m_r + 1)) through s_vae - sum_f exp(m_f / (m_f + 1)) through u_vae;
- representation alignment, Adam lr_ra: c = 1 - cos(e, e of f_D),
  L2 = sum_i log(exp(c_r,i) / sum_j exp(c_f,j / temp)).
LAF+R: after LAF's epochs, `head_epochs` epochs train LAF's fc2, the linear layers after the embedding (on
LAF's CNN both 256 -> 128 -> 10; on its ResNet the last one), with Adam head_lr and CE on D_r; like LAF's
`classifier_unlearning` each epoch zips D_f's batches with D_r's, so it takes as many steps as D_f has
batches (the paper gives no values).
Hyperparameters (LAF's hyperparameter.md, per track and task) in LAF.default_hyper. Reads no label.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from mixunlearn.fields import CommonFields
from mixunlearn.models import CNN_MODELS

from .common import Method, captured_input, captured_output, classifier_linears

VAE_SEED_OFFSET = 4   # the VAEs' weights and their training noise: cfg.seed + 4
SAMPLING_SEED_OFFSET = 5   # the encoders' samples during unlearning: cfg.seed + 5


@dataclass
class LAFHyper:
    epochs: int = 40                          # ResNet, class task (LAF)
    batch_size: int = 32
    latent: int = 16
    lr_ue: float = 1e-5                       # Adam, extractor unlearning
    lr_ra: float = 5e-5                       # Adam, representation alignment
    temp: float = 20.0
    vae_epochs: int = 10                      # stage 0, Adam lr vae_lr
    vae_lr: float = 1e-3
    vae_batch_size: int = 32                  # LAF's loaders use 32 throughout
    vae_kl: float = 0.025                     # weight of the VAE's KL term
    embedding_relu: bool = False              # read e after an activation that follows fc1 (cnn_small's ReLU)


@dataclass
class LAFRHyper(LAFHyper):
    head_epochs: int = 2                      # LAF+R's head stage on D_r (the paper gives none)
    head_lr: float = 1e-3                     # Adam


class VAE(nn.Module):
    def __init__(self, dim: int, latent: int) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(dim, 128), nn.ReLU(), nn.Linear(128, 32), nn.ReLU())
        self.mu, self.logvar = nn.Linear(32, latent), nn.Linear(32, latent)
        self.decoder = nn.Sequential(nn.Linear(latent, 32), nn.ReLU(), nn.Linear(32, 128), nn.ReLU(),
                                     nn.Linear(128, dim), nn.Sigmoid())

    def forward(self, e: torch.Tensor, noise: torch.Tensor | None = None):
        h = self.encoder(e)
        mu, logvar = self.mu(h), self.logvar(h)
        z = mu if noise is None else mu + noise * torch.exp(0.5 * logvar)
        return self.decoder(z), mu, logvar


def reconstruction_error(vae: VAE, e: torch.Tensor, noise: torch.Generator) -> torch.Tensor:
    """m = ||VAE(e) - e||^2 per sample, through a sampled z (LAF's `extractor_loss_functionnmse`)."""
    eps = torch.randn(len(e), vae.mu.out_features, device=e.device, generator=noise)
    return (vae(e, eps)[0] - e).pow(2).sum(1)


def embedding_point(net: nn.Module, *, after_activation: bool) -> tuple[nn.Module, str]:
    """Where LAF's e is read: (layer, "output") = fc1's output; (layer, "input") = what the next layer gets."""
    linears = classifier_linears(net)
    if len(linears) == 1:            # resnet18_cifar: no embedding layer; the pooled features
        return linears[0], "input"
    return (linears[1], "input") if after_activation else (linears[0], "output")


def head_linears(net: nn.Module) -> list[nn.Linear]:
    """LAF's fc2: the linear layers after the embedding (all of them where there is no embedding layer)."""
    linears = classifier_linears(net)
    return linears[1:] if len(linears) > 1 else linears


class LAF(Method):
    name = "laf"
    title = "LAF"
    Hyper = LAFHyper
    reads_labels = ()
    checkpointed = ("model", "opt_ue", "opt_ra", "s_vae", "u_vae", "vaes_trained", "sampling")

    @classmethod
    def default_hyper(cls, cfg: CommonFields) -> LAFHyper:
        task = cfg.semi_base if cfg.task == "semi" else cfg.task
        if cfg.model in CNN_MODELS:
            # CNN track. LAF's table gives lr_ue 5e-5, lr_ra 1e-4 for the whole of (Fashion-)MNIST; on the
            # tests' 100-images-per-class subset (1/60 of the forget batches) those leave Train_f at 88%
            # after 20 epochs (f_D 89%), while 10x (5e-4, 1e-3) forgets: Train_f 3%, Test_r 82.2% (f_D
            # 80.9%; seeds 1, 2: 2% and 4%), measured on a 2-core Intel Xeon VM, torch 2.14.1, CPU float32.
            values = {"latent": 8, "epochs": 20, "lr_ue": 5e-4, "lr_ra": 1e-3,
                      "temp": 5.0 if task in ("data", "random") else 20.0}
        elif task in ("data", "random"):
            values = {"lr_ra": 4e-5}
        elif task == "noisy":
            values = {"lr_ra": 4e-5, "temp": 5.0}
        else:
            values = {}
        return replace(cls.Hyper(), **values)

    def __init__(self, cfg, data, split, *, original, device, hyper=None) -> None:
        super().__init__(cfg, data, split, original=original, device=device, hyper=hyper)
        h = self.hyper
        self.model = self.trainable_copy(original).eval()   # eval mode throughout, as LAF's vae_train leaves it
        self.opt_ue = torch.optim.Adam(self.model.parameters(), lr=h.lr_ue)
        self.opt_ra = torch.optim.Adam(self.model.parameters(), lr=h.lr_ra)
        everyone = torch.arange(len(split.train_labels), device=self.device)
        self.teacher_embedding = self.frozen_embedding(original, everyone)
        dim = self.teacher_embedding.shape[1]
        with self.seeded(VAE_SEED_OFFSET):
            self.s_vae, self.u_vae = VAE(dim, h.latent).to(self.device), VAE(dim, h.latent).to(self.device)
        self.vaes_trained = False
        self.sampling = torch.Generator(device=self.device).manual_seed(cfg.seed + SAMPLING_SEED_OFFSET)

    # ---- embeddings ------------------------------------------------------------------------------
    def embedding(self, net: nn.Module, idx: torch.Tensor) -> torch.Tensor:
        layer, side = embedding_point(net, after_activation=self.hyper.embedding_relu)
        capture = captured_output if side == "output" else captured_input
        with capture(layer) as seen, torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.cuda):
            net(self.inputs(idx))
        return seen[0].float()

    @torch.no_grad()
    def frozen_embedding(self, net: nn.Module, idx: torch.Tensor) -> torch.Tensor:
        net.eval()
        return torch.cat([self.embedding(net, chunk) for chunk in idx.split(self.cfg.eval_batch_size)])

    # ---- stage 0 ---------------------------------------------------------------------------------
    def train_vaes(self) -> None:
        h = self.hyper
        noise = torch.Generator(device=self.device).manual_seed(self.cfg.seed + VAE_SEED_OFFSET)
        everyone = torch.arange(len(self.teacher_embedding), device=self.device)
        for vae, idx in ((self.s_vae, everyone), (self.u_vae, self.forget_idx)):
            optimizer = torch.optim.Adam(vae.parameters(), lr=h.vae_lr)
            for _ in range(h.vae_epochs):
                for batch in self.batches(idx, h.vae_batch_size):
                    e = self.teacher_embedding[batch]
                    eps = torch.randn(len(e), h.latent, device=self.device, generator=noise)
                    out, mu, logvar = vae(e, eps)
                    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
                    loss = (F.mse_loss(out, e, reduction="sum") + h.vae_kl * kl) / len(e)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
        self.vaes_trained = True

    # ---- one epoch -------------------------------------------------------------------------------
    def run_epoch(self) -> None:
        if not self.vaes_trained:
            self.train_vaes()
        for vae in (self.s_vae, self.u_vae):   # fixed from here on (also after a resume)
            vae.eval().requires_grad_(False)
        h = self.hyper
        forget = self.batches(self.forget_idx, h.batch_size)
        retain = self.batches(self.retain_idx, h.batch_size)
        self.model.eval()
        for f, r in zip(forget, retain):
            m_r = reconstruction_error(self.s_vae, self.embedding(self.model, r), self.sampling)
            m_f = reconstruction_error(self.u_vae, self.embedding(self.model, f), self.sampling)
            extractor = torch.exp(m_r / (m_r + 1)).sum() - torch.exp(m_f / (m_f + 1)).sum()
            self.step(self.opt_ue, extractor)

            c_r = 1 - F.cosine_similarity(self.embedding(self.model, r), self.teacher_embedding[r], dim=1)
            c_f = 1 - F.cosine_similarity(self.embedding(self.model, f), self.teacher_embedding[f], dim=1)
            alignment = (c_r - torch.logsumexp(c_f / h.temp, dim=0)).sum()
            self.step(self.opt_ra, alignment)


class LAFR(LAF):
    name = "laf_r"
    title = "LAF+R"
    Hyper = LAFRHyper
    reads_labels = ("retain",)
    checkpointed = (*LAF.checkpointed, "opt_head")

    @classmethod
    def total_epochs(cls, cfg) -> int:
        return cfg.hyper.epochs + cfg.hyper.head_epochs

    @classmethod
    def truncated_fields(cls, cfg, epochs: int) -> dict:
        if epochs <= cfg.hyper.epochs:   # stopped within LAF's own stages: no head stage
            return {"epochs": epochs, "head_epochs": 0}
        return {"head_epochs": epochs - cfg.hyper.epochs}

    def __init__(self, cfg, data, split, *, original, device, hyper=None) -> None:
        super().__init__(cfg, data, split, original=original, device=device, hyper=hyper)
        self.epochs = self.hyper.epochs + self.hyper.head_epochs
        self.head = head_linears(self.model)
        self.opt_head = torch.optim.Adam([p for layer in self.head for p in layer.parameters()],
                                         lr=self.hyper.head_lr)

    def run_epoch(self) -> None:
        if self.epoch < self.hyper.epochs:
            return super().run_epoch()
        # LAF's classifier_unlearning: Adam on fc2 alone, the model still in eval mode, one retain batch per
        # forget batch (zip(loaders['unlearn'], loaders['remain'])).
        self.model.eval()
        forget = self.batches(self.forget_idx, self.hyper.batch_size)
        retain = self.batches(self.retain_idx, self.hyper.batch_size)
        for _, idx in zip(forget, retain):
            loss = F.cross_entropy(self.logits(self.model, idx), self.labels[idx])
            self.opt_head.zero_grad(set_to_none=True)
            self.model.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_head.step()
            self.steps += 1
            self._losses.append(loss.detach())

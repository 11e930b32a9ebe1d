"""The unlearning methods, one file each, all following common.Method's epoch contract.

    from mixunlearn.methods import METHODS, Diverged
    cls = METHODS[name]                                   # e.g. "mixunlearn", "ga"; cls.Hyper: its typed fields
    hyper = cls.default_hyper(cfg)                        # the source's values; cnn_small: the measured ones
    loop = cls(cfg, data, split, original=refs.original, device=device, hyper=hyper)
    while loop.epoch < loop.epochs:                       # epochs: hyper.epochs (LAF+R: + head_epochs)
        seconds = loop.train_epoch()                      # raises Diverged(method, epoch, loss) on NaN / Inf
        torch.save(loop.state_dict(), path)               # loop.load_state_dict(torch.load(path, weights_only=True))
    evaluate(loop.model, ...)                             # same class as f_D; loop.seconds: unlearning wall time

cls.reads_labels says which labels a method reads ("retain", "forget"); with `targets: agnostic` every
one of them is f_D's output instead (common.Method.visible_labels). From cfg a method reads only seed,
targets, task (semi_base), model, eval_batch_size, and Retrain the ref_* recipe; its own fields come as
`hyper`. MixUnlearn (mixunlearn.py) is the platform's flagship and one entry here like any other.
`build_method(cfg, ...)` builds the loop of `cfg.method`.

This package imports mixunlearn.fields, never mixunlearn.config: the config (common fields + a method's
Hyper) is the layer above it. Nothing outside this package branches on a method's name: a caller looks
the class up here.
"""
from .bad_teacher import BadTeacher
from .boundary_expanding import BoundaryExpanding
from .boundary_shrink import BoundaryShrink
from .cf_k import CFk, EUk
from .common import Diverged, Method
from .ft import FT
from .ga import GA
from .l1_sparse import L1Sparse
from .laf import LAF, LAFR
from .mixunlearn import MixUnlearn
from .neggrad_plus import NegGradPlus
from .retrain import Retrain
from .rl import RL
from .salun import SalUn
from .scrub import SCRUB

METHODS: dict[str, type[Method]] = {cls.name: cls for cls in (
    MixUnlearn, Retrain, FT, GA, NegGradPlus, RL, SalUn, L1Sparse, CFk, EUk, SCRUB, BadTeacher, BoundaryShrink,
    BoundaryExpanding, LAF, LAFR)}


def build_method(cfg, data, split, *, original, device):
    """The loop of cfg.method with cfg's values for its hyperparameters."""
    return METHODS[cfg.method](cfg, data, split, original=original, device=device)


__all__ = ["METHODS", "build_method", "Diverged", "Method", *(cls.__name__ for cls in METHODS.values())]

"""The unlearning methods, one file each, all following common.Method's epoch contract.

    from mixunlearn.methods import METHODS
    loop = METHODS[name](cfg, data, split, original=refs.original, device=device)   # hyper: its defaults
    loop.Hyper, loop.hyper, loop.reads_labels, loop.epochs, loop.train_epoch(), loop.model

Nothing outside this package branches on a method's name: a caller looks the class up here.
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
from .neggrad_plus import NegGradPlus
from .retrain import Retrain
from .rl import RL
from .salun import SalUn
from .scrub import SCRUB

METHODS: dict[str, type[Method]] = {cls.name: cls for cls in (
    Retrain, FT, GA, NegGradPlus, RL, SalUn, L1Sparse, CFk, EUk, SCRUB, BadTeacher, BoundaryShrink,
    BoundaryExpanding, LAF, LAFR)}

__all__ = ["METHODS", "Diverged", "Method", *(cls.__name__ for cls in METHODS.values())]

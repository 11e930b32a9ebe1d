"""Plain entry point: one unlearning run, printed as a table (rows f_D, Retrain and the method).

    python -m mixunlearn --dataset fashion_mnist --task class --forget-class 0
    python -m mixunlearn --method ga --lr 3e-4 --epochs 5
    python -m mixunlearn --config best.yaml --epochs 5

Every config field is a flag (`forget_class` -> `--forget-class`), each method's own fields included (a
flag of another method than --method's is refused, naming that method's fields); `--config` reads a YAML
file first (an exported best config, say) and flags override it.
"""
from __future__ import annotations

import argparse
import sys
import typing
from pathlib import Path

import yaml

from .config import ConfigError, UnlearnConfig
from .data import DatasetNotFound
from .methods import METHODS
from .run import run


def flag_fields() -> dict[str, object]:
    """Every config field of every method, with its type (a name several methods share has one type)."""
    types = dict(UnlearnConfig.field_types())
    for cls in METHODS.values():
        for name, kind in cls.field_types().items():
            if name in cls.config_fields():
                types.setdefault(name, kind)
    return types


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mixunlearn", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--config", type=Path, help="YAML file of UnlearnConfig fields; flags override it")
    parser.add_argument("--cache-dir", type=Path, help="reference models, splits and decoded data sets")
    defaults = UnlearnConfig().to_dict()
    for name, kind in flag_fields().items():
        flag = "--" + name.replace("_", "-")
        default = defaults.get(name, "the method's")
        if typing.get_origin(kind) is list:
            parser.add_argument(flag, dest=name, type=int, nargs="+", default=None, help=f"default {default}")
        elif kind is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None,
                                help=f"default {default}")
        else:
            parser.add_argument(flag, dest=name, type=kind, default=None, help=f"default {default}")
    return parser


def config_from_args(args: argparse.Namespace) -> UnlearnConfig:
    values: dict = {}
    if args.config is not None:
        if not args.config.is_file():
            raise ConfigError(f"--config {args.config}: no such file; pass the path of a YAML config")
        values = yaml.safe_load(args.config.read_text()) or {}
        if not isinstance(values, dict):
            raise ConfigError(f"--config {args.config}: expected a mapping of config fields")
    fields = flag_fields()
    overrides = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    return UnlearnConfig.from_dict({**values, **overrides}, source=str(args.config or "flags"))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
        result = run(cfg, cache_dir=args.cache_dir, progress=True)
    except (ConfigError, DatasetNotFound) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(result.table())
    print(f"forget-set indices: {result.prepared.split_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

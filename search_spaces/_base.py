"""The fixed part of a sweep or an ablation: `base` (+ `constants`) resolved to one full, validated config.

`base` is either a mapping of config fields or a reference to another file, relative to the file that
names it:

    base: {dataset: fashion_mnist, model: cnn_small}     # fields; the rest take UnlearnConfig's defaults
    base: ../runs/best.yaml                              # an exported config (a flat field mapping)
    base: ../quick.yaml#base                             # one key of another file: share a sweep's setup

`constants` (optional) then overrides single fields, so a reused base needs no copy. When it names another
`method` than the base's, only the fields every method has (data, task, models, targets, run) carry over
and the new method starts from its own defaults, as `UnlearnConfig.replace(method=...)` does:

    base: ../../quick.yaml#base                          # MixUnlearn's quick sweep: its data and f_D
    constants: {method: ga}                              # GA's own fields: its defaults, not MixUnlearn's
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from mixunlearn.config import ConfigError, UnlearnConfig

from ._yaml import load_yaml


def resolve_base(document: dict[str, Any], *, path: Path, error: type[ConfigError]) -> dict[str, Any]:
    """The full config dict of `document`'s `base` with its `constants` applied, validated."""
    return validated(given_base(document, path=path, error=error), source=f"{path}: constants", error=error)


def given_base(document: dict[str, Any], *, path: Path, error: type[ConfigError]) -> dict[str, Any]:
    """The fields `document`'s `base` and `constants` give, and only those (the base itself validated).

    What a file leaves unsaid stays unsaid here, so that fields laid over it later (a benchmark plan's
    common fields) still decide the defaults that follow from them: Retrain's recipe is ref_epochs, ref_lr,
    ... of the final config, not of the base the space file happens to reuse."""
    reference = document.get("base", {})
    base = _base_fields(reference, key="base", path=path, error=error, seen=(path.resolve(),))
    source = f"{path}: base {reference!r}" if isinstance(reference, str) else f"{path}: base"
    config = validated(base, source=source, error=error)
    constants = document.get("constants")
    if constants is None:
        constants = {}
    if not isinstance(constants, dict):
        raise error(f"{path}: constants must be a mapping of config fields to values "
                    f"(found {type(constants).__name__})")
    if constants.get("method", config["method"]) != config["method"]:
        common = UnlearnConfig.common_fields()
        base = {k: v for k, v in base.items() if k in common}
    return {**base, **constants}


def validated(values: dict[str, Any], *, source: str, error: type[ConfigError]) -> dict[str, Any]:
    """`values` through UnlearnConfig (types coerced, defaults filled); a refusal names `source`."""
    try:
        return UnlearnConfig.from_dict(values, source=source).to_dict()
    except ConfigError as exc:
        message = str(exc)
        # from_dict names its source for unknown fields and types, validate() does not.
        raise error(message if message.startswith(source) else f"{source}: {message}") from None


def _base_fields(value: Any, *, key: str, path: Path, error: type[ConfigError],
                 seen: tuple[Path, ...]) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    if not isinstance(value, str):
        raise error(f"{path}: {key} must be a mapping of config fields or a file reference such as "
                    f"'best.yaml' or '../quick.yaml#base' (found {type(value).__name__})")
    file_part, _, fragment = value.partition("#")
    target = (path.parent / file_part).resolve()
    if target in seen:
        raise error(f"{path}: {key} {value!r} refers back to a file already being read; break the cycle")
    if not target.is_file():
        raise error(f"{path}: {key} {value!r} names {target}, which does not exist; "
                    f"the path is relative to the folder of {path.name}")
    document = load_yaml(target, error=error)
    if not fragment:
        return _base_fields(document, key=value, path=target, error=error, seen=(*seen, target))
    if fragment not in document:
        raise error(f"{path}: {key} {value!r} names key {fragment!r}, which {target.name} lacks; "
                    f"it has: {', '.join(map(str, document))}")
    return _base_fields(document[fragment], key=fragment, path=target, error=error, seen=(*seen, target))

"""Reading the YAML files users edit: YAML 1.2 floats, duplicate keys refused, errors naming the file.

PyYAML implements YAML 1.1, where `1e-5` is a *string* (a float needs a dot: `1.0e-5`). Every user, and
YAML 1.2, reads it as a number, and learning rates are written that way, so the loader here resolves it
as a float. PyYAML also keeps the last of two equal keys without a word; a second `alpha:` under
`search:` or a second variant of the same name is a mistake, so it is refused with its line.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from mixunlearn.config import ConfigError

# Exponent forms YAML 1.1 misses: 1e-5, 1E5, 1.e-5, 1.0e5 (YAML 1.1 wants a dot and a signed exponent).
_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, line: int) -> None:
        super().__init__(f"key {key!r} appears twice (line {line})")
        self.key, self.line = key, line


class _Loader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: let PyYAML report it
                break
            if duplicate:
                raise _DuplicateKey(key, key_node.start_mark.line + 1)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+0123456789"))


def load_yaml(path: Path, *, error: type[ConfigError]) -> dict[str, Any]:
    """The top-level mapping of the YAML file at `path`; any problem raises `error` naming the file."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise error(f"{path}: cannot be read ({exc.strerror or exc}); check the path") from None
    try:
        document = yaml.load(text, Loader=_Loader)
    except _DuplicateKey as exc:
        raise error(f"{path}: line {exc.line}: key {exc.key!r} appears twice; keep one of them") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f"line {where.line + 1}: " if where is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise error(f"{path}: {line}not valid YAML ({problem}); fix the syntax") from None
    if not isinstance(document, dict):
        raise error(f"{path}: the file must hold a mapping of keys (found {type(document).__name__}); "
                    "see search_spaces/quick.yaml for the layout")
    return document

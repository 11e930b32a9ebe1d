"""The YAML files shipped in this package: sweep presets beside this file, each method's spaces in
methods/<method>/<track>.yaml, ablation plans in ablations/ and benchmark plans in benchmarks/.

A preset is named by its file's stem ("quick", "paper"), a method's space by `<track>/<method>`
("quick/ga", "paper/scrub"): the track is the top-level preset whose data, task and reference models the
method's space shares, so `mixsweep run quick/ga` is GA tuned against the same f_D and Retrain as
`mixsweep run quick`.
"""
from __future__ import annotations

from pathlib import Path

from ._errors import PlanError, SpaceError

_PRESETS = Path(__file__).resolve().parent
_METHOD_SPACES = _PRESETS / "methods"
_PLANS = _PRESETS / "ablations"
_BENCHMARKS = _PRESETS / "benchmarks"


def list_presets() -> list[str]:
    """Names of the shipped top-level sweep spaces, e.g. ['paper', 'paper_pareto', 'quick']."""
    return sorted(p.stem for p in _PRESETS.glob("*.yaml"))


def list_method_spaces() -> list[str]:
    """Names of the shipped per-method sweep spaces, `<track>/<method>`, e.g. ['paper/ft', ..., 'quick/scrub']."""
    return sorted(f"{p.stem}/{p.parent.name}" for p in _METHOD_SPACES.glob("*/*.yaml"))


def method_space_path(method: str, track: str) -> Path:
    """The shipped space of `method` on `track` ("quick" or "paper").

    >>> from search_spaces import method_space_path
    >>> method_space_path("ga", "quick").relative_to(method_space_path("ga", "quick").parents[2]).as_posix()
    'methods/ga/quick.yaml'
    """
    path = _METHOD_SPACES / method / f"{track.removesuffix('.yaml')}.yaml"
    if not path.is_file():
        methods = sorted(p.name for p in _METHOD_SPACES.iterdir() if p.is_dir())
        tracks = sorted({p.stem for p in _METHOD_SPACES.glob("*/*.yaml")})
        raise SpaceError(f"no shipped space for method {method!r} on track {track!r}; methods: "
                         f"{', '.join(methods)}; tracks: {', '.join(tracks)}")
    return path


def preset_path(name: str) -> Path:
    """The file of the shipped sweep space `name`: a preset ("quick" or "quick.yaml") or a method's space
    on a track ("quick/ga").

    >>> from search_spaces import preset_path
    >>> preset_path("quick").name, preset_path("paper/ga").parent.name
    ('quick.yaml', 'ga')
    """
    stem = name.removesuffix(".yaml")
    if stem in list_presets():
        return _PRESETS / f"{stem}.yaml"
    if stem in list_method_spaces():
        track, method = stem.split("/")
        return method_space_path(method, track)
    raise SpaceError(f"sweep preset {name!r} does not exist; shipped presets: {', '.join(list_presets())}; "
                     f"per-method spaces: <track>/<method>, e.g. quick/ga ({', '.join(list_method_spaces())})")


def shipped_name(path: str | Path) -> str | None:
    """The name `path` is shipped under ("quick", "quick/ga"), or None for a file of the user's own.

    >>> from search_spaces import preset_path, shipped_name
    >>> shipped_name(preset_path("quick/ga")), shipped_name("my_space.yaml")
    ('quick/ga', None)
    """
    path = Path(path).resolve()
    if path.parent == _PRESETS and path.stem in list_presets():
        return path.stem
    if path.parent.parent == _METHOD_SPACES and f"{path.stem}/{path.parent.name}" in list_method_spaces():
        return f"{path.stem}/{path.parent.name}"
    return None


def is_preset(name: str) -> bool:
    """Whether `name` names a shipped space (a preset or `<track>/<method>`), as preset_path accepts it."""
    stem = name.removesuffix(".yaml")
    return stem in list_presets() or stem in list_method_spaces()


def list_plans() -> list[str]:
    """Names of the shipped ablation plans, e.g. ['alpha_oat', 'mixunlearn_components']."""
    return _stems(_PLANS)


def plan_path(name: str) -> Path:
    """The file of the shipped ablation plan `name` ("alpha_oat" or "alpha_oat.yaml")."""
    return _shipped(_PLANS, name, kind="ablation plan")


def list_benchmarks() -> list[str]:
    """Names of the shipped benchmark plans, e.g. ['paper', 'quick']."""
    return _stems(_BENCHMARKS)


def benchmark_path(name: str) -> Path:
    """The file of the shipped benchmark plan `name` ("quick" or "quick.yaml")."""
    return _shipped(_BENCHMARKS, name, kind="benchmark plan")


def _stems(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.yaml"))


def _shipped(folder: Path, name: str, *, kind: str) -> Path:
    stem = name.removesuffix(".yaml")
    if stem not in _stems(folder):
        raise PlanError(f"{kind} {name!r} does not exist; shipped plans: {', '.join(_stems(folder))}")
    return folder / f"{stem}.yaml"

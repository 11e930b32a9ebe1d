"""Which code a benchmark measured: the commit of the checkout `mixunlearn` is imported from.

A "before" figure is taken by running a benchmark of this folder with PYTHONPATH (and the working
directory, for the `python -m mixsweep` it starts) pointing at a checkout of the old code; the record
then names that commit, not this one.
"""
from __future__ import annotations

import subprocess
from pathlib import Path


def code_measured() -> str:
    """The short commit of the code measured, with '+' when its checkout has changes to tracked files
    (results files left out: a benchmark's own output is not the code it measured)."""
    import mixunlearn

    folder = Path(mixunlearn.__file__).resolve().parents[1]

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True).stdout.strip()
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)benchmarks/results")
    return f"{git('rev-parse', '--short', 'HEAD')}{'+' if changed else ''}"

"""scripts/setup.sh installs what running MixSweep needs; the test tools only with --test.

The script runs for real, with `apt-get`, `dpkg-query`, `python` and `pyenv` on its PATH replaced by
recorders: a fresh machine (dpkg-query knows no package) is what it sees, and what it asks apt and pip
for is what a fresh clone's run would install. CI's machine has every package already.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEST_ONLY = {"openssh-server", "openssh-client", "rsync", "iproute2", "chromium", "postgresql"}
RECORDER = '#!/bin/sh\necho "$(basename "$0") $*" >> "$SETUP_LOG"\n'
FRESH_DPKG = '#!/bin/sh\necho "$(basename "$0") $*" >> "$SETUP_LOG"\nexit 1\n'   # "no such package"


def run_setup(tmp_path: Path, *flags: str) -> list[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool, body in (("apt-get", RECORDER), ("python", RECORDER), ("pyenv", RECORDER), ("sudo", RECORDER),
                       ("dpkg-query", FRESH_DPKG)):
        (bin_dir / tool).write_text(body)
        (bin_dir / tool).chmod(0o755)
    log = tmp_path / "calls.log"
    log.touch()
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "SETUP_LOG": str(log), "HOME": str(tmp_path)}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "setup.sh"), *flags], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return log.read_text().splitlines()


def installed(calls: list[str]) -> set[str]:
    return {word for call in calls if call.startswith("apt-get") and " install " in call
            for word in call.split() if not word.startswith("-") and word not in ("apt-get", "install")}


@pytest.mark.skipif(os.geteuid() != 0, reason="the recorder stands in for apt-get as root; sudo would differ")
def test_setup_without_a_flag_installs_no_test_tool(tmp_path):
    calls = run_setup(tmp_path)
    assert installed(calls) == {"dataset-fashion-mnist"}
    pip = [c for c in calls if c.startswith("python -m pip install")]
    assert pip == ["python -m pip install -q torch==2.14.1 torchvision==0.29.1", "python -m pip install -q -e ."]


@pytest.mark.skipif(os.geteuid() != 0, reason="the recorder stands in for apt-get as root; sudo would differ")
def test_setup_with_test_installs_sshd_chromium_and_postgresql(tmp_path):
    calls = run_setup(tmp_path, "--test")
    assert installed(calls) == {"dataset-fashion-mnist", *TEST_ONLY}
    assert "python -m pip install -q -e .[test]" in calls


def test_the_package_list_names_the_test_tools_only_with_test():
    def listed(*flags: str) -> list[str]:
        return subprocess.run(["bash", str(ROOT / "scripts" / "setup.sh"), "--print-packages", *flags],
                              capture_output=True, text=True, check=True).stdout.split()

    assert listed() == ["dataset-fashion-mnist"]
    assert set(listed("--test")) == {"dataset-fashion-mnist", *TEST_ONLY}


def test_ci_and_the_readme_install_the_test_tools():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    # CI starts PostgreSQL between the two, so they are separate lines there (set -e stops on a failed setup).
    assert "bash scripts/setup.sh --test" in [line.split("#")[0].strip() for line in ci]
    assert "set -euo pipefail" in ci and "python -m pytest -q" in ci
    readme = (ROOT / "README.md").read_text()
    assert "bash scripts/setup.sh --test && python -m pytest -q" in readme
    assert "bash scripts/setup.sh && python -m mixsweep demo" in readme

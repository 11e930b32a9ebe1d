#!/usr/bin/env bash
# Installs what MixSweep needs to run on a fresh Debian machine with Python 3.11; safe to re-run.
#   bash scripts/setup.sh                 # the demo's data, pinned torch, this project
#   bash scripts/setup.sh --test          # the same, plus the test suite's tools (.ci/run uses this)
#   bash scripts/setup.sh --print-packages [--test]   # the Debian packages it would install, one a line
set -euo pipefail
cd "$(dirname "$0")/.."
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

test_tools=false
print_only=false
for arg in "$@"; do
  case "$arg" in
    --test) test_tools=true ;;
    --print-packages) print_only=true ;;
    *) echo "setup.sh: unknown option $arg; use --test (test tools) or --print-packages" >&2; exit 2 ;;
  esac
done

# What running MixSweep needs from Debian: Fashion-MNIST, the demo's offline data set.
RUN_PACKAGES=(dataset-fashion-mnist)
# What only the tests need: sshd and rsync (`ray up` over SSH), iproute2 (the SSH test's network
# namespace), Chromium (the MLflow UI in a real browser), PostgreSQL (the cluster's MLflow store).
TEST_PACKAGES=(openssh-server openssh-client rsync iproute2 chromium postgresql)

packages=("${RUN_PACKAGES[@]}")
if $test_tools; then packages+=("${TEST_PACKAGES[@]}"); fi
if $print_only; then printf '%s\n' "${packages[@]}"; exit 0; fi

# Only what is missing, so a re-run (or CI's machine, which has them) touches no package list.
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Pinned torch first: these builds lie on local disk here; an unpinned torch pulls a multi-GB build.
python -m pip install -q torch==2.14.1 torchvision==0.29.1
if $test_tools; then python -m pip install -q -e ".[test]"; else python -m pip install -q -e .; fi
# pyenv exposes new console scripts (mixsweep) only after a rehash.
if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi

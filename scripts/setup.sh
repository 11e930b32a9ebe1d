#!/usr/bin/env bash
# Installs everything MixSweep needs on a fresh Debian machine with Python 3.11; safe to re-run.
#   bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# Fashion-MNIST, the demo's offline data set, comes from Debian.
if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist
fi

# The cluster tests: sshd and rsync (`ray up` over SSH), iproute2 (their network namespace), Chromium
# (the MLflow UI in a real browser).
if [ ! -x /usr/sbin/sshd ] || ! command -v rsync >/dev/null || ! command -v ip >/dev/null \
   || ! command -v chromium >/dev/null; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    openssh-server openssh-client rsync iproute2 chromium
fi

# Pinned torch first: these builds lie on local disk here; an unpinned torch pulls a multi-GB build.
python -m pip install -q torch==2.14.1 torchvision==0.29.1
python -m pip install -q -e ".[test]"
# pyenv exposes new console scripts (mixsweep) only after a rehash.
if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi

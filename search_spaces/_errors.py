"""The errors a user's YAML file can cause: each message is one sentence naming the file and the key."""
from __future__ import annotations

from mixunlearn.config import ConfigError


class SpaceError(ConfigError):
    """A sweep space file (search_spaces/*.yaml) is impossible; the message names the file, key and fix."""


class PlanError(ConfigError):
    """An ablation plan file (search_spaces/ablations/*.yaml) is impossible; the message names file and key."""

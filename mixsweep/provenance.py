"""Runs put side by side must have been judged by the same f_D and Retrain.

    refuse_mixed_references({"quick": run_a.data.tags, "paper": run_b.data.tags}, command="compare")

Every trial, `mixsweep train` run and ablation run records the sha256 of the two reference models it
used (tags mixsweep.reference.original_sha256 / retrain_sha256, trainables/references.py). Avg. Gap and
every "closer to Retrain" judgement are distances to one Retrain model: two runs measured against two
Retrain models (trained on two nodes, or two clusters: GPU training is not bit-reproducible) have
numbers that look comparable and are not. `export`, `compare`, `ablate`'s table (and `report`'s) and
`benchmark`'s table call this before they rank or tabulate anything. Runs recorded before the tags
existed carry none and are not judged.
"""
from __future__ import annotations

from collections.abc import Mapping

from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from trainables import records
from trainables.references import ORIGINAL_SHA256_TAG, RETRAIN_SHA256_TAG

from .errors import UsageError

SHOWN = 3   # run names listed per group in the refusal; the rest are counted


def references_of(tags: Mapping[str, str]) -> tuple[str, str] | None:
    """(f_D sha256, Retrain sha256) a run recorded, or None for a run that recorded none."""
    if ORIGINAL_SHA256_TAG not in tags or RETRAIN_SHA256_TAG not in tags:
        return None
    return tags[ORIGINAL_SHA256_TAG], tags[RETRAIN_SHA256_TAG]


def refuse_mixed_references(runs: Mapping[str, Mapping[str, str]], *, command: str) -> None:
    """Raise UsageError (one sentence naming the runs) when the runs {label: tags} used different references."""
    groups: dict[tuple[str, str], list[str]] = {}
    for label, tags in runs.items():
        pair = references_of(tags)
        if pair is not None:
            groups.setdefault(pair, []).append(label)
    if len(groups) < 2:
        return
    (first, first_runs), (other, other_runs) = list(groups.items())[:2]
    more = f" (and {len(groups) - 2} more sets of references)" if len(groups) > 2 else ""
    raise UsageError(
        f"{command}: {_names(first_runs)} used f_D {first[0][:12]} / Retrain {first[1][:12]} but "
        f"{_names(other_runs)} used f_D {other[0][:12]} / Retrain {other[1][:12]}{more}, so their Avg. Gap is "
        "measured against different models; put side by side only runs of one reference store (re-run the "
        "others with --references pointing at it)")


def children_tags(client: MlflowClient, *, experiment_id: str, parent_run_id: str) -> dict[str, dict[str, str]]:
    """{run name: tags} of every trial run of a sweep or ablation."""
    children = client.search_runs([experiment_id], filter_string=records.trial_runs_of(parent_run_id),
                                  run_view_type=ViewType.ALL, max_results=10_000)
    tags: dict[str, dict[str, str]] = {}
    for child in children:
        name = child.info.run_name or child.info.run_id
        tags[name if name not in tags else f"{name} ({child.info.run_id[:8]})"] = child.data.tags
    return tags


def _names(labels: list[str]) -> str:
    shown = ", ".join(labels[:SHOWN])
    return shown if len(labels) <= SHOWN else f"{shown} and {len(labels) - SHOWN} more"

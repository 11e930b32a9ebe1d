"""The refusal export, compare, ablate's table and benchmark's table share: runs judged by other references."""
from __future__ import annotations

import pytest

from mixsweep.errors import UsageError
from mixsweep.provenance import refuse_mixed_references
from trainables.references import ORIGINAL_SHA256_TAG, RETRAIN_SHA256_TAG


def tags(original: str, retrain: str) -> dict[str, str]:
    return {ORIGINAL_SHA256_TAG: original * 64, RETRAIN_SHA256_TAG: retrain * 64, "mixsweep.kind": "trial"}


def test_runs_of_one_pair_of_references_pass_and_untagged_runs_are_not_judged():
    refuse_mixed_references({"a": tags("1", "2"), "b": tags("1", "2"), "old": {"mixsweep.kind": "trial"}},
                            command="compare")
    refuse_mixed_references({}, command="compare")


def test_another_retrain_is_refused_in_one_sentence_naming_both_sides():
    with pytest.raises(UsageError) as refused:
        refuse_mixed_references({"quick": tags("1", "2"), "paper": tags("1", "3")}, command="compare")
    message = str(refused.value)
    assert message.startswith("compare: quick used f_D 111111111111 / Retrain 222222222222 but paper used ")
    assert "Retrain 333333333333" in message and "--references" in message
    assert "\n" not in message and message.count(";") == 1


def test_many_runs_are_counted_not_listed():
    runs = {f"trial_{i}": tags("1", "2") for i in range(5)} | {"odd": tags("4", "2"), "odder": tags("5", "2")}
    with pytest.raises(UsageError) as refused:
        refuse_mixed_references(runs, command="export quick")
    message = str(refused.value)
    assert "trial_0, trial_1, trial_2 and 2 more used f_D 111111111111" in message
    assert "but odd used f_D 444444444444" in message and "(and 1 more sets of references)" in message

"""Forget tasks (METHOD.md "Unlearning tasks"): sizes, per-class counts, seeding, Parquet records, refused specs."""
import pytest
import torch

from mixunlearn.config import ConfigError, UnlearnConfig
from mixunlearn.data import load_dataset
from mixunlearn.tasks import ForgetSplit, TaskSpecError, make_split

TASKS = ("class", "data", "random", "noisy", "semi")


@pytest.fixture(scope="module")
def data():
    return load_dataset("tiny")   # 60 training samples per class, 600 in all


def split_of(data, **fields) -> ForgetSplit:
    return make_split(UnlearnConfig(dataset="tiny", **fields), data)


def forget_counts(split: ForgetSplit) -> list[int]:
    """D_f's samples per (true) class."""
    return split.original_labels[split.forget_idx].bincount(minlength=10).tolist()


# ---- every task: a partition of the training set, a pure function of (data, fields, ref_seed) ---------

@pytest.mark.parametrize("task", TASKS)
def test_forget_and_retain_partition_the_training_set(data, task):
    split = split_of(data, task=task)
    n = len(data.train_labels)
    forget, retain = split.forget_idx, split.retain_idx
    assert forget.dtype == retain.dtype == torch.int64 and split.labelled.dtype == torch.bool
    assert torch.equal(forget, forget.sort().values) and torch.equal(retain, retain.sort().values)
    assert torch.equal(torch.cat([forget, retain]).sort().values, torch.arange(n))   # disjoint, union = D
    assert len(forget) > 0 and len(retain) > 0 and split.train_labels.shape == (n,)
    assert split.fingerprint == data.fingerprint and split.spec["ref_seed"] == 0


@pytest.mark.parametrize("task", TASKS)
def test_same_seed_same_split_and_another_seed_another(data, task):
    first, again, other = split_of(data, task=task), split_of(data, task=task), split_of(data, task=task, ref_seed=1)
    assert torch.equal(first.forget_idx, again.forget_idx) and torch.equal(first.labelled, again.labelled)
    assert first.key() == again.key() != other.key()
    if task == "class":   # the only task without a draw: every sample of the class, whatever the seed
        assert torch.equal(first.forget_idx, other.forget_idx)
    elif task == "semi":  # on the class base only the labelled subset is drawn
        assert not torch.equal(first.labelled, other.labelled)
    else:
        assert not torch.equal(first.forget_idx, other.forget_idx)


# ---- each task's D_f ----------------------------------------------------------------------------------

def test_class_task_forgets_every_sample_of_the_class(data):
    split = split_of(data, task="class", forget_class=3)
    assert forget_counts(split) == [0, 0, 0, 60, 0, 0, 0, 0, 0, 0]
    assert split.forget_classes == (3,) and bool(split.labelled.all())
    assert torch.equal(split.train_labels, data.train_labels)


def test_data_task_forgets_the_ratio_of_each_listed_class(data):
    split = split_of(data, task="data", data_classes=[5, 6, 7, 8, 9], data_ratio=0.4)
    assert forget_counts(split) == [0] * 5 + [24] * 5   # 40% of 60
    assert split.forget_classes == () and torch.equal(split.train_labels, data.train_labels)


def test_random_task_forgets_the_ratio_of_all_samples(data):
    split = split_of(data, task="random", random_ratio=0.1)
    assert len(split.forget_idx) == 60 and len(set(forget_counts(split))) > 1   # uniform, not stratified


def test_noisy_task_relabels_to_wrong_classes_only_within_the_noisy_classes(data):
    split = split_of(data, task="noisy", noisy_classes=[0, 1, 2, 3, 4], noise_ratio=0.6)
    assert forget_counts(split) == [36] * 5 + [0] * 5   # 60% of 60 in each noisy class
    changed = torch.nonzero(split.train_labels != data.train_labels).flatten()
    assert torch.equal(changed, split.forget_idx)   # D_f = exactly the mislabelled samples, all wrong
    assert torch.equal(split.original_labels, data.train_labels)
    wrong = split.train_labels[split.forget_idx]
    assert set(wrong.tolist()) == set(range(10))   # any wrong class, the other noisy classes included


@pytest.mark.parametrize("base, classes", [("class", (0,)), ("data", ())])
def test_semi_task_reuses_its_base_split_with_a_labelled_fraction(data, base, classes):
    split = split_of(data, task="semi", semi_base=base, label_fraction=0.1)
    base_split = split_of(data, task=base)
    assert torch.equal(split.forget_idx, base_split.forget_idx) and split.forget_classes == classes
    assert int(split.labelled.sum()) == 60   # 10% of 600
    assert split.spec["semi_base"] == base and split.spec["label_fraction"] == 0.1


def test_subset_data_gives_proportional_splits():
    small = load_dataset("tiny", train_subset=10)
    split = make_split(UnlearnConfig(dataset="tiny", task="data", data_ratio=0.4), small)
    assert forget_counts(split) == [0] * 5 + [4] * 5 and len(split.retain_idx) == 80


# ---- Parquet records ----------------------------------------------------------------------------------

@pytest.mark.parametrize("task", TASKS)
def test_parquet_round_trip_rebuilds_the_identical_split(data, task, tmp_path):
    split = split_of(data, task=task, ref_seed=7)
    loaded = ForgetSplit.load_parquet(split.save_parquet(tmp_path / "splits" / f"{split.key()}.parquet"), data)
    for name in ("forget_idx", "retain_idx", "train_labels", "labelled", "original_labels"):
        assert torch.equal(getattr(loaded, name), getattr(split, name)), name
    assert (loaded.task, loaded.forget_classes, loaded.spec, loaded.key()) == \
           (split.task, split.forget_classes, split.spec, split.key())


def test_parquet_of_other_data_is_refused(data, tmp_path):
    path = split_of(data, task="class").save_parquet(tmp_path / "split.parquet")
    with pytest.raises(TaskSpecError, match="fingerprint"):
        ForgetSplit.load_parquet(path, load_dataset("tiny", train_subset=5))


# ---- impossible specs -----------------------------------------------------------------------------------

@pytest.mark.parametrize("fields, train_subset, words", [
    ({"task": "class", "forget_class": 10}, 0, ["forget_class = 10", "out of range", "classes 0-9"]),
    ({"task": "class", "forget_class": -1}, 0, ["forget_class = -1", "classes 0-9"]),
    ({"task": "data", "data_classes": []}, 0, ["data_classes = []", "at least one class"]),
    ({"task": "data", "data_classes": [3, 12]}, 0, ["data_classes = [3, 12]", "out of range", "classes 0-9"]),
    ({"task": "data", "data_classes": [3, 3]}, 0, ["data_classes = [3, 3]", "each class once"]),
    ({"task": "noisy", "noisy_classes": [-1]}, 0, ["noisy_classes = [-1]", "out of range"]),
    ({"task": "noisy", "noisy_classes": []}, 0, ["noisy_classes = []", "at least one class"]),
    ({"task": "data", "data_ratio": 0.4}, 1, ["data_ratio = 0.4", "picks no sample", "train_subset"]),
    ({"task": "noisy", "noise_ratio": 0.2}, 1, ["noise_ratio = 0.2", "picks no sample"]),
    ({"task": "random", "random_ratio": 0.01}, 1, ["random_ratio = 0.01", "forgets none of the 10"]),
    ({"task": "random", "random_ratio": 0.99}, 1, ["random_ratio = 0.99", "D_r empty"]),
    ({"task": "noisy", "noisy_classes": list(range(10)), "noise_ratio": 0.9}, 1, ["noise_ratio = 0.9", "D_r empty"]),
    ({"task": "semi", "label_fraction": 0.01}, 1, ["label_fraction = 0.01", "labels none"]),
    ({"task": "random", "ref_seed": -3}, 0, ["ref_seed = -3", "non-negative"]),
])
def test_impossible_specs_are_refused_naming_the_field(fields, train_subset, words):
    data = load_dataset("tiny", train_subset=train_subset)
    with pytest.raises(TaskSpecError) as error:
        make_split(UnlearnConfig(dataset="tiny", **fields), data)
    assert isinstance(error.value, ConfigError)
    for word in words:
        assert word in str(error.value)


def test_a_split_built_by_hand_takes_its_original_labels_from_train_labels():
    labels = torch.tensor([0, 1, 1, 0])
    split = ForgetSplit(task="random", forget_idx=torch.tensor([1]), retain_idx=torch.tensor([0, 2, 3]),
                        train_labels=labels, labelled=torch.ones(4, dtype=torch.bool), forget_classes=(),
                        fingerprint="by-hand", spec={})
    assert torch.equal(split.original_labels, labels)

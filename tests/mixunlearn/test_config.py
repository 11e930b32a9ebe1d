"""The one config: round trips through dict/YAML/MLflow strings, and refuses bad values by name."""
import pytest
import yaml

from mixunlearn.config import ConfigError, UnlearnConfig


def test_round_trip_through_yaml_keeps_every_field():
    cfg = UnlearnConfig(dataset="mnist", alpha=1.5, data_classes=[1, 2], use_sharpen=False)
    again = UnlearnConfig.from_dict(yaml.safe_load(yaml.safe_dump(cfg.to_dict())))
    assert again == cfg


def test_mlflow_string_params_coerce_back_to_the_typed_config():
    cfg = UnlearnConfig(alpha=0.3, gen_interval=2, use_mixblock=False, noisy_classes=[0, 3])
    as_strings = {k: str(v) for k, v in cfg.to_dict().items()}
    assert UnlearnConfig.from_dict(as_strings) == cfg


@pytest.mark.parametrize("values, words", [
    ({"alpah": 1.0}, ["unknown field 'alpah'", "alpha"]),
    ({"task": "klass"}, ["task", "class, data, random, noisy, semi"]),
    ({"data_ratio": 1.5}, ["data_ratio", "between 0 and 1"]),
    ({"gen_interval": 2.5}, ["gen_interval", "int"]),
    ({"use_mixblock": "maybe"}, ["use_mixblock", "bool"]),
    ({"epochs": 0}, ["epochs", "positive"]),
    ({"use_mix_loss": False, "omega": 0.0}, ["omega", "nothing is optimised"]),
])
def test_bad_values_are_refused_naming_the_field(values, words):
    with pytest.raises(ConfigError) as error:
        UnlearnConfig.from_dict(values, source="my.yaml")
    for word in words:
        assert word in str(error.value)

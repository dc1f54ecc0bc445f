import pytest
import yaml

from gex_core.config import ConfigError, sorted_keys, validate_config

SCHEMA = "schemas/config.schema.yaml"


def test_defaults_are_filled_and_keys_sorted():
    config = {"noise": {"ratio": 0.2}, "dataset": "digits"}
    validate_config(config, SCHEMA)
    assert config["noise"] == {"kind": "symmetric", "ratio": 0.2}
    assert config["ensemble"]["chains"] == 4
    assert list(config) == sorted(config)
    assert list(config["pretrain"]) == sorted(config["pretrain"])


def test_reordered_config_is_identical_after_validation():
    with open("config.yaml") as f:
        original = yaml.safe_load(f)
    reordered = yaml.safe_load(yaml.safe_dump(original, sort_keys=True))
    a, b = dict(original), dict(reordered)
    validate_config(a, SCHEMA)
    validate_config(b, SCHEMA)
    assert repr(a) == repr(b)


def test_every_problem_is_listed_with_its_key():
    config = {"pretrain": {"lr": "1e-3", "epochs": 0}, "typo": 1}
    with pytest.raises(ConfigError) as err:
        validate_config(config, SCHEMA)
    text = str(err.value)
    assert "config key pretrain.lr: '1e-3' is not of type 'number'" in text
    assert "config key pretrain.epochs: 0 is less than the minimum of 1" in text
    assert "config key typo: unknown key" in text


def test_sorted_keys_recurses_into_lists():
    assert sorted_keys({"b": [{"d": 1, "c": 2}], "a": 0}) == {
        "a": 0,
        "b": [{"c": 2, "d": 1}],
    }

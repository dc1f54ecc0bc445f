import re

import pytest
import yaml

from gex_core.workflow.config import ConfigError, sorted_keys, validate_config

SCHEMA = "schemas/config.schema.yaml"


def test_defaults_are_filled_and_keys_sorted():
    config = {"noise": {"ratio": 0.2}, "dataset": "digits"}
    validate_config(config, SCHEMA)
    assert config["noise"] == {
        "kind": "symmetric",
        "label_file": None,
        "label_set": None,
        "pairs": None,
        "ratio": 0.2,
    }
    assert config["ensemble"]["chains"] == 4
    assert config["pretrain"]["augment"] == "none"  # auto, resolved for digits
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
    config = {"pretrain": {"lr": "fast", "epochs": 0}, "typo": 1, "seeds": ["1e3"]}
    with pytest.raises(ConfigError) as err:
        validate_config(config, SCHEMA)
    text = str(err.value)
    # the exponent hint only where the text is an exponent number
    assert "config key pretrain.lr: 'fast' is not of type 'number'\n" in text
    assert "config key seeds.0: '1e3' is not of type 'integer' (YAML reads" in text
    assert "config key pretrain.epochs: 0 is less than the minimum of 1" in text
    assert "config key typo: unknown key" in text


def test_overrides_given_as_text_are_read_as_the_schema_types():
    """Snakemake passes nested and list --config values as text ('seeds=[3,4]' gives
    ['3', '4']); the schema's types decide how they are read."""
    config = {
        "seeds": ["3", "4"],
        "noise": {"kind": "symmetric", "ratio": "0.2"},
        "pretrain": {"lr": "1e-3", "epochs": "12"},
        "ensemble": {"ft_lr": "auto", "batched": "true", "chains_per_job": "null"},
        "shard_size": "null",
    }
    validate_config(config, SCHEMA)
    assert config["seeds"] == [3, 4] and config["noise"]["ratio"] == 0.2
    assert config["pretrain"]["lr"] == 0.001 and config["pretrain"]["epochs"] == 12
    assert config["ensemble"]["ft_lr"] == "auto" and config["ensemble"]["batched"]
    assert config["ensemble"]["chains_per_job"] is None and config["shard_size"] is None


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"noise": {"ratio": float("nan")}},
            "config key noise.ratio: nan is not a finite",
        ),
        ({"noise": {"ratio": ".nan"}}, "config key noise.ratio: nan is not a finite"),
        (
            {"pretrain": {"lr": float("inf")}},
            "config key pretrain.lr: inf is not a finite",
        ),
        (
            {"seeds": [2**32]},
            "config key seeds.0: 4294967296 is greater than the maximum",
        ),
    ],
)
def test_non_finite_numbers_and_seeds_beyond_the_rng_are_named(config, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(config, SCHEMA)


def test_sorted_keys_recurses_into_lists():
    assert sorted_keys({"b": [{"d": 1, "c": 2}], "a": 0}) == {
        "a": 0,
        "b": [{"c": 2, "d": 1}],
    }


@pytest.mark.parametrize(
    ("dataset", "augment"),
    [("mnist", "crop"), ("svhn", "crop"), ("cifar10", "crop_flip"), ("npz", "none")],
)
def test_auto_augmentation_is_resolved_per_dataset(dataset, augment):
    config = {"dataset": dataset, "data_file": "x.npz"}
    validate_config(config, SCHEMA)
    assert config["pretrain"]["augment"] == augment


def test_asymmetric_pairs_default_per_dataset_and_are_required_elsewhere():
    config = {"dataset": "cifar10", "noise": {"kind": "asymmetric", "ratio": 0.2}}
    validate_config(config, SCHEMA)
    assert config["noise"]["pairs"] == [[9, 1], [2, 0], [3, 5], [5, 3], [4, 7]]
    config = {"dataset": "cifar100", "noise": {"kind": "asymmetric"}}
    with pytest.raises(ConfigError, match="noise.pairs: asymmetric noise on cifar100"):
        validate_config(config, SCHEMA)


def test_cross_field_problems_name_their_keys():
    config = {
        "dataset": "mnist",
        "noise": {"kind": "human"},
        "pretrain": {"epochs": 4, "num_checkpoints": 3},
    }
    with pytest.raises(ConfigError) as err:
        validate_config(config, SCHEMA)
    text = str(err.value)
    assert "noise.kind: human labels exist for cifar10, cifar100" in text
    assert "noise.label_file: human noise needs it" in text
    assert "noise.label_set: human noise needs it" in text
    assert "pretrain.num_checkpoints: 3 does not fit" in text
    with pytest.raises(ConfigError, match="data_file: dataset npz needs the .npz"):
        validate_config({"dataset": "npz"}, SCHEMA)
    with pytest.raises(ConfigError, match="data_file: the file name 'my data.npz'"):
        validate_config({"dataset": "npz", "data_file": "my data.npz"}, SCHEMA)


@pytest.mark.parametrize("value", ["fast", -0.1, 0])
def test_ft_lr_is_a_positive_number_or_auto(value):
    with pytest.raises(ConfigError) as err:
        validate_config({"ensemble": {"ft_lr": value}}, SCHEMA)
    assert (
        f"config key ensemble.ft_lr: {value!r} is neither a number > 0 nor 'auto'"
        in str(err.value)
    )
    config = {"ensemble": {}}
    validate_config(config, SCHEMA)
    assert config["ensemble"]["ft_lr"] == "auto"
    assert config["ensemble"]["calibration"] == {
        "grid": [0.025, 0.05, 0.1, 0.2, 0.4],
        "tolerance": "auto",
        "refine": 2,
        "pilot_chains": "all",
    }


@pytest.mark.parametrize(
    ("ensemble", "message"),
    [
        (
            {"chains_per_job": 0},
            "ensemble.chains_per_job: 0 is neither an integer >= 1 nor null",
        ),
        (
            {"chains_per_job": "all"},
            "ensemble.chains_per_job: 'all' is neither an integer >= 1 nor null",
        ),
        ({"batched": "maybe"}, "ensemble.batched: 'maybe' is not of type 'boolean'"),
        ({"augment": "flip"}, "ensemble.augment: 'flip' is not one of ['pretrain'"),
    ],
)
def test_bad_chain_settings_are_named(ensemble, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate_config({"ensemble": ensemble}, SCHEMA)


def test_fine_tuning_augmentation_defaults_to_the_pretrainings():
    config = {"dataset": "mnist", "ensemble": {}}
    validate_config(config, SCHEMA)
    assert config["pretrain"]["augment"] == config["ensemble"]["augment"] == "crop"
    assert config["ensemble"]["chains_per_job"] is None
    assert config["ensemble"]["batched"] is False
    config = {"dataset": "mnist", "ensemble": {"augment": "none"}}
    validate_config(config, SCHEMA)
    assert config["ensemble"]["augment"] == "none"

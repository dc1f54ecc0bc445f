"""Config validation with messages that name the offending key."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

import yaml

YAML_FLOAT_HINT = " (YAML reads exponent numbers without a dot, like 1e-3, as text: write 1.0e-3, or an integer in full)"
EXPONENT_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


class ConfigError(ValueError):
    """The config does not match schemas/config.schema.yaml."""


def describe_alternative(option: dict) -> str:
    """'a number > 0', "'auto'", ... for an anyOf branch of the schema."""
    if "const" in option:
        return repr(option["const"])
    kind = option.get("type", "value")
    if kind == "null":
        return "null"
    text = f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"
    for bound, sign in (("exclusiveMinimum", ">"), ("minimum", ">=")):
        if bound in option:
            text += f" {sign} {option[bound]}"
    return text


def describe_errors(config: Any, schema: dict) -> list[str]:
    """One line per schema violation: 'config key a.b: message'."""
    from jsonschema import Draft202012Validator

    lines = []
    for error in sorted(
        Draft202012Validator(schema).iter_errors(config), key=lambda e: list(e.path)
    ):
        key = ".".join(str(part) for part in error.path)
        if error.validator == "additionalProperties":
            allowed = sorted(error.schema.get("properties", {}))
            for unknown in sorted(set(error.instance) - set(allowed)):
                name = f"{key}.{unknown}" if key else unknown
                lines.append(
                    f"config key {name}: unknown key (allowed here: {', '.join(allowed)})"
                )
            continue
        key = key or "(top level)"
        message = error.message
        if error.validator == "anyOf":  # name the alternatives, not "any schema"
            message = f"{error.instance!r} is neither " + " nor ".join(
                describe_alternative(option) for option in error.validator_value
            )
        if (
            isinstance(error.instance, str)
            and error.validator == "type"
            and EXPONENT_NUMBER.fullmatch(error.instance.strip())
        ):
            message += YAML_FLOAT_HINT
        lines.append(f"config key {key}: {message}")
    return lines


def schema_types(schema: Mapping[str, Any]) -> set[str]:
    """The JSON types a schema node allows, its anyOf branches' included."""
    kind = schema.get("type", [])
    types = {kind} if isinstance(kind, str) else set(kind)
    for option in schema.get("anyOf", []):
        types |= schema_types(option)
    return types


def parsed_scalar(text: str, types: set[str]) -> Any:
    """text as the YAML value of one of `types` (integer, number, boolean, null), or
    text itself when it reads as none of them."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str) and "number" in types:
        try:  # 1e-3: YAML 1.1 wants a dot, Python does not
            value = float(value)
        except ValueError:
            return text
    wanted = {
        bool: "boolean",
        int: "integer",
        float: "number",
        type(None): "null",
        list: "array",
        dict: "object",
    }.get(type(value))
    if wanted in types or (wanted == "integer" and "number" in types):
        return value
    return text


def coerce_strings(value: Any, schema: Mapping[str, Any]) -> Any:
    """value with every string the schema wants as a number, integer, boolean, null,
    list or mapping parsed as YAML (recursively).

    Snakemake passes nested and list `--config` overrides through as text
    (`--config 'seeds=[3,4]'` gives ['3', '4']); a value the schema accepts as text, or
    that does not parse as a type the schema wants, stays as it is for the schema's
    message."""
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        return {
            key: coerce_strings(item, properties[key]) if key in properties else item
            for key, item in value.items()
        }
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [coerce_strings(item, schema["items"]) for item in value]
    types = schema_types(schema)
    if isinstance(value, str) and "string" not in types:
        consts = [option.get("const") for option in schema.get("anyOf", [])]
        if value in consts:
            return value
        parsed = parsed_scalar(value, types)
        return value if parsed is value else coerce_strings(parsed, schema)
    return value


def non_finite_numbers(value: Any, key: str = "") -> list[str]:
    """'config key a.b: nan is not a finite number' for every NaN or infinity."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        if isinstance(value, float) and not math.isfinite(value):
            return [f"config key {key}: {value} is not a finite number"]
        return []
    return [
        line
        for name, item in items
        for line in non_finite_numbers(item, f"{key}.{name}" if key else str(name))
    ]


def sorted_keys(value: Any) -> Any:
    """The same config with every mapping's keys in sorted order.

    Snakemake compares params by their repr, so without this a config whose keys were
    merely reordered (or rewritten by a YAML dumper) would rerun jobs.
    """
    if isinstance(value, dict):
        return {key: sorted_keys(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [sorted_keys(item) for item in value]
    return value


def resolve_config(config: MutableMapping) -> None:
    """Cross-field checks the schema cannot express, and the "derive it" values made
    concrete (so result paths name what ran): pretrain.augment auto -> the data set's
    augmentation, ensemble.augment pretrain -> pretrain.augment, noise.pairs null ->
    the data set's usual pairs. Raises ConfigError
    naming the key."""
    from gex_core.data.catalog import resolve_augmentation
    from gex_core.data.noise import DEFAULT_PAIRS, HUMAN_LABEL_DATASETS

    problems = []
    dataset = config["dataset"]
    pre = config["pretrain"]
    if pre["epochs"] - pre["epochs"] // 2 < pre["num_checkpoints"]:
        problems.append(
            f"config key pretrain.num_checkpoints: {pre['num_checkpoints']} does not "
            f"fit in the second half of pretrain.epochs={pre['epochs']}"
        )
    pre["augment"] = resolve_augmentation(pre["augment"], dataset)
    ensemble = config["ensemble"]
    if ensemble["augment"] == "pretrain":
        ensemble["augment"] = pre["augment"]
    if dataset == "npz":
        if not config.get("data_file"):
            problems.append("config key data_file: dataset npz needs the .npz to read")
        elif not re.fullmatch(r"[A-Za-z0-9_.-]+", Path(config["data_file"]).stem):
            problems.append(
                f"config key data_file: the file name {Path(config['data_file']).name!r} "
                "may use only letters, digits, '_', '.' and '-' (it names the results "
                "folder)"
            )
    if dataset == "folder" and not re.fullmatch(
        r"[A-Za-z0-9_.-]+", Path(config["data_dir"]).resolve().name
    ):
        problems.append(
            f"config key data_dir: the folder name {Path(config['data_dir']).name!r} "
            "may use only letters, digits, '_', '.' and '-' (it names the results folder)"
        )
    noise = config["noise"]
    if noise["kind"] == "asymmetric" and noise.get("pairs") is None:
        if dataset in DEFAULT_PAIRS:
            noise["pairs"] = [list(pair) for pair in DEFAULT_PAIRS[dataset]]
        else:
            problems.append(
                f"config key noise.pairs: asymmetric noise on {dataset} has no usual "
                "class pairs; give them as [[source, target], ...]"
            )
    if noise["kind"] == "human":
        if dataset not in HUMAN_LABEL_DATASETS:
            problems.append(
                f"config key noise.kind: human labels exist for "
                f"{', '.join(HUMAN_LABEL_DATASETS)} (CIFAR-10N/100N), not {dataset}"
            )
        for key in ("label_file", "label_set"):
            if not noise.get(key):
                problems.append(f"config key noise.{key}: human noise needs it")
    for experiment in ("relabel", "prune"):
        if config[experiment]["methods"] is None:
            config[experiment]["methods"] = [
                m for m in ("gex", "randproj") if m in config["methods"]
            ]
        missing = [
            m for m in config[experiment]["methods"] if m not in config["methods"]
        ]
        if missing:
            problems.append(
                f"config key {experiment}.methods: {', '.join(missing)} not in methods "
                "(scores must be computed to use them)"
            )
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))


def validate_config(config: MutableMapping, schema_path: str | Path) -> None:
    """Validate in place, fill defaults (Snakemake's validate), resolve derived values
    (`resolve_config`) and sort keys; on failure raise a ConfigError listing every
    offending key."""
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    with open(schema_path) as f:
        schema = yaml.safe_load(f)
    coerced = coerce_strings(dict(config), schema)
    config.clear()
    config.update(coerced)
    problems = non_finite_numbers(config) + describe_errors(config, schema)
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))
    try:
        validate(config, str(schema_path), set_default=True)
    except WorkflowError as err:  # e.g. a default that violates the schema
        raise ConfigError(f"invalid config: {err}") from None
    resolve_config(config)
    canonical = sorted_keys(dict(config))
    config.clear()
    config.update(canonical)


# Ensemble keys that decide how chains are run, not what a chain computes
ENSEMBLE_EXECUTION_KEYS = ("chains", "chains_per_job", "batched")


def chain_recipe(ensemble: Mapping[str, Any]) -> dict[str, Any]:
    """The ensemble config a chain's members depend on: without the chain count and
    the grouping of chains into jobs, so changing those reruns no existing chain."""
    return {k: v for k, v in ensemble.items() if k not in ENSEMBLE_EXECUTION_KEYS}


def label_issue_options(config: Mapping[str, Any], method: str) -> dict[str, Any]:
    """The keyword arguments of `gex_core.api.find_label_issues` that reproduce the
    workflow's label-issue table of `method` for this (validated) config: model,
    training (the pretraining recipe), ensemble (chains, their recipe and the
    calibration), options (the method's knobs) and eval_batch_size."""
    from gex_core.influence.registry import get_method

    ensemble = chain_recipe(config["ensemble"])
    calibration = ensemble.pop("calibration")
    return {
        "model": config["model"],
        "training": dict(config["pretrain"]),
        "ensemble": {
            **ensemble,
            **calibration,
            "chains": config["ensemble"]["chains"],
        },
        "options": get_method(method).applicable(config["influence"][method]),
        "eval_batch_size": config["eval_batch_size"],
        "validation_fraction": config["validation_fraction"],
    }

"""Config validation with messages that name the offending key."""

from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import yaml

YAML_FLOAT_HINT = (
    " (YAML reads exponent numbers without a dot, like 1e-3, as text: write 1.0e-3)"
)


class ConfigError(ValueError):
    """The config does not match schemas/config.schema.yaml."""


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
        if isinstance(error.instance, str) and error.validator == "type":
            try:
                float(error.instance)
                message += YAML_FLOAT_HINT
            except ValueError:
                pass
        lines.append(f"config key {key}: {message}")
    return lines


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


def validate_config(config: MutableMapping, schema_path: str | Path) -> None:
    """Validate in place, fill defaults (Snakemake's validate) and sort keys; on failure
    raise a ConfigError listing every offending key."""
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    with open(schema_path) as f:
        schema = yaml.safe_load(f)
    problems = describe_errors(config, schema)
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))
    try:
        validate(config, str(schema_path), set_default=True)
    except WorkflowError as err:  # e.g. a default that violates the schema
        raise ConfigError(f"invalid config: {err}") from None
    canonical = sorted_keys(dict(config))
    config.clear()
    config.update(canonical)

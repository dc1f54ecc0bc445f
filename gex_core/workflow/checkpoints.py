"""Model checkpoints as flax msgpack: plain arrays only, never pickle, never code."""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from flax import serialization
from flax.traverse_util import flatten_dict

from gex_core.workflow.io import write_bytes

Params = Any


def save_params(path: str | os.PathLike, tree: Params | list[Params]) -> None:
    """Serialise a parameter pytree (or a list of them) atomically to `path`."""
    host = jax.tree_util.tree_map(np.asarray, tree)
    write_bytes(
        path, serialization.msgpack_serialize(serialization.to_state_dict(host))
    )


def _read_state(path: str | os.PathLike) -> dict:
    try:
        with open(path, "rb") as f:
            state = serialization.msgpack_restore(f.read())
    except Exception as err:  # msgpack raises several unrelated types
        raise ValueError(
            f"{path}: not a gex-workflow checkpoint (flax msgpack expected): {err}"
        ) from err
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a gex-workflow checkpoint (no parameter tree)")
    return state


def _shapes(state: dict) -> dict[str, tuple[int, ...]]:
    return {"/".join(k): tuple(np.shape(v)) for k, v in flatten_dict(state).items()}


def _origin(path: str | os.PathLike) -> str:
    """Which model wrote the file, from the provenance record beside it, if any."""
    from gex_core.workflow.provenance import read_provenance

    record = read_provenance(path) or {}
    model = (record.get("params") or {}).get("model")
    if model is None:
        return "the file has no provenance record naming its model"
    return f"the file was written for model {model!r} (rule {record.get('rule')})"


def _restore_checked(
    state: dict,
    template: Params,
    path: str | os.PathLike,
    model_name: str | None = None,
    member: int | None = None,
) -> Params:
    want = _shapes(serialization.to_state_dict(template))
    got = _shapes(state)
    if want != got:
        missing = sorted(set(want) - set(got))[:3]
        extra = sorted(set(got) - set(want))[:3]
        differ = [
            f"{k}: file {got[k]} vs model {want[k]}"
            for k in sorted(set(want) & set(got))
            if want[k] != got[k]
        ][:3]
        configured = (
            "the configured model"
            if model_name is None
            else (f"the configured model {model_name!r}")
        )
        raise ValueError(
            f"{path}{'' if member is None else f'[{member}]'}: checkpoint does not "
            f"match {configured}; {_origin(path)} "
            f"(missing {missing}, unexpected {extra}, shape differences {differ})"
        )
    return serialization.from_state_dict(template, state)


def load_params(
    path: str | os.PathLike, template: Params, model_name: str | None = None
) -> Params:
    """Read a checkpoint into the structure of `template`, checking every shape.

    Raises ValueError naming the file and the first mismatching entries when the file is
    not msgpack or was written for another model: model_name (the configured model's
    name) and, from the file's provenance record, the model that wrote it.
    """
    return _restore_checked(_read_state(path), template, path, model_name)


def load_params_list(
    path: str | os.PathLike, template: Params, model_name: str | None = None
) -> list[Params]:
    """Read a list of parameter trees saved by `save_params`, checking every shape."""
    state = _read_state(path)
    if not state or not all(k.isdigit() for k in state):
        raise ValueError(f"{path}: expected a list of parameter trees")
    return [
        _restore_checked(state[str(i)], template, path, model_name, member=i)
        for i in range(len(state))
    ]

"""Data parallelism over the local devices of one process, with `jax.sharding`.

One 1-D mesh over `jax.local_devices()` with the axis "data". Parameters, optimiser
state and whole data arrays are replicated on every device; a batch is split along its
leading axis. With one device every helper here is a no-op, so single-device results
are bitwise those of code that never heard of meshes.

- Training steps (`replicated_jit` + `constrain` with `batch_sharding`): GSPMD splits
  the step and all-reduces whatever crosses the split (the gradient of the mean loss,
  batch-norm batch statistics), so a step computes the one-device numbers up to the
  order of float sums. (The research code's pmap averaged per-device gradients and
  computed batch-norm statistics per device, so its results changed with the device
  count.) A batch of B rows is split over the largest device count d dividing both B
  and the number of devices n; when d < n each of the n/d device groups computes the
  same share (a B no device count divides runs replicated: correct, not faster).
- Per-sample passes (`per_device`, used by `batching.batched_map`): every device runs
  the unchanged single-device program on its own rows (shard_map), with no
  partitioning inside. Row-wise functions need no communication, and XLA's
  partitioner is not trusted with them: on jax 0.10.2 it partitions the grouped
  convolutions of vmapped per-sample conv gradients wrongly (per-sample gradients of a
  batch-sharded CNN come out wrong). Their batches are padded to a multiple of n, so
  they always use every device.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"
_COPY_AXIS = "copy"


def data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """1-D mesh ("data",) over `devices` (default: every local device, in order)."""
    devices = jax.local_devices() if devices is None else list(devices)
    return Mesh(np.array(devices), (DATA_AXIS,))


def split_count(batch_size: int, num_devices: int) -> int:
    """Devices a batch of batch_size rows is split over: the largest count dividing both
    batch_size and num_devices (the split must be even and tile the mesh)."""
    return math.gcd(batch_size, num_devices)


def replicated(mesh: Mesh) -> NamedSharding | None:
    """Every device holds the whole array; None on a one-device mesh (no placement)."""
    if mesh.size == 1:
        return None
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh, batch_size: int) -> NamedSharding | None:
    """Leading axis of a (batch_size, ...) array split over `split_count` devices of the
    mesh, copies over the rest; None on a one-device mesh."""
    if mesh.size == 1:
        return None
    split = split_count(batch_size, mesh.size)
    if split == mesh.size:
        return NamedSharding(mesh, PartitionSpec(DATA_AXIS))
    # Same devices in the same order, viewed as (split, copies): a sharding over them
    # is compatible with arrays replicated over `mesh`.
    groups = Mesh(mesh.devices.reshape(split, -1), (DATA_AXIS, _COPY_AXIS))
    return NamedSharding(groups, PartitionSpec(DATA_AXIS))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """The pytree's arrays copied to every device of the mesh (unchanged on one)."""
    sharding = replicated(mesh)
    return tree if sharding is None else jax.device_put(tree, sharding)


def constrain(tree: Any, sharding: NamedSharding | None) -> Any:
    """Inside jit: lay the pytree's arrays out as `sharding` (None: leave to XLA)."""
    if sharding is None:
        return tree
    return jax.lax.with_sharding_constraint(tree, sharding)


def replicated_jit(fn: Callable, mesh: Mesh) -> Callable:
    """`jax.jit(fn)` whose arguments and results are all replicated over the mesh; fn
    splits its batches itself (`constrain` with `batch_sharding`). Plain jit on one
    device. Explicit in/out shardings keep results on the mesh whatever layout GSPMD
    picks inside, and place uncommitted arguments (host arrays, fresh keys)."""
    sharding = replicated(mesh)
    if sharding is None:
        return jax.jit(fn)
    return jax.jit(fn, in_shardings=sharding, out_shardings=sharding)


# fn -> {(mesh, num_consts, num_batched): compiled wrapper}; weak, so a closure passed
# once (and the arrays it holds) is freed with its wrapper when the caller drops it
_PER_DEVICE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def per_device(fn: Callable, mesh: Mesh, num_consts: int, num_batched: int) -> Callable:
    """jit(shard_map(fn)): call(*consts, *batched) runs fn(*consts, *rows) on every
    device of the mesh, rows its share of each batched (B, ...) argument, consts
    replicated; the results (B, ...) are the devices' rows in order.

    For row-wise fns only (row b of each result depends on row b of the batched
    arguments alone). Cached per fn: pass a long-lived fn and its shared arrays as
    consts, not a fresh closure over them, or every call compiles anew.
    """
    wrappers = _PER_DEVICE.setdefault(fn, {})
    key = (mesh, num_consts, num_batched)
    if key not in wrappers:
        ref = weakref.ref(fn)

        def body(*args):
            return ref()(*args)

        whole, rows = PartitionSpec(), PartitionSpec(DATA_AXIS)
        specs = (whole,) * num_consts + (rows,) * num_batched
        # check_vma=False: with it, gradients with respect to the replicated consts
        # inside fn would be summed over the devices (shard_map's semantics for
        # unvarying values); per-sample gradients must stay each device's own.
        wrappers[key] = jax.jit(
            jax.shard_map(
                body,
                mesh=mesh,
                in_specs=specs,
                out_specs=rows,
                check_vma=False,
            )
        )
    return wrappers[key]


def describe(mesh: Mesh) -> str:
    """E.g. "4 x cpu": the devices data-parallel work is split over."""
    return f"{mesh.size} x {mesh.devices.flat[0].device_kind}"

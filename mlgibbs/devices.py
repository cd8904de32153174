"""Chains over devices: with several devices (GPUs, or CPU devices forced with
``XLA_FLAGS=--xla_force_host_platform_device_count=N``) the chain axis of a run is sharded over them.

:func:`chain_sharding` is a ``NamedSharding`` of the chain axis over the largest number of the process's
devices that divides ``num_chains`` (``None`` on one device). The sampling programs constrain the chains'
keys and states to it (:func:`constrain_chains`, at trace time), so XLA partitions the vmapped sweep loop
along the chains: each device runs its share of the chains, the data are replicated, nothing is
exchanged between devices during the sweeps. A chain's draws do not depend on the device count (its key
is ``split(rng_key, num_chains)[c]`` whatever the layout).
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["chain_sharding", "constrain_chains", "num_chain_devices"]


def num_chain_devices(num_chains: int, num_devices: int | None = None) -> int:
    """The largest divisor of ``num_chains`` not above the device count."""
    num_devices = jax.device_count() if num_devices is None else num_devices
    return max(k for k in range(1, min(num_devices, num_chains) + 1) if num_chains % k == 0)


def chain_sharding(num_chains: int) -> NamedSharding | None:
    """The chain axis over :func:`num_chain_devices` devices, or ``None`` when that is one."""
    count = num_chain_devices(num_chains)
    if count < 2:
        return None
    mesh = Mesh(np.asarray(jax.devices()[:count]), ("chains",))
    return NamedSharding(mesh, PartitionSpec("chains"))


def constrain_chains(tree, num_chains: int):
    """Inside a traced program: ``tree``'s leaves (leading chain axis) sharded by :func:`chain_sharding`."""
    sharding = chain_sharding(num_chains)
    if sharding is None:
        return tree
    return jax.tree.map(lambda a: jax.lax.with_sharding_constraint(a, sharding), tree)

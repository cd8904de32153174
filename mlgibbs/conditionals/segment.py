"""Per-group sums of row values that stay fast when chains are ``vmap``-ed.

``jax.ops.segment_sum(values, codes)`` scatters each row into its group. Under ``jax.vmap`` over
chains, with the rows' group codes shared by every chain (the data), JAX's batching rule scatters a
window of ``num_chains`` values spread ``num_groups`` apart per row; XLA:CPU runs that about 2.5 times
slower than the same scatter with the chains as the *innermost* axis, where each row adds one
contiguous vector (measured on InstEval's 73,421 rows, 4 chains). :func:`segment_sum` is
``jax.ops.segment_sum`` with that batching rule: the chain axis is moved last, the scatter done once,
and the axis moved back. Values are identical (the same additions in the same order per chain).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.custom_batching import custom_vmap

__all__ = ["segment_sum"]


def segment_sum(values: jax.Array, codes: jax.Array, num_segments: int) -> jax.Array:
    """``out[j] = sum_{r: codes[r] = j} values[r]`` (``jax.ops.segment_sum``), batched chains innermost."""
    return _segment_sum(int(num_segments))(values, codes)


@functools.lru_cache(maxsize=None)
def _segment_sum(num_segments: int):
    @custom_vmap
    def summed(values, codes):
        return jax.ops.segment_sum(values, codes, num_segments=num_segments)

    @summed.def_vmap
    def _batched(axis_size, in_batched, values, codes):
        values_batched, codes_batched = in_batched
        if codes_batched:  # every chain its own codes: the plain batching rule
            out = jax.vmap(lambda v, c: jax.ops.segment_sum(v, c, num_segments=num_segments),
                           in_axes=(0 if values_batched else None, 0))(values, codes)
            return out, True
        if not values_batched:
            return summed(values, codes), False
        wide = jnp.moveaxis(values, 0, -1)                      # (rows, ..., chains)
        return jnp.moveaxis(summed(wide, codes), -1, 0), True   # an outer vmap nests the same way

    return summed

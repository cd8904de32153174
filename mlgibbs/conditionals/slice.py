"""Univariate slice sampling (Neal 2003), stepping out and shrinkage, as a pure JAX function."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

__all__ = ["slice_sample"]


def slice_sample(
    rng_key: jax.Array,
    x0: jax.Array,
    logdensity_fn: Callable[[jax.Array], jax.Array],
    width: jax.Array | float,
    max_steps: int = 32,
    max_shrinks: int = 128,
) -> jax.Array:
    """One slice-sampling transition that leaves ``exp(logdensity_fn)`` invariant.

    Draws the slice level ``log y = log f(x0) - Exp(1)``, places an interval of ``width`` at random
    around ``x0``, steps it out (at most ``max_steps`` widths in all, split at random between the two
    sides), then samples uniformly from it, shrinking towards ``x0`` on each rejection
    (Neal 2003, figs. 3 and 5). The shrinkage always ends, since ``x0`` lies in the slice; the cap
    ``max_shrinks`` (returning ``x0``) only guards against floating-point degeneracy.

    Parameters
    ----------
    rng_key
        PRNG key.
    x0
        Current point, a scalar.
    logdensity_fn
        Log density, up to a constant.
    width
        Initial interval width, on the scale of the target's spread.
    max_steps, max_shrinks
        Static caps on stepping out and shrinkage.

    Returns
    -------
    jax.Array
        The new point.

    References
    ----------
    Neal, R. M. (2003). Slice sampling. *Annals of Statistics* 31(3), 705-767.
    """
    key_level, key_place, key_split, key_shrink = jax.random.split(rng_key, 4)
    dtype = jnp.result_type(x0)
    width = jnp.asarray(width, dtype)
    log_level = logdensity_fn(x0) - jax.random.exponential(key_level, (), dtype)
    left = x0 - width * jax.random.uniform(key_place, (), dtype)
    right = left + width
    steps_left = jnp.floor(max_steps * jax.random.uniform(key_split, (), dtype))
    steps_right = (max_steps - 1) - steps_left

    # The loop condition is computed in the body and carried, never recomputed in ``cond``: under
    # ``vmap`` a batched while loop evaluates the predicate twice (to stop, and to select which lanes
    # take the body's result), and two compilations of ``logdensity_fn(edge) > log_level`` can round
    # differently in float32 when the density at the edge is within rounding of the level; the loop
    # then never ends (seen with 1,000 chains of the collapsed sampler).
    def outside(edge, budget):
        return (budget > 0) & (logdensity_fn(edge) > log_level)

    def step_out(edge, budget, direction):
        def body(carry):
            edge, budget, _ = carry
            edge, budget = edge + direction * width, budget - 1
            return edge, budget, outside(edge, budget)

        edge, _, _ = jax.lax.while_loop(lambda carry: carry[2], body, (edge, budget, outside(edge, budget)))
        return edge

    left = step_out(left, steps_left, -1.0)
    right = step_out(right, steps_right, 1.0)

    def shrink_cond(carry):
        _, _, _, _, accepted, count = carry
        return (~accepted) & (count < max_shrinks)

    def shrink_body(carry):
        key, left, right, _, _, count = carry
        key, key_u = jax.random.split(key)
        x1 = left + (right - left) * jax.random.uniform(key_u, (), dtype)
        accepted = logdensity_fn(x1) >= log_level
        left = jnp.where(~accepted & (x1 < x0), x1, left)
        right = jnp.where(~accepted & (x1 >= x0), x1, right)
        return key, left, right, x1, accepted, count + 1

    init = (key_shrink, left, right, x0, jnp.asarray(False), jnp.asarray(0))
    _, _, _, x1, accepted, _ = jax.lax.while_loop(shrink_cond, shrink_body, init)
    return jnp.where(accepted, x1, x0)

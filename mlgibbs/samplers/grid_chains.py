r"""The ``"grid"`` sampler's chains with their sweeps in parallel: the same draws as scanning its step.

A sweep of :func:`~mlgibbs.samplers.grid.grid_kernel` (with the grid tabulated) reads only the current scales
``t = (log sigma_y^2, log sigma_alpha^2)`` of the state it is given:

1. the proposal ``t' ~ q`` and the uniform its acceptance compares with come from the sweep's key alone
   (:func:`~mlgibbs.conditionals.scale_grid.propose`);
2. it keeps ``t'`` when ``log u < log w(t') - log w(t)``, ``log w = f - log q``
   (:func:`~mlgibbs.conditionals.scale_grid.log_weight_and_system`);
3. it draws ``beta, gamma`` and then ``alpha`` given the scales it kept, from keys of the sweep's own.

So a chain is a Markov chain of the scales alone, with every location an exact draw given the scales of its
sweep. :func:`run_grid_chains` runs it in that order. Every sweep's proposal is drawn ahead and ``log w(t')``
evaluated for blocks of sweeps and all chains in one batched call (``O(J)`` vectorised work instead of a loop
of small operations); the acceptances are a scan over scalars; then the locations are drawn for the kept
draws only, all at once (warm-up sweeps, and the sweeps ``thin`` skips, never draw them). Each sweep uses the
keys the step uses (sweep ``i`` of a chain ``fold_in(chain_key, first_sweep + i)``, split as
:func:`~mlgibbs.base.compose` and the updates split it), so the draws are those of
:func:`~mlgibbs.run.run_chain` scanning ``kernel.step`` (up to rounding, which can tip an acceptance whose
ratio is within rounding of its uniform: a different draw, of the same chain's law). On radon (4 chains of
1,500 sweeps, 2 CPU cores) the run takes a fraction of the scanned step's time.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mlgibbs.base import GibbsState
from mlgibbs.conditionals import update_alpha
from mlgibbs.conditionals.collapsed import draw_locations
from mlgibbs.conditionals.scale_grid import build_scale_grid, log_weight_and_system, propose
from mlgibbs.models.data import LinearData
from mlgibbs.priors import Priors

__all__ = ["run_grid_chains", "sweep_keys"]

#: at most about this many values of ``points x groups`` temporaries in one batched evaluation
_BATCH_VALUES = 1 << 22
#: sweeps per block of proposals (fewer when the groups are many: :func:`_block_size`)
_MAX_BLOCK = 128


def sweep_keys(rng_key: jax.Array):
    """The keys one sweep of the grid kernel derives from its key: ``(scales, locations, alpha)``, as
    ``compose([update_scales_and_locations_grid, update_alpha])`` and the first update split them."""
    key_first, key_alpha = jax.random.split(rng_key, 2)
    key_scales, key_locations = jax.random.split(key_first)
    return key_scales, key_locations, key_alpha


def _block_size(num_chains: int, num_groups: int) -> int:
    """Sweeps per block: a power of two, at most ``_MAX_BLOCK``, with ``block x chains x groups`` values
    bounded (memory independent of the run's length and of ``J``)."""
    fits = max(1, _BATCH_VALUES // max(num_chains * num_groups, 1))
    return min(_MAX_BLOCK, 1 << (fits.bit_length() - 1))


def _scales(state: GibbsState, dtype) -> jax.Array:
    return jnp.stack([2.0 * jnp.log(state.sigma_y), 2.0 * jnp.log(state.sigma_alpha)]).astype(dtype)


def run_grid_chains(priors: Priors, chain_keys: jax.Array, initial_states: GibbsState, data: LinearData, *,
                    num_draws: int, num_warmup, thin, first_sweep=0, record=None, progress: bool = False):
    """Run every chain of the grid sampler (module docstring): ``num_warmup + num_draws * thin`` sweeps, the kept
    draw ``d`` the state after sweep ``num_warmup + (d + 1) thin - 1``, as :func:`~mlgibbs.run.run_chain`.

    A pure function (``jit``); ``chain_keys`` ``(C,)`` and ``initial_states`` (leading axis ``C``) per chain;
    ``num_warmup``, ``thin`` and ``first_sweep`` may be traced (a new length does not compile again);
    ``data`` needs a grouping factor, and its ``scale_grid`` (tabulated here once when ``None``). ``record``
    maps a state to what is kept of it (default the state); ``progress`` tells :mod:`mlgibbs.progress` after
    each block of sweeps. Returns the kept records, leading axes ``(C, num_draws)``.
    """
    record = record or (lambda state: state)
    grid = data.scale_grid if data.scale_grid is not None else build_scale_grid(data, priors)
    dtype = initial_states.sigma_y.dtype
    num_chains = chain_keys.shape[0]
    block = _block_size(num_chains, data.groups.counts.shape[0])
    num_warmup = jnp.asarray(num_warmup, jnp.int32)
    thin = jnp.asarray(thin, jnp.int32)
    first_sweep = jnp.asarray(first_sweep, jnp.int32)
    total = num_warmup + num_draws * thin

    def weight(t):
        return log_weight_and_system(t, data, priors, grid)[0]

    def proposals(chain_key, start):
        """The block's proposals and log uniforms, and ``log w`` at the proposals."""
        def one(i):
            return propose(sweep_keys(jax.random.fold_in(chain_key, first_sweep + i))[0], grid)
        t, log_u = jax.vmap(one)(start + jnp.arange(block, dtype=jnp.int32))
        return t.astype(dtype), log_u.astype(dtype), jax.vmap(weight)(t.astype(dtype))

    def accept(carry, x):
        """One sweep's acceptance, every chain: ``carry = (t, log w)`` of the current scales."""
        t, w = carry
        t_new, log_u, w_new, valid = x
        keep = valid & (log_u < w_new - w)
        t = jnp.where(keep[:, None], t_new, t)
        return (t, jnp.where(keep, w_new, w)), t

    def run_block(b, carry):
        t, w, kept = carry
        start = b * block
        t_new, log_u, w_new = jax.vmap(proposals, in_axes=(0, None))(chain_keys, start)   # (C, block, ...)
        sweeps = start + jnp.arange(block, dtype=jnp.int32)
        valid = jnp.broadcast_to((sweeps < total)[:, None], (block, num_chains))
        (t, w), path = jax.lax.scan(accept, (t, w), (jnp.swapaxes(t_new, 0, 1), jnp.swapaxes(log_u, 0, 1),
                                                     jnp.swapaxes(w_new, 0, 1), valid))
        after = sweeps - num_warmup
        is_kept = (sweeps < total) & (after >= 0) & (after % thin == thin - 1)
        slot = jnp.where(is_kept, after // thin, num_draws)           # out of range: dropped
        kept = kept.at[:, slot].set(jnp.swapaxes(path, 0, 1), mode="drop")
        if progress:
            from mlgibbs.progress import report

            report(jnp.minimum(start + block, total) - 1, total)
        return t, w, kept

    t0 = jax.vmap(lambda s: _scales(s, dtype))(initial_states)
    w0 = jax.vmap(weight)(t0)
    kept = jnp.zeros((num_chains, num_draws, 2), dtype)
    count = (total + block - 1) // block
    _, _, kept = jax.lax.fori_loop(0, count, run_block, (t0, w0, kept))

    # the locations of the kept draws, given their scales
    def locations(chain_key, template, d, t):
        key_scales, key_locations, key_alpha = sweep_keys(
            jax.random.fold_in(chain_key, first_sweep + num_warmup + (d + 1) * thin - 1))
        del key_scales
        _, chol, h = log_weight_and_system(t, data, priors, grid)
        state = template._replace(sigma_y=jnp.exp(0.5 * t[0]), sigma_alpha=jnp.exp(0.5 * t[1]))
        state = draw_locations(key_locations, state, chol, h, data)
        return record(update_alpha(key_alpha, state, data))

    draws = jnp.arange(num_draws, dtype=jnp.int32)
    per_batch = max(1, _BATCH_VALUES // max(data.groups.counts.shape[0], 1))

    def chain(chain_key, template, t):
        def one(args):
            return locations(chain_key, template, *args)
        if per_batch >= num_draws:
            return jax.vmap(one)((draws, t))
        return jax.lax.map(one, (draws, t), batch_size=per_batch)

    at_once = per_batch // num_draws      # chains whose draws fit in one batch
    if at_once >= num_chains:
        return jax.vmap(chain)(chain_keys, initial_states, kept)
    return jax.lax.map(lambda args: chain(*args), (chain_keys, initial_states, kept),
                       batch_size=at_once if at_once > 1 else None)

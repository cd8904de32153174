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
evaluated, with the factorised system of the locations, for a block of sweeps and all chains in one batched
call (``O(J)`` vectorised work instead of a loop of small operations; the current scales' weight evaluated
again with them, so the program holds one copy of ``f``); the acceptances are a scan over scalars; the
systems of the kept draws are kept, and the locations drawn for them only, all at once (warm-up sweeps, and
the sweeps ``thin`` skips, never draw them). Each sweep uses the
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
from mlgibbs.conditionals.scale_grid import (_batch_size, build_scale_grid, log_weight_and_system, propose,
                                             scales_of, with_scales)
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
    bounded by ``_BATCH_VALUES`` (memory independent of the run's length and of ``J``): the tabulation's rule."""
    return _batch_size(num_chains * num_groups, _MAX_BLOCK, _BATCH_VALUES)


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
    if not jax.dtypes.issubdtype(chain_keys.dtype, jax.dtypes.prng_key):   # raw uint32 keys
        chain_keys = jax.random.wrap_key_data(chain_keys)
    grid = data.scale_grid if data.scale_grid is not None else build_scale_grid(data, priors)
    dtype = initial_states.sigma_y.dtype
    num_chains = chain_keys.shape[0]
    num_groups = data.groups.counts.shape[0]
    d = data.xtx.shape[0] + data.groups.U.shape[1]      # (beta, gamma): the factorised system is d x d
    block = _block_size(num_chains, num_groups + d * d)
    num_warmup = jnp.asarray(num_warmup, jnp.int32)
    thin = jnp.asarray(thin, jnp.int32)
    first_sweep = jnp.asarray(first_sweep, jnp.int32)
    total = num_warmup + num_draws * thin

    def evaluate(t):
        """``log w(t)`` and the factorised system of the locations at ``t``: the program's one copy of ``f``."""
        return log_weight_and_system(t, data, priors, grid)

    def proposals(chain_key, start):
        """The block's proposals and log uniforms, and the keys of its locations (as key data: one place in the
        program derives the sweeps' keys, whose batched derivation is slow to compile)."""
        def one(i):
            key_scales, key_locations, key_alpha = sweep_keys(jax.random.fold_in(chain_key, first_sweep + i))
            t, log_u = propose(key_scales, grid)
            return t, log_u, jax.random.key_data(key_locations), jax.random.key_data(key_alpha)
        t, log_u, key_locations, key_alpha = jax.vmap(one)(start + jnp.arange(block, dtype=jnp.int32))
        return t.astype(dtype), log_u.astype(dtype), key_locations, key_alpha

    def accept(carry, x):
        """One sweep's acceptance, every chain: ``carry = (index of the current scales among the block's
        points, its log w)``."""
        index, w = carry
        j, log_u, w_new, valid = x
        keep = valid & (log_u < w_new - w)
        index = jnp.where(keep, j, index)
        return (index, jnp.where(keep, w_new, w)), index

    def pick(a, index):
        """``a[c, index[c, k]]`` for every chain ``c`` and sweep ``k`` of the block."""
        return jax.vmap(lambda a_c, i_c: a_c[i_c])(a, index)

    def run_block(b, carry):
        t, kept = carry
        start = b * block
        t_new, log_u, key_locations, key_alpha = jax.vmap(proposals, in_axes=(0, None))(chain_keys, start)
        points = jnp.concatenate([t[:, None], t_new], axis=1)                            # the current first
        w, chol, h = jax.vmap(jax.vmap(evaluate))(points)
        sweeps = start + jnp.arange(block, dtype=jnp.int32)
        valid = jnp.broadcast_to((sweeps < total)[:, None], (block, num_chains))
        steps = jnp.broadcast_to(jnp.arange(1, block + 1, dtype=jnp.int32)[:, None], (block, num_chains))
        (last, _), index = jax.lax.scan(accept, (jnp.zeros(num_chains, jnp.int32), w[:, 0]),
                                        (steps, jnp.swapaxes(log_u, 0, 1), jnp.swapaxes(w[:, 1:], 0, 1), valid))
        index = jnp.swapaxes(index, 0, 1)                                                 # (C, block)
        after = sweeps - num_warmup
        is_kept = (sweeps < total) & (after >= 0) & (after % thin == thin - 1)
        slot = jnp.where(is_kept, after // thin, num_draws)           # out of range: dropped
        path = jax.tree.map(lambda a: pick(a, index), (points, chol, h)) + (key_locations, key_alpha)
        kept = jax.tree.map(lambda k, v: k.at[:, slot].set(v, mode="drop"), kept, path)
        if progress:
            from mlgibbs.progress import report

            report(jnp.minimum(start + block, total) - 1, total)
        return pick(points, last[:, None])[:, 0], kept

    t0 = jax.vmap(scales_of)(initial_states).astype(dtype)
    shapes = jax.eval_shape(evaluate, t0[0])
    key_data = jax.random.key_data(chain_keys[0])
    kept = jax.tree.map(lambda a: jnp.zeros((num_chains, num_draws, *a.shape), a.dtype),
                        (jax.ShapeDtypeStruct((2,), dtype), shapes[1], shapes[2], key_data, key_data))
    count = (total + block - 1) // block
    _, kept = jax.lax.fori_loop(0, count, run_block, (t0, kept))

    # the locations of the kept draws, given their scales, from the systems factorised above
    impl = jax.random.key_impl(chain_keys)

    def locations(template, t, chol, h, key_locations, key_alpha):
        key_locations = jax.random.wrap_key_data(key_locations, impl=impl)
        key_alpha = jax.random.wrap_key_data(key_alpha, impl=impl)
        state = draw_locations(key_locations, with_scales(template, t), chol, h, data)
        return record(update_alpha(key_alpha, state, data))

    per_batch = max(1, _BATCH_VALUES // max(num_groups + d * d, 1))

    def chain(template, kept_c):
        def one(args):
            return locations(template, *args)
        if per_batch >= num_draws:
            return jax.vmap(one)(kept_c)
        return jax.lax.map(one, kept_c, batch_size=per_batch)

    at_once = per_batch // num_draws      # chains whose draws fit in one batch
    if at_once >= num_chains:
        return jax.vmap(chain)(initial_states, kept)
    return jax.lax.map(lambda args: chain(*args), (initial_states, kept),
                       batch_size=at_once if at_once > 1 else None)

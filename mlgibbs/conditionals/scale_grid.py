r"""Both scales in one independence Metropolis-Hastings draw from a grid fitted to their joint marginal.

With ``alpha``, ``beta`` and ``gamma`` integrated out, the varying-intercept model leaves a two-dimensional
posterior of the scales, :func:`~mlgibbs.conditionals.collapsed.log_marginal_scales`. In
``t = (log sigma_y^2, log sigma_alpha^2)`` its log density is

.. math::

    f(t) = \log p(\sigma_y, \sigma_\alpha \mid y) + \tfrac12 (t_1 + t_2)

(the second term the Jacobian of ``sigma -> log sigma^2``). It depends on the data only, not on the chain,
so it is tabulated once per data set (:func:`build_scale_grid`): a box found by coarse passes (the cells
within 30, then 16, of the highest log density found, until they span 8 coarse cells on each axis), then a
``K x K`` grid of cells over it whose probabilities ``p_c`` are ``exp(f)`` at their centres, held as integer
counts out of ``2^30`` so that the draw's probabilities are exactly those the acceptance ratio uses (in float32
too). The proposal is the mixture

.. math::

    q(t) = (1 - \epsilon)\, \frac{p_c}{|c|}\, [t \in c] + \epsilon\, \mathrm{Cauchy}(t_1; m_1, s_1)\,
           \mathrm{Cauchy}(t_2; m_2, s_2)

(uniform within a cell drawn with probability ``p_c``; the Cauchy component, centred at the grid's mode with
the box's half-widths as scales, gives every ``t`` positive proposal density and heavier tails than the
target, so the chain is uniformly ergodic). :func:`update_scales_grid` draws ``t' ~ q`` independently of the
current ``t`` and accepts with probability

.. math::

    \min\Big\{1,\ \frac{\exp f(t')\, q(t)}{\exp f(t)\, q(t')}\Big\},

an exact Metropolis-Hastings step for any grid (the grid only decides how often it accepts: about 90% on
radon). Followed by the locations given the scales (:func:`update_scales_and_locations_grid` draws
``(beta, gamma)`` from the factorised system its ratio computed at the scales kept, then
:func:`~mlgibbs.update_alpha`), a sweep is an independence sampler of the whole posterior: nearly independent
draws for about 1.2 times the cost of a five-step sweep on radon, with no loop inside the sweep (two evaluations
of ``f``, ``O(J d^2 + d^3)`` each, and a search of the table).

At large ``n`` the posterior of ``log sigma_y^2`` is about ``sqrt(2/n)`` wide: the coarse passes zoom in until
it spans several cells (six passes reach ``n = 1e9``), and ``f``'s two ``n``-sized terms are computed relative to
a reference fixed by the data (:mod:`~mlgibbs.conditionals.collapsed`), so that float32 keeps ``f``'s differences
to about ``0.01`` nats at ``n = 1e7`` (written directly they were off by about 0.7, and the sampler accepted too
seldom to be usable there).

References
----------
Tierney, L. (1994). Markov chains for exploring posterior distributions. *Annals of Statistics* 22,
1701-1728 (independence chains).
Ritter, C. and Tanner, M. A. (1992). Facilitating the Gibbs sampler: the Gibbs stopper and the griddy-Gibbs
sampler. *JASA* 87, 861-868.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from mlgibbs.base import GibbsState
from mlgibbs.conditionals.collapsed import draw_locations, marginal_and_system
from mlgibbs.models.data import LinearData
from mlgibbs.priors import Priors

__all__ = ["ScaleGrid", "build_scale_grid", "log_scales_density", "log_proposal_density", "draw_proposal",
           "update_scales_grid", "update_scales_and_locations_grid", "TAIL_WEIGHT", "NUM_CELLS"]

#: ``epsilon``: the Cauchy component's share of the proposal.
TAIL_WEIGHT = 0.02
#: ``K``: cells per axis of the grid.
NUM_CELLS = 64
_COARSE = 32
#: a coarse pass zooms in again until the cells within 16 of the highest span this many cells on each axis
_RESOLVED = 8
#: at most this many coarse passes: each shrinks an unresolved axis about 8-fold, from a first box 12 wide in
#: ``log sigma_y^2`` to the about ``10 sqrt(2 / n)`` of a posterior resolved at ``n = 1e9``
_MAX_PASSES = 6
#: Newton steps to the mode, and the Laplace standard deviations around it that the box always holds
_NEWTON_STEPS = 25
_LAPLACE_SDS = 6.0
_BITS = 30
_TOTAL = 2**_BITS
_LOG_TOTAL = _BITS * 0.6931471805599453


class ScaleGrid(NamedTuple):
    """The tabulated proposal of the two scales (module docstring), in ``t = (log sigma_y^2, log sigma_alpha^2)``.

    Attributes
    ----------
    lower
        The box's lower corner, ``(2,)``.
    width
        A cell's widths, ``(2,)``.
    log_probs
        ``log p_c`` of the ``K x K`` cells (row-major: ``c = K i + j``), ``(K^2,)``: exactly
        ``log(counts_c / 2^30)`` (``-inf`` for an empty cell), the probabilities the draw uses.
    cumulative
        ``sum_{k <= c} counts_k`` (int32, ``(K^2,)``, the last ``2^30``): the cells' probabilities as integer
        counts out of ``2^30`` (``exp(f)`` at the centres, rounded down, the remainder given to the mode's cell),
        so that a cell drawn by comparing 30 random bits with them has probability exactly ``p_c``.
    mode
        The centre of the most probable cell, ``(2,)``: the Cauchy component's location.
    tail_scale
        The Cauchy component's scales (the box's half-widths), ``(2,)``.
    """

    lower: jax.Array
    width: jax.Array
    log_probs: jax.Array
    cumulative: jax.Array
    mode: jax.Array
    tail_scale: jax.Array


def log_scales_density(t: jax.Array, data: LinearData, priors: Priors) -> jax.Array:
    """``f(t)``: the scales' log marginal posterior in ``t = (log sigma_y^2, log sigma_alpha^2)`` (up to a
    constant), the locations integrated out; ``-inf`` where it is not finite."""
    return _density_and_system(t, data, priors)[0]


def _density_and_system(t, data, priors):
    """``f(t)`` and the factorised system of the locations at those scales (``marginal_and_system``)."""
    value, chol, h = marginal_and_system(jnp.exp(0.5 * t[0]), jnp.exp(0.5 * t[1]), data, priors)
    value = value + 0.5 * (t[0] + t[1])
    return jnp.where(jnp.isfinite(value), value, -jnp.inf), chol, h


def _cell_centres(lower, upper, num):
    """Centres of a ``num x num`` grid of cells covering the box, row-major, and the cell widths."""
    width = (upper - lower) / num
    a = lower[0] + (jnp.arange(num) + 0.5) * width[0]
    b = lower[1] + (jnp.arange(num) + 0.5) * width[1]
    A, B = jnp.meshgrid(a, b, indexing="ij")
    return jnp.stack([A.reshape(-1), B.reshape(-1)], axis=1), width


def _shrink(lower, upper, values, centres, width, drop):
    """The smallest box of whole cells holding every cell within ``drop`` of the highest value, one cell of
    margin on each side (the box stays put where no value is finite)."""
    keep = values >= jnp.max(values) - drop
    big = jnp.finfo(centres.dtype).max
    low = jnp.min(jnp.where(keep[:, None], centres, big), axis=0) - 1.5 * width
    high = jnp.max(jnp.where(keep[:, None], centres, -big), axis=0) + 1.5 * width
    ok = jnp.any(keep) & jnp.isfinite(jnp.max(values))
    return jnp.where(ok, low, lower), jnp.where(ok, high, upper)


def build_scale_grid(data: LinearData, priors: Priors, num_cells: int = NUM_CELLS) -> ScaleGrid:
    """Tabulate the proposal of the scales for ``data`` (module docstring): a pure JAX function of the data
    (``jit``, ``vmap`` over data sets). Needs a grouping factor.

    The first box spans ``log sigma_y^2`` within 6 of the within-group residual variance's log and
    ``log sigma_alpha^2`` from 16 below to 6 above the log variance of the group means (in the kernel's
    coordinates the response has unit spread); coarse ``32 x 32`` passes shrink it to the posterior's bulk
    (the cells within 30 of the highest log density, then within 16) until that bulk spans at least 8 coarse
    cells on each axis, at most 6 passes (two suffice on radon; large ``n`` needs more: at ``n = 1e7`` the
    posterior of ``log sigma_y^2`` is about ``1e-3`` wide in a first box 12 wide). After the first pass, Newton
    steps from its best centre find the mode, and every box from then on holds the mode plus and minus 6 Laplace
    standard deviations: the bulk of a posterior narrower than a coarse cell is never cut off.
    """
    g = data.groups
    dtype = data.rss_within.dtype
    tiny = jnp.finfo(dtype).tiny
    n, J = data.num_obs, g.counts.shape[0]
    p = data.xtx.shape[0]
    within = jnp.log(jnp.maximum(data.rss_within / jnp.maximum(n - J - p, 1.0), 1e-12) + tiny)
    between = jnp.log(jnp.var(g.y_mean) + 1e-12 + tiny)
    lower = jnp.stack([within - 6.0, between - 16.0]).astype(dtype)
    upper = jnp.stack([within + 6.0, between + 6.0]).astype(dtype)
    # points in batches of about 2^22 / J (a batch's temporaries hold points x groups values: bounded memory
    # at any J; one batch, a plain vmap, up to J = 1,000)
    batch = max(1, min(num_cells**2, (1 << 22) // max(J, 1)))
    density = functools.partial(jax.lax.map, lambda t: log_scales_density(t, data, priors), batch_size=batch)

    def coarse_pass(lower, upper, drop):
        centres, width = _cell_centres(lower, upper, _COARSE)
        values = density(centres)
        new_lower, new_upper = _shrink(lower, upper, values, centres, width, drop)
        # resolved: the cells kept span at least _RESOLVED cells on each axis (the new box adds 1.5 per side)
        resolved = jnp.all((new_upper - new_lower) >= (_RESOLVED + 2) * width * (1 - 1e-3))
        return new_lower, new_upper, resolved, centres[jnp.argmax(values)]

    lower, upper, _, best = coarse_pass(lower, upper, 30.0)
    # the mode by Newton's method from the best centre, and the box always holding mode +- 6 Laplace sds: a
    # posterior narrower than a coarse cell can sit between the centres, and the cells kept around the best
    # centre can then miss it (J = 1e5 groups of 2: the box missed the mode by 16 sds, acceptance 5%)
    mode, sd, valid = _newton_mode(lambda t: log_scales_density(t, data, priors), best)
    around = (mode - _LAPLACE_SDS * sd, mode + _LAPLACE_SDS * sd)

    def include_mode(lower, upper):
        return (jnp.where(valid, jnp.minimum(lower, around[0]), lower),
                jnp.where(valid, jnp.maximum(upper, around[1]), upper))

    lower, upper = include_mode(lower, upper)

    def zoom(carry):
        lower, upper, passes, _ = carry
        lower, upper, resolved, _ = coarse_pass(lower, upper, 16.0)
        lower, upper = include_mode(lower, upper)
        return lower, upper, passes + 1, resolved

    lower, upper, _, _ = jax.lax.while_loop(lambda c: (c[2] < _MAX_PASSES - 1) & ~c[3], zoom,
                                            (lower, upper, 0, jnp.bool_(False)))
    centres, width = _cell_centres(lower, upper, num_cells)
    values = density(centres)
    top = jnp.argmax(values)
    probs = jnp.exp(values - jax.scipy.special.logsumexp(values))
    counts = jnp.floor(probs * _TOTAL).astype(jnp.int32)
    counts = counts.at[top].add((_TOTAL - jnp.sum(counts)).astype(jnp.int32))   # integers summing to exactly 2^30
    log_probs = jnp.where(counts > 0, jnp.log(jnp.maximum(counts, 1).astype(dtype)) - _LOG_TOTAL, -jnp.inf)
    return ScaleGrid(lower=lower, width=width, log_probs=log_probs.astype(dtype), cumulative=jnp.cumsum(counts),
                     mode=centres[top], tail_scale=0.5 * (upper - lower))


def _newton_mode(f, start):
    """The mode of ``f`` (two variables) by damped Newton steps from ``start``, and the Laplace standard deviations
    there: ``(mode, sd, valid)``, ``valid`` where the Hessian is negative definite.

    Each step tries the Newton step (a gradient step scaled by the curvature where the Hessian is not negative
    definite), scaled down to at most 1 in each coordinate (scaled, not clipped: clipping one coordinate turns a
    Newton step on a correlated posterior away from the ascent), at fractions 1, 1/2, ..., 1/256 and 0, and keeps
    the best point: ``f`` never decreases, so a step that overshoots or leaves the support is never taken. The
    gradient and Hessian come from one forward-over-reverse pass; the standard deviations from the last step's
    Hessian (taken where that step began, by then a small fraction of a standard deviation from its end), so that
    the compiled program holds one derivative of ``f``, not two. (That derivative is about half the tabulation's
    compile time; derivatives in closed form would save it.)"""
    dtype = start.dtype
    fractions = jnp.array([2.0**-k for k in range(9)] + [0.0], dtype)
    gradient_and_hessian = jax.jacfwd(lambda t: (lambda g: (g, g))(jax.grad(f)(t)), has_aux=True)

    def step(_, carry):
        t = carry[0]
        H, g = gradient_and_hessian(t)
        valid = (H[0, 0] < 0) & (H[0, 0] * H[1, 1] - H[0, 1] * H[1, 0] > 0) & jnp.all(jnp.isfinite(H))
        safe = jnp.where(valid, H, -jnp.eye(2, dtype=dtype))
        direction = jnp.where(valid, -jnp.linalg.solve(safe, g), g / (jnp.abs(jnp.diag(H)) + 1.0))
        direction = jnp.where(jnp.all(jnp.isfinite(direction)), direction, 0.0)
        direction = direction / jnp.maximum(jnp.max(jnp.abs(direction)), 1.0)   # scaled, not clipped: same direction
        candidates = t + fractions[:, None] * direction
        values = jax.vmap(f)(candidates)
        best = jnp.argmax(jnp.where(jnp.isnan(values), -jnp.inf, values))
        sd = jnp.sqrt(jnp.diag(-jnp.linalg.inv(safe)))
        return candidates[best], sd, valid & jnp.isfinite(values[best])

    mode, sd, valid = jax.lax.fori_loop(0, _NEWTON_STEPS, step, (start, jnp.ones(2, dtype), jnp.bool_(False)))
    return mode, sd, valid


def _side(grid: ScaleGrid) -> int:
    """``K``, the cells per axis (static: from the table's shape)."""
    return round(grid.log_probs.shape[0] ** 0.5)


def log_proposal_density(grid: ScaleGrid, t: jax.Array) -> jax.Array:
    """``log q(t)`` of the mixture proposal."""
    num = _side(grid)
    index = jnp.floor((t - grid.lower) / grid.width).astype(jnp.int32)
    inside = jnp.all((index >= 0) & (index < num))
    cell = jnp.clip(index[0], 0, num - 1) * num + jnp.clip(index[1], 0, num - 1)
    log_grid = jnp.where(inside, grid.log_probs[cell] - jnp.sum(jnp.log(grid.width)), -jnp.inf)
    log_tail = jnp.sum(jax.scipy.stats.cauchy.logpdf(t, grid.mode, grid.tail_scale))
    return jnp.logaddexp(jnp.log1p(-TAIL_WEIGHT) + log_grid, jnp.log(TAIL_WEIGHT) + log_tail)


def _proposal(grid: ScaleGrid, bits: jax.Array, u: jax.Array) -> jax.Array:
    """``t ~ q`` from 32 random bits (the cell: its top 30 compared with the integer cumulative counts, so its
    probability is exactly ``p_c``) and five uniforms (a point within the cell, the Cauchy draws by inversion,
    the mixture's coin)."""
    num = grid.log_probs.shape[0]
    side = _side(grid)
    dtype = grid.lower.dtype
    r = (bits >> (32 - _BITS)).astype(jnp.int32)
    cell = jnp.minimum(jnp.sum(grid.cumulative <= r), num - 1)   # vectorised search of the table
    corner = jnp.stack([cell // side, cell % side]).astype(dtype)
    t_grid = grid.lower + (corner + u[0:2]) * grid.width
    t_tail = grid.mode + grid.tail_scale * jnp.tan(jnp.pi * (u[2:4] - 0.5))
    return jnp.where(u[4] < TAIL_WEIGHT, t_tail, t_grid)


def draw_proposal(rng_key: jax.Array, grid: ScaleGrid) -> jax.Array:
    """One draw of ``t ~ q``."""
    key_bits, key_u = jax.random.split(rng_key)
    return _proposal(grid, jax.random.bits(key_bits, (), jnp.uint32),
                     jax.random.uniform(key_u, (5,), grid.lower.dtype))


def _scales_step(rng_key, state: GibbsState, data: LinearData, priors: Priors, grid: ScaleGrid):
    """The Metropolis-Hastings step of :func:`update_scales_grid`; also returns the factorised system of the
    locations at the scales it keeps (:func:`~mlgibbs.conditionals.collapsed.marginal_and_system`)."""
    dtype = state.sigma_y.dtype
    key_bits, key_u = jax.random.split(rng_key)
    u = jax.random.uniform(key_u, (6,), dtype)     # the proposal's five and the acceptance's
    current = jnp.stack([2.0 * jnp.log(state.sigma_y), 2.0 * jnp.log(state.sigma_alpha)]).astype(dtype)
    proposal = _proposal(grid, jax.random.bits(key_bits, (), jnp.uint32), u[:5])
    both = jnp.stack([proposal, current])     # one batched evaluation of the two points
    values, chol, h = jax.vmap(lambda t: _density_and_system(t, data, priors))(both)
    weight = values - jax.vmap(lambda t: log_proposal_density(grid, t))(both)
    log_ratio = weight[0] - weight[1]
    accept = jnp.log(u[5]) < log_ratio
    t = jnp.where(accept, proposal, current)
    kept = jnp.where(accept, 0, 1)
    system = (None if chol is None else chol[kept], h[kept])
    return state._replace(sigma_y=jnp.exp(0.5 * t[0]), sigma_alpha=jnp.exp(0.5 * t[1])), system


def update_scales_grid(rng_key: jax.Array, state: GibbsState, data: LinearData, priors: Priors,
                       grid: ScaleGrid) -> GibbsState:
    r"""Draw ``(sigma_y, sigma_alpha)`` by one independence Metropolis-Hastings step on their joint marginal
    (module docstring); the locations must be redrawn given the new scales before anything conditions on
    them (:func:`~mlgibbs.conditionals.collapsed.update_locations`, then :func:`~mlgibbs.update_alpha`, or
    :func:`update_scales_and_locations_grid`)."""
    return _scales_step(rng_key, state, data, priors, grid)[0]


def update_scales_and_locations_grid(rng_key: jax.Array, state: GibbsState, data: LinearData, priors: Priors,
                                     grid: ScaleGrid) -> GibbsState:
    r""":func:`update_scales_grid`, then ``(beta, gamma) | sigma, y`` with ``alpha`` integrated out,

    .. math::

        (\beta, \gamma) \mid \sigma_y, \sigma_\alpha, y \sim \mathcal N(Q^{-1}h,\ Q^{-1}),

    drawn from the Cholesky factor of ``Q`` that the acceptance ratio already computed at the scales kept
    (:func:`~mlgibbs.conditionals.collapsed.draw_locations`): the same draw as
    :func:`~mlgibbs.conditionals.collapsed.update_locations` after :func:`update_scales_grid`, without
    building and factorising ``Q`` a third time. Follow it with :func:`~mlgibbs.update_alpha`."""
    key_scales, key_locations = jax.random.split(rng_key)
    state, (chol, h) = _scales_step(key_scales, state, data, priors, grid)
    return draw_locations(key_locations, state, chol, h, data)

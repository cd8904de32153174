r"""Both scales in one independence Metropolis-Hastings draw from a grid fitted to their joint marginal.

With ``alpha``, ``beta`` and ``gamma`` integrated out, the varying-intercept model leaves a two-dimensional
posterior of the scales, :func:`~mlgibbs.conditionals.collapsed.log_marginal_scales`. In
``t = (log sigma_y^2, log sigma_alpha^2)`` its log density is

.. math::

    f(t) = \log p(\sigma_y, \sigma_\alpha \mid y) + \tfrac12 (t_1 + t_2)

(the second term the Jacobian of ``sigma -> log sigma^2``). It depends on the data only, not on the chain,
so it is tabulated once per data set (:func:`build_scale_grid`): a box found by coarse passes (the cells
within 30, then 16, of the highest log density found, until they span 8 coarse cells on each axis), then a
``K x K`` grid of cells over it. Within cell ``c`` the proposal follows ``f``'s tangent plane,
``exp(f_c + a_c . (x - 1/2))`` (``x`` the position in the cell scaled to the unit square, ``f_c`` the value at
the centre, ``a_c`` the slopes per cell width by central differences of the tabulated values), so the cell's
probability ``p_c`` is proportional to ``exp(f_c) prod_k sinhc(a_{c,k})``, ``sinhc(a) = sinh(a/2) / (a/2)``,
held as integer counts out of ``2^30`` so that the draw's probabilities are exactly those the acceptance ratio
uses (in float32 too). The proposal is the mixture

.. math::

    q(t) = (1 - \epsilon)\, \frac{p_c}{|c|} \prod_{k=1}^2 \frac{e^{a_{c,k} (x_k - 1/2)}}{\mathrm{sinhc}(a_{c,k})}\,
           [t \in c] + \epsilon\, \mathrm{Cauchy}(t_1; m_1, s_1)\, \mathrm{Cauchy}(t_2; m_2, s_2)

(a cell drawn with probability ``p_c``, then each coordinate within it by inverting its truncated exponential
distribution; the Cauchy component, with ``epsilon = 0.005``, centred at the grid's mode with the box's
half-widths as scales, gives every ``t`` positive proposal density and heavier tails than the target, so the
chain is uniformly ergodic). :func:`update_scales_grid` draws ``t' ~ q`` independently of the current ``t`` and
accepts with probability

.. math::

    \min\Big\{1,\ \frac{\exp f(t')\, q(t)}{\exp f(t)\, q(t')}\Big\},

an exact Metropolis-Hastings step for any grid (the grid only decides how often it accepts). Within a cell
``q`` differs from ``exp f`` by ``f``'s curvature only, so on radon it accepts 98.9% of its proposals (89-90%
when the proposal was flat within a cell, 94% with flat cells four times as many). Followed by the locations
given the scales (:func:`update_scales_and_locations_grid` draws ``(beta, gamma)`` from the factorised system
its ratio computed at the scales kept, then :func:`~mlgibbs.update_alpha`), a sweep is an independence sampler
of the whole posterior: nearly independent draws (effective sample sizes 94-99% of the draws for both scales)
with no loop inside the sweep (two evaluations of ``f``, ``O(J d^2 + d^3)`` each, and a binary search of the
table). A run needs neither loop nor sweep order: :mod:`mlgibbs.samplers.grid_chains` evaluates every
proposal of a block of sweeps at once.

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
from mlgibbs.conditionals.collapsed import draw_locations, log_marginal_scales_derivatives, marginal_and_system
from mlgibbs.models.data import LinearData
from mlgibbs.priors import Priors

__all__ = ["ScaleGrid", "build_scale_grid", "log_scales_density", "log_proposal_density", "draw_proposal",
           "scales_of", "with_scales", "propose", "log_weight_and_system", "update_scales_grid", "update_scales_and_locations_grid",
           "TAIL_WEIGHT", "NUM_CELLS", "MAX_SLOPE"]

#: ``epsilon``: the Cauchy component's share of the proposal.
TAIL_WEIGHT = 0.005
#: the steepest slope of the proposal within a cell, in nats per cell width
MAX_SLOPE = 20.0
#: ``K``: cells per axis of the grid.
NUM_CELLS = 64
_COARSE = 32
#: a coarse pass zooms in again until the cells within 16 of the highest span this many cells on each axis
_RESOLVED = 8
#: at most this many coarse passes: each shrinks an unresolved axis about 8-fold, from a first box 12 wide in
#: ``log sigma_y^2`` to the about ``10 sqrt(2 / n)`` of a posterior resolved at ``n = 1e9``
_MAX_PASSES = 6
#: Newton steps to the mode, and the Laplace standard deviations around it that the box always holds
_NEWTON_STEPS = 60
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
    slope
        ``f``'s slopes in each cell per cell width, ``(K^2, 2)`` (central differences of the tabulated values,
        clipped to ``+-MAX_SLOPE``): within its cell the proposal's density is proportional to
        ``exp(slope . (x - 1/2))``, ``x`` the position in the cell scaled to the unit square.
    """

    lower: jax.Array
    width: jax.Array
    log_probs: jax.Array
    cumulative: jax.Array
    mode: jax.Array
    tail_scale: jax.Array
    slope: jax.Array


def log_scales_density(t: jax.Array, data: LinearData, priors: Priors) -> jax.Array:
    """``f(t)``: the scales' log marginal posterior in ``t = (log sigma_y^2, log sigma_alpha^2)`` (up to a
    constant), the locations integrated out; ``-inf`` where it is not finite."""
    return _density_and_system(t, data, priors)[0]


def _density_and_system(t, data, priors):
    """``f(t)`` and the factorised system of the locations at those scales (``marginal_and_system``)."""
    value, chol, h = marginal_and_system(jnp.exp(0.5 * t[0]), jnp.exp(0.5 * t[1]), data, priors)
    value = value + 0.5 * (t[0] + t[1])
    return jnp.where(jnp.isfinite(value), value, -jnp.inf), chol, h


def _density_and_derivatives(t, data, priors):
    """``f(t)``, its gradient and its Hessian (the latter two in closed form:
    :func:`~mlgibbs.conditionals.collapsed.log_marginal_scales_derivatives`, plus the Jacobian's ``1/2``)."""
    gradient, hessian = log_marginal_scales_derivatives(t, data, priors)
    return log_scales_density(t, data, priors), gradient + 0.5, hessian


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


def _batch_size(num_groups: int, points: int, values: int = 1 << 22) -> int:
    """Points evaluated at once: the largest power of two up to ``points`` with at most about ``values`` (``2^22``)
    values of ``points x groups`` temporaries (bounded memory at any ``J``; all points at once up to ``J = 4,096``).
    A power of two divides every batch of points evaluated, so that the compiled program holds one copy of ``f``."""
    fits = max(1, values // max(num_groups, 1))
    return min(points, 1 << (fits.bit_length() - 1))


class _Search(NamedTuple):
    """The state of :func:`build_scale_grid`'s one loop: coarse passes, then the final grid in parts."""
    lower: jax.Array
    upper: jax.Array
    passes: jax.Array        # coarse passes done
    zooming: jax.Array       # another coarse pass is due
    part: jax.Array          # parts of the final grid evaluated
    mode: jax.Array          # Newton's mode so far, its log density and Laplace sds, and whether it is one
    mode_value: jax.Array
    sd: jax.Array
    valid: jax.Array
    values: jax.Array        # the final grid's log densities, padded to whole parts


def build_scale_grid(data: LinearData, priors: Priors, num_cells: int = NUM_CELLS) -> ScaleGrid:
    """Tabulate the proposal of the scales for ``data`` (module docstring): a pure JAX function of the data
    (``jit``, ``vmap`` over data sets). Needs a grouping factor.

    The first box spans ``log sigma_y^2`` within 6 of the within-group residual variance's log and
    ``log sigma_alpha^2`` from 16 below to 6 above the log variance of the group means (in the kernel's
    coordinates the response has unit spread); coarse ``32 x 32`` passes shrink it to the posterior's bulk
    (the cells within 30 of the highest log density, then within 16) until that bulk spans at least 8 coarse
    cells on each axis, at most 6 passes (two suffice on radon; large ``n`` needs more: at ``n = 1e7`` the
    posterior of ``log sigma_y^2`` is about ``1e-3`` wide in a first box 12 wide). After each pass, Newton
    steps from the best point found so far find the mode, and every box from then on holds the mode plus and
    minus 6 Laplace standard deviations: the bulk of a posterior narrower than a coarse cell is never cut off.

    Every evaluation of ``f`` -- each coarse pass, each ``32 x 32`` part of the final grid -- is one call of the
    same batched function inside one loop, and Newton's steps take ``f`` with its derivatives in closed form
    (:func:`~mlgibbs.conditionals.collapsed.log_marginal_scales_derivatives`): the compiled program holds ``f``
    twice, which keeps its compilation, paid once per data shape before the first draw, short (radon, 2 cores:
    2.0-2.5 s; 3.3-4.2 s when it held ``f`` five times and JAX's Hessian through the Cholesky factor).
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

    def f(t):
        return log_scales_density(t, data, priors)

    size = _COARSE**2                      # points per evaluation
    parts = -(-num_cells**2 // size)       # evaluations of the final grid
    batch = _batch_size(J, size)
    evaluate = jax.vmap(f) if batch == size else functools.partial(jax.lax.map, f, batch_size=batch)

    def final_centres(lower, upper):
        centres, width = _cell_centres(lower, upper, num_cells)
        padded = jnp.concatenate([centres, jnp.broadcast_to(centres[:1], (parts * size - num_cells**2, 2))])
        return padded, width

    def after_coarse(s: _Search, centres, values) -> _Search:
        width = (s.upper - s.lower) / _COARSE
        drop = jnp.where(s.passes == 0, 30.0, 16.0)
        lower, upper = _shrink(s.lower, s.upper, values, centres, width, drop)
        # resolved: the cells kept span at least _RESOLVED cells on each axis (the new box adds 1.5 per side)
        resolved = jnp.all((upper - lower) >= (_RESOLVED + 2) * width * (1 - 1e-3))
        # the mode by Newton's method from the best point so far, and the box always holding mode +- 6 Laplace
        # sds: a posterior narrower than a coarse cell can sit between the centres, and the cells kept around the
        # best centre can then miss it (J = 1e5 groups of 2: the box missed the mode by 16 sds, acceptance 5%)
        top = jnp.argmax(jnp.where(jnp.isnan(values), -jnp.inf, values))
        from_centre = ~(s.mode_value >= values[top])
        start = jnp.where(from_centre, centres[top], s.mode)
        mode, value, sd, valid = _newton_search(lambda t: _density_and_derivatives(t, data, priors), start)
        keep = valid & ~(value < s.mode_value)      # never worse than the mode already found
        mode, value = jnp.where(keep, mode, s.mode), jnp.where(keep, value, s.mode_value)
        sd, valid = jnp.where(keep, sd, s.sd), keep | s.valid
        lower = jnp.where(valid, jnp.minimum(lower, mode - _LAPLACE_SDS * sd), lower)
        upper = jnp.where(valid, jnp.maximum(upper, mode + _LAPLACE_SDS * sd), upper)
        passes = s.passes + 1
        zooming = (passes < _MAX_PASSES) & ((passes == 1) | ~resolved)
        return s._replace(lower=lower, upper=upper, passes=passes, zooming=zooming, mode=mode, mode_value=value,
                          sd=sd, valid=valid)

    def after_final(s: _Search, centres, values) -> _Search:
        del centres
        values = jax.lax.dynamic_update_slice(s.values, values.astype(s.values.dtype), (s.part * size,))
        return s._replace(values=values, part=s.part + 1)

    def body(s: _Search) -> _Search:
        coarse, _ = _cell_centres(s.lower, s.upper, _COARSE)
        final = jax.lax.dynamic_slice(final_centres(s.lower, s.upper)[0], (s.part * size, jnp.int32(0)), (size, 2))
        centres = jnp.where(s.zooming, coarse, final)
        values = evaluate(centres)
        return jax.lax.cond(s.zooming, after_coarse, after_final, s, centres, values)

    start = _Search(lower=lower, upper=upper, passes=jnp.int32(0), zooming=jnp.bool_(True), part=jnp.int32(0),
                    mode=0.5 * (lower + upper), mode_value=jnp.asarray(-jnp.inf, dtype), sd=jnp.ones(2, dtype),
                    valid=jnp.bool_(False), values=jnp.zeros(parts * size, dtype))
    s = jax.lax.while_loop(lambda s: s.zooming | (s.part < parts), body, start)
    lower, upper = s.lower, s.upper
    centres, width = final_centres(lower, upper)
    values = s.values[:num_cells**2]
    slope = _slopes(values.reshape(num_cells, num_cells)).reshape(-1, 2)
    top = jnp.argmax(values)
    # a cell's mass: exp(f(centre)) times the integral of exp(slope . (x - 1/2)) over the unit cell
    mass = values + jnp.sum(_log_sinhc(slope), axis=1)
    probs = jnp.exp(mass - jax.scipy.special.logsumexp(mass))
    counts = jnp.floor(probs * _TOTAL).astype(jnp.int32)
    counts = counts.at[top].add((_TOTAL - jnp.sum(counts)).astype(jnp.int32))   # integers summing to exactly 2^30
    log_probs = jnp.where(counts > 0, jnp.log(jnp.maximum(counts, 1).astype(dtype)) - _LOG_TOTAL, -jnp.inf)
    return ScaleGrid(lower=lower, width=width, log_probs=log_probs.astype(dtype), cumulative=jnp.cumsum(counts),
                     mode=centres[top], tail_scale=0.5 * (upper - lower), slope=slope.astype(dtype))


def _slopes(values):
    """The slopes of ``f`` in each cell, per cell width, ``(K, K, 2)``: central differences of the centres'
    values (one-sided where a neighbour is outside the box or ``f`` is not finite there, 0 where both are),
    clipped to ``+-MAX_SLOPE``."""
    def along(V, axis):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (1, 1)
        P = jnp.pad(V, pad, constant_values=-jnp.inf)
        prev = jax.lax.slice_in_dim(P, 0, V.shape[axis], axis=axis)
        nxt = jax.lax.slice_in_dim(P, 2, V.shape[axis] + 2, axis=axis)
        fp, fn, fc = jnp.isfinite(prev), jnp.isfinite(nxt), jnp.isfinite(V)
        zero = jnp.zeros_like(V)
        central = jnp.where(fp & fn, 0.5 * (jnp.where(fn, nxt, 0.0) - jnp.where(fp, prev, 0.0)), zero)
        forward = jnp.where(fn & fc, jnp.where(fn, nxt, 0.0) - jnp.where(fc, V, 0.0), zero)
        backward = jnp.where(fp & fc, jnp.where(fc, V, 0.0) - jnp.where(fp, prev, 0.0), zero)
        slope = jnp.where(fp & fn, central, jnp.where(fn & fc, forward, backward))
        return jnp.clip(slope, -MAX_SLOPE, MAX_SLOPE)

    return jnp.stack([along(values, 0), along(values, 1)], axis=-1)


def _log_sinhc(a):
    """``log(sinh(a / 2) / (a / 2))``: the log of ``int_0^1 exp(a (x - 1/2)) dx``."""
    b = jnp.abs(a)
    safe = jnp.maximum(b, 1e-2)
    large = 0.5 * safe + jnp.log(-jnp.expm1(-safe)) - jnp.log(safe)
    return jnp.where(b < 1e-2, b * b / 24.0 - b**4 / 2880.0, large)


def _within_cell(a, u):
    """``x`` in ``[0, 1]`` with density ``exp(a (x - 1/2)) / sinhc(a)`` from a uniform ``u``, by inversion:
    ``x = log(1 + u (e^a - 1)) / a``."""
    small = jnp.abs(a) < 1e-6
    safe = jnp.where(small, 1.0, a)
    return jnp.clip(jnp.where(small, u, jnp.log1p(u * jnp.expm1(safe)) / safe), 0.0, 1.0)


def _newton_search(derivatives, start):
    """The mode of ``f`` (two variables) by damped Newton steps from ``start``: ``(mode, f(mode), sd, valid)``,
    ``sd`` the Laplace standard deviations there and ``valid`` where the Hessian is negative definite;
    ``derivatives(t)`` gives ``(f(t), gradient, Hessian)``.

    Each step tries the Newton step (a gradient step scaled by the curvature where the Hessian is not negative
    definite), scaled down to at most 1 in each coordinate (scaled, not clipped: clipping one coordinate turns a
    Newton step on a correlated posterior away from the ascent), and halves it, down to 1/256, until ``f`` does
    not decrease: a step that overshoots or leaves the support is never taken. It stops when a step is below
    ``1e-3`` standard deviations, or after ``_NEWTON_STEPS`` evaluations."""
    dtype = start.dtype
    eye = jnp.eye(2, dtype=dtype)

    def body(c):
        k, trial, base, base_value, base_hessian, direction, fraction, _ = c
        value, gradient, H = derivatives(trial)
        better = jnp.isfinite(value) & ~(value < base_value)
        concave = ((H[0, 0] < 0) & (H[0, 0] * H[1, 1] - H[0, 1] * H[1, 0] > 0) & jnp.all(jnp.isfinite(H))
                   & jnp.all(jnp.isfinite(gradient)))
        covariance = _inverse_2x2(-jnp.where(concave, H, -eye))
        step = jnp.where(concave, covariance @ gradient, gradient / (jnp.abs(jnp.diag(H)) + 1.0))
        step = jnp.where(jnp.all(jnp.isfinite(step)), step, 0.0)
        step = step / jnp.maximum(jnp.max(jnp.abs(step)), 1.0)    # scaled, not clipped: the same direction
        sd = jnp.sqrt(jnp.diag(covariance))
        converged = better & concave & jnp.all(jnp.abs(step) <= 1e-3 * sd)
        base = jnp.where(better, trial, base)
        base_value = jnp.where(better, value, base_value)
        base_hessian = jnp.where(better, jnp.where(concave, H, jnp.full_like(H, jnp.nan)), base_hessian)
        direction = jnp.where(better, step, direction)
        fraction = jnp.where(better, 1.0, 0.5 * fraction).astype(dtype)
        done = converged | (fraction < 2.0**-8)
        return k + 1, base + fraction * direction, base, base_value, base_hessian, direction, fraction, done

    nan = jnp.full((2, 2), jnp.nan, dtype)
    init = (jnp.int32(0), start, start, jnp.asarray(-jnp.inf, dtype), nan, jnp.zeros(2, dtype), jnp.asarray(1.0, dtype),
            jnp.bool_(False))
    _, _, mode, value, H, _, _, _ = jax.lax.while_loop(lambda c: (c[0] < _NEWTON_STEPS) & ~c[-1], body, init)
    valid = jnp.isfinite(value) & jnp.all(jnp.isfinite(H))
    sd = jnp.sqrt(jnp.diag(_inverse_2x2(-jnp.where(valid, H, -eye))))
    return mode, value, sd, valid


def _inverse_2x2(A):
    """``A^{-1}`` of a ``2 x 2`` matrix, written out (a general solver's program costs more to compile here
    than everything else in Newton's step)."""
    adjugate = jnp.array([[A[1, 1], -A[0, 1]], [-A[1, 0], A[0, 0]]])
    return adjugate / (A[0, 0] * A[1, 1] - A[0, 1] * A[1, 0])


def _side(grid: ScaleGrid) -> int:
    """``K``, the cells per axis (static: from the table's shape)."""
    return round(grid.log_probs.shape[0] ** 0.5)


def log_proposal_density(grid: ScaleGrid, t: jax.Array) -> jax.Array:
    """``log q(t)`` of the mixture proposal."""
    num = _side(grid)
    index = jnp.floor((t - grid.lower) / grid.width).astype(jnp.int32)
    inside = jnp.all((index >= 0) & (index < num))
    cell = jnp.clip(index[0], 0, num - 1) * num + jnp.clip(index[1], 0, num - 1)
    a = grid.slope[cell]
    x = (t - grid.lower) / grid.width - index.astype(t.dtype)      # the position within the cell, in [0, 1)
    within = jnp.sum(a * (x - 0.5) - _log_sinhc(a))
    log_grid = jnp.where(inside, grid.log_probs[cell] - jnp.sum(jnp.log(grid.width)) + within, -jnp.inf)
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
    cell = jnp.minimum(jnp.searchsorted(grid.cumulative, r, side="right"), num - 1)   # cumulative <= r: binary search
    corner = jnp.stack([cell // side, cell % side]).astype(dtype)
    t_grid = grid.lower + (corner + _within_cell(grid.slope[cell], u[0:2])) * grid.width
    t_tail = grid.mode + grid.tail_scale * jnp.tan(jnp.pi * (u[2:4] - 0.5))
    return jnp.where(u[4] < TAIL_WEIGHT, t_tail, t_grid)


def draw_proposal(rng_key: jax.Array, grid: ScaleGrid) -> jax.Array:
    """One draw of ``t ~ q``."""
    key_bits, key_u = jax.random.split(rng_key)
    return _proposal(grid, jax.random.bits(key_bits, (), jnp.uint32),
                     jax.random.uniform(key_u, (5,), grid.lower.dtype))


def scales_of(state: GibbsState) -> jax.Array:
    """``t = (log sigma_y^2, log sigma_alpha^2)`` of a state, in its dtype."""
    return jnp.stack([2.0 * jnp.log(state.sigma_y), 2.0 * jnp.log(state.sigma_alpha)]).astype(state.sigma_y.dtype)


def with_scales(state: GibbsState, t: jax.Array) -> GibbsState:
    """``state`` with the scales ``t = (log sigma_y^2, log sigma_alpha^2)``."""
    return state._replace(sigma_y=jnp.exp(0.5 * t[0]), sigma_alpha=jnp.exp(0.5 * t[1]))


def propose(rng_key: jax.Array, grid: ScaleGrid) -> tuple[jax.Array, jax.Array]:
    """The random part of :func:`update_scales_grid`'s step from its key: the proposal ``t' ~ q`` and the log of
    the uniform its acceptance compares with. Neither depends on the chain's state, so a run can draw every
    sweep's proposal ahead (:mod:`mlgibbs.samplers.grid_chains`)."""
    dtype = grid.lower.dtype
    key_bits, key_u = jax.random.split(rng_key)
    u = jax.random.uniform(key_u, (6,), dtype)     # the proposal's five and the acceptance's
    return _proposal(grid, jax.random.bits(key_bits, (), jnp.uint32), u[:5]), jnp.log(u[5])


def log_weight_and_system(t: jax.Array, data: LinearData, priors: Priors, grid: ScaleGrid):
    """``log w(t) = f(t) - log q(t)``, the independence sampler's importance weight, and the factorised system
    of the locations at ``t`` (:func:`~mlgibbs.conditionals.collapsed.marginal_and_system`). A step from ``t``
    to ``t'`` accepts when the log uniform is below ``log w(t') - log w(t)``."""
    value, chol, h = _density_and_system(t, data, priors)
    return value - log_proposal_density(grid, t), chol, h


def _scales_step(rng_key, state: GibbsState, data: LinearData, priors: Priors, grid: ScaleGrid):
    """The Metropolis-Hastings step of :func:`update_scales_grid`; also returns the factorised system of the
    locations at the scales it keeps (:func:`~mlgibbs.conditionals.collapsed.marginal_and_system`)."""
    dtype = state.sigma_y.dtype
    proposal, log_u = propose(rng_key, grid)
    current = scales_of(state)
    both = jnp.stack([proposal.astype(dtype), current])     # one batched evaluation of the two points
    weight, chol, h = jax.vmap(lambda t: log_weight_and_system(t, data, priors, grid))(both)
    accept = log_u < weight[0] - weight[1]
    t = jnp.where(accept, both[0], current)
    kept = jnp.where(accept, 0, 1)
    system = (None if chol is None else chol[kept], h[kept])
    return with_scales(state, t), system


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

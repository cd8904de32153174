r"""Exact Polya-Gamma draws in pure JAX (jittable, vmappable): ``PG(b, c)`` for real ``b >= 1`` (and ``b = 0``).

The Polya-Gamma distribution (Polson, Scott & Windle 2013) makes the logistic likelihood conditionally
Gaussian: with ``omega ~ PG(b, eta)``, ``e^{eta y} / (1 + e^eta)^b`` is, up to a factor free of ``eta``,
``exp(kappa eta - omega eta^2 / 2)`` with ``kappa = y - b/2``. Its first two moments are

.. math::

    E[PG(b, c)] = \frac{b}{2c} \tanh\frac{c}{2}, \qquad
    Var[PG(b, c)] = \frac{b}{4 c^3} \frac{\sinh c - c}{\cosh^2(c/2)}
    \quad (b/4 \text{ and } b/24 \text{ at } c = 0).

``PG(b, c) = J^*(b, |c|/2) / 4`` where ``J*(b, z)`` has density ``cosh^b(z) e^{-z^2 x/2} f(x | b)`` and
``f(x | b)`` is the density of ``J*(b) = J*(b, 0)``, whose Laplace transform is ``cosh(sqrt(2 s))^{-b}``.
``J*`` is infinitely divisible: ``J*(b1 + b2, z) = J*(b1, z) + J*(b2, z)`` for independent summands.

What is drawn, and how (every method exact: accept/reject decisions are made against the target density
evaluated to floating-point resolution, never against an approximation of it):

* ``PG(1, c)``: Devroye's alternating-series method (Polson, Scott & Windle 2013, section 4), see
  :func:`polyagamma_one`.
* ``PG(b, c)``, integer ``b``: the sum of ``b`` independent ``PG(1, c)``; each summand is a *lane*
  (:func:`polyagamma_lanes`).
* ``PG(b, c)``, real ``b >= 1`` not an integer: ``b = m + h`` with ``m = floor(b) - 1`` lanes of ``PG(1, c)``
  and one ``PG(h, c)``, ``1 < h < 2``, by Windle, Polson & Scott's (2014) *alternate* method, see
  :func:`_alternate_propose`.

Vectorization. Every sampler is an accept/reject scheme run on arrays: a *round* proposes one value for
each of ``s`` lanes at once (``s = n/16``, between 64 and 4096) and tests them elementwise; a lane keeps its
first accepted proposal. One ``while_loop`` streams the lanes through that buffer, the lanes a round rejected
first, then fresh ones in order (:func:`_first_accepted`), so the cost is about ``n (1 + rejection rate)``
proposals and the proposal is compiled once.

Randomness. A lane is named by a pair of integers (the row and the summand within the row; position and
``2^32 - 1`` in :func:`polyagamma_lanes`); its ``k``-th proposal uses the uniforms ``threefry2x32(lane_seed,
(k, slot))`` with ``lane_seed = threefry2x32(seed, lane name)`` and ``seed`` the two words of
``jax.random.bits(fold_in(rng_key, stream))``. A draw therefore depends on the key and on the lane's name
only, not on how lanes are batched, streamed, jitted or vmapped: ``polyagamma(key, b, c)`` gives the same
draws with ``b`` concrete (lanes) or traced (the same lanes streamed), and ``polyagamma(key, 1, c) ==
polyagamma_one(key, c)``. The hash is JAX's Threefry-2x32 written out in ``jnp`` (:func:`_threefry`), which
XLA fuses into one loop: on CPU about four times faster than the ``threefry2x32`` primitive's rolled
lowering and five to ten times faster than ``jax.random.bits`` under the default
``jax_threefry_partitionable``.
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln, log_ndtr, ndtri

__all__ = ["polyagamma", "polyagamma_one", "polyagamma_lanes", "polyagamma_mean"]

ArrayLike = jax.typing.ArrayLike

TRUNCATION = 0.64
"""Devroye's truncation point ``t`` for ``J*(1, z)`` (Polson, Scott & Windle 2013; the optimum is 2/pi)."""

DEVROYE_TERMS = 3
"""Terms of the alternating series after the first that :func:`polyagamma_one` sums (see its docstring)."""

SERIES_TOLERANCE = 1e-25
"""The alternate method sums its series until the next term is below this, relative to the test's scale."""

MAX_SERIES_TERMS = 160
"""A cap on the alternate method's series; not reached by any proposal (:func:`_alternate_series`)."""

MAX_ROUNDS = 1_000
"""A cap on the rounds beyond ``10 n / s`` (``s`` lanes a round; never reached: every proposal is accepted
with probability > 0.63, so ``n / s`` rounds and a few more suffice); lanes still undecided there come out
NaN rather than biased."""

_PI2 = math.pi**2
_PI2_8 = _PI2 / 8.0
_LOG2 = math.log(2.0)
_LOG_PI_2 = math.log(math.pi / 2.0)
_LOG_4_PI = math.log(4.0 / math.pi)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)

# Devroye's left proposal for z below _Z_SWITCH: a Levy variable 1/N^2 truncated to (0, t), drawn by the
# inverse CDF |N| = -Phi^{-1}(U Phi(-1/sqrt t)); envelope mass 4 Phi(-1/sqrt t) against 2 e^{-z} for the
# untruncated inverse Gaussian, which takes over where it is the smaller.
_LEVY_TAIL = 0.5 * math.erfc(1.0 / math.sqrt(2.0 * TRUNCATION))        # Phi(-1/sqrt t)
_LOG_MASS_LEVY = math.log(4.0 * _LEVY_TAIL)
_Z_SWITCH = -math.log(2.0 * _LEVY_TAIL)

_STREAM_PG1 = 0
_STREAM_ALTERNATE = 1
_BUFFER_FRACTION = 16
_MIN_BUFFER = 64
_MAX_BUFFER = 4096


def polyagamma_mean(b, c):
    """``E[PG(b, c)] = b tanh(c/2) / (2c)``, ``b/4`` at ``c = 0``."""
    c = jnp.asarray(c)
    small = jnp.abs(c) < 1e-4
    safe = jnp.where(small, 1.0, c)
    return jnp.where(small, b * (0.25 - c**2 / 48.0), b * jnp.tanh(safe / 2.0) / (2.0 * safe))


# --------------------------------------------------------------------------------------------------------
# Random numbers: one Threefry call per round, keyed by lane.
# --------------------------------------------------------------------------------------------------------

_THREEFRY_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def _rotate_left(x, d: int):
    return (x << jnp.uint32(d)) | (x >> jnp.uint32(32 - d))


def _threefry(k0, k1, x0, x1):
    """The Threefry-2x32 hash (20 rounds; Salmon et al. 2011) of the counters ``(x0, x1)`` under the key
    ``(k0, k1)``, elementwise with broadcasting.

    The same function as JAX's ``threefry2x32_p`` (tested), written unrolled so that XLA fuses it into one
    loop: on CPU about four times faster than the primitive's rolled lowering, and five to ten times faster
    than ``jax.random.bits`` under the default ``jax_threefry_partitionable``.
    """
    k0, k1, x0, x1 = (jnp.asarray(a, jnp.uint32) for a in (k0, k1, x0, x1))
    keys = (k0, k1, k0 ^ k1 ^ jnp.uint32(0x1BD11BDA))
    x0, x1 = x0 + k0, x1 + k1
    for i in range(5):
        for r in _THREEFRY_ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = x0 ^ _rotate_left(x1, r)
        x0 = x0 + keys[(i + 1) % 3]
        x1 = x1 + keys[(i + 2) % 3] + jnp.uint32(i + 1)
    return x0, x1


def _seed_words(rng_key: jax.Array, stream: int) -> tuple[jax.Array, jax.Array]:
    """Two uint32 words of the key's own stream ``stream`` (works for raw and typed keys of any impl)."""
    words = jax.random.bits(jax.random.fold_in(rng_key, stream), (2,), jnp.uint32)
    return words[0], words[1]


def _lane_seeds(seed, lane_row, lane_sub):
    """Per-lane keys: ``threefry(seed, (row, summand))``."""
    return _threefry(seed[0], seed[1], lane_row, lane_sub)


def _lane_uniforms(lane_seed, attempt, num: int, dtype) -> jax.Array:
    """``num`` uniforms on the open interval (0, 1) per lane for its proposal number ``attempt``; shape (num, n).

    Block ``s`` of lane ``l`` is ``threefry(lane_seed_l, (attempt_l, s))``. float32: two uniforms a block,
    23 random bits each, ``(k + 1/2) 2^-23``; float64: one a block, 52 bits, ``(k + 1/2) 2^-52`` (exact in
    their type, so never 0 or 1).
    """
    k0, k1 = lane_seed
    attempt = attempt.astype(jnp.uint32)
    if jnp.dtype(dtype) == jnp.float64:
        blocks = [_threefry(k0, k1, attempt, s) for s in range(num)]
        bits = jnp.stack([(hi.astype(jnp.uint64) << 20) | (lo.astype(jnp.uint64) >> 12) for hi, lo in blocks])
        return (bits.astype(jnp.float64) + 0.5) * 2.0**-52
    blocks = [_threefry(k0, k1, attempt, s) for s in range((num + 1) // 2)]
    words = jnp.stack([w for block in blocks for w in block][:num])
    return ((words >> 9).astype(jnp.float32) + 0.5) * 2.0**-23


# --------------------------------------------------------------------------------------------------------
# The accept/reject driver: lanes streamed through a buffer, the rejected ones first.
# --------------------------------------------------------------------------------------------------------

def _buffer_size(n: int) -> int:
    return int(min(n, max(_MIN_BUFFER, min(_MAX_BUFFER, -(-n // _BUFFER_FRACTION)))))


def _first_accepted(propose: Callable, params: tuple, lane_seed, num_uniforms: int, dtype) -> jax.Array:
    """Each lane's first accepted proposal, streamed through one buffer of ``s`` slots.

    ``propose(u, *params) -> (x, accepted)`` draws one proposal per slot from the uniforms ``u`` (shape
    ``(num_uniforms, s)``) and tests it elementwise. A ``while_loop`` fills the buffer with the lanes the
    last round rejected (a queue, at most ``s``) and tops it up with fresh lanes in order; accepted
    proposals are scattered to their lanes, rejected lanes are compacted into the next queue. It runs
    ``about n (1 + rejection rate) / s`` rounds plus a few to empty the queue, each of cost ``O(s)``, and
    the proposal is traced (and compiled) once. A lane's ``k``-th proposal uses its ``k``-th block of
    uniforms whatever the round, so the result does not depend on ``s``. Lanes still undecided after
    ``10 n/s + MAX_ROUNDS`` rounds (never, in practice) come out NaN.
    """
    n = params[0].shape[0]
    if n == 0:
        return jnp.zeros((0,), dtype)
    size = _buffer_size(n)

    def visit(x, lane, attempt, live):
        take = jnp.minimum(lane, n - 1)
        u = _lane_uniforms(tuple(s[take] for s in lane_seed), attempt, num_uniforms, dtype)
        x_new, accepted = propose(u, *(p[take] for p in params))
        return x.at[jnp.where(live & accepted, lane, n)].set(x_new.astype(dtype), mode="drop"), accepted

    x, queue, queue_length = _stream_rounds(jnp.asarray(n, jnp.int32), size, visit,
                                            jnp.full((n,), jnp.nan, dtype))
    slot = jnp.arange(size, dtype=jnp.int32)
    return x.at[jnp.where(slot < queue_length, queue, n)].set(jnp.nan, mode="drop")


def _stream_rounds(num_lanes, size: int, visit: Callable, acc):
    """The rounds of :func:`_first_accepted`: ``num_lanes`` lanes (may be traced) through a buffer of ``size``
    slots, the lanes the last round rejected first (a queue), then fresh ones in order.

    ``visit(acc, lane, attempt, live) -> (acc, accepted)`` proposes for each slot's lane (its ``attempt``-th
    proposal; ``live`` is false for the empty slots, whose ``lane`` is ``num_lanes``) and folds the accepted
    ones into ``acc``. Runs until every lane is accepted or ``10 ceil(num_lanes/size) + MAX_ROUNDS`` rounds;
    returns ``acc`` and the queue of the lanes still undecided (``queue[:queue_length]``).
    """
    slot = jnp.arange(size, dtype=jnp.int32)
    max_rounds = 10 * ((num_lanes + size - 1) // size) + MAX_ROUNDS

    def cond(carry):
        i, cursor, _, queue_length, _, _ = carry
        return ((cursor < num_lanes) | (queue_length > 0)) & (i < max_rounds)

    def body(carry):
        i, cursor, queue, queue_length, queue_attempt, acc = carry
        queued = slot < queue_length
        lane = jnp.where(queued, queue, jnp.minimum(cursor + slot - queue_length, num_lanes))
        attempt = jnp.where(queued, queue_attempt, 0)
        live = lane < num_lanes
        acc, accepted = visit(acc, lane, attempt, live)
        rejected = live & ~accepted
        position = jnp.where(rejected, jnp.cumsum(rejected, dtype=jnp.int32) - 1, size)
        queue = jnp.full((size,), num_lanes, jnp.int32).at[position].set(lane, mode="drop")
        queue_attempt = jnp.zeros((size,), jnp.int32).at[position].set(attempt + 1, mode="drop")
        cursor = jnp.minimum(cursor + size - queue_length, num_lanes)
        return i + 1, cursor, queue, jnp.sum(rejected, dtype=jnp.int32), queue_attempt, acc

    zero = jnp.asarray(0, jnp.int32)
    carry = (zero, zero, jnp.full((size,), num_lanes, jnp.int32), zero, jnp.zeros((size,), jnp.int32), acc)
    _, _, queue, queue_length, _, acc = jax.lax.while_loop(cond, body, carry)
    return acc, queue, queue_length


# --------------------------------------------------------------------------------------------------------
# PG(1, c): Devroye's method.
# --------------------------------------------------------------------------------------------------------

def _devroye_series(q):
    r"""``1 - 3q + 5q^3 - 7q^6``: the alternating series of ``J*(1)``'s density over its first term.

    With ``q = e^{-4/x}`` (``x <= t``) or ``q = e^{-pi^2 x}`` (``x > t``), ``a_n(x)/a_0(x) = (2n+1)
    q^{n(n+1)/2}``; the terms decrease, so the omitted tail is at most ``9 q^{10}`` (see
    :func:`polyagamma_one`).
    """
    q3 = q * q * q
    return 1.0 - q * (3.0 - q * q * (5.0 - 7.0 * q3))


def _devroye_propose(u, c):
    """One Devroye proposal of ``J*(1, |c|/2)`` per lane and its accept/reject test (see
    :func:`polyagamma_one`)."""
    dtype = u.dtype
    t = jnp.asarray(TRUNCATION, dtype)
    u_choice, u_draw, u_side, v = u
    z = jnp.abs(c).astype(dtype) / 2.0
    rate = _PI2_8 + z * z / 2.0
    log_mass_right = _LOG_PI_2 - jnp.log(rate) - rate * t
    levy = z < _Z_SWITCH
    log_mass_left = jnp.where(levy, _LOG_MASS_LEVY, _LOG2 - z)
    right = u_choice < jax.nn.sigmoid(log_mass_right - log_mass_left)

    x_right = t - jnp.log(u_draw) / rate
    normal = ndtri(jnp.where(levy, u_draw * _LEVY_TAIL, u_draw))
    chi2 = normal * normal
    x_levy = 1.0 / chi2
    mu = 1.0 / jnp.maximum(z, _Z_SWITCH)
    x_ig = _inverse_gaussian(mu, jnp.ones_like(mu), chi2, u_side)
    x_left = jnp.where(levy, x_levy, x_ig)
    x = jnp.where(right, x_right, x_left)

    q = jnp.exp(jnp.where(right, -_PI2 * x, -4.0 / x))
    tilt = jnp.where(levy & ~right, jnp.exp(-0.5 * z * z * x), 1.0)
    accepted = (right | levy | (x_ig < t)) & (v < tilt * _devroye_series(q))
    bad = jnp.isnan(z)
    return jnp.where(bad, jnp.nan, x / 4.0), accepted | bad


def _inverse_gaussian(mu, lam, chi2, u):
    r"""Michael, Schucany & Haas's (1976) inverse Gaussian ``IG(mu, lam)`` from a ``chi^2_1`` draw and a uniform.

    The smaller root of ``lam (x - mu)^2 = mu^2 x chi2`` is ``x_1 = mu / (1 + w + sqrt(w (2 + w)))`` with
    ``w = mu chi2 / (2 lam)`` (this form does not cancel); it is kept with probability ``mu / (mu + x_1)``,
    else ``mu^2 / x_1``.
    """
    w = mu * chi2 / (2.0 * lam)
    x1 = mu / (1.0 + w + jnp.sqrt(w * (2.0 + w)))
    return jnp.where(u * (mu + x1) <= mu, x1, mu * (mu / x1))


def polyagamma_one(rng_key: jax.Array, c: ArrayLike) -> jax.Array:
    r"""Exact draws of ``PG(1, c)``, elementwise for an array ``c`` of any shape (dtype follows ``c``).

    ``PG(1, c) = J*(1, z) / 4`` with ``z = |c|/2``. Up to the factor ``cosh z``, ``J*(1, z)`` has density
    ``g(x) = e^{-z^2 x / 2} f(x)`` with ``f(x) = \sum_n (-1)^n a_n(x)``,

    .. math::

        a_n(x) = \pi (n + \tfrac12) \left(\frac{2}{\pi x}\right)^{3/2} e^{-2(n+1/2)^2/x}\ (x \le t),
        \qquad a_n(x) = \pi (n + \tfrac12)\, e^{-(n+1/2)^2 \pi^2 x / 2}\ (x > t),

    ``t = 0.64`` (Devroye 2009; Polson, Scott & Windle 2013, section 4). The terms decrease in ``n`` on both
    sides, so ``g(x) <= e^{-z^2 x/2} a_0(x)``, an envelope of three pieces, each drawn without a loop:

    * ``x > t``: ``(pi/2) e^{-K x}``, ``K = pi^2/8 + z^2/2``: ``x = t + E/K``, mass ``pi e^{-K t} / (2K)``;
    * ``x < t``, ``z < 1.5544``: ``a_0(x) = 2 l(x)`` (dropping ``e^{-z^2 x/2} <= 1``), with ``l`` the Levy
      density of ``1/N^2``: ``x = 1/N^2``, ``|N| = -Phi^{-1}(U Phi(-1/sqrt t))``, mass ``4 Phi(-1/sqrt t)``;
    * ``x < t``, ``z >= 1.5544``: ``e^{-z^2 x/2} a_0(x) = 2 e^{-z} IG(x | 1/z, 1)``, the whole inverse Gaussian
      drawn (Michael-Schucany-Haas) and ``x >= t`` rejected, mass ``2 e^{-z}``.

    A proposal ``x`` (piece chosen in proportion to the masses) is accepted when ``V < tilt
    * f(x)/a_0(x)`` with ``V`` uniform and ``tilt = e^{-z^2 x / 2}`` on the Levy piece, 1 elsewhere: plain
    accept/reject, exact. The acceptance rate per proposal is ``1 / (cosh z (mass sum))``: 0.9993 at
    ``z = 0``, 0.73 at worst (``z`` near 1.55), near 1 again for large ``z``.

    The series ratio is ``f/a_0 = 1 - 3q + 5q^3 - 7q^6 + R`` with ``q = e^{-4/x}`` (left) or ``e^{-pi^2 x}``
    (right), ``a_n/a_0 = (2n + 1) q^{n(n+1)/2}``. The terms decrease, so ``|R| <= 9 q^{10}``, largest at
    ``x = t``: ``9 e^{-40/0.64} = 6.6e-27`` (left), ``9 e^{-10 pi^2 0.64} = 3.4e-27`` (right): four terms
    decide the test exactly to the resolution of ``V`` (2^-52 in float64) with ten orders of magnitude to
    spare (``tests/test_polyagamma.py`` checks the bound in exact decimal arithmetic).

    Parameters
    ----------
    rng_key
        A JAX PRNG key.
    c
        The tilting parameter, any shape; float32 or float64 (integers are promoted).

    Returns
    -------
    Draws of the shape and dtype of ``c``; ``NaN`` where ``c`` is ``NaN``.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> omega = polyagamma_one(jax.random.key(0), jnp.array([0.0, 1.0, 50.0]))

    References
    ----------
    Devroye, L. (2009). On exact simulation algorithms for some distributions related to Jacobi theta
    functions. *Statistics & Probability Letters* 79, 2251-2259.
    Polson, N. G., Scott, J. G. & Windle, J. (2013). Bayesian inference for logistic models using Polya-Gamma
    latent variables. *JASA* 108, 1339-1349.
    """
    c = _as_float(c)
    n = c.size
    row = jnp.arange(n, dtype=jnp.uint32)
    return _pg1_named(rng_key, c.reshape(-1), row, jnp.zeros_like(row)).reshape(c.shape)


def polyagamma_lanes(rng_key: jax.Array, c: ArrayLike, lane_rows: ArrayLike, num_rows: int) -> jax.Array:
    r"""``PG(b_r, c_r)`` for every row ``r < num_rows``, with ``b_r`` the number of lanes of row ``r``.

    Lane ``k`` draws one ``PG(1, c[lane_rows[k]])`` (:func:`polyagamma_one`); the lanes of each row are
    summed with ``jax.ops.segment_sum`` (``PG(b1 + b2, c) = PG(b1, c) + PG(b2, c)``). The number of lanes is
    static (a shape); ``c`` and ``lane_rows`` may be traced: a binomial model with ``n_r`` trials in row
    ``r`` passes ``lane_rows = repeat(arange(R), n_r)`` once, built at model-build time.

    .. math::

        \omega_r = \sum_{k : \mathrm{lane\_rows}_k = r} \omega_k, \quad \omega_k \sim PG(1, c_{\mathrm{lane\_rows}_k})
        \ \Rightarrow\ \omega_r \sim PG(\#\{k : \mathrm{lane\_rows}_k = r\}, c_r).

    Parameters
    ----------
    rng_key
        A JAX PRNG key.
    c
        Shape ``(num_rows,)``.
    lane_rows
        Integer array of shape ``(num_lanes,)``, values in ``[0, num_rows)``; lanes are named by position.
    num_rows
        Static number of rows.

    Returns
    -------
    Shape ``(num_rows,)``, dtype of ``c``; rows without lanes are 0.
    """
    return _lanes(rng_key, _as_float(c), jnp.asarray(lane_rows), num_rows)


@functools.partial(jax.jit, static_argnames="num_rows")
def _lanes(rng_key, c, lane_rows, num_rows):
    lane = jnp.arange(lane_rows.shape[0], dtype=jnp.uint32)
    omega = _pg1_named(rng_key, c[lane_rows], lane, jnp.full_like(lane, 0xFFFFFFFF))
    return jax.ops.segment_sum(omega, lane_rows, num_segments=num_rows)


@jax.jit
def _pg1_named(rng_key, c, lane_row, lane_sub):
    """``PG(1, c)`` for lanes named ``(lane_row, lane_sub)`` (one compiled program per shape and dtype)."""
    seed = _seed_words(rng_key, _STREAM_PG1)
    return _first_accepted(_devroye_propose, (c,), _lane_seeds(seed, lane_row, lane_sub), 4, c.dtype)


# --------------------------------------------------------------------------------------------------------
# PG(h, c), 1 <= h <= 2: Windle, Polson & Scott's alternate method.
# --------------------------------------------------------------------------------------------------------

def _log_a0_over_kernel(x, h):
    r"""``log(a_0(x|h) / k(x|h))``: the left series' first term over the gamma kernel ``k`` (see
    :func:`_alternate_propose`)."""
    return (h * _LOG_4_PI + gammaln(h + 1.0) - _HALF_LOG_2PI - (h + 0.5) * jnp.log(x) - h * h / (2.0 * x)
            + _PI2_8 * x)


def truncation_point(h):
    r"""The alternate method's truncation point ``t(h)``, where ``a_0(t|h) = k(t|h)`` (three Newton steps from
    the line through ``t(1) = 2/pi`` and ``t(2) = 2.0168``; relative error < 1e-8 on ``[1, 2]``).

    Any ``t`` below ``2(h+1)/log(h+2)`` (3.64 at ``h = 1``) keeps the method exact (the series' terms
    decrease there); the crossing makes the envelope smallest.
    """
    t = 2.0 / math.pi + (h - 1.0) * (2.0167698384704327 - 2.0 / math.pi)
    for _ in range(3):
        slope = -(h + 0.5) / t + h * h / (2.0 * t * t) + _PI2_8
        t = t - _log_a0_over_kernel(t, h) / slope
    return t


def _alternate_series(x, h, scale, active, max_terms=MAX_SERIES_TERMS):
    r"""``f(x|h) / a_0(x|h) = \sum_n (-1)^n T_n`` with ``T_n = a_n/a_0``, summed to a negligible remainder.

    ``T_{n+1} = T_n (n+h)(2n+h+2) / ((n+1)(2n+h)) e^{-2(2n+h+1)/x}``. The log of that ratio decreases in
    ``n`` when ``h >= 1``, so the terms rise then fall; once they fall (ratio < 1) the remainder after a term
    is at most the next term. Terms are added until, in every active lane, they fall and the next one is
    below ``SERIES_TOLERANCE * scale`` (``scale`` is the size of the quantity compared with), at most
    ``max_terms``: the cap is not reached below ``x = 60`` (tested), beyond the largest proposal, about
    ``t + 37 / 0.73 = 52`` in float64 and 25 in float32.
    """
    dtype = x.dtype
    first = jnp.exp(-2.0 * (h + 1.0) / x)
    step = jnp.exp(-4.0 / x)
    bound = SERIES_TOLERANCE * scale

    def cond(carry):
        n, _, _, _, converged = carry
        return jnp.any(~converged) & (n < max_terms)

    def body(carry):
        n, term, factor, total, converged = carry
        k = n.astype(dtype)
        ratio = (k + h) * (2.0 * k + h + 2.0) / ((k + 1.0) * (2.0 * k + h)) * factor
        term = term * ratio
        total = total + jnp.where(n % 2 == 0, -term, term)
        converged = converged | ((ratio < 1.0) & (term <= bound))
        return n + 1, term, factor * step, total, converged

    one = jnp.ones_like(x)
    carry = (jnp.asarray(0), one, first, one, ~active)
    return jax.lax.while_loop(cond, body, carry)[3]


def _alternate_propose(u, h, c):
    r"""One proposal of ``J*(h, z)``, ``z = |c|/2``, ``1 <= h <= 2``, per lane and its test; returns ``x/4``.

    The alternate method (Windle, Polson & Scott 2014, section 4). The density of ``J*(h)`` is
    ``f(x|h) = \sum_n (-1)^n a_n(x|h)`` with

    .. math::

        a_n(x|h) = \frac{2^h \Gamma(n+h)}{\Gamma(h)\, n!} \frac{2n+h}{\sqrt{2\pi x^3}} e^{-(2n+h)^2/(2x)},

    and it is bounded by two kernels, ``f <= a_0(x|h)`` while the terms decrease (``x < 2(h+1)/log(h+2)``)
    and ``f <= k(x|h) = (pi/2)^h x^{h-1} e^{-pi^2 x/8} / Gamma(h)`` for every ``x`` (``J*(h) = G_1/l_1 + R``
    with ``G_1 ~ Gamma(h)``, ``l_1 = pi^2/8`` and ``R`` independent, so for ``h >= 1`` ``f(x) =
    E[g_1(x - R)] <= g_1(x) E[e^{l_1 R}] = k(x|h)``, the product ``E[e^{l_1 R}] = prod_{j>=2}(1 -
    1/(2j-1)^2)^{-h} = (4/pi)^h``). With ``t = t(h)`` (:func:`truncation_point`) the envelope of
    ``e^{-z^2 x/2} f(x|h)`` is

    * ``x < t``: ``e^{-z^2 x/2} a_0(x|h) = 2^h e^{-hz} IG(x | h/z, h^2)``; ``a_0 = 2^h l_h`` with ``l_h`` the
      density of ``h^2/N^2``. As in Devroye's method, a truncated Levy draw ``h^2/N^2``, ``|N| > h/sqrt t``
      (mass ``2^{h+1} Phi(-h/sqrt t)``, the tilt ``e^{-z^2 x/2}`` moved into the test) when ``hz`` is small,
      else the whole inverse Gaussian with ``x >= t`` rejected (mass ``2^h e^{-hz}``);
    * ``x > t``: ``k(x|h) e^{-z^2 x/2} = (pi/2)^h x^{h-1} e^{-l x} / Gamma(h)``, ``l = pi^2/8 + z^2/2``, under
      its tangent in log space at ``x_0`` (log-concave for ``h >= 1``): an exponential of rate ``l' = l -
      (h-1)/x_0`` drawn as ``x = t + E/l'``. ``x_0 >= t`` minimizes the mass: the larger root of ``l x_0^2 -
      (h + l t) x_0 + (h-1) t = 0``. The test's envelope ratio is ``e^{(h-1)(x/x_0 - 1 - log(x/x_0))}``.

    The test compares a uniform with ``f(x|h)/a_0(x|h)`` (:func:`_alternate_series`) times the envelope's
    known factors. For ``x > t`` the series cancels: its terms reach ``~ e^{pi^2 x/8}`` times its sum, so the
    computed sum carries a relative error of about ``eps sum_n T_n / (f/a_0)`` (``eps`` the dtype's). In
    float64 that is below 1e-9 for ``x < 15`` and 1e-6 for ``x < 20``, and the proposal puts mass below
    ``1e-7`` beyond ``x = 20`` (``e^{-l'(x - t)}``, ``l' >= 0.91``): a decision is wrong with probability of
    order 1e-11 per proposal at worst (``h`` near 2, ``c = 0``). In float32, measured against float64 on the
    same proposals, about one decision in ``10^6`` differs (``tests/test_polyagamma.py``, slow): use float64
    where that matters.
    """
    dtype = u.dtype
    u_choice, u_draw, u_side, v = u
    h = h.astype(dtype)
    z = jnp.abs(c).astype(dtype) / 2.0
    t = truncation_point(h)
    rate = _PI2_8 + z * z / 2.0

    # Left piece: Levy (tilt in the test) or inverse Gaussian (truncation in the test).
    log_levy_tail = log_ndtr(-h / jnp.sqrt(t))                  # log Phi(-h / sqrt t)
    levy = h * z < -(_LOG2 + log_levy_tail)
    log_mass_left = h * _LOG2 + jnp.where(levy, _LOG2 + log_levy_tail, -h * z)
    # Right piece: exponential under the log-tangent of the gamma kernel at x0.
    ht = h + rate * t
    x0 = (ht + jnp.sqrt(ht * ht - 4.0 * rate * (h - 1.0) * t)) / (2.0 * rate)
    rate_exp = rate - (h - 1.0) / x0
    log_mass_right = (h * _LOG_PI_2 + (h - 1.0) * jnp.log(x0) - rate * x0 - gammaln(h)
                      - rate_exp * (t - x0) - jnp.log(rate_exp))
    right = u_choice < jax.nn.sigmoid(log_mass_right - log_mass_left)

    x_right = t - jnp.log(u_draw) / rate_exp
    normal = ndtri(jnp.where(levy, u_draw * jnp.exp(log_levy_tail), u_draw))
    chi2 = normal * normal
    x_levy = h * h / chi2
    mu = h / jnp.where(levy, 1.0, z)
    x_ig = _inverse_gaussian(mu, h * h, chi2, u_side)
    x = jnp.where(right, x_right, jnp.where(levy, x_levy, x_ig))

    bad = jnp.isnan(z) | jnp.isnan(h)
    in_range = right | levy | (x_ig < t)
    log_a0k = _log_a0_over_kernel(x, h)
    scale = jnp.where(right, jnp.exp(-log_a0k), 1.0)
    series = _alternate_series(x, h, scale, in_range & ~bad)
    tilt = jnp.where(levy, jnp.exp(-0.5 * z * z * x), 1.0)
    y = x / x0
    envelope_ratio = jnp.exp((h - 1.0) * (y - 1.0 - jnp.log(y)))
    accept_left = v < tilt * series
    accept_right = v * envelope_ratio * scale < series
    accepted = in_range & jnp.where(right, accept_right, accept_left)
    return jnp.where(bad, jnp.nan, x / 4.0), accepted | bad


@jax.jit
def _alternate_named(rng_key, h, c, lane_row):
    """``PG(h, c)``, ``1 <= h <= 2``, for lanes named ``(lane_row, 0)`` of the alternate stream."""
    seed = _seed_words(rng_key, _STREAM_ALTERNATE)
    lane_seed = _lane_seeds(seed, lane_row, jnp.zeros_like(lane_row))
    return _first_accepted(_alternate_propose, (h.astype(c.dtype), c), lane_seed, 4, c.dtype)


# --------------------------------------------------------------------------------------------------------
# PG(b, c): lanes for concrete b, a masked loop for traced b.
# --------------------------------------------------------------------------------------------------------

def _as_float(c, dtype=None):
    c = jnp.asarray(c)
    if dtype is None:
        dtype = c.dtype if jnp.issubdtype(c.dtype, jnp.floating) else jnp.result_type(float)
    return c.astype(dtype)


def _split_b(b):
    """``b = whole + h``: ``whole`` Devroye summands and, where ``b`` is not an integer, one ``h`` in (1, 2)."""
    floor = jnp.floor(b) if isinstance(b, jax.Array) else np.floor(b)
    fractional = b > floor
    whole = floor - fractional
    return whole, fractional, b - whole


def polyagamma(rng_key: jax.Array, b: ArrayLike, c: ArrayLike, dtype=None) -> jax.Array:
    r"""Exact draws of ``PG(b, c)``, shape of ``broadcast(b, c)``; ``b >= 1`` real, or ``b = 0`` (draw 0).

    ``dtype`` defaults to ``c``'s floating type (float32 unless x64 is on).

    * Concrete ``b`` (Python or NumPy numbers, a concrete ``jax.Array``): row ``r`` gets ``floor(b_r)``
      lanes of ``PG(1, c_r)`` summed (:func:`polyagamma_lanes`), one of them replaced by ``PG(h_r, c_r)`` with
      ``h_r = b_r - floor(b_r) + 1`` where ``b_r`` is not an integer (the alternate method); values of ``b``
      in ``(0, 1)`` raise. A ``b`` that varies by row enters the compiled program as index arrays (8 bytes
      a lane); one ``b`` for all rows does not.
    * Traced ``b``: the same ``sum(floor(b))`` summands streamed through one buffer whose rounds run until
      all are drawn (:func:`_stream_lanes`: the cost follows the total, not the largest ``b``); ``NaN`` where
      ``b`` is below 1 (but not 0) or not finite.

    Both give the same draws for the same key (up to the order of summation), as each summand's randomness is
    named by its row and index (module docstring).

    .. math::

        PG(b, c) = \sum_{i < m} PG(1, c) + PG(h, c), \quad m = \lfloor b \rfloor - 1,\ h = b - m \in (1, 2)
        \quad (b \notin \mathbb{Z}), \qquad PG(b, c) = \sum_{i < b} PG(1, c) \quad (b \in \mathbb{Z}).

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> omega = polyagamma(jax.random.key(0), jnp.array([1.0, 2.5, 10.0]), jnp.array([0.3, -1.0, 4.0]))
    """
    c = jnp.asarray(c)
    dtype = jnp.dtype(dtype) if dtype is not None else None
    try:
        b_value = np.asarray(b, dtype=np.float64)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        b_value = None
    if b_value is None:
        b = jnp.asarray(b)
        shape = jnp.broadcast_shapes(b.shape, c.shape)
        c = _as_float(jnp.broadcast_to(c, shape).reshape(-1), dtype)
        b = jnp.broadcast_to(b, shape).reshape(-1).astype(c.dtype)
        return _draw_traced(rng_key, b, c).reshape(shape)

    shape = np.broadcast_shapes(b_value.shape, c.shape)
    b_value = np.broadcast_to(b_value, shape).reshape(-1)
    bad = ~np.isfinite(b_value) | ((b_value != 0) & (b_value < 1))
    if np.any(bad):
        raise ValueError(f"polyagamma: expected b >= 1 (or b = 0), got {b_value[bad][:5]}")
    c = _as_float(jnp.broadcast_to(c, shape).reshape(-1), dtype)
    if b_value.size and np.all(b_value == b_value[0]):
        whole, fractional, h = _split_b(b_value[0])
        return _draw_same_b(rng_key, c, int(whole), float(h) if fractional else None).reshape(shape)
    whole, fractional, h = _split_b(b_value)
    whole = whole.astype(np.int64)
    rows = np.repeat(np.arange(b_value.size, dtype=np.uint32), whole)
    starts = np.cumsum(whole) - whole
    subs = (np.arange(rows.size, dtype=np.int64) - np.repeat(starts, whole)).astype(np.uint32)
    fractional_rows = np.nonzero(fractional)[0].astype(np.uint32)
    return _draw_concrete(rng_key, c, rows, subs, fractional_rows, h[fractional_rows]).reshape(shape)


@functools.partial(jax.jit, static_argnames=("whole", "h"))
def _draw_same_b(rng_key, c, whole: int, h: float | None):
    """Every row ``PG(whole, c) (+ PG(h, c))``: lanes named ``(r, i)`` from iotas, nothing baked in."""
    n = c.shape[0]
    total = jnp.zeros_like(c)
    if whole:
        lane = jnp.arange(n * whole, dtype=jnp.uint32)
        rows, subs = lane // whole, lane % whole
        omega = _pg1_named(rng_key, c if whole == 1 else c[rows], rows, subs)
        total = omega if whole == 1 else jax.ops.segment_sum(omega, rows, n, indices_are_sorted=True)
    if h is not None:
        rows = jnp.arange(n, dtype=jnp.uint32)
        total = total + _alternate_named(rng_key, jnp.full((n,), h, c.dtype), c, rows)
    return total


@jax.jit
def _draw_concrete(rng_key, c, rows, subs, fractional_rows, h):
    """Rows of different ``b``: the lanes' names ``(rows, subs)`` and the fractional rows as index arrays."""
    total = jnp.zeros_like(c)
    if rows.size:
        omega = _pg1_named(rng_key, c[rows], rows, subs)
        total = total + jax.ops.segment_sum(omega, rows, num_segments=c.shape[0], indices_are_sorted=True)
    if fractional_rows.size:
        total = total.at[fractional_rows].add(_alternate_named(rng_key, h, c[fractional_rows], fractional_rows))
    return total


@jax.jit
def _draw_traced(rng_key, b, c):
    """Traced ``b``: the ``sum(floor(b))`` Devroye lanes streamed through one buffer (:func:`_stream_lanes`),
    the fractional parts by the alternate method, NaN where ``b`` is invalid."""
    valid = jnp.isfinite(b) & ((b == 0) | (b >= 1))
    whole, fractional, h = _split_b(jnp.where(valid, b, 0.0))
    rows = jnp.arange(c.shape[0], dtype=jnp.uint32)
    total = _stream_lanes(rng_key, c, whole.astype(jnp.int32))
    alternate = jax.lax.cond(jnp.any(fractional),
                             lambda: _alternate_named(rng_key, jnp.where(fractional, h, 1.0), c, rows),
                             lambda: jnp.zeros_like(c))
    total = total + jnp.where(fractional, alternate, 0.0)
    return jnp.where(valid, total, jnp.nan)


def _stream_lanes(rng_key, c, whole):
    r"""``sum_{i < whole_r} PG(1, c_r)`` per row for a traced count ``whole``: lane ``k < L = sum(whole)`` is
    summand ``k - start_r`` of the row ``r`` with ``start_r <= k < start_r + whole_r``, named as in
    :func:`_draw_concrete` (so the draws are the concrete path's up to the order of summation).

    The lanes go through one buffer as in :func:`_first_accepted` (rejected lanes first, then fresh ones in
    order), accepted proposals added to their rows: about ``L (1 + rejection rate) / s`` rounds, so the cost
    follows the total count, not the largest count times the number of rows (under ``vmap`` the rounds run
    to the chain with the largest total). Rows with a lane still undecided after ``10 L/s + MAX_ROUNDS``
    rounds (never, in practice) come out NaN.
    """
    n = c.shape[0]
    dtype = c.dtype
    if n == 0:
        return jnp.zeros((0,), dtype)
    size = _buffer_size(4 * n)
    ends = jnp.cumsum(whole)
    num_lanes = ends[-1]
    seed = _seed_words(rng_key, _STREAM_PG1)

    def row_of(lane):
        return jnp.minimum(jnp.searchsorted(ends, lane, side="right", method="scan_unrolled"), n - 1)

    def visit(total, lane, attempt, live):
        row = row_of(lane)
        sub = lane - (ends[row] - whole[row])
        lane_seed = _lane_seeds(seed, row.astype(jnp.uint32), sub.astype(jnp.uint32))
        u = _lane_uniforms(lane_seed, attempt, 4, dtype)
        x_new, accepted = _devroye_propose(u, c[row])
        return total.at[jnp.where(live & accepted, row, n)].add(x_new.astype(dtype), mode="drop"), accepted

    total, queue, queue_length = _stream_rounds(num_lanes, size, visit, jnp.zeros((n,), dtype))
    slot = jnp.arange(size, dtype=jnp.int32)
    undecided = jnp.where(slot < queue_length, row_of(queue), n)
    return total.at[undecided].set(jnp.nan, mode="drop")

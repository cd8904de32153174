r"""Exact gamma variates that are cheap to compile: Marsaglia-Tsang with vectorised candidates.

Every variance draw of a Gibbs sweep needs one gamma variate. :func:`jax.random.gamma` is exact but
costly to compile (a ``while_loop`` nested in another, with several Threefry calls); this module gives
the same distribution with a graph of one loop and one call of :func:`jax.random.bits`, two to three
times faster to compile on CPU.

The method
----------
For a concentration (shape) :math:`b \ge 1`, Marsaglia & Tsang (2000) set :math:`d = b - 1/3`,
:math:`c = 1 / \sqrt{9 d}` and propose

.. math:: x \sim N(0, 1), \qquad w = c x, \qquad v = (1 + w)^3,

accepting :math:`d v` as a :math:`\mathrm{Gamma}(b, 1)` draw when :math:`w > -1` and

.. math:: \log u \le \tfrac12 x^2 + d\,(1 - v + \log v), \qquad u \sim U(0, 1).

Because :math:`x^2 / 2 = \tfrac92 d w^2`, the right-hand side is exactly

.. math:: 3 d\, R(w), \qquad R(w) = \log(1 + w) - w + \frac{w^2}{2} - \frac{w^3}{3}
          = -\frac{w^4}{4} + \frac{w^5}{5} - \frac{w^6}{6} + \cdots \;\le 0,

the remainder of the cubic Taylor polynomial of :math:`\log(1 + w)`. This module evaluates it in that
form: by its power series for :math:`|w| < 0.1` (with :math:`3 d w^4 = x^4 / 27 d`) and directly
otherwise, so that the test keeps its relative accuracy for any :math:`d`. In the textbook form the
two terms, each about :math:`x^2 / 2`, cancel to :math:`O(x^4 / d)`: the rounding of :math:`1 + w`
alone leaves an absolute error of order :math:`\epsilon \sqrt{d}\, |x|` in the log acceptance
probability (about :math:`10^{-3}` at :math:`b = 10^8` in float32), where the series form errs by
:math:`O(\epsilon)`.
The acceptance probability is above 0.95 for every :math:`b \ge 1` (0.951 at :math:`b = 1`,
tending to 1 as :math:`b \to \infty`).

For :math:`a < 1` the concentration is boosted (Marsaglia & Tsang 2000, sec. 6; Stuart 1962):

.. math:: G(a) = G(a + 1)\, U^{1/a}, \qquad
          \log G(a) = \log G(a + 1) + \frac{\log U}{a}, \qquad U \sim U(0, 1] \text{ independent},

computed in log space, so that :func:`log_gamma` is finite for any :math:`a > 0` (for
:math:`a = 10^{-3}` the median of :math:`\log G` is about :math:`-700`, so about 90% of float32
draws and 50% of float64 draws of :math:`G` itself underflow).

Cheap to compile, exact, loop-safe under ``vmap``
--------------------------------------------------
Each round proposes :math:`K` candidates at once, vectorised (``num_candidates``, default 4), from
one call of :func:`jax.random.bits` for a block of 16 (float32) or 32 (float64) 32-bit words: the
:math:`K` normals, the :math:`K` uniforms, the uniform of the boost, and the key of the next round
(made of words that serve nothing else, as :func:`jax.random.split` makes keys). The first accepted
candidate is kept. A round rejects all :math:`K` with probability below :math:`0.049^K`
(:math:`6 \cdot 10^{-6}` for :math:`K = 4`), and only then is there another round. The rounds are the
body of one ``lax.while_loop``, so the draw is exact, not truncated, and the graph holds a single copy
of the candidate code, which keeps compilation cheap. The accept/reject decision is made once, in
the body, and carried (as the accepted :math:`w`, NaN until there is one); the loop condition only
tests the carried value, so under ``vmap`` (where the loop runs until every lane is done and finished
lanes are masked) a lane's result is exactly its unbatched result. The loop stops, with NaN, after
:data:`MAX_ROUNDS` rounds, which happens with probability below :math:`0.05^{64}`, i.e. never, but it
guarantees termination for any input.

Uniforms are built from the random bits on a grid of :math:`2^{-p}` (:math:`p = 24` in float32,
53 in float64): :math:`u \in (0, 1]`, so :math:`\log u` is finite, and the normals are
:math:`\sqrt2\,\mathrm{erf}^{-1}(t)` with :math:`t` on the symmetric grid of odd multiples of
:math:`2^{-p}` in :math:`(-1, 1)`, so :math:`|x| \le 5.42` in float32 (the normal tail beyond has
probability :math:`6 \cdot 10^{-8}`, the resolution of a float32 uniform, as for
:func:`jax.random.normal`) and :math:`|x| \le 8.29` in float64 (:math:`10^{-16}`).

Keys of other implementations than Threefry (``rbg``, ``unsafe_rbg``) are first hashed into a
Threefry key: under ``vmap`` JAX draws their bits for every lane from the first lane's key, which a
loop that carries its keys cannot use (:func:`jax.random.gamma` maps over them sequentially).

Special values: a concentration that is NaN, zero or negative gives NaN; ``+inf`` gives ``+inf``.
This is checked, never an infinite loop.

References
----------
Marsaglia, G. and Tsang, W. W. (2000). A simple method for generating gamma variables.
*ACM Transactions on Mathematical Software* 26(3), 363-372.

Stuart, A. (1962). Gamma-distributed products of independent random variables.
*Biometrika* 49(3/4), 564-565.

Examples
--------
>>> import jax
>>> from mlgibbs import random as mr
>>> draw = jax.jit(mr.gamma)(jax.random.key(0), 2.5)
>>> draws = jax.vmap(mr.gamma, (0, None))(jax.random.split(jax.random.key(1), 1000), 2.5)
>>> log_draw = mr.log_gamma(jax.random.key(2), 1e-3)   # finite, where gamma() may underflow to 0
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike, DTypeLike

__all__ = ["gamma", "log_gamma", "chi2", "DEFAULT_NUM_CANDIDATES", "MAX_ROUNDS"]

DEFAULT_NUM_CANDIDATES = 4
"""Candidates per round: all rejected with probability below ``0.049**4 = 6e-6``."""

MAX_ROUNDS = 64
"""Rounds of candidates before giving up with NaN; reached with probability below ``0.05**64``."""

_BLOCK_WORDS = 16  # random 32-bit words are drawn in multiples of 16 (fast to compile: one 512-bit vector)
_SERIES_RADIUS = 0.1  # |w| below which R(w) is summed as a power series
_SERIES_TERMS = {4: 8, 8: 16}  # 0.1**terms < eps: float32 (4 bytes), float64 (8 bytes)


class _Draw(NamedTuple):
    """Internal result of one Marsaglia-Tsang draw for the (boosted) concentration ``b``.

    Attributes
    ----------
    d
        ``b - 1/3``.
    w
        The accepted ``w = c x``: the draw of ``Gamma(b)`` is ``d (1 + w)^3``. NaN where nothing was
        accepted: invalid concentration, or :data:`MAX_ROUNDS` reached.
    log_boost
        ``log(U) / a`` if ``a < 1`` (so that ``G(a) = G(b) exp(log_boost)``), else 0.
    num_rounds
        Rounds of candidates used: 1 unless all the first ``num_candidates`` were rejected (test hook).
    """

    d: jax.Array
    w: jax.Array
    log_boost: jax.Array
    num_rounds: jax.Array


def _threefry_key(rng_key: jax.Array) -> jax.Array:
    """``rng_key`` if it is a Threefry key (typed, or a raw ``uint32[2]``), else a Threefry key hashed
    from all its words (``fold_in`` of the words beyond the first two).

    The rounds chain keys through :func:`jax.random.bits`, which must then be per-lane under ``vmap``.
    It is for Threefry; for ``rbg`` and ``unsafe_rbg`` keys JAX draws the bits of every lane from the
    first lane's key (``lax.rng_bit_generator`` batched), so lanes still running after that lane is
    done would propose the same candidates forever (:func:`jax.random.gamma` maps over such keys
    sequentially instead).
    """
    if jax.dtypes.issubdtype(rng_key.dtype, jax.dtypes.prng_key):
        if str(jax.random.key_impl(rng_key)) == "threefry2x32":
            return rng_key
        words = jax.random.key_data(rng_key).reshape(-1)
    else:
        if jnp.shape(rng_key) == (2,):
            return rng_key
        words = jnp.reshape(rng_key, -1)
    words = words.astype(jnp.uint32)
    key = jax.random.wrap_key_data(words[:2], impl="threefry2x32")
    for i in range(2, words.size):
        key = jax.random.fold_in(key, words[i])
    return key


def _key_layout(rng_key: jax.Array):
    """Number of 32-bit words of key data, and the map from such words back to a key of the same kind."""
    if jax.dtypes.issubdtype(rng_key.dtype, jax.dtypes.prng_key):
        shape = jax.random.key_data(rng_key).shape
        impl = jax.random.key_impl(rng_key)
        return int(np.prod(shape)), lambda words: jax.random.wrap_key_data(words.reshape(shape), impl=impl)
    shape = jnp.shape(rng_key)  # a raw uint32 key from jax.random.PRNGKey
    return int(np.prod(shape)), lambda words: words.reshape(shape).astype(rng_key.dtype)


def _words_per_value(dtype) -> int:
    """32-bit random words per uniform: 1 (24 bits used) up to float32, 2 (53 bits) for float64."""
    return 2 if jnp.dtype(dtype).itemsize == 8 else 1


def _log_acceptance(x: jax.Array, w: jax.Array, d: jax.Array) -> jax.Array:
    r"""``3 d R(w)`` with ``R(w) = log1p(w) - w + w^2/2 - w^3/3``, accurate for any ``d`` (``w > -1``)."""
    small = jnp.abs(w) < _SERIES_RADIUS
    ws = jnp.where(small, w, 0.0)
    # R(w) = w^4 * sum_j (-1)^(j+1) w^j / (j + 4), Horner from the highest term
    poly = jnp.zeros_like(w)
    for j in reversed(range(_SERIES_TERMS[jnp.dtype(w.dtype).itemsize])):
        poly = poly * ws + (-1.0) ** (j + 1) / (j + 4)
    x2 = x * x
    series = (x2 * x2) / (27.0 * d) * poly  # 3 d w^4 = x^4 / (27 d)
    # |w| >= 0.1: log(1 + w) is as accurate as log1p there (1 + w is exact or rounds by eps/2), and
    # XLA's float64 log1p errs by up to ~100 ulp near w = -0.41
    wd = jnp.where(small | (w <= -1.0), 0.5, w)
    direct = 3.0 * d * ((jnp.log(1.0 + wd) - wd) + wd * wd * (0.5 - wd / 3.0))
    return jnp.where(small, series, direct)


def _propose(rng_key: jax.Array, num: int, d: jax.Array, c: jax.Array):
    """One round: ``num`` Marsaglia-Tsang candidates at once, from one call of :func:`jax.random.bits`.

    Returns (the first accepted ``w``, NaN if none; ``log U`` for the ``a < 1`` boost; next round's key).
    ``U`` is uniform on ``(0, 1]`` and independent of the candidates; the next key is made of words of
    the same draw that serve nothing else (as :func:`jax.random.split` makes keys from random words).
    """
    dtype = d.dtype
    key_words, make_key = _key_layout(rng_key)
    per = _words_per_value(dtype)
    num_values = 2 * num + 1
    needed = per * num_values + key_words
    bits = jax.random.bits(rng_key, (-(-needed // _BLOCK_WORDS) * _BLOCK_WORDS,), jnp.uint32)
    next_key = make_key(bits[-key_words:])
    if per == 2:  # k = 53 random bits from two words
        hi = bits[:num_values].astype(jnp.uint64)
        lo = bits[num_values:2 * num_values].astype(jnp.uint64)
        k, p = ((hi << np.uint64(21)) | (lo >> np.uint64(11))).astype(jnp.int64), 53
    else:
        k, p = (bits[:num_values] >> np.uint32(8)).astype(jnp.int32), 24
    scale = 2.0 ** -p
    # t = (2k + 1 - 2^p) 2^-p: odd multiples of 2^-p, symmetric in (-1, 1); exact in dtype
    t = (2 * k[:num] + (1 - 2**p)).astype(dtype) * scale
    x = np.sqrt(2.0).astype(dtype) * lax.erf_inv(t)
    log_u = jnp.log((k[num:] + 1).astype(dtype) * scale)  # u = (k + 1) 2^-p in (0, 1]
    w = c * x
    accept = (w > -1.0) & (log_u[:num] <= _log_acceptance(x, w, d))
    # the first accepted w, NaN if none: the only result that depends on the candidates, so XLA
    # has no reason to copy their code into several kernels (a min-reduction of indices then one
    # gather runs faster under vmap than a chain of selects or an argmax)
    first = jnp.min(jnp.where(accept, jnp.arange(num), num))
    first_w = jnp.where(first < num, w[jnp.minimum(first, num - 1)], jnp.nan)
    return first_w, log_u[num], next_key


def _marsaglia_tsang(rng_key: jax.Array, a: jax.Array, num_candidates: int,
                     max_rounds: int = MAX_ROUNDS) -> _Draw:
    """One exact draw of ``Gamma(a)``, ``a`` a scalar of a floating dtype, in the parts of :class:`_Draw`."""
    if num_candidates < 1:
        raise ValueError(f"expected num_candidates >= 1, got {num_candidates}")
    valid = (a > 0) & (a < jnp.inf)  # False for NaN
    boosted = a < 1
    b = jnp.where(valid, jnp.where(boosted, a + 1.0, a), 1.0)
    d = b - 1.0 / 3.0
    c = 1.0 / (3.0 * jnp.sqrt(d))

    # The state is (rounds, w, log U, key), w = NaN until a candidate is accepted. The accept/reject
    # decision is made once, in the body, and carried as w itself: the condition only tests the
    # carried w for NaN (exact), it never recomputes a rounding-sensitive inequality, so under vmap
    # it agrees with the body lane by lane. An invalid concentration starts at max_rounds: no round.
    def cond(state):
        rounds, w, _, _ = state
        return jnp.isnan(w) & (rounds < max_rounds)

    def body(state):
        rounds, _, _, key = state
        return (rounds + 1, *_propose(key, num_candidates, d, c))

    nan = jnp.full_like(d, jnp.nan)
    init = (jnp.where(valid, 0, max_rounds).astype(jnp.int32), nan, nan, _threefry_key(rng_key))
    rounds, w, log_u, _ = lax.while_loop(cond, body, init)
    log_boost = jnp.where(boosted, log_u / jnp.where(valid, a, 1.0), 0.0)
    return _Draw(d, w, log_boost, jnp.where(valid, rounds, 0))


def _prepare(concentration: ArrayLike, dtype: DTypeLike | None):
    """Validate; return the concentration in the compute dtype and the output dtype."""
    if jnp.ndim(concentration) != 0:
        raise ValueError(f"expected a scalar concentration (shape ()), got shape {jnp.shape(concentration)}; "
                         "use jax.vmap for many draws")
    if dtype is None:
        dtype = jnp.result_type(concentration)
        if not jnp.issubdtype(dtype, jnp.floating):
            dtype = jnp.result_type(float)
    dtype = jnp.dtype(jax.dtypes.canonicalize_dtype(dtype))
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"expected a floating dtype, got {dtype}")
    compute = jnp.promote_types(dtype, jnp.float32)  # float16/bfloat16 are computed in float32
    return jnp.asarray(concentration).astype(compute), dtype


@functools.partial(jax.jit, static_argnames=("dtype", "num_candidates"))
def gamma(rng_key: jax.Array, concentration: ArrayLike, dtype: DTypeLike | None = None, *,
          num_candidates: int = DEFAULT_NUM_CANDIDATES) -> jax.Array:
    r"""One exact draw of :math:`G \sim \mathrm{Gamma}(a, 1)`, density :math:`g^{a-1} e^{-g} / \Gamma(a)`.

    Marsaglia & Tsang (2000) rejection for :math:`a \ge 1`; for :math:`a < 1`,
    :math:`G = G(a + 1)\, U^{1/a}` (see the module docstring). Same distribution as
    :func:`jax.random.gamma` (not the same draws), two to three times faster to compile. Divide by a rate
    :math:`\beta` for :math:`\mathrm{Gamma}(a, \beta)`.

    Parameters
    ----------
    rng_key
        PRNG key (typed ``jax.random.key`` or raw ``jax.random.PRNGKey``).
    concentration
        The shape :math:`a`, a scalar (``vmap`` for many draws); may be traced. NaN, zero or negative
        give NaN; ``+inf`` gives ``+inf``.
    dtype
        Floating output dtype; default: that of ``concentration`` if floating, else the default
        float (float32 unless x64 is enabled).
    num_candidates
        Candidates proposed per round (a static int). Any value >= 1 gives the same distribution
        (other draws); 1 makes second rounds frequent (about 5% of draws), which the tests use to
        exercise the loop; 8 makes them rarer (below ``1e-10``) for very wide ``vmap`` on GPU.

    Returns
    -------
    jax.Array
        Shape ``()``, ``dtype``. For small :math:`a` the draw can be below the smallest positive
        number of ``dtype`` (or the smallest normal one, where the backend flushes subnormals to
        zero); it is then returned as 0, the nearest representable value. Use :func:`log_gamma` when
        :math:`a` can be that small (:math:`P(G < t) \approx t^a / \Gamma(a + 1)`: for float32 and
        :math:`a = 10^{-3}`, about 0.9).

    Examples
    --------
    >>> import jax
    >>> from mlgibbs.random import gamma
    >>> sigma_sq = 3.0 / gamma(jax.random.key(0), 4.5)   # InvGamma(4.5, 3)
    """
    a, dtype = _prepare(concentration, dtype)
    draw = _marsaglia_tsang(rng_key, a, num_candidates)
    value = draw.d * (1.0 + draw.w) ** 3  # G(b); NaN where w is NaN
    # a < 1: G(b) U^(1/a) as one exp, so that it underflows only where the product does
    value = jnp.where(a < 1, jnp.exp(jnp.log(value) + draw.log_boost), value)
    value = jnp.where(a == jnp.inf, jnp.inf, value)
    return value.astype(dtype)


@functools.partial(jax.jit, static_argnames=("dtype", "num_candidates"))
def log_gamma(rng_key: jax.Array, concentration: ArrayLike, dtype: DTypeLike | None = None, *,
              num_candidates: int = DEFAULT_NUM_CANDIDATES) -> jax.Array:
    r"""The logarithm of one exact :math:`\mathrm{Gamma}(a, 1)` draw, finite for any :math:`a > 0`.

    .. math:: \log G = \log d + \log\big((1 + w)^3\big) + \mathbb{1}[a < 1]\, \frac{\log U}{a},

    with ``d, w`` from the Marsaglia-Tsang draw for :math:`a` (or :math:`a + 1` when :math:`a < 1`).
    For the same key and concentration, ``exp(log_gamma(...))`` equals :func:`gamma` up to rounding
    (the same underlying draw). The sum is rounded once: for large :math:`a` the absolute resolution
    is that of :math:`\log a` (float32: about :math:`2 \cdot 10^{-6}` at :math:`a = 10^7`, against a
    standard deviation :math:`a^{-1/2} = 3 \cdot 10^{-4}`).

    Parameters
    ----------
    rng_key
        PRNG key.
    concentration
        The shape :math:`a`, a scalar; NaN, zero or negative give NaN; ``+inf`` gives ``+inf``.
    dtype
        Floating output dtype (as in :func:`gamma`).
    num_candidates
        As in :func:`gamma`.

    Returns
    -------
    jax.Array
        Shape ``()``, ``dtype``: :math:`\log G`.

    Examples
    --------
    >>> import jax
    >>> from mlgibbs.random import log_gamma
    >>> log_g = log_gamma(jax.random.key(0), 1e-3)   # typically about -700: exp() would underflow
    """
    a, dtype = _prepare(concentration, dtype)
    draw = _marsaglia_tsang(rng_key, a, num_candidates)
    # log((1 + w)^3) rather than 3 log1p(w): as accurate (the cube is), and XLA's float64 log1p
    # errs by up to ~100 ulp for some w
    value = jnp.log(draw.d) + jnp.log((1.0 + draw.w) ** 3) + draw.log_boost  # NaN where w is NaN
    value = jnp.where(a == jnp.inf, jnp.inf, value)
    return value.astype(dtype)


@functools.partial(jax.jit, static_argnames=("dtype", "num_candidates"))
def chi2(rng_key: jax.Array, df: ArrayLike, dtype: DTypeLike | None = None, *,
         num_candidates: int = DEFAULT_NUM_CANDIDATES) -> jax.Array:
    r"""One exact draw of :math:`\chi^2_\nu = 2\, \mathrm{Gamma}(\nu / 2, 1)`.

    Parameters
    ----------
    rng_key
        PRNG key.
    df
        Degrees of freedom :math:`\nu > 0`, a scalar (need not be an integer); NaN, zero or negative
        give NaN.
    dtype
        Floating output dtype (as in :func:`gamma`).
    num_candidates
        As in :func:`gamma`.

    Returns
    -------
    jax.Array
        Shape ``()``, ``dtype``.

    Examples
    --------
    >>> import jax
    >>> from mlgibbs.random import chi2
    >>> sigma_sq = 12.3 / chi2(jax.random.key(0), 20.0)   # S / chi^2_{n-1} with n = 21
    """
    df, dtype = _prepare(df, dtype)
    return 2.0 * gamma(rng_key, 0.5 * df, dtype, num_candidates=num_candidates)

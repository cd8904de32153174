"""Exact gamma variates of :mod:`mlgibbs.random` against SciPy, in float32 and float64.

What is tested
--------------
* Distribution: Kolmogorov-Smirnov tests of :func:`~mlgibbs.random.gamma` against
  ``scipy.stats.gamma(a)`` for ``a`` in :data:`GRID` (``1e-3`` to ``1e7``; in linear space where the
  draws do not underflow, ``a >= 0.1``) and of :func:`~mlgibbs.random.log_gamma` against the law of
  ``log G``, ``P(log G <= t) = P(a, e^t)`` (regularised incomplete gamma, written here with its
  small-``x`` series so that it holds for ``t`` far below ``log`` of the smallest float: for
  ``a = 1e-3`` the median of ``log G`` is about -700, and for ``a = 1e-6`` about -7e5); sample mean
  and variance against ``a`` and ``a``; :func:`~mlgibbs.random.chi2` against ``scipy.stats.chi2``.
* The fallback loop: with ``num_candidates=1`` about 5% of draws at ``a = 1`` need a second round;
  the draws that came out of later rounds alone follow the gamma law; with the round cap set to 1
  the rejected draws come out NaN (never an infinite loop).
* Power: the same KS machinery rejects a Wilson-Hilferty approximation at ``a = 0.5``, and exact
  draws of the wrong shape ``a + 1/3`` (what Marsaglia-Tsang with ``d = a`` instead of ``a - 1/3``
  gives) at ``a = 9.67``; the mean test rejects the latter too.
* The acceptance exponent ``3 d R(w)`` against 60-digit decimal arithmetic, for ``d`` up to ``1e8``:
  errors far below what the statistical tests can see (a sign slip in its series, the cancellation
  of the textbook formula) are caught there.
* Transformations: the same key gives the same draw; ``vmap`` over keys and concentrations equals a
  Python loop (also with ``num_candidates=1``, where lanes need different numbers of rounds);
  ``jit`` equals ``jax.disable_jit()``; ``exp(log_gamma) == gamma`` and ``chi2 == 2 gamma(df/2)``
  for the same key; ``rbg`` and ``unsafe_rbg`` keys; dtypes in and out; NaN for invalid
  concentrations, ``inf`` for ``+inf``; no NaN or inf for ``a`` from ``1e-3`` to ``1e8``; one
  ``while`` and one ``random_bits`` in the graph (cheap compile).

Tolerances
----------
Draws are independent, so the KS statistic has its exact null law; each test makes ``k``
comparisons and rejects at family-wise level :data:`FAMILY_ALPHA` with a Bonferroni correction
(p-values below ``FAMILY_ALPHA / k``). Means and variances use
``z = (mean - a) / sqrt(a / N)`` and ``z = (s^2 - a) / sqrt((2 a^2 + 6 a) / N)`` (the fourth
central moment of a gamma is ``3 a^2 + 6 a``), with the two-sided Bonferroni threshold
``Phi^{-1}(1 - FAMILY_ALPHA / 2k)``. Seeds are fixed for reproducibility; thresholds do not depend on
them. Discreteness of the draws (float32 resolution) moves the KS statistic by at most ~2e-3 at
``a = 1e7`` in log space, far below the critical value ~1.7e-2 at ``N = 20000``. To keep the file
fast, all concentrations are drawn in one jitted call per dtype (one compile), and cached.
"""

from __future__ import annotations

import contextlib
import functools
from decimal import Decimal, localcontext

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from mlgibbs import random as mr

GRID = (1e-3, 0.1, 0.5, 1.0, 2.5, 10.0, 459.0, 1e5, 1e7)
CHI2_DF = (1.0, 3.5, 20.0)
# all the concentrations drawn at once (one compile per dtype): the KS grid, a tiny and a huge one,
# and the halves of CHI2_DF (0.5 and 10 are in GRID)
ROW_GRID = GRID + (1e-6, 1e8, 1.75)
NUM_DRAWS = 20_000
FAMILY_ALPHA = 1e-4
DTYPES = ("float32", "float64")


def x64(dtype: str):
    """Context enabling 64-bit JAX for float64 (``jax.enable_x64`` or the older experimental one)."""
    if dtype != "float64":
        return contextlib.nullcontext()
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(True)
    from jax.experimental import enable_x64

    return enable_x64()


def log_gamma_cdf(t, a: float) -> np.ndarray:
    """``P(log G <= t) = P(a, e^t)``; for ``e^t < 2e-9`` the series ``x^a / Gamma(a+1) (1 - a x/(a+1))``."""
    t = np.asarray(t, np.float64)
    out = np.empty_like(t)
    small = t < -20.0
    x = np.exp(t[small])
    out[small] = np.exp(a * t[small] - special.gammaln(a + 1.0)) * (1.0 - a * x / (a + 1.0))
    out[~small] = special.gammainc(a, np.exp(t[~small]))
    return out


def ks_pvalue(draws, cdf) -> float:
    draws = np.asarray(draws, np.float64)
    assert np.all(np.isfinite(draws))
    return stats.kstest(draws, cdf).pvalue


def z_threshold(num_comparisons: int) -> float:
    return stats.norm.isf(FAMILY_ALPHA / (2 * num_comparisons))


@functools.partial(jax.jit, static_argnames=("num_candidates",))
def _draw_rows(keys, concentrations, num_candidates):
    """``gamma`` and ``log_gamma`` of ``(keys[i, j], concentrations[i])`` (the same draws), vmapped."""

    def one(key, a):
        return (mr.gamma(key, a, num_candidates=num_candidates),
                mr.log_gamma(key, a, num_candidates=num_candidates))

    return jax.vmap(jax.vmap(one, (0, None)), (0, 0))(keys, concentrations)


def row_keys(seed: int, rows: int) -> jax.Array:
    return jax.random.split(jax.random.key(seed), rows * NUM_DRAWS).reshape(rows, NUM_DRAWS)


@functools.lru_cache(maxsize=None)
def draw_rows(dtype: str, seed: int, grid=ROW_GRID, num_candidates=mr.DEFAULT_NUM_CANDIDATES):
    """``{a: (gamma draws, log_gamma draws)}``, NumPy, ``NUM_DRAWS`` each, the same draws for both."""
    with x64(dtype):
        g, log_g = _draw_rows(row_keys(seed, len(grid)), jnp.asarray(grid, dtype), num_candidates)
        assert g.dtype == log_g.dtype == jnp.dtype(dtype)
        g, log_g = np.asarray(g), np.asarray(log_g)
    return {a: (g[i], log_g[i]) for i, a in enumerate(grid)}


# ------------------------------------------------------------------------------------------------
# distribution


@pytest.mark.parametrize("dtype", DTYPES)
def test_ks_against_scipy(dtype):
    """``gamma`` in linear space (where it does not underflow) and ``log_gamma`` in log space."""
    linear = [a for a in GRID if a >= 0.1]
    k = len(linear) + len(GRID)
    failures = []
    for a in linear:
        p = ks_pvalue(draw_rows(dtype, seed=1)[a][0], stats.gamma(a).cdf)
        if p < FAMILY_ALPHA / k:
            failures.append(("gamma", a, p))
    for a in GRID:  # other keys: independent of the draws above
        p = ks_pvalue(draw_rows(dtype, seed=2)[a][1], functools.partial(log_gamma_cdf, a=a))
        if p < FAMILY_ALPHA / k:
            failures.append(("log_gamma", a, p))
    assert not failures, failures


@pytest.mark.parametrize("dtype", DTYPES)
def test_tiny_concentration_in_log_space(dtype):
    """For ``a = 1e-6`` ``log G`` is about ``-E / a`` (``E`` exponential): finite, and the right law;
    ``gamma`` of the same draws is 0 where it underflows, never NaN."""
    grid = (1e-6, 1e-3)
    for a in grid:
        g, log_g = draw_rows(dtype, seed=3)[a]
        assert ks_pvalue(log_g, functools.partial(log_gamma_cdf, a=a)) > FAMILY_ALPHA / len(grid)
        assert np.all(np.isfinite(g)) and np.all(g >= 0)
        assert np.all(g[log_g > np.log(np.finfo(dtype).tiny) + 1.0] > 0)
        assert np.all(g[log_g < np.log(np.finfo(dtype).smallest_subnormal) - 1.0] == 0)
    # an anchor independent of the CDF code: -a log G ~ Exponential(1) as a -> 0, median log 2
    log_g = draw_rows(dtype, seed=3)[1e-6][1].astype(np.float64)
    assert abs(np.median(-1e-6 * log_g) - np.log(2.0)) < 0.02


@pytest.mark.parametrize("dtype", DTYPES)
def test_mean_and_variance(dtype):
    grid = (0.5, 1.0, 2.5, 10.0, 459.0, 1e5, 1e7, 1e8)
    threshold = z_threshold(2 * len(grid))
    for a in grid:
        g = draw_rows(dtype, seed=1)[a][0].astype(np.float64)
        z_mean = (g.mean() - a) / np.sqrt(a / g.size)
        z_var = (g.var(ddof=1) - a) / np.sqrt((2 * a**2 + 6 * a) / g.size)
        assert abs(z_mean) < threshold, (a, z_mean)
        assert abs(z_var) < threshold, (a, z_var)


@pytest.mark.parametrize("dtype", DTYPES)
def test_chi2(dtype):
    """``chi2(df) == 2 gamma(df / 2)`` for the same key, and ``2 gamma(df / 2)`` is chi-squared."""
    for df in CHI2_DF:
        c = 2.0 * draw_rows(dtype, seed=1)[df / 2][0]
        assert ks_pvalue(c, stats.chi2(df).cdf) > FAMILY_ALPHA / len(CHI2_DF)
    with x64(dtype):
        keys = jax.random.split(jax.random.key(6), 8)
        df = jnp.asarray(3.5, dtype)
        c, g = jax.jit(jax.vmap(lambda k: (mr.chi2(k, df), mr.gamma(k, df / 2))))(keys)
        np.testing.assert_array_equal(c, 2 * g)
        assert c.dtype == jnp.dtype(dtype)


def test_ks_machinery_has_power():
    """The KS and mean checks above would catch an approximation and a one-third shape error."""
    z = np.asarray(jax.random.normal(jax.random.key(7), (NUM_DRAWS,)), np.float64)
    a = 0.5  # Wilson-Hilferty: G = a (1 - 1/9a + z / 3 sqrt(a))^3, an approximation
    wilson_hilferty = a * np.maximum(1.0 - 1.0 / (9 * a) + z / (3 * np.sqrt(a)), 0.0) ** 3
    assert ks_pvalue(wilson_hilferty, stats.gamma(a).cdf) < FAMILY_ALPHA / 2
    # exact draws of Gamma(10) taken for Gamma(10 - 1/3): what Marsaglia-Tsang with d = a instead of
    # a - 1/3 gives at a = 9.67
    a = 10.0 - 1.0 / 3.0
    wrong_shape = draw_rows("float32", seed=1)[10.0][0].astype(np.float64)
    assert ks_pvalue(wrong_shape, stats.gamma(a).cdf) < FAMILY_ALPHA / 2
    assert abs(wrong_shape.mean() - a) / np.sqrt(a / wrong_shape.size) > z_threshold(1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_acceptance_exponent_is_accurate(dtype):
    """``3 d R(w)``, ``R(w) = log(1 + w) - w + w^2/2 - w^3/3``, against 60-digit decimal arithmetic.

    The statistical tests cannot see errors of 1e-4 in the log acceptance probability, nor the
    cancellation of the textbook form ``x^2/2 + d (1 - v + log v)`` (an absolute error of order
    ``eps sqrt(d) |x|``: about 1e-3 at ``a = 1e8`` in float32); this test does. Tolerance: a few
    ulp of the value, plus, where the direct formula is used (``|w| >= 0.1``, so ``d < 300``), the
    rounding of its largest term, ``eps sqrt(d) |x|``.
    """
    eps = np.finfo(dtype).eps
    failures = []
    with x64(dtype), localcontext() as decimal_context:
        decimal_context.prec = 60
        for d in (2.0 / 3.0, 1.5, 9.6, 458.6, 1e5, 1e7, 1e8):
            d = jnp.asarray(d, dtype)
            x = jnp.linspace(-5.4, 5.4, 37, dtype=dtype)
            w = x * (1.0 / (3.0 * jnp.sqrt(d)))
            got = np.asarray(jax.jit(mr._log_acceptance)(x, w, d), np.float64)
            for xi, wi, gi in zip(np.asarray(x, np.float64), np.asarray(w, np.float64), got):
                if wi <= -1.0:  # rejected before the test
                    continue
                wd = Decimal(float(wi))
                ref = float(3 * Decimal(float(d)) * ((1 + wd).ln() - wd + wd**2 / 2 - wd**3 / 3))
                # the power series (|w| < 0.1) keeps relative accuracy; the direct formula loses
                # eps times its largest term, 3 d |w| = sqrt(d) |x|
                direct = np.sqrt(float(d)) * abs(xi) if abs(wi) >= 0.1 else 0.0
                if abs(gi - ref) > 8 * eps * (1.0 + abs(ref) + direct):
                    failures.append((float(d), xi, gi, ref))
    assert not failures, failures


# ------------------------------------------------------------------------------------------------
# the fallback loop


@pytest.mark.parametrize("dtype", DTYPES)
def test_fallback_rounds_are_exact(dtype):
    """One candidate per round: at ``a = 1`` (lowest acceptance, 0.951) and ``a = 0.1`` (boost path)
    about 5% of draws take a second round; those alone, and all draws, follow the gamma law."""
    grid = (1.0, 0.1)

    def draw(key, a):  # a draw, and the rounds it took
        return mr.gamma(key, a, num_candidates=1), mr._marsaglia_tsang(key, a, 1).num_rounds

    with x64(dtype):
        keys, conc = row_keys(9, len(grid)), jnp.asarray(grid, dtype)
        g, rounds = jax.jit(jax.vmap(jax.vmap(draw, (0, None))))(keys, conc)
        g, rounds = np.asarray(g, np.float64), np.asarray(rounds)
    k = 2 * len(grid)
    for i, a in enumerate(grid):
        g_i = g[i]
        late = rounds[i] >= 2
        assert rounds[i].min() == 1 and rounds[i].max() >= 3  # the loop ran, more than once
        # the rejection rate: 1 - 0.951 at b = 1, 1 - 0.955 at b = 1.1; +-8 binomial sd
        assert 0.035 < late.mean() < 0.063, late.mean()
        assert ks_pvalue(g_i, stats.gamma(a).cdf) > FAMILY_ALPHA / k
        assert ks_pvalue(g_i[late], stats.gamma(a).cdf) > FAMILY_ALPHA / k


def test_round_cap_gives_nan_not_a_hang():
    keys = jax.random.split(jax.random.key(11), 20_000)
    draw = jax.jit(jax.vmap(lambda k: mr._marsaglia_tsang(k, jnp.float32(1.0), 1, max_rounds=1)))(keys)
    rejected = np.isnan(np.asarray(draw.w))
    assert 0.035 < rejected.mean() < 0.063  # the first candidate's rejection rate, 0.049
    assert np.all(np.asarray(draw.num_rounds) == 1)


# ------------------------------------------------------------------------------------------------
# transformations, dtypes, special values


def test_same_key_same_draw_other_key_other_draw():
    key = jax.random.key(12)
    a = jnp.float32(2.5)
    first = mr.gamma(key, a)
    assert first == mr.gamma(key, a)
    others = {float(mr.gamma(k, a)) for k in jax.random.split(key, 8)}
    assert len(others | {float(first)}) == 9
    raw = jax.random.PRNGKey(12)  # a raw uint32 key works too
    assert mr.gamma(raw, a) == mr.gamma(raw, a)


@pytest.mark.parametrize("impl", ["rbg", "unsafe_rbg"])
def test_other_key_implementations(impl):
    """Under vmap JAX draws the bits of rbg keys for every lane from the first lane's key; without
    the hash into a Threefry key, lanes still running after lane 0 is done would loop to NaN."""
    keys = jax.random.split(jax.random.key(20, impl=impl), NUM_DRAWS)
    g = jax.jit(jax.vmap(lambda k: mr.gamma(k, jnp.float32(1.0), num_candidates=1)))(keys)
    g = np.asarray(g, np.float64)
    assert ks_pvalue(g, stats.gamma(1.0).cdf) > FAMILY_ALPHA  # (and no NaN)
    assert_same_draws(g[:3], [mr.gamma(k, jnp.float32(1.0), num_candidates=1) for k in keys[:3]], "float32")


def assert_same_draws(actual, expected, dtype):
    """Equal up to rounding: fused and unfused code may round differently in the last bits, which
    ``exp`` of a large log (``a < 1``: ``U^{1/a}``) amplifies by ``|log G|``; a different
    accept/reject decision would differ by far more."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    ok = ~np.isnan(expected) & (expected > 0)
    np.testing.assert_array_equal(actual[~ok & ~np.isnan(expected)], expected[~ok & ~np.isnan(expected)])
    tol = 16 * np.finfo(dtype).eps * (4.0 + np.abs(np.log(expected[ok])))
    assert np.all(np.abs(actual[ok] / expected[ok] - 1.0) <= tol)


@pytest.mark.parametrize(("dtype", "num_candidates"),
                         [("float64", 1), ("float32", mr.DEFAULT_NUM_CANDIDATES)])
def test_vmap_equals_loop(dtype, num_candidates):
    """vmap over keys and concentrations equals a loop of unbatched calls; with one candidate per
    round the lanes need different numbers of rounds."""
    with x64(dtype):
        conc = jnp.asarray([1e-3, 0.5, 1.0, 1.0, 2.5, 459.0, 1e7, 0.0, np.nan], dtype)
        keys = jax.random.split(jax.random.key(13), conc.size * 8).reshape(conc.size, 8)

        def gamma(k, a):
            return mr.gamma(k, a, num_candidates=num_candidates)

        batched = jax.jit(jax.vmap(jax.vmap(gamma, (0, None))))(keys, conc)
        looped = [[gamma(keys[i, j], conc[i]) for j in range(keys.shape[1])] for i in range(conc.size)]
        assert_same_draws(batched, looped, dtype)
        assert np.all(np.isnan(batched[-2:])) and np.all(np.isfinite(batched[:-2]))


def test_jit_equals_no_jit():
    conc = jnp.asarray([1e-3, 2.5], jnp.float32)
    keys = jax.random.split(jax.random.key(19), conc.size)
    jitted = [mr.gamma(k, a, num_candidates=1) for k, a in zip(keys, conc)]
    with jax.disable_jit():
        eager = [mr.gamma(k, a, num_candidates=1) for k, a in zip(keys, conc)]
    assert_same_draws(eager, jitted, "float32")


@pytest.mark.parametrize("dtype", DTYPES)
def test_log_gamma_is_log_of_gamma(dtype):
    for a, (g, log_g) in draw_rows(dtype, seed=1).items():
        log_g = log_g.astype(np.float64)
        ok = log_g > np.log(np.finfo(dtype).tiny) + 1.0
        # representable: about 1e-4 of the draws for a = 1e-6, 10% (float32) or 50% (float64) for 1e-3
        assert ok.mean() > {1e-6: 0.0, 1e-3: 0.05}.get(a, 0.999), (a, ok.mean())
        # the same draw, rounded differently: relative error a few eps times (4 + |log G|)
        rel_err = np.abs(g[ok] / np.exp(log_g[ok]) - 1.0)
        assert np.all(rel_err < 16 * np.finfo(dtype).eps * (4.0 + np.abs(log_g[ok]))), (a, rel_err.max())


@pytest.mark.parametrize("dtype", DTYPES)
def test_finite_on_the_whole_range(dtype):
    for a, (g, log_g) in draw_rows(dtype, seed=1).items():
        assert np.all(np.isfinite(g)) and np.all(g >= 0), a
        assert np.all(np.isfinite(log_g)), a
        if a >= 0.5 or (a >= 0.1 and dtype == "float64"):  # else some draws underflow to 0
            assert np.all(g > 0), a


def test_special_concentrations():
    """NaN for NaN, zero and negative concentrations, inf for inf: under vmap, next to valid lanes."""
    conc = jnp.asarray([0.0, -1.0, -np.inf, np.nan, np.inf, 2.0], jnp.float32)
    keys = jax.random.split(jax.random.key(17), conc.size)
    out = jax.jit(jax.vmap(lambda k, a: (mr.gamma(k, a), mr.log_gamma(k, a), mr.chi2(k, a))))(keys, conc)
    for values in map(np.asarray, out):
        assert np.all(np.isnan(values[:4])), values
        assert values[4] == np.inf and np.isfinite(values[5])


def test_dtypes_and_validation():
    key = jax.random.key(18)

    def dtype_of(fn, *args, **kwargs):
        return jax.eval_shape(functools.partial(fn, **kwargs), key, *args).dtype

    assert dtype_of(mr.gamma, 2.0) == jnp.float32
    assert dtype_of(mr.gamma, 2) == jnp.float32  # integer concentration: the default float
    assert dtype_of(mr.gamma, jnp.float16(2.0)) == jnp.float16
    assert dtype_of(mr.gamma, jnp.bfloat16(2.0)) == jnp.bfloat16
    assert dtype_of(mr.log_gamma, 2.0, dtype=jnp.float16) == jnp.float16
    with x64("float64"):
        assert dtype_of(mr.gamma, 2.0) == jnp.float64
        assert dtype_of(mr.gamma, jnp.float32(2.0)) == jnp.float32
        assert dtype_of(mr.gamma, jnp.float32(2.0), dtype=jnp.float64) == jnp.float64
        assert dtype_of(mr.chi2, jnp.float64(3.0)) == jnp.float64
    assert np.isfinite(mr.gamma(key, jnp.float16(2.0)))  # computed in float32, returned in float16
    with pytest.raises(ValueError, match="scalar concentration"):
        mr.gamma(key, jnp.ones(3))
    with pytest.raises(ValueError, match="floating dtype"):
        mr.gamma(key, 2.0, jnp.int32)
    with pytest.raises(ValueError, match="num_candidates"):
        mr.gamma(key, 2.0, num_candidates=0)


def test_graph_has_one_loop_and_one_random_call():
    """The compile-time budget: one rejection ``while`` and one ``random_bits``, none nested."""
    jaxpr = jax.make_jaxpr(mr.gamma)(jax.random.key(0), jnp.float32(2.5)).jaxpr

    def count(jaxpr, name):
        n = 0
        for eqn in jaxpr.eqns:
            n += eqn.primitive.name == name
            for sub in _subjaxprs(eqn):
                n += count(sub, name)
        return n

    assert count(jaxpr, "while") == 1
    assert count(jaxpr, "random_bits") == 1
    assert count(jaxpr, "random_gamma") == 0


def _subjaxprs(eqn):
    for value in eqn.params.values():
        for item in value if isinstance(value, (tuple, list)) else (value,):
            if hasattr(item, "jaxpr") and hasattr(item.jaxpr, "eqns"):  # ClosedJaxpr
                yield item.jaxpr
            elif hasattr(item, "eqns"):  # Jaxpr
                yield item

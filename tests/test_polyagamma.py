"""The Polya-Gamma sampler (:mod:`mlgibbs.polyagamma`) against the ``polyagamma`` package, closed forms and
exact arithmetic.

What is tested
--------------
* Integer ``b``: two-sample Kolmogorov-Smirnov tests of ``PG(b, c)`` draws (20,000 a cell) against the
  ``polyagamma`` package's (Windle's C implementations, a test-only dependency) over ``b`` in {1, 2, 5} and
  ``c`` in {0, 0.5, 2, 10, 50, -3}, float32 and float64; ``polyagamma_one`` and ``polyagamma_lanes`` alike.
* Non-integer ``b`` in {1.3, 2.5, 7.7} and ``c`` in {0, 0.5, 2, 10, 50}, float32 and float64: KS against a
  reference drawn from the series ``PG(b, c) = sum_k G_k / (2 pi^2 d_k)``, ``d_k = (k - 1/2)^2 + c^2 / (4
  pi^2)``, ``G_k ~ Gamma(b)``: 100 terms, and the rest (standard deviation ``3e-5 sqrt(b)``) drawn as a gamma
  of its mean and variance, an error far under what 20,000 draws resolve; and, where the package's own
  accept/reject is sound (``c >= 10``), against its exact ``method="alternate"``. That method is biased
  elsewhere: its bounding kernel for ``x > t`` carries ``(pi/2)^{h/2}`` where the density's tail has
  ``(pi/2)^h``, so it over-accepts there (+0.5 to +0.8% in the mean, +1 to +5% in the variance at
  ``|c| <= 2`` against the closed forms, polyagamma 2.0.2). Also the sum ``PG(1.5, c) + PG(1.5, c)`` of two
  of our draws against the package's exact ``PG(3, c)`` (Devroye's method).
* Means and variances against ``E = b tanh(c/2) / (2c)`` and ``Var = b (sinh c - c) / (4 c^3 cosh^2(c/2))``
  (``b/4`` and ``b/24`` at ``c = 0``) by z-tests with the sample's own standard errors; the two formulas
  checked against the gamma series' cumulants, ``b sum_k 1/d_k / (2 pi^2)`` and ``b sum_k 1/d_k^2 / (4
  pi^4)``.
* The alternating series: Devroye's four terms leave a remainder below ``1e-25`` (exact decimal arithmetic,
  every ``x``); the alternate method's series equals the exact sum, its envelopes dominate the density, and
  at ``b = 1`` its left series agrees with Devroye's right one.
* The same key gives the same draws: under ``jit``, under ``vmap`` over keys (and over ``c``), for concrete
  and traced ``b``; ``polyagamma(key, 1, c) == polyagamma_one(key, c)``. Shapes and dtypes.
* Power: ``PG(1, 2c)`` for ``PG(1, c)``, and the alternate method with the package's kernel constant, are
  rejected by the same tests.

Tolerances: KS p-values and |z| at a Bonferroni family-wise level of 1e-4 over each test's grid.
"""

from __future__ import annotations

import decimal
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import mlgibbs.polyagamma as P
from mlgibbs.polyagamma import polyagamma, polyagamma_lanes, polyagamma_mean, polyagamma_one

pg_reference = pytest.importorskip("polyagamma")

FAMILY_LEVEL = 1e-4
SIZE = 20_000
BS = (1, 2, 5)
CS = (0.0, 0.5, 2.0, 10.0, 50.0, -3.0)
FRACTIONAL_BS = (1.3, 2.5, 7.7)
FRACTIONAL_CS = (0.0, 0.5, 2.0, 10.0, 50.0)
DTYPES = pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64], ids=["float32", "float64"])


def grid_draws(bs, cs, dtype=jnp.float32, seed=1, size=SIZE, sampler=polyagamma):
    """``size`` draws for every cell of ``bs x cs`` from one call (one compilation); shape (|bs|, |cs|, size)."""
    b = np.repeat(np.asarray(bs, np.float64), len(cs) * size)
    c = np.tile(np.repeat(np.asarray(cs, np.float64), size), len(bs))
    x = sampler(jax.random.key(seed), b, jnp.asarray(c, dtype))
    assert x.dtype == dtype
    return np.asarray(x, np.float64).reshape(len(bs), len(cs), size)


def draws(b, c, dtype=jnp.float32, seed=1, size=SIZE):
    return grid_draws((b,), (c,), dtype, seed, size)[0, 0]


def variance(b, c):
    if c == 0.0:
        return b / 24.0
    return b * (np.sinh(c) - c) / (4.0 * c**3 * np.cosh(c / 2.0) ** 2)


@functools.lru_cache(maxsize=None)
def gamma_series_reference(b, c, size=SIZE, terms=100, seed=0):
    """``PG(b, c)`` from its gamma series: ``terms`` terms and a gamma with the rest's mean and variance."""
    rng = np.random.default_rng([seed, int(1000 * b), int(1000 * abs(c))])
    d = (np.arange(1, terms + 1) - 0.5) ** 2 + c**2 / (4.0 * np.pi**2)
    head = rng.gamma(b, size=(size, terms)) @ (1.0 / d)
    rest = (np.arange(terms + 1, 2_000_000) - 0.5) ** 2 + c**2 / (4.0 * np.pi**2)
    mean, var = b * np.sum(1.0 / rest), b * np.sum(1.0 / rest**2)
    return (head + rng.gamma(mean**2 / var, var / mean, size)) / (2.0 * np.pi**2)


def moment_z(x, b, c):
    mean, var = float(polyagamma_mean(b, c)), variance(b, c)
    z_mean = (x.mean() - mean) / (x.std(ddof=1) / np.sqrt(x.size))
    m4 = np.mean((x - x.mean()) ** 4)
    z_var = (x.var(ddof=1) - var) / np.sqrt((m4 - x.var() ** 2) / x.size)
    return z_mean, z_var


# ---------------------------------------------------------------------------------------------------------
# Integer b
# ---------------------------------------------------------------------------------------------------------

@DTYPES
def test_against_the_polyagamma_package(dtype):
    rng = np.random.default_rng(0)
    level = FAMILY_LEVEL / (len(BS) * len(CS))
    with jax.enable_x64(dtype == jnp.float64):
        x = grid_draws(BS, CS, dtype, seed=10)
    for i, b in enumerate(BS):
        for j, c in enumerate(CS):
            ref = pg_reference.random_polyagamma(b, c, size=SIZE, random_state=rng)
            assert np.all(np.isfinite(x[i, j])) and np.all(x[i, j] > 0)
            p = stats.ks_2samp(x[i, j], ref).pvalue
            assert p > level, (b, c, p)


@DTYPES
def test_polyagamma_one_and_lanes_against_the_package(dtype):
    """``polyagamma_one`` on a (cells, SIZE) array; ``polyagamma_lanes`` with 1, 3 and 4 lanes a row."""
    rng = np.random.default_rng(1)
    cs = (0.0, 0.7, 2.5, -6.0, 30.0)
    lane_counts = (1, 3, 4)
    level = FAMILY_LEVEL / (len(cs) + len(lane_counts))
    with jax.enable_x64(dtype == jnp.float64):
        one = polyagamma_one(jax.random.key(20), jnp.asarray(np.repeat(cs, SIZE).reshape(len(cs), SIZE), dtype))
        counts = np.repeat(lane_counts, SIZE)
        row_c = np.repeat(cs[1:1 + len(lane_counts)], SIZE)
        lane_rows = np.repeat(np.arange(counts.size), counts)
        lanes = polyagamma_lanes(jax.random.key(21), jnp.asarray(row_c, dtype), lane_rows, counts.size)
    assert one.shape == (len(cs), SIZE) and one.dtype == dtype and lanes.dtype == dtype
    for j, c in enumerate(cs):
        p = stats.ks_2samp(np.asarray(one[j]), pg_reference.random_polyagamma(1, c, size=SIZE, random_state=rng))
        assert p.pvalue > level, (c, p)
    lanes = np.asarray(lanes, np.float64).reshape(len(lane_counts), SIZE)
    for i, b in enumerate(lane_counts):
        c = cs[1 + i]
        p = stats.ks_2samp(lanes[i], pg_reference.random_polyagamma(b, c, size=SIZE, random_state=rng))
        assert p.pvalue > level, (b, c, p)


def test_moments():
    level = FAMILY_LEVEL / (2 * len(BS) * len(CS))
    crit = stats.norm.isf(level / 2)
    with jax.enable_x64(True):
        x = grid_draws(BS, CS, jnp.float64, seed=100, size=50_000)
    for i, b in enumerate(BS):
        for j, c in enumerate(CS):
            z_mean, z_var = moment_z(x[i, j], b, c)
            assert abs(z_mean) < crit and abs(z_var) < crit, (b, c, z_mean, z_var)


def test_variance_formula_matches_the_gamma_series():
    """``Var PG(b, c) = b sum_k 1/d_k^2 / (4 pi^4)``, ``d_k = (k - 1/2)^2 + c^2/(4 pi^2)``, is the closed form."""
    terms = 2_000_000
    k = np.arange(1, terms + 1) - 0.5
    for c in (0.0, 0.5, 2.0, 10.0, 50.0):
        d = k**2 + c**2 / (4.0 * np.pi**2)
        np.testing.assert_allclose(2.5 * np.sum(1.0 / d**2) / (4.0 * np.pi**4), variance(2.5, c), rtol=1e-9)
        mean = 2.5 * (np.sum(1.0 / d) + 1.0 / terms) / (2.0 * np.pi**2)        # + the rest, ~ 1/terms
        with jax.enable_x64(True):
            np.testing.assert_allclose(mean, float(polyagamma_mean(2.5, jnp.float64(c))), rtol=1e-9)


def test_a_wrong_sampler_is_rejected():
    rng = np.random.default_rng(5)
    for c in (0.5, 2.0):
        wrong = draws(1, 2 * c)
        ref = pg_reference.random_polyagamma(1, c, size=SIZE, random_state=rng)
        assert stats.ks_2samp(wrong, ref).pvalue < FAMILY_LEVEL / len(CS)


# ---------------------------------------------------------------------------------------------------------
# Non-integer b
# ---------------------------------------------------------------------------------------------------------

@DTYPES
def test_fractional_b_against_the_gamma_series_and_the_package(dtype):
    rng = np.random.default_rng(2)
    cells = len(FRACTIONAL_BS) * len(FRACTIONAL_CS)
    level = FAMILY_LEVEL / (cells + len(FRACTIONAL_BS) * 2)
    with jax.enable_x64(dtype == jnp.float64):
        x = grid_draws(FRACTIONAL_BS, FRACTIONAL_CS, dtype, seed=30)
    for i, b in enumerate(FRACTIONAL_BS):
        for j, c in enumerate(FRACTIONAL_CS):
            assert np.all(np.isfinite(x[i, j])) and np.all(x[i, j] > 0)
            p = stats.ks_2samp(x[i, j], gamma_series_reference(b, c)).pvalue
            assert p > level, (b, c, p)
            if c >= 10.0:
                ref = pg_reference.random_polyagamma(b, c, size=SIZE, method="alternate", random_state=rng)
                p = stats.ks_2samp(x[i, j], ref).pvalue
                assert p > level, ("package alternate", b, c, p)


def test_fractional_b_sums_to_the_integer_b():
    """``PG(1.5, c) + PG(1.5, c)`` (two keys) against the package's exact ``PG(3, c)``."""
    rng = np.random.default_rng(3)
    cs = (0.0, 2.0)
    x = grid_draws((1.5,), cs, seed=40)[0] + grid_draws((1.5,), cs, seed=41)[0]
    for j, c in enumerate(cs):
        ref = pg_reference.random_polyagamma(3, c, size=SIZE, method="devroye", random_state=rng)
        assert stats.ks_2samp(x[j], ref).pvalue > FAMILY_LEVEL / len(cs), c


def test_fractional_moments():
    level = FAMILY_LEVEL / (2 * len(FRACTIONAL_BS) * len(FRACTIONAL_CS))
    crit = stats.norm.isf(level / 2)
    with jax.enable_x64(True):
        x = grid_draws(FRACTIONAL_BS, FRACTIONAL_CS, jnp.float64, seed=200, size=50_000)
    for i, b in enumerate(FRACTIONAL_BS):
        for j, c in enumerate(FRACTIONAL_CS):
            z_mean, z_var = moment_z(x[i, j], b, c)
            assert abs(z_mean) < crit and abs(z_var) < crit, (b, c, z_mean, z_var)


def test_the_alternate_method_with_a_wrong_kernel_is_rejected(monkeypatch):
    """The kernel constant ``(pi/2)^{h/2}`` in place of ``(pi/2)^h`` (the ``polyagamma`` package's) is caught."""
    crit = stats.norm.isf(FAMILY_LEVEL / 2 / 4)
    right = P._log_a0_over_kernel
    monkeypatch.setattr(P, "_log_a0_over_kernel", lambda x, h: right(x, h) + 0.5 * h * math.log(math.pi / 2.0))
    wrong_sampler = jax.jit(P._alternate_named.__wrapped__)
    n = 100_000
    with jax.enable_x64(True):
        for c in (0.0, 2.0):
            x = np.asarray(wrong_sampler(jax.random.key(7), jnp.full(n, 1.9), jnp.full(n, c),
                                         jnp.arange(n, dtype=jnp.uint32)))
            assert max(abs(z) for z in moment_z(x, 1.9, c)) > crit, c


def test_b_below_one_is_refused():
    with pytest.raises(ValueError, match="expected b >= 1"):
        polyagamma(jax.random.key(0), np.array([1.0, 0.5]), jnp.ones(2))
    x = jax.jit(polyagamma)(jax.random.key(0), jnp.array([0.5, 0.0, 1.0]), jnp.ones(3))
    assert np.isnan(x[0]) and x[1] == 0.0 and x[2] > 0.0


# ---------------------------------------------------------------------------------------------------------
# The series, in exact arithmetic
# ---------------------------------------------------------------------------------------------------------

D = decimal.Decimal
DIGITS = decimal.Context(prec=60)


def exact_devroye_ratio(x, terms):
    """``sum_{n <= terms} (-1)^n a_n(x)/a_0(x)`` for Devroye's series, in 60-digit decimals."""
    with decimal.localcontext(DIGITS):
        x = D(x)
        pi2 = D("9.8696044010893586188344909998761511353136994072407906264133")
        q = (-D(4) / x).exp() if x <= D(P.TRUNCATION) else (-pi2 * x).exp()
        return sum((-1) ** n * (2 * n + 1) * q ** (n * (n + 1) // 2) for n in range(terms + 1))


def test_devroye_series_truncation_bound():
    """Four terms leave a remainder below ``1e-25`` of ``a_0`` at every ``x`` (largest at ``x = t``)."""
    t = P.TRUNCATION
    xs = np.concatenate([np.linspace(0.02, t, 200), np.linspace(t, 40.0, 400)])
    for x in xs:
        partial = exact_devroye_ratio(x, P.DEVROYE_TERMS)
        remainder = abs(exact_devroye_ratio(x, 40) - partial)
        assert remainder < D("1e-25"), (x, remainder)
        q = math.exp(-4.0 / x) if x <= t else math.exp(-math.pi**2 * x)
        with jax.enable_x64(True):
            ours = float(P._devroye_series(jnp.float64(q)))
        assert abs(ours - float(partial)) < 4e-16, x
    for q in (0.05, 0.3, 0.6):                       # the polynomial itself, where every term shows
        exact = sum((-1) ** n * (2 * n + 1) * q ** (n * (n + 1) // 2) for n in range(P.DEVROYE_TERMS + 1))
        with jax.enable_x64(True):
            assert abs(float(P._devroye_series(jnp.float64(q))) - exact) < 1e-14, q
    # the bound is tight where stated: the fifth term at x = t is ~6.6e-27 (left) and ~3.4e-27 (right)
    assert 1e-27 < 9.0 * math.exp(-40.0 / t) < 1e-26
    assert 1e-27 < 9.0 * math.exp(-10.0 * math.pi**2 * t) < 1e-26


def exact_alternate_series(x, h, negligible=D("1e-50")):
    """The terms ``T_n = a_n(x|h) / a_0(x|h) = prod_{k<n} (k+h)/(k+1) (2n+h)/h e^{-2n(n+h)/x}`` (until they
    decrease and fall below ``negligible``) and their alternating sum, in 60-digit decimals."""
    with decimal.localcontext(DIGITS):
        x, h = D(x), D(h)
        terms, binomial = [], D(1)
        for n in range(10_000):
            if n:
                binomial *= (n - 1 + h) / n
            terms.append(binomial * (2 * n + h) / h * (-2 * n * (n + h) / x).exp())
            if n and terms[-1] < terms[-2] and terms[-1] < negligible:
                return terms, sum((-1) ** n * a for n, a in enumerate(terms))
    raise AssertionError("the series did not converge")


def test_alternate_series_against_the_exact_sum():
    """Our float64 series equals the exact alternating sum up to its cancellation and the stated tolerance."""
    with jax.enable_x64(True):
        for h in (1.0, 1.25, 1.5, 1.75, 1.999):
            t = float(P.truncation_point(jnp.float64(h)))
            xs = np.array([0.05, 0.3, 0.5 * t, 0.99 * t, 1.01 * t, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0])
            right = xs > t
            log_a0k = np.asarray(P._log_a0_over_kernel(jnp.asarray(xs), h))
            scale = np.where(right, np.exp(-log_a0k), 1.0)
            ours = np.asarray(P._alternate_series(jnp.asarray(xs), jnp.float64(h), jnp.asarray(scale),
                                                  jnp.ones(xs.size, bool)))
            uncapped = P._alternate_series(jnp.asarray(xs), jnp.float64(h), jnp.asarray(scale),
                                           jnp.ones(xs.size, bool), max_terms=100_000)
            np.testing.assert_array_equal(ours, np.asarray(uncapped))      # the cap is not reached
            for x, s, sc in zip(xs, ours, scale):
                terms, exact = exact_alternate_series(x, h)
                size = float(sum(terms))                     # what the cancellation works against
                assert abs(s - float(exact)) <= 1e-13 * size + P.SERIES_TOLERANCE * sc, (h, x, s, exact)


def test_alternate_envelopes_dominate_the_density():
    """``f <= a_0`` left of ``t(h)`` (terms decreasing there) and ``f <= k`` everywhere; ``t(h)`` the crossing."""
    for h in (1.0, 1.2, 1.5, 1.8, 2.0):
        with jax.enable_x64(True):
            t = float(P.truncation_point(jnp.float64(h)))
            assert abs(float(P._log_a0_over_kernel(jnp.float64(t), h))) < 1e-6
        assert t < 2.0 * (h + 1.0) / math.log(h + 2.0)
        for x in np.concatenate([np.linspace(0.05, t, 20), np.linspace(t, 25.0, 60)]):
            terms, ratio = exact_alternate_series(x, h)                     # ratio = f / a_0
            if x <= t:
                assert all(a >= b for a, b in zip(terms, terms[1:])), (h, x)
            log_a0k = h * math.log(4 / math.pi) + math.lgamma(h + 1) - 0.5 * math.log(2 * math.pi) \
                - (h + 0.5) * math.log(x) - h * h / (2 * x) + math.pi**2 * x / 8
            assert 0 < ratio <= 1 and float(ratio) * math.exp(log_a0k) <= 1.0 + 1e-12, (h, x)


def test_alternate_series_at_b_one_matches_devroye():
    """At ``h = 1``, ``a_0^L S^L / k = f / a_0^R``: the left series (alternate) and the right one (Devroye)."""
    with jax.enable_x64(True):
        xs = jnp.linspace(0.7, 8.0, 50)
        left = P._alternate_series(xs, jnp.float64(1.0), jnp.full(50, 1e-30), jnp.ones(50, bool))
        left = left * jnp.exp(P._log_a0_over_kernel(xs, 1.0))
        right = P._devroye_series(jnp.exp(-math.pi**2 * xs))
        np.testing.assert_allclose(np.asarray(left), np.asarray(right), rtol=1e-9)


# ---------------------------------------------------------------------------------------------------------
# Randomness, jit, vmap, shapes
# ---------------------------------------------------------------------------------------------------------

def test_threefry_is_jax_threefry():
    from jax.extend.random import threefry2x32_p

    x = jnp.arange(1000, dtype=jnp.uint32) * jnp.uint32(2654435761)
    ours = P._threefry(x, x ^ 7, x + 1, x * 3)
    theirs = threefry2x32_p.bind(x, x ^ 7, x + 1, x * 3)
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_same_key_same_draws_and_shapes():
    c = jnp.linspace(-5.0, 5.0, 12).reshape(3, 4)
    a = polyagamma(jax.random.key(3), jnp.array([1, 2, 3, 4]), c)
    b = polyagamma(jax.random.key(3), jnp.array([1, 2, 3, 4]), c)
    assert a.shape == (3, 4)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    jitted = jax.jit(polyagamma)(jax.random.key(3), jnp.array([1, 2, 3, 4]), c)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(a), rtol=1e-6)


def test_same_draws_under_jit_and_vmap():
    keys = jax.random.split(jax.random.key(4), 3)
    c = jnp.linspace(-6.0, 6.0, 40)
    b = np.array([1.0, 2.5, 3.0, 0.0, 7.7] * 8)

    one = jax.vmap(polyagamma_one, (0, None))(keys, c)
    np.testing.assert_array_equal(np.asarray(one), np.stack([polyagamma_one(k, c) for k in keys]))
    np.testing.assert_array_equal(np.asarray(jax.jit(polyagamma_one)(keys[0], c)), np.asarray(one[0]))
    np.testing.assert_array_equal(np.asarray(polyagamma(keys[0], 1, c)), np.asarray(one[0]))
    assert len(np.unique(np.asarray(one))) == one.size                  # keys and lanes all differ

    concrete = jax.vmap(lambda k: polyagamma(k, b, c))(keys)
    loop = np.stack([polyagamma(k, b, c) for k in keys])
    np.testing.assert_array_equal(np.asarray(concrete), loop)
    traced = jax.vmap(lambda k, b: polyagamma(k, b, c), (0, None))(keys, jnp.asarray(b))
    np.testing.assert_allclose(np.asarray(traced), loop, rtol=2e-6)
    assert np.all(loop[:, b == 0] == 0.0) and np.all(loop[:, b > 0] > 0.0)

    lane_rows = jnp.asarray(np.repeat(np.arange(5), [1, 3, 0, 2, 4]))
    by_chain = jnp.stack([c[:5], 2.0 * c[:5], c[:5] + 1.0])                  # c batched too
    lanes = jax.vmap(polyagamma_lanes, (0, 0, None, None))(keys, by_chain, lane_rows, 5)
    np.testing.assert_array_equal(np.asarray(lanes), np.stack([polyagamma_lanes(k, x, lane_rows, 5)
                                                               for k, x in zip(keys, by_chain)]))
    assert np.all(np.asarray(lanes)[:, 2] == 0.0)


def test_nan_and_extreme_c():
    x = polyagamma_one(jax.random.key(0), jnp.array([jnp.nan, 1.0, jnp.inf, -1e30, 200.0]))
    assert np.isnan(x[0]) and x[1] > 0 and x[2] == 0.0
    np.testing.assert_allclose(np.asarray(x[3]), 0.5e-30, rtol=1e-3)           # E = 1/(2|c|) there
    assert 0.0 < float(x[4]) < 0.1
    y = polyagamma(jax.random.key(0), 2.5, jnp.array([jnp.nan, 80.0]))
    assert np.isnan(y[0]) and 0.0 < float(y[1]) < 0.2


@pytest.mark.slow
def test_float32_decisions_agree_with_float64():
    """The float32 accept/reject tests agree with float64 on the same proposals but for ~1 in 10^6."""
    n = 4_000_000
    with jax.enable_x64(True):
        alternate, devroye = jax.jit(P._alternate_propose), jax.jit(P._devroye_propose)
        u = jax.random.uniform(jax.random.key(0), (4, n), jnp.float64, minval=1e-7, maxval=1.0 - 1e-7)
        u32 = u.astype(jnp.float32)
        for c in (0.0, 2.0, 10.0):
            for h in (1.0, 1.5, 1.9):
                ok64 = alternate(u, jnp.full(n, h), jnp.full(n, c))[1]
                ok32 = alternate(u32, jnp.full(n, h, jnp.float32), jnp.full(n, c, jnp.float32))[1]
                assert int(jnp.sum(ok64 != ok32)) <= 40, (h, c)
            ok64 = devroye(u, jnp.full(n, c))[1]
            ok32 = devroye(u32, jnp.full(n, c, jnp.float32))[1]
            assert int(jnp.sum(ok64 != ok32)) <= 10, c

"""The Polya-Gamma sampler (:mod:`mlgibbs.polyagamma`) against the ``polyagamma`` package and closed forms.

What is tested
--------------
* Two-sample Kolmogorov-Smirnov tests of ``PG(b, c)`` draws (20,000) against the ``polyagamma`` package's
  (Windle's C implementations, a test-only dependency) over a grid ``b`` in {1, 2, 5} and ``c`` in
  {0, 0.5, 2, 10, 50, -3}, float32 and float64.
* Means and variances against ``E = b tanh(c/2) / (2c)`` and ``Var = b (sinh c - c) / (4 c^3 cosh^2(c/2))``
  (``b/4`` and ``b/24`` at ``c = 0``) by z-tests with the sample's own standard errors.
* The same key gives the same draws; draws are positive and finite.
* Power: draws of ``PG(1, 2c)`` in place of ``PG(1, c)`` must be rejected by the same KS test.

Tolerances: KS p-values and |z| at a Bonferroni family-wise level of 1e-4 over each test's grid.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from mlgibbs.polyagamma import polyagamma, polyagamma_mean

pg_reference = pytest.importorskip("polyagamma")

FAMILY_LEVEL = 1e-4
SIZE = 20_000
BS = (1, 2, 5)
CS = (0.0, 0.5, 2.0, 10.0, 50.0, -3.0)


def draws(b, c, dtype=jnp.float32, seed=1, size=SIZE):
    return np.asarray(polyagamma(jax.random.key(seed), b, jnp.full((size,), c, dtype)), np.float64)


def variance(b, c):
    if c == 0.0:
        return b / 24.0
    return b * (np.sinh(c) - c) / (4.0 * c**3 * np.cosh(c / 2.0) ** 2)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64], ids=["float32", "float64"])
def test_against_the_polyagamma_package(dtype):
    rng = np.random.default_rng(0)
    level = FAMILY_LEVEL / (len(BS) * len(CS))
    with jax.enable_x64(dtype == jnp.float64):
        for i, b in enumerate(BS):
            for j, c in enumerate(CS):
                x = draws(b, c, dtype, seed=10 * i + j)
                ref = pg_reference.random_polyagamma(b, c, size=SIZE, random_state=rng)
                assert np.all(np.isfinite(x)) and np.all(x > 0)
                p = stats.ks_2samp(x, ref).pvalue
                assert p > level, (b, c, p)


def test_moments():
    level = FAMILY_LEVEL / (2 * len(BS) * len(CS))
    crit = stats.norm.isf(level / 2)
    with jax.enable_x64(True):
        for i, b in enumerate(BS):
            for j, c in enumerate(CS):
                x = draws(b, c, jnp.float64, seed=100 + 10 * i + j, size=50_000)
                mean, var = float(polyagamma_mean(b, c)), variance(b, c)
                z_mean = (x.mean() - mean) / (x.std(ddof=1) / np.sqrt(x.size))
                m4 = np.mean((x - x.mean()) ** 4)
                z_var = (x.var(ddof=1) - var) / np.sqrt((m4 - x.var() ** 2) / x.size)
                assert abs(z_mean) < crit and abs(z_var) < crit, (b, c, z_mean, z_var)


def test_same_key_same_draws_and_shapes():
    c = jnp.linspace(-5.0, 5.0, 12).reshape(3, 4)
    a = polyagamma(jax.random.key(3), jnp.array([1, 2, 3, 4]), c)
    b = polyagamma(jax.random.key(3), jnp.array([1, 2, 3, 4]), c)
    assert a.shape == (3, 4)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    jitted = jax.jit(polyagamma)(jax.random.key(3), jnp.array([1, 2, 3, 4]), c)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(a), rtol=1e-6)


def test_a_wrong_sampler_is_rejected():
    rng = np.random.default_rng(5)
    for c in (0.5, 2.0):
        wrong = draws(1, 2 * c)
        ref = pg_reference.random_polyagamma(1, c, size=SIZE, random_state=rng)
        assert stats.ks_2samp(wrong, ref).pvalue < FAMILY_LEVEL / len(CS)

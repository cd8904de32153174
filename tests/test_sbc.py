"""Simulation-based calibration (Talts et al. 2018) of the full Gibbs kernel, under proper priors.

What is tested
--------------
For each of many simulated data sets (one ``vmap``): draw ``theta* ~ p(theta)`` (in NumPy,
independent of the library) and ``y ~ p(y | theta*)``; compute the data pytree with the pure-JAX
``mg.sufficient_statistics``; start ``mg.gibbs(model)`` from its data-dependent ``init``, run a
warm-up, then keep ``L`` draws thinned by ``thin`` sweeps; record the rank of ``theta*`` among the
``L`` draws (the number of draws below it) for every scalar tested: ``sigma_y``, ``sigma_alpha``,
``beta_0``, ``beta_1``, ``gamma_0``, ``gamma_1``, ``alpha_0`` and ``alpha_{J-1}``. If the kernel
samples the posterior, ``theta*`` and the (thinned, nearly independent) draws are exchangeable
and every rank is uniform on ``0..L``. Errors in a conditional, in the assembly of the sweep or in
``init`` that survives the warm-up show up as skewed (bias), peaked (over-dispersion) or U-shaped
(under-dispersion) rank histograms.

Priors: normal on ``beta`` and ``gamma``, inverse-gamma on both variances (shape 6, so that every
simulated data set is one where the Gibbs sampler mixes: ``sigma_alpha`` stays well above
``sigma_y / sqrt(n_j)``, away from the funnel where thinning would have to be much heavier). The
draws are thinned so that they are nearly independent, as the ranks' uniformity requires: over 200
simulated data sets the lag-1 autocorrelation of the tested parameters is at most 0.3 and the lag-4
autocorrelation at most 0.1 (CI thinning 4, slow thinning 5); residual autocorrelation would make
the rank histograms U-shaped.

Tolerances
----------
Ranks from different data sets are independent. For each parameter the ``L + 1`` rank values are
pooled into 10 equal bins and compared with the uniform by a chi-square test (9 degrees of freedom,
expected counts of at least 50); the p-value must exceed the Bonferroni level ``1e-4 / 8``. Seeds are
fixed for reproducibility; the thresholds do not depend on them. The CI size is 500 data sets with
``L = 49``; ``-m slow`` runs 4,000 data sets with ``L = 99``.

References
----------
Talts, S., Betancourt, M., Simpson, D., Vehtari, A. & Gelman, A. (2018). Validating Bayesian
inference algorithms with simulation-based calibration. arXiv:1804.06788.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import mlgibbs as mg
from mlgibbs import priors as P

FAMILY_ALPHA = 1e-4
NUM_BINS = 10
NUM_GROUPS, PER_GROUP = 5, 8
BETA_PRIOR = P.Normal(np.array([0.5, -0.5]), np.array([1.0, 0.7]))
GAMMA_PRIOR = P.Normal(np.array([1.0, 0.0]), np.array([1.0, 0.5]))
SCALE_PRIOR = P.InverseGamma(6.0, 5.0)
NAMES = ("sigma_y", "sigma_alpha", "beta_0", "beta_1", "gamma_0", "gamma_1", "alpha_0", "alpha_last")

# Compilation dominates the CI-sized run on CPU: it compiles with XLA's backend optimisation off
# (about half the compile time); the slow size compiles normally.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def make_design(seed: int = 8):
    rng = np.random.default_rng(seed)
    group = np.repeat(np.arange(NUM_GROUPS), PER_GROUP)
    X = rng.normal(size=(group.size, 2)) + 0.5 * rng.normal(size=(NUM_GROUPS, 2))[group]
    u = rng.normal(size=(NUM_GROUPS, 1))
    return X, group, u, np.column_stack([np.ones(NUM_GROUPS), u])


X_DESIGN, GROUP, U_PREDICTOR, U_DESIGN = make_design()


def draw_truth_and_data(rng: np.random.Generator, size: int):
    """``size`` draws of ``theta* ~ p(theta)`` and ``y ~ p(y | theta*)``, in NumPy."""
    a, b = SCALE_PRIOR.concentration, SCALE_PRIOR.rate
    beta = BETA_PRIOR.loc + BETA_PRIOR.scale * rng.standard_normal((size, 2))
    gamma = GAMMA_PRIOR.loc + GAMMA_PRIOR.scale * rng.standard_normal((size, 2))
    sigma_y = np.sqrt(b / rng.gamma(a, size=size))
    sigma_alpha = np.sqrt(b / rng.gamma(a, size=size))
    alpha = gamma @ U_DESIGN.T + sigma_alpha[:, None] * rng.standard_normal((size, NUM_GROUPS))
    mean = alpha[:, GROUP] + beta @ X_DESIGN.T
    y = mean + sigma_y[:, None] * rng.standard_normal(mean.shape)
    truth = np.column_stack([sigma_y, sigma_alpha, beta, gamma, alpha[:, 0], alpha[:, -1]])
    return truth.astype(np.float32), y.astype(np.float32)


def kernel():
    """``mg.gibbs`` for the model with the SBC priors (the placeholder ``y`` only fixes shapes)."""
    model = mg.Model.from_arrays(
        np.zeros(GROUP.size), X_DESIGN, GROUP, U_PREDICTOR,
        priors={"beta": BETA_PRIOR, "gamma": GAMMA_PRIOR, "sigma_y": SCALE_PRIOR,
                "sigma_alpha": SCALE_PRIOR},
    )
    return mg.gibbs(model)


def flatten(state: mg.GibbsState) -> jax.Array:
    return jnp.stack([state.sigma_y, state.sigma_alpha, state.beta[0], state.beta[1],
                      state.gamma[0], state.gamma[1], state.alpha[0], state.alpha[-1]])


def ranks_one(rng_key, truth, y, *, gibbs, num_warmup, num_draws, thin):
    """Rank of ``truth`` among ``num_draws`` thinned draws of one chain on the data ``y``."""
    data = mg.sufficient_statistics(y, jnp.asarray(X_DESIGN, y.dtype), jnp.asarray(GROUP),
                                    jnp.asarray(U_DESIGN, y.dtype), NUM_GROUPS)
    key_init, key_warmup, key_draws = jax.random.split(rng_key, 3)
    state = gibbs.init(key_init, data)

    def sweep(state, key):
        return gibbs.step(key, state, data), None

    state, _ = jax.lax.scan(sweep, state, jax.random.split(key_warmup, num_warmup))

    def one_draw(state, key):
        state, _ = jax.lax.scan(sweep, state, jax.random.split(key, thin))
        return state, flatten(state) < truth

    _, below = jax.lax.scan(one_draw, state, jax.random.split(key_draws, num_draws))
    return jnp.sum(below, axis=0)


def sbc_ranks(num_datasets: int, num_warmup: int, num_draws: int, thin: int, fast: bool, seed: int):
    truth, y = draw_truth_and_data(np.random.default_rng(seed), num_datasets)
    fn = jax.vmap(functools.partial(ranks_one, gibbs=kernel(), num_warmup=num_warmup,
                                    num_draws=num_draws, thin=thin))
    keys = jax.random.split(jax.random.key(seed), num_datasets)
    lowered = jax.jit(fn).lower(keys, truth, y)
    program = lowered.compile(FAST_COMPILE) if fast else lowered.compile()
    return np.asarray(program(keys, truth, y))


def assert_uniform_ranks(ranks: np.ndarray, num_draws: int):
    """Chi-square test of each column of ``ranks`` (values ``0..num_draws``) against the uniform."""
    assert (num_draws + 1) % NUM_BINS == 0
    counts = np.stack([np.bincount(r * NUM_BINS // (num_draws + 1), minlength=NUM_BINS) for r in ranks.T])
    expected = ranks.shape[0] / NUM_BINS
    chi2 = np.sum((counts - expected) ** 2 / expected, axis=1)
    p = stats.chi2.sf(chi2, NUM_BINS - 1)
    level = FAMILY_ALPHA / ranks.shape[1]
    bad = [f"{name}: p = {pv:.1e}, bins {list(c)}" for name, pv, c in zip(NAMES, p, counts) if pv < level]
    assert not bad, "non-uniform SBC ranks (level %.1e):\n" % level + "\n".join(bad)


def test_sbc():
    num_draws = 49
    ranks = sbc_ranks(num_datasets=500, num_warmup=50, num_draws=num_draws, thin=4, fast=True, seed=0)
    assert_uniform_ranks(ranks, num_draws)


@pytest.mark.slow
def test_sbc_slow():
    num_draws = 99
    ranks = sbc_ranks(num_datasets=4000, num_warmup=200, num_draws=num_draws, thin=5, fast=False, seed=1)
    assert_uniform_ranks(ranks, num_draws)

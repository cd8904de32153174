"""Simulation-based calibration (Talts et al. 2018) of every sampler's kernel, under proper priors.

What is tested
--------------
For each of many simulated data sets (one ``vmap``): draw ``theta* ~ p(theta)`` (in NumPy,
independent of the library) and ``y ~ p(y | theta*)``; compute the data pytree with the pure-JAX
``mg.sufficient_statistics``; start ``mg.gibbs(model, sampler=name)`` from its data-dependent
``init``, run a warm-up, then keep ``L`` draws thinned by ``thin`` sweeps; record the rank of
``theta*`` among the ``L`` draws (the number of draws below it) for every scalar tested:
``sigma_y``, ``sigma_alpha``, ``beta_0``, ``beta_1``, ``gamma_0``, ``gamma_1``, ``alpha_0`` and
``alpha_{J-1}``. If the kernel samples the posterior, ``theta*`` and the (thinned, nearly
independent) draws are exchangeable and every rank is uniform on ``0..L``. Errors in a conditional,
in the assembly of the sweep or in ``init`` that survives the warm-up show up as skewed (bias),
peaked (over-dispersion) or U-shaped (under-dispersion) rank histograms.

Priors and thinning, per sampler
--------------------------------
Normal on ``beta`` and ``gamma`` throughout. On the scales:

* ``"gibbs"``: inverse-gamma on both variances (shape 6, so that every simulated data set is one
  where the five-step sampler mixes: ``sigma_alpha`` stays well above ``sigma_y / sqrt(n_j)``, away
  from the funnel where thinning would have to be much heavier).
* ``"collapsed"``, ``"px"`` and ``"grid"``: inverse-gamma (shape 6) on ``sigma_y^2`` and ``HalfNormal(1)`` on
  ``sigma_alpha``, which puts mass near zero, in the funnel these samplers are built for (and
  ``"px"`` has no expansion for an inverse-gamma prior on ``sigma_alpha``). ``"grid"`` tabulates its
  proposal once per simulated data set, as ``mg.sample`` does once per model.

The draws are thinned so that they are nearly independent, as the ranks' uniformity requires
(residual autocorrelation makes the rank histograms U-shaped). Measured per sweep over 200 simulated
data sets (2,000 sweeps each, so a single estimate has a standard error of about 0.02): for
``"gibbs"`` the lag-1 autocorrelation of the tested parameters is at most 0.4 and the lag-4 one at
most 0.08 (mean over data sets at most 0.01); for ``"collapsed"`` only ``sigma_y`` and
``sigma_alpha`` are autocorrelated (lag 1 at most 0.26, lag 3 at most 0.08, mean 0.004); for
``"px"``, ``sigma_alpha`` is the slowest (lag 1: mean 0.29, at most 0.75; lag 8: mean 0.024, at most
0.15), then ``gamma_0`` (lag 1 at most 0.63, lag 8 at most 0.12). For ``"grid"`` (an independence
sampler: a draw repeats only when the proposal is refused) only the scales are autocorrelated: lag 1 mean
0.08, at most 0.18; lag 2 mean at most 0.014, and every lag >= 2 at most 0.09, the noise level of 200
estimates. CI thinning: 4 (gibbs), 3 (collapsed), 8 (px), 2 (grid); slow thinning: 5, 4, 10, 3.

Tolerances
----------
Ranks from different data sets are independent. For each parameter the ``L + 1`` rank values are
pooled into 10 equal bins and compared with the uniform by a chi-square test (9 degrees of freedom,
expected counts of at least 50); the p-value must exceed the Bonferroni level ``1e-4 / 8`` within a
sampler (each sampler is a separate family: a failure names the sampler). Seeds are fixed for
reproducibility; the thresholds do not depend on them. The CI size is 500 data sets with ``L = 49``;
``-m slow`` runs 4,000 data sets with ``L = 99``.

References
----------
Talts, S., Betancourt, M., Simpson, D., Vehtari, A. & Gelman, A. (2018). Validating Bayesian
inference algorithms with simulation-based calibration. arXiv:1804.06788.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import mlgibbs as mg
from mlgibbs import priors as P
from mlgibbs.conditionals.scale_grid import build_scale_grid

FAMILY_ALPHA = 1e-4
NUM_BINS = 10
NUM_GROUPS, PER_GROUP = 5, 8
BETA_PRIOR = P.Normal(np.array([0.5, -0.5]), np.array([1.0, 0.7]))
GAMMA_PRIOR = P.Normal(np.array([1.0, 0.0]), np.array([1.0, 0.5]))
SCALE_PRIOR = P.InverseGamma(6.0, 5.0)
NAMES = ("sigma_y", "sigma_alpha", "beta_0", "beta_1", "gamma_0", "gamma_1", "alpha_0", "alpha_last")


class Config(NamedTuple):
    """Scale priors and thinning (CI, slow) of one sampler's SBC run."""

    sigma_y: object
    sigma_alpha: object
    thin: int
    thin_slow: int


CONFIGS = {
    "gibbs": Config(SCALE_PRIOR, SCALE_PRIOR, thin=4, thin_slow=5),
    "collapsed": Config(SCALE_PRIOR, P.HalfNormal(1.0), thin=3, thin_slow=4),
    "px": Config(SCALE_PRIOR, P.HalfNormal(1.0), thin=8, thin_slow=10),
    "grid": Config(SCALE_PRIOR, P.HalfNormal(1.0), thin=2, thin_slow=3),
}

# Compilation dominates the CI-sized run on CPU: it compiles with XLA's backend optimisation off
# (about half the compile time); the slow size compiles normally.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def make_design(seed: int = 8):
    rng = np.random.default_rng(seed)
    group = np.repeat(np.arange(NUM_GROUPS), PER_GROUP)
    X = 1.5 + rng.normal(size=(group.size, 2)) + 0.5 * rng.normal(size=(NUM_GROUPS, 2))[group]
    u = rng.normal(size=(NUM_GROUPS, 1))
    return X, group, u, np.column_stack([np.ones(NUM_GROUPS), u])


X_DESIGN, GROUP, U_PREDICTOR, U_DESIGN = make_design()


def draw_scale(rng: np.random.Generator, prior, size: int) -> np.ndarray:
    """Draws of ``sigma`` from an inverse-gamma (on ``sigma^2``) or half-normal prior."""
    if isinstance(prior, P.InverseGamma):
        return np.sqrt(prior.rate / rng.gamma(prior.concentration, size=size))
    if isinstance(prior, P.HalfNormal):
        return prior.scale * np.abs(rng.standard_normal(size))
    raise TypeError(prior)


def draw_truth_and_data(rng: np.random.Generator, size: int, config: Config = CONFIGS["gibbs"]):
    """``size`` draws of ``theta* ~ p(theta)`` and ``y ~ p(y | theta*)``, in NumPy."""
    beta = BETA_PRIOR.loc + BETA_PRIOR.scale * rng.standard_normal((size, 2))
    gamma = GAMMA_PRIOR.loc + GAMMA_PRIOR.scale * rng.standard_normal((size, 2))
    sigma_y = draw_scale(rng, config.sigma_y, size)
    sigma_alpha = draw_scale(rng, config.sigma_alpha, size)
    alpha = gamma @ U_DESIGN.T + sigma_alpha[:, None] * rng.standard_normal((size, NUM_GROUPS))
    mean = alpha[:, GROUP] + beta @ X_DESIGN.T
    y = mean + sigma_y[:, None] * rng.standard_normal(mean.shape)
    truth = np.column_stack([sigma_y, sigma_alpha, beta, gamma, alpha[:, 0], alpha[:, -1]])
    return truth.astype(np.float32), y.astype(np.float32)


def sbc_model(sampler: str = "gibbs") -> mg.Model:
    """The model with the SBC priors; the placeholder ``y`` fixes the shapes and the model's
    standardized coordinates (the data sets are simulated)."""
    config = CONFIGS[sampler]
    placeholder = np.random.default_rng(98).normal(size=GROUP.size) + X_DESIGN @ [1.0, -1.0]
    return mg.Model.from_arrays(
        placeholder, X_DESIGN, GROUP, U_PREDICTOR,
        priors={"beta": BETA_PRIOR, "gamma": GAMMA_PRIOR, "sigma_y": config.sigma_y,
                "sigma_alpha": config.sigma_alpha},
    )


def flatten(state) -> jax.Array:
    """The tested scalars of a state (only its :class:`~mlgibbs.GibbsState` fields are read)."""
    return jnp.stack([state.sigma_y, state.sigma_alpha, state.beta[0], state.beta[1],
                      state.gamma[0], state.gamma[1], state.alpha[0], state.alpha[-1]])


def ranks_one(rng_key, truth, y, *, model, gibbs, num_warmup, num_draws, thin, sampler="gibbs"):
    """Rank of ``truth`` among ``num_draws`` thinned draws of one chain on the data ``y``.

    The chain runs in the model's standardized coordinates, as :func:`mlgibbs.sample` runs it; its
    draws are mapped back to the user's (``model.to_user``) before they are ranked.
    """
    data = model.data_for(y)
    if sampler == "grid":   # its proposal, tabulated once per data set (as mg.sample does once per model)
        data = data._replace(scale_grid=build_scale_grid(data, model.kernel_priors))
    key_init, key_warmup, key_draws = jax.random.split(rng_key, 3)
    state = gibbs.init(key_init, data)

    def sweep(state, key):
        return gibbs.step(key, state, data), None

    state, _ = jax.lax.scan(sweep, state, jax.random.split(key_warmup, num_warmup))

    def one_draw(state, key):
        state, _ = jax.lax.scan(sweep, state, jax.random.split(key, thin))
        return state, flatten(model.to_user(mg.GibbsState(*state[:5]), xp=jnp)) < truth

    _, below = jax.lax.scan(one_draw, state, jax.random.split(key_draws, num_draws))
    return jnp.sum(below, axis=0)


def sbc_ranks(num_datasets: int, num_warmup: int, num_draws: int, thin: int, fast: bool, seed: int,
              sampler: str = "gibbs"):
    truth, y = draw_truth_and_data(np.random.default_rng(seed), num_datasets, CONFIGS[sampler])
    model = sbc_model(sampler)
    fn = jax.vmap(functools.partial(ranks_one, model=model, gibbs=mg.gibbs(model, sampler=sampler),
                                    num_warmup=num_warmup, num_draws=num_draws, thin=thin, sampler=sampler))
    keys = jax.random.split(jax.random.key(seed), num_datasets)
    lowered = jax.jit(fn).lower(keys, truth, y)
    program = lowered.compile(FAST_COMPILE) if fast else lowered.compile()
    return np.asarray(program(keys, truth, y))


def assert_uniform_ranks(ranks: np.ndarray, num_draws: int, sampler: str = "gibbs"):
    """Chi-square test of each column of ``ranks`` (values ``0..num_draws``) against the uniform."""
    assert (num_draws + 1) % NUM_BINS == 0
    counts = np.stack([np.bincount(r * NUM_BINS // (num_draws + 1), minlength=NUM_BINS) for r in ranks.T])
    expected = ranks.shape[0] / NUM_BINS
    chi2 = np.sum((counts - expected) ** 2 / expected, axis=1)
    p = stats.chi2.sf(chi2, NUM_BINS - 1)
    level = FAMILY_ALPHA / ranks.shape[1]
    bad = [f"{name}: p = {pv:.1e}, bins {list(c)}" for name, pv, c in zip(NAMES, p, counts) if pv < level]
    assert not bad, f"non-uniform SBC ranks of {sampler!r} (level {level:.1e}):\n" + "\n".join(bad)


@pytest.mark.parametrize("sampler", list(CONFIGS))
def test_sbc(sampler):
    num_draws = 49
    ranks = sbc_ranks(num_datasets=500, num_warmup=50, num_draws=num_draws, thin=CONFIGS[sampler].thin,
                      fast=True, seed=0, sampler=sampler)
    assert_uniform_ranks(ranks, num_draws, sampler)


@pytest.mark.slow
@pytest.mark.parametrize("sampler", list(CONFIGS))
def test_sbc_slow(sampler):
    num_draws = 99
    ranks = sbc_ranks(num_datasets=4000, num_warmup=200, num_draws=num_draws,
                      thin=CONFIGS[sampler].thin_slow, fast=False, seed=1, sampler=sampler)
    assert_uniform_ranks(ranks, num_draws, sampler)

"""Geweke's (2004) joint-distribution test of the full Gibbs kernel, under proper priors.

What is tested
--------------
The joint distribution ``p(theta, y) = p(theta) p(y | theta)`` can be simulated in two ways:

* the *marginal-conditional* simulator draws ``theta ~ p(theta)`` (written here in NumPy, independent
  of the library) and ``y ~ p(y | theta)``;
* the *successive-conditional* simulator alternates one sweep of the kernel under test,
  ``theta' ~ K(theta, . | y)``, with a fresh ``y' ~ p(y | theta')``. The joint distribution is
  stationary for it when ``K`` leaves ``p(theta | y)`` invariant.

Each successive chain starts from an exact draw of the joint (a prior draw and its data), so if the
kernel is right every pair of every chain is an exact draw of the joint, however slowly the chain
mixes. The pairs used are ``(theta_t, y_{t-1})``: each sweep's output with the data it conditioned
on (exact if ``theta_t ~ p(theta | y_{t-1})``), rather than ``(theta_t, y_t)``, for which pivots such
as ``RSS / sigma_y^2`` would only see the simulation of ``y`` itself. Means of test functions
``g(theta, y)`` (parameters, their squares, cross products, data statistics, and pivots such as
``RSS / sigma_y^2 ~ chi2(n)``, which probe the posterior draws against their data) must then agree
between the two simulators. The data pytree is recomputed from each fresh ``y`` inside the scan
with the pure-JAX ``mg.sufficient_statistics``. The kernel is ``mg.gibbs(model)`` with normal
priors on ``beta`` and ``gamma`` and, in turn, every proper scale-prior family on both ``sigma_y``
and ``sigma_alpha``:
InverseGamma, HalfNormal, HalfCauchy, HalfStudentT(3) (the improper Uniform cannot be simulated).
A deliberately broken kernel (every InverseGamma sweep followed by a redraw
``sigma_y^2 = RSS / chi2(n + 2)``: the prior ignored, and three degrees of freedom more than the
uniform-prior draw ``RSS / chi2(n - 1)``) must be rejected by the same statistic: the test has power.

Test functions under heavy tails
--------------------------------
Under half-Cauchy and half-t(3) priors the scales have no (or only a few) moments, and neither have
``alpha`` and ``y``. Every family is therefore tested with functions of finite variance: ``beta``,
``gamma`` and their squares and products (normal priors), ``log sigma`` and its square, bounded
transforms ``tanh`` of ``alpha_j`` and of ``mean(y)``, ``log`` of the sample variance of ``y``, and the
pivots ``RSS / sigma_y^2``, ``sum_j (alpha_j - U_j gamma)^2 / sigma_alpha^2`` and the standardised mean
residual. The light-tailed families (InverseGamma with shape 6, HalfNormal) add raw moments:
``sigma^2``, ``alpha_0``, ``alpha_0^2``, ``alpha_0 gamma_0``, ``beta_0 sigma_y``, ``mean(y)``.

Tolerances
----------
Chains are independent, so the variance of the successive-conditional mean is estimated from the
spread of the per-chain means (valid whatever the autocorrelation within a chain); the marginal
simulator's Monte Carlo variance ``var(g) / M`` is added. ``|z|`` must stay below the two-sided
Bonferroni threshold for the number of test functions at family-wise level 1e-4 (about 4.6). Seeds
are fixed for reproducibility; the thresholds do not depend on them. The CI size (500 chains of 200
steps, 100,000 marginal draws) keeps the run short; ``-m slow`` runs 2,000 chains of 1,000 steps.

References
----------
Geweke, J. (2004). Getting it right: joint distribution tests of posterior simulators.
*Journal of the American Statistical Association* 99(467), 799-804.
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
from mlgibbs.conditionals import residual_sum_of_squares

FAMILY_ALPHA = 1e-4
NUM_MARGINAL = 100_000

# the design: n = 40 observations in J = 5 groups of 8, p = 2, q = 2 (intercept and u)
NUM_GROUPS, PER_GROUP = 5, 8
BETA_PRIOR = P.Normal(np.array([0.5, -0.5]), np.array([1.0, 0.7]))
GAMMA_PRIOR = P.Normal(np.array([1.0, 0.0]), np.array([1.0, 0.5]))
SCALE_FAMILIES = {
    "InverseGamma": P.InverseGamma(6.0, 5.0),
    "HalfNormal": P.HalfNormal(1.0),
    "HalfCauchy": P.HalfCauchy(0.5),
    "HalfStudentT": P.HalfStudentT(3.0, 0.7),
}
LIGHT_TAILED = ("InverseGamma", "HalfNormal")


class Design(NamedTuple):
    X: np.ndarray
    group: np.ndarray
    u: np.ndarray
    U: np.ndarray


def make_design(seed: int = 7) -> Design:
    rng = np.random.default_rng(seed)
    group = np.repeat(np.arange(NUM_GROUPS), PER_GROUP)
    X = rng.normal(size=(group.size, 2)) + 0.5 * rng.normal(size=(NUM_GROUPS, 2))[group]
    u = rng.normal(size=(NUM_GROUPS, 1))
    return Design(X=X, group=group, u=u, U=np.column_stack([np.ones(NUM_GROUPS), u]))


DESIGN = make_design()


# ----------------------------------------------------------------------------- the prior, in NumPy
def draw_scale(rng: np.random.Generator, prior, size: int) -> np.ndarray:
    """Draws of ``sigma`` from a scale prior, by the textbook constructions."""
    if isinstance(prior, P.InverseGamma):
        return np.sqrt(prior.rate / rng.gamma(prior.concentration, size=size))
    if isinstance(prior, P.HalfNormal):
        return prior.scale * np.abs(rng.standard_normal(size))
    if isinstance(prior, P.HalfCauchy):
        return prior.scale * np.abs(rng.standard_cauchy(size))
    if isinstance(prior, P.HalfStudentT):
        return prior.scale * np.abs(rng.standard_t(prior.df, size))
    raise TypeError(prior)


def draw_joint(rng: np.random.Generator, scale_prior, size: int):
    """``size`` independent draws of ``(theta, y)`` from the prior and the likelihood."""
    design = DESIGN
    p, q = design.X.shape[1], design.U.shape[1]
    beta = BETA_PRIOR.loc + BETA_PRIOR.scale * rng.standard_normal((size, p))
    gamma = GAMMA_PRIOR.loc + GAMMA_PRIOR.scale * rng.standard_normal((size, q))
    sigma_y = draw_scale(rng, scale_prior, size)
    sigma_alpha = draw_scale(rng, scale_prior, size)
    alpha = gamma @ design.U.T + sigma_alpha[:, None] * rng.standard_normal((size, NUM_GROUPS))
    mean = alpha[:, design.group] + beta @ design.X.T
    y = mean + sigma_y[:, None] * rng.standard_normal(mean.shape)
    theta = mg.GibbsState(alpha=alpha, beta=beta, gamma=gamma, sigma_y=sigma_y, sigma_alpha=sigma_alpha)
    return jax.tree.map(lambda a: np.asarray(a, np.float32), theta), y.astype(np.float32)


# ----------------------------------------------------------------------------- test functions
FUNCTION_NAMES = (
    "beta_0", "beta_1", "beta_0^2", "beta_1^2", "beta_0*beta_1",
    "gamma_0", "gamma_1", "gamma_0^2", "gamma_1^2",
    "log sigma_y", "(log sigma_y)^2", "log sigma_alpha", "(log sigma_alpha)^2",
    "log sigma_y*log sigma_alpha",
    "tanh alpha_0", "(tanh alpha_0)^2", "tanh alpha_J", "(tanh alpha_J)^2",
    "tanh alpha_0*gamma_0", "beta_0*log sigma_y", "beta_0*gamma_0",
    "tanh mean(y)", "log var(y)", "RSS/sigma_y^2", "S_alpha/sigma_alpha^2", "sum(resid)/(sigma_y sqrt n)",
)
LIGHT_TAILED_NAMES = ("sigma_y^2", "sigma_alpha^2", "alpha_0", "alpha_0^2", "alpha_0*gamma_0",
                      "beta_0*sigma_y", "mean(y)")


def geweke_functions(theta: mg.GibbsState, y, light_tailed: bool) -> jax.Array:
    """The vector of ``g(theta, y)`` for one draw (see the module docstring)."""
    X, U = jnp.asarray(DESIGN.X, y.dtype), jnp.asarray(DESIGN.U, y.dtype)
    group = jnp.asarray(DESIGN.group)
    alpha, beta, gamma = theta.alpha, theta.beta, theta.gamma
    log_sy, log_sa = jnp.log(theta.sigma_y), jnp.log(theta.sigma_alpha)
    resid = y - alpha[group] - X @ beta
    n = y.shape[0]
    ybar = jnp.mean(y)
    g = [  # in the order of FUNCTION_NAMES
        beta[0], beta[1], beta[0] ** 2, beta[1] ** 2, beta[0] * beta[1],
        gamma[0], gamma[1], gamma[0] ** 2, gamma[1] ** 2,
        log_sy, log_sy**2, log_sa, log_sa**2, log_sy * log_sa,
        jnp.tanh(alpha[0]), jnp.tanh(alpha[0]) ** 2, jnp.tanh(alpha[-1]), jnp.tanh(alpha[-1]) ** 2,
        jnp.tanh(alpha[0]) * gamma[0], beta[0] * log_sy, beta[0] * gamma[0],
        jnp.tanh(ybar), jnp.log(jnp.mean((y - ybar) ** 2)),
        jnp.sum(resid**2) / theta.sigma_y**2,
        jnp.sum((alpha - U @ gamma) ** 2) / theta.sigma_alpha**2,
        jnp.sum(resid) / (theta.sigma_y * jnp.sqrt(n)),
    ]
    if light_tailed:
        g += [theta.sigma_y**2, theta.sigma_alpha**2, alpha[0], alpha[0] ** 2, alpha[0] * gamma[0],
              beta[0] * theta.sigma_y, ybar]
    return jnp.stack(g)


# ----------------------------------------------------------------------------- the two simulators
def marginal_conditional(scale_prior, light_tailed: bool, seed: int):
    """Mean and variance of each ``g`` over :data:`NUM_MARGINAL` exact draws of the joint."""
    theta, y = draw_joint(np.random.default_rng(seed), scale_prior, NUM_MARGINAL)
    g = jax.vmap(functools.partial(geweke_functions, light_tailed=light_tailed))(theta, y)
    g = np.asarray(g, np.float64)
    return g.mean(axis=0), g.var(axis=0, ddof=1)


def successive_conditional(rng_key, theta0, y0, corrupt, *, step, light_tailed, num_steps):
    """Per-chain means of ``g`` along successive-conditional chains (vmap over chains).

    ``step(rng_key, state, data)`` is the kernel under test; the data pytree is recomputed from each
    fresh ``y`` with :func:`mlgibbs.sufficient_statistics`. When the (traced) flag ``corrupt`` is
    true, every sweep is followed by :func:`broken_sigma_y`, which makes the kernel wrong; the
    correct and the broken sampler then share one compiled program.
    """
    X = jnp.asarray(DESIGN.X, jnp.float32)
    group = jnp.asarray(DESIGN.group)
    U = jnp.asarray(DESIGN.U, jnp.float32)

    def chain(key, theta, y):
        def one(carry, k):
            theta, y = carry
            key_theta, key_broken, key_y = jax.random.split(k, 3)
            data = mg.sufficient_statistics(y, X, group, U, NUM_GROUPS)
            theta = step(key_theta, theta, data)
            theta = jax.lax.cond(corrupt, broken_sigma_y, lambda k, s, d: s, key_broken, theta, data)
            g = geweke_functions(theta, y, light_tailed)  # the draw and the data it conditioned on
            mean = theta.alpha[group] + X @ theta.beta
            y = mean + theta.sigma_y * jax.random.normal(key_y, mean.shape, mean.dtype)
            return (theta, y), g

        _, g = jax.lax.scan(one, (theta, y), jax.random.split(key, num_steps))
        return jnp.mean(g, axis=0)

    keys = jax.random.split(rng_key, y0.shape[0])
    return jax.vmap(chain)(keys, theta0, y0)


# Compilation dominates the CI-sized runs (seconds per kernel on CPU, against a fraction of a
# second of sampling): the CI size compiles with XLA's backend optimisation off, which halves the
# compile time; the slow size compiles normally. Compiled programs are cached by configuration so
# that the power test reuses the InverseGamma program.
FAST_COMPILE = {"xla_backend_optimization_level": 0}
_PROGRAMS: dict = {}


def successive_program(family: str, num_chains: int, num_steps: int, fast: bool):
    key = (family, num_chains, num_steps, fast)
    if key not in _PROGRAMS:
        prior = SCALE_FAMILIES[family]
        theta0, y0 = draw_joint(np.random.default_rng(0), prior, num_chains)  # shapes only
        fn = functools.partial(successive_conditional, step=gibbs_step(prior),
                               light_tailed=family in LIGHT_TAILED, num_steps=num_steps)
        lowered = jax.jit(fn).lower(jax.random.key(0), theta0, y0, jnp.asarray(False))
        _PROGRAMS[key] = lowered.compile(FAST_COMPILE) if fast else lowered.compile()
    return _PROGRAMS[key]


def geweke_z(family: str, *, num_chains: int, num_steps: int, seed: int, fast: bool = True,
             corrupt: bool = False):
    """z-scores of the differences between the two simulators' means, one per test function."""
    prior = SCALE_FAMILIES[family]
    program = successive_program(family, num_chains, num_steps, fast)
    mean_mc, var_mc = marginal_conditional(prior, family in LIGHT_TAILED, seed=seed)
    theta0, y0 = draw_joint(np.random.default_rng(seed + 1), prior, num_chains)
    chain_means = program(jax.random.key(seed), theta0, y0, jnp.asarray(corrupt))
    chain_means = np.asarray(chain_means, np.float64)
    mean_sc = chain_means.mean(axis=0)
    var_sc = chain_means.var(axis=0, ddof=1) / num_chains
    return (mean_sc - mean_mc) / np.sqrt(var_sc + var_mc / NUM_MARGINAL)


def z_crit(num_comparisons: int) -> float:
    return float(stats.norm.isf(FAMILY_ALPHA / (2 * num_comparisons)))


def gibbs_step(scale_prior):
    """The step of ``mg.gibbs`` for the model with the test priors (the data only fixes shapes)."""
    design = DESIGN
    y = np.zeros(design.group.size)
    model = mg.Model.from_arrays(
        y, design.X, design.group, design.u,
        priors={"beta": BETA_PRIOR, "gamma": GAMMA_PRIOR, "sigma_y": scale_prior,
                "sigma_alpha": scale_prior},
    )
    return mg.gibbs(model).step


def broken_sigma_y(rng_key, state, data):
    """A wrong ``sigma_y`` update: ``RSS / chi2(n + 2)``, ignoring the prior."""
    rss = residual_sum_of_squares(state, data)
    chi2 = 2.0 * jax.random.gamma(rng_key, 0.5 * (data.num_obs + 2.0), (), rss.dtype)
    return state._replace(sigma_y=jnp.sqrt(rss / chi2))


def run_geweke(family: str, num_chains: int, num_steps: int, seed: int = 0, fast: bool = True):
    z = geweke_z(family, num_chains=num_chains, num_steps=num_steps, seed=seed, fast=fast)
    names = FUNCTION_NAMES + (LIGHT_TAILED_NAMES if family in LIGHT_TAILED else ())
    assert z.size == len(names)
    crit = z_crit(z.size)
    assert np.all(np.isfinite(z)), z
    bad = {name: round(float(v), 2) for name, v in zip(names, z) if abs(v) >= crit}
    assert not bad, f"Geweke test under {family} scale priors (threshold {crit:.2f}): {bad}"


CI_CHAINS, CI_STEPS = 500, 200


@pytest.mark.parametrize("family", list(SCALE_FAMILIES))
def test_geweke(family):
    run_geweke(family, num_chains=CI_CHAINS, num_steps=CI_STEPS)


@pytest.mark.slow
@pytest.mark.parametrize("family", list(SCALE_FAMILIES))
def test_geweke_slow(family):
    run_geweke(family, num_chains=2000, num_steps=1000, seed=1, fast=False)


def test_geweke_rejects_a_broken_sampler():
    """The InverseGamma sweep followed by ``sigma_y^2 = RSS / chi2(n + 2)`` must be rejected."""
    z = geweke_z("InverseGamma", num_chains=CI_CHAINS, num_steps=CI_STEPS, seed=0, corrupt=True)
    assert np.max(np.abs(z)) > z_crit(z.size), np.round(z, 2)

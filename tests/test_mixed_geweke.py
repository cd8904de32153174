"""Geweke's (2004) joint-distribution test of the multilevel sampler, one case per structure and prior.

What is tested
--------------
``p(theta, y) = p(theta) p(y | theta)`` is simulated two ways: the *marginal-conditional* simulator
draws ``theta`` from the prior (NumPy and SciPy here, in the user's coordinates, independent of the
library: inverse-Wishart by ``scipy.stats.invwishart``, Huang-Wand through its auxiliaries, the scalar
scale families directly) and ``y`` given it; the *successive-conditional* simulator alternates one
sweep of the kernel (``mg.samplers.mixed``) with a fresh ``y`` given the new ``theta``. Each chain
starts from an exact joint draw, so every pair ``(theta_t, y_{t-1})`` is an exact draw of the joint if
the kernel leaves the posterior invariant. Means of test functions of the pair (fixed effects and
their squares, log standard deviations, correlations, bounded transforms of the effects, and the
pivots ``RSS / sigma_y^2`` and ``sum_g dev_g' Sigma^{-1} dev_g``) must agree. The data pytree is
recomputed from each ``y`` in JAX by ``MixedModel.data_for`` (cells, pseudo-rows, per-group sums).

Cases: varying intercept and slope ``(1 + x | g)`` under the Huang-Wand and the inverse-Wishart
prior; uncorrelated ``(1 + x || g)`` under half-t(3) and half-normal scales; nested ``(1 | a/b)``
under half-normal and inverse-gamma scales; crossed ``(1 | a) + (1 | c)`` with a group-level
predictor under half-Cauchy scales. Power: a kernel whose inverse-Wishart draw has two degrees of
freedom too many must be rejected by the same statistics.

Tolerances: chains are independent; the successive-conditional mean's variance is estimated from the
spread of the per-chain means, the marginal-conditional one from independent draws;
``z = (m_sc - m_mc) / se`` with a Bonferroni threshold at family-wise level 1e-3 per case.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from scipy import stats

import mlgibbs as mg
from mlgibbs.priors import (HalfCauchy, HalfNormal, HalfStudentT, HuangWand, InverseGamma, InverseWishart,
                            Normal)
from mlgibbs.samplers.mixed import MixedState, fitted_values, mixed_kernel, mixed_step

FAMILY_LEVEL = 1e-3
BETA_SCALE = 1.5


class Case(NamedTuple):
    name: str
    formula: str
    priors: dict
    num_chains: int = 400
    num_steps: int = 30


def frame(seed=11):
    rng = np.random.default_rng(seed)
    n = 60
    g = np.repeat(np.arange(6), 10)
    a = rng.integers(0, 4, n)
    b = rng.integers(0, 2, n)
    c = rng.integers(0, 3, n)
    ua = np.array([0.5, -1.0, 0.2, 1.3])[a]
    return pd.DataFrame({"y": rng.normal(size=n), "x": rng.normal(size=n) + 2.0, "ua": ua,
                         "g": [f"G{i}" for i in g], "a": [f"A{i}" for i in a], "b": [f"B{i}" for i in b],
                         "c": [f"C{i}" for i in c]})


CASES = [
    Case("slopes-huang-wand", "y ~ x + (1 + x | g)",
         {"sigma_y": HalfNormal(1.0), "g": HuangWand(2.0, [1.0, 0.5])}),
    Case("slopes-inverse-wishart", "y ~ x + (1 + x | g)",
         {"sigma_y": InverseGamma(3.0, 2.0), "g": InverseWishart(5.0, [[1.0, 0.2], [0.2, 0.5]])}),
    Case("uncorrelated-half-t", "y ~ x + (1 + x || g)",
         {"sigma_y": HalfStudentT(3.0, 1.0), "g": HalfNormal(0.8)}),
    Case("nested", "y ~ x + (1 | a/b)",
         {"sigma_y": HalfNormal(1.0), "a": HalfNormal(1.0), "a:b": InverseGamma(3.0, 1.0)}),
    Case("crossed", "y ~ ua + (1 | a) + (1 | c)",
         {"sigma_y": HalfCauchy(1.0), "a": HalfCauchy(0.7), "c": HalfCauchy(1.0)}),
]


def case_model(case: Case):
    priors = dict(case.priors)
    priors["beta"] = Normal(0.0, BETA_SCALE)
    with jax.enable_x64(True):
        return mg.Model.from_formula(case.formula, frame(), priors=priors)


# ------------------------------------------------------------------ the prior, independently
def draw_scalar(rng, prior, size):
    if isinstance(prior, HalfNormal):
        return prior.scale * np.abs(rng.normal(size=size))
    if isinstance(prior, HalfCauchy):
        return prior.scale * np.abs(rng.standard_cauchy(size=size))
    if isinstance(prior, HalfStudentT):
        return prior.scale * np.abs(rng.standard_t(prior.df, size=size))
    if isinstance(prior, InverseGamma):
        return np.sqrt(prior.rate / rng.gamma(prior.concentration, size=size))
    raise TypeError(prior)


def draw_covariance_prior(rng, prior, d, size):
    if isinstance(prior, InverseWishart):
        psi = prior.scale_matrix(d)
        return stats.invwishart(df=prior.df, scale=psi).rvs(size=size, random_state=rng).reshape(size, d, d)
    if isinstance(prior, HuangWand):
        A = prior.scales(d)
        aux = (1.0 / A**2) / rng.gamma(0.5, size=(size, d))         # a_k ~ InvGamma(1/2, 1/A_k^2)
        out = np.empty((size, d, d))
        for i in range(size):
            out[i] = stats.invwishart(df=prior.df + d - 1, scale=np.diag(2 * prior.df / aux[i])).rvs(
                random_state=rng)
        return out
    raise TypeError(prior)


def draw_theta(rng, model, size):
    """Prior draws in the user's coordinates (the dict of ``MixedModel.to_user``)."""
    s = model.structure
    theta = {"beta": BETA_SCALE * rng.normal(size=(size, s.p)),
             "sigma_y": (np.ones(size) if model.priors["sigma_y"] is None     # a family without sigma_y
                         else draw_scalar(rng, model.priors["sigma_y"], size))}
    for f, factor in enumerate(model.factors):
        d = s.dims[f]
        cov = np.zeros((size, d, d))
        for prior, (start, width) in zip(model.priors[factor.name], factor.blocks):
            if width == 1:
                cov[:, start, start] = draw_scalar(rng, prior, size) ** 2
            else:
                cov[:, start:start + width, start:start + width] = draw_covariance_prior(rng, prior, width, size)
        gamma = BETA_SCALE * rng.normal(size=(size, s.q[f]))
        J = len(factor.labels)
        chol = np.linalg.cholesky(cov)
        b = np.einsum("sij,sgj->sgi", chol, rng.normal(size=(size, J, d)))
        k = s.intercepts[f]
        if s.q[f] and k >= 0:
            b[:, :, k] += gamma @ model.U[f].T
        theta[f"alpha_{factor.name}"] = b
        theta[f"gamma_{factor.name}"] = gamma
        theta[f"cov_{factor.name}"] = cov
    return theta


def user_mean(model, theta):
    """``X beta + sum_f Z_f b_f[g]`` per draw, ``(size, n)``, in the user's coordinates."""
    mean = theta["beta"] @ model.X.T
    for factor in model.factors:
        b = theta[f"alpha_{factor.name}"]
        mean = mean + np.einsum("sij,ij->si", b[:, factor.codes], factor.Z)
    return mean


def draw_y(rng, model, theta):
    mean = user_mean(model, theta)
    return mean + theta["sigma_y"][:, None] * rng.normal(size=mean.shape)


# ------------------------------------------------------------------ test functions
def functions(model, theta, y, xp):
    """Test functions of a pair (user's coordinates), stacked ``(..., m)``."""
    out = []
    beta = theta["beta"]
    out += [beta[..., j] for j in range(beta.shape[-1])] + [beta[..., j] ** 2 for j in range(beta.shape[-1])]
    sy = theta["sigma_y"]
    out += [xp.log(sy), xp.log(sy) ** 2]
    mean = theta["beta"] @ xp.asarray(model.X.T)
    for f, factor in enumerate(model.factors):
        b = theta[f"alpha_{factor.name}"]
        mean = mean + xp.einsum("...ij,ij->...i", b[..., factor.codes, :], xp.asarray(factor.Z))
        cov = theta[f"cov_{factor.name}"]
        d = cov.shape[-1]
        sd = xp.sqrt(xp.diagonal(cov, axis1=-2, axis2=-1))
        out += [xp.log(sd[..., j]) for j in range(d)]
        out += [xp.tanh(b[..., 0, j]) for j in range(d)]
        for start, width in factor.blocks:  # correlations within correlated terms
            for i in range(start, start + width):
                for j in range(i + 1, start + width):
                    out.append(cov[..., i, j] / (sd[..., i] * sd[..., j]))
        gamma = theta[f"gamma_{factor.name}"]
        out += [gamma[..., j] for j in range(gamma.shape[-1])]
        dev = b
        k = model.structure.intercepts[f]
        if gamma.shape[-1] and k >= 0:
            shift = gamma @ xp.asarray(model.U[f].T)
            dev = b - shift[..., :, None] * xp.asarray(np.eye(d)[k])
        solved = xp.linalg.solve(cov[..., None, :, :], dev[..., :, :, None])[..., 0]
        out.append(xp.sum(dev * solved, axis=(-2, -1)))     # ~ chi2(J d) under the joint
    resid = y - mean
    out.append(xp.sum(resid**2, axis=-1) / sy**2)          # ~ chi2(n)
    out.append(xp.tanh(xp.mean(y, axis=-1)))
    return xp.stack(out, axis=-1)


# ------------------------------------------------------------------ the two simulators
def marginal_conditional(model, size, seed):
    rng = np.random.default_rng(seed)
    theta = draw_theta(rng, model, size)
    y = draw_y(rng, model, theta)
    return functions(model, theta, y, np)


def successive_conditional(model, step, num_chains, num_steps, seed):
    rng = np.random.default_rng(seed + 1)
    theta0 = draw_theta(rng, model, num_chains)
    y0 = draw_y(rng, model, theta0)
    state0 = jax.tree.map(jnp.asarray, model.to_kernel(theta0))
    W, _, codes = model.kernel_rows
    W = jnp.asarray(W)
    codes = jnp.asarray(codes)
    tr = model.transform

    def chain(key, state, y):
        def body(carry, key):
            state, y = carry
            key_step, key_y = jax.random.split(key)
            state = step(key_step, state, model.data_for(y))
            user = model.to_user(state, xp=jnp)
            g = functions(model, user, y, jnp)
            mean_k = fitted_values(model.structure, W, codes, state.beta, state.b)
            y_new = tr.c + tr.k * (mean_k + state.sigma_y * jax.random.normal(key_y, mean_k.shape))
            return (state, y_new), g

        _, gs = jax.lax.scan(body, (state, y), jax.random.split(key, num_steps))
        return gs

    keys = jax.random.split(jax.random.key(seed), num_chains)
    return np.asarray(jax.jit(jax.vmap(chain))(keys, state0, jnp.asarray(y0)))


def geweke_z(model, step, *, num_chains, num_steps, seed=0):
    with jax.enable_x64(True):
        sc = successive_conditional(model, step, num_chains, num_steps, seed)
    mc = marginal_conditional(model, 20_000, seed)
    per_chain = sc.mean(axis=1)
    se_sc = per_chain.std(axis=0, ddof=1) / np.sqrt(num_chains)
    se_mc = mc.std(axis=0, ddof=1) / np.sqrt(mc.shape[0])
    return (per_chain.mean(axis=0) - mc.mean(axis=0)) / np.sqrt(se_sc**2 + se_mc**2)


def z_crit(m):
    return stats.norm.isf(FAMILY_LEVEL / (2 * m))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_geweke(case):
    model = case_model(case)
    kernel = mixed_kernel(model.structure, model.kernel_priors)
    z = geweke_z(model, kernel.step, num_chains=case.num_chains, num_steps=case.num_steps)
    assert np.all(np.isfinite(z))
    assert np.max(np.abs(z)) < z_crit(z.size), np.round(z, 2)


def wrong_inverse_wishart_step(model, kernel):
    """The kernel's step followed by a redraw of the (one, 2 x 2) covariance from ``IW(nu + J + 2, Psi + S)``:
    two degrees of freedom too many (the broken kernel of this test and of ``test_mixed_sbc``)."""
    from mlgibbs.conditionals.covariance import inverse_wishart
    from mlgibbs.samplers.mixed import deviations

    prior = model.kernel_priors.cov[0][0]

    def broken(key, state, data):
        key_step, key_cov = jax.random.split(key)
        state = kernel.step(key_step, state, data)
        dev = deviations(model.structure, data.U, state.gamma, state.b, 0) @ data.coef_maps[0].T
        psi = jnp.asarray(prior.scale_matrix(2), dev.dtype) + dev.T @ dev
        cov = inverse_wishart(key_cov, prior.df + dev.shape[0] + 2.0, psi)     # two dof too many
        return state._replace(cov=(cov,))

    return broken


def test_geweke_rejects_a_wrong_inverse_wishart_draw():
    case = CASES[1]
    model = case_model(case)
    kernel = mixed_kernel(model.structure, model.kernel_priors)
    broken = wrong_inverse_wishart_step(model, kernel)
    z = geweke_z(model, broken, num_chains=case.num_chains, num_steps=case.num_steps)
    assert np.max(np.abs(z)) > z_crit(z.size), np.round(z, 2)

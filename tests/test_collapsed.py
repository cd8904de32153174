"""The collapsed sampler's marginal densities against dense Gaussian computations.

What is tested
--------------
* :func:`mlgibbs.conditionals.collapsed.log_marginal_scales` is ``log p(y | sigma_y, sigma_alpha)``
  plus the scale priors, with ``alpha``, ``beta`` and ``gamma`` integrated out. Under proper normal
  priors on ``beta`` and ``gamma`` the data are jointly Gaussian,
  ``y ~ N(X m_b + Z U m_g, sigma_y^2 I + sigma_alpha^2 Z Z' + X S_b X' + Z U S_g U' Z')``, so the two
  must differ by the same constant at every ``(sigma_y, sigma_alpha)`` (the normalising constants of
  the priors). Under flat priors the difference of the log densities between two values of the
  scales must equal that of the restricted (REML-type) likelihood, computed densely as the limit
  of the proper case (normal priors with scale ``1e4``).
* ``update_locations`` followed by ``update_alpha`` with the scales fixed is one exact draw of
  ``(alpha, beta, gamma) | sigma, y``: tens of thousands of independent draws match the closed-form
  mean and covariance (whitened with the exact covariance, so ``sqrt(N) wbar_k ~ N(0, 1)`` and the
  covariance entries have standard deviations ``sqrt(2/N)`` and ``sqrt(1/N)``).

Tolerances: the density identities hold to rounding in float64 (relative 1e-9); the Monte Carlo
checks use a Bonferroni-corrected z threshold at family-wise level 1e-4.
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
from mlgibbs.conditionals.collapsed import log_marginal_scales, update_locations

FAMILY_ALPHA = 1e-4


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def data_set(seed=3):
    rng = np.random.default_rng(seed)
    counts = np.array([2, 4, 5, 7, 9, 11])
    J = counts.size
    group = np.repeat(np.arange(J), counts)
    n = group.size
    X = rng.normal(size=(n, 2)) + np.array([0.5, -1.0])
    u = rng.normal(size=J)
    U = np.column_stack([np.ones(J), u])
    alpha = U @ np.array([1.0, 0.5]) + 0.7 * rng.normal(size=J)
    y = alpha[group] + X @ np.array([0.3, -0.8]) + rng.normal(size=n)
    return y, X, group, U


def build(priors, grouped=True):
    y, X, group, U = data_set()
    if grouped:
        return mg.Model.from_arrays(y, X, group, U[:, 1:], priors=priors, dtype=np.float64, standardize=False)
    Xi = np.column_stack([np.ones_like(y), X])
    return mg.Model.from_arrays(y, Xi, priors=priors, dtype=np.float64, standardize=False)


def dense_log_marginal(model, sigma_y, sigma_alpha, b_loc, b_scale, g_loc, g_scale):
    """log N(y; mean, cov) with every location integrated out (proper normal priors)."""
    y, X = model.y, model.X
    n = y.size
    mean = X @ (np.zeros(X.shape[1]) + b_loc)
    cov = sigma_y**2 * np.eye(n) + X @ np.diag(np.broadcast_to(b_scale, X.shape[1]) ** 2) @ X.T
    if model.group_index is not None:
        U = np.asarray(model.data.groups.U)
        Z = np.eye(model.num_groups)[model.group_index]
        ZU = Z @ U
        mean = mean + ZU @ (np.zeros(U.shape[1]) + g_loc)
        cov = cov + sigma_alpha**2 * Z @ Z.T + ZU @ np.diag(np.broadcast_to(g_scale, U.shape[1]) ** 2) @ ZU.T
    chol = np.linalg.cholesky(cov)
    r = np.linalg.solve(chol, y - mean)
    return -0.5 * r @ r - np.log(np.diag(chol)).sum() - 0.5 * n * np.log(2 * np.pi)


SCALES = [(0.6, 0.2), (1.0, 0.7), (1.4, 1.5), (0.9, 3.0), (2.0, 0.05)]


@pytest.mark.parametrize("grouped", [True, False])
@pytest.mark.parametrize("scale_prior", [P.Uniform(), P.HalfNormal(1.5), P.HalfCauchy(0.5), P.InverseGamma(2.0, 1.0)])
def test_log_marginal_scales_equals_dense_gaussian(grouped, scale_prior):
    b_loc, b_scale, g_loc, g_scale = np.array([0.2, -0.4]), np.array([1.5, 0.7]), 0.3, 2.0
    if not grouped:
        b_loc, b_scale = np.array([0.3, 0.2, -0.4]), np.array([2.0, 1.5, 0.7])
    priors = {"beta": P.Normal(b_loc, b_scale), "sigma_y": scale_prior}
    if grouped:
        priors.update(gamma=P.Normal(g_loc, g_scale), sigma_alpha=P.HalfStudentT(3.0, 1.0))
    model = build(priors, grouped)
    diffs = []
    for sy, sa in SCALES:
        ours = float(log_marginal_scales(jnp.float64(sy), jnp.float64(sa), model.data, model.priors))
        prior = float(scale_prior.log_prob(jnp.float64(sy)))
        if grouped:
            prior += float(P.HalfStudentT(3.0, 1.0).log_prob(jnp.float64(sa)))
        diffs.append(ours - prior - dense_log_marginal(model, sy, sa, b_loc, b_scale, g_loc, g_scale))
    diffs = np.array(diffs)
    np.testing.assert_allclose(diffs - diffs[0], 0.0, atol=1e-8 * max(1.0, abs(diffs[0])))


@pytest.mark.parametrize("grouped", [True, False])
def test_log_marginal_scales_flat_priors_is_the_limit_of_wide_normals(grouped):
    """Flat coefficients: differences across scales equal those of the dense density with scale-1e4 normals."""
    flat = build({}, grouped)
    wide = 1e4
    d_ours, d_dense = [], []
    for sy, sa in SCALES:
        d_ours.append(float(log_marginal_scales(jnp.float64(sy), jnp.float64(sa), flat.data, flat.priors)))
        # the dense density under wide priors carries -log(wide) per coefficient: a constant
        d_dense.append(dense_log_marginal(flat, sy, sa, 0.0, wide, 0.0, wide))
    d_ours, d_dense = np.array(d_ours), np.array(d_dense)
    # O(1/wide^2) differences remain: compare the changes across scales
    np.testing.assert_allclose(d_ours - d_ours[0], d_dense - d_dense[0], atol=1e-4)


def exact_location_posterior(model, sigma_y, sigma_alpha, b_loc, b_scale, g_loc, g_scale):
    """Mean and covariance of (alpha, beta, gamma) | sigma, y, built densely."""
    y, X = model.y, model.X
    U = np.asarray(model.data.groups.U)
    J, p, q = model.num_groups, X.shape[1], U.shape[1]
    Z = np.eye(J)[model.group_index]
    Pb = np.diag(1.0 / np.broadcast_to(b_scale, p) ** 2)
    Pg = np.diag(1.0 / np.broadcast_to(g_scale, q) ** 2)
    sy2, sa2 = sigma_y**2, sigma_alpha**2
    Q = np.block([
        [Z.T @ Z / sy2 + np.eye(J) / sa2, Z.T @ X / sy2, -U / sa2],
        [X.T @ Z / sy2, X.T @ X / sy2 + Pb, np.zeros((p, q))],
        [-U.T / sa2, np.zeros((q, p)), U.T @ U / sa2 + Pg],
    ])
    h = np.concatenate([Z.T @ y / sy2, X.T @ y / sy2 + Pb @ np.broadcast_to(b_loc, p),
                        Pg @ np.broadcast_to(g_loc, q)])
    cov = np.linalg.inv(Q)
    return cov @ h, cov


def whitened_location_draws(model, sigma_y, sigma_alpha, mean, cov, num_draws=20_000):
    """Independent draws of ``update_locations`` then ``update_alpha`` at fixed scales, whitened with
    the exact posterior ``(mean, cov)``: ``w ~ N(0, I)`` when the block is exact."""
    J = model.num_groups
    state = mg.GibbsState(alpha=jnp.zeros(J), beta=jnp.zeros(2), gamma=jnp.zeros(2),
                          sigma_y=jnp.float64(sigma_y), sigma_alpha=jnp.float64(sigma_alpha))
    step = mg.compose([functools.partial(update_locations, priors=model.priors), mg.update_alpha])
    keys = jax.random.split(jax.random.key(11), num_draws)
    draws = jax.jit(jax.vmap(step, in_axes=(0, None, None)))(keys, state, model.data)
    theta = np.concatenate([np.asarray(draws.alpha), np.asarray(draws.beta), np.asarray(draws.gamma)], axis=1)
    return np.linalg.solve(np.linalg.cholesky(cov), (theta - mean).T).T


def z_scores(w):
    """z of the whitened mean and of the upper-triangular covariance entries, and the Bonferroni bound."""
    N, d = w.shape
    C = w.T @ w / N
    sd = np.where(np.eye(d, dtype=bool), np.sqrt(2.0 / N), np.sqrt(1.0 / N))
    z_crit = stats.norm.isf(FAMILY_ALPHA / (2 * (d + d * (d + 1) // 2)))
    return np.sqrt(N) * w.mean(axis=0), ((C - np.eye(d)) / sd)[np.triu_indices(d)], z_crit


LOCATION_PRIORS = (np.array([0.2, -0.4]), np.array([1.5, 0.7]), 0.3, 2.0)


def test_collapsed_location_block_is_an_exact_draw():
    b_loc, b_scale, g_loc, g_scale = LOCATION_PRIORS
    model = build({"beta": P.Normal(b_loc, b_scale), "gamma": P.Normal(g_loc, g_scale)})
    mean, cov = exact_location_posterior(model, 0.9, 0.6, *LOCATION_PRIORS)
    z_mean, z_cov, z_crit = z_scores(whitened_location_draws(model, 0.9, 0.6, mean, cov))
    assert np.abs(z_mean).max() < z_crit, z_mean
    assert np.abs(z_cov).max() < z_crit, z_cov


def test_collapsed_location_check_has_power():
    """The same statistic rejects draws made with a wrong sigma_alpha (1.2x)."""
    b_loc, b_scale, g_loc, g_scale = LOCATION_PRIORS
    model = build({"beta": P.Normal(b_loc, b_scale), "gamma": P.Normal(g_loc, g_scale)})
    mean, cov = exact_location_posterior(model, 0.9, 0.6, *LOCATION_PRIORS)
    _, z_cov, z_crit = z_scores(whitened_location_draws(model, 0.9, 0.6 * 1.2, mean, cov))
    assert np.abs(z_cov).max() > z_crit


@pytest.mark.parametrize("case", ["radon", "no_x", "location_prior", "heavy_tailed_priors"])
def test_closed_form_derivatives_of_the_scales_marginal_match_autodiff(case):
    """``log_marginal_scales_derivatives`` (the grid's Newton steps; closed form, so that its program compiles
    fast) against JAX's gradient and Hessian of ``log_marginal_scales`` in ``t = log sigma^2``, float64, at points
    across the posterior and far in its tails: relative error < 1e-8 (a sign or a factor wrong anywhere in the
    formulas is off by order one)."""
    from mlgibbs.conditionals.collapsed import log_marginal_scales_derivatives

    radon = mg.datasets.load_radon()
    formula = ("log_radon ~ log_uranium + (1 | county)" if case == "no_x"
               else "log_radon ~ floor + log_uranium + (1 | county)")
    priors = {"location_prior": {"beta": P.Normal(0.3, 0.5), "gamma": P.Normal(0.0, 2.0)},
              "heavy_tailed_priors": {"sigma_y": P.HalfCauchy(0.5), "sigma_alpha": P.HalfStudentT(3.0, 0.2)}}.get(case)
    with jax.enable_x64(True):
        model = mg.Model.from_formula(formula, radon, priors=priors, dtype=np.float64)
        data, kp = model.data, model.kernel_priors

        def f(t):
            return log_marginal_scales(jnp.exp(0.5 * t[0]), jnp.exp(0.5 * t[1]), data, kp)

        auto = jax.jit(lambda t: (jax.grad(f)(t), jax.hessian(f)(t)))
        ours = jax.jit(lambda t: log_marginal_scales_derivatives(t, data, kp))
        for t in ([-0.6, -3.0], [0.3, -8.0], [-1.0, 1.0], [-2.5, -1.5], [1.5, -20.0]):
            t = jnp.asarray(t, jnp.float64)
            (g0, h0), (g1, h1) = auto(t), ours(t)
            assert np.all(np.isfinite(np.asarray(h1)))
            scale = np.max(np.abs(np.asarray(h0))) + np.max(np.abs(np.asarray(g0)))
            assert np.max(np.abs(np.asarray(g1) - np.asarray(g0))) < 1e-8 * scale, (case, t, g0, g1)
            assert np.max(np.abs(np.asarray(h1) - np.asarray(h0))) < 1e-8 * scale, (case, t, h0, h1)

"""The location block of the multilevel sampler against its exact Gaussian conditional.

What is tested
--------------
With the variances fixed, the locations ``theta = (beta, gamma_f, b_f for every factor f)`` of the
multilevel model are jointly Gaussian. Here the precision ``Q`` and linear term ``h`` of that Gaussian
are built in NumPy float64 from the *raw* observations in the *user's* coordinates (a dense design
over every location, the priors ``b_f[g] ~ N(e U_f,g gamma_f, Sigma_f)``, flat or normal priors on the
fixed effects), independent of the library's compression into cells, its standardized coordinates and
its tree algebra. The library's draw of one chain of nested factors given the other factors' effects
(:func:`mlgibbs.samplers.mixed.update_chain`), mapped back to the user's coordinates with
``MixedModel.to_user``, must follow the conditional Gaussian of that chain's locations and ``rho``
given the rest.

The design has every feature at once: a correlated varying intercept and slope on ``a``, a factor
``a:b`` nested in ``a`` (labels of ``b`` repeat across ``a``), a crossed factor ``c``, a group-level
predictor of ``a``, an uncentred individual-level predictor, and cells large enough to be compressed
into pseudo-rows. So it has two chains, ``[a, a:b]`` (drawn by a pass up and down two levels) and
``[c]``.

Tolerances
----------
The draws are independent (one ``vmap`` over keys from the same state), so the standard errors are
exact: whitening with the true covariance, each coordinate's mean ``sqrt(N) wbar_k ~ N(0, 1)``, the
covariance entries have standard deviations ``sqrt(2/N)`` (diagonal) and ``sqrt(1/N)``; Bonferroni over
all comparisons at family-wise level 1e-4. A power check: the same draws are rejected against the
conditional with ``Sigma_a`` doubled. Runs in float64 (``jax.enable_x64``), and a float32 run must
agree with the float64 closed form at the same thresholds on the mean.
"""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from scipy import stats

import mlgibbs as mg
from mlgibbs.samplers.mixed import MixedState, update_chain

NUM_DRAWS = 20_000
FAMILY_LEVEL = 1e-4


@contextlib.contextmanager
def x64(enabled=True):
    with jax.enable_x64(enabled):
        yield


def make_frame(seed=3, n=600):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 5, n)
    b = rng.integers(0, 3, n)
    c = rng.integers(0, 4, n)
    ua = np.array([0.3, -1.0, 0.5, 2.0, 1.1])[a]
    x = 1990 + 10 * rng.random(n)
    y = 3 + 0.2 * (x - 1995) + ua + rng.normal(size=n) + 0.5 * rng.normal(size=5)[a] + rng.normal(size=4)[c]
    return pd.DataFrame({"y": y, "x": x, "ua": ua, "a": [f"A{i}" for i in a], "b": [f"B{i}" for i in b],
                         "c": [f"C{i}" for i in c]})


FORMULA = "y ~ x + ua + (1 + x | a) + (1 | a:b) + (1 | c)"


def dense_system(model, sigma_y, covs, beta_prior=None):
    """``Q`` and ``h`` over ``theta = (beta, gamma_f..., b_f...)`` in the user's coordinates (float64)."""
    n = model.num_obs
    p = len(model.predictors)
    qs = [len(g) for g in model.group_predictors]
    sizes = [len(f.labels) for f in model.factors]
    dims = [f.Z.shape[1] for f in model.factors]
    P = p + sum(qs)
    total = P + sum(J * d for J, d in zip(sizes, dims))
    A = np.zeros((n, total))
    A[:, :p] = model.X
    offset = P
    b_slices = []
    for f, factor in enumerate(model.factors):
        J, d = sizes[f], dims[f]
        for j in range(d):
            A[np.arange(n), offset + factor.codes * d + j] = factor.Z[:, j]
        b_slices.append((offset, J, d))
        offset += J * d
    Q = A.T @ A / sigma_y**2
    h = A.T @ model.y / sigma_y**2
    g_start = p
    for f, factor in enumerate(model.factors):
        start, J, d = b_slices[f]
        lam = np.linalg.inv(covs[f])
        k = factor.coef_names.index("Intercept") if "Intercept" in factor.coef_names else -1
        q = qs[f]
        for g in range(J):
            # deviation = b_g - e_k U_g gamma  as a linear map of theta: D theta
            D = np.zeros((d, total))
            D[:, start + g * d:start + (g + 1) * d] = np.eye(d)
            if q and k >= 0:
                D[k, g_start:g_start + q] -= model.U[f][g]
            Q += D.T @ lam @ D
        g_start += q
    if beta_prior is not None:
        Q[:P, :P] += np.diag(beta_prior[1])
        h[:P] += beta_prior[1] * beta_prior[0]
    return Q, h, b_slices, P


def conditional(Q, h, idx, rest, value_rest):
    Qaa = Q[np.ix_(idx, idx)]
    lin = h[idx] - Q[np.ix_(idx, rest)] @ value_rest
    cov = np.linalg.inv(Qaa)
    return cov @ lin, cov


def flatten(model, user, P):
    """User draws (dict from to_user) -> theta rows in the dense order."""
    parts = [user["beta"]]
    parts += [user[f"gamma_{f.name}"] for f in model.factors]
    parts += [user[f"alpha_{f.name}"].reshape(user["beta"].shape[0], -1) for f in model.factors]
    return np.concatenate(parts, axis=1)


def z_scores(draws, mean, cov):
    N, d = draws.shape
    L = np.linalg.cholesky(cov)
    w = np.linalg.solve(L, (draws - mean).T).T
    z_mean = np.sqrt(N) * w.mean(axis=0)
    C = w.T @ w / N
    iu = np.triu_indices(d)
    sd = np.where(iu[0] == iu[1], np.sqrt(2.0 / N), np.sqrt(1.0 / N))
    z_cov = (C[iu] - np.eye(d)[iu]) / sd
    return z_mean, z_cov


def z_crit(m):
    return stats.norm.isf(FAMILY_LEVEL / (2 * m))


def chain_index(model, name):
    """The index of the chain whose coarsest factor is ``name``."""
    return next(i for i, c in enumerate(model.structure.chains) if model.factors[c[0]].name == name)


def chain_draws(model, k, state, num_draws, seed=0):
    keys = jax.random.split(jax.random.key(seed), num_draws)
    draw = jax.jit(jax.vmap(lambda key: update_chain(model.structure, k, key, state, model.data)))
    return jax.tree.map(np.asarray, draw(keys))


def setup(dtype_x64=True, beta_prior=False):
    df = make_frame()
    priors = None
    if beta_prior:
        priors = {"beta": {"x": mg.priors.Normal(0.0, 0.05), "Intercept": mg.priors.Normal(2.0, 3.0)}}
    model = mg.Model.from_formula(FORMULA, df, priors=priors)
    s = model.structure
    assert sorted([model.factors[f].name for f in c] for c in s.chains) == [["a", "a:b"], ["c"]]
    sigma_y = 0.9
    covs = [np.array([[0.6, -0.003], [-0.003, 0.0004]]), np.array([[0.3]]), np.array([[0.8]])]
    # a state in the user's coordinates: arbitrary locations, the variances above
    rng = np.random.default_rng(1)
    user = {"beta": rng.normal(size=(1, s.p)), "sigma_y": np.array([sigma_y])}
    for f, factor in enumerate(model.factors):
        user[f"alpha_{factor.name}"] = rng.normal(size=(1, len(factor.labels), s.dims[f]))
        user[f"gamma_{factor.name}"] = rng.normal(size=(1, s.q[f]))
        user[f"cov_{factor.name}"] = covs[f][None]
    kernel = model.to_kernel(user)
    state = jax.tree.map(lambda a: jnp.asarray(a[0], model.dtype), kernel)
    return model, user, state, sigma_y, covs


def unflatten(model, theta, user):
    """Flat rows ``theta`` (dense order) -> a user dict with the variances of ``user``."""
    s = model.structure
    N = theta.shape[0]
    out = {"beta": theta[:, :s.p], "sigma_y": np.broadcast_to(user["sigma_y"], (N,))}
    start = s.p
    for f, factor in enumerate(model.factors):
        out[f"gamma_{factor.name}"] = theta[:, start:start + s.q[f]]
        start += s.q[f]
    for f, factor in enumerate(model.factors):
        size = len(factor.labels) * s.dims[f]
        out[f"alpha_{factor.name}"] = theta[:, start:start + size].reshape(N, len(factor.labels), s.dims[f])
        out[f"cov_{factor.name}"] = np.broadcast_to(user[f"cov_{factor.name}"], (N, s.dims[f], s.dims[f]))
        start += size
    return out


def flatten_kernel(model, state):
    s = model.structure
    N = np.shape(state.beta)[0]
    return np.concatenate([np.asarray(state.beta, np.float64)]
                          + [np.asarray(g, np.float64) for g in state.gamma]
                          + [np.asarray(b, np.float64).reshape(N, -1) for b in state.b], axis=1)


def kernel_gaussian(model, user, Q, h):
    """The dense Gaussian ``N_canonical(Q, h)`` of the user's locations in the kernel's coordinates.

    With the variances fixed the map is affine, ``theta_k = A theta_u + a``, read off
    ``MixedModel.to_kernel`` column by column; then ``Q_k = A^-T Q A^-1``, ``h_k = A^-T h + Q_k a``.
    """
    dim = Q.shape[0]
    basis = np.vstack([np.zeros(dim), np.eye(dim)])
    mapped = flatten_kernel(model, model.to_kernel(unflatten(model, basis, user)))
    a = mapped[0]
    A = (mapped[1:] - a).T
    A_inv = np.linalg.inv(A)
    Qk = A_inv.T @ Q @ A_inv
    return 0.5 * (Qk + Qk.T), A_inv.T @ h + Qk @ a


def check_chain(model, user, state, sigma_y, covs, k, *, beta_prior=None, power=False):
    """z-scores of the chain's draws (kernel coordinates) against the exact conditional given the
    other factors' effects *in the kernel's coordinates* (what the sampler conditions on)."""
    Q, h, b_slices, P = dense_system(model, sigma_y, covs, beta_prior)
    if power:
        covs_wrong = [c * (2.0 if f == 0 else 1.0) for f, c in enumerate(covs)]
        Q, h, *_ = dense_system(model, sigma_y, covs_wrong, beta_prior)
    Qk, hk = kernel_gaussian(model, user, Q, h)
    k = chain_index(model, k)
    chain = model.structure.chains[k]
    idx = list(range(P))
    for f in chain:
        start, J, d = b_slices[f]
        idx += list(range(start, start + J * d))
    rest = [i for i in range(Q.shape[0]) if i not in idx]
    theta0 = flatten_kernel(model, jax.tree.map(lambda a: np.asarray(a)[None], state))[0]
    mean, cov = conditional(Qk, hk, idx, rest, theta0[rest])
    draws = flatten_kernel(model, chain_draws(model, k, state, NUM_DRAWS))[:, idx]
    return z_scores(draws, mean, cov)


@pytest.mark.parametrize("k", ["a", "c"])
def test_chain_draw_matches_the_exact_conditional(k):
    with x64():
        model, user, state, sigma_y, covs = setup()
        z_mean, z_cov = check_chain(model, user, state, sigma_y, covs, k)
    crit = z_crit(z_mean.size + z_cov.size)
    assert np.max(np.abs(z_mean)) < crit, np.max(np.abs(z_mean))
    assert np.max(np.abs(z_cov)) < crit, np.max(np.abs(z_cov))


def test_chain_draw_with_normal_priors_on_fixed_effects():
    with x64():
        model, user, state, sigma_y, covs = setup(beta_prior=True)
        names = list(model.predictors) + [n for g in model.group_predictors for n in g]
        loc = np.array([{"x": 0.0, "Intercept": 2.0}.get(n, 0.0) for n in names])
        prec = np.array([{"x": 1 / 0.05**2, "Intercept": 1 / 9.0}.get(n, 0.0) for n in names])
        z_mean, z_cov = check_chain(model, user, state, sigma_y, covs, "a", beta_prior=(loc, prec))
    crit = z_crit(z_mean.size + z_cov.size)
    assert np.max(np.abs(z_mean)) < crit
    assert np.max(np.abs(z_cov)) < crit


def test_chain_draw_power():
    with x64():
        model, user, state, sigma_y, covs = setup()
        z_mean, z_cov = check_chain(model, user, state, sigma_y, covs, "a", power=True)
    crit = z_crit(z_mean.size + z_cov.size)
    assert max(np.max(np.abs(z_mean)), np.max(np.abs(z_cov))) > crit


def test_float32_chain_draw_matches_the_float64_conditional():
    with x64(False):
        model, user, state, sigma_y, covs = setup()
        assert model.dtype == np.float32
        z_mean, _ = check_chain(model, user, state, sigma_y, covs, "a")
    assert np.max(np.abs(z_mean)) < z_crit(z_mean.size)


def test_round_trip_of_the_coordinates():
    with x64():
        model, user, state, *_ = setup()
        back = model.to_user(jax.tree.map(np.asarray, model.to_kernel(user)))
    for name, value in user.items():
        np.testing.assert_allclose(back[name], value, rtol=1e-10, atol=1e-10)

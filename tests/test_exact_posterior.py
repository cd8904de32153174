"""The Gibbs samplers of the Gaussian blocks against the exact joint posterior.

What is tested
--------------
With ``sigma_y`` and ``sigma_alpha`` held fixed, ``theta = (alpha, beta, gamma) | y`` is jointly
Gaussian. Its precision matrix and mean are built here in NumPy float64 from the raw data: the
likelihood ``y ~ N(Z alpha + X beta, sigma_y^2 I)`` (``Z`` the group indicator matrix), the group
level ``alpha ~ N(U gamma, sigma_alpha^2 I)`` and a flat or normal prior on ``beta`` and ``gamma``::

    Q = [[Z'Z/sy2 + I/sa2,  Z'X/sy2,        -U/sa2         ],
         [X'Z/sy2,          X'X/sy2 + P_b,   0             ],
         [-U'/sa2,          0,               U'U/sa2 + P_g ]]
    h = [Z'y/sy2,  X'y/sy2 + P_b m_b,  P_g m_g]

The samplers under test, each run as many independent chains (one ``vmap``) from a far-off common
start, the state of each chain after the burn-in being one independent draw:

* five-step Gibbs: ``mg.compose([update_alpha, update_beta, update_gamma])``;
* parameter expansion (:mod:`mlgibbs.conditionals.px`): with ``sigma_y``, ``xi`` and ``sigma_eta``
  held fixed, ``(eta, beta, gamma) | y`` is Gaussian, and the sweep ``[update_eta,
  update_beta_gamma]`` must give ``alpha = U gamma + xi eta``, ``beta``, ``gamma`` distributed as the
  closed form above with ``sigma_alpha = |xi| sigma_eta`` (``xi < 0`` here, so a lost absolute value
  shows). The same draws must be *rejected* against the closed form with ``sigma_alpha = sigma_eta``
  (power). The Flat-prior case runs under ``-m slow`` only, to keep the default run short.

The draws' mean vector and covariance matrix are compared with ``Q^{-1} h`` and ``Q^{-1}``.
``update_xi`` alone is compared with its closed-form normal conditional, computed from the raw data
(``xi ~ N(0, B^2)``, flat, and ``N(0, B^2 / sigma_eta^2)`` as under the half-normal working prior), by
the mean, variance and KS test of 20,000 independent draws.

Burn-in
-------
For a Gaussian target, the systematic-scan Gibbs sampler is a linear autoregression whose mean
converges at the rate of the spectral radius ``rho`` of its block Gauss-Seidel matrix
``-(D + L)^{-1} L'`` (``Q = D + L + L'``, ``D`` block-diagonal; Amit 1991, Roberts & Sahu 1997), and
the covariance at ``rho^2``. The test computes ``rho`` for the data set (for px in the sampler's own
coordinates ``(eta, beta, gamma)``, precision ``T'QT`` with ``alpha = xi eta + U gamma``), checks that
the remaining bias ``rho^B * |start - mean|`` (in posterior standard deviations) is negligible
(< 1e-3 of a Monte Carlo standard error) for the shorter burn-in ``B``, and runs two burn-in lengths
(the second four times the first), each of which must pass. With ``xi`` fixed the px scan is a
non-centred sampler, slower on this data set (``rho`` 0.81 and 0.88 under the normal and flat priors,
against 0.48 and 0.52), so its ``B`` is 75 and 120 instead of 30.

Tolerances
----------
The draws are independent, so the standard errors are exact: whitening with the true covariance
(``w = L^{-1}(theta - mu)``, ``L L' = Q^{-1}``), ``sqrt(N) wbar_k ~ N(0, 1)`` for every coordinate,
the entries of ``C = w'w/N`` have standard deviations ``sqrt(2/N)`` (diagonal) and ``sqrt(1/N)``
(off-diagonal), and each whitened coordinate is KS-tested against ``N(0, 1)``. Two aggregate tests add
power against diffuse errors: ``N |wbar|^2 ~ chi2(d)`` and the sum of the squared covariance
z-scores, approximately ``chi2(d (d + 1) / 2)``. All comparisons of one run share a Bonferroni
correction at family-wise level 1e-4 (z threshold about 4.8). Seeds are fixed; thresholds do not
depend on them. Everything runs in float64. (The px power check is not marginal: against the wrong
closed form the largest whitened mean and variance z-scores of the same draws are about 25 and 40.)
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
NUM_CHAINS = 2000
BURN_IN = 30  # the short burn-in; the long one is 4 * BURN_IN

FAST_COMPILE = {"xla_backend_optimization_level": 0}

SIGMA_Y = 1.0
SIGMA_ALPHA = 0.8

PRIORS = {
    "Flat": (P.Flat(), P.Flat()),
    "Normal": (P.Normal(np.array([0.5, -1.0]), np.array([0.3, 2.0])),
               P.Normal(np.array([1.5, 0.0]), np.array([0.5, 1.0]))),
}


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def data_set(seed: int = 5):
    """J = 6 unbalanced groups, n = 56, two individual-level and one group-level predictor."""
    rng = np.random.default_rng(seed)
    counts = np.array([3, 6, 8, 10, 14, 15])
    J = counts.size
    group = np.repeat(np.arange(J), counts)
    n = group.size
    X = rng.normal(size=(n, 2)) + 0.5 * rng.normal(size=(J, 2))[group]
    u = rng.normal(size=(J, 1))
    U = np.column_stack([np.ones(J), u])
    alpha = U @ np.array([1.0, 0.5]) + SIGMA_ALPHA * rng.normal(size=J)
    y = alpha[group] + X @ np.array([0.7, -0.4]) + SIGMA_Y * rng.normal(size=n)
    return y, X, group, u, U


def prior_moments(prior, size):
    if isinstance(prior, P.Flat):
        return np.zeros((size, size)), np.zeros(size)
    loc = np.broadcast_to(np.asarray(prior.loc, float), (size,))
    prec = 1.0 / np.broadcast_to(np.asarray(prior.scale, float), (size,)) ** 2
    return np.diag(prec), prec * loc


def joint_posterior(y, X, group, U, prior_beta, prior_gamma, sigma_alpha=SIGMA_ALPHA):
    """Precision ``Q`` and mean of ``(alpha, beta, gamma) | y, sigma_y, sigma_alpha``, from raw data."""
    J, q = U.shape
    p = X.shape[1]
    Z = np.eye(J)[group]
    sy2, sa2 = SIGMA_Y**2, sigma_alpha**2
    Pb, hb = prior_moments(prior_beta, p)
    Pg, hg = prior_moments(prior_gamma, q)
    Q = np.block([
        [Z.T @ Z / sy2 + np.eye(J) / sa2, Z.T @ X / sy2, -U / sa2],
        [X.T @ Z / sy2, X.T @ X / sy2 + Pb, np.zeros((p, q))],
        [-U.T / sa2, np.zeros((q, p)), U.T @ U / sa2 + Pg],
    ])
    h = np.concatenate([Z.T @ y / sy2, X.T @ y / sy2 + hb, hg])
    return Q, np.linalg.solve(Q, h)


def gibbs_rate(Q, sizes):
    """Spectral radius of the block Gauss-Seidel matrix of a systematic scan over ``sizes`` blocks."""
    edges = np.cumsum([0, *sizes])
    D_plus_L = np.zeros_like(Q)
    for a in range(len(sizes)):
        for b in range(a + 1):
            rows, cols = slice(edges[a], edges[a + 1]), slice(edges[b], edges[b + 1])
            D_plus_L[rows, cols] = Q[rows, cols]
    B = -np.linalg.solve(D_plus_L, Q - D_plus_L)
    return float(np.max(np.abs(np.linalg.eigvals(B))))


def assert_gaussian(draws, mean, cov, what: str):
    """Whitened mean, covariance, KS and aggregate chi-square checks of iid draws vs ``N(mean, cov)``."""
    num, dim = draws.shape
    chol = np.linalg.cholesky(cov)
    w = np.linalg.solve(chol, (draws - mean).T).T
    iu = np.triu_indices(dim)
    z_mean = np.sqrt(num) * w.mean(axis=0)
    sd_cov = np.where(iu[0] == iu[1], np.sqrt(2.0 / num), np.sqrt(1.0 / num))
    z_cov = ((w.T @ w / num) - np.eye(dim))[iu] / sd_cov
    ks_p = np.array([stats.kstest(w[:, k], "norm").pvalue for k in range(dim)])
    p_mean_chi2 = stats.chi2.sf(np.sum(z_mean**2), dim)
    p_cov_chi2 = stats.chi2.sf(np.sum(z_cov**2), z_cov.size)
    k = dim + z_cov.size + dim + 2
    crit = float(stats.norm.isf(FAMILY_ALPHA / (2 * k)))
    assert np.all(np.abs(z_mean) < crit), (
        f"{what}: mean z-scores {np.round(z_mean, 2)} (threshold {crit:.2f})")
    assert np.all(np.abs(z_cov) < crit), (
        f"{what}: covariance z-scores {np.round(z_cov, 2)} (threshold {crit:.2f})")
    assert np.all(ks_p > FAMILY_ALPHA / k), f"{what}: KS p-values {ks_p}"
    assert p_mean_chi2 > FAMILY_ALPHA / k, f"{what}: chi2 of the means, p = {p_mean_chi2:.2e}"
    assert p_cov_chi2 > FAMILY_ALPHA / k, f"{what}: chi2 of the covariances, p = {p_cov_chi2:.2e}"


def run_chains(rng_key, state, data, *, step, burn_in):
    """States of every chain after ``burn_in`` and after ``4 * burn_in`` sweeps (vmap over keys)."""

    def chain(key):
        def sweep(carry, inputs):
            s, saved = carry
            k, i = inputs
            s = step(k, s, data)
            saved = jax.tree.map(lambda new, old: jnp.where(i == burn_in - 1, new, old), s, saved)
            return (s, saved), None

        steps = 4 * burn_in
        (long, short), _ = jax.lax.scan(sweep, (state, state),
                                        (jax.random.split(key, steps), jnp.arange(steps)))
        return short, long

    return jax.vmap(chain)(jax.random.split(rng_key, NUM_CHAINS))


def flatten(state):
    return np.concatenate([np.asarray(state.alpha), np.asarray(state.beta), np.asarray(state.gamma)],
                          axis=-1)


def to_kernel(model, state):
    """A user-coordinate state in the model's kernel coordinates (JAX, the model's dtype)."""
    return jax.tree.map(lambda a: jnp.asarray(a, model.dtype), model.to_kernel(state))


def to_user(model, state):
    return model.to_user(mg.GibbsState(*(getattr(state, f) for f in mg.GibbsState._fields)))


def kernel_map(model, J, p, q):
    """``(M, b)`` with ``flatten(kernel state) = M flatten(user state) + b`` (the model's affine map)."""
    def image(vec):
        st = mg.GibbsState(alpha=vec[:J], beta=vec[J:J + p], gamma=vec[J + p:], sigma_y=np.float64(1.0),
                           sigma_alpha=np.float64(1.0))
        return flatten(model.to_kernel(st))

    b = image(np.zeros(J + p + q))
    M = np.column_stack([image(e) - b for e in np.eye(J + p + q)])
    return M, b


#: the standardized case runs on data whose predictors are far from centred and whose response is
#: offset, so that the model's affine map (and the prior cross terms it creates) is far from trivial
OFFSETS = {False: (0.0, 0.0), True: (3.0, 40.0)}


@pytest.mark.parametrize("standardize", [False, True], ids=["raw", "standardized"])
@pytest.mark.parametrize("prior_name", sorted(PRIORS))
def test_gaussian_blocks_match_exact_posterior(prior_name, standardize):
    """The five-step location sweep with the scales fixed, in the user's coordinates (``raw``) and in
    the model's centred and whitened ones (``standardized``: the start is mapped in, the draws back
    out, and the user's independent priors ride along as one joint prior in those coordinates)."""
    prior_beta, prior_gamma = PRIORS[prior_name]
    y, X, group, u, U = data_set()
    x_offset, y_offset = OFFSETS[standardize]
    X, y = X + x_offset, y + y_offset
    model = mg.Model.from_arrays(y, X, group, u, dtype=np.float64, standardize=standardize,
                                 priors={"beta": prior_beta, "gamma": prior_gamma})
    np.testing.assert_array_equal(model.group_index, group)
    Q, mean = joint_posterior(y, X, group, U, prior_beta, prior_gamma)
    cov = np.linalg.inv(Q)

    J, p, q = U.shape[0], X.shape[1], U.shape[1]
    # the same Gaussian in the kernel's coordinates: what the sweep's rate and burn-in depend on
    M, b = kernel_map(model, J, p, q)
    M_inv = np.linalg.inv(M)
    Q_k, mean_k = M_inv.T @ Q @ M_inv, M @ mean + b
    sd_k = np.sqrt(np.diag(np.linalg.inv(Q_k)))
    kernel_start = np.r_[np.full(J, -5.0), np.full(p + q, 5.0)]  # far out, in the kernel's coordinates
    centre = M_inv @ (kernel_start - b)
    start = mg.GibbsState(alpha=jnp.asarray(centre[:J]), beta=jnp.asarray(centre[J:J + p]),
                          gamma=jnp.asarray(centre[J + p:]), sigma_y=jnp.asarray(SIGMA_Y),
                          sigma_alpha=jnp.asarray(SIGMA_ALPHA))
    # the remaining bias after the short burn-in, in posterior sds, is far below the MC error
    rho = gibbs_rate(Q_k, (J, p, q))
    distance = np.max(np.abs(flatten(model.to_kernel(start)) - mean_k) / sd_k)
    assert distance * rho**BURN_IN < 1e-3 / np.sqrt(NUM_CHAINS), (
        f"burn-in {BURN_IN} too short: rate {rho:.3f}, start {distance:.1f} sd away")

    step = mg.compose([mg.update_alpha, mg.update_beta, mg.update_gamma])  # priors: from model.data
    start = to_kernel(model, start)
    # compile time dominates on CPU; XLA's backend optimisation off halves it (same program)
    program = jax.jit(functools.partial(run_chains, step=step, burn_in=BURN_IN)).lower(
        jax.random.key(2024), start, model.data).compile(FAST_COMPILE)
    short, long = program(jax.random.key(2024), start, model.data)
    for name, state in (("short", short), ("long", long)):
        state = to_user(model, state)
        np.testing.assert_allclose(np.asarray(state.sigma_y), SIGMA_Y, rtol=1e-12)  # the scales stay fixed
        assert_gaussian(flatten(state), mean, cov, f"{prior_name} priors, {name} burn-in")


# ----------------------------------------------------------------------------- parameter expansion
XI, SIGMA_ETA = -1.6, 0.5  # |xi| sigma_eta = SIGMA_ALPHA; a negative xi checks the absolute value
# with xi held fixed the two-block scan over (eta, (beta, gamma)) is a non-centred Gibbs sampler,
# slower than the centred one on this data set (rate 0.81 under the normal priors and 0.88 under
# the flat ones, against 0.48 and 0.52): longer burn-ins, each checked against its rate in the test
PX_BURN_IN = {"Normal": 75, "Flat": 120}


def px_transform(J, p, U, xi):
    """``T`` with ``(alpha, beta, gamma) = T (eta, beta, gamma)``: ``alpha = xi eta + U gamma``."""
    q = U.shape[1]
    T = np.eye(J + p + q)
    T[:J, :J] = xi * np.eye(J)
    T[:J, J + p:] = U
    return T


@pytest.mark.parametrize("standardize", [False, True], ids=["raw", "standardized"])
@pytest.mark.parametrize("prior_name", [
    "Normal",  # distinct priors on beta and gamma: their order in the joint block is checked
    pytest.param("Flat", marks=pytest.mark.slow),
])
def test_px_location_blocks_match_exact_posterior(prior_name, standardize):
    """The px sweep ``[update_eta, update_beta_gamma]`` with ``sigma_y``, ``xi``, ``sigma_eta`` fixed,
    in the user's and in the model's standardized coordinates (``alpha - U gamma = xi eta`` is the
    same in both when the response is not rescaled, as here)."""
    from mlgibbs.conditionals.px import PXState, update_beta_gamma, update_eta

    assert abs(XI) * SIGMA_ETA == pytest.approx(SIGMA_ALPHA)
    prior_beta, prior_gamma = PRIORS[prior_name]
    y, X, group, u, U = data_set()
    model = mg.Model.from_arrays(y, X, group, u, dtype=np.float64, standardize=standardize,
                                 priors={"beta": prior_beta, "gamma": prior_gamma})
    assert model.standardization.y_scale == 1.0
    Q, mean = joint_posterior(y, X, group, U, prior_beta, prior_gamma)
    cov = np.linalg.inv(Q)

    J, p, q = U.shape[0], X.shape[1], U.shape[1]
    # the same Gaussian in the sampler's coordinates (eta, beta, gamma)
    T = px_transform(J, p, U, XI)
    Q_px = T.T @ Q @ T
    mean_px = np.linalg.solve(T, mean)
    sd_px = np.sqrt(np.diag(np.linalg.inv(Q_px)))
    eta0, beta0, gamma0 = jnp.full(J, -5.0), jnp.full(p, 5.0), jnp.full(q, 5.0)
    user_start = mg.GibbsState(alpha=jnp.asarray(U) @ gamma0 + XI * eta0, beta=beta0, gamma=gamma0,
                               sigma_y=jnp.asarray(SIGMA_Y), sigma_alpha=jnp.asarray(SIGMA_ALPHA))
    start = PXState(*to_kernel(model, user_start), eta=eta0, xi=jnp.asarray(XI),
                    sigma_eta=jnp.asarray(SIGMA_ETA))
    rho = gibbs_rate(Q_px, (J, p + q))
    distance = np.max(np.abs(np.concatenate([eta0, beta0, gamma0]) - mean_px) / sd_px)
    burn_in = PX_BURN_IN[prior_name]
    assert distance * rho**burn_in < 1e-3 / np.sqrt(NUM_CHAINS), (
        f"burn-in {burn_in} too short: rate {rho:.3f}, start {distance:.1f} sd away")

    step = mg.compose([update_eta, update_beta_gamma])
    program = jax.jit(functools.partial(run_chains, step=step, burn_in=burn_in)).lower(
        jax.random.key(2025), start, model.data).compile(FAST_COMPILE)
    short, long = program(jax.random.key(2025), start, model.data)
    for name, state in (("short", short), ("long", long)):
        for field, value in (("sigma_y", SIGMA_Y), ("xi", XI), ("sigma_eta", SIGMA_ETA)):
            np.testing.assert_array_equal(np.asarray(getattr(state, field)), value)  # held fixed
        kernel_alpha = state.gamma @ model.data.groups.U.T + XI * state.eta
        user = to_user(model, state._replace(alpha=kernel_alpha))
        draws = np.concatenate([user.alpha, user.beta, user.gamma], axis=-1)
        assert_gaussian(draws, mean, cov, f"px, {prior_name} priors, {name} burn-in")

    # power: the same draws are rejected against the posterior with sigma_alpha = sigma_eta (|xi| lost)
    Q_wrong, mean_wrong = joint_posterior(y, X, group, U, prior_beta, prior_gamma, sigma_alpha=SIGMA_ETA)
    with pytest.raises(AssertionError):
        assert_gaussian(draws, mean_wrong, np.linalg.inv(Q_wrong), "power check")


NUM_XI_DRAWS = 20_000


@pytest.mark.parametrize("xi_scale, given_sigma_eta", [(0.7, False), (float("inf"), False), (0.7, True)],
                         ids=["normal", "flat", "normal-given-sigma_eta"])
def test_px_update_xi_matches_its_conditional(xi_scale, given_sigma_eta):
    """``update_xi`` against ``xi | rest ~ N(m, v)`` computed from the raw data.

    With ``r_i = y_i - X_i beta - U_j[i] gamma`` and prior ``xi ~ N(0, B^2)`` (``B = xi_scale``, or
    ``xi_scale / sigma_eta`` for the half-normal working prior, ``given_sigma_eta``):
    ``1 / v = sum_i eta_j[i]^2 / sigma_y^2 + 1 / B^2`` and ``m = v sum_i eta_j[i] r_i / sigma_y^2``.
    ``N`` independent draws (one per key): ``sqrt(N) (mean - m) / sqrt(v) ~ N(0, 1)``, the sample
    variance over ``v`` has standard deviation ``sqrt(2 / N)``, and the standardised draws are
    KS-tested against ``N(0, 1)``; Bonferroni over the three at family-wise level 1e-4.
    """
    from mlgibbs.conditionals.px import PXState, update_xi

    y, X, group, u, U = data_set()
    model = mg.Model.from_arrays(y, X, group, u, dtype=np.float64, standardize=False)
    rng = np.random.default_rng(17)
    J, p, q = U.shape[0], X.shape[1], U.shape[1]
    eta, beta, gamma = rng.normal(size=J), rng.normal(size=p), rng.normal(size=q)
    state = PXState(alpha=jnp.asarray(U @ gamma + 0.3 * eta), beta=jnp.asarray(beta),
                    gamma=jnp.asarray(gamma), sigma_y=jnp.asarray(SIGMA_Y),
                    sigma_alpha=jnp.asarray(0.3 * SIGMA_ETA), eta=jnp.asarray(eta),
                    xi=jnp.asarray(0.3), sigma_eta=jnp.asarray(SIGMA_ETA))

    resid = y - X @ beta - (U @ gamma)[group]
    e = eta[group]
    prior_scale = xi_scale / SIGMA_ETA if given_sigma_eta else xi_scale
    prec = np.sum(e**2) / SIGMA_Y**2 + (0.0 if np.isinf(prior_scale) else 1.0 / prior_scale**2)
    m, v = np.sum(e * resid) / SIGMA_Y**2 / prec, 1.0 / prec

    keys = jax.random.split(jax.random.key(3), NUM_XI_DRAWS)
    draws = jax.jit(jax.vmap(lambda k: update_xi(k, state, model.data, xi_scale, given_sigma_eta).xi))(keys)
    w = (np.asarray(draws) - m) / np.sqrt(v)
    crit = float(stats.norm.isf(FAMILY_ALPHA / (2 * 3)))
    z_mean = np.sqrt(NUM_XI_DRAWS) * w.mean()
    z_var = (w.var(ddof=1) - 1.0) / np.sqrt(2.0 / NUM_XI_DRAWS)
    assert abs(z_mean) < crit, f"mean: z = {z_mean:.2f} (m = {m:.4f}, threshold {crit:.2f})"
    assert abs(z_var) < crit, f"variance: z = {z_var:.2f} (v = {v:.4g}, threshold {crit:.2f})"
    assert stats.kstest(w, "norm").pvalue > FAMILY_ALPHA / 3

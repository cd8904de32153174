"""Each full conditional alone, against its closed form computed independently from the raw data.

What is tested
--------------
Every conditional update of :mod:`mlgibbs.conditionals` is run with the other blocks held at a fixed,
arbitrary state, ``vmap``-ed over :data:`NUM_DRAWS` independent keys, and its draws are compared with
the exact full conditional, which is computed here in NumPy/SciPy float64 from the *raw* observations
``y, X, group, U`` (never from the library's sufficient statistics):

* ``update_alpha``: ``alpha_j | rest ~ N(m_j, v_j)`` with ``m_j, v_j`` from the group's raw residuals
  ``y_i - X_i beta``; with and without group-level predictors.
* ``update_beta`` (grouped and pooled models) and ``update_gamma``, under :class:`~mlgibbs.priors.Flat`
  and :class:`~mlgibbs.priors.Normal` priors: the Gaussian regression posterior from NumPy linear
  algebra on ``y - alpha[group]`` and ``X`` (resp. ``alpha`` and ``U``).
* ``update_sigma_y`` and ``update_sigma_alpha`` under every scale prior: the target density
  ``p(sigma) sigma^{-m} exp(-S / 2 sigma^2)`` (``S`` summed over the raw terms, prior densities from
  :mod:`scipy.stats`) is normalised by numerical quadrature on a fine ``log sigma`` grid, cross-checked
  with :func:`scipy.integrate.quad`. Uniform and InverseGamma give exact one-shot draws, tested with a
  Kolmogorov-Smirnov test whatever the current ``sigma``. HalfNormal (one independence
  Metropolis-Hastings step) and
  HalfStudentT / HalfCauchy (one auxiliary-variable Gibbs cycle, which depends on the current
  ``sigma``) are Markov kernels: they are tested for *invariance* (exact draws of the target in, one
  update, KS test of the output) and for *convergence* (every chain started at one far-off value,
  a few updates, KS test), since an identity kernel would pass the invariance test alone.
* The tests have power: exact draws under the uniform prior are rejected against the target of the
  ``1 / sigma`` prior (a one-degree-of-freedom error), and one step of a half-normal kernel with a
  prior scale 20% off applied to exact draws of the right target is rejected.
* :func:`~mlgibbs.conditionals.residual_sum_of_squares` (and ``group_sum_of_squares``) equal the direct
  sums over observations (groups): to rounding in float64, and in float32 for badly centred data
  (``y ~ 1e4``, ``X`` offset by ``1e3``) within a first-order rounding-error bound, which the textbook
  one-pass formula ``y'y - 2 b'X'y + b'X'X b`` exceeds by orders of magnitude.

Tolerances
----------
Draws of one call are independent, so standard errors are exact: the Gaussian checks whiten the draws
with the true covariance, ``w = L^{-1}(x - mu)``, and use ``sqrt(N) wbar_k ~ N(0, 1)``, and for the
entries of ``C = w'w / N``: ``sd(C_kk) = sqrt(2 / N)``, ``sd(C_kl) = sqrt(1 / N)``; plus a KS test of
each whitened coordinate. Every test makes ``k`` comparisons and rejects at family-wise level
:data:`FAMILY_ALPHA` = 1e-4 with a Bonferroni correction (z threshold ``Phi^{-1}(1 - FAMILY_ALPHA / 2k)``,
about 4 to 4.6 here; KS p-values below ``FAMILY_ALPHA / k``). Seeds are fixed for reproducibility; the
thresholds do not depend on them. The quadrature reference is accurate to ~1e-8 in the CDF, far below
the KS resolution ``~1 / sqrt(N)``. Everything but the float32 identity runs in float64.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, optimize, stats

import mlgibbs as mg
from mlgibbs import priors as P
from mlgibbs.conditionals import group_sum_of_squares, residual_sum_of_squares

NUM_DRAWS = 20_000
FAMILY_ALPHA = 1e-4
FAST_COMPILE = {"xla_backend_optimization_level": 0}

SCALE_PRIORS = {
    "Uniform": P.Uniform(),
    "InverseGamma": P.InverseGamma(2.0, 1.5),
    "HalfNormal": P.HalfNormal(1.0),
    "HalfCauchy": P.HalfCauchy(0.8),
    "HalfStudentT": P.HalfStudentT(3.0, 1.2),
}
EXACT_PRIORS = ("Uniform", "InverseGamma")
KERNEL_PRIORS = ("HalfNormal", "HalfCauchy", "HalfStudentT")


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def z_crit(num_comparisons: int) -> float:
    """Two-sided Bonferroni z threshold for ``num_comparisons`` tests at family-wise FAMILY_ALPHA."""
    return float(stats.norm.isf(FAMILY_ALPHA / (2 * num_comparisons)))


# ----------------------------------------------------------------------------- data and states
def grouped_arrays(seed: int = 11):
    """A small unbalanced grouped data set: J = 6 groups, n = 60, p = 2, one group-level predictor."""
    rng = np.random.default_rng(seed)
    counts = np.array([4, 7, 10, 12, 15, 12])
    J = counts.size
    group = np.repeat(np.arange(J), counts)
    n = group.size
    X = rng.normal(size=(n, 2)) + rng.normal(size=(J, 2))[group]  # group means differ: xbar_j != 0
    u = rng.normal(size=(J, 1))
    U = np.column_stack([np.ones(J), u])
    alpha = U @ np.array([1.0, 0.5]) + 0.8 * rng.normal(size=J)
    y = alpha[group] + X @ np.array([0.7, -0.4]) + rng.normal(size=n)
    return y, X, group, u, U


def grouped_model(with_gamma: bool = True, priors=None):
    y, X, group, u, U = grouped_arrays()
    if with_gamma:
        model = mg.Model.from_arrays(y, X, group, u, priors=priors, dtype=np.float64, standardize=False)
    else:
        model = mg.Model.from_arrays(y, X, group, None, intercept=False, priors=priors, standardize=False,
                                     dtype=np.float64)
        U = np.zeros((U.shape[0], 0))
    np.testing.assert_array_equal(model.group_index, group)
    return model, (y, X, group, U)


def pooled_model(priors=None):
    rng = np.random.default_rng(12)
    n = 40
    X = np.column_stack([np.ones(n), rng.normal(size=(n, 2))])
    y = X @ np.array([0.3, 1.0, -0.5]) + 0.7 * rng.normal(size=n)
    return mg.Model.from_arrays(y, X, priors=priors, dtype=np.float64, standardize=False), (y, X)


def grouped_state(with_gamma: bool = True) -> mg.GibbsState:
    """An arbitrary state (not the truth, not a posterior mode): the conditionals hold for any."""
    alpha = np.array([1.4, 0.2, 1.9, 0.6, -0.3, 1.1])
    return mg.GibbsState(
        alpha=jnp.asarray(alpha),
        beta=jnp.asarray([0.5, -0.2]),
        gamma=jnp.asarray([0.8, 0.3]) if with_gamma else None,
        sigma_y=jnp.asarray(1.3),
        sigma_alpha=jnp.asarray(0.6),
    )


def draw_many(update, state, data, num=NUM_DRAWS, seed=0):
    """``update`` applied to ``state`` with ``num`` independent keys, one ``vmap``.

    Run eagerly (not ``jit``-ed): each primitive is compiled once and shared by every test, which on
    CPU is much cheaper than compiling one program per test.
    """
    keys = jax.random.split(jax.random.key(seed), num)
    return jax.vmap(update, in_axes=(0, None, None))(keys, state, data)


# ----------------------------------------------------------------------------- Gaussian checks
def assert_gaussian(draws, mean, cov, what: str):
    """Whitened mean, covariance and KS checks of iid draws against ``N(mean, cov)``."""
    draws = np.asarray(draws, np.float64)
    num, dim = draws.shape
    chol = np.linalg.cholesky(cov)
    w = np.linalg.solve(chol, (draws - mean).T).T
    iu = np.triu_indices(dim)
    z_mean = np.sqrt(num) * w.mean(axis=0)
    sample_cov = w.T @ w / num
    sd_cov = np.where(iu[0] == iu[1], np.sqrt(2.0 / num), np.sqrt(1.0 / num))
    z_cov = (sample_cov - np.eye(dim))[iu] / sd_cov
    ks_p = np.array([stats.kstest(w[:, k], "norm").pvalue for k in range(dim)])
    k = dim + z_cov.size + dim
    crit = z_crit(k)
    assert np.all(np.abs(z_mean) < crit), f"{what}: mean z-scores {z_mean} (threshold {crit:.2f})"
    assert np.all(np.abs(z_cov) < crit), f"{what}: covariance z-scores {z_cov} (threshold {crit:.2f})"
    assert np.all(ks_p > FAMILY_ALPHA / k), f"{what}: KS p-values {ks_p} (threshold {FAMILY_ALPHA / k:.1e})"


def prior_moments(prior, size):
    """Prior precision (diagonal) and precision-weighted mean of a coefficient prior, by hand."""
    if isinstance(prior, P.Flat):
        return np.zeros((size, size)), np.zeros(size)
    loc = np.broadcast_to(np.asarray(prior.loc, float), (size,))
    prec = 1.0 / np.broadcast_to(np.asarray(prior.scale, float), (size,)) ** 2
    return np.diag(prec), prec * loc


COEF_PRIORS = {
    "Flat": P.Flat(),
    "Normal": P.Normal(np.array([0.5, -1.0]), np.array([0.3, 2.0])),
}


# ----------------------------------------------------------------------------- alpha, beta, gamma
@pytest.mark.parametrize("with_gamma", [True, False], ids=["U", "noU"])
def test_alpha_conditional(with_gamma):
    model, (y, X, group, U) = grouped_model(with_gamma)
    state = grouped_state(with_gamma)
    draws = draw_many(mg.update_alpha, state, model.data).alpha
    beta, sy2, sa2 = np.asarray(state.beta), float(state.sigma_y) ** 2, float(state.sigma_alpha) ** 2
    prior_mean = U @ np.asarray(state.gamma) if with_gamma else np.zeros(U.shape[0])
    J = U.shape[0]
    mean, var = np.empty(J), np.empty(J)
    for j in range(J):  # one group at a time, from its raw observations
        resid = (y - X @ beta)[group == j]
        precision = resid.size / sy2 + 1.0 / sa2
        var[j] = 1.0 / precision
        mean[j] = var[j] * (resid.sum() / sy2 + prior_mean[j] / sa2)
    assert_gaussian(draws, mean, np.diag(var), "alpha | rest")


@pytest.mark.parametrize("prior_name", sorted(COEF_PRIORS))
@pytest.mark.parametrize("grouped", [True, False], ids=["grouped", "pooled"])
def test_beta_conditional(grouped, prior_name):
    prior = COEF_PRIORS[prior_name]
    if grouped:
        model, (y, X, group, _) = grouped_model()
        state = grouped_state()
        offset = np.asarray(state.alpha)[group]
    else:
        model, (y, X) = pooled_model()
        if isinstance(prior, P.Normal):
            prior = P.Normal(np.array([0.5, -1.0, 0.0]), np.array([0.3, 2.0, 0.5]))
        state = mg.GibbsState(alpha=None, beta=jnp.zeros(3), gamma=None, sigma_y=jnp.asarray(0.9),
                              sigma_alpha=None)
        offset = 0.0
    update = functools.partial(mg.update_beta, prior=prior)
    draws = draw_many(update, state, model.data).beta
    sy2 = float(state.sigma_y) ** 2
    prec0, lin0 = prior_moments(prior, X.shape[1])
    precision = X.T @ X / sy2 + prec0
    cov = np.linalg.inv(precision)
    mean = cov @ (X.T @ (y - offset) / sy2 + lin0)
    assert_gaussian(draws, mean, cov, f"beta | rest ({prior_name})")


@pytest.mark.parametrize("prior_name", sorted(COEF_PRIORS))
def test_gamma_conditional(prior_name):
    prior = COEF_PRIORS[prior_name]
    model, (_, _, _, U) = grouped_model()
    state = grouped_state()
    draws = draw_many(functools.partial(mg.update_gamma, prior=prior), state, model.data).gamma
    sa2 = float(state.sigma_alpha) ** 2
    prec0, lin0 = prior_moments(prior, U.shape[1])
    cov = np.linalg.inv(U.T @ U / sa2 + prec0)
    mean = cov @ (U.T @ np.asarray(state.alpha) / sa2 + lin0)
    assert_gaussian(draws, mean, cov, f"gamma | rest ({prior_name})")


# ----------------------------------------------------------------------------- scales
def scipy_log_prior(prior):
    """Log density of ``sigma`` under ``prior``, written with scipy.stats (not the library's log_prob)."""
    if isinstance(prior, P.Uniform):
        return lambda s: np.zeros_like(s)
    if isinstance(prior, P.InverseGamma):
        ig = stats.invgamma(prior.concentration, scale=prior.rate)
        return lambda s: ig.logpdf(s**2) + np.log(2 * s)
    if isinstance(prior, P.HalfNormal):
        return stats.halfnorm(scale=prior.scale).logpdf
    if isinstance(prior, P.HalfCauchy):
        return stats.halfcauchy(scale=prior.scale).logpdf
    if isinstance(prior, P.HalfStudentT):
        t = stats.t(prior.df, scale=prior.scale)
        return lambda s: np.log(2.0) + t.logpdf(s)
    raise TypeError(prior)


class ScaleTarget:
    """``p(sigma | S, m) ∝ p(sigma) sigma^{-m} exp(-S / 2 sigma^2)``, normalised by quadrature.

    Tabulated on a fine grid of ``u = log sigma`` (density ``p(e^u) e^{-m u} exp(-S e^{-2u} / 2) e^u``),
    integrated with cumulative Simpson, the normaliser cross-checked with ``scipy.integrate.quad``.
    """

    def __init__(self, log_prior, sum_sq: float, count: int, num: int = 200_001):
        def log_density(u):
            return log_prior(np.exp(u)) - count * u - 0.5 * sum_sq * np.exp(-2 * u) + u

        mode = optimize.minimize_scalar(lambda u: -log_density(u), bracket=(-3.0, 3.0)).x
        top = log_density(mode)
        # the grid ends where the density has fallen by e^-80 (tails are e^-(m-1)|u| or lighter)
        lower = optimize.brentq(lambda u: log_density(u) - top + 80.0, mode - 100.0, mode)
        upper = optimize.brentq(lambda u: log_density(u) - top + 80.0, mode, mode + 100.0)
        self.grid = np.linspace(lower, upper, num)
        density = np.exp(log_density(self.grid) - top)
        cdf = integrate.cumulative_simpson(density, x=self.grid, initial=0.0)
        total, _ = integrate.quad(lambda u: np.exp(log_density(u) - top), lower, upper,
                                  points=[mode], epsabs=0, epsrel=1e-11, limit=200)
        assert abs(cdf[-1] / total - 1) < 1e-8, "quadrature reference not converged"
        assert density[0] < 1e-30 and density[-1] < 1e-30, "grid does not cover the target"
        self.cdf_values = cdf / cdf[-1]

    def cdf(self, sigma):
        return np.interp(np.log(sigma), self.grid, self.cdf_values)

    def ppf(self, q):
        return np.exp(np.interp(q, self.cdf_values, self.grid))


def scale_setup(which: str, prior):
    """Model, state, update, sum of squares and count for ``sigma_y`` or ``sigma_alpha``.

    The state is chosen so that ``S / m`` for ``sigma_alpha`` (about 5) is in tension with the
    priors' scales (~1): with only ``m = J = 6`` terms the prior shapes the conditional strongly.
    """
    model, (y, X, group, U) = grouped_model()
    state = grouped_state()
    alpha, beta, gamma = (np.asarray(state.alpha), np.asarray(state.beta), np.asarray(state.gamma))
    if which == "sigma_y":
        sum_sq = float(np.sum((y - alpha[group] - X @ beta) ** 2))
        count = y.size
        update = functools.partial(mg.update_sigma_y, prior=prior)
    else:
        alpha = np.array([3.4, -1.8, 3.9, -1.4, 1.3, 3.1])
        state = state._replace(alpha=jnp.asarray(alpha))
        sum_sq = float(np.sum((alpha - U @ gamma) ** 2))
        count = U.shape[0]
        update = functools.partial(mg.update_sigma_alpha, prior=prior)
    return model, state, update, sum_sq, count


@functools.lru_cache(maxsize=None)
def scale_kernel(which: str, prior):
    """``(keys, sigmas) -> sigmas``: one update per entry, ``vmap``-ed, cached per (block, prior).

    The half-normal step is compiled. The other priors are run ``vmap``-ed but not
    ``jit``-ed: eagerly, the gamma sampler's compiled primitive is shared by every prior and block
    (compiling it inside each ``jit`` costs seconds per call site on CPU), and the batch size is
    always :data:`NUM_DRAWS` so it compiles once.
    """
    model, state, update, _, _ = scale_setup(which, prior)

    def one(key, sigma):
        return getattr(update(key, state._replace(**{which: sigma}), model.data), which)

    kernel = jax.vmap(one)
    if not isinstance(prior, P.HalfNormal):
        return kernel
    # compiled (it was a slice step with while loops); XLA's backend optimisation off halves the
    # compile time, which dominates here
    sigmas = jnp.ones(NUM_DRAWS, state.sigma_y.dtype)
    keys = jax.random.split(jax.random.key(0), NUM_DRAWS)
    return jax.jit(kernel).lower(keys, sigmas).compile(FAST_COMPILE)


def run_scale_update(which, prior, sigma_in, seed, num_updates=1):
    """Apply ``num_updates`` updates to one state per entry of ``sigma_in`` (independent chains)."""
    kernel = scale_kernel(which, prior)
    sigma = jnp.asarray(sigma_in)
    for key in jax.random.split(jax.random.key(seed), num_updates):
        sigma = kernel(jax.random.split(key, sigma.shape[0]), sigma)
    return np.asarray(sigma)


def ks_pvalue(draws, target: ScaleTarget) -> float:
    return float(stats.kstest(np.asarray(draws, np.float64), target.cdf).pvalue)


@pytest.mark.parametrize("prior_name", EXACT_PRIORS)
@pytest.mark.parametrize("which", ["sigma_y", "sigma_alpha"])
def test_scale_exact_draw(which, prior_name):
    """Uniform and InverseGamma: one update is an exact draw, whatever the current sigma."""
    prior = SCALE_PRIORS[prior_name]
    _, _, _, sum_sq, count = scale_setup(which, prior)
    target = ScaleTarget(scipy_log_prior(prior), sum_sq, count)
    rng = np.random.default_rng(3)
    sigma_in = np.exp(rng.uniform(-3.0, 3.0, NUM_DRAWS))  # current values spread over e^{+-3}
    out = run_scale_update(which, prior, sigma_in, seed=1)
    p = ks_pvalue(out, target)
    assert p > FAMILY_ALPHA, f"{which} | rest under {prior_name}: KS p = {p:.2e}"


NUM_CONVERGENCE_UPDATES = 20


@pytest.mark.parametrize("prior_name", KERNEL_PRIORS)
@pytest.mark.parametrize("which", ["sigma_y", "sigma_alpha"])
def test_scale_kernel_invariance_and_convergence(which, prior_name):
    """HalfNormal (Metropolis-Hastings) and half-t/Cauchy (auxiliary variable): invariant kernels that move.

    Two KS comparisons (Bonferroni over 2): one update applied to exact draws of the target
    (inverse CDF of the quadrature) must reproduce it; and :data:`NUM_CONVERGENCE_UPDATES` updates
    of chains that all start at one far-off value (the target's 1e-4 quantile divided by 3) must
    reach it, which an identity or a non-mixing kernel would not.
    """
    prior = SCALE_PRIORS[prior_name]
    _, _, _, sum_sq, count = scale_setup(which, prior)
    target = ScaleTarget(scipy_log_prior(prior), sum_sq, count)
    rng = np.random.default_rng(4)
    exact = target.ppf(rng.uniform(size=NUM_DRAWS))
    assert ks_pvalue(exact, target) > 1e-3  # the reference sampler itself
    out = run_scale_update(which, prior, exact, seed=2)
    p_invariance = ks_pvalue(out, target)
    # the half-normal update is a Metropolis-Hastings step and may reject (here, where the prior
    # and the six terms of S pull apart, about 14% of the time); an identity kernel keeps all
    assert np.mean(out == exact) < 0.3, "the kernel hardly moves"
    start = np.full(NUM_DRAWS, target.ppf(1e-4) / 3.0)
    far = run_scale_update(which, prior, start, seed=3, num_updates=NUM_CONVERGENCE_UPDATES)
    p_convergence = ks_pvalue(far, target)
    what = f"{which} under {prior_name}"
    assert p_invariance > FAMILY_ALPHA / 2, f"{what}: invariance KS p = {p_invariance:.2e}"
    assert p_convergence > FAMILY_ALPHA / 2, f"{what}: convergence KS p = {p_convergence:.2e}"


def test_scale_tests_have_power():
    """The same KS checks reject a sampler that targets a slightly wrong conditional.

    (a) exact draws under the uniform prior against the target of the ``1 / sigma`` prior: the
    ``chi2(J - 1)`` versus ``chi2(J)`` confusion, one degree of freedom; (b) one step of the
    half-normal kernel with prior scale 0.8 applied to exact draws of the scale-1 target.
    """
    which = "sigma_alpha"
    _, _, _, sum_sq, count = scale_setup(which, P.Uniform())
    wrong = ScaleTarget(lambda s: -np.log(s), sum_sq, count)
    out = run_scale_update(which, P.Uniform(), np.ones(NUM_DRAWS), seed=5)
    p_dof = ks_pvalue(out, wrong)
    assert p_dof < FAMILY_ALPHA, p_dof

    target = ScaleTarget(scipy_log_prior(P.HalfNormal(1.0)), sum_sq, count)
    exact = target.ppf(np.random.default_rng(6).uniform(size=NUM_DRAWS))
    out = run_scale_update(which, P.HalfNormal(0.8), exact, seed=6)
    p_scale = ks_pvalue(out, target)
    assert p_scale < FAMILY_ALPHA, p_scale


# ----------------------------------------------------------------------------- sums of squares
def direct_rss(state, y, X, group):
    """``sum_i (y_i - alpha_j[i] - X_i beta)^2`` over the raw observations, float64."""
    resid = np.asarray(y, np.float64).copy()
    if state.beta is not None:
        resid -= X @ np.asarray(state.beta, np.float64)
    if state.alpha is not None:
        resid -= np.asarray(state.alpha, np.float64)[group]
    return float(np.sum(resid**2))


def test_sums_of_squares_float64():
    model, (y, X, group, U) = grouped_model()
    state = grouped_state()
    rss = float(residual_sum_of_squares(state, model.data))
    np.testing.assert_allclose(rss, direct_rss(state, y, X, group), rtol=1e-12)
    ss = float(group_sum_of_squares(state, model.data))
    expected = np.sum((np.asarray(state.alpha) - U @ np.asarray(state.gamma)) ** 2)
    np.testing.assert_allclose(ss, expected, rtol=1e-12)

    no_x = mg.Model.from_arrays(y, None, group, U[:, 1:], dtype=np.float64, standardize=False)
    s = state._replace(beta=None)
    np.testing.assert_allclose(float(residual_sum_of_squares(s, no_x.data)),
                               direct_rss(s, y, X, group), rtol=1e-12)

    pooled, (yp, Xp) = pooled_model()
    s = mg.GibbsState(alpha=None, beta=jnp.asarray([0.1, 0.8, -0.2]), gamma=None,
                      sigma_y=jnp.asarray(1.0), sigma_alpha=None)
    np.testing.assert_allclose(float(residual_sum_of_squares(s, pooled.data)),
                               direct_rss(s, yp, Xp, None), rtol=1e-12)


def badly_centred_arrays(seed: int = 21):
    """``y ~ 1e4 + O(1)``, ``X = 1e3 + O(1)``: float32 keeps only ~3 digits of the residuals' scale."""
    rng = np.random.default_rng(seed)
    J, per = 8, 25
    group = np.repeat(np.arange(J), per)
    n = group.size
    Xc = rng.normal(size=(n, 2))
    X = 1e3 + Xc
    a = rng.normal(size=J)
    beta = np.array([0.5, -0.3])
    y = 1e4 + a[group] + Xc @ beta + rng.normal(size=n)
    alpha = 1e4 + a - 1e3 * beta.sum()  # the model's intercepts: y = alpha_j + X beta + e
    return y, X, group, alpha, beta


def float32_rss_bound(state32, ybar, xbar, counts, rss_within, mean_error_ulps):
    """First-order bound on the float32 rounding error of the sufficient-statistic RSS.

    With ``u = 2^-24`` (the unit roundoff), each group's between residual
    ``r_j = ybar_j - alpha_j - xbar_j beta`` is formed from float32 numbers of sizes ``|ybar_j|``,
    ``|alpha_j|``, ``|xbar_j||beta|``: the stored means carry ``mean_error_ulps`` roundings (1 when
    computed in float64 and rounded once; ``n_j``, the worst case of a sequential float32 sum of the
    group's ``n_j`` rows, when accumulated in float32), and the subtractions and the product a few
    more. With ``delta_j`` that error, ``n_j r_j^2`` is off by at most
    ``2 n_j |r_j| delta_j + n_j delta_j^2`` (the second term also covers a group mean used for
    centring being off by ``delta_j``); the within part, a sum of non-negative terms, is accurate to
    a relative ``(n + 10) u``.
    """
    u = 2.0**-24
    alpha = np.asarray(state32.alpha, np.float64)
    beta = np.asarray(state32.beta, np.float64)
    fixed = np.abs(xbar) @ np.abs(beta)
    r = np.abs(ybar - alpha - xbar @ beta)
    delta = u * (mean_error_ulps * (np.abs(ybar) + fixed) + np.abs(alpha) + 3 * fixed + r)
    n = counts.sum()
    return float(np.sum(counts * (2 * r * delta + delta**2)) + (n + 10) * u * rss_within)


@pytest.mark.parametrize("path", ["model", "sufficient_statistics"])
def test_rss_float32_badly_centred(path):
    """The float32 RSS from the sufficient statistics matches the float64 direct sum.

    ``model``: statistics computed in float64 by the Model front end and rounded to float32;
    ``sufficient_statistics``: the pure-JAX function run in float32 (as Geweke/SBC tests use it).
    The reference is the float64 direct sum at the float32 state over the data the statistics saw.
    """
    with jax.enable_x64(False):  # as a float32 user runs it
        check_rss_float32(path)


def check_rss_float32(path):
    y, X, group, alpha, beta = badly_centred_arrays()
    J = alpha.size
    # a state near the fit, residuals O(1): beta moved by 0.02 (X beta moves by ~40, so alpha
    # compensates), alpha moved by up to 1
    step = np.array([0.02, -0.01])
    state64 = mg.GibbsState(alpha=alpha - 1e3 * step.sum() + np.linspace(-1.0, 1.0, J),
                            beta=beta + step, gamma=None, sigma_y=1.0, sigma_alpha=1.0)
    state32 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), state64)
    if path == "model":
        model = mg.Model.from_arrays(y, X, group, None, dtype=np.float32, standardize=False)
        data = model.data
        y_ref, X_ref = y, X
    else:
        y32, X32 = np.float32(y), np.float32(X)
        data = mg.sufficient_statistics(jnp.asarray(y32), jnp.asarray(X32), jnp.asarray(group),
                                        jnp.ones((J, 1), jnp.float32), J)
        y_ref, X_ref = y32.astype(np.float64), X32.astype(np.float64)
    assert data.rss_within.dtype == jnp.float32
    rss32 = jax.jit(residual_sum_of_squares)(state32, data)
    assert rss32.dtype == jnp.float32
    rss32 = float(rss32)
    reference = direct_rss(state32, y_ref, X_ref, group)
    counts = np.bincount(group).astype(np.float64)
    ybar = np.bincount(group, y_ref) / counts
    xbar = np.stack([np.bincount(group, X_ref[:, k]) / counts for k in range(2)], axis=1)
    rss_within = float(np.sum((y_ref - ybar[group] - (X_ref - xbar[group]) @ np.linalg.lstsq(
        X_ref - xbar[group], y_ref - ybar[group], rcond=None)[0]) ** 2))
    ulps = 1.0 if path == "model" else counts
    bound = float32_rss_bound(state32, ybar, xbar, counts, rss_within, ulps)
    assert bound < 0.02 * reference  # the bound itself is tight enough to mean something
    assert abs(rss32 - reference) <= bound, (rss32, reference, bound)

    # power: the one-pass formula y'y - 2 b'Z'y + b'Z'Z b in float32 misses by far more
    Z = np.column_stack([np.eye(J)[group], X_ref]).astype(np.float32)
    b = np.concatenate([np.asarray(state32.alpha), np.asarray(state32.beta)]).astype(np.float32)
    y32 = y_ref.astype(np.float32)
    one_pass = float(y32 @ y32 - 2 * b @ (Z.T @ y32) + b @ (Z.T @ Z) @ b)
    assert abs(one_pass - reference) > 10 * bound

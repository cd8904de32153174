"""Covariance-matrix priors and their conditional draws, against closed forms and SciPy.

What is tested
--------------
* :func:`~mlgibbs.conditionals.covariance.inverse_wishart`: for ``d = 3, df = 20`` and a dense
  ``Psi``, the mean ``Psi / (df - d - 1)`` and the elementwise variances
  ``[(df-d+1) Psi_ij^2 + (df-d-1) Psi_ii Psi_jj] / [(df-d)(df-d-1)^2(df-d-3)]`` (z-tests), the
  marginal of every variance, ``Sigma_kk ~ InvGamma((df-d+1)/2, Psi_kk/2)`` (KS test), and the
  correlations and ``log|Sigma|`` against draws of :func:`scipy.stats.invwishart` (two-sample KS).
  The KS checks also run at a non-integer ``df`` just above ``d - 1`` (``chi2`` variates of
  ``df < 1``, heavy tails; float32 and float64) and for ``d = 4`` (float64). The factors returned with a
  draw (``cholesky``, ``precision``, ``log_det``) agree with the matrix to rounding.
* Power: draws of ``IW(df + 1, Psi)`` (the degrees of freedom off by one) fail the same moment/KS
  checks.
* Log densities: :meth:`InverseWishart.log_prob` equals :func:`scipy.stats.invwishart.logpdf`;
  :meth:`HuangWand.log_prob` equals, at ``d = 1``, the half-t density of ``sigma`` (with the
  Jacobian ``1 / 2 sigma``), and at ``d = 2`` the mixture over the auxiliaries integrated by
  quadrature (it factorises over ``k``), so it is normalised. Under :func:`rescale_covariance_prior`
  both densities change by the Jacobian ``|D|^{d+1}`` of ``Sigma -> D^{-1} Sigma D^{-1}``.
* Conjugacy, Geweke style: ``Sigma ~ prior``, ``b_g ~ N(0, Sigma)`` for ``J`` groups, then one
  :func:`draw_covariance` step given their scatter matrix must return draws of the prior again. The
  output is compared with an *independent* set of prior draws (two-sample KS, so the two samples are
  independent) on ``log Sigma_kk`` and every correlation, for the inverse-Wishart and the Huang-Wand
  prior (whose prior draws are built here: ``a_k`` from NumPy, ``Sigma | a`` inverse-Wishart). The
  same test rejects a step with the degrees of freedom off by one (``count = J + 1``) and a step
  with the scatter matrix added twice.
* Huang-Wand prior: :func:`draw_covariance` with no data (``count = 0``, ``S = 0``) iterated over
  chains (``vmap``, ``lax.fori_loop``) keeps ``sqrt(Sigma_kk) ~ t+(nu, A_k)`` and, at ``nu = 2``, each
  correlation ``~ U(-1, 1)`` (KS), for ``d = 2`` and ``d = 3``: from exact prior draws (invariance)
  and, for ``d = 2``, from one far-off start, ``Sigma = 100 I`` (convergence, which an identity
  kernel would fail; ``-m slow``: ``d = 3, 4``). A chain told of one zero deviation (``count = 1``)
  is rejected by the same check, and (``-m slow``) so is a kernel that draws the auxiliaries with
  the scalar half-t shape ``(nu + 1)/2`` instead of ``(nu + d)/2``.
* The inverse-Wishart step given fixed data is exactly ``IW(nu + J, Psi + S)`` whatever the current
  ``Sigma`` (the KS checks above).
* Transformations: float32 in, float32 out (x64 off) and float64 likewise, for every returned
  field; ``jit`` equals eager; ``vmap`` over chains equals a loop of single chains with the same
  keys; ``count`` may be traced.
* :func:`check_covariance_prior` and :func:`check_prior` refuse improper or ill-fitting priors with
  an error naming the block; :func:`rescale_covariance_prior` maps the parameters as documented.

Tolerances
----------
Draws of one call are independent, so the KS statistics have their exact null laws and the
z-scores are standardised by exact standard errors: for means the closed-form variance, for
variances ``sqrt((m4 - s^4) / N)`` with the sample fourth central moment (finite here: the
inverse-gamma marginals have shape ``(df - d + 1)/2 = 9 > 4``, so the eighth moment exists as
well). Each test makes ``k`` comparisons and rejects at family-wise level :data:`FAMILY_ALPHA`
with a Bonferroni correction (KS p-values below ``FAMILY_ALPHA / k``; two-sided z threshold
``Phi^{-1}(1 - FAMILY_ALPHA / 2k)``). Seeds are fixed for reproducibility; thresholds do not depend
on them. The power checks are far beyond their thresholds (reported in the assertions).
"""

from __future__ import annotations

import contextlib
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from mlgibbs import priors as P
from mlgibbs import random as mr
from mlgibbs.conditionals import covariance as C

NUM_DRAWS = 20_000
FAMILY_ALPHA = 1e-4
DTYPES = ("float32", "float64")

PSI3 = np.array([[2.0, 0.6, -0.4],
                 [0.6, 1.0, 0.3],
                 [-0.4, 0.3, 1.5]])


def x64(enabled: bool = True):
    """``jax.enable_x64`` (or the older experimental context)."""
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(enabled)
    from jax.experimental import disable_x64, enable_x64

    return enable_x64() if enabled else disable_x64()


def dtype_context(dtype: str):
    """x64 on for float64, off (JAX's default) for float32."""
    return x64(dtype == "float64")


def z_crit(num_comparisons: int) -> float:
    return float(stats.norm.isf(FAMILY_ALPHA / (2 * num_comparisons)))


def keys(seed: int, num: int = NUM_DRAWS):
    return jax.random.split(jax.random.key(seed), num)


# ----------------------------------------------------------------------------- samplers under test
# Compilation dominates on CPU (one to two seconds per program, against tens of milliseconds of
# sampling), so the statistical tests share few programs: every batch has NUM_DRAWS lanes and every
# argument is batched, so an inverse-Wishart program depends on (d, dtype) only, and one chain
# program per (prior, d) serves the single conditional steps, the Geweke steps and the prior chains
# (the number of steps is traced). XLA's lowest backend optimisation level would compile faster but
# runs these loops three times slower; mlgibbs's persistent compilation cache makes reruns fast.
_iw_batch = jax.jit(jax.vmap(C.inverse_wishart_factors))


def inverse_wishart_draws(seed: int, df, psi, num: int = NUM_DRAWS) -> C.Covariance:
    """``num`` draws of ``IW(df, psi)``; ``df`` a scalar or one per draw, ``psi`` one or one per draw."""
    psi = jnp.asarray(psi)
    dfs = jnp.broadcast_to(jnp.asarray(df, psi.dtype), (num,))
    return _iw_batch(keys(seed, num), dfs, jnp.broadcast_to(psi, (num, *psi.shape[-2:])))


def wrong_huang_wand_step(rng_key, prior, scatter, count, covariance):
    """The auxiliaries drawn with the scalar half-t shape ``(nu + 1)/2`` instead of ``(nu + d)/2``."""
    d = scatter.shape[0]
    nu = prior.df
    key_aux, key_cov = jax.random.split(rng_key)
    rate = nu * jnp.diagonal(jnp.linalg.inv(covariance)) + jnp.asarray(1.0 / prior.scales(d) ** 2)
    gammas = jax.vmap(mr.gamma, (0, None, None))(jax.random.split(key_aux, d), 0.5 * (nu + 1.0), scatter.dtype)
    psi = jnp.diag(2.0 * nu * gammas / rate) + scatter
    return C.inverse_wishart(key_cov, nu + d - 1.0 + count, psi)


@functools.lru_cache(maxsize=None)
def chain_program(prior_name: str, d: int, wrong: bool = False):
    """``(keys, starts, scatters, counts, num_steps) -> last states``: ``num_steps`` draw_covariance
    steps per chain, each given that chain's scatter matrix and count (``vmap``-ed, jitted)."""
    prior = PRIORS[prior_name](d)
    step = wrong_huang_wand_step if wrong else C.draw_covariance

    def chain(rng_key, start, scatter, count, num_steps):
        def one(i, sigma):
            return step(jax.random.fold_in(rng_key, i), prior, scatter, count, sigma)

        return jax.lax.fori_loop(0, num_steps, one, start)

    return jax.jit(jax.vmap(chain, (0, 0, 0, 0, None)))


def run_chains(prior_name: str, seed: int, starts, scatter=0.0, count=0.0, num_steps: int = 1,
               wrong: bool = False) -> np.ndarray:
    """Chains from ``starts`` (``(num, d, d)``), float64; ``scatter`` and ``count`` broadcast per chain."""
    with x64():
        starts = jnp.asarray(starts, jnp.float64)
        num, d, _ = starts.shape
        scatters = jnp.broadcast_to(jnp.asarray(scatter, jnp.float64), starts.shape)
        counts = jnp.broadcast_to(jnp.asarray(count, jnp.float64), (num,))
        out = chain_program(prior_name, d, wrong)(keys(seed, num), starts, scatters, counts,
                                                  jnp.asarray(num_steps, jnp.int32))
        return np.asarray(out)


PRIORS = {
    "InverseWishart": lambda d: P.InverseWishart(d + 3.5, PSI3[:d, :d]),
    "HuangWand": lambda d: P.HuangWand(2.0, np.array([1.0, 2.5, 0.5])[:d]),
    "HuangWand3": lambda d: P.HuangWand(3.0, 1.5),
    "HuangWandWide": lambda d: P.HuangWand(2.0, np.linspace(0.5, 2.5, d)),
}


# ----------------------------------------------------------------------------- functionals
def correlations(sigma: np.ndarray) -> dict[str, np.ndarray]:
    d = sigma.shape[-1]
    sd = np.sqrt(np.diagonal(sigma, axis1=-2, axis2=-1))
    return {f"corr[{i},{j}]": sigma[:, i, j] / (sd[:, i] * sd[:, j]) for i in range(d) for j in range(i + 1, d)}


def functionals(sigma: np.ndarray) -> dict[str, np.ndarray]:
    """``log Sigma_kk`` and every correlation: the statistics the Geweke-style test compares."""
    sigma = np.asarray(sigma, np.float64)
    out = {f"log Sigma[{k},{k}]": np.log(sigma[:, k, k]) for k in range(sigma.shape[-1])}
    out.update(correlations(sigma))
    return out


# ----------------------------------------------------------------------------- inverse-Wishart draws
def iw_failures(draws, df: float, psi: np.ndarray, reference, moments: bool) -> list[str]:
    """The checks of IW(df, psi) draws that fail at family-wise level FAMILY_ALPHA (empty: all pass).

    ``reference``: independent SciPy draws of the same law for the two-sample KS tests.
    """
    draws = np.asarray(draws, np.float64)
    num, d, _ = draws.shape
    iu = np.triu_indices(d)
    checks: list[tuple[str, str, float]] = []  # (name, "z" or "p", value)
    if moments:
        nu = df - d
        mean = psi / (nu - 1)
        var = ((nu + 1) * psi**2 + (nu - 1) * np.outer(np.diag(psi), np.diag(psi))) / (nu * (nu - 1) ** 2 * (nu - 3))
        entries = draws[:, iu[0], iu[1]]
        z_mean = (entries.mean(0) - mean[iu]) / np.sqrt(var[iu] / num)
        centred = entries - entries.mean(0)
        s2 = np.mean(centred**2, 0)
        m4 = np.mean(centred**4, 0)
        z_var = (s2 - var[iu]) / np.sqrt((m4 - s2**2) / num)
        checks += [(f"mean[{i},{j}]", "z", z) for i, j, z in zip(*iu, z_mean)]
        checks += [(f"var[{i},{j}]", "z", z) for i, j, z in zip(*iu, z_var)]
    for k in range(d):
        marginal = stats.invgamma((df - d + 1) / 2, scale=psi[k, k] / 2)
        checks.append((f"KS Sigma[{k},{k}]", "p", stats.kstest(draws[:, k, k], marginal.cdf).pvalue))
    ours, theirs = correlations(draws), correlations(reference)
    ours["log det"] = np.linalg.slogdet(draws)[1]
    theirs["log det"] = np.linalg.slogdet(reference)[1]
    for name in ours:
        checks.append((f"KS2 {name}", "p", stats.ks_2samp(ours[name], theirs[name]).pvalue))
    k = len(checks)
    crit = z_crit(k)
    failures = []
    for name, kind, value in checks:
        if (kind == "z" and abs(value) > crit) or (kind == "p" and value < FAMILY_ALPHA / k):
            failures.append(f"{name}: {kind} = {value:.3g}")
    return failures


def scipy_iw(df, psi, num=NUM_DRAWS, seed=0):
    return stats.invwishart(df, psi).rvs(num, random_state=np.random.default_rng(seed)).reshape(num, *psi.shape)


def test_inverse_wishart_moments_and_marginals():
    df, psi = 20.0, PSI3
    with x64():
        draws = inverse_wishart_draws(1, df, psi).matrix
    failures = iw_failures(draws, df, psi, scipy_iw(df, psi, seed=1), moments=True)
    assert not failures, f"IW({df}, Psi) draws: {failures}"


def test_inverse_wishart_check_has_power():
    """Draws with the degrees of freedom off by one fail the checks (mean off by 1/16 of itself)."""
    df, psi = 20.0, PSI3
    with x64():
        wrong = inverse_wishart_draws(2, df + 1.0, psi).matrix
    failures = iw_failures(wrong, df, psi, scipy_iw(df, psi, seed=2), moments=True)
    assert any(f.startswith("mean") for f in failures), failures


@pytest.mark.parametrize("d, df, dtype", [(2, 1.6, "float32"), (2, 1.6, "float64"), (4, 7.3, "float64")])
def test_inverse_wishart_marginals(d, df, dtype):
    """KS of every variance against its inverse gamma, and two-sample KS against SciPy's draws."""
    rng = np.random.default_rng(d)
    root = rng.normal(size=(d, d))
    psi = root @ root.T + 0.5 * np.eye(d)
    with dtype_context(dtype):
        draws = inverse_wishart_draws(3, df, jnp.asarray(psi, dtype))
    assert all(field.dtype == jnp.dtype(dtype) for field in draws)
    sigma = np.asarray(draws.matrix, np.float64)
    assert np.all(np.isfinite(sigma))
    failures = iw_failures(sigma, df, psi, scipy_iw(df, psi, seed=3), moments=False)
    assert not failures, f"IW({df}, Psi), d = {d}, {dtype}: {failures}"


@pytest.mark.parametrize("dtype", DTYPES)
def test_inverse_wishart_factors_agree(dtype):
    """cholesky, precision and log_det of a draw agree with its matrix; covariance_factors likewise."""
    tol = {"float32": 1e-5, "float64": 1e-13}[dtype]
    d = 2
    with dtype_context(dtype):
        out = inverse_wishart_draws(4, 6.0, jnp.asarray(PSI3[:d, :d], dtype))
    sigma, chol, prec, log_det = (np.asarray(f, np.float64) for f in out)
    assert np.array_equal(sigma, np.swapaxes(sigma, 1, 2)) and np.array_equal(prec, np.swapaxes(prec, 1, 2))
    assert np.all(np.triu(chol, 1) == 0) and np.all(np.diagonal(chol, axis1=1, axis2=2) > 0)
    # relative to the scale of each draw: the entries span many orders of magnitude
    size = np.abs(sigma).max(axis=(1, 2), keepdims=True)
    assert np.all(np.abs(chol @ np.swapaxes(chol, 1, 2) - sigma) <= 10 * tol * size)
    condition = np.linalg.cond(sigma)[:, None, None]
    assert np.all(np.abs(prec @ sigma - np.eye(d)) <= 10 * tol * condition)
    np.testing.assert_allclose(log_det, np.linalg.slogdet(sigma)[1], atol=10 * tol * d)
    # covariance_factors of a given matrix: the same factors
    with dtype_context(dtype):
        again = jax.jit(jax.vmap(C.covariance_factors))(jnp.asarray(sigma[:50], dtype))
    assert all(field.dtype == jnp.dtype(dtype) for field in again)
    np.testing.assert_allclose(np.asarray(again.cholesky, np.float64), chol[:50],
                               rtol=10 * tol * condition.max(), atol=0)
    np.testing.assert_allclose(np.asarray(again.log_det, np.float64), log_det[:50], atol=10 * tol * d)
    np.testing.assert_allclose(np.asarray(again.precision, np.float64), prec[:50],
                               rtol=10 * tol * condition.max(), atol=0)


def test_inverse_wishart_rejects_non_square():
    with pytest.raises(ValueError, match="square"):
        C.inverse_wishart(jax.random.key(0), 5.0, jnp.ones(3))
    with pytest.raises(ValueError, match="square"):
        C.draw_covariance(jax.random.key(0), P.InverseWishart(5.0), jnp.ones((2, 3)), 3, jnp.eye(2))
    with pytest.raises(TypeError, match="covariance prior"):
        C.draw_covariance(jax.random.key(0), P.HalfCauchy(1.0), jnp.eye(2), 3, jnp.eye(2))


# ----------------------------------------------------------------------------- log densities
def test_inverse_wishart_log_prob_matches_scipy():
    rng = np.random.default_rng(5)
    prior = P.InverseWishart(6.5, PSI3)
    sigmas = scipy_iw(8.0, PSI3, num=5, seed=5)
    with x64():
        ours = np.asarray(prior.log_prob(jnp.asarray(sigmas)))
        one = float(prior.log_prob(jnp.asarray(sigmas[0])))
    np.testing.assert_allclose(ours, stats.invwishart(6.5, PSI3).logpdf(np.moveaxis(sigmas, 0, -1)), rtol=1e-10)
    assert one == pytest.approx(ours[0], rel=1e-12)
    # scalar and vector scales are the matrices they stand for
    diag = rng.uniform(0.5, 2.0, 3)
    with x64():
        assert float(P.InverseWishart(6.5, diag).log_prob(sigmas[1])) == pytest.approx(
            stats.invwishart(6.5, np.diag(diag)).logpdf(sigmas[1]), rel=1e-10)
        assert float(P.InverseWishart(6.5, 2.0).log_prob(sigmas[2])) == pytest.approx(
            stats.invwishart(6.5, 2.0 * np.eye(3)).logpdf(sigmas[2]), rel=1e-10)


def test_huang_wand_log_prob_one_dimension_is_half_t():
    """d = 1: Sigma = sigma^2 with sigma ~ t+(nu, A), so p(Sigma) = p_t+(sigma) / (2 sigma)."""
    sigma = np.array([0.05, 0.7, 1.0, 3.2, 40.0])
    for nu, a in [(2.0, 1.0), (3.0, 2.5), (1.0, 0.3)]:
        with x64():
            ours = np.asarray(P.HuangWand(nu, a).log_prob(jnp.asarray(sigma**2)[:, None, None]))
            half_t = np.asarray(P.HalfStudentT(nu, a).log_prob(jnp.asarray(sigma)))
        np.testing.assert_allclose(ours, half_t - np.log(2 * sigma), rtol=1e-10, atol=1e-12)


def test_huang_wand_log_prob_is_the_mixture():
    """d = 2: ``int IW(Sigma; nu + 1, 2 nu diag(1/a)) prod_k InvGamma(a_k; 1/2, 1/A_k^2) da`` by quadrature.

    The integrand is ``|Sigma|^{-(nu + 2d)/2} / (2^{md/2} Gamma_d(m/2))`` times a product over ``k``
    of ``(2 nu / a_k)^{m/2} exp(-nu s_k / a_k) InvGamma(a_k)``, ``s = diag(Sigma^{-1})``.
    """
    nu, scales = 2.0, np.array([0.8, 2.0])
    d, m = 2, nu + 1.0
    sigma = np.array([[1.3, -0.5], [-0.5, 0.9]])
    s = np.diag(np.linalg.inv(sigma))
    log_factor = 0.0
    for k in range(d):
        prior_a = stats.invgamma(0.5, scale=1.0 / scales[k] ** 2)

        def integrand(log_a, k=k, prior_a=prior_a):
            a = np.exp(log_a)
            return np.exp(0.5 * m * np.log(2 * nu / a) - nu * s[k] / a + prior_a.logpdf(a) + log_a)

        value, _ = integrate.quad(integrand, -40.0, 40.0, limit=500, epsabs=0.0, epsrel=1e-11)
        log_factor += np.log(value)
    from scipy.special import multigammaln

    expected = (log_factor - 0.5 * (nu + 2 * d) * np.linalg.slogdet(sigma)[1]
                - 0.5 * m * d * np.log(2.0) - multigammaln(0.5 * m, d))
    with x64():
        ours = float(P.HuangWand(nu, scales).log_prob(jnp.asarray(sigma)))
    assert ours == pytest.approx(expected, rel=1e-8)


@pytest.mark.parametrize("prior", [
    P.InverseWishart(5.5, PSI3), P.InverseWishart(4.0, [1.0, 0.5, 2.0]), P.InverseWishart(4.0, 2.0),
    P.HuangWand(2.0, [1.0, 0.5, 2.0]), P.HuangWand(3.0, 1.5)], ids=lambda p: f"{type(p).__name__}")
def test_rescale_covariance_prior_is_the_change_of_variables(prior):
    """``p'(Sigma') = p(D Sigma' D) |D|^{d+1}`` for ``Sigma' = D^{-1} Sigma D^{-1}``."""
    factors = np.array([0.5, 3.0, 1.7])
    rescaled = P.rescale_covariance_prior(prior, factors)
    assert type(rescaled) is type(prior) and rescaled.df == prior.df
    sigmas = scipy_iw(7.0, PSI3, num=4, seed=6)
    with x64():
        new = np.asarray(rescaled.log_prob(jnp.asarray(sigmas)))
        old = np.asarray(prior.log_prob(jnp.asarray(sigmas * np.outer(factors, factors))))
    np.testing.assert_allclose(new, old + 4 * np.sum(np.log(factors)), rtol=1e-10)
    assert P.rescale_covariance_prior(prior, np.ones(3)) is prior


def test_rescale_covariance_prior_parameters():
    f = np.array([2.0, 0.5])
    iw = P.rescale_covariance_prior(P.InverseWishart(4.0, np.array([[4.0, 1.0], [1.0, 1.0]])), f)
    np.testing.assert_allclose(iw.scale, [[1.0, 1.0], [1.0, 4.0]])
    np.testing.assert_allclose(P.rescale_covariance_prior(P.InverseWishart(4.0, 4.0), f).scale, [1.0, 16.0])
    np.testing.assert_allclose(P.rescale_covariance_prior(P.HuangWand(2.0, 1.0), f).scale, [0.5, 2.0])
    for bad in ([1.0, 0.0], [1.0, np.inf], [[1.0]]):
        with pytest.raises(ValueError):
            P.rescale_covariance_prior(P.HuangWand(), np.array(bad))
    with pytest.raises(TypeError):
        P.rescale_covariance_prior(P.HalfCauchy(1.0), f)


def test_scale_matrix_and_scales():
    np.testing.assert_array_equal(P.InverseWishart(3.0).scale_matrix(2), np.eye(2))
    np.testing.assert_array_equal(P.InverseWishart(3.0, [1.0, 2.0]).scale_matrix(2), np.diag([1.0, 2.0]))
    np.testing.assert_array_equal(P.InverseWishart(3.0, PSI3).scale_matrix(3), PSI3)
    np.testing.assert_array_equal(P.HuangWand(2.0, 2.5).scales(3), [2.5, 2.5, 2.5])
    with pytest.raises(ValueError, match="length"):
        P.InverseWishart(3.0, [1.0, 2.0]).scale_matrix(3)
    with pytest.raises(ValueError, match="length"):
        P.HuangWand(2.0, [1.0, 2.0]).scales(3)


# ----------------------------------------------------------------------------- conjugacy (Geweke)
NUM_GROUPS = 4


def prior_draws(prior_name: str, d: int, num: int, seed: int) -> np.ndarray:
    """Exact prior draws; for Huang-Wand through its hierarchy (``a_k`` from NumPy, ``Sigma | a`` IW)."""
    prior = PRIORS[prior_name](d)
    with x64():
        if isinstance(prior, P.InverseWishart):
            return np.asarray(inverse_wishart_draws(seed, prior.df, prior.scale_matrix(d), num).matrix)
        rng = np.random.default_rng(seed)
        aux = (1.0 / prior.scales(d) ** 2) / rng.gamma(0.5, size=(num, d))  # InvGamma(1/2, 1/A^2)
        psi = 2.0 * prior.df * np.eye(d) / aux[:, None, :]
        return np.asarray(inverse_wishart_draws(seed + 1000, prior.df + d - 1.0, psi, num).matrix)


def geweke_pvalues(prior_name: str, d: int, seed: int, count_offset: int = 0, scatter_times: float = 1.0):
    """Two-sample KS p-values of one conditional step from the joint against independent prior draws."""
    sigma = prior_draws(prior_name, d, NUM_DRAWS, seed)
    rng = np.random.default_rng(seed + 1)
    chol = np.linalg.cholesky(sigma)
    b = np.einsum("nij,ngj->ngi", chol, rng.normal(size=(NUM_DRAWS, NUM_GROUPS, d)))  # b_g ~ N(0, Sigma)
    scatter = np.einsum("ngi,ngj->nij", b, b)
    out = run_chains(prior_name, seed + 2, sigma, scatter_times * scatter, NUM_GROUPS + count_offset)
    assert np.all(np.isfinite(out))
    reference = functionals(prior_draws(prior_name, d, NUM_DRAWS, seed + 3))
    after = functionals(out)
    return {name: stats.ks_2samp(after[name], reference[name]).pvalue for name in after}


@pytest.mark.parametrize("prior_name, d", [("InverseWishart", 3), ("HuangWand", 3), ("HuangWand3", 2)])
def test_conjugate_step_leaves_prior_invariant(prior_name, d):
    p = geweke_pvalues(prior_name, d, seed=10)
    assert min(p.values()) > FAMILY_ALPHA / len(p), f"{prior_name}, d = {d}: {p}"


@pytest.mark.parametrize("prior_name, wrong", [("InverseWishart", "count"), ("HuangWand", "scatter")])
def test_conjugate_step_check_has_power(prior_name, wrong):
    """df off by one (``count = J + 1``), or the scatter matrix added twice: rejected."""
    if wrong == "count":
        p = geweke_pvalues(prior_name, 3, seed=20, count_offset=1)
    else:
        p = geweke_pvalues(prior_name, 3, seed=20, scatter_times=2.0)
    assert min(p.values()) < FAMILY_ALPHA / len(p) / 100, f"{prior_name} with a wrong {wrong}: {p}"


def test_inverse_wishart_step_is_the_posterior():
    """Fixed data: every draw of the step is ``IW(nu + J, Psi + S)``, whatever the current Sigma."""
    d = 3
    prior = PRIORS["InverseWishart"](d)
    b = np.random.default_rng(21).normal(size=(NUM_GROUPS, d)) * np.array([0.5, 2.0, 1.0])
    scatter = b.T @ b
    current = prior_draws("InverseWishart", d, NUM_DRAWS, seed=22)  # arbitrary current states
    out = run_chains("InverseWishart", 23, current, scatter, NUM_GROUPS)
    df, psi = prior.df + NUM_GROUPS, prior.scale_matrix(d) + scatter
    failures = iw_failures(out, df, psi, scipy_iw(df, psi, seed=23), moments=False)
    assert not failures, failures


# ----------------------------------------------------------------------------- Huang-Wand prior chains
def huang_wand_prior_pvalues(sigma: np.ndarray, prior: P.HuangWand) -> dict[str, float]:
    """KS p-values: ``sqrt(Sigma_kk) ~ t+(nu, A_k)``, correlations ``~ U(-1, 1)`` (``nu = 2``)."""
    sigma = np.asarray(sigma, np.float64)
    d = sigma.shape[-1]
    out = {}
    for k, a in enumerate(prior.scales(d)):
        half_t = lambda x, a=a: 2.0 * stats.t(prior.df, scale=a).cdf(x) - 1.0  # noqa: E731
        out[f"sd[{k}]"] = stats.kstest(np.sqrt(sigma[:, k, k]), half_t).pvalue
    for name, corr in correlations(sigma).items():
        out[name] = stats.kstest(corr, stats.uniform(-1.0, 2.0).cdf).pvalue
    return out


NUM_CHAINS = NUM_DRAWS
PRIOR_STEPS = 5
FAR_STEPS = 60  # from Sigma = 100 I (sd 10 against A_k of 0.5 to 2.5) the half-t tails take ~40 steps


@pytest.mark.parametrize("d", [2, 3])
def test_huang_wand_prior_chain_keeps_the_prior(d):
    """No data: from exact prior draws the chain stays at the prior (half-t sds, uniform correlations)."""
    prior = PRIORS["HuangWand"](d)
    assert prior.df == 2.0
    starts = prior_draws("HuangWand", d, NUM_CHAINS, seed=30 + d)
    last = run_chains("HuangWand", 40 + d, starts, num_steps=PRIOR_STEPS)
    p = huang_wand_prior_pvalues(last, prior)
    assert min(p.values()) > FAMILY_ALPHA / len(p), f"d = {d}: {p}"


def test_huang_wand_prior_chain_reaches_the_prior():
    """No data, every chain from ``Sigma = 100 I``: at the prior after FAR_STEPS (an identity fails)."""
    d = 2
    starts = np.broadcast_to(100.0 * np.eye(d), (NUM_CHAINS, d, d))
    last = run_chains("HuangWand", 45, starts, num_steps=FAR_STEPS)
    p = huang_wand_prior_pvalues(last, PRIORS["HuangWand"](d))
    assert min(p.values()) > FAMILY_ALPHA / len(p), f"d = {d}, from 100 I: {p}"


def test_huang_wand_prior_chain_check_has_power():
    """A chain told of one deviation of zero (``count = 1``, ``S = 0``) is rejected by the same check."""
    d = 3
    starts = prior_draws("HuangWand", d, NUM_CHAINS, seed=50)
    last = run_chains("HuangWand", 51, starts, count=1.0, num_steps=PRIOR_STEPS)
    p = huang_wand_prior_pvalues(last, PRIORS["HuangWand"](d))
    assert min(p.values()) < FAMILY_ALPHA / len(p) / 100, f"count = 1: {p}"


@pytest.mark.slow
def test_huang_wand_prior_chain_check_rejects_wrong_auxiliary_shape():
    """Auxiliaries drawn with the scalar half-t shape ``(nu + 1)/2``: rejected (a subtler error)."""
    d = 3
    starts = prior_draws("HuangWand", d, NUM_CHAINS, seed=52)
    last = run_chains("HuangWand", 53, starts, num_steps=PRIOR_STEPS, wrong=True)
    p = huang_wand_prior_pvalues(last, PRIORS["HuangWand"](d))
    assert min(p.values()) < FAMILY_ALPHA / len(p) / 100, f"wrong auxiliary shape: {p}"


@pytest.mark.slow
@pytest.mark.parametrize("d", [3, 4])
def test_huang_wand_prior_chain_slow(d):
    """The far-off start for larger ``d``, twice the chains, a hundred steps (about a minute)."""
    starts = np.broadcast_to(100.0 * np.eye(d), (2 * NUM_CHAINS, d, d))
    last = run_chains("HuangWandWide", 60 + d, starts, num_steps=100)
    p = huang_wand_prior_pvalues(last, PRIORS["HuangWandWide"](d))
    assert min(p.values()) > FAMILY_ALPHA / len(p), f"d = {d}: {p}"


# ----------------------------------------------------------------------------- transformations
TRANSFORM_PRIORS = (P.InverseWishart(4.5, PSI3[:2, :2]), P.HuangWand(2.0, [1.0, 2.5]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_dtype_jit_and_vmap(dtype):
    """float32 (x64 off) and float64 in and out, every field; ``jit(vmap)`` over chains, with a traced
    ``count``, equals a loop of eager single chains with the same keys; under both priors."""
    rtol = {"float32": 2e-5, "float64": 1e-12}[dtype]
    b = np.random.default_rng(7).normal(size=(5, 2))
    with dtype_context(dtype):
        scatter = jnp.asarray(b.T @ b, dtype)

        def step(k, cov, c):
            return tuple(C.draw_covariance_factors(k, prior, scatter, c, cov) for prior in TRANSFORM_PRIORS)

        chain_keys = keys(9, 3)
        covariances = jnp.stack([jnp.asarray([[1.5, 0.3], [0.3, 0.8]], dtype) * (1.0 + i) for i in range(3)])
        batched = jax.jit(jax.vmap(step, (0, 0, None)))(chain_keys, covariances, jnp.asarray(5.0, dtype))
        for i in range(3):
            single = step(chain_keys[i], covariances[i], 5)  # eager, Python int count
            for prior, out_batched, out_single in zip(TRANSFORM_PRIORS, batched, single):
                assert out_batched.matrix.shape == (3, 2, 2) and out_batched.log_det.shape == (3,)
                for field_batched, field_single in zip(out_batched, out_single):
                    assert field_batched.dtype == field_single.dtype == jnp.dtype(dtype)
                    np.testing.assert_allclose(np.asarray(field_batched[i]), np.asarray(field_single),
                                               rtol=rtol, atol=rtol, err_msg=f"{prior}, chain {i}")
                assert np.all(np.isfinite(np.asarray(out_batched.matrix)))
        plain = C.draw_covariance(chain_keys[2], TRANSFORM_PRIORS[1], scatter, 5, covariances[2])
        np.testing.assert_array_equal(np.asarray(plain), np.asarray(single[1].matrix))


@pytest.mark.parametrize("dtype", DTYPES)
def test_inverse_wishart_dtype_follows_scale(dtype):
    with dtype_context(dtype):
        psi = jnp.asarray(PSI3[:2, :2], dtype)  # the shapes of test_dtype_jit_and_vmap: no new compile
        draw = C.inverse_wishart(jax.random.key(0), 6.0, psi)
        factors = C.inverse_wishart_factors(jax.random.key(0), jnp.asarray(6.0, dtype), psi)
        assert draw.dtype == jnp.dtype(dtype) and all(f.dtype == jnp.dtype(dtype) for f in factors)
        np.testing.assert_array_equal(np.asarray(draw), np.asarray(factors.matrix))
        assert C.scatter_matrix(jnp.ones((4, 2), dtype)).dtype == jnp.dtype(dtype)


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize("prior, d, match", [
    (P.InverseWishart(1.0, 1.0), 2, "df must be > d - 1 = 1"),
    (P.InverseWishart(0.0, 1.0), 2, "df must be positive"),
    (P.InverseWishart(float("nan"), 1.0), 2, "df must be positive"),
    (P.InverseWishart(4.0, -1.0), 2, "scale must be positive"),
    (P.InverseWishart(4.0, [1.0, 0.0]), 2, "scale must be positive"),
    (P.InverseWishart(4.0, [1.0, 2.0, 3.0]), 2, "length d = 2"),
    (P.InverseWishart(4.0, np.eye(3)), 2, r"\(2, 2\) matrix"),
    (P.InverseWishart(4.0, np.array([[1.0, 2.0], [2.0, 1.0]])), 2, "positive definite"),
    (P.InverseWishart(4.0, np.array([[1.0, 0.2], [0.1, 1.0]])), 2, "symmetric"),
    (P.InverseWishart(4.0, np.array([[1.0, np.nan], [np.nan, 1.0]])), 2, "finite"),
    (P.InverseWishart(4.0, np.ones((2, 2, 2))), 2, "square matrix"),
    (P.HuangWand(0.0, 1.0), 2, "df must be positive"),
    (P.HuangWand(2.0, -1.0), 2, "scale must be positive"),
    (P.HuangWand(2.0, [1.0, 2.0, 3.0]), 2, "length d = 2"),
    (P.HuangWand(2.0, np.eye(2)), 2, "scalar or a vector"),
])
def test_check_covariance_prior_names_the_block(prior, d, match):
    with pytest.raises(ValueError, match=match) as info:
        P.check_covariance_prior(prior, d, "b_county")
    assert "priors['b_county']" in str(info.value)


def test_check_covariance_prior_accepts_valid_and_refuses_other_types():
    for prior in (P.InverseWishart(1.01, 1.0), P.InverseWishart(5.0, PSI3[:2, :2]), P.InverseWishart(3.0, [1.0, 2.0]),
                  P.HuangWand(), P.HuangWand(0.5, [1.0, 3.0])):
        P.check_covariance_prior(prior, 2, "b")
        P.check_prior(prior, "b")
    with pytest.raises(TypeError, match="priors\\['b'\\]"):
        P.check_covariance_prior(P.HalfCauchy(1.0), 2, "b")
    with pytest.raises(ValueError, match="positive integer"):
        P.check_covariance_prior(P.HuangWand(), 0, "b")
    # check_prior alone (no d): df and scales, not the dimension
    with pytest.raises(ValueError, match="priors\\['b'\\]: InverseWishart df"):
        P.check_prior(P.InverseWishart(-1.0), "b")
    with pytest.raises(ValueError, match="priors\\['b'\\]: HuangWand scale"):
        P.check_prior(P.HuangWand(2.0, 0.0), "b")

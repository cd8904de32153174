"""The logit families' Metropolis-Hastings kernel with IWLS proposals (``sampler="iwls"``).

The kernel is the Poisson's (``tests/test_poisson.py`` checks its proposal normalizers against dense algebra)
with the logit likelihood of :mod:`mlgibbs.conditionals.logit`. Checked here: the IWLS terms are the
likelihood's first two derivatives (by autodiff); the per-row likelihood change equals the difference of
the log likelihoods (float64) and keeps its precision in float32 where that difference would not; Geweke's
joint-distribution test (``tests/test_glm_geweke.py``'s simulators) on a correlated slope block, a nested
binomial and crossed factors with a group-level predictor, with the Metropolis-Hastings correction left out
rejected; agreement of the posterior with the Polya-Gamma sampler's on cbpp (two exact samplers, ESS-based
MCSEs); the sampler option and its errors.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import mlgibbs as mg
import mlgibbs.conditionals.poisson as poisson
from mlgibbs.conditionals import logit
from mlgibbs.priors import HalfNormal, HuangWand
from mlgibbs.run_mixed import MIXED_SAMPLERS
from mlgibbs.samplers.mixed import _build_kernel
from tests.test_glm_geweke import CASES, Case, case_model, geweke_z, z_crit


class _Rows:
    def __init__(self, t, trials):
        self.t, self.trials = t, trials


def _rows(dtype):
    rng = np.random.default_rng(0)
    trials = rng.integers(1, 40, 200).astype(dtype)
    t = np.floor(rng.random(200) * (trials + 1)).astype(dtype)
    eta = rng.normal(0.0, 6.0, 200).astype(dtype)
    eta[:4] = [-40.0, 40.0, -30.0, 30.0]
    d = rng.normal(0.0, 1.0, 200).astype(dtype) * np.exp(rng.uniform(-12, 2, 200)).astype(dtype)
    d[:4] = [45.0, -45.0, 1e-6, -1e-6]
    return _Rows(jnp.asarray(t), jnp.asarray(trials)), jnp.asarray(eta), jnp.asarray(eta + d)


def _log_likelihood(eta, rows):
    return rows.t * eta - rows.trials * jnp.logaddexp(0.0, eta)


def test_iwls_terms_are_the_log_likelihoods_derivatives():
    with jax.enable_x64(True):
        rows, eta, _ = _rows(np.float64)
        w, s = logit.iwls_terms(eta, rows)
        grad = jax.vmap(jax.grad(lambda e, t, m: t * e - m * jnp.logaddexp(0.0, e)))(eta, rows.t, rows.trials)
        hess = jax.vmap(jax.grad(jax.grad(lambda e, m: -m * jnp.logaddexp(0.0, e))))(eta, rows.trials)
        moderate = np.abs(eta) < 20     # where autodiff of logaddexp is itself accurate to 1e-10
        np.testing.assert_allclose(w[moderate], -hess[moderate], rtol=1e-8)
        np.testing.assert_allclose((s - w * eta)[moderate], grad[moderate], rtol=1e-9, atol=1e-12)
        assert np.all(np.isfinite(w)) and np.all(w >= 0) and np.all(np.isfinite(s))


def test_log_likelihood_change_is_exact_and_keeps_float32_precision():
    with jax.enable_x64(True):
        rows, eta, eta_new = _rows(np.float64)
        change = logit.log_likelihood_change(eta, eta_new, rows)
        reference = _log_likelihood(eta_new, rows) - _log_likelihood(eta, rows)
        np.testing.assert_allclose(change, reference, rtol=1e-9, atol=1e-9)
    rows32, eta32, new32 = _rows(np.float32)
    change32 = np.asarray(logit.log_likelihood_change(eta32, new32, rows32), np.float64)
    with jax.enable_x64(True):
        rows, eta, eta_new = (_Rows(jnp.asarray(rows32.t, jnp.float64), jnp.asarray(rows32.trials, jnp.float64)),
                              jnp.asarray(eta32, jnp.float64), jnp.asarray(new32, jnp.float64))
        exact = np.asarray(logit.log_likelihood_change(eta, eta_new, rows))
        naive32 = np.asarray(_log_likelihood(new32, rows32) - _log_likelihood(eta32, rows32), np.float64)
    scale = 1e-6 * (1.0 + np.abs(exact))
    assert np.all(np.abs(change32 - exact) < 10 * scale)
    # the difference of the two log likelihoods misses the same tolerance (the point of the order-one terms)
    assert not np.all(np.abs(naive32 - exact) < 10 * scale)


IWLS_CASES = [
    CASES[0],                       # bernoulli, (1 + x | g) under Huang-Wand
    CASES[1],                       # binomial with trials 1-6, (1 | a/b), an inverse-gamma scale
    Case("bernoulli-crossed-predictor", "yb ~ x + ua + (1 | a) + (1 | c)", "bernoulli",
         {"a": HalfNormal(0.7), "c": HalfNormal(1.0)}),
]


def iwls_kernel(model):
    return _build_kernel(model.structure._replace(iwls=True), model.kernel_priors)


@pytest.mark.parametrize("case", IWLS_CASES, ids=[c.name for c in IWLS_CASES])
def test_geweke(case):
    model = case_model(case)
    z = geweke_z(model, iwls_kernel(model).step, num_chains=case.num_chains, num_steps=case.num_steps)
    assert np.all(np.isfinite(z))
    assert np.max(np.abs(z)) < z_crit(z.size), np.round(z, 2)


def test_geweke_rejects_proposals_taken_without_the_correction(monkeypatch):
    monkeypatch.setattr(poisson, "metropolis_accept", lambda key, log_ratio: jnp.ones(jnp.shape(log_ratio), bool))
    case = IWLS_CASES[1]
    model = case_model(case)
    z = geweke_z(model, iwls_kernel(model).step, num_chains=case.num_chains, num_steps=case.num_steps)
    assert np.max(np.abs(z)) > z_crit(z.size), np.round(z, 2)


def _cbpp():
    return mg.Model.from_formula("incidence ~ period + (1 | herd)", mg.datasets.load_cbpp(),
                                 priors={"herd": HalfNormal(1.0)}, family="binomial", trials="size")


def test_agrees_with_the_polya_gamma_sampler_on_cbpp():
    """Two exact samplers of one posterior: means, sds and quantiles of every fixed effect, scale and three
    herds' effects (``tests/test_mixed_nuts.py``'s comparison) within Bonferroni z of their ESS-based MCSEs."""
    from tests.test_mixed_nuts import _posterior_dict, _z_scores

    model = _cbpp()
    augmented, iwls = (mg.sample(5, model, num_chains=4, num_warmup=500, num_draws=2500, sampler=sampler,
                                 log_likelihood=False) for sampler in ("augmented", "iwls"))
    assert iwls.posterior.attrs["sampler"] == "iwls"
    _, table, _ = _z_scores(model, _posterior_dict(iwls.posterior), _posterior_dict(augmented.posterior))
    z = np.concatenate([row[-1] for row in table.values()])
    assert np.all(np.isfinite(z))
    assert np.max(np.abs(z)) < stats.norm.isf(1e-3 / (2 * z.size)), np.round(z, 2)


def test_sampler_option_and_same_key_same_draws():
    model = _cbpp()
    a, b = (mg.sample(2, model, num_chains=2, num_warmup=20, num_draws=30, sampler="iwls",
                      check_convergence=False) for _ in range(2))
    np.testing.assert_array_equal(a.posterior["beta"].values, b.posterior["beta"].values)
    with pytest.raises(ValueError, match=r"(?s)'iwls'.*probit.*'augmented'"):
        mg.sample(0, mg.Model.from_formula("incidence ~ period + (1 | herd)", mg.datasets.load_cbpp(),
                                           family="probit", trials="size"), sampler="iwls")
    assert MIXED_SAMPLERS["probit"] == ("augmented", "augmented-px")


def test_default_sampler_by_design():
    """``sampler=None``: ``"iwls"`` for logit models with >= 40 trials per group in every factor, else
    ``"augmented-px"`` for crossed designs, else ``"augmented"`` (the best of each in the benchmark)."""
    from mlgibbs.run_mixed import default_mixed_sampler

    d = mg.datasets
    radon = d.load_radon()
    cases = {
        "augmented": mg.Model.from_formula("I(activity > 4) ~ floor + (1 | county)", radon, family="bernoulli"),
        "iwls": _cbpp(),
        "augmented-px": mg.Model.from_formula("r2 ~ btype + (1 | id) + (1 | item)", d.load_verbagg(),
                                              family="bernoulli"),
    }
    for expected, model in cases.items():
        assert default_mixed_sampler(model) == expected, expected
    probit = mg.Model.from_formula("incidence ~ period + (1 | herd)", d.load_cbpp(), family="probit", trials="size")
    assert default_mixed_sampler(probit) == "augmented"          # no IWLS kernel for the probit link
    glm = mg.Model.from_formula("I(activity > 4) ~ floor", radon, family="bernoulli")
    assert default_mixed_sampler(glm) == "iwls"                   # 919 trials, no groups

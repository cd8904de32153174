"""The negative binomial family (``family="negbinomial"``): input checks, output, and Geweke's test.

Geweke's (2004) joint-distribution test as in ``tests/test_glm_geweke.py`` (its simulators reused): the
marginal-conditional simulator draws ``theta`` (and ``r ~ Gamma``) from the prior with NumPy and ``y``
by ``numpy.random.Generator.negative_binomial``; the successive-conditional simulator alternates one
sweep of the kernel (fresh Polya-Gamma weights per location block, the Metropolis-Hastings correction of
the rows with ``b < 1``, the scales, the parameter-expanded moves, the slice step of ``r``) with a fresh
``y`` by ``jax.random`` (gamma-Poisson). CI case: ``r ~ Gamma(2, 2)``, on both sides of 1 (plain augmented
Gibbs above, the surrogate-and-correction path on the rows of zeros below); slow cases: ``r`` mostly
above 1 (``Gamma(6, 1)``) and mostly below (``Gamma(3, 6)``). Power: the slice step of ``r`` without its
Jacobian, and the correction left out (every surrogate proposal accepted), must each be rejected. (A
broken location update makes the simulated counts run away, and the cost of a sweep grows with them.)
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import mlgibbs as mg
import mlgibbs.conditionals.negbinomial as negbinomial
from mlgibbs.priors import Gamma, HalfNormal, Normal
from mlgibbs.samplers.mixed import fitted_values
from tests.test_glm_geweke import fresh_kernel, parameter_functions, z_crit
from tests.test_mixed_geweke import draw_theta, frame, user_mean

BETA = 0.5   # prior sd of the fixed effects: counts of a few units, many zeros


def counts_frame():
    df = frame()
    df["x"] = df["x"] - 2.0
    df["n"] = np.arange(len(df)) % 3          # any valid response: only the design matters in Geweke
    return df


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("family", ["negbinomial", "poisson"])
@pytest.mark.parametrize("values, message", [
    (lambda n: -np.ones(n), "non-negative integer counts"),
    (lambda n: np.full(n, 1.5), "non-negative integer counts"),
    (lambda n: np.zeros(n), "all zeros"),
])
def test_bad_counts_name_the_column(values, message, family):
    df = counts_frame()
    df["ticks"] = values(len(df))
    with pytest.raises(ValueError, match=rf"(?s)'ticks'.*{message}|{message}.*'ticks'"):
        mg.Model.from_formula("ticks ~ x + (1 | g)", df, family=family)


def test_bad_options():
    df = counts_frame()
    with pytest.raises(ValueError, match="trials="):
        mg.Model.from_formula("n ~ x + (1 | g)", df, family="negbinomial", trials=3)
    with pytest.raises(ValueError, match="dispersion is 'r'"):
        mg.Model.from_formula("n ~ x + (1 | g)", df, family="negbinomial", priors={"sigma_y": HalfNormal(1)})
    with pytest.raises(ValueError, match="Gamma rate"):
        mg.Model.from_formula("n ~ x + (1 | g)", df, family="negbinomial", priors={"r": Gamma(1.0, 0.0)})
    with pytest.raises(TypeError, match="log_prob"):
        mg.Model.from_formula("n ~ x + (1 | g)", df, family="negbinomial", priors={"r": 3.0})


# ------------------------------------------------------------------ output
def posterior_eta(model, post):
    """Every draw's linear predictor of every observation, from the posterior's user-scale values."""
    values = {k: np.asarray(post[k]) for k in post.data_vars}
    eta = 0.0
    for factor in model.factors:
        a = values[f"alpha_{factor.name}"]
        eta = eta + np.einsum("cdgk,gk->cdg", a[:, :, factor.codes, :], factor.Z)
    if model.X.shape[1]:
        eta = eta + values["beta"] @ model.X.T
    return eta


def test_output_log_likelihood_and_replicates():
    df = mg.datasets.load_grouseticks()
    model = mg.Model.from_formula("TICKS ~ YEAR + scale(HEIGHT) + (1 | BROOD) + (1 | LOCATION)", df,
                                  family="negbinomial", priors={"BROOD": HalfNormal(1.0), "LOCATION": HalfNormal(1.0)})
    idata = mg.sample(3, model, num_chains=2, num_warmup=100, num_draws=50, posterior_predictive=True,
                      check_convergence=False)
    post = idata.posterior
    assert "r" in post and "sigma_y" not in post
    r = np.asarray(post["r"])
    assert np.all(np.isfinite(r)) and np.all(r > 0)
    # the pointwise log likelihood is SciPy's negative binomial log pmf at every draw
    ll = np.asarray(idata.log_likelihood["TICKS"])
    assert ll.shape == (2, 50, len(df)) and np.all(np.isfinite(ll))
    mu = np.exp(posterior_eta(model, post))
    expected = stats.nbinom.logpmf(df["TICKS"].to_numpy(), r[..., None], r[..., None] / (r[..., None] + mu))
    np.testing.assert_allclose(ll, expected, rtol=2e-4, atol=2e-4)
    ppc = np.asarray(idata.posterior_predictive["TICKS"])
    assert ppc.shape == (2, 50, len(df)) and np.all(ppc >= 0) and np.all(ppc == np.round(ppc))
    # mg.predict on the data: the same means, and new counts whose spread is the NB's
    pred = mg.predict(idata, model, df).predictions
    np.testing.assert_allclose(np.asarray(pred["mu"]), mu, rtol=1e-4)
    new = np.asarray(pred["TICKS"])
    assert new.shape == mu.shape and np.all(new == np.round(new)) and np.all(new >= 0)
    # given each draw's mu and r the new counts are independent with mean mu, variance mu + mu^2 / r
    z = (new - mu) / np.sqrt(mu + mu**2 / r[..., None])
    assert abs(np.mean(z)) < 4.0 / np.sqrt(z.size), np.mean(z)


# ------------------------------------------------------------------ Geweke
class Case(NamedTuple):
    name: str
    r_prior: Gamma
    num_chains: int = 200
    num_steps: int = 30


# CI: r on either side of 1 (P(r < 1) = 0.59: the plain augmented update and the corrected one); slow: each side
CASES = [Case("r-either-side", Gamma(2.0, 2.0))]
SLOW_CASES = [Case("r-above-one", Gamma(6.0, 1.0), 400, 40), Case("r-below-one", Gamma(3.0, 6.0), 400, 40)]


def case_model(case: Case):
    priors = {"beta": Normal(0.0, BETA), "a": HalfNormal(0.5), "a:b": HalfNormal(0.5), "r": case.r_prior}
    with jax.enable_x64(True):
        return mg.Model.from_formula("n ~ x + (1 | a/b)", counts_frame(), priors=priors, family="negbinomial")


def draw_coefficients(rng, model, size):
    """A prior draw (``tests.test_mixed_geweke.draw_theta``) with the coefficients' sd 1.5 scaled to ``BETA``
    (counts of a few units)."""
    theta = draw_theta(rng, model, size)
    theta["beta"] = theta["beta"] * (BETA / 1.5)
    for f, factor in enumerate(model.factors):
        gamma = theta[f"gamma_{factor.name}"]
        if gamma.shape[-1]:
            new = gamma * (BETA / 1.5)
            k = model.structure.intercepts[f]
            theta[f"alpha_{factor.name}"][:, :, k] += (new - gamma) @ model.U[f].T
            theta[f"gamma_{factor.name}"] = new
    return theta


def draw_joint(rng, model, size):
    theta = draw_coefficients(rng, model, size)
    prior = model.priors["r"]
    theta["r"] = rng.gamma(prior.concentration, 1.0 / prior.rate, size)
    mu = np.exp(user_mean(model, theta))
    r = theta["r"][:, None]
    y = rng.negative_binomial(r, r / (r + mu)).astype(np.float64)
    return theta, y


def functions(model, theta, y, xp):
    out, eta = parameter_functions(model, theta, xp)
    out.append(xp.log(theta["r"]))
    out.append(theta["r"] / (1.0 + theta["r"]))
    out += count_functions(y, eta, xp)
    return xp.stack(out, axis=-1)


def count_functions(y, eta, xp):
    """Test functions of the counts jointly with the linear predictor."""
    return [xp.mean(xp.log1p(y), axis=-1), xp.mean(y == 0, axis=-1) * 1.0,
            xp.mean((y - xp.exp(eta)) * xp.tanh(eta), axis=-1), xp.mean(xp.log1p(y) * xp.tanh(eta), axis=-1)]


def new_counts(key, state, eta):
    """Counts given the kernel state: the gamma-Poisson mixture with the state's ``r``."""
    key_g, key_p = jax.random.split(key)
    r = state.sigma_y
    lam = jax.random.gamma(key_g, jnp.broadcast_to(r, eta.shape), dtype=eta.dtype) * jnp.exp(eta) / r
    return jax.random.poisson(key_p, lam, eta.shape)


def geweke_z(model, step, *, num_chains, num_steps, seed=0, draw_joint=draw_joint, functions=functions,
             new_counts=new_counts):
    """Geweke's z per test function (module docstring), for any count family given its prior-and-data
    simulator ``draw_joint``, test ``functions`` and ``new_counts(key, state, eta)``."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(seed + 1)
        theta0, y0 = draw_joint(rng, model, num_chains)
        state0 = jax.tree.map(jnp.asarray, model.to_kernel(theta0))
        W, _, codes = model.kernel_rows
        W, codes = jnp.asarray(W), jnp.asarray(codes)

        def chain(key, state, y):
            def body(carry, key):
                state, y = carry
                key_step, key_y = jax.random.split(key)
                state = step(key_step, state, model.data_for(y))
                g = functions(model, model.to_user(state, xp=jnp), y, jnp)
                eta = fitted_values(model.structure, W, codes, state.beta, state.b)
                y_new = new_counts(key_y, state, eta).astype(y.dtype)
                return (state, y_new), g

            _, gs = jax.lax.scan(body, (state, y), jax.random.split(key, num_steps))
            return gs

        keys = jax.random.split(jax.random.key(seed), num_chains)
        sc = np.asarray(jax.jit(jax.vmap(chain))(keys, state0, jnp.asarray(y0)))
    rng = np.random.default_rng(seed)
    theta, y = draw_joint(rng, model, 20_000)
    mc = functions(model, theta, y, np)
    per_chain = sc.mean(axis=1)
    se_sc = per_chain.std(axis=0, ddof=1) / np.sqrt(num_chains)
    se_mc = mc.std(axis=0, ddof=1) / np.sqrt(mc.shape[0])
    return (per_chain.mean(axis=0) - mc.mean(axis=0)) / np.sqrt(se_sc**2 + se_mc**2)


@pytest.mark.parametrize("case", CASES + [pytest.param(c, marks=pytest.mark.slow) for c in SLOW_CASES],
                         ids=[c.name for c in CASES + SLOW_CASES])
def test_geweke(case):
    model = case_model(case)
    z = geweke_z(model, fresh_kernel(model).step, num_chains=case.num_chains, num_steps=case.num_steps)
    assert np.all(np.isfinite(z))
    assert np.max(np.abs(z)) < z_crit(z.size), np.round(z, 2)


def test_geweke_rejects_the_slice_step_without_its_jacobian(monkeypatch):
    """The density of log r without the Jacobian r (the slice step then samples r with the wrong power)."""
    right = negbinomial.dispersion_log_density
    monkeypatch.setattr(negbinomial, "dispersion_log_density", lambda log_r, *args: right(log_r, *args) - log_r)
    case = CASES[0]
    model = case_model(case)
    z = geweke_z(model, fresh_kernel(model).step, num_chains=case.num_chains, num_steps=10)
    assert np.max(np.abs(z)) > z_crit(z.size), np.round(z, 2)


def test_geweke_rejects_a_missing_correction(monkeypatch):
    """Every surrogate proposal accepted: the rows of zeros with r < 1 then follow the b = 1 likelihood
    (measured: |z| up to 31 with 200 chains x 10 steps)."""
    monkeypatch.setattr(negbinomial, "correction_log_ratio", lambda *args: jnp.zeros(()))
    case = CASES[0]
    model = case_model(case)
    z = geweke_z(model, fresh_kernel(model).step, num_chains=case.num_chains, num_steps=10)
    assert np.max(np.abs(z)) > z_crit(z.size), np.round(z, 2)


# ------------------------------------------------------------------ the two Polya-Gamma paths
def test_weights_by_count_lanes_and_by_the_traced_draw_have_the_exact_mean_and_variance():
    """The model's data draw PG(Y - 1) by count lanes plus a traced PG(1 + m r); ``data_for``'s data one
    traced PG(Y + m r). Both must have PG(b, psi)'s mean b tanh(psi/2) / (2 psi) and variance
    b (sinh psi - psi) / (4 psi^3 cosh^2(psi/2)) in every row (the surrogate's b = 1 where b < 1)."""
    df = mg.datasets.load_grouseticks()
    model = mg.Model.from_formula("TICKS ~ YEAR + (1 | LOCATION)", df, family="negbinomial")
    data_lanes = model.data
    data_traced = model.data._replace(lane_rows=None)
    assert data_lanes.lane_rows is not None and data_lanes.lane_rows.shape[0] == int(
        np.sum(np.maximum(np.asarray(model.data.t) - 1, 0)))
    eta = jnp.asarray(np.linspace(-2.0, 3.0, model.data.t.shape[0]), model.data.t.dtype)
    num = 2000
    for r in (0.3, 2.7):
        b = np.maximum(np.asarray(model.data.t) + np.asarray(model.data.trials) * r, 1.0)
        psi = np.asarray(eta, np.float64) - np.log(r)
        mean = b * np.tanh(psi / 2) / (2 * psi)
        var = b * (np.sinh(psi) - psi) / (4 * psi**3 * np.cosh(psi / 2) ** 2)
        for data in (data_lanes, data_traced):
            draw = jax.jit(jax.vmap(lambda key: negbinomial.negbinomial_augmentation(key, eta, data, jnp.asarray(r, eta.dtype))[0]))
            omega = np.asarray(draw(jax.random.split(jax.random.key(7), num)), np.float64)
            z_mean = (omega.mean(0) - mean) / np.sqrt(var / num)
            squares = (omega - mean) ** 2                      # its mean is var; its se from the draws
            z_var = (squares.mean(0) - var) / (squares.std(0, ddof=1) / np.sqrt(num))
            assert np.max(np.abs(z_mean)) < 4.5, (r, data.lane_rows is None, np.max(np.abs(z_mean)))
            assert np.max(np.abs(z_var)) < 4.5, (r, data.lane_rows is None, np.max(np.abs(z_var)))

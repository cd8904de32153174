"""Binomial-type families: bad input, the augmentation draws, the weighted location block, the output.

* Bad input: every error names the column or argument (non-binary Bernoulli response, counts above the
  trials, negative or non-integer counts, a missing or invalid trials column, an unknown family, a
  ``sigma_y`` prior for a family without one, a response that is all failures).
* Albert-Chib latents: the truncated normal against SciPy's ``truncnorm`` by KS over truncation points
  from the body to the far tail (``a`` up to 40, where an inverse-CDF draw would underflow), finite at
  ``a = 1e4``; a draw with the wrong truncation side is rejected (power).
* The location block given the augmentation weights: ``update_chain`` with weights ``w`` and linear
  terms ``s`` against the dense Gaussian ``N(P^{-1} A's, P^{-1})`` with ``P = A' diag(w) A + prior``
  written here directly (mean and covariance by z-tests over many draws); a wrong weight rejected.
* Output: posterior variables without ``sigma_y``, pointwise binomial log likelihood (``az.loo`` works),
  posterior predictive counts within ``[0, trials]``, the same key the same draws, ``from_arrays``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from scipy import stats

import mlgibbs as mg
from mlgibbs.conditionals.augmentation import truncated_normal_above
from mlgibbs.priors import HalfNormal, Normal


def frame(n=80, seed=0):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 8, n)
    x = rng.normal(size=n)
    eta = 0.3 + 0.8 * x + rng.normal(size=8)[g]
    m = rng.integers(1, 6, n)
    return pd.DataFrame({"y": rng.binomial(1, 1 / (1 + np.exp(-eta))), "x": x, "g": [f"g{i}" for i in g],
                         "m": m, "k": rng.binomial(m, 1 / (1 + np.exp(-eta)))})


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("change, family, trials, match", [
    (lambda d: d.assign(y=d.y.where(d.index != 3, 2)), "bernoulli", None, r"'y'.*0 or 1.*\[3\]"),
    (lambda d: d.assign(y=d.y.where(d.index != 5, 2)), "probit", None, r"'y'.*0 or 1"),
    (lambda d: d.assign(k=d.k.where(d.index != 2, d.m + 1)), "binomial", "m", r"'k'.*at most m"),
    (lambda d: d.assign(k=d.k.where(d.index != 2, -1)), "binomial", "m", r"'k'.*integer counts"),
    (lambda d: d.assign(k=d.k.astype(float).where(d.index != 2, 0.5)), "binomial", "m", r"'k'.*integer"),
    (lambda d: d, "binomial", "size", r"trials column 'size' is not in the data"),
    (lambda d: d, "binomial", None, r"needs trials="),
    (lambda d: d.assign(m=d.m.where(d.index != 1, 0)), "binomial", "m", r"m must hold positive integers"),
    (lambda d: d.assign(m=d.m.astype(float).where(d.index != 1, np.nan)), "binomial", "m", r"'m' has 1 missing"),
    (lambda d: d.assign(y=0), "bernoulli", None, r"all failures.*improper"),
    (lambda d: d, "gamma", None, r"family='gamma' is not available"),
    (lambda d: d, "nb", None, r"family='nb' is not available.*'negbinomial'"),
    (lambda d: d, "bernoulli", 3, r"one trial per row"),
])
def test_bad_input_names_the_column(change, family, trials, match):
    df = change(frame())
    response = "k" if family == "binomial" else "y"
    with pytest.raises(ValueError, match=match):
        mg.Model.from_formula(f"{response} ~ x + (1 | g)", df, family=family, trials=trials)


def test_sigma_y_prior_and_trials_of_a_gaussian_are_refused():
    with pytest.raises(ValueError, match="has no residual scale sigma_y"):
        mg.Model.from_formula("y ~ x + (1 | g)", frame(), family="bernoulli", priors={"sigma_y": HalfNormal(1.0)})
    with pytest.raises(ValueError, match="has no residual scale sigma_y"):
        mg.Model.from_formula("y ~ x", frame(), family="bernoulli", priors={"sigma_y": HalfNormal(1.0)})
    with pytest.raises(ValueError, match=r"trials= is for the binomial-type families"):
        mg.Model.from_formula("y ~ x + (1 | g)", frame(), trials="m")


# ------------------------------------------------------------------ Albert-Chib latents
@pytest.mark.parametrize("a", [-3.0, 0.0, 1.5, 4.9, 5.1, 8.0, 40.0])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_truncated_normal_matches_scipy(a, dtype):
    with jax.enable_x64(dtype == jnp.float64):
        x = np.asarray(truncated_normal_above(jax.random.key(int(a * 10) + 7), jnp.full((4000,), a, dtype)),
                       np.float64)
    assert np.all(np.isfinite(x)) and np.all(x >= a)
    p = stats.kstest(x, stats.truncnorm(a, np.inf).cdf).pvalue
    assert p > 1e-4, p


def test_truncated_normal_far_tail_is_finite_and_a_wrong_side_is_rejected():
    x = np.asarray(truncated_normal_above(jax.random.key(1), jnp.full((100,), 1e4, jnp.float32)))
    assert np.all(np.isfinite(x)) and np.all(x >= 1e4) and np.all(x < 1e4 + 1e-2)
    wrong = -np.asarray(truncated_normal_above(jax.random.key(2), jnp.full((4000,), -1.0)))   # below 1, not above
    assert stats.kstest(wrong, stats.truncnorm(1.0, np.inf).cdf).pvalue < 1e-6


# ------------------------------------------------------------------ the weighted location block
def _dense_posterior(model, state, weights, linear):
    """``N(P^{-1} h, P^{-1})`` of ``(beta, gamma, b)`` (kernel coordinates) for one factor ``(1 | g)``."""
    data, s = model.data, model.structure
    W = np.asarray(data.W, np.float64)
    codes = np.asarray(data.codes)[:, 0]
    p, J, q = s.p, model.data.U[0].shape[0], s.q[0]
    R = W.shape[0]
    A = np.zeros((R, p + q + J))
    A[:, :p] = W[:, :p]
    A[np.arange(R), p + q + codes] = W[:, p]
    U = np.asarray(data.U[0], np.float64)
    B = np.zeros((J, p + q + J))          # b_g - U_g gamma
    B[:, p:p + q] = -U
    B[:, p + q:] = np.eye(J)
    var = float(state.cov[0][0, 0])
    P = A.T @ (weights[:, None] * A) + B.T @ B / var + 1e-300
    lp = data.location_prior
    P[:p + q, :p + q] += np.asarray(lp.precision, np.float64)
    h = A.T @ linear
    h[:p + q] += np.asarray(lp.precision, np.float64) @ np.asarray(lp.mean, np.float64)
    cov = np.linalg.inv(P)
    return cov @ h, cov


@pytest.mark.parametrize("wrong", [False, True])
def test_weighted_location_block_is_the_dense_gaussian(wrong):
    from mlgibbs.samplers.mixed import MixedState, update_chain

    with jax.enable_x64(True):
        model = mg.Model.from_formula("y ~ x + (1 | g)", frame(), family="bernoulli",
                                      priors={"beta": Normal(0.0, 2.0), "g": HalfNormal(1.0)})
        rng = np.random.default_rng(5)
        R = model.data.W.shape[0]
        weights = rng.uniform(0.05, 0.4, R)
        linear = rng.normal(size=R)
        s = model.structure
        state = MixedState(beta=jnp.zeros(s.p), gamma=(jnp.zeros(s.q[0]),), b=(jnp.zeros((8, 1)),),
                           sigma_y=jnp.ones(()), cov=(jnp.full((1, 1), 0.7),))
        mean, cov = _dense_posterior(model, state, weights, linear)
        used = weights * (1.3 if wrong else 1.0)

        def draw(key):
            new = update_chain(s, 0, key, state, model.data, weights=jnp.asarray(used), linear=jnp.asarray(linear))
            return jnp.concatenate([new.beta, new.gamma[0], new.b[0][:, 0]])

        draws = np.asarray(jax.jit(jax.vmap(draw))(jax.random.split(jax.random.key(0), 20_000)))
    z_mean = (draws.mean(0) - mean) / np.sqrt(np.diag(cov) / draws.shape[0])
    var = draws.var(0, ddof=1)
    z_var = (var - np.diag(cov)) / (np.diag(cov) * np.sqrt(2.0 / draws.shape[0]))
    z = np.concatenate([z_mean, z_var])
    crit = stats.norm.isf(1e-3 / (2 * z.size))
    if wrong:
        assert np.max(np.abs(z)) > crit
    else:
        assert np.max(np.abs(z)) < crit, np.round(z, 2)


# ------------------------------------------------------------------ output
def test_output_groups_and_reproducibility():
    df = frame()
    model = mg.Model.from_formula("k ~ x + (1 | g)", df, family="binomial", trials="m")
    idata = mg.sample(3, model, num_chains=2, num_warmup=200, num_draws=300, posterior_predictive=True,
                      check_convergence=False)
    assert "sigma_y" not in idata.posterior
    assert set(idata.posterior.data_vars) == {"beta", "alpha_g", "gamma_g", "sigma_g"}
    loglik = idata.log_likelihood["k"].values
    assert loglik.shape == (2, 300, len(df)) and np.all(loglik <= 0)
    ppc = idata.posterior_predictive["k"].values
    assert np.all((ppc >= 0) & (ppc <= df["m"].to_numpy()) & (ppc == np.round(ppc)))
    # the trials, by observation, in constant_data (named after their column)
    np.testing.assert_array_equal(np.asarray(idata.constant_data["m"]), df["m"].to_numpy())
    assert "constant_data" in mg.arviz.groups(idata)
    result = mg.loo(idata)          # ArviZ's loo on both ArviZ 0.x and 1.x
    assert np.isfinite(result.elpd) and result.elpd_i.shape == (len(df),)
    again = mg.sample(3, model, num_chains=2, num_warmup=200, num_draws=300, posterior_predictive=True,
                      check_convergence=False)
    np.testing.assert_array_equal(idata.posterior["beta"].values, again.posterior["beta"].values)


def test_from_arrays_matches_from_formula():
    df = frame()
    by_formula = mg.Model.from_formula("k ~ x + (1 | g)", df, family="binomial", trials="m")
    by_arrays = mg.Model.from_arrays(df["k"], df[["x"]], group=df["g"], family="binomial", trials=df["m"],
                                     response="k", group_name="g")
    a = mg.sample(0, by_formula, num_chains=2, num_warmup=100, num_draws=100, check_convergence=False)
    b = mg.sample(0, by_arrays, num_chains=2, num_warmup=100, num_draws=100, check_convergence=False)
    np.testing.assert_allclose(a.posterior["beta"].values, b.posterior["beta"].values, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a.posterior["sigma_g"].values, b.posterior["sigma_g"].values, rtol=1e-5)


def test_predict_probability_and_counts():
    df = frame()
    model = mg.Model.from_formula("k ~ x + (1 | g)", df, family="binomial", trials="m")
    idata = mg.sample(1, model, num_chains=2, num_warmup=200, num_draws=200, check_convergence=False)
    new = pd.DataFrame({"x": [0.0, 2.0, -1.0], "g": ["g1", "g2", "unseen"], "m": [3, 10, 1]})
    pred = mg.predict(idata, model, new).predictions
    mu, eta, k = pred["mu"].values, pred["eta"].values, pred["k"].values
    np.testing.assert_allclose(mu, 1 / (1 + np.exp(-eta)), rtol=1e-12)
    assert np.all((k >= 0) & (k <= np.array([3, 10, 1])))
    assert mu[..., 1].mean() > mu[..., 0].mean()          # beta[x] > 0 in these data
    # the expected value of a known group: inverse link of the linear predictor of its draws
    post = idata.posterior
    eta0 = post["beta"].values[..., 0] * 0.0 + post["alpha_g"].values[:, :, list(post["g"].values).index("g1"), 0]
    np.testing.assert_allclose(eta[..., 0], eta0, rtol=1e-10, atol=1e-12)
    assert mg.predict(idata, model, new, trials=7).predictions["k"].values.max() <= 7


def test_continue_from_a_run_and_lp():
    df = frame()
    model = mg.Model.from_formula("k ~ x + (1 | g)", df, family="binomial", trials="m")
    first = mg.sample(0, model, num_chains=2, num_warmup=50, num_draws=50, check_convergence=False)
    more = mg.sample(1, model, num_chains=2, num_warmup=0, num_draws=50, initial_state=first,
                     check_convergence=False)
    assert more.posterior["beta"].shape == (2, 50, 1)
    assert np.all(np.isfinite(more.sample_stats["lp"].values))
    # lp is the binomial log likelihood of the merged rows plus the priors: differences between draws
    # match a direct computation (flat beta and gamma, uniform scale: the effects' normal density only)
    from scipy.special import expit

    post = more.posterior
    eta = (post["beta"].values[..., 0][..., None] * df["x"].to_numpy()
           + post["alpha_g"].values[..., 0][:, :, [list(post["g"].values).index(v) for v in df["g"]]])
    p = expit(eta)
    loglik = np.sum(df["k"].to_numpy() * np.log(p) + (df["m"] - df["k"]).to_numpy() * np.log1p(-p), axis=-1)
    mu = post["gamma_g"].values[..., 0]
    sd = post["sigma_g"].values[..., 0]
    alpha = post["alpha_g"].values[..., 0]
    prior = np.sum(stats.norm.logpdf(alpha, mu[..., None], sd[..., None]), axis=-1)
    direct = loglik + prior
    lp = more.sample_stats["lp"].values
    # float32 lp of values about 170: round-off about 1e-5 (observed 2e-5); a wrong term is O(1)
    np.testing.assert_allclose(lp - lp[0, 0], direct - direct[0, 0], atol=1e-3)


# ------------------------------------------------------------------ separation
def _separation_frame():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x": rng.normal(size=100), "z": rng.normal(size=100), "g": rng.integers(0, 5, 100)})
    df["y"] = (df["x"] > 0).astype(int)                              # complete separation by x
    df["q"] = np.where(df["x"] > 0.5, 1, (df["z"] > 0).astype(int))  # quasi-complete: all 1 above 0.5
    df["c"] = np.where(df["x"] > 0, rng.poisson(3, 100), 0)          # counts: all 0 where x <= 0
    return df


@pytest.mark.parametrize("formula, family, column", [
    ("y ~ x + (1 | g)", "bernoulli", "'y'"),
    ("y ~ x + (1 | g)", "probit", "'y'"),
    ("q ~ z + I(x > 0.5) + (1 | g)", "bernoulli", "'q'"),
    ("c ~ I(x > 0) + (1 | g)", "poisson", "'c'"),
    ("c ~ I(x > 0) + (1 | g)", "negbinomial", "'c'"),
])
def test_separation_under_flat_priors_is_refused(formula, family, column):
    df = _separation_frame()
    with pytest.raises(ValueError, match=rf"(?s)separated.*{column}.*improper"):
        mg.Model.from_formula(formula, df, family=family)
    # a proper prior on the coefficients makes the posterior proper: accepted
    mg.Model.from_formula(formula, df, family=family, priors={"beta": Normal(0.0, 2.5)})


def test_no_separation_reported_on_the_shipped_data():
    d = mg.datasets
    for formula, load, family, trials in [
        ("I(activity > 4) ~ floor + log_uranium + (1 | county)", d.load_radon, "bernoulli", None),
        ("incidence ~ period + (1 | herd)", d.load_cbpp, "binomial", "size"),
        ("use ~ age + I(age**2) + urban + livch + (1 + urban | district)", d.load_contraception, "bernoulli", None),
        ("r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)", d.load_verbagg, "bernoulli", None),
        ("TICKS ~ YEAR + scale(HEIGHT) + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)", d.load_grouseticks, "poisson",
         None),
    ]:
        mg.Model.from_formula(formula, load(), family=family, trials=trials)


# ------------------------------------------------------------------ models without grouping factors
def _no_group_frame(n=300, seed=5):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    m = rng.integers(1, 5, n)
    eta = 0.3 + 0.8 * x
    p = 1 / (1 + np.exp(-eta))
    return pd.DataFrame({"x": x, "m": m, "y": rng.binomial(1, p), "k": rng.binomial(m, p),
                         "c": rng.poisson(np.exp(eta)), "d": rng.negative_binomial(3.0, 3.0 / (3.0 + np.exp(0.5)),
                                                                                      n)})


def _grid_moments(log_post, a_range, b_range, size=301):
    """Posterior means and sds of two parameters by quadrature on a grid (exact to its resolution): a coarse
    grid over the ranges finds the bulk, a fine one over its mean +- 8 sd integrates."""
    def moments(a, b):
        A, B = np.meshgrid(a, b, indexing="ij")
        lp = log_post(A, B)
        w = np.exp(lp - lp.max())
        w /= w.sum()
        edge = w[0].sum() + w[-1].sum() + w[:, 0].sum() + w[:, -1].sum()
        mean = np.array([np.sum(w * A), np.sum(w * B)])
        return mean, np.sqrt(np.array([np.sum(w * A**2), np.sum(w * B**2)]) - mean**2), edge

    mean, sd, _ = moments(np.linspace(*a_range, size), np.linspace(*b_range, size))
    mean, sd, edge = moments(*(np.linspace(m - 8 * s, m + 8 * s, size) for m, s in zip(mean, sd)))
    assert edge < 1e-6      # the fine grid holds the posterior (8 sd: about 1e-9 of the mass near its edges)
    return mean, sd


@pytest.mark.parametrize("family, sampler", [("bernoulli", None), ("bernoulli", "augmented"), ("binomial", None),
                                             ("binomial", "augmented"), ("probit", None), ("poisson", None),
                                             ("negbinomial", None)])
def test_models_without_groups_match_quadrature(family, sampler):
    """A GLM without grouping terms (``y ~ x``): the posterior of its two parameters by quadrature on a grid
    under the same priors, against the sampler's means (z by ESS-based MCSEs). The logit families' default
    there is ``"iwls"`` (more than 40 trials); their Polya-Gamma sampler is checked too."""
    from scipy.special import gammaln, log_ndtr

    from mlgibbs.convergence import ess_bulk

    df = _no_group_frame()
    x = df["x"].to_numpy()
    if family == "negbinomial":   # an intercept and r ~ Gamma(2, 0.5): the grid over (beta_0, log r)
        y = df["d"].to_numpy()
        model = mg.Model.from_formula("d ~ 1", df, family=family, priors={"r": mg.priors.Gamma(2.0, 0.5)})

        def log_post(b0, log_r):
            r = np.exp(log_r)[..., None]
            mu = np.exp(b0)[..., None]
            ll = (gammaln(y + r) - gammaln(r) + r * np.log(r / (r + mu)) + y * np.log(mu / (r + mu))).sum(-1)
            return ll + stats.gamma.logpdf(r[..., 0], 2.0, scale=2.0) + log_r
        mean, sd = _grid_moments(log_post, (0.2, 0.8), (0.0, 3.5))
        names = [("beta", 0), ("r", None)]
    else:
        response = {"bernoulli": "y", "probit": "y", "binomial": "k", "poisson": "c"}[family]
        y = df[response].to_numpy()
        m = df["m"].to_numpy() if family == "binomial" else np.ones_like(y)
        model = mg.Model.from_formula(f"{response} ~ x", df, family=family,
                                      trials="m" if family == "binomial" else None)

        def log_post(b0, b1):
            eta = b0[..., None] + b1[..., None] * x
            if family == "poisson":
                return (y * eta - np.exp(eta)).sum(-1)
            if family == "probit":
                return (y * log_ndtr(eta) + (m - y) * log_ndtr(-eta)).sum(-1)
            return (y * eta - m * np.logaddexp(0.0, eta)).sum(-1)
        mean, sd = _grid_moments(log_post, (-1.2, 1.6), (-0.5, 2.2))
        names = [("beta", 0), ("beta", 1)]
    idata = mg.sample(11, model, num_chains=4, num_warmup=300, num_draws=1500, sampler=sampler)
    if family in ("bernoulli", "binomial"):
        assert idata.posterior.attrs["sampler"] == (sampler or "iwls")
    post = idata.posterior
    assert set(post.data_vars) == ({"beta", "r"} if family == "negbinomial" else {"beta"})
    assert np.asarray(idata.log_likelihood[model.response]).shape == (4, 1500, len(df))
    for (name, j), mu, s in zip(names, mean, sd):
        draws = np.asarray(post[name]) if j is None else np.asarray(post[name])[..., j]
        if j is None:
            draws = np.log(draws) if name == "r" else draws
        ess = float(ess_bulk(draws[..., None])[0])
        z = (draws.mean() - mu) / (draws.std() / np.sqrt(ess))
        assert abs(z) < 4.5, (family, name, j, draws.mean(), mu, z)
        assert abs(draws.std() / s - 1) < 0.15, (family, name, j, draws.std(), s)


def test_model_without_groups_from_arrays_equals_the_formula_and_predicts():
    df = _no_group_frame()
    by_arrays = mg.Model.from_arrays(df["y"], df[["x"]], family="bernoulli", response="y")
    by_formula = mg.Model.from_formula("y ~ x", df, family="bernoulli")
    a = mg.sample(0, by_arrays, num_chains=2, num_warmup=100, num_draws=100, check_convergence=False)
    b = mg.sample(0, by_formula, num_chains=2, num_warmup=100, num_draws=100, check_convergence=False)
    np.testing.assert_allclose(a.posterior["beta"].values, b.posterior["beta"].values, rtol=1e-5, atol=1e-6)
    pred = mg.predict(b, by_formula, df.head(3)).predictions
    eta = b.posterior["beta"].values @ np.column_stack([np.ones(3), df["x"].to_numpy()[:3]]).T
    np.testing.assert_allclose(pred["eta"].values, eta, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="need group="):
        mg.Model.from_arrays(df["y"], df[["x"]], family="bernoulli", U=np.ones((3, 1)))

"""``sample_stats.lp`` and ``var_names`` of the multilevel model (:class:`~mlgibbs.models.mixed.MixedModel`).

What is tested
--------------
``lp``: :func:`mlgibbs.logdensity.mixed_log_joint`, computed in the kernel's coordinates (compressed
rows, centred and scaled columns, the response's units ``k``), against the log joint density written
here with SciPy in the *user's* coordinates from the raw data frame: ``norm.logpdf`` of every
observation, ``multivariate_normal.logpdf`` of every group's effects around its group-level mean, the
priors on the fixed effects by name, the scale priors on the standard deviations, ``invwishart.logpdf``,
and Huang & Wand's marginal density by numerical integration over its auxiliary variables. The models
have every feature at once: a correlated intercept and slope on ``a`` (an uncentred slope column, so
the kernel's coefficients are a sheared and scaled map of the user's), a factor ``a:b`` nested in
``a``, a group-level predictor ``ua`` of ``a``, and either a crossed factor ``c`` (the intercept is then
a fixed effect) or not (the intercept is then a group-level predictor of ``a``, and the centring of
``X`` moves into ``a``'s effects); priors Normal on the fixed effects with Huang & Wand, flat with the
inverse-Wishart, every scale-prior family; and a response in large units (``k != 1``). Values at random
points agree to 1e-9 relative, and the difference between two points to 1e-8 of that difference (the
value itself as well: improper priors contribute 0 on both sides). Power: the reference with
``Sigma_a`` doubled is far off, and so would be the library forgetting the scales of the slope columns
or of the response. Huang & Wand's normalised density (:meth:`~mlgibbs.priors.HuangWand.log_prob`) is
checked against the integral over the auxiliaries (``d = 2``) and against the half-t it reduces to
(``d = 1``); ``sample_stats.lp`` of a run equals the reference at its draws.

``var_names``: the kept variables equal those of a full run with the same key, the others are absent
from the posterior and have their running mean and sd in ``posterior_moments``, ``lp`` is reported
only for a complete run, the state's fields that are not needed are not recorded, and bad requests are
named.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from scipy import stats

import mlgibbs as mg
from mlgibbs.arviz import groups
from mlgibbs.logdensity import mixed_log_joint
from mlgibbs.priors import (Flat, HalfCauchy, HalfNormal, HalfStudentT, HuangWand, InverseGamma,
                            InverseWishart, Normal, Uniform)
from mlgibbs.run_mixed import _needed_fields, posterior_log_joint, user_scale_priors, variable_names

FORMULA = "y ~ x + ua + (1 + x | a) + (1 | a:b) + (1 | c)"
NESTED = "y ~ x + ua + (1 + x | a) + (1 | a:b)"

#: name -> (formula, priors, response units): every prior family, the intercept a fixed effect (crossed
#: factors) or a group-level predictor (nested only), and a response in large units (k != 1)
MODELS = {
    "huang-wand-normal": (FORMULA, {"beta": {"x": Normal(0.2, 0.5), "Intercept": Normal(3.0, 10.0),
                                             "ua": Normal(1.0, 2.0)},
                                    "sigma_y": HalfNormal(2.0), "a": HuangWand(2.0, [4.0, 0.05]),
                                    "a:b": HalfCauchy(1.0), "c": InverseGamma(2.0, 1.0)}, 1.0),
    "inverse-wishart-flat": (FORMULA, {"a": InverseWishart(4.0, [[1.0, 0.01], [0.01, 0.01]]),
                                       "a:b": HalfStudentT(3.0, 1.0)}, 1.0),
    "nested-intercept-group-level": (NESTED, {"beta": {"x": Normal(0.2, 0.5), "Intercept": Normal(3.0, 10.0)},
                                              "sigma_y": HalfStudentT(4.0, 1.0), "a:b": HalfNormal(1.0)}, 1.0),
    "default-large-units": (FORMULA, None, 1e7),
}


def x64(enabled: bool = True):
    """``jax.enable_x64`` (or the older experimental context)."""
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(enabled)
    from jax.experimental import disable_x64, enable_x64

    return enable_x64() if enabled else disable_x64()


def make_frame(seed=3, n=300, units=1.0):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 5, n)
    b = rng.integers(0, 3, n)
    c = rng.integers(0, 4, n)
    ua = np.array([0.3, -1.0, 0.5, 2.0, 1.1])[a]
    x = 1990 + 10 * rng.random(n)
    y = (3 + 0.2 * (x - 1995) + ua + rng.normal(size=n) + 0.5 * rng.normal(size=5)[a]
         + rng.normal(size=4)[c] + 0.3 * rng.normal(size=15)[3 * a + b])
    return pd.DataFrame({"y": units * y, "x": x, "ua": ua, "a": [f"A{i}" for i in a], "b": [f"B{i}" for i in b],
                         "c": [f"C{i}" for i in c]})


def build(name):
    formula, priors, units = MODELS[name]
    df = make_frame(units=units)
    with x64():
        model = mg.Model.from_formula(formula, df, priors=priors)
    return df, model


# ------------------------------------------------------------------ the reference, in SciPy
def huang_wand_logpdf_by_integration(cov, nu, A, nodes=100):
    """``log int IW(cov | nu + d - 1, 2 nu diag(1/a)) prod_k InvGamma(a_k | 1/2, 1/A_k^2) da`` for d = 2.

    Gauss-Legendre quadrature over ``u = log a`` (``da = a du``) on ``[-6, 16]`` around the peak of
    each ``a_k`` (below, the integrand falls as ``exp(-e^6)``; above, as ``exp(-(nu + d) u / 2)``:
    the truncation is below 1e-14 relative, and 100 nodes a side give about 1e-13 in the logarithm).
    """
    A = np.broadcast_to(np.asarray(A, float), (2,))
    m = nu + 1
    s = np.diag(np.linalg.inv(cov))
    peak = np.log(2 * (nu * s + 1 / A**2) / (m + 1))   # the mode of each factor's integrand in u
    x, w = np.polynomial.legendre.leggauss(nodes)
    lo, hi = -6.0, 16.0
    u = 0.5 * (hi - lo) * x + 0.5 * (hi + lo)
    w = 0.5 * (hi - lo) * w
    log_f = np.empty((nodes, nodes))
    for i, u1 in enumerate(peak[0] + u):
        for j, u2 in enumerate(peak[1] + u):
            a = np.exp(np.array([u1, u2]))
            log_f[i, j] = (stats.invwishart.logpdf(cov, m, 2 * nu * np.diag(1 / a))
                           + np.sum(stats.invgamma.logpdf(a, 0.5, scale=1 / A**2)) + u1 + u2)
    top = log_f.max()
    return float(top + math.log(np.sum(w[:, None] * w[None, :] * np.exp(log_f - top))))


def scale_logpdf(prior, sd):
    if isinstance(prior, Uniform):
        return 0.0
    if isinstance(prior, HalfNormal):
        return stats.halfnorm.logpdf(sd, scale=prior.scale)
    if isinstance(prior, HalfCauchy):
        return stats.halfcauchy.logpdf(sd, scale=prior.scale)
    if isinstance(prior, HalfStudentT):
        return math.log(2.0) + stats.t.logpdf(sd, prior.df, scale=prior.scale)
    if isinstance(prior, InverseGamma):  # on the variance; the density of sd = sqrt(variance)
        return stats.invgamma.logpdf(sd**2, prior.concentration, scale=prior.rate) + math.log(2.0 * sd)
    raise TypeError(prior)


def covariance_logpdf(prior, cov):
    if isinstance(prior, InverseWishart):
        return stats.invwishart.logpdf(cov, prior.df, np.asarray(prior.scale, float))
    return huang_wand_logpdf_by_integration(cov, prior.df, prior.scale)


def column(df, name):
    return np.ones(len(df)) if name == "Intercept" else df[name].to_numpy(float)


def groups_of(df, model, f):
    """Each observation's group (index into the factor's labels) and the group-level predictors ``U_f``
    (one row per group), from the raw columns (the group of ``a:b`` is ``"A1:B2"``)."""
    factor = model.factors[f]
    keys = df[list(factor.columns)].astype(str).agg(":".join, axis=1).to_numpy()
    index = {str(label): g for g, label in enumerate(factor.labels)}
    codes = np.array([index[k] for k in keys])
    first = np.array([np.flatnonzero(codes == g)[0] for g in range(len(factor.labels))])
    U = np.column_stack([column(df, pn)[first] for pn in model.group_predictors[f]] or [np.zeros((len(first), 0))])
    return codes, U


def reference_log_joint(df, model, given_priors, point):
    """The log joint density in the user's coordinates, from the data frame (float64 SciPy).

    Which fixed effect is in ``X`` and which a group-level predictor of which factor is read from the
    model's names (the documented placement rule), every value from ``df``; improper priors count 0.
    """
    given_priors = given_priors or {}
    beta_priors = given_priors.get("beta", {})
    y = df["y"].to_numpy(float)
    mean = sum((point["beta"][j] * column(df, name) for j, name in enumerate(model.predictors)), np.zeros(len(df)))
    lp = 0.0
    coefs = list(zip(model.predictors, point["beta"]))
    for f, factor in enumerate(model.factors):
        name = factor.name
        codes, U = groups_of(df, model, f)
        alpha, cov = point[f"alpha_{name}"], point[f"cov_{name}"]
        Z = np.column_stack([column(df, coef) for coef in factor.coef_names])
        mean = mean + np.sum(Z * alpha[codes], axis=1)
        centre = np.zeros_like(alpha)
        if model.group_predictors[f]:
            centre[:, factor.coef_names.index("Intercept")] = U @ point[f"gamma_{name}"]
            coefs += list(zip(model.group_predictors[f], point[f"gamma_{name}"]))
        lp += np.sum(stats.multivariate_normal.logpdf(alpha - centre, np.zeros(cov.shape[0]), cov))
        prior = given_priors.get(name)
        for (start, size), resolved in zip(factor.blocks, model.priors[name]):
            block = cov[start:start + size, start:start + size]
            block_prior = resolved if prior is None else prior   # the default is the model's (documented)
            if size == 1:
                lp += scale_logpdf(block_prior, math.sqrt(block[0, 0]))
            else:
                lp += covariance_logpdf(block_prior, block)
    for coef, value in coefs:
        coef_prior = beta_priors.get(coef, Flat())
        if isinstance(coef_prior, Normal):
            lp += stats.norm.logpdf(value, coef_prior.loc, coef_prior.scale)
    lp += np.sum(stats.norm.logpdf(y, mean, point["sigma_y"]))
    lp += scale_logpdf(given_priors.get("sigma_y", Uniform()), point["sigma_y"])
    return float(lp)


def random_point(rng, df, model):
    """A point of plausible size in the user's coordinates (standard deviations over a factor 10),
    built from the raw columns."""
    spread = float(np.std(df["y"]))
    X = np.column_stack([column(df, name) for name in model.predictors])
    coef, *_ = np.linalg.lstsq(X, df["y"].to_numpy(float), rcond=None)
    point = {"beta": coef + rng.normal(0.0, 0.1, coef.shape) * (1 + np.abs(coef)),
             "sigma_y": spread * float(np.exp(rng.uniform(-1.5, 0.0)))}
    for f, factor in enumerate(model.factors):
        J, d = len(factor.labels), len(factor.coef_names)
        scale = spread / np.sqrt(np.mean(np.column_stack([column(df, c) for c in factor.coef_names]) ** 2, axis=0))
        L = np.tril(rng.normal(0.0, 0.4, (d, d)) * scale[:, None])
        L[np.diag_indices(d)] = scale * np.exp(rng.uniform(-1.5, 0.5, d))
        cov = L @ L.T
        _, U = groups_of(df, model, f)
        gamma = rng.normal(0.0, 1.0, U.shape[1]) * spread
        centre = np.zeros((J, d))
        if gamma.size:
            centre[:, factor.coef_names.index("Intercept")] = U @ gamma
        point[f"alpha_{factor.name}"] = centre + rng.standard_normal((J, d)) @ L.T
        point[f"gamma_{factor.name}"] = gamma
        point[f"cov_{factor.name}"] = cov
    return point


def library_log_joint(model, point, data=None, z_scale=None):
    with x64():
        state = jax.tree.map(jnp.asarray, model.to_kernel(point))
        return float(mixed_log_joint(state, model.data if data is None else data, model.structure,
                                     user_scale_priors(model),
                                     model.transform.z_scale if z_scale is None else z_scale))


# ------------------------------------------------------------------ lp against the reference
@pytest.mark.parametrize("name", list(MODELS))
def test_lp_is_the_users_log_joint_density(name):
    df, model = build(name)
    assert model.dtype == np.float64
    if name == "default-large-units":
        assert model.transform.k != 1.0
    assert model.transform.z_scale[0][1] != 1.0
    if name.startswith("nested"):   # the intercept is a group-level predictor of a, its slope centred
        assert model.transform.intercept[:2] == ("factor", 0) and model.transform.coef_map_inv[0][0, 1] != 0.0
        assert model.group_predictors[0] == ("Intercept", "ua")
    else:
        assert model.transform.intercept[0] == "beta" and model.group_predictors[0] == ("ua",)
    rng = np.random.default_rng(7)
    points = [random_point(rng, df, model) for _ in range(2)]
    ours = [library_log_joint(model, p) for p in points]
    theirs = [reference_log_joint(df, model, MODELS[name][1], p) for p in points]
    np.testing.assert_allclose(ours, theirs, rtol=1e-9)
    difference = theirs[1] - theirs[0]
    assert abs(difference) > 1.0
    assert abs((ours[1] - ours[0]) - difference) <= 1e-8 * abs(difference)

    # power: the reference with Sigma_a doubled is far off; so would be the library forgetting the
    # scales of the slope columns or of the response
    wrong = dict(points[0], cov_a=2 * points[0]["cov_a"])
    assert abs(reference_log_joint(df, model, MODELS[name][1], wrong) - ours[0]) > 1.0
    ones = tuple(np.ones_like(z) for z in model.transform.z_scale)
    assert abs(library_log_joint(model, points[0], z_scale=ones) - theirs[0]) > 1.0
    if model.transform.k != 1.0:
        unit = model.data._replace(y_scale=jnp.ones_like(model.data.y_scale))
        assert abs(library_log_joint(model, points[0], data=unit) - theirs[0]) > 1.0


def test_lp_reported_by_sample_is_the_log_joint_of_its_draws():
    name = "huang-wand-normal"
    df, model = build(name)
    with x64():
        idata = mg.sample(1, model, num_chains=2, num_warmup=5, num_draws=3, check_convergence=False)
    lp = idata.sample_stats["lp"].values
    assert lp.shape == (2, 3) and lp.dtype == np.float64
    with x64():
        again = posterior_log_joint(model, idata.posterior)
        # a dict of arrays laid out as the posterior (mlgibbs.numpyro.mixed_nuts_draws) works the same
        from_dict = posterior_log_joint(model, {n: idata.posterior[n].values for n in idata.posterior.data_vars})
    np.testing.assert_allclose(again, lp, rtol=1e-10)
    np.testing.assert_array_equal(from_dict, again)
    post = idata.posterior
    for chain, draw in [(0, 0), (1, 2)]:
        point = {"beta": post["beta"].values[chain, draw], "sigma_y": float(post["sigma_y"].values[chain, draw])}
        for factor in model.factors:
            n = factor.name
            sd = post[f"sigma_{n}"].values[chain, draw]
            corr = post[f"corr_{n}"].values[chain, draw] if f"corr_{n}" in post else np.eye(sd.shape[0])
            point[f"alpha_{n}"] = post[f"alpha_{n}"].values[chain, draw]
            point[f"gamma_{n}"] = post[f"gamma_{n}"].values[chain, draw] if f"gamma_{n}" in post else np.zeros(0)
            point[f"cov_{n}"] = corr * sd[:, None] * sd[None, :]
        np.testing.assert_allclose(lp[chain, draw], reference_log_joint(df, model, MODELS[name][1], point),
                                   rtol=1e-8)


# ------------------------------------------------------------------ Huang & Wand's normalised density
@pytest.mark.parametrize("cov, A", [
    (np.array([[2.0, 0.3], [0.3, 0.5]]), [1.0, 1.0]),
    (np.array([[0.04, -0.01], [-0.01, 9.0]]), [0.5, 4.0]),
])
def test_huang_wand_density_is_the_integral_over_its_auxiliaries(cov, A):
    for nu in (2.0, 3.5):
        with x64():
            ours = float(HuangWand(nu, A).log_prob(jnp.asarray(cov)))
        np.testing.assert_allclose(ours, huang_wand_logpdf_by_integration(cov, nu, A), rtol=0, atol=1e-8)


def test_huang_wand_in_one_dimension_is_the_half_t_on_the_standard_deviation():
    nu, A = 3.0, 2.0
    for var in (0.1, 1.0, 30.0):
        with x64():
            ours = float(HuangWand(nu, A).log_prob(jnp.asarray([[var]])))
        sd = math.sqrt(var)   # p(var) = p(sd) / (2 sd)
        expected = math.log(2.0) + stats.t.logpdf(sd, nu, scale=A) - math.log(2 * sd)
        np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("prior", [InverseWishart(5.0, [[1.0, 0.2, 0.0], [0.2, 2.0, 0.1], [0.0, 0.1, 1.0]]),
                                   InverseWishart(3.5, 2.0), HuangWand(2.0, [1.0, 3.0, 0.5]), HuangWand(3.0, 2.0)])
def test_log_prob_from_precision_is_log_prob(prior):
    cov = np.array([[2.0, 0.3, 0.1], [0.3, 0.5, -0.2], [0.1, -0.2, 1.5]])
    with x64():
        direct = float(prior.log_prob(jnp.asarray(cov)))
        given = float(prior.log_prob_from_precision(jnp.asarray(np.linalg.inv(cov)),
                                                    np.linalg.slogdet(cov)[1]))
    np.testing.assert_allclose(given, direct, rtol=0, atol=1e-12)


# ------------------------------------------------------------------ var_names
@pytest.fixture(scope="module")
def runs():
    """The nested model (the intercept a group-level predictor of ``a``): a full run and one keeping
    ``a``'s effects (made of ``b_a`` and ``beta``), the scales of ``a:b`` and ``sigma_y``."""
    model = mg.Model.from_formula(NESTED, make_frame(), priors={"a:b": HalfNormal(1.0)})
    kwargs = dict(num_chains=2, num_warmup=30, num_draws=40, check_convergence=False)
    full = mg.sample(4, model, **kwargs)
    part = mg.sample(4, model, var_names=["alpha_a", "sigma_a:b", "sigma_y"], **kwargs)
    return model, full, part


def test_kept_variables_are_those_of_a_full_run_and_the_others_have_moments(runs):
    model, full, part = runs
    names = variable_names(model)
    assert names == list(full.posterior.data_vars)
    assert set(part.posterior.data_vars) == {"alpha_a", "sigma_a:b", "sigma_y"}
    for name in part.posterior.data_vars:
        np.testing.assert_array_equal(part.posterior[name].values, full.posterior[name].values)
        assert part.posterior[name].dims == full.posterior[name].dims
    moments = part.posterior_moments
    dropped = [n for n in names if n not in part.posterior]
    assert set(moments.data_vars) == {f"{n}_{s}" for n in dropped for s in ("mean", "sd")}
    for name in dropped:
        draws = full.posterior[name]
        assert moments[f"{name}_mean"].dims == ("chain", *draws.dims[2:])
        scale = float(np.abs(draws.values).max())
        np.testing.assert_allclose(moments[f"{name}_mean"].values, draws.mean("draw").values, rtol=0,
                                   atol=1e-5 * scale)
        np.testing.assert_allclose(moments[f"{name}_sd"].values, draws.std("draw").values, rtol=1e-3,
                                   atol=1e-5 * scale)
    # lp only for a run that stores every variable; no log likelihood by default without them
    assert "lp" in full.sample_stats and full.sample_stats["lp"].shape == (2, 40)
    assert "sample_stats" not in groups(part) and "log_likelihood" not in groups(part)


def test_only_the_fields_the_kept_variables_need_are_recorded(runs):
    model = runs[0]
    assert [f.name for f in model.factors] == ["a", "a:b"] and model.transform.intercept[:2] == ("factor", 0)
    need = _needed_fields(model, ["sigma_a:b", "sigma_y"])
    assert need.b == (False, False) and need.gamma == (False, False) and not need.beta
    assert need.cov == (False, True) and need.sigma_y
    need = _needed_fields(model, ["alpha_a"])   # the factor that holds the intercept: beta too
    assert need.b == (True, False) and need.beta and not need.sigma_y and need.cov == (False, False)
    need = _needed_fields(model, ["alpha_a:b", "corr_a"])
    assert need.b == (False, True) and not need.beta and need.cov == (True, False)
    _, crossed = build("huang-wand-normal")   # the intercept a fixed effect: the effects need no beta
    need = _needed_fields(crossed, ["alpha_a", "alpha_c", "gamma_a"])
    assert need.b == (True, False, True) and need.gamma == (True, False, False) and not need.beta


def test_dropped_effects_are_not_stored_per_draw(runs):
    """The compiled program's per-draw output holds only the recorded fields (shapes, nothing run)."""
    from mlgibbs.run_mixed import _aux, _layout, _program
    from mlgibbs.samplers.mixed import mixed_kernel

    model = runs[0]
    kept = ["alpha_a", "sigma_a:b", "sigma_y"]
    dropped = tuple(n for n in variable_names(model) if n not in kept)
    program = _program(mixed_kernel(model.structure, model.kernel_priors), _layout(model), 2, 40, True, False,
                       False, _needed_fields(model, kept), dropped, None)
    out = jax.eval_shape(program, jax.random.key(0), model.data, None, _aux(model), 30, 1)
    draws = out["draws"]
    J_a = len(model.factors[0].labels)
    assert draws.b[0].shape == (2, 40, J_a, 2) and draws.b[1] is None
    assert draws.gamma == (None, None) and draws.beta.shape == (2, 40, model.structure.p)
    assert draws.cov[0] is None and draws.cov[1].shape == (2, 40, 1, 1) and draws.sigma_y.shape == (2, 40)
    assert "lp" not in out and set(out["moments"][0]) == set(dropped)
    assert out["moments"][0]["alpha_a:b"].shape == (2, len(model.factors[1].labels), 1)


def test_var_names_errors_are_named(runs):
    model, full, part = runs
    kwargs = dict(num_chains=2, num_warmup=1, num_draws=2, check_convergence=False)
    with pytest.raises(ValueError, match=r"\['alpha'\].*alpha_a.*corr_a"):
        mg.sample(0, model, var_names=["alpha", "sigma_y"], **kwargs)
    with pytest.raises(ValueError, match="need every variable.*alpha_a"):
        mg.sample(0, model, var_names=["sigma_y"], log_likelihood=True, **kwargs)
    with pytest.raises(ValueError, match="need every variable"):
        mg.sample(0, model, var_names=["sigma_y"], posterior_predictive=True, **kwargs)
    with pytest.raises(ValueError, match="empty"):
        mg.sample(0, model, var_names=[], **kwargs)
    with pytest.raises(ValueError, match=r"lacks.*var_names"):
        mg.sample(0, model, initial_state=part, num_warmup=0, num_draws=2, num_chains=2)
    with pytest.raises(ValueError, match=r"lacks.*var_names"):
        mg.add_log_likelihood(part, model)
    with pytest.raises(ValueError, match="lacks"):
        posterior_log_joint(model, part.posterior)


def test_a_run_with_moments_saves_and_loads(runs, tmp_path):
    from mlgibbs.arviz import load, save

    part = runs[2]
    path = save(part, tmp_path / "part.nc")
    back = load(path)
    assert "posterior_moments" in groups(back)
    np.testing.assert_array_equal(back.posterior_moments["alpha_a:b_mean"].values,
                                  part.posterior_moments["alpha_a:b_mean"].values)

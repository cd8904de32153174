"""The failure classes of the first-five-minutes report: never NaN, never a silently wrong answer.

Each test below failed on the code before the model's standardized coordinates and the model-level
checks (``mlgibbs/models/standardize.py``, ``mlgibbs/models/checks.py``): NaN draws or a biased
posterior without a word. Now every case either gives the right posterior, shown against an
independent reference (a reparametrised model, or the same model in float64) within Monte Carlo
error, or is refused with a ValueError that says why and what to do.

* nearly collinear predictors (noise of 1e-4, 1e-6, 1e-9 of the scale): the identified sum of the
  two slopes agrees with the reparametrised model ``y ~ x1 + (x2 - x1)``, in float32 and float64;
* an uncentred quadratic of a year near 2000, and a response offset by 1e6, in float32: the
  posterior agrees with the float64 one;
* a response spread of 1e-25 (float32 underflow): the posterior is the rescaled one;
* improper posteriors (two groups, too few observations under uniform priors), a constant response,
  no variation within groups: ValueErrors naming the cause and a proper prior; the same data with a
  prior that makes the posterior proper sample without NaN;
* a response resolved more finely than float32 can store: a ValueError pointing to float64;
* bad prior parameters: a ValueError naming the block;
* continuing into another model: a ValueError saying what differs;
* the NaN guard: a kernel that produced NaN would raise, never return;
* the convergence warning and its switch; the log likelihood left out for size and added back;
* NaN errors on a filtered data frame name its index labels.

Comparisons of posterior means use ``z = (m_1 - m_2) / sqrt(mcse_1^2 + mcse_2^2)`` (ESS-based
Monte Carlo standard errors from ArviZ) against a Bonferroni threshold at family-wise level 1e-3 per
test, and posterior standard deviations must agree within 10% (their Monte Carlo error is about 2%
at the ESS these runs reach; the failures this guards against are NaN or errors of 10x and more).
"""

from __future__ import annotations

import warnings

import arviz as az
import jax
import numpy as np
import pandas as pd
import pytest
from scipy import stats

import mlgibbs as mg
from mlgibbs.arviz import groups, loo
from mlgibbs.priors import HalfNormal, InverseGamma, Normal

FAMILY_ALPHA = 1e-3
RUN = dict(num_chains=4, num_warmup=300, num_draws=1000)


def grouped_frame(seed=1, num_groups=30, per_group=20):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(num_groups), per_group)
    a = 0.5 * rng.normal(size=num_groups)
    return rng, g, a


def scalar_draws(idata, name, index=None):
    values = idata.posterior[name].values
    if index is not None:
        values = values[..., index]
    return np.asarray(values, np.float64)


def assert_same_posterior(draws_a: dict, draws_b: dict, what: str):
    """Means agree within Monte Carlo error (Bonferroni over the names); sds within 10%."""
    crit = stats.norm.isf(FAMILY_ALPHA / (2 * len(draws_a)))
    failures = []
    for name in draws_a:
        a, b = draws_a[name], draws_b[name]
        assert np.all(np.isfinite(a)) and np.all(np.isfinite(b)), f"{what}: {name} not finite"
        mcse = np.hypot(float(az.mcse(a, method="mean")), float(az.mcse(b, method="mean")))
        z = (a.mean() - b.mean()) / mcse
        ratio = a.std() / b.std()
        if abs(z) > crit or not 0.9 < ratio < 1.1:
            failures.append(f"{name}: means {a.mean():.5g} vs {b.mean():.5g} (z = {z:.2f}), sd ratio {ratio:.3f}")
    assert not failures, f"{what}: " + "; ".join(failures)


def fit(model, seed=0, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mg.ConvergenceWarning)
        return mg.sample(seed, model, **{**RUN, **kwargs})


# --------------------------------------------------------------------------- near collinearity
@pytest.mark.parametrize("sampler", ["gibbs", "collapsed", "px", "grid"])
@pytest.mark.parametrize("noise", [1e-4, 1e-6, 1e-9])
def test_nearly_collinear_predictors_float32(noise, sampler):
    """Two predictors equal up to ``noise``: the sum of their slopes is identified and comes out
    right (against ``y ~ x1 + d``, ``d = x2 - x1``, whose ``x1`` coefficient is that sum)."""
    rng, g, a = grouped_frame()
    x1 = rng.normal(size=g.size)
    x2 = x1 + noise * rng.normal(size=g.size)
    y = a[g] + x1 + x2 + rng.normal(size=g.size)
    frame = pd.DataFrame({"y": y, "x1": x1, "x2": x2, "d": x2 - x1, "g": g})
    collinear = fit(mg.Model.from_formula("y ~ x1 + x2 + (1 | g)", frame), sampler=sampler)
    reference = fit(mg.Model.from_formula("y ~ x1 + d + (1 | g)", frame), seed=1, sampler="collapsed")
    beta = scalar_draws(collinear, "beta")
    assert_same_posterior(
        {"beta[x1] + beta[x2]": beta[..., 0] + beta[..., 1], "sigma_y": scalar_draws(collinear, "sigma_y"),
         "sigma_alpha": scalar_draws(collinear, "sigma_alpha")},
        {"beta[x1] + beta[x2]": scalar_draws(reference, "beta", 0),
         "sigma_y": scalar_draws(reference, "sigma_y"), "sigma_alpha": scalar_draws(reference, "sigma_alpha")},
        f"noise {noise}, {sampler}")


def test_nearly_collinear_predictors_float64():
    """The same at 1e-9 in float64, where forming X'X (condition number 1e18) failed too."""
    rng, g, a = grouped_frame(seed=2)
    x1 = rng.normal(size=g.size)
    x2 = x1 + 1e-9 * rng.normal(size=g.size)
    y = a[g] + x1 + x2 + rng.normal(size=g.size)
    frame = pd.DataFrame({"y": y, "x1": x1, "x2": x2, "d": x2 - x1, "g": g})
    with jax.enable_x64(True):
        collinear = fit(mg.Model.from_formula("y ~ x1 + x2 + (1 | g)", frame, dtype=np.float64),
                        sampler="gibbs")
        reference = fit(mg.Model.from_formula("y ~ x1 + d + (1 | g)", frame, dtype=np.float64), seed=1)
    beta = scalar_draws(collinear, "beta")
    assert_same_posterior({"sum": beta[..., 0] + beta[..., 1]}, {"sum": scalar_draws(reference, "beta", 0)},
                          "noise 1e-9, float64")


# --------------------------------------------------------------------------- badly scaled data
def _compare_float32_float64(frame, formula, names, what, sampler="px"):
    model32 = mg.Model.from_formula(formula, frame)
    run32 = fit(model32, sampler=sampler)
    with jax.enable_x64(True):
        run64 = fit(mg.Model.from_formula(formula, frame, dtype=np.float64), seed=1, sampler=sampler)
    pick = {}
    for label, (name, index, offset) in names.items():
        pick[label] = (scalar_draws(run32, name, index) - offset, scalar_draws(run64, name, index) - offset)
    assert_same_posterior({k: v[0] for k, v in pick.items()}, {k: v[1] for k, v in pick.items()}, what)


@pytest.mark.parametrize("sampler", ["gibbs", "px", "grid"])
def test_uncentred_quadratic_of_a_year_float32(sampler):
    """``y ~ year + I(year**2) + (1 | g)`` with year near 2000: all NaN in float32 before."""
    rng, g, a = grouped_frame(seed=3)
    year = rng.integers(1990, 2011, size=g.size).astype(float)
    y = a[g] + 0.1 * (year - 2000) - 0.01 * (year - 2000) ** 2 + rng.normal(size=g.size)
    frame = pd.DataFrame({"y": y, "year": year, "g": g})
    _compare_float32_float64(frame, "y ~ year + I(year**2) + (1 | g)", {
        "beta[year]": ("beta", 0, 0.0), "beta[year^2]": ("beta", 1, 0.0),
        "sigma_y": ("sigma_y", None, 0.0), "sigma_alpha": ("sigma_alpha", None, 0.0),
        "alpha[0] - alpha[1]": ("alpha", 0, 0.0),
    }, f"year quadratic, {sampler}", sampler=sampler)


def test_response_offset_by_a_million_float32():
    """``y + 1e6`` in float32: sigma_alpha came out 0.49 and sigma_y 0.79 for 0.31 and 0.75."""
    rng, g, _ = grouped_frame(seed=4, num_groups=40, per_group=10)
    a = 0.31 * rng.normal(size=40)
    x = rng.normal(size=g.size)
    y = 1e6 + a[g] + 0.2 * x + 0.75 * rng.normal(size=g.size)
    frame = pd.DataFrame({"y": y, "x": x, "g": g})
    _compare_float32_float64(frame, "y ~ x + (1 | g)", {
        "sigma_y": ("sigma_y", None, 0.0), "sigma_alpha": ("sigma_alpha", None, 0.0),
        "gamma[Intercept] - 1e6": ("gamma", 0, 1e6), "alpha[3] - 1e6": ("alpha", 3, 1e6),
        "beta[x]": ("beta", 0, 0.0),
    }, "offset 1e6")


def test_tiny_response_scale_float32():
    """A response in units where its spread is 1e-25 (variances underflow float32): the posterior
    is the rescaled posterior of the same data in ordinary units."""
    rng, g, a = grouped_frame(seed=5)
    x = rng.normal(size=g.size)
    y = a[g] + 0.5 * x + rng.normal(size=g.size)
    # proper scale priors in the matching units: the model rescales them along with the response
    tiny = fit(mg.Model.from_arrays(1e-25 * y, x, g, priors={
        "sigma_alpha": HalfNormal(0.5e-25), "sigma_y": InverseGamma(3.0, 2.0e-50)}))
    plain = fit(mg.Model.from_arrays(y, x, g, priors={
        "sigma_alpha": HalfNormal(0.5), "sigma_y": InverseGamma(3.0, 2.0)}), seed=1)
    assert_same_posterior(
        {k: 1e25 * scalar_draws(tiny, k) for k in ("sigma_y", "sigma_alpha")}
        | {"beta": 1e25 * scalar_draws(tiny, "beta", 0)},
        {k: scalar_draws(plain, k) for k in ("sigma_y", "sigma_alpha")} | {"beta": scalar_draws(plain, "beta", 0)},
        "spread 1e-25")


# --------------------------------------------------------------------------- improper posteriors
def two_groups():
    rng = np.random.default_rng(6)
    g = np.repeat([0, 1], 30)
    return pd.DataFrame({"y": rng.normal(size=60) + 0.3 * g, "x": rng.normal(size=60), "g": g})


def test_two_groups_under_uniform_prior_is_improper():
    with pytest.raises(ValueError, match=r"improper.*2 groups of 'g'.*sigma_alpha.*HalfNormal"):
        mg.Model.from_formula("y ~ x + (1 | g)", two_groups())


@pytest.mark.parametrize("sampler", ["gibbs", "collapsed", "px", "grid"])
def test_two_groups_with_a_proper_prior_sample_without_nan(sampler):
    model = mg.Model.from_formula("y ~ x + (1 | g)", two_groups(), priors={"sigma_alpha": HalfNormal(1.0)})
    idata = fit(model, sampler=sampler)
    for name in ("alpha", "beta", "gamma", "sigma_y", "sigma_alpha"):
        assert np.all(np.isfinite(idata.posterior[name].values)), name
    # the half-normal prior caps sigma_alpha: its posterior cannot run off to the thousands
    assert np.quantile(idata.posterior["sigma_alpha"].values, 0.99) < 4.0


def test_group_level_coefficients_use_up_the_groups():
    """Three groups with an intercept and a group-level slope (both flat): improper; proper with a
    Normal prior on gamma."""
    rng = np.random.default_rng(7)
    g = np.repeat([0, 1, 2], 10)
    u = np.array([0.1, 0.5, 0.2])[g]
    frame = pd.DataFrame({"y": rng.normal(size=30), "x": rng.normal(size=30), "u": u, "g": g})
    with pytest.raises(ValueError, match="improper.*3 groups.*2 flat group-level"):
        mg.Model.from_formula("y ~ x + u + (1 | g)", frame)
    mg.Model.from_formula("y ~ x + u + (1 | g)", frame, priors={"gamma": Normal(0.0, 5.0)})


def test_too_few_observations_for_a_uniform_sigma_y():
    with pytest.raises(ValueError, match="improper.*3 observations.*sigma_y"):
        mg.Model.from_arrays([1.0, 2.0, 4.0], np.column_stack([np.ones(3), [0.0, 1.0, 3.0]]))


def test_constant_response():
    rng, g, _ = grouped_frame(seed=8)
    frame = pd.DataFrame({"y": np.full(g.size, 3.0), "x": rng.normal(size=g.size), "g": g})
    with pytest.raises(ValueError, match="'y' is constant"):
        mg.Model.from_formula("y ~ x + (1 | g)", frame)
    with pytest.raises(ValueError, match="'y' is constant"):
        mg.Model.from_formula("y ~ x", frame)


def test_no_variation_within_groups():
    rng, g, a = grouped_frame(seed=9)
    frame = pd.DataFrame({"y": a[g], "x": rng.normal(size=g.size), "g": g})
    with pytest.raises(ValueError, match="fitted exactly.*improper.*Uniform prior on sigma_y.*InverseGamma"):
        mg.Model.from_formula("y ~ x + (1 | g)", frame)
    with pytest.raises(ValueError, match="fitted exactly.*HalfNormal prior on sigma_y"):
        mg.Model.from_formula("y ~ x + (1 | g)", frame, priors={"sigma_y": HalfNormal(1.0)})
    # an inverse-gamma prior vanishes at 0: proper, and sampled without NaN
    model = mg.Model.from_formula("y ~ x + (1 | g)", frame, priors={"sigma_y": InverseGamma(2.0, 0.01)})
    idata = fit(model, num_draws=200)
    assert np.all(np.isfinite(idata.posterior["sigma_y"].values))


def test_response_copying_a_predictor():
    rng = np.random.default_rng(10)
    x = rng.normal(size=50)
    with pytest.raises(ValueError, match="fitted exactly"):
        mg.Model.from_formula("y ~ x", pd.DataFrame({"y": 2.0 * x + 1.0, "x": x}))


def test_noise_below_float32_resolution():
    """Noise of 1e-9 on a signal of order 1: float32 rounds the statistics by far more than a
    posterior sd; refused with a pointer to float64, and fine in float64."""
    rng, g, a = grouped_frame(seed=11)
    x = rng.normal(size=g.size)
    frame = pd.DataFrame({"y": a[g] + x + 1e-9 * rng.normal(size=g.size), "x": x, "g": g})
    with pytest.raises(ValueError, match="float32 cannot resolve.*float64"):
        mg.Model.from_formula("y ~ x + (1 | g)", frame)
    with jax.enable_x64(True):
        model = mg.Model.from_formula("y ~ x + (1 | g)", frame, dtype=np.float64)
        idata = fit(model, num_draws=200)
    sigma_y = idata.posterior["sigma_y"].values
    assert np.all(np.isfinite(sigma_y)) and 0.5e-9 < np.median(sigma_y) < 2e-9


@pytest.mark.parametrize("block, prior, text", [
    ("sigma_alpha", HalfNormal(-1.0), "HalfNormal scale must be positive"),
    ("sigma_y", InverseGamma(0.0, 1.0), "InverseGamma concentration must be positive"),
    ("beta", Normal(0.0, 0.0), "Normal scale"),
    ("gamma", Normal(np.nan, 1.0), "Normal loc must be finite"),
])
def test_bad_prior_parameters(block, prior, text):
    rng, g, a = grouped_frame(seed=12)
    frame = pd.DataFrame({"y": a[g] + rng.normal(size=g.size), "x": rng.normal(size=g.size), "g": g})
    with pytest.raises(ValueError, match=rf"priors\['{block}'\].*{text}"):
        mg.Model.from_formula("y ~ x + (1 | g)", frame, priors={block: prior})


# --------------------------------------------------------------------------- runs
@pytest.fixture(scope="module")
def small():
    rng, g, a = grouped_frame(seed=13, num_groups=8, per_group=10)
    frame = pd.DataFrame({"y": a[g] + rng.normal(size=g.size), "x": rng.normal(size=g.size),
                          "z": rng.normal(size=g.size), "g": g, "h": g % 4})
    model = mg.Model.from_formula("y ~ x + (1 | g)", frame)
    return frame, model, fit(model, num_draws=50, num_warmup=20)


@pytest.mark.parametrize("formula, text", [
    ("y ~ x + z + (1 | g)", r"beta's 'predictor' has 1 entries, this model 2 \(only in the model: \['z'\]\)"),
    ("y ~ x + (1 | h)", r"alpha has dims \('g',\), this model \('h',\)"),
    ("y ~ x", r"the draws have \['alpha', 'gamma', 'sigma_alpha'\], which this model does not"),
])
def test_continuing_into_another_model(small, formula, text):
    frame, _, idata = small
    other = mg.Model.from_formula(formula, frame, priors={"sigma_alpha": HalfNormal(1.0)})
    with pytest.raises(ValueError, match="initial_state holds draws of another model: .*" + text):
        mg.sample(0, other, initial_state=idata, num_warmup=0, num_draws=5)


def test_a_kernel_that_returns_nan_raises(small, monkeypatch):
    """The guard behind every run: non-finite draws are never returned."""
    from mlgibbs import samplers
    from mlgibbs.samplers.gibbs import gibbs_kernel

    def broken(priors, structure):
        kernel = gibbs_kernel(priors, structure)

        def step(key, state, data):
            state = kernel.step(key, state, data)
            return state._replace(sigma_alpha=state.sigma_alpha * jax.numpy.nan)

        return kernel._replace(step=step)

    monkeypatch.setitem(samplers.SAMPLERS, "broken", broken)
    _, model, _ = small
    with pytest.raises(FloatingPointError, match="'broken' sampler produced non-finite values of (alpha|sigma_alpha)"):
        mg.sample(0, model, sampler="broken", num_draws=5, num_warmup=0)


def test_convergence_warning_names_the_variables():
    """The five-step sampler on radon for 60 sweeps: sigma_alpha has not mixed; warn, naming it."""
    model = mg.Model.from_formula("log_radon ~ floor + log_uranium + (1 | county)", mg.datasets.load_radon())
    with pytest.warns(mg.ConvergenceWarning, match=r"not yet usable.*sigma_alpha.*check_convergence=False"):
        mg.sample(0, model, sampler="gibbs", num_warmup=0, num_draws=60)
    with warnings.catch_warnings():
        warnings.simplefilter("error", mg.ConvergenceWarning)
        mg.sample(0, model, sampler="gibbs", num_warmup=0, num_draws=60, check_convergence=False)
        # a run that has converged passes the screen silently
        mg.sample(1, model, sampler="collapsed", num_warmup=200, num_draws=500)


def test_uncentred_predictor_mixes_in_standardized_coordinates():
    """A predictor near 50 (sd 3): in the raw coordinates the five-step sampler's ``beta`` and the
    intercept are almost collinear through ``alpha`` and barely move (R-hat near 1.6 on a 31,000-row,
    2,400-group version, reported without a word before); centred, the same sampler mixes them. Both
    halves are checked: the warning fires on the raw run, and not on the standardized one."""
    rng = np.random.default_rng(14)
    n, J = 4000, 300
    g = rng.integers(0, J, n)
    u = rng.normal(size=J)
    x = 50.0 + 3.0 * rng.normal(size=n)
    y = 2.0 + 0.5 * u[g] + 0.3 * rng.normal(size=J)[g] + 0.1 * x + rng.normal(size=n)
    frame = pd.DataFrame({"y": y, "x": x, "u": u[g], "g": g})
    raw = mg.Model.from_formula("y ~ x + u + (1 | g)", frame, standardize=False)
    with pytest.warns(mg.ConvergenceWarning, match=r"beta"):
        mg.sample(0, raw, sampler="gibbs", num_warmup=300, num_draws=500, log_likelihood=False)
    centred = mg.Model.from_formula("y ~ x + u + (1 | g)", frame)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", mg.ConvergenceWarning)
        mg.sample(0, centred, sampler="gibbs", num_warmup=300, num_draws=500, log_likelihood=False)
    # (sigma_alpha's slow mixing under the five-step sampler is another matter, and may be reported)
    flagged = " ".join(str(w.message) for w in caught if issubclass(w.category, mg.ConvergenceWarning))
    assert "beta" not in flagged and "gamma" not in flagged, flagged


def test_log_likelihood_left_out_and_added_back(small, monkeypatch):
    from mlgibbs import run

    _, model, _ = small
    monkeypatch.setattr(run, "MAX_LOG_LIKELIHOOD_VALUES", 10)
    with pytest.warns(UserWarning, match=r"az.loo will not find it.*mg.add_log_likelihood\(idata, model\)"):
        idata = fit(model, num_draws=200)
    assert "log_likelihood" not in groups(idata)
    idata = mg.add_log_likelihood(idata, model)
    assert "log_likelihood" in groups(idata)
    full = fit(model, num_draws=200, log_likelihood=True)
    np.testing.assert_allclose(idata.log_likelihood[model.response].values,
                               full.log_likelihood[model.response].values, rtol=1e-6)
    assert np.isfinite(loo(idata).elpd)


def test_missing_values_of_a_filtered_frame_are_named_by_index_label():
    radon = mg.datasets.load_radon()
    filtered = radon[radon["floor"] == 1].copy()
    labels = filtered.index[[3, 4]]
    filtered.loc[labels, "log_radon"] = np.nan
    with pytest.raises(ValueError, match=rf"'log_radon' has 2 missing.*index labels {labels[0]}, {labels[1]}"):
        mg.Model.from_formula("log_radon ~ log_uranium + (1 | county)", filtered)

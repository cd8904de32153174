"""The general multilevel model as users meet it: building, bad input, names, continuation, predictions.

The statistics of the sampler are tested in ``test_mixed_exact.py`` (location block against the closed
form), ``test_mixed_geweke.py`` (joint-distribution test) and ``test_mixed_nuts.py`` (agreement with
NUTS); here: every refusal names what is at fault, the output follows the documented names, the same
key gives the same draws, continuing a run equals one long run, and predictions equal the posterior
draws they are made of.
"""

from __future__ import annotations

import warnings

import jax
import numpy as np
import pandas as pd
import pytest

import mlgibbs as mg
from mlgibbs.models.mixed import MixedModel
from mlgibbs.models.terms import NestingWarning


@pytest.fixture(scope="module")
def sleep():
    return mg.datasets.load_sleepstudy()


@pytest.fixture(scope="module")
def sleep_fit(sleep):
    model = mg.Model.from_formula("Reaction ~ Days + (1 + Days | Subject)", sleep)
    idata = mg.sample(0, model, num_chains=2, num_warmup=100, num_draws=150, check_convergence=False)
    return model, idata


def small_frame(seed=0, n=80):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"y": rng.normal(size=n), "x": rng.normal(size=n),
                         "g": rng.choice(list("abcde"), n), "h": rng.choice(list("uvw"), n),
                         "name": rng.choice(["p", "q"], n)})


# ------------------------------------------------------------------ bad input, named
def test_a_slope_column_that_is_not_numeric_is_named():
    with pytest.raises(ValueError, match="name"):
        mg.Model.from_formula("y ~ x + (1 + name | g)", small_frame())


def test_a_factor_with_one_level_is_named():
    df = small_frame().assign(one="z")
    with pytest.raises(ValueError, match="one"):
        mg.Model.from_formula("y ~ x + (1 | g) + (1 | one)", df)


def test_a_rank_deficient_term_is_named():
    df = small_frame().assign(x2=lambda d: 2 * d["x"])
    with pytest.raises(ValueError, match="x2"):
        mg.Model.from_formula("y ~ 1 + (1 + x + x2 | g)", df)


def test_an_unknown_factor_is_named():
    with pytest.raises(ValueError, match="county"):
        mg.Model.from_formula("y ~ x + (1 + x | county)", small_frame())


def test_nan_in_a_factor_is_named_with_its_index_label():
    df = small_frame()
    df.loc[7, "h"] = None
    with pytest.raises(ValueError, match=r"'h'.*7"):
        mg.Model.from_formula("y ~ x + (1 | g) + (1 | h)", df)


def test_unknown_prior_keys_name_the_factors():
    with pytest.raises(ValueError, match="'g'"):
        mg.Model.from_formula("y ~ x + (1 + x | g)", small_frame(), priors={"county": mg.priors.HalfNormal(1)})


def test_a_scalar_prior_on_a_correlated_term_is_refused():
    with pytest.raises(TypeError, match="covariance prior"):
        mg.Model.from_formula("y ~ x + (1 + x | g)", small_frame(), priors={"g": mg.priors.HalfNormal(1.0)})


def test_too_few_groups_under_a_uniform_scale_is_improper():
    df = small_frame().assign(two=lambda d: np.where(d["x"] > 0, "A", "B"))
    with pytest.raises(ValueError, match="improper"):
        mg.Model.from_formula("y ~ x + (1 | two) + (1 | g)", df)
    mg.Model.from_formula("y ~ x + (1 | two) + (1 | g)", df, priors={"two": mg.priors.HalfNormal(1.0)})


def test_implicit_nesting_warns_and_explicit_nesting_does_not():
    rng = np.random.default_rng(2)
    state = rng.choice(["S1", "S2", "S3"], 300)
    county = np.array([f"c{rng.integers(0, 6)}" for _ in range(300)])
    county = np.where(county == "c0", "c0", np.char.add(county, state))  # c0 repeats across states
    df = pd.DataFrame({"y": rng.normal(size=300), "state": state, "county": county})
    with pytest.warns(NestingWarning, match="state/county"):
        mg.Model.from_formula("y ~ 1 + (1 | state) + (1 | county)", df,
                              priors={"state": mg.priors.HalfNormal(1.0)})
    with warnings.catch_warnings():
        warnings.simplefilter("error", NestingWarning)
        mg.Model.from_formula("y ~ 1 + (1 | state/county)", df, priors={"state": mg.priors.HalfNormal(1.0)})


# ------------------------------------------------------------------ structure and names
def test_fixed_columns_go_to_the_coarsest_factor_they_are_constant_in():
    radon = mg.datasets.load_radon(state=None)
    model = mg.Model.from_formula("log_radon ~ floor + log_uranium + (1 | state/fips)", radon)
    assert isinstance(model, MixedModel)
    assert model.predictors == ("floor",)
    assert model.group_predictors == (("Intercept",), ("log_uranium",))
    assert [[model.factors[f].name for f in c] for c in model.structure.chains] == [["state", "state:fips"]]


def test_columns_constant_within_crossed_factors_stay_fixed_effects():
    pen = mg.datasets.load_penicillin()
    model = mg.Model.from_formula("diameter ~ 1 + (1 | plate) + (1 | sample)", pen)
    assert model.predictors == ("Intercept",)
    assert model.group_predictors == ((), ())
    # a column constant within one factor only still goes to that factor, beside a crossed one
    pen = pen.assign(u=pen["sample"].astype(str).map({s: i * 0.3 for i, s in enumerate("ABCDEF")}).astype(float))
    model = mg.Model.from_formula("diameter ~ 1 + u + (1 | plate) + (1 | sample)", pen)
    sample = [f.name for f in model.factors].index("sample")
    assert model.predictors == ("Intercept",)
    assert model.group_predictors[sample] == ("u",)
    # the flat intercept counts against each crossed factor's groups under a uniform scale (J - 1 >= 2)
    two = pen[pen["sample"].astype(str).isin(["A", "B"])]
    with pytest.raises(ValueError, match="improper"):
        mg.Model.from_formula("diameter ~ 1 + (1 | plate) + (1 | sample)", two)


def test_output_names_dims_and_coords(sleep_fit):
    model, idata = sleep_fit
    post = idata.posterior
    assert set(post.data_vars) == {"beta", "alpha_Subject", "gamma_Subject", "sigma_Subject", "corr_Subject",
                                   "sigma_y"}
    assert post["alpha_Subject"].dims == ("chain", "draw", "Subject", "Subject_coef")
    assert list(post["Subject_coef"].values) == ["Intercept", "Days"]
    assert list(post["predictor"].values) == ["Days"]
    assert post["corr_Subject"].dims == ("chain", "draw", "Subject_coef", "Subject_coef_bis")
    np.testing.assert_allclose(post["corr_Subject"].values[..., 0, 0], 1.0)
    assert idata.log_likelihood["Reaction"].shape == (2, 150, 180)
    loo = mg.loo(idata)
    assert np.isfinite(loo.elpd)


def test_same_key_same_draws_and_float64(sleep):
    model = mg.Model.from_formula("Reaction ~ Days + (1 + Days | Subject)", sleep)
    a = mg.sample(3, model, num_chains=2, num_warmup=20, num_draws=30, check_convergence=False)
    b = mg.sample(3, model, num_chains=2, num_warmup=20, num_draws=30, check_convergence=False)
    np.testing.assert_array_equal(a.posterior["alpha_Subject"].values, b.posterior["alpha_Subject"].values)
    with jax.enable_x64(True):
        m64 = mg.Model.from_formula("Reaction ~ Days + (1 + Days | Subject)", sleep)
        assert m64.dtype == np.float64
        c = mg.sample(3, m64, num_chains=2, num_warmup=20, num_draws=30, check_convergence=False)
    assert c.posterior["sigma_y"].dtype == np.float64 and np.all(np.isfinite(c.posterior["sigma_y"].values))


def test_continuing_a_run_equals_one_long_run_in_distribution_and_checks_the_model(sleep, sleep_fit):
    model, idata = sleep_fit
    more = mg.sample(1, model, num_chains=2, num_warmup=0, num_draws=50, initial_state=idata,
                     check_convergence=False)
    assert more.posterior["alpha_Subject"].shape == (2, 50, 18, 2)
    other = mg.Model.from_formula("Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", sleep)
    with pytest.raises(ValueError, match="another model"):
        mg.sample(1, other, num_chains=2, num_warmup=0, num_draws=5, initial_state=idata)


# ------------------------------------------------------------------ predictions
def test_predictions_for_known_groups_are_the_posterior_draws(sleep_fit):
    model, idata = sleep_fit
    new = pd.DataFrame({"Days": [0.0, 5.0], "Subject": [308, 372]}, index=["a", "b"])
    pred = mg.predict(idata, model, new, observations=False).predictions["mu"]
    post = idata.posterior
    for i, (days, subject) in enumerate([(0.0, 308), (5.0, 372)]):
        coef = post["alpha_Subject"].sel(Subject=subject).values
        expected = coef[..., 0] + days * (coef[..., 1] + post["beta"].values[..., 0])
        np.testing.assert_allclose(pred.values[..., i], expected, rtol=1e-12)
    assert list(pred["obs_id"].values) == ["a", "b"]


def test_predictions_for_a_new_level_follow_the_population(sleep_fit):
    model, idata = sleep_fit
    new = pd.DataFrame({"Days": [0.0], "Subject": ["new"]})
    pred = mg.predict(idata, model, new, observations=False, rng_key=1).predictions["mu"].values[..., 0]
    post = idata.posterior
    mean = post["gamma_Subject"].values[..., 0]
    sd = post["sigma_Subject"].values[..., 0]
    z = (pred - mean) / sd   # N(0, 1) draws given each posterior draw
    n = z.size
    assert abs(z.mean()) < 5 / np.sqrt(n)
    assert abs(z.var() - 1) < 5 * np.sqrt(2 / n)
    with pytest.raises(ValueError, match="Subject"):
        mg.predict(idata, model, new, new_levels="error")


def test_predictions_refuse_missing_columns_and_unseen_categories():
    df = small_frame().assign(kind=lambda d: np.where(d["x"] > 0, "hi", "lo"))
    model = mg.Model.from_formula("y ~ x + C(kind) + (1 | g) + (1 | h)", df)
    idata = mg.sample(0, model, num_chains=1, num_warmup=10, num_draws=10, check_convergence=False)
    with pytest.raises(ValueError, match="kind"):
        mg.predict(idata, model, pd.DataFrame({"x": [0.0], "g": ["a"], "h": ["u"]}))
    with pytest.raises(ValueError, match="h"):
        mg.predict(idata, model, pd.DataFrame({"x": [0.0], "kind": ["hi"], "g": ["a"]}))
    with pytest.raises(ValueError, match="levels"):
        mg.predict(idata, model, pd.DataFrame({"x": [0.0], "kind": ["mid"], "g": ["a"], "h": ["u"]}))


# ------------------------------------------------------------------ arrays
def test_from_arrays_is_the_formula_model():
    df = small_frame()
    by_formula = mg.Model.from_formula("y ~ x + (1 + x | g) + (1 | h)", df)
    by_arrays = mg.Model.from_arrays(df["y"].to_numpy(), df[["x"]], terms=[
        mg.Term(df["g"].to_numpy(), df[["x"]], name="g"), mg.Term(df["h"].to_numpy(), name="h")])
    assert isinstance(by_arrays, MixedModel)
    assert by_arrays.structure == by_formula.structure
    a = mg.sample(0, by_formula, num_chains=2, num_warmup=10, num_draws=20, check_convergence=False)
    b = mg.sample(0, by_arrays, num_chains=2, num_warmup=10, num_draws=20, check_convergence=False)
    for name in ("beta", "alpha_g", "sigma_h", "corr_g", "sigma_y"):
        np.testing.assert_allclose(a.posterior[name].values, b.posterior[name].values, rtol=1e-6, atol=1e-9)


def test_from_arrays_names_bad_terms():
    df = small_frame()
    with pytest.raises(ValueError, match="'g'"):
        mg.Model.from_arrays(df["y"], df[["x"]], terms=[mg.Term(df["g"].to_numpy()[:10], name="g")])
    with pytest.raises(TypeError, match="terms\\[0\\]"):
        mg.Model.from_arrays(df["y"], df[["x"]], terms=[("g",)])
    with pytest.raises(ValueError, match="group="):
        mg.Model.from_arrays(df["y"], df[["x"]], group=df["g"], terms=[mg.Term(df["h"], name="h")])


def test_add_log_likelihood_equals_the_one_sample_computes(sleep_fit):
    model, idata = sleep_fit
    stored = idata.log_likelihood["Reaction"].values
    bare = mg.sample(0, model, num_chains=2, num_warmup=100, num_draws=150, check_convergence=False,
                     log_likelihood=False)
    assert "log_likelihood" not in mg.groups(bare)
    mg.add_log_likelihood(bare, model)
    np.testing.assert_allclose(bare.log_likelihood["Reaction"].values, stored, rtol=1e-4, atol=1e-4)


def test_save_load_and_continue_a_nested_run(tmp_path):
    model = mg.Model.from_formula("strength ~ 1 + (1 | batch/cask)", mg.datasets.load_pastes())
    idata = mg.sample(0, model, num_chains=2, num_warmup=20, num_draws=20, check_convergence=False)
    back = mg.load(mg.save(idata, tmp_path / "pastes.nc"))
    np.testing.assert_array_equal(back.posterior["alpha_batch:cask"].values,
                                  idata.posterior["alpha_batch:cask"].values)
    more = mg.sample(1, model, num_chains=2, num_warmup=0, num_draws=5, initial_state=back,
                     check_convergence=False)
    assert more.posterior["alpha_batch:cask"].shape == (2, 5, 30, 1)

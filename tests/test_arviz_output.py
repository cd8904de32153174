"""ArviZ output of :func:`mlgibbs.sample`: groups, dims, coordinates and the values they hold.

What is tested
--------------
* Groups: ``posterior``, ``sample_stats``, ``observed_data``, ``log_likelihood`` (on by default)
  and ``posterior_predictive`` only on request, shaped ``(chain, draw, n)`` with values distributed
  as the model says.
* Layout: every variable is ``(chain, draw, ...)``; ``alpha``'s dimension is named after the
  grouping column (``county``, ``school``) with the group labels as coordinates; ``beta`` and
  ``gamma`` carry the design-column names; the pooled model has no ``alpha``/``gamma``/``sigma_alpha``;
  a grouping column named like one of the other dimensions (``draw``, ``predictor``, ...) is either
  refused when the model is built or kept apart, never a failure after sampling.
* ArviZ functions run on the output: ``az.summary``, ``az.loo``, ``az.compare``, ``az.ess``,
  ``az.rhat``; and mlgibbs' version-independent wrappers of them (:mod:`mlgibbs.arviz`) give the
  same columns, signs and full precision under ArviZ 0.x and 1.x, checked against the definitions:
  ``summary`` against ``az.ess``/``az.rhat``/NumPy on the draws, ``loo`` against the sum of its
  pointwise values, ``compare`` against differences of the pointwise values.
* Which container: ``arviz.InferenceData`` under ArviZ 0.x, ``xarray.DataTree`` under 1.x; producing
  it emits no ArviZ ``MigrationWarning`` (ArviZ 1.x warns when ``arviz.InferenceData`` is looked up,
  so the version is read first), checked on both stacks with a stand-in ArviZ 1.x module.
* Values: ``log_likelihood`` equals ``scipy.stats.norm.logpdf`` computed directly from the raw data
  and the stored draws; ``sample_stats.lp`` equals :func:`mlgibbs.log_joint` recomputed and an
  independent scipy computation of the log joint density (flat/uniform priors add 0).
* The ArviZ 1.x path (``xarray.DataTree``), forced by monkeypatching
  ``mlgibbs.arviz._is_arviz_1``: under ArviZ 0.x (Python < 3.12) this is the guard that the DataTree
  container has the same groups and layout, and that :func:`mlgibbs.last_state` reads it; under
  ArviZ 1.x it is the path every test above takes anyway.

Tolerances
----------
The library computes in float32, the references in float64 from the same stored (float32) draws,
so the differences are rounding only: a pointwise log density ``-z^2/2 - log sigma - log(2 pi)/2``
with ``|z| < 6`` has an absolute float32 error below ``20 eps = 2.4e-6``, hence ``atol = 1e-5``;
the log joint (about -1000, accumulated from sufficient statistics) is compared with ``rtol = 1e-5``
(a margin of about 100 eps on each of the few terms summed). The check that the replicated data
are ``N(alpha_j[i] + X_i beta, sigma_y^2)`` is statistical: the standardised residuals
``(y_rep - mean) / sigma_y`` of 2 x 250 x 919 = 459,500 values must have mean 0 and variance 1,
within 4.4 standard errors (Bonferroni for two comparisons at a family-wise rate of 1e-5; the
standardised values are independent given the draws, so the standard errors are exact:
``1/sqrt(N)`` for the mean, ``sqrt(2/N)`` for the variance).
"""

from __future__ import annotations

import types
import warnings

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats

import mlgibbs as mg
import mlgibbs.arviz as mg_arviz
from mlgibbs.arviz import groups

FIELDS = ("alpha", "beta", "gamma", "sigma_y", "sigma_alpha")
NUM_CHAINS, NUM_DRAWS, NUM_OBS, NUM_COUNTIES = 2, 250, 919, 85
GROUPS = {"posterior", "sample_stats", "observed_data", "log_likelihood"}


@pytest.fixture(scope="module")
def radon():
    return mg.datasets.load_radon()


@pytest.fixture(scope="module")
def model(radon):
    return mg.Model.from_formula("log_radon ~ floor + log_uranium + (1 | county)", radon)


@pytest.fixture(scope="module")
def idata(model):
    return mg.sample(jax.random.key(0), model, num_chains=NUM_CHAINS, num_warmup=0,
                     num_draws=NUM_DRAWS, posterior_predictive=True)


@pytest.fixture(scope="module")
def pooled(radon):
    model = mg.Model.from_formula("log_radon ~ floor", radon)
    return model, mg.sample(jax.random.key(1), model, num_chains=NUM_CHAINS, num_warmup=0,
                            num_draws=NUM_DRAWS)


def draws_of(idata) -> mg.GibbsState:
    post = idata.posterior
    return mg.GibbsState(*(post[f].values if f in post else None for f in FIELDS))


# --------------------------------------------------------------------------- groups
def test_groups(idata):
    assert set(groups(idata)) == GROUPS | {"posterior_predictive"}


def test_posterior_predictive_only_on_request(pooled):
    _, out = pooled
    assert set(groups(out)) == GROUPS


def test_container_of_the_installed_arviz(idata):
    expected = xr.DataTree if mg_arviz._is_arviz_1(az) else az.InferenceData
    assert isinstance(idata, expected)


def test_sampling_emits_no_arviz_migration_warning(model):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mg.sample(jax.random.key(2), model, num_chains=1, num_warmup=0, num_draws=5)
    migration = [f"{w.category.__name__}: {w.message}" for w in caught
                 if w.category.__name__ == "MigrationWarning" or "InferenceData" in str(w.message)]
    assert not migration, migration


def test_arviz_1_is_recognised_before_any_dropped_name_is_looked_up(monkeypatch):
    """A stand-in for ArviZ 1.x that warns, as ArviZ 1.x does, when ``InferenceData`` is looked up:
    building the output must not look it up (this runs under ArviZ 0.x too)."""

    class Arviz1(types.ModuleType):
        __version__ = "1.3.0"

        def __getattr__(self, name):
            warnings.warn(f"arviz.{name} is no longer available", UserWarning)
            raise AttributeError(name)

    monkeypatch.setattr(mg_arviz, "_arviz", lambda: Arviz1("arviz"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tree = mg_arviz.make_inference_data(
            {"posterior": xr.Dataset({"sigma_y": (("chain", "draw"), np.ones((2, 3)))})})
    assert isinstance(tree, xr.DataTree)


def test_attributes(idata, model):
    attrs = idata.posterior.attrs
    assert attrs["inference_library"] == "mlgibbs"
    assert attrs["inference_library_version"] == mg.__version__
    assert attrs["sampler"] == mg.default_sampler(model) == mg.DEFAULT_SAMPLER
    assert attrs["num_warmup"] == 0 and attrs["thin"] == 1


# --------------------------------------------------------------------------- dims and coords
def test_posterior_layout(idata, radon):
    post = idata.posterior
    assert post["alpha"].dims == ("chain", "draw", "county")
    assert post["beta"].dims == ("chain", "draw", "predictor")
    assert post["gamma"].dims == ("chain", "draw", "group_predictor")
    assert post["sigma_y"].dims == ("chain", "draw")
    assert post["sigma_alpha"].dims == ("chain", "draw")
    assert post["alpha"].shape == (NUM_CHAINS, NUM_DRAWS, NUM_COUNTIES)
    np.testing.assert_array_equal(post["chain"].values, np.arange(NUM_CHAINS))
    np.testing.assert_array_equal(post["draw"].values, np.arange(NUM_DRAWS))
    assert list(post["county"].values) == sorted(radon["county"].unique())
    assert list(post["predictor"].values) == ["floor"]
    assert list(post["group_predictor"].values) == ["Intercept", "log_uranium"]
    # label-based selection works
    assert post["alpha"].sel(county="HENNEPIN").shape == (NUM_CHAINS, NUM_DRAWS)


def test_observed_and_pointwise_layout(idata, model):
    obs = idata.observed_data["log_radon"]
    assert obs.dims == ("obs_id",)
    np.testing.assert_array_equal(obs.values, model.y)  # the user's data, as given (float64)
    assert obs.dtype == np.float64
    for group in ("log_likelihood", "posterior_predictive"):
        var = idata[group]["log_radon"]
        assert var.dims == ("chain", "draw", "obs_id"), group
        assert var.shape == (NUM_CHAINS, NUM_DRAWS, NUM_OBS), group
        assert var.dtype == np.float64  # reported in float64, like every draw
    assert idata.sample_stats["lp"].dims == ("chain", "draw")


def test_pooled_has_no_group_blocks(pooled):
    _, out = pooled
    post = out.posterior
    assert set(post.data_vars) == {"beta", "sigma_y"}
    assert list(post["predictor"].values) == ["Intercept", "floor"]
    assert "county" not in post.dims and "group_predictor" not in post.dims


def test_group_dimension_named_after_the_grouping_argument():
    """Without sampling: ``to_inference_data`` on arrays names ``alpha``'s dim after ``group_name``."""
    rng = np.random.default_rng(0)
    group = np.repeat(["north", "east", "south"], 5)
    model = mg.Model.from_arrays(rng.normal(size=15), rng.normal(size=(15, 1)), group,
                                 predictors=["hours"], group_name="school", response="score")
    draws = mg.GibbsState(alpha=rng.normal(size=(3, 4, 3)), beta=rng.normal(size=(3, 4, 1)),
                          gamma=rng.normal(size=(3, 4, 1)), sigma_y=np.ones((3, 4)),
                          sigma_alpha=np.ones((3, 4)))
    out = mg.to_inference_data(model, draws)
    assert out.posterior["alpha"].dims == ("chain", "draw", "school")
    assert list(out.posterior["school"].values) == ["east", "north", "south"]
    assert list(out.posterior["predictor"].values) == ["hours"]
    assert list(out.posterior["group_predictor"].values) == ["Intercept"]
    assert list(out.observed_data.data_vars) == ["score"]


@pytest.mark.parametrize("name", ["chain", "draw", "predictor", "group_predictor"])
def test_group_column_named_like_a_reserved_dimension(name):
    """A grouping column called ``draw`` (or ``chain``, ``predictor``, ``group_predictor``) must not
    break the conversion after sampling: either the model is refused when it is built, with a
    ValueError naming the column, or the output keeps ``alpha``'s labels on a dimension of its own."""
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"y": rng.normal(size=15), "x": rng.normal(size=15),
                          name: np.repeat(["a", "b", "c"], 5)})
    try:
        model = mg.Model.from_formula(f"y ~ x + (1 | {name})", frame)
    except ValueError as err:
        assert repr(name) in str(err)
        return
    draws = mg.GibbsState(alpha=rng.normal(size=(2, 4, 3)), beta=rng.normal(size=(2, 4, 1)),
                          gamma=rng.normal(size=(2, 4, 1)), sigma_y=np.ones((2, 4)),
                          sigma_alpha=np.ones((2, 4)))
    out = mg.to_inference_data(model, draws)
    alpha = out.posterior["alpha"]
    assert alpha.shape == (2, 4, 3)
    assert list(alpha[alpha.dims[2]].values) == ["a", "b", "c"]
    assert out.posterior.sizes["chain"] == 2 and out.posterior.sizes["draw"] == 4


# --------------------------------------------------------------------------- values
def test_posterior_predictive_is_normal_around_the_draws(idata, model):
    post = idata.posterior
    alpha = post["alpha"].values.astype(np.float64)
    beta = post["beta"].values.astype(np.float64)
    mean = alpha[:, :, model.group_index] + np.einsum("np,cdp->cdn", model.X, beta)
    z = (idata.posterior_predictive["log_radon"].values - mean) / post["sigma_y"].values[..., None]
    n = z.size
    z_crit = stats.norm.ppf(1 - 1e-5 / 4)
    assert abs(z.mean()) * np.sqrt(n) < z_crit
    assert abs(z.var() - 1.0) / np.sqrt(2.0 / n) < z_crit
    # and the replicated data look like the data
    y_rep = idata.posterior_predictive["log_radon"].values
    assert abs(y_rep.mean() - model.y.mean()) < 0.2
    assert 0.5 < y_rep.std() / model.y.std() < 1.5


def test_log_likelihood_matches_scipy(idata, model):
    post = idata.posterior
    for chain, draw in [(0, 0), (1, 123), (0, NUM_DRAWS - 1)]:
        alpha = post["alpha"].values[chain, draw].astype(np.float64)
        beta = post["beta"].values[chain, draw].astype(np.float64)
        sigma_y = float(post["sigma_y"].values[chain, draw])
        expected = stats.norm.logpdf(model.y, alpha[model.group_index] + model.X @ beta, sigma_y)
        np.testing.assert_allclose(idata.log_likelihood["log_radon"].values[chain, draw], expected,
                                   rtol=0, atol=1e-5)


def test_lp_equals_log_joint(idata, model):
    lp = idata.sample_stats["lp"].values
    # log_joint takes the kernel's coordinates (the reported draws mapped in) and gives the user's density
    draws = jax.tree.map(lambda a: jnp.asarray(a, model.dtype), model.to_kernel(draws_of(idata)))
    recomputed = jax.jit(jax.vmap(jax.vmap(lambda s: mg.log_joint(s, model.data, model.priors))))(draws)
    np.testing.assert_allclose(np.asarray(recomputed), lp, rtol=1e-6)


def test_lp_matches_scipy(idata, model, radon):
    """The log joint from first principles: likelihood + group-level normal (flat/uniform priors)."""
    post = idata.posterior
    uranium = radon.groupby("county")["log_uranium"].first().loc[list(model.group_labels)].to_numpy()
    U = np.column_stack([np.ones(NUM_COUNTIES), uranium])
    for chain, draw in [(0, 5), (1, 200)]:
        alpha = post["alpha"].values[chain, draw].astype(np.float64)
        beta = post["beta"].values[chain, draw].astype(np.float64)
        gamma = post["gamma"].values[chain, draw].astype(np.float64)
        sigma_y = float(post["sigma_y"].values[chain, draw])
        sigma_alpha = float(post["sigma_alpha"].values[chain, draw])
        expected = (stats.norm.logpdf(model.y, alpha[model.group_index] + model.X @ beta, sigma_y).sum()
                    + stats.norm.logpdf(alpha, U @ gamma, sigma_alpha).sum())
        np.testing.assert_allclose(idata.sample_stats["lp"].values[chain, draw], expected, rtol=1e-5)


# --------------------------------------------------------------------------- ArviZ functions
def test_summary(idata):
    summary = az.summary(idata, round_to="none")
    expected = (["alpha[AITKIN]", "beta[floor]", "gamma[Intercept]", "gamma[log_uranium]", "sigma_y",
                 "sigma_alpha"])
    assert set(expected) <= set(summary.index)
    assert len(summary) == NUM_COUNTIES + 1 + 2 + 2
    assert np.all(np.isfinite(summary[["mean", "sd", "ess_bulk", "r_hat"]].to_numpy()))


def test_ess_and_rhat(idata):
    ess = az.ess(idata)
    rhat = az.rhat(idata)
    for name in FIELDS:
        assert np.all(np.asarray(ess[name]) > 0), name
        assert np.all(np.isfinite(np.asarray(rhat[name]))), name
    assert ess["alpha"].dims == ("county",)


def test_version_independent_summary(idata):
    """:func:`mlgibbs.arviz.summary`: fixed columns, unrounded, each column what its name says."""
    table = mg_arviz.summary(idata, var_names=["beta", "sigma_alpha"])
    assert tuple(table.columns) == mg_arviz.SUMMARY_COLUMNS
    assert list(table.index) == ["beta[floor]", "sigma_alpha"]
    assert all(dtype == np.float64 for dtype in table.dtypes)
    draws = idata.posterior["sigma_alpha"].values.astype(np.float64)
    row = table.loc["sigma_alpha"]
    np.testing.assert_allclose(row["mean"], draws.mean(), rtol=1e-6)
    np.testing.assert_allclose(row["sd"], draws.std(ddof=1), rtol=1e-5)  # ddof 0 differs by 1e-3
    for method in ("bulk", "tail"):
        ess = float(az.ess(idata, method=method)["sigma_alpha"])
        np.testing.assert_allclose(row[f"ess_{method}"], ess, rtol=1e-9)
    np.testing.assert_allclose(row["r_hat"], float(az.rhat(idata)["sigma_alpha"]), rtol=1e-12)
    # the 94% HDI: a shortest interval holding at least 94% of the draws
    inside = np.mean((draws >= row["hdi94_lb"]) & (draws <= row["hdi94_ub"]))
    assert 0.94 <= inside <= 0.94 + 2 / draws.size, inside
    assert 0 < row["mcse_mean"] < row["sd"] and 0 < row["mcse_sd"] < row["sd"]


def test_loo(idata):
    result = mg_arviz.loo(idata)
    assert np.isfinite(result.elpd) and result.p > 0
    assert result.n_data_points == NUM_OBS
    assert result.n_samples == NUM_CHAINS * NUM_DRAWS
    assert result.elpd_i.shape == result.pareto_k.shape == (NUM_OBS,)
    np.testing.assert_allclose(result.elpd, result.elpd_i.sum(), rtol=1e-12)
    # se: sqrt(n var(elpd_i)); ArviZ 0.x takes the variance with ddof 0, 1.x with ddof 1
    ddof = 1 if mg_arviz._is_arviz_1(az) else 0
    np.testing.assert_allclose(result.se, np.sqrt(NUM_OBS * result.elpd_i.var(ddof=ddof)), rtol=1e-9)
    assert result.good_k == pytest.approx(min(1 - 1 / np.log10(result.n_samples), 0.7))
    assert result.k_above == int(np.sum(result.pareto_k > result.good_k))


def test_compare(idata, pooled):
    """The varying-intercept model with uranium beats complete pooling on radon, and the table of
    :func:`mlgibbs.arviz.compare` means the same under ArviZ 0.x and 1.x, at full precision.

    Its elpd is higher by about 63 with a standard error of the difference of about 11.5 (a
    property of the data; the Monte Carlo error of each loo estimate with 500 draws is below 1), so
    the ranking is not a coin flip. ``elpd_diff`` is the model's elpd minus the best model's
    (negative), ``dse`` the standard error of the sum of the pointwise differences.
    """
    _, pooled_idata = pooled
    loos = {"varying": mg_arviz.loo(idata), "pooled": mg_arviz.loo(pooled_idata)}
    table = mg_arviz.compare({"varying": idata, "pooled": loos["pooled"]})  # fits or Loo results
    assert tuple(table.columns) == mg_arviz.COMPARE_COLUMNS
    assert list(table.index) == ["varying", "pooled"] and table.index.name == "model"
    assert list(table["rank"]) == [0, 1]
    assert table.loc["pooled", "elpd_diff"] < -3 * table.loc["pooled", "dse"]
    # against the definitions, to 1e-9: no rounding anywhere
    for name, result in loos.items():
        np.testing.assert_allclose(table.loc[name, ["elpd", "se", "p"]].to_numpy(float),
                                   [result.elpd, result.se, result.p], rtol=1e-9)
        assert table.loc[name, "warning"] == (result.k_above > 0)
    diff_i = loos["pooled"].elpd_i - loos["varying"].elpd_i
    np.testing.assert_allclose(table["elpd_diff"].to_numpy(), [0.0, diff_i.sum()], rtol=1e-9)
    dse = np.sqrt(NUM_OBS * diff_i.var())  # ArviZ 0.x and 1.x alike (unlike se, see test_loo)
    np.testing.assert_allclose(table["dse"].to_numpy(), [0.0, dse], rtol=1e-9)
    assert np.all(table["weight"].between(0, 1)) and table["weight"].sum() == pytest.approx(1)
    assert table["weight"].iloc[0] > 0.5
    # ArviZ itself runs on the output, and ranks the same way
    raw = az.compare({"varying": idata, "pooled": pooled_idata})
    assert list(raw.index) == ["varying", "pooled"]


# --------------------------------------------------------------------------- ArviZ 1.x: DataTree
@pytest.fixture
def datatree(idata, model, monkeypatch):
    monkeypatch.setattr(mg_arviz, "_is_arviz_1", lambda az_module: True)
    return mg.to_inference_data(
        model, draws_of(idata),
        sample_stats={"lp": idata.sample_stats["lp"].values},
        log_likelihood=idata.log_likelihood["log_radon"].values,
        posterior_predictive=idata.posterior_predictive["log_radon"].values,
    )


def test_datatree_groups_and_layout(datatree, idata):
    assert isinstance(datatree, xr.DataTree)
    assert set(datatree.children) == set(groups(datatree)) == GROUPS | {"posterior_predictive"}
    alpha = datatree["posterior"]["alpha"]
    assert alpha.dims == ("chain", "draw", "county")
    np.testing.assert_array_equal(alpha["county"].values, idata.posterior["county"].values)
    np.testing.assert_array_equal(alpha.values, idata.posterior["alpha"].values)
    assert list(datatree["posterior"]["gamma"]["group_predictor"].values) == ["Intercept", "log_uranium"]
    assert datatree["log_likelihood"]["log_radon"].dims == ("chain", "draw", "obs_id")
    assert datatree["sample_stats"]["lp"].dims == ("chain", "draw")
    assert datatree["posterior"].attrs["inference_library"] == "mlgibbs"


def test_last_state_reads_datatree(datatree, idata, model):
    from_tree = mg.last_state(datatree, model)
    from_idata = mg.last_state(idata, model)
    for field in FIELDS:
        np.testing.assert_array_equal(np.asarray(getattr(from_tree, field)),
                                      np.asarray(getattr(from_idata, field)))


def test_make_inference_data_containers(monkeypatch):
    datasets = {"posterior": xr.Dataset({"sigma_y": (("chain", "draw"), np.ones((2, 3)))})}
    installed = xr.DataTree if mg_arviz._is_arviz_1(az) else az.InferenceData
    assert isinstance(mg_arviz.make_inference_data(datasets), installed)
    monkeypatch.setattr(mg_arviz, "_is_arviz_1", lambda az_module: True)
    tree = mg_arviz.make_inference_data(datasets)
    assert isinstance(tree, xr.DataTree)
    assert tree["posterior"]["sigma_y"].dims == ("chain", "draw")
    assert groups(tree) == ["posterior"]


@pytest.mark.parametrize("version, expected", [("0.23.4", False), ("0.17.0", False), ("1.0.0", True),
                                               ("1.0.0rc1", True), ("2.1", True)])
def test_arviz_version_detection(version, expected):
    class FakeArviz:
        __version__ = version

    assert mg_arviz._is_arviz_1(FakeArviz) is expected

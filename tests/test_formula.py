"""The formula front end: which design columns become ``X`` (beta) and which ``U`` (gamma).

:meth:`mlgibbs.Model.from_formula` parses the fixed part with formulaic; with a group term
``(1 | g)`` every design column that is constant within the groups of ``g`` (the intercept,
county-level predictors, ``C(...)`` of a county-level categorical) goes to ``U`` and the rest to
``X``. Without a group term everything is ``X`` (complete pooling, or the indicator-variable model
``y ~ 0 + C(county) + floor``). Varying slopes, nested and crossed group terms build the general model
(:class:`mlgibbs.models.mixed.MixedModel`; tested in ``test_mixed_*.py``).

Checked on the Minnesota radon data (919 houses, 85 counties) and on small hand-made frames.
Everything here is deterministic, so exact equality is asserted, except the comparison of the
sufficient statistics ``model.data`` (float32) with a float64 NumPy computation, which uses a
relative tolerance of 1e-5: a few float32 roundings (eps = 1.2e-7) of sums of at most 919 terms.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import mlgibbs as mg
from mlgibbs.models import parse_formula

NUM_COUNTIES = 85


@pytest.fixture(scope="module")
def radon() -> pd.DataFrame:
    return mg.datasets.load_radon()


@pytest.fixture(scope="module")
def varying(radon) -> mg.Model:
    return mg.Model.from_formula("log_radon ~ floor + log_uranium + (1 | county)", radon)


@pytest.fixture
def frame() -> pd.DataFrame:
    """30 pupils in 5 classes; ``x`` varies within classes, ``u`` and ``track`` are class-level."""
    rng = np.random.default_rng(11)
    klass = np.repeat(["e", "c", "a", "d", "b"], 6)            # not in sorted order on purpose
    u = dict(zip("abcde", [0.3, -1.2, 0.8, 2.0, -0.4]))
    track = dict(zip("abcde", ["arts", "science", "arts", "sport", "science"]))
    return pd.DataFrame({
        "y": rng.normal(size=klass.size),
        "x": rng.normal(size=klass.size),
        "sex": rng.choice(["f", "m"], size=klass.size),
        "u": [u[k] for k in klass],
        "track": [track[k] for k in klass],
        "klass": klass,
    })


def structure(model: mg.Model) -> tuple[bool, bool, bool]:
    s = mg.samplers.structure_of(model.data)
    return s.has_groups, s.has_beta, s.has_gamma


# --------------------------------------------------------------------------- no group term
def test_pooled(radon):
    model = mg.Model.from_formula("log_radon ~ floor", radon)
    assert structure(model) == (False, True, False)
    assert model.group_name is None and model.group_labels is None and model.group_index is None
    assert model.data.groups is None
    assert model.predictors == ("Intercept", "floor")
    np.testing.assert_array_equal(model.X, np.column_stack([np.ones(len(radon)), radon["floor"]]))
    assert model.group_predictors == ()


def test_indicator_model(radon):
    model = mg.Model.from_formula("log_radon ~ 0 + C(county) + floor", radon)
    assert structure(model) == (False, True, False)
    assert model.X.shape == (len(radon), NUM_COUNTIES + 1)
    counties = sorted(radon["county"].unique())
    assert model.predictors == tuple(f"C(county)[{c}]" for c in counties) + ("floor",)
    # each row has exactly one county indicator, the right one
    indicators = model.X[:, :NUM_COUNTIES]
    np.testing.assert_array_equal(indicators.sum(axis=1), 1.0)
    np.testing.assert_array_equal(np.asarray(counties)[indicators.argmax(axis=1)], radon["county"])


# --------------------------------------------------------------------------- (1 | county)
def test_varying_intercept_split(varying, radon):
    assert structure(varying) == (True, True, True)
    assert varying.group_name == "county"
    assert varying.predictors == ("floor",)
    assert varying.group_predictors == ("Intercept", "log_uranium")
    np.testing.assert_array_equal(varying.X[:, 0], radon["floor"])
    assert varying.U.shape == (NUM_COUNTIES, 2)


def test_group_labels_are_sorted_county_names(varying, radon):
    assert varying.group_labels == tuple(sorted(radon["county"].unique()))
    assert len(varying.group_labels) == NUM_COUNTIES
    np.testing.assert_array_equal(np.asarray(varying.group_labels)[varying.group_index], radon["county"])


def test_u_holds_county_uranium(varying, radon):
    per_county = radon.groupby("county")["log_uranium"].agg(["min", "max"])
    np.testing.assert_array_equal(per_county["min"], per_county["max"])   # really county-level
    U = varying.U
    np.testing.assert_array_equal(U[:, 0], 1.0)
    expected = per_county.loc[list(varying.group_labels), "min"].to_numpy()
    np.testing.assert_array_equal(U[:, 1], expected)


def test_group_statistics(radon):
    """``model.data`` holds the per-county counts and means of the original rows, in label order
    (``standardize=False``: the statistics of the raw data; standardized ones are tested in
    ``tests/test_standardize.py``)."""
    varying = mg.Model.from_formula("log_radon ~ floor + log_uranium + (1 | county)", radon, standardize=False)
    g = varying.data.groups
    by_county = radon.groupby("county").agg(n=("log_radon", "size"), y=("log_radon", "mean"),
                                            x=("floor", "mean")).loc[list(varying.group_labels)]
    np.testing.assert_array_equal(np.asarray(g.counts), by_county["n"])
    np.testing.assert_allclose(np.asarray(g.y_mean), by_county["y"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(g.x_mean)[:, 0], by_county["x"], rtol=1e-5, atol=1e-6)


def test_row_order_and_index_do_not_matter(radon, varying):
    shuffled = radon.sample(frac=1.0, random_state=3)          # index no longer 0..n-1
    model = mg.Model.from_formula("log_radon ~ floor + log_uranium + (1 | county)", shuffled)
    np.testing.assert_array_equal(model.y, shuffled["log_radon"])
    np.testing.assert_array_equal(np.asarray(model.group_labels)[model.group_index], shuffled["county"])
    assert model.group_labels == varying.group_labels
    np.testing.assert_array_equal(model.U, varying.U)
    np.testing.assert_array_equal(np.asarray(model.data.groups.counts),
                                  np.asarray(varying.data.groups.counts))


def test_intercept_only(radon):
    model = mg.Model.from_formula("log_radon ~ 1 + (1|county)", radon)
    assert structure(model) == (True, False, True)
    assert model.predictors == ()
    assert model.X.shape == (len(radon), 0)
    assert model.group_predictors == ("Intercept",)


def test_no_intercept_no_gamma(radon):
    model = mg.Model.from_formula("log_radon ~ 0 + floor + (1|county)", radon)
    assert structure(model) == (True, True, False)
    assert model.predictors == ("floor",)
    assert model.group_predictors == ()
    assert model.U.shape == (NUM_COUNTIES, 0)


def test_interaction_varies_within_county(radon):
    model = mg.Model.from_formula("log_radon ~ floor + floor:log_uranium + (1 | county)", radon)
    assert model.predictors == ("floor", "floor:log_uranium")
    assert model.group_predictors == ("Intercept",)
    np.testing.assert_allclose(model.X[:, 1], radon["floor"] * radon["log_uranium"])


def test_full_interaction(radon):
    model = mg.Model.from_formula("log_radon ~ floor * log_uranium + (1 | county)", radon)
    assert model.predictors == ("floor", "floor:log_uranium")
    assert model.group_predictors == ("Intercept", "log_uranium")


# --------------------------------------------------------------------------- categoricals
def test_group_level_categorical_goes_to_u(frame):
    model = mg.Model.from_formula("y ~ x + C(track) + (1 | klass)", frame)
    assert model.predictors == ("x",)
    assert model.group_predictors == ("Intercept", "C(track)[T.science]", "C(track)[T.sport]")
    assert model.group_labels == ("a", "b", "c", "d", "e")
    U = model.U
    # a, c arts (the reference level); b, e science; d sport
    np.testing.assert_array_equal(U, [[1, 0, 0], [1, 1, 0], [1, 0, 0], [1, 0, 1], [1, 1, 0]])


def test_group_level_numeric_and_string_categorical(frame):
    # 5 groups and 4 flat group-level coefficients: improper under a uniform prior on sigma_alpha
    model = mg.Model.from_formula("y ~ x + u + C(track) + (1 | klass)", frame,
                                  priors={"sigma_alpha": mg.priors.HalfNormal(1.0)})
    assert model.group_predictors == ("Intercept", "u", "C(track)[T.science]", "C(track)[T.sport]")
    np.testing.assert_allclose(model.U[:, 1], [0.3, -1.2, 0.8, 2.0, -0.4],
                               rtol=1e-6)


def test_individual_level_string_categorical_goes_to_x(frame):
    model = mg.Model.from_formula("y ~ x + C(sex) + (1 | klass)", frame)
    assert model.predictors == ("x", "C(sex)[T.m]")
    assert model.group_predictors == ("Intercept",)
    np.testing.assert_array_equal(model.X[:, 1], (frame["sex"] == "m").astype(float))


def test_pandas_categorical_group_column_keeps_category_order(frame):
    frame["klass"] = pd.Categorical(frame["klass"], categories=["e", "d", "c", "b", "a"])
    model = mg.Model.from_formula("y ~ x + u + (1 | klass)", frame)
    assert model.group_labels == ("e", "d", "c", "b", "a")
    np.testing.assert_allclose(model.U[:, 1], [-0.4, 2.0, 0.8, -1.2, 0.3],
                               rtol=1e-6)


def test_numeric_group_column(frame):
    frame["klass"] = frame["klass"].map({"a": 30, "b": 7, "c": 12, "d": 5, "e": 100})
    model = mg.Model.from_formula("y ~ x + (1 | klass)", frame)
    assert model.group_labels == (5, 7, 12, 30, 100)


# --------------------------------------------------------------------------- parsing
@pytest.mark.parametrize("formula", [
    "y ~ x + (1 | klass)",
    "y ~ x + (1|klass)",
    "y ~ (1 | klass) + x",
    "y ~ x + ( 1 | klass )",
])
def test_group_term_spelling(frame, formula):
    model = mg.Model.from_formula(formula, frame)
    assert model.group_name == "klass"
    assert model.predictors == ("x",)
    assert model.group_predictors == ("Intercept",)


def test_parse_formula_splits_group_term():
    parsed = parse_formula("log_radon ~ floor + log_uranium + (1 | county)")
    assert parsed.fixed == "log_radon ~ floor + log_uranium"
    assert [(t.expr, t.group) for t in parsed.group_terms] == [("1", "county")]
    assert parse_formula("y ~ (1 | g)").fixed == "y ~ 1"


@pytest.mark.parametrize("formula, coefs", [
    ("log_radon ~ floor + (floor | county)", ["Intercept", "floor"]),
    ("log_radon ~ floor + (1 + floor | county)", ["Intercept", "floor"]),
    ("log_radon ~ floor + (0 + floor | county)", ["floor"]),
    ("log_radon ~ floor + (1 + floor || county)", ["Intercept", "floor"]),
])
def test_varying_slopes_build_the_general_model(radon, formula, coefs):
    from mlgibbs.models.mixed import MixedModel

    model = mg.Model.from_formula(formula, radon)
    assert isinstance(model, MixedModel)
    assert model.factor_names == ("county",)
    assert list(model.factors[0].coef_names) == coefs
    correlated = "||" not in formula and len(coefs) > 1
    assert model.structure.cov_blocks[0] == (((0, 2),) if correlated else tuple((j, 1) for j in range(len(coefs))))


@pytest.mark.parametrize("formula", ["log_radon ~ floor + (1 | state/county)",
                                     "log_radon ~ floor + (1 | county) + (1 | state)"])
def test_a_factor_with_one_level_is_refused_by_name(radon, formula):
    """Minnesota alone has one state: a varying effect by state is refused, naming it."""
    with pytest.raises(ValueError, match="state"):
        mg.Model.from_formula(formula, radon)


@pytest.mark.parametrize("formula", ["log_radon floor", "~ floor", "y ~ x ~ z", 3])
def test_malformed_formula(radon, formula):
    with pytest.raises(ValueError, match="formula|response"):
        mg.Model.from_formula(formula, radon)


def test_data_must_be_a_dataframe(radon):
    with pytest.raises(TypeError, match="DataFrame"):
        mg.Model.from_formula("log_radon ~ floor", radon.to_dict("list"))

"""Input validation of the model front ends and of :func:`mlgibbs.sample`.

Every bad input must be refused at model-build time (or before anything is compiled, for the
arguments of :func:`~mlgibbs.sample`) with a ``ValueError`` whose message names the column or the
argument at fault, through both :meth:`mlgibbs.Model.from_formula` and
:meth:`mlgibbs.Model.from_arrays`. Nothing may be dropped silently: the model holds one observation
per row of the data.

The cases: missing and non-finite values (response, individual- and group-level predictors, and
values made non-finite by a formula transform such as ``np.log`` or ``I(1 / x)``),
length mismatches, missing / unknown / unused group labels, a single group, rank-deficient designs
(duplicated columns, exact linear combinations, a group-level predictor passed as an
individual-level one, collinear group-level predictors, more group-level predictors than groups),
non-numeric columns, missing columns, unknown prior blocks and coefficient names, unknown sampler
names, invalid ``num_chains`` / ``num_draws`` / ``num_warmup`` / ``thin``, and float64 without
64-bit JAX.

These tests are deterministic (no sampling), so there is no tolerance to choose; the only
randomness is a fixed-seed NumPy generator that builds the small hand-made data sets.
"""

from __future__ import annotations

import re

import jax
import numpy as np
import pandas as pd
import pytest

import mlgibbs as mg
from mlgibbs.priors import Normal, Uniform

NUM_GROUPS = 4
PER_GROUP = 6


def quoted(name: str) -> str:
    """Regex matching ``'name'`` as the library quotes column and argument names."""
    return re.escape(repr(name))


@pytest.fixture(scope="module")
def radon() -> pd.DataFrame:
    return mg.datasets.load_radon()


@pytest.fixture
def frame() -> pd.DataFrame:
    """24 rows in 4 schools: ``x`` varies within schools, ``u`` is a school-level predictor."""
    rng = np.random.default_rng(20240601)
    school = np.repeat(["s1", "s2", "s3", "s4"], PER_GROUP)
    u_by_school = {"s1": -1.0, "s2": 0.5, "s3": 0.0, "s4": 2.0}
    x = rng.normal(size=school.size)
    u = np.array([u_by_school[s] for s in school])
    score = 1.0 + 0.5 * x + 0.3 * u + rng.normal(size=school.size)
    return pd.DataFrame({"score": score, "x": x, "z": rng.normal(size=school.size), "u": u,
                         "school": school})


@pytest.fixture
def arrays(frame):
    """The same data as NumPy arrays: ``y``, ``X`` (n, 2), ``group`` (codes 0..3), ``U`` (J, 1).

    With ``U`` an array and no ``group_labels``, the groups are labelled ``0..J-1`` by ``U``'s rows.
    """
    y = frame["score"].to_numpy()
    X = frame[["x", "z"]].to_numpy()
    group = frame["school"].map({"s1": 0, "s2": 1, "s3": 2, "s4": 3}).to_numpy()
    U = frame.groupby("school")["u"].first().sort_index().to_numpy()[:, None]
    return y, X, group, U


def from_arrays(y, X, group, U, **kwargs):
    kwargs.setdefault("response", "score")
    kwargs.setdefault("predictors", ["x", "z"] if X is not None and np.shape(X)[1] == 2 else None)
    kwargs.setdefault("group_name", "school")
    return mg.Model.from_arrays(y, X, group, U, **kwargs)


FORMULA = "score ~ x + z + u + (1 | school)"


# --------------------------------------------------------------------------- the valid baseline
def test_valid_inputs_build(frame, arrays):
    """The fixtures are valid, so every failure below is caused by the one change it makes."""
    by_formula = mg.Model.from_formula(FORMULA, frame)
    by_arrays = from_arrays(*arrays, group_predictors=["u"])
    for model in (by_formula, by_arrays):
        assert model.num_obs == len(frame)
        assert model.num_groups == NUM_GROUPS
        assert model.predictors == ("x", "z")
        assert model.group_predictors == ("Intercept", "u")


# --------------------------------------------------------------------------- nothing is dropped
def test_nothing_dropped_formula(radon):
    model = mg.Model.from_formula("log_radon ~ floor + log_uranium + (1 | county)", radon)
    assert model.num_obs == len(radon) == 919
    assert float(model.data.num_obs) == len(radon)
    assert int(model.group_counts.sum()) == len(radon)
    np.testing.assert_array_equal(model.y, radon["log_radon"].to_numpy())


def test_nothing_dropped_pooled_formula(radon):
    model = mg.Model.from_formula("log_radon ~ floor", radon)
    assert model.num_obs == len(radon)
    assert model.X.shape == (len(radon), 2)


def test_nothing_dropped_arrays(frame, arrays):
    model = from_arrays(*arrays)
    assert model.num_obs == len(frame)
    assert float(model.data.num_obs) == len(frame)
    np.testing.assert_array_equal(np.bincount(model.group_index), [PER_GROUP] * NUM_GROUPS)


# --------------------------------------------------------------------------- missing / non-finite
@pytest.mark.parametrize("column", ["score", "x", "u"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_formula(frame, column, bad):
    frame.loc[5, column] = bad
    with pytest.raises(ValueError, match=quoted(column)):
        mg.Model.from_formula(FORMULA, frame)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_response_arrays(arrays, bad):
    y, X, group, U = arrays
    y = y.copy()
    y[3] = bad
    with pytest.raises(ValueError, match=quoted("score") + ".*rows 3"):
        from_arrays(y, X, group, U)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_predictor_arrays(arrays, bad):
    y, X, group, U = arrays
    X = X.copy()
    X[7, 1] = bad
    with pytest.raises(ValueError, match=quoted("z") + ".*rows 7"):
        from_arrays(y, X, group, U)
    # default names are reported too
    with pytest.raises(ValueError, match=quoted("x1")):
        mg.Model.from_arrays(y, X, group, U)


def test_non_finite_predictor_dataframe_arrays(frame, arrays):
    y, _, group, U = arrays
    X = frame[["x", "z"]].copy()
    X.loc[2, "x"] = np.nan
    with pytest.raises(ValueError, match=quoted("x")):
        mg.Model.from_arrays(y, X, group, U)


def test_non_finite_group_predictor_arrays(arrays):
    y, X, group, U = arrays
    U = U.copy()
    U[1, 0] = np.nan
    with pytest.raises(ValueError, match=quoted("u")):
        from_arrays(y, X, group, U, group_predictors=["u"])


def test_non_finite_pooled_arrays(arrays):
    y, X, _, _ = arrays
    X = X.copy()
    X[0, 0] = np.inf
    with pytest.raises(ValueError, match=quoted("x")):
        from_arrays(y, X, None, None)


def test_non_finite_response_after_transform_formula(frame):
    """A transform of a finite column can be infinite: ``np.log(0)``. Checked after evaluation."""
    frame["count"] = np.arange(len(frame), dtype=float)          # row 0 is 0: log gives -inf
    with pytest.raises(ValueError, match=re.escape("np.log(count)")):
        mg.Model.from_formula("np.log(count) ~ x + (1 | school)", frame)


@pytest.mark.parametrize("formula", ["score ~ I(1 / x) + (1 | school)", "score ~ I(1 / x)"])
def test_non_finite_predictor_after_transform_formula(frame, formula):
    frame.loc[4, "x"] = 0.0
    with pytest.raises(ValueError, match=r"I\(1 ?/ ?x\)"):
        mg.Model.from_formula(formula, frame)


# --------------------------------------------------------------------------- lengths
def test_x_rows_mismatch_arrays(arrays):
    y, X, group, U = arrays
    with pytest.raises(ValueError, match=r"X has 23 rows, expected 24"):
        from_arrays(y, X[:-1], group, U)


def test_x_dataframe_rows_mismatch_arrays(frame, arrays):
    y, _, group, U = arrays
    with pytest.raises(ValueError, match=quoted("x") + ".*length 23"):
        mg.Model.from_arrays(y, frame[["x"]].iloc[:-1], group, U)


def test_group_length_mismatch_arrays(arrays):
    y, X, group, U = arrays
    with pytest.raises(ValueError, match=quoted("school") + ".*length 23, expected 24"):
        from_arrays(y, X, group[:-1], U)


def test_names_length_mismatch_arrays(arrays):
    y, X, group, U = arrays
    with pytest.raises(ValueError, match="names given for the 2 columns of X"):
        mg.Model.from_arrays(y, X, group, U, predictors=["x"])
    with pytest.raises(ValueError, match="names given for the 1 columns of U"):
        mg.Model.from_arrays(y, X, group, U, group_predictors=["u", "v"])


def test_u_without_group_arrays(arrays):
    y, X, _, U = arrays
    with pytest.raises(ValueError, match=r"\bU\b.*group"):
        from_arrays(y, X, None, U)


# --------------------------------------------------------------------------- group labels
@pytest.mark.parametrize("missing", [None, np.nan])
def test_missing_group_label_formula(frame, missing):
    frame["school"] = frame["school"].astype(object)
    frame.loc[9, "school"] = missing
    with pytest.raises(ValueError, match=quoted("school") + ".*missing label.*index labels 9"):
        mg.Model.from_formula(FORMULA, frame)


@pytest.mark.parametrize("missing", [None, np.nan])
def test_missing_group_label_arrays(arrays, missing):
    y, X, group, U = arrays
    group = group.astype(object)
    group[9] = missing
    with pytest.raises(ValueError, match=quoted("school") + ".*missing label.*rows 9"):
        from_arrays(y, X, group, U)


def test_missing_numeric_group_label_arrays(arrays):
    y, X, group, U = arrays
    codes = group.astype(float)
    codes[0] = np.nan
    with pytest.raises(ValueError, match=quoted("school") + ".*missing label"):
        from_arrays(y, X, codes, U)


def test_unknown_group_label_arrays(frame, arrays):
    y, X, _, _ = arrays
    with pytest.raises(ValueError, match=quoted("school") + ".*not among.*s4"):
        from_arrays(y, X, frame["school"], None, group_labels=["s1", "s2", "s3"])


def test_string_labels_with_u_array_need_group_labels(frame, arrays):
    """An array ``U`` labels its rows 0..J-1 (documented); string labels then need ``group_labels``."""
    y, X, _, U = arrays
    with pytest.raises(ValueError, match=quoted("school") + ".*not among its 4 known groups"):
        from_arrays(y, X, frame["school"], U)
    model = from_arrays(y, X, frame["school"], U, group_labels=["s1", "s2", "s3", "s4"])
    assert model.group_labels == ("s1", "s2", "s3", "s4")


def test_fewer_u_rows_than_group_codes_arrays(arrays):
    """U with 3 rows labels groups 0..2; code 3 is then unknown."""
    y, X, group, U = arrays
    with pytest.raises(ValueError, match=quoted("school") + ".*not among its 3 known groups: 3"):
        from_arrays(y, X, group, U[:3])


def test_u_dataframe_index_labels_arrays(frame, arrays):
    """A U DataFrame names the groups by its index; a group missing from the index is unknown."""
    y, X, _, U = arrays
    group = frame["school"]
    frame_u = pd.DataFrame({"u": U[:, 0]}, index=["s1", "s2", "s3", "s4"])
    model = from_arrays(y, X, group, frame_u)
    assert model.group_labels == ("s1", "s2", "s3", "s4")
    assert model.group_predictors == ("Intercept", "u")
    with pytest.raises(ValueError, match=quoted("school") + ".*not among.*s4"):
        from_arrays(y, X, group, frame_u.iloc[:3])


def test_duplicate_group_labels_arrays(arrays):
    y, X, group, _ = arrays
    with pytest.raises(ValueError, match=quoted("school") + ".*duplicates"):
        from_arrays(y, X, group, None, group_labels=[0, 1, 2, 3, 0])


def test_one_group_formula(frame):
    frame["school"] = "s1"
    with pytest.raises(ValueError, match=quoted("school") + ".*1 group"):
        mg.Model.from_formula("score ~ x + (1 | school)", frame)


def test_one_group_arrays(arrays):
    y, X, group, _ = arrays
    with pytest.raises(ValueError, match=quoted("school") + ".*1 group"):
        from_arrays(y, X, np.zeros_like(group), None)


def test_empty_group_labels_arrays(frame, arrays):
    y, X, group, U = arrays
    with pytest.raises(ValueError, match=quoted("school") + ".*without observations: s5"):
        from_arrays(y, X, frame["school"], None, group_labels=["s1", "s2", "s3", "s4", "s5"])
    # U with a row for a fifth group that has no observation
    U5 = np.vstack([U, [[1.0]]])
    with pytest.raises(ValueError, match=quoted("school") + ".*without observations: 4"):
        from_arrays(y, X, group, U5)


def test_empty_group_unused_category_formula(frame):
    frame["school"] = pd.Categorical(frame["school"], categories=["s1", "s2", "s3", "s4", "s9"])
    with pytest.raises(ValueError, match=quoted("school") + ".*without observations: s9"):
        mg.Model.from_formula(FORMULA, frame)


def test_empty_group_unused_category_arrays(frame, arrays):
    y, X, _, _ = arrays
    group = pd.Series(pd.Categorical(frame["school"], categories=["s0", "s1", "s2", "s3", "s4"]))
    with pytest.raises(ValueError, match=quoted("school") + ".*without observations: s0"):
        from_arrays(y, X, group, None)


def test_missing_group_column_formula(frame):
    with pytest.raises(ValueError, match=quoted("klass")):
        mg.Model.from_formula("score ~ x + (1 | klass)", frame)


# --------------------------------------------------------------------------- rank deficiency
def test_duplicated_column_formula(frame):
    frame["x_copy"] = frame["x"]
    with pytest.raises(ValueError, match="rank deficient.*" + quoted("x_copy")):
        mg.Model.from_formula("score ~ x + x_copy + (1 | school)", frame)


def test_duplicated_column_pooled_formula(frame):
    frame["x_copy"] = frame["x"]
    with pytest.raises(ValueError, match="rank deficient.*" + quoted("x_copy")):
        mg.Model.from_formula("score ~ x + x_copy", frame)


def test_sum_of_columns_formula(frame):
    frame["total"] = frame["x"] - 2.0 * frame["z"]
    with pytest.raises(ValueError, match="rank deficient.*" + quoted("total")):
        mg.Model.from_formula("score ~ x + z + total + (1 | school)", frame)


def test_duplicated_column_arrays(arrays):
    y, X, group, U = arrays
    X = np.column_stack([X, X[:, 0]])
    with pytest.raises(ValueError, match="rank deficient.*" + quoted("x_copy")):
        from_arrays(y, X, group, U, predictors=["x", "z", "x_copy"])


def test_sum_of_columns_arrays(arrays):
    y, X, group, U = arrays
    X = np.column_stack([X, X[:, 0] + X[:, 1]])
    with pytest.raises(ValueError, match="rank deficient.*" + quoted("total")):
        from_arrays(y, X, group, U, predictors=["x", "z", "total"])


def test_sum_of_columns_pooled_arrays(arrays):
    y, X, _, _ = arrays
    X = np.column_stack([np.ones(len(y)), X, 3.0 - X[:, 1]])
    with pytest.raises(ValueError, match="rank deficient.*" + quoted("w")):
        from_arrays(y, X, None, None, predictors=["Intercept", "x", "z", "w"])


def test_within_group_constant_in_x_arrays(frame, arrays):
    """A group-level predictor passed in ``X`` is refused, naming it and pointing at ``U``."""
    y, X, group, _ = arrays
    X = np.column_stack([X, frame["u"].to_numpy()])
    with pytest.raises(ValueError, match=quoted("u") + ".*does not vary within.*" + quoted("school")):
        from_arrays(y, X, group, None, predictors=["x", "z", "u"])


def test_within_group_combination_arrays(frame, arrays):
    """``x + u`` varies within groups, but within groups it equals ``x``: rank deficient."""
    y, X, group, _ = arrays
    X = np.column_stack([X, frame["x"].to_numpy() + frame["u"].to_numpy()])
    with pytest.raises(ValueError, match="rank deficient.*" + quoted("x_plus_u")):
        from_arrays(y, X, group, None, predictors=["x", "z", "x_plus_u"])


def test_collinear_group_predictors_formula(frame):
    frame["u2"] = 2.0 * frame["u"] + 1.0
    with pytest.raises(ValueError, match="group-level.*rank deficient.*" + quoted("u2")):
        mg.Model.from_formula("score ~ x + u + u2 + (1 | school)", frame)


def test_collinear_group_predictors_arrays(arrays):
    y, X, group, U = arrays
    U = np.column_stack([U, 1.0 - U[:, 0]])
    with pytest.raises(ValueError, match="group-level.*rank deficient.*" + quoted("v")):
        from_arrays(y, X, group, U, group_predictors=["u", "v"])


def test_indicator_columns_plus_group_predictor_pooled_formula(frame):
    """``0 + C(school) + u``: ``u`` is a combination of the school indicators."""
    with pytest.raises(ValueError, match="rank deficient.*" + quoted("u")):
        mg.Model.from_formula("score ~ 0 + C(school) + u", frame)


def test_as_many_group_predictors_as_groups_formula(frame):
    """Intercept + 3 group-level predictors for 4 groups: U is square, not enough groups."""
    rng = np.random.default_rng(1)
    for name in ("u1", "u2", "u3"):
        frame[name] = frame["school"].map(dict(zip(["s1", "s2", "s3", "s4"], rng.normal(size=4))))
    with pytest.raises(ValueError, match="4 group-level predictors for 4 groups of " + quoted("school")):
        mg.Model.from_formula("score ~ x + u1 + u2 + u3 + (1 | school)", frame)


def test_more_group_predictors_than_groups_formula(frame):
    rng = np.random.default_rng(2)
    for name in ("u1", "u2", "u3", "u4"):
        frame[name] = frame["school"].map(dict(zip(["s1", "s2", "s3", "s4"], rng.normal(size=4))))
    with pytest.raises(ValueError, match="group-level.*" + quoted("school")):
        mg.Model.from_formula("score ~ x + u1 + u2 + u3 + u4 + (1 | school)", frame)


@pytest.mark.parametrize("num_u", [3, 4])
def test_too_many_group_predictors_arrays(arrays, num_u):
    y, X, group, _ = arrays
    U = np.random.default_rng(3).normal(size=(NUM_GROUPS, num_u))
    with pytest.raises(ValueError, match="group-level.*" + quoted("school")):
        from_arrays(y, X, group, U)


# --------------------------------------------------------------------------- types and columns
def test_string_predictor_without_c_formula(frame):
    frame["kind"] = np.where(frame["x"] > 0, "high", "low")
    with pytest.raises(ValueError, match=quoted("kind") + r".*not numeric.*C\(kind\)"):
        mg.Model.from_formula("score ~ x + kind + (1 | school)", frame)


def test_string_predictor_arrays(frame, arrays):
    y, _, group, U = arrays
    X = pd.DataFrame({"x": frame["x"], "kind": np.where(frame["x"] > 0, "high", "low")})
    with pytest.raises(ValueError, match=quoted("kind") + ".*not numeric"):
        mg.Model.from_arrays(y, X, group, U)


def test_string_array_predictor_arrays(arrays):
    y, X, group, U = arrays
    X = X.astype(str)
    with pytest.raises(ValueError, match=quoted("x") + ".*not numeric"):
        from_arrays(y, X, group, U)


def test_missing_column_formula(frame):
    with pytest.raises(ValueError, match=quoted("height") + ".*not in the data frame"):
        mg.Model.from_formula("score ~ x + height + (1 | school)", frame)


def test_missing_response_column_formula(frame):
    with pytest.raises(ValueError, match=quoted("grade") + ".*not in the data frame"):
        mg.Model.from_formula("grade ~ x + (1 | school)", frame)


def test_non_numeric_response_formula(frame):
    frame["grade"] = np.where(frame["score"] > 1, "pass", "fail")
    with pytest.raises(ValueError, match=quoted("grade") + ".*not numeric"):
        mg.Model.from_formula("grade ~ x + (1 | school)", frame)


def test_non_numeric_response_arrays(frame, arrays):
    _, X, group, U = arrays
    grade = np.where(frame["score"] > 1, "pass", "fail")
    with pytest.raises(ValueError, match=quoted("grade") + ".*not numeric"):
        from_arrays(grade, X, group, U, response="grade")
    with pytest.raises(ValueError, match=quoted("grade") + ".*not numeric"):
        from_arrays(pd.Series(grade), X, group, U, response="grade")


# --------------------------------------------------------------------------- priors
def test_unknown_prior_block_formula(frame):
    with pytest.raises(ValueError, match="unknown prior block.*" + quoted("sigma")):
        mg.Model.from_formula(FORMULA, frame, priors={"sigma": Uniform()})


def test_unknown_prior_block_arrays(arrays):
    with pytest.raises(ValueError, match="unknown prior block.*" + quoted("tau")):
        from_arrays(*arrays, priors={"beta": Normal(0.0, 1.0), "tau": Uniform()})


@pytest.mark.parametrize("block, name", [("beta", "xx"), ("gamma", "uu"), ("beta", "Intercept")])
def test_unknown_coefficient_prior_formula(frame, block, name):
    """``Intercept`` is a gamma coefficient in a multilevel model, not a beta one."""
    priors = {block: {name: Normal(0.0, 1.0)}}
    with pytest.raises(ValueError, match=re.escape(f"priors[{block!r}]") + ".*" + quoted(name)):
        mg.Model.from_formula(FORMULA, frame, priors=priors)


@pytest.mark.parametrize("block, name", [("beta", "x2"), ("gamma", "u0")])
def test_unknown_coefficient_prior_arrays(arrays, block, name):
    priors = {block: {name: Normal(0.0, 1.0)}}
    with pytest.raises(ValueError, match=re.escape(f"priors[{block!r}]") + ".*" + quoted(name)):
        from_arrays(*arrays, group_predictors=["u"], priors=priors)


def test_known_coefficient_priors_accepted(frame):
    model = mg.Model.from_formula(FORMULA, frame, priors={"beta": {"z": Normal(1.0, 2.0)},
                                                         "gamma": {"u": Normal(0.0, 3.0)}})
    np.testing.assert_array_equal(model.priors.beta.loc, [0.0, 1.0])
    np.testing.assert_array_equal(model.priors.beta.scale, [np.inf, 2.0])
    np.testing.assert_array_equal(model.priors.gamma.scale, [np.inf, 3.0])


# --------------------------------------------------------------------------- sample() arguments
@pytest.fixture(scope="module")
def small_model():
    rng = np.random.default_rng(5)
    group = np.repeat(np.arange(3), 4)
    return mg.Model.from_arrays(rng.normal(size=12), rng.normal(size=(12, 1)), group)


def test_unknown_sampler(small_model):
    with pytest.raises(ValueError, match="unknown sampler " + quoted("nuts")):
        mg.sample(jax.random.key(0), small_model, sampler="nuts")
    with pytest.raises(ValueError, match="unknown sampler " + quoted("metropolis")):
        mg.gibbs(small_model, "metropolis")


@pytest.mark.parametrize("argument, value", [
    ("num_chains", 0), ("num_chains", -2), ("num_chains", 2.0), ("num_chains", "4"), ("num_chains", None),
    ("num_draws", 0), ("num_draws", 10.5), ("num_draws", None),
    ("num_warmup", -1), ("num_warmup", 1.5),
    ("thin", 0), ("thin", -1), ("thin", 2.0),
])
def test_bad_run_lengths(small_model, argument, value):
    with pytest.raises(ValueError, match=argument):
        mg.sample(jax.random.key(0), small_model, **{argument: value})


def test_initial_state_chain_mismatch(small_model):
    states = mg.GibbsState(alpha=np.zeros((2, 3)), beta=np.zeros((2, 1)), gamma=np.zeros((2, 1)),
                           sigma_y=np.ones(2), sigma_alpha=np.ones(2))
    with pytest.raises(ValueError, match="2 chains.*num_chains=3"):
        mg.sample(jax.random.key(1), small_model, num_chains=3, initial_state=states)


# --------------------------------------------------------------------------- dtype
def test_float64_without_x64(frame, arrays):
    with jax.enable_x64(False):
        with pytest.raises(ValueError, match="float64.*64-bit"):
            mg.Model.from_formula(FORMULA, frame, dtype=np.float64)
        with pytest.raises(ValueError, match="float64.*64-bit"):
            from_arrays(*arrays, dtype="float64")


@pytest.mark.parametrize("dtype", [np.int32, np.float16, "complex64"])
def test_unsupported_dtype(arrays, dtype):
    with pytest.raises(ValueError, match="dtype must be float32 or float64"):
        from_arrays(*arrays, dtype=dtype)

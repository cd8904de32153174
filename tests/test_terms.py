"""lme4 group terms (:mod:`mlgibbs.models.terms`): parsing, expansion, group codes, designs, nesting.

Parsing is checked term by term against lme4's expansion rules (``/``, ``:``, ``||``, implicit
intercepts) on every syntax variant, including expressions with their own parentheses. Group
codes and designs are checked on small hand-made frames (exact values) and on the radon data
(12,083 houses in 8 survey states) and a 73,421-row frame with InstEval's design (against pandas'
own ``groupby``). The nesting check is run on the three designs it must tell apart: the radon
counties under states (names repeat across states: warns), the radon FIPS codes under states
(exactly nested, unique: silent) and Penicillin's plates x samples (crossed: silent). Everything
here is deterministic, so exact equality is asserted.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import formulaic
import numpy as np
import pandas as pd
import pytest

import mlgibbs as mg
from mlgibbs.models.terms import (
    MixedFormula,
    NestingWarning,
    RandomTerm,
    check_implicit_nesting,
    factor_codes,
    factor_name,
    parse_mixed_formula,
    term_design,
)

LME4_DATA = Path("/work/shared/data/lme4")


def _terms(formula: str) -> list[tuple[str, tuple[str, ...], bool]]:
    return [(t.expr, t.factor, t.correlated) for t in parse_mixed_formula(formula).terms]


# ---------------------------------------------------------------------------------------------
# parsing
# ---------------------------------------------------------------------------------------------

PARSED = [
    # varying intercepts, spacing variants
    ("y ~ x + (1 | g)", "y ~ x", [("1", ("g",), True)]),
    ("y~x+(1|g)", "y ~ x", [("1", ("g",), True)]),
    ("y ~ x + (   1   |   g   )", "y ~ x", [("1", ("g",), True)]),
    ("y ~ x+( 1|g )+z", "y ~ x + z", [("1", ("g",), True)]),
    ("  y  ~  (1 | g)  +  x  ", "y ~ x", [("1", ("g",), True)]),
    ("y ~ ((1 | g))", "y ~ 1", [("1", ("g",), True)]),
    # varying slopes, with and without intercept
    ("Reaction ~ Days + (1 + Days | Subject)", "Reaction ~ Days", [("1 + Days", ("Subject",), True)]),
    ("Reaction ~ Days + (Days | Subject)", "Reaction ~ Days", [("Days", ("Subject",), True)]),
    ("y ~ (0 + x | g)", "y ~ 1", [("0 + x", ("g",), True)]),
    ("y ~ (-1 + x | g)", "y ~ 1", [("-1 + x", ("g",), True)]),
    ("y ~ (x - 1 | g)", "y ~ 1", [("x - 1", ("g",), True)]),
    # expressions with their own parentheses
    ("y ~ (1 + log(x) | g)", "y ~ 1", [("1 + log(x)", ("g",), True)]),
    ("y ~ (1 + I(x**2) | g)", "y ~ 1", [("1 + I(x**2)", ("g",), True)]),
    ("y ~ log(x) + (1 + np.log(x + 1) | g)", "y ~ log(x)", [("1 + np.log(x + 1)", ("g",), True)]),
    ("y ~ (1 + I((x - 1) * (x + 1)) | g)", "y ~ 1", [("1 + I((x - 1) * (x + 1))", ("g",), True)]),
    ("y ~ (0 + C(f) | g)", "y ~ 1", [("0 + C(f)", ("g",), True)]),
    # nesting and interactions
    ("y ~ (1 | state/county)", "y ~ 1", [("1", ("state",), True), ("1", ("state", "county"), True)]),
    ("y ~ (1 | a/b/c)", "y ~ 1",
     [("1", ("a",), True), ("1", ("a", "b"), True), ("1", ("a", "b", "c"), True)]),
    ("y ~ (1 | a / b / c)", "y ~ 1",
     [("1", ("a",), True), ("1", ("a", "b"), True), ("1", ("a", "b", "c"), True)]),
    ("y ~ (1 | state:county)", "y ~ 1", [("1", ("state", "county"), True)]),
    ("y ~ (1 | a : b)", "y ~ 1", [("1", ("a", "b"), True)]),
    ("y ~ (1 | a:b/c)", "y ~ 1", [("1", ("a", "b"), True), ("1", ("a", "b", "c"), True)]),
    ("y ~ (1 | a/b:c)", "y ~ 1", [("1", ("a",), True), ("1", ("a", "b", "c"), True)]),
    ("y ~ (1 + x | a/b)", "y ~ 1", [("1 + x", ("a",), True), ("1 + x", ("a", "b"), True)]),
    # uncorrelated terms
    ("y ~ (1 + x || g)", "y ~ 1", [("1", ("g",), False), ("0 + x", ("g",), False)]),
    ("y ~ (1+x||g)", "y ~ 1", [("1", ("g",), False), ("0 + x", ("g",), False)]),
    ("y ~ (x || g)", "y ~ 1", [("1", ("g",), False), ("0 + x", ("g",), False)]),
    ("y ~ (0 + x + z || g)", "y ~ 1", [("0 + x", ("g",), False), ("0 + z", ("g",), False)]),
    ("y ~ (-1 + x || g)", "y ~ 1", [("0 + x", ("g",), False)]),
    ("y ~ (1 + log(x) + I(x**2) || g)", "y ~ 1",
     [("1", ("g",), False), ("0 + log(x)", ("g",), False), ("0 + I(x ** 2)", ("g",), False)]),
    ("y ~ (x*z || g)", "y ~ 1",
     [("1", ("g",), False), ("0 + x", ("g",), False), ("0 + z", ("g",), False), ("0 + x:z", ("g",), False)]),
    ("y ~ (1 + x || a/b)", "y ~ 1",
     [("1", ("a",), False), ("0 + x", ("a",), False), ("1", ("a", "b"), False), ("0 + x", ("a", "b"), False)]),
    ("y ~ (1 || g)", "y ~ 1", [("1", ("g",), False)]),
    # several terms: crossed, nested, mixed
    ("diameter ~ 1 + (1 | plate) + (1 | sample)", "diameter ~ 1",
     [("1", ("plate",), True), ("1", ("sample",), True)]),
    ("y ~ x + (1 + x | a) + (1 | a:b) + (0 + z || c) + w", "y ~ x + w",
     [("1 + x", ("a",), True), ("1", ("a", "b"), True), ("0 + z", ("c",), False)]),
    # what remains of the fixed part
    ("y ~ 0 + x + (1 | g)", "y ~ 0 + x", [("1", ("g",), True)]),
    ("y ~ -1 + x + (1 | g)", "y ~ -1 + x", [("1", ("g",), True)]),
    ("y ~ x - 1 + (1 | g)", "y ~ x - 1", [("1", ("g",), True)]),
    ("y ~ 0 + (1 | g)", "y ~ 0", [("1", ("g",), True)]),
    ("y ~ (a + b):c + (1 | g)", "y ~ (a + b):c", [("1", ("g",), True)]),
    ("y ~ C(f, levels=['(a|b)', 'c']) + (1 | g)", "y ~ C(f, levels=['(a|b)', 'c'])", [("1", ("g",), True)]),
    ("log(y) ~ x", "log(y) ~ x", []),
    # unusual column names
    ("y ~ (1 | `my group`)", "y ~ 1", [("1", ("my group",), True)]),
    ("y ~ (1 | my.group/sub_group)", "y ~ 1",
     [("1", ("my.group",), True), ("1", ("my.group", "sub_group"), True)]),
    ("y ~ (0 + `my x` || g)", "y ~ 1", [("0 + `my x`", ("g",), False)]),
]


@pytest.mark.parametrize("formula, fixed, expected", PARSED, ids=[p[0] for p in PARSED])
def test_parse_every_syntax(formula, fixed, expected):
    parsed = parse_mixed_formula(formula)
    assert isinstance(parsed, MixedFormula)
    assert parsed.response_and_fixed == fixed
    assert _terms(formula) == expected
    assert all(isinstance(t, RandomTerm) for t in parsed.terms)
    formulaic.Formula(parsed.response_and_fixed)           # the fixed part is valid formulaic
    for term in parsed.terms:
        formulaic.Formula(term.expr)                        # and so is every expression


def test_text_is_the_users_term_shared_by_its_pieces():
    parsed = parse_mixed_formula("y ~ x + (1 + x || state/county) + ( 1|plate )")
    assert [t.text for t in parsed.terms] == ["(1 + x || state/county)"] * 4 + ["( 1|plate )"]


def test_implicit_intercept_follows_formulaic():
    """lme4 and formulaic agree: an expression without 0/-1 has an intercept."""
    for expr in ["x", "1 + x", "log(x)"]:
        assert "1" in [str(t) for t in formulaic.Formula(expr)]
    for expr in ["0 + x", "-1 + x", "x - 1", "x + 0"]:
        assert "1" not in [str(t) for t in formulaic.Formula(expr)]
    assert _terms("y ~ (x + 0 || g)") == [("0 + x", ("g",), False)]


ERRORS = [
    (42, "string"),
    ("y = x + (1 | g)", "no '~'"),
    ("y ~ x ~ z + (1 | g)", "exactly one '~'"),
    ("~ x + (1 | g)", "no response"),
    ("y | g ~ x", "'y | g'"),
    ("y ~ x | g", "'x | g'"),
    ("y ~ x + (1 | g) | h", "'(1 | g) | h'"),
    ("y ~ x * (1 | g)", "'x * (1 | g)'"),
    ("y ~ x + (1 + (1 | g))", "'(1 + (1 | g))'"),
    ("y ~ log(x | g)", "'log(x | g)'"),
    ("y ~ (1 + I(a | b) | g)", "'(1 + I(a | b) | g)'"),
    ("y ~ ( | g)", "no expression"),
    ("y ~ (|| g)", "no expression"),
    ("y ~ (1 | )", "no grouping factor"),
    ("y ~ (1 + x ||)", "no grouping factor"),
    ("y ~ (1 | g | h)", "more than one '|'"),
    ("y ~ (1 ||| g)", "more than one '|'"),
    ("y ~ (1 | a//b)", "'(1 | a//b)'"),
    ("y ~ (1 | a/)", "'(1 | a/)'"),
    ("y ~ (1 | :b)", "'(1 | :b)'"),
    ("y ~ (1 | my group)", "'my group'"),
    ("y ~ (1 | 3g)", "'3g'"),
    ("y ~ (1 | log(g))", "'log(g)'"),
    ("y ~ (1 | 'g')", "\"'g'\""),
    ("y ~ (1 | a:a)", "'a'"),
    ("y ~ (0 | g)", "no varying coefficient"),
    ("y ~ (1 + x ~ z | g)", "'~'"),
    ("y ~ (1 + x + | g)", "'(1 + x + | g)'"),
    ("y ~ x + (1 | g", "unbalanced"),
    ("y ~ x + 1 | g)", "unbalanced"),
    ("y ~ x + + (1 | g)", "empty term"),
    ("y ~ x + (1 | g) +", "empty term"),
    ("y ~ (1 | g) + (1 + x | g)", "the intercept varies by 'g' twice"),
    ("y ~ (1 + x | g) + (0 + x | g)", "'x' varies by 'g' twice"),
    ("y ~ (1 | a/b) + (1 | a)", "varies by 'a' twice"),
    ("y ~ (1 | a:b) + (1 | b:a)", "'(1 | a:b)' and '(1 | b:a)'"),
]


@pytest.mark.parametrize("formula, fragment", ERRORS, ids=[str(e[0]) for e in ERRORS])
def test_parse_errors_name_the_term(formula, fragment):
    with pytest.raises(ValueError) as info:
        parse_mixed_formula(formula)
    assert fragment in str(info.value)


def test_different_factors_and_separate_coefficients_are_not_overlap():
    assert len(parse_mixed_formula("y ~ (1 | g) + (0 + x | g) + (1 | h) + (1 + x | g:h)").terms) == 4


def test_factor_name():
    assert factor_name(("state", "county")) == "state:county"
    assert factor_name(("Subject",)) == "Subject"
    assert factor_name(("a", "b", "c")) == "a:b:c"


# ---------------------------------------------------------------------------------------------
# factor_codes
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def towns() -> pd.DataFrame:
    """Houses in counties of states; county names repeat across states; a non-default index."""
    return pd.DataFrame(
        {
            "state": ["MN", "WI", "MN", "IA", "WI", "MN", "IA"],
            "county": ["Hennepin", "Dane", "Anoka", "Polk", "Polk", "Hennepin", "Polk"],
            "zone": [10, 9, 10, 9, 9, 2, 10],
            "x": [0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5],
        },
        index=[101, 102, 103, 104, 105, 106, 107],
    )


def test_factor_codes_one_column(towns):
    codes, labels = factor_codes(towns, ("county",))
    assert labels == ("Anoka", "Dane", "Hennepin", "Polk")
    assert codes.dtype == np.int64 and codes.shape == (7,)
    assert codes.tolist() == [2, 1, 0, 3, 3, 2, 3]
    assert [labels[c] for c in codes] == towns["county"].tolist()


def test_factor_codes_integer_labels_are_python_ints(towns):
    codes, labels = factor_codes(towns, ("zone",))
    assert labels == (2, 9, 10)                                       # numeric order, not "10" < "2"
    assert all(type(label) is int for label in labels)
    assert codes.tolist() == [2, 1, 2, 1, 1, 0, 2]


def test_factor_codes_interaction(towns):
    codes, labels = factor_codes(towns, ("state", "county"))
    assert labels == ("IA:Polk", "MN:Anoka", "MN:Hennepin", "WI:Dane", "WI:Polk")
    assert codes.tolist() == [2, 3, 1, 0, 4, 2, 0]
    joined = (towns["state"] + ":" + towns["county"]).tolist()
    assert [labels[c] for c in codes] == joined


def test_factor_codes_interaction_sorted_by_the_tuple_of_values(towns):
    """(9, "IA") < (10, "IA") although the string "10:IA" < "9:IA"."""
    codes, labels = factor_codes(towns, ("zone", "state"))
    assert labels == ("2:MN", "9:IA", "9:WI", "10:IA", "10:MN")
    assert [labels[c] for c in codes] == [f"{z}:{s}" for z, s in zip(towns["zone"], towns["state"])]


def test_factor_codes_three_columns(towns):
    codes, labels = factor_codes(towns, ("state", "county", "zone"))
    assert labels == ("IA:Polk:9", "IA:Polk:10", "MN:Anoka:10", "MN:Hennepin:2", "MN:Hennepin:10",
                      "WI:Dane:9", "WI:Polk:9")
    assert [labels[c] for c in codes] == [
        f"{s}:{c}:{z}" for s, c, z in zip(towns["state"], towns["county"], towns["zone"])
    ]


def test_factor_codes_categorical_uses_category_order_and_drops_unused():
    frame = pd.DataFrame({
        "g": pd.Categorical(["low", "high", "mid", "high"], categories=["none", "low", "mid", "high", "max"]),
        "h": ["b", "a", "a", "b"],
    })
    codes, labels = factor_codes(frame, ("g",))
    assert labels == ("low", "mid", "high")                           # category order, unused dropped
    assert codes.tolist() == [0, 2, 1, 2]
    codes, labels = factor_codes(frame, ("g", "h"))
    assert labels == ("low:b", "mid:a", "high:a", "high:b")
    assert codes.tolist() == [0, 2, 1, 3]


def test_factor_codes_mixed_types_in_first_appearance_order():
    frame = pd.DataFrame({"g": pd.Series([3, "b", 3, 1.5, "b"], dtype=object), "h": list("pqqpp")})
    codes, labels = factor_codes(frame, ("g",))
    assert labels == (3, "b", 1.5)
    assert codes.tolist() == [0, 1, 0, 2, 1]
    codes, labels = factor_codes(frame, ("h", "g"))
    assert labels == ("p:3", "q:b", "q:3", "p:1.5", "p:b")
    assert codes.tolist() == [0, 1, 2, 3, 4]


def test_factor_codes_bool_and_float_columns():
    frame = pd.DataFrame({"flag": [True, False, True], "dose": [0.5, 0.25, 0.5]})
    codes, labels = factor_codes(frame, ("flag",))
    assert codes.tolist() == [1, 0, 1] and labels == (False, True)
    codes, labels = factor_codes(frame, ("flag", "dose"))
    assert labels == ("False:0.25", "True:0.5")
    assert codes.tolist() == [1, 0, 1]


def test_factor_codes_missing_column_lists_the_columns(towns):
    with pytest.raises(ValueError, match="'parish'") as info:
        factor_codes(towns, ("state", "parish"))
    assert "state, county, zone, x" in str(info.value)


def test_factor_codes_missing_values_give_index_labels(towns):
    frame = towns.copy()
    frame.loc[[103, 106], "county"] = None
    with pytest.raises(ValueError, match="'county'") as info:
        factor_codes(frame, ("state", "county"))
    assert "2 missing" in str(info.value) and "index labels 103, 106" in str(info.value)


def test_factor_codes_one_level(towns):
    frame = towns.assign(country="US")
    with pytest.raises(ValueError, match="a factor with one level cannot have a varying effect") as info:
        factor_codes(frame, ("country",))
    assert "'country'" in str(info.value)
    with pytest.raises(ValueError, match="'nation'"):
        factor_codes(frame, ("country",), name="nation")
    with pytest.raises(ValueError, match="'country:state'"):
        factor_codes(frame[frame.state == "MN"], ("country", "state"))


def test_factor_codes_labels_that_clash_after_joining():
    frame = pd.DataFrame({"a": ["x:y", "x"], "b": ["z", "y:z"]})
    with pytest.raises(ValueError, match="'a:b'.*'x:y:z'"):
        factor_codes(frame, ("a", "b"))


def test_factor_codes_rejects_a_non_frame():
    with pytest.raises(ValueError, match="DataFrame"):
        factor_codes({"g": [1, 2]}, ("g",))


def test_factor_codes_large_frame_agrees_with_groupby():
    """73,421 rows with InstEval's design (2,972 students x 1,128 lecturers in 14 departments).

    Speed is not asserted by wall clock; the code has no loop over rows (about 30 ms here).
    """
    rng = np.random.default_rng(3)
    n = 73_421
    frame = pd.DataFrame({
        "s": rng.integers(1, 2973, size=n),
        "d": rng.integers(1, 1129, size=n),
        "dept": rng.choice([f"D{k}" for k in range(1, 15)], size=n),
    })
    for factor in [("s",), ("d",), ("dept", "d"), ("s", "d"), ("dept", "s", "d")]:
        codes, labels = factor_codes(frame, factor)
        grouped = frame.groupby(factor[0] if len(factor) == 1 else list(factor), sort=True)
        np.testing.assert_array_equal(codes, grouped.ngroup().to_numpy())
        keys = list(grouped.groups)                          # the group keys, sorted
        if len(factor) == 1:
            assert list(labels) == keys
        else:
            assert list(labels) == [":".join(map(str, key)) for key in keys]


def test_factor_codes_radon_state_county():
    radon = mg.datasets.load_radon(state=None)
    codes, labels = factor_codes(radon, ("state", "county"))
    assert len(labels) == radon.groupby(["state", "county"]).ngroups
    assert "MN:HENNEPIN" in labels
    assert np.all(np.asarray(labels)[codes] == (radon["state"] + ":" + radon["county"]).to_numpy())
    _, counties = factor_codes(radon, ("county",))
    assert len(counties) < len(labels)                      # names repeat across states


# ---------------------------------------------------------------------------------------------
# term_design
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def sleep() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Reaction": [250.0, 260.0, 270.0, 300.0, 310.0, 330.0],
            "Days": [0, 1, 2, 0, 1, 2],
            "Subject": [308, 308, 308, 309, 309, 309],
            "x": [1.0, 2.0, 4.0, 0.5, 1.0, 8.0],
            "name": ["a", "b", "a", "b", "c", "a"],
            "kind": pd.Categorical(["u", "v", "u", "v", "v", "u"]),
            "flag": [True, False, True, False, True, True],
        },
        index=list("pqrstu"),
    )


DESIGNS = [
    ("1", ["Intercept"], [[1.0]] * 6),
    ("1 + Days", ["Intercept", "Days"], [[1, 0], [1, 1], [1, 2], [1, 0], [1, 1], [1, 2]]),
    ("Days", ["Intercept", "Days"], [[1, 0], [1, 1], [1, 2], [1, 0], [1, 1], [1, 2]]),
    ("0 + Days", ["Days"], [[0], [1], [2], [0], [1], [2]]),
    ("-1 + Days", ["Days"], [[0], [1], [2], [0], [1], [2]]),
    ("1 + log(x)", ["Intercept", "log(x)"], [[1, np.log(v)] for v in [1.0, 2.0, 4.0, 0.5, 1.0, 8.0]]),
    ("0 + I(Days**2)", ["I(Days ** 2)"], [[0], [1], [4], [0], [1], [4]]),
    ("0 + np.log(x)", ["np.log(x)"], [[np.log(v)] for v in [1.0, 2.0, 4.0, 0.5, 1.0, 8.0]]),
    ("0 + center(Days)", ["center(Days)"], [[-1], [0], [1], [-1], [0], [1]]),
    ("0 + Days:x", ["Days:x"], [[0], [2], [8], [0], [1], [16]]),
    ("0 + C(name)", ["C(name)[a]", "C(name)[b]", "C(name)[c]"],
     [[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]]),
    ("1 + C(name)", ["Intercept", "C(name)[T.b]", "C(name)[T.c]"],
     [[1, 0, 0], [1, 1, 0], [1, 0, 0], [1, 1, 0], [1, 0, 1], [1, 0, 0]]),
    ("1 + kind", ["Intercept", "kind[T.v]"], [[1, 0], [1, 1], [1, 0], [1, 1], [1, 1], [1, 0]]),
    ("0 + flag", ["flag"], [[1], [0], [1], [0], [1], [1]]),
]


@pytest.mark.parametrize("expr, names, values", DESIGNS, ids=[d[0] for d in DESIGNS])
def test_term_design_names_and_values(sleep, expr, names, values):
    Z, got = term_design(expr, sleep, term_text=f"({expr} | Subject)")
    assert got == names
    assert Z.dtype == np.float64 and Z.shape == (6, len(names))
    np.testing.assert_allclose(Z, np.asarray(values, dtype=float), rtol=1e-15)


def test_term_design_of_every_parsed_term(sleep):
    parsed = parse_mixed_formula("Reaction ~ Days + (1 + Days || Subject) + (0 + log(x) | Subject:name)")
    designs = [term_design(t.expr, sleep, term_text=t.text) for t in parsed.terms]
    assert [names for _, names in designs] == [["Intercept"], ["Days"], ["log(x)"]]
    np.testing.assert_array_equal(designs[1][0][:, 0], sleep["Days"].to_numpy(dtype=float))


TERM_ERRORS = [
    ("1 + Dayz", "(1 + Dayz | Subject)", ["'Dayz'", "(1 + Dayz | Subject)", "Reaction, Days, Subject"]),
    ("0 + center(Dayz)", "(0 + center(Dayz) | g)", ["'Dayz'", "not in the data frame"]),
    ("1 + name", "(1 + name | g)", ["slope column 'name' of term '(1 + name | g)' is not numeric", "C(name)"]),
    ("0 + Days:name", "(0 + Days:name | g)", ["slope column 'name'"]),
    ("0 + I(name)", "(0 + I(name) | g)", ["slope column 'name'"]),
    ("1 + log(Days)", "(1 + log(Days) | g)", ["'log(Days)'", "non-finite", "index labels p, s"]),
    ("1 + I(1 / (Days - 1))", "(1 + I(1 / (Days - 1)) | g)", ["'I(1 / (Days - 1))'", "index labels q, t"]),
    # the namespace of term_design itself must not leak into the formula
    ("1 + expr", "(1 + expr | g)", ["'expr'", "not in the data frame"]),
    ("1 + data", "(1 + data | g)", ["'data'", "not in the data frame"]),
    ("0 +", "(0 + | g)", ["(0 + | g)"]),
]


@pytest.mark.parametrize("expr, text, fragments", TERM_ERRORS, ids=[e[0] for e in TERM_ERRORS])
def test_term_design_errors_name_the_column(sleep, expr, text, fragments):
    with warnings.catch_warnings():
        warnings.simplefilter("error")                       # no RuntimeWarning from log(0) either
        with pytest.raises(ValueError) as info:
            term_design(expr, sleep, term_text=text)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_term_design_missing_and_infinite_values(sleep):
    frame = sleep.assign(x=[1.0, np.nan, 2.0, 3.0, None, 4.0])
    with pytest.raises(ValueError, match="'x'.*2 missing.*index labels q, t"):
        term_design("1 + x", frame, term_text="(1 + x | Subject)")
    frame = sleep.assign(x=[1.0, 2.0, np.inf, 3.0, 4.0, 5.0])
    with pytest.raises(ValueError, match="'x' of group term '\\(1 \\+ x \\| Subject\\)'.*index labels r"):
        term_design("1 + x", frame, term_text="(1 + x | Subject)")


# ---------------------------------------------------------------------------------------------
# check_implicit_nesting
# ---------------------------------------------------------------------------------------------


def _silent(data, factors) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_implicit_nesting(data, factors)


@pytest.fixture(scope="module")
def radon_states() -> pd.DataFrame:
    """The seven survey states; R5 (tribal lands) is left out because its FIPS codes are also
    Minnesota's, so that FIPS codes are exactly nested in states there."""
    radon = mg.datasets.load_radon(state=None)
    return radon[radon["state"] != "R5"]


def test_nesting_warns_for_county_names_repeating_across_states(radon_states):
    per_county = radon_states.groupby("county")["state"].nunique()
    repeated = int((per_county > 1).sum())
    assert 0 < repeated < len(per_county) / 2
    with pytest.warns(NestingWarning) as record:
        check_implicit_nesting(radon_states, [("state",), ("county",)])
    assert len(record) == 1
    message = str(record[0].message)
    for fragment in ["'county'", "'state'", f"{repeated} of the {len(per_county)} labels",
                     "(1 | state/county)", "(1 | state) + (1 | state:county)"]:
        assert fragment in message
    example = message.split("(e.g. ")[1].split(" under ")[0].strip("'")
    assert per_county[example] > 1


def test_nesting_silent_for_unique_nested_labels(radon_states):
    _silent(radon_states, [("state",), ("fips",)])
    _silent(radon_states, [("state",), ("state", "county")])              # (1 | state/county)


def test_nesting_silent_for_a_coarser_factor_over_its_nested_one():
    """grouseticks: broods exactly nested in locations, many locations with one brood, others with
    several; (1 | BROOD) + (1 | LOCATION) is right as written (it warned before, in either order)."""
    df = mg.datasets.load_grouseticks()
    _silent(df, [("BROOD",), ("LOCATION",)])
    _silent(df, [("LOCATION",), ("BROOD",)])
    _silent(df, [("BROOD",), ("INDEX",), ("LOCATION",)])


def test_nesting_silent_for_crossed_designs():
    """Penicillin's design: each of 6 samples on each of 24 plates."""
    plates, samples = np.meshgrid(list("abcdefghijklmnopqrstuvwx"), list("ABCDEF"), indexing="ij")
    frame = pd.DataFrame({"plate": plates.ravel(), "sample": samples.ravel()})
    _silent(frame, [("plate",), ("sample",)])


def test_nesting_silent_when_every_label_repeats():
    """Pastes' design: casks a, b, c under each of 10 batches look crossed and cannot warn."""
    batch, cask = np.meshgrid(list("ABCDEFGHIJ"), list("abc"), indexing="ij")
    frame = pd.DataFrame({"batch": np.repeat(batch.ravel(), 2), "cask": np.repeat(cask.ravel(), 2)})
    frame["sample"] = frame["batch"] + ":" + frame["cask"]
    _silent(frame, [("batch",), ("cask",)])
    _silent(frame, [("batch",), ("sample",)])
    _silent(frame, [("batch",), ("batch", "cask")])


@pytest.mark.skipif(not LME4_DATA.exists(), reason="lme4 data files not present")
def test_nesting_on_the_lme4_files():
    _silent(pd.read_csv(LME4_DATA / "Penicillin.csv"), [("plate",), ("sample",)])
    pastes = pd.read_csv(LME4_DATA / "Pastes.csv")
    _silent(pastes, [("batch",), ("sample",)])
    _silent(pastes, [("batch",), ("cask",)])


def test_nesting_threshold_half_of_the_labels():
    """Six classes in two schools; class labels repeating under both schools."""
    def frame(repeated: int) -> pd.DataFrame:
        rows = [("s1", f"c{k}") for k in range(6)] + [("s2", f"c{k}") for k in range(repeated)]
        rows += [("s2", f"d{k}") for k in range(6 - repeated)]
        return pd.DataFrame(rows, columns=["school", "klass"])

    _silent(frame(0), [("school",), ("klass",)])                 # exactly nested
    for repeated in (1, 2, 3):                                   # 9/8/7 labels, 1/2/3 repeat
        with pytest.warns(NestingWarning, match=f"{repeated} of the {12 - repeated} labels of grouping "
                                                "factor 'klass' occur under more than one level of 'school'"):
            check_implicit_nesting(frame(repeated), [("school",), ("klass",)])
    _silent(frame(5), [("school",), ("klass",)])                 # 5 of 7 repeat: crossed, not nested


def test_nesting_skips_interactions_and_checks_columns(towns):
    _silent(towns, [("state", "county"), ("county",)])
    _silent(towns, [("county",)])
    _silent(towns, [])
    with pytest.raises(ValueError, match="'parish'"):
        check_implicit_nesting(towns, [("state",), ("parish",)])


def test_nesting_warning_points_at_the_callers_line(radon_states):
    with pytest.warns(NestingWarning) as record:
        check_implicit_nesting(radon_states, [("state",), ("county",)])
    assert record[0].filename == __file__

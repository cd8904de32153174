"""lme4-style formulas: group terms ``(1 | g)`` split off, the fixed part parsed by formulaic."""

from __future__ import annotations

import re
from typing import NamedTuple

import numpy as np
from mlgibbs._lazy import pandas as pd

from mlgibbs.models.validation import _rows

__all__ = ["GroupTerm", "ParsedFormula", "parse_formula", "fixed_design"]

_GROUP_TERM = re.compile(r"\(\s*([^()|]*?)\s*(\|\|?)\s*([^()|]+?)\s*\)")


class GroupTerm(NamedTuple):
    """A group term ``(expr | group)`` of an lme4 formula."""

    expr: str
    group: str
    text: str


class ParsedFormula(NamedTuple):
    """A formula split into its fixed part (formulaic syntax) and its group terms."""

    fixed: str
    group_terms: tuple[GroupTerm, ...]


def parse_formula(formula: str) -> ParsedFormula:
    """Split ``formula`` into the fixed part and the group terms.

    Only varying intercepts with one grouping factor, ``(1 | g)``, are supported so far; varying
    slopes, nested (``a/b``) and crossed (several) group terms raise ``NotImplementedError``.

    Examples
    --------
    >>> parse_formula("log_radon ~ floor + log_uranium + (1 | county)").fixed
    'log_radon ~ floor + log_uranium'
    """
    if not isinstance(formula, str) or formula.count("~") != 1:
        raise ValueError(f"formula must be a string 'response ~ predictors', got {formula!r}")
    terms = tuple(
        GroupTerm(m.group(1).strip(), m.group(3).strip(), m.group(0)) for m in _GROUP_TERM.finditer(formula)
    )
    fixed = _GROUP_TERM.sub("", formula)
    lhs, rhs = (side.strip() for side in fixed.split("~"))
    rhs = re.sub(r"\+\s*(?=\+|$)", "", rhs)          # drop '+' left dangling by removed terms
    rhs = re.sub(r"^\s*\+", "", rhs).strip()
    if not lhs:
        raise ValueError(f"formula {formula!r} has no response on the left of '~'")
    if not rhs:
        rhs = "1"
    for term in terms:
        if "/" in term.group or ":" in term.group:
            raise NotImplementedError(
                f"nested grouping {term.text!r} is not supported yet; only one grouping factor (1 | g)"
            )
        if term.expr.replace(" ", "") not in ("1", "1+0", "0+1"):
            raise NotImplementedError(
                f"varying slopes {term.text!r} are not supported yet; only varying intercepts (1 | g)"
            )
    if len(terms) > 1:
        raise NotImplementedError(
            f"several group terms ({', '.join(t.text for t in terms)}) are not supported yet; "
            "use one grouping factor"
        )
    if "|" in _GROUP_TERM.sub("", formula):
        raise ValueError(f"could not parse the group term in {formula!r}; expected '(1 | group)'")
    return ParsedFormula(fixed=f"{lhs} ~ {rhs}", group_terms=terms)


def _categorical_variables(fixed: str) -> set[str]:
    """Variables wrapped in ``C(...)`` in the fixed part: strings are allowed there."""
    return set(re.findall(r"\bC\(\s*([A-Za-z_][A-Za-z0-9_.]*)", fixed))


def fixed_design(fixed: str, data: pd.DataFrame, *, return_spec: bool = False):
    """Response vector and fixed-effect design of the fixed part of a formula.

    Every variable is checked first, so that errors name the column: it must exist, hold no missing
    values, and be numeric unless it is wrapped in ``C(...)`` (or is categorical/boolean).

    Returns
    -------
    y, response_name, X, column_names[, spec]
        With ``return_spec``, also formulaic's model spec of the right-hand side, which evaluates the
        same columns on new data (levels and stateful transforms as fitted): :func:`mlgibbs.predict`.
    """
    import formulaic

    structured = formulaic.Formula(fixed)
    lhs_vars = sorted(structured.lhs.required_variables)
    rhs_vars = sorted(structured.rhs.required_variables)
    categorical = _categorical_variables(fixed)
    for var in lhs_vars + rhs_vars:
        if var not in data.columns:
            raise ValueError(f"column {var!r} of the formula is not in the data frame; columns: "
                             f"{', '.join(map(str, data.columns))}")
        col = data[var]
        missing = col.isna().to_numpy()
        if missing.any():
            raise ValueError(
                f"column {var!r} has {int(missing.sum())} missing value(s) ({_rows(missing, index=data.index)}); "
                "nothing is dropped silently: remove or impute these rows first"
            )
        numeric = pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)
        if var in lhs_vars and not numeric:
            raise ValueError(f"response column {var!r} is not numeric (dtype {col.dtype})")
        if not numeric and var not in categorical and not isinstance(col.dtype, pd.CategoricalDtype):
            raise ValueError(
                f"column {var!r} is not numeric (dtype {col.dtype}); wrap it in C({var}) to use it as a "
                "categorical predictor"
            )
        if numeric and not np.all(np.isfinite(col.to_numpy(dtype=float))):
            raise ValueError(f"column {var!r} has infinite values")
    mm = formulaic.model_matrix(fixed, data, context={}, na_action="raise")  # no caller locals
    lhs = mm.lhs
    if lhs.shape[1] != 1:
        raise ValueError(f"the response of {fixed!r} must be one numeric column, got {list(lhs.columns)}")
    y = np.asarray(lhs, dtype=float)[:, 0]
    X = np.asarray(mm.rhs, dtype=float)
    names = [str(c) for c in mm.rhs.columns]
    for name, values in [(str(lhs.columns[0]), y[:, None]), *((n, X[:, [k]]) for k, n in enumerate(names))]:
        bad = ~np.isfinite(values[:, 0])
        if bad.any():
            raise ValueError(f"{name!r} has {int(bad.sum())} non-finite value(s) after evaluating the "
                             f"formula ({_rows(bad, index=data.index)}); nothing is dropped silently")
    if return_spec:
        return y, str(lhs.columns[0]), X, names, mm.rhs.model_spec
    return y, str(lhs.columns[0]), X, names


def new_fixed_design(spec, data: pd.DataFrame, names: list[str], *, what: str = "newdata") -> np.ndarray:
    """The fixed-effect columns ``names`` of the right-hand side ``spec`` evaluated on new rows.

    Raises a ValueError naming a column that is missing, has missing values, or holds a level the
    model was not fitted with (formulaic would turn it into zeros with a warning).
    """
    import warnings

    import formulaic
    from formulaic.errors import FactorEvaluationError

    from mlgibbs.models.terms import _require_columns, _require_complete

    required = sorted(spec.required_variables) if hasattr(spec, "required_variables") else []
    _require_columns(data, required, f"the fixed effects, in {what}")
    for var in required:
        _require_complete(data, var, what)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", formulaic.errors.DataMismatchWarning)
            mm = spec.get_model_matrix(data)
    except formulaic.errors.DataMismatchWarning as err:
        raise ValueError(f"{what} holds levels of a categorical predictor that the model was not fitted "
                         f"with: {err}") from None
    except FactorEvaluationError as err:
        raise ValueError(f"could not evaluate the fixed effects on {what}: {err}") from None
    cols = [str(c) for c in mm.columns]
    if cols != list(names):
        raise ValueError(f"the fixed-effect columns of {what} are {cols}, the model's {list(names)}")
    return np.asarray(mm, dtype=float)

"""lme4 group terms: ``(expr | factor)`` in every form lme4 accepts, and the pieces built from them.

A mixed-model formula is a fixed part in formulaic syntax plus group terms added to it with ``+``:

========================  =============================================================
``(1 | g)``               varying intercept by ``g``
``(1 + x | g)``           correlated varying intercept and slope (``(x | g)`` likewise)
``(0 + x | g)``           varying slope only (``-1 + x`` likewise)
``(1 + x || g)``          uncorrelated: ``(1 | g) + (0 + x | g)``
``(1 | a/b)``             nested: ``(1 | a) + (1 | a:b)``; ``a/b/c`` adds ``a:b:c``
``(1 | a:b)``             one grouping factor, the interaction of the columns ``a`` and ``b``
``(1 | a) + (1 | b)``     several terms: crossed, nested or any mix
========================  =============================================================

:func:`parse_mixed_formula` splits a formula into the fixed part and the expanded
:class:`RandomTerm` s; :func:`factor_codes` and :func:`term_design` build, for one term, the group
index of each row and the design ``Z`` of the varying coefficients (formulaic evaluates the
expression, so ``(1 + log(x) | g)`` and ``(0 + C(f) | g)`` work and the columns carry formulaic's
names). :func:`check_implicit_nesting` warns about lme4's classic silent mistake, ``(1 | state) +
(1 | county)`` where county names repeat across states.

Every check raises early, naming the term as the user wrote it and the column at fault.
"""

from __future__ import annotations

import ast
import builtins
import warnings
from typing import NamedTuple

import numpy as np

from mlgibbs._lazy import pandas as pd
from mlgibbs.models.validation import _rows

__all__ = [
    "MixedFormula",
    "NestingWarning",
    "RandomTerm",
    "check_implicit_nesting",
    "factor_codes",
    "factor_name",
    "parse_mixed_formula",
    "term_design",
]

_QUOTES = "'\"`"


class RandomTerm(NamedTuple):
    """One group term after expansion: coefficients ``expr`` vary by the groups of ``factor``.

    Attributes
    ----------
    expr : str
        Formulaic right-hand side of the varying coefficients: ``"1"``, ``"1 + Days"``,
        ``"0 + Days"``. Without ``0``/``-1`` it has an intercept (lme4 and formulaic agree).
    factor : tuple of str
        Columns whose interaction is the grouping factor: ``("Subject",)``, ``("state", "county")``.
    correlated : bool
        False for the pieces of a ``||`` term (their coefficients are independent a priori).
    text : str
        The user's original text of the term, for messages, e.g. ``"(1 | state/county)"``; the
        pieces of one expanded term share it.
    """

    expr: str
    factor: tuple[str, ...]
    correlated: bool
    text: str


class MixedFormula(NamedTuple):
    """A formula split into its fixed part and its expanded group terms.

    Attributes
    ----------
    response_and_fixed : str
        The fixed part for formulaic, ``"y ~ a + b"``; ``"y ~ 1"`` when no fixed term remains
        (``"0 +"``/``"-1"`` are kept, so ``"y ~ 0 + (1 | g)"`` gives ``"y ~ 0"``).
    terms : tuple of RandomTerm
        The group terms in the order written, ``/`` and ``||`` expanded.
    """

    response_and_fixed: str
    terms: tuple[RandomTerm, ...]


class NestingWarning(UserWarning):
    """A grouping factor whose labels look nested in another factor but repeat across its levels."""


# ---------------------------------------------------------------------------------------------
# scanning: parentheses depth outside quotes
# ---------------------------------------------------------------------------------------------


def _depths(text: str, what: str) -> list[int | None]:
    """Parenthesis depth of each character of ``text`` (None inside quotes or backticks).

    An opening or closing parenthesis gets the depth outside it, so the top level is depth 0.
    Raises a ValueError naming ``what`` for unbalanced parentheses or an unterminated quote.
    """
    depths: list[int | None] = []
    depth = 0
    quote = None
    escaped = False
    for char in text:
        if quote is not None:
            depths.append(None)
            if escaped:
                escaped = False
            elif char == "\\" and quote != "`":
                escaped = True
            elif char == quote:
                quote = None
            continue
        if char in _QUOTES:
            quote = char
            depths.append(None)
        elif char == "(":
            depths.append(depth)
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced parentheses in {what}: a ')' without its '('")
            depths.append(depth)
        else:
            depths.append(depth)
    if quote is not None:
        raise ValueError(f"unterminated {quote} quote in {what}")
    if depth != 0:
        raise ValueError(f"unbalanced parentheses in {what}: {depth} '(' without their ')'")
    return depths


def _split_top(text: str, sep: str, what: str) -> list[str]:
    """``text`` split at each ``sep`` at depth 0 outside quotes."""
    depths = _depths(text, what)
    pieces, start = [], 0
    for i, (char, depth) in enumerate(zip(text, depths)):
        if char == sep and depth == 0:
            pieces.append(text[start:i])
            start = i + 1
    pieces.append(text[start:])
    return pieces


def _has_bar(text: str) -> bool:
    """Is there a ``|`` outside quotes anywhere in ``text``?"""
    return any(c == "|" and d is not None for c, d in zip(text, _depths(text, repr(text))))


def _wrapped(text: str) -> bool:
    """Is ``text`` (stripped) one parenthesised group, ``( ... )``, from its first to last char?"""
    if not text.startswith("(") or not text.endswith(")"):
        return False
    depths = _depths(text, repr(text))
    # the first '(' closes at the last char iff no character in between is back at depth 0
    return all(d is None or d >= 1 for d in depths[1:-1])


def _group_body(piece: str) -> tuple[str, list[int]] | None:
    """The inside of a group term ``(expr | factor)`` and the positions of its depth-0 bars.

    Redundant parentheses, ``((1 | g))``, are removed. None when ``piece`` is not a group term.
    """
    inner = piece
    while _wrapped(inner):
        body = inner[1:-1]
        depths = _depths(body, repr(piece))
        bars = [i for i, (c, d) in enumerate(zip(body, depths)) if c == "|" and d == 0]
        if bars:
            return body, bars
        inner = body.strip()
    return None


# ---------------------------------------------------------------------------------------------
# parsing
# ---------------------------------------------------------------------------------------------


def _column_name(name: str, text: str) -> str:
    """A column name of a grouping factor: an identifier (dots allowed, as in R) or `back ticked`."""
    name = name.strip()
    if len(name) > 2 and name.startswith("`") and name.endswith("`") and "`" not in name[1:-1]:
        return name[1:-1]
    if name and name != "." and name.replace(".", "_").isidentifier():
        return name
    if not name:
        raise ValueError(f"group term {text!r} has an empty grouping factor name (a ':' or '/' "
                         "with nothing on one side)")
    raise ValueError(
        f"grouping factor {name!r} of term {text!r} is not a valid column name; expected a name "
        "such as county or state/county (quote an unusual name with backticks: `my group`)"
    )


def _parse_factor(factor_text: str, text: str) -> list[tuple[str, ...]]:
    """``"a/b:c"`` -> ``[("a",), ("a", "b", "c")]``: the nested levels, each an interaction."""
    if not factor_text.strip():
        raise ValueError(f"group term {text!r} has no grouping factor on the right of '|'; "
                         "expected e.g. (1 | county)")
    levels: list[tuple[str, ...]] = []
    prefix: tuple[str, ...] = ()
    for level in _split_top(factor_text, "/", repr(text)):
        columns = tuple(_column_name(part, text) for part in _split_top(level, ":", repr(text)))
        prefix = prefix + columns
        if len(set(prefix)) != len(prefix):
            repeated = next(c for c in prefix if prefix.count(c) > 1)
            raise ValueError(f"grouping factor of term {text!r} names column {repeated!r} twice")
        levels.append(prefix)
    return levels


def _term_label(term) -> str:
    """A formulaic term as formula text, backticks restored on names that need them."""
    parts = []
    for factor in term.factors:
        expr = str(factor.expr)
        if factor.eval_method.name == "LOOKUP" and not expr.replace(".", "_").isidentifier():
            expr = f"`{expr}`"
        parts.append(expr)
    return ":".join(parts)


def _expression_terms(expr: str, text: str) -> tuple[bool, list[str]]:
    """Does ``expr`` have an intercept, and its other terms (formulaic's expansion, as text)."""
    import formulaic
    from formulaic.formula import SimpleFormula

    if not expr:
        raise ValueError(f"group term {text!r} has no expression on the left of '|'; "
                         "expected e.g. (1 | g) for a varying intercept")
    if "~" in expr:
        raise ValueError(f"the expression {expr!r} of group term {text!r} contains '~'")
    try:
        parsed = formulaic.Formula(expr)
    except Exception as exc:  # formulaic raises several types for malformed input
        raise ValueError(f"could not parse the expression {expr!r} of group term {text!r}: {exc}") from exc
    if not isinstance(parsed, SimpleFormula):
        raise ValueError(f"the expression {expr!r} of group term {text!r} must be one right-hand side")
    labels = [_term_label(term) for term in parsed]
    intercept = "1" in labels
    others = [label for label in labels if label != "1"]
    if not intercept and not others:
        raise ValueError(f"group term {text!r} has no varying coefficient; expected e.g. (1 | g) "
                         "or (0 + x | g)")
    return intercept, others


def parse_mixed_formula(formula: str) -> MixedFormula:
    """Split an lme4-style formula into its fixed part and its expanded group terms.

    The right-hand side is scanned for parentheses at top level (outside quotes); a parenthesised
    piece with a ``|`` or ``||`` directly inside it is a group term, so expressions with their
    own parentheses, ``(1 + log(x) | g)`` or ``(1 + I(x**2) | g)``, are fine. Group terms must be
    added with ``+``. Expansion follows lme4:

    * ``(e | a/b/c)`` -> ``(e | a) + (e | a:b) + (e | a:b:c)``;
    * ``(e | a:b)`` -> one term whose factor is the interaction ``("a", "b")``;
    * ``(1 + x || g)`` -> ``(1 | g) + (0 + x | g)``, one piece per term of formulaic's expansion of
      the expression (``x*z`` gives ``x``, ``z``, ``x:z``), each ``correlated=False``; the implicit
      intercept counts, ``(x || g)`` gives ``1`` and ``0 + x``.

    Parameters
    ----------
    formula : str
        ``"response ~ fixed + (expr | factor) + ..."``.

    Returns
    -------
    MixedFormula
        ``response_and_fixed`` for formulaic and the tuple of :class:`RandomTerm`.

    Raises
    ------
    ValueError
        Naming the term: no ``~`` (or several), no response, a ``|`` outside a group term, a group
        term not added with ``+``, an empty expression or factor, a factor that is not a column
        name, an expression formulaic cannot parse or without any coefficient, and the same
        coefficient varying twice by the same factor (``(1 | g) + (1 + x | g)``: the two variances
        of the intercept could not be told apart).

    Examples
    --------
    >>> f = parse_mixed_formula("y ~ x + (1 + x || g) + (1 | state/county)")
    >>> f.response_and_fixed
    'y ~ x'
    >>> [(t.expr, t.factor, t.correlated) for t in f.terms]  # doctest: +NORMALIZE_WHITESPACE
    [('1', ('g',), False), ('0 + x', ('g',), False),
     ('1', ('state',), True), ('1', ('state', 'county'), True)]
    """
    if not isinstance(formula, str):
        raise ValueError(f"formula must be a string 'response ~ predictors', got {formula!r}")
    depths = _depths(formula, f"formula {formula!r}")
    tildes = [i for i, (c, d) in enumerate(zip(formula, depths)) if c == "~" and d is not None]
    if not tildes:
        raise ValueError(f"formula {formula!r} has no '~'; expected 'response ~ predictors'")
    if len(tildes) > 1 or depths[tildes[0]] != 0:
        raise ValueError(f"formula {formula!r} must have exactly one '~', at top level")
    lhs, rhs = formula[: tildes[0]].strip(), formula[tildes[0] + 1:]
    if not lhs:
        raise ValueError(f"formula {formula!r} has no response on the left of '~'")
    if _has_bar(lhs):
        raise ValueError(f"the response {lhs!r} of formula {formula!r} contains '|'; group terms "
                         "belong on the right of '~'")

    fixed: list[str] = []
    terms: list[RandomTerm] = []
    for raw in _split_top(rhs, "+", f"formula {formula!r}"):
        piece = raw.strip()
        if not piece:
            raise ValueError(f"formula {formula!r} has an empty term (a '+' with nothing on one side)")
        group = _group_body(piece)
        if group is None:
            if _has_bar(piece):
                raise ValueError(
                    f"'|' outside a group term in {piece!r} of formula {formula!r}; a group term is "
                    "'(expr | factor)' in parentheses, added to the formula with '+'"
                )
            fixed.append(piece)
            continue
        body, bars = group
        double = len(bars) == 2 and bars[1] == bars[0] + 1
        if len(bars) > 1 and not double:
            raise ValueError(f"group term {piece!r} has more than one '|'; expected (expr | factor)")
        expr = body[: bars[0]].strip()
        factor_text = body[bars[-1] + 1:]
        if _has_bar(expr) or _has_bar(factor_text):
            raise ValueError(f"group term {piece!r} has a '|' inside its expression or factor; "
                             "expected (expr | factor)")
        intercept, others = _expression_terms(expr, piece)
        levels = _parse_factor(factor_text, piece)
        if double:
            pieces = (["1"] if intercept else []) + [f"0 + {label}" for label in others]
        else:
            pieces = [expr]
        for factor in levels:
            terms.extend(RandomTerm(p, factor, not double, piece) for p in pieces)

    _check_overlap(terms)
    return MixedFormula(f"{lhs} ~ {' + '.join(fixed) or '1'}", tuple(terms))


def _check_overlap(terms: list[RandomTerm]) -> None:
    """Raise when one coefficient varies twice by the same grouping factor."""
    seen: dict[tuple[frozenset, str], str] = {}
    for term in terms:
        intercept, others = _expression_terms(term.expr, term.text)
        for label in (["1"] if intercept else []) + others:
            key = (frozenset(term.factor), label)
            if key in seen:
                what = "the intercept" if label == "1" else f"the coefficient of {label!r}"
                raise ValueError(
                    f"{what} varies by {factor_name(term.factor)!r} twice (terms {seen[key]!r} and "
                    f"{term.text!r}); its two "
                    "variances could not be told apart: keep it in one term, e.g. (1 + x | g) or "
                    "(1 | g) + (0 + x | g)"
                )
            seen[key] = term.text


def factor_name(factor: tuple[str, ...]) -> str:
    """The name of a grouping factor: its columns joined with ``":"``, e.g. ``"state:county"``."""
    return ":".join(str(column) for column in factor)


# ---------------------------------------------------------------------------------------------
# building from a data frame
# ---------------------------------------------------------------------------------------------


def _require_columns(data, columns, what: str) -> None:
    """Raise a ValueError naming the first of ``columns`` missing from ``data`` and listing its columns."""
    if not isinstance(data, pd.DataFrame):
        raise ValueError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    for column in columns:
        if column not in data.columns:
            raise ValueError(f"column {column!r} of {what} is not in the data frame; columns: "
                             f"{', '.join(map(str, data.columns))}")


def _require_complete(data, column, what: str) -> None:
    """Raise a ValueError naming ``column`` and the index labels of its missing values."""
    missing = data[column].isna().to_numpy()
    if missing.any():
        raise ValueError(
            f"column {column!r} of {what} has {int(missing.sum())} missing value(s) "
            f"({_rows(missing, index=data.index)}); nothing is dropped silently: remove or impute "
            "these rows first"
        )


def _sorted_codes(series) -> tuple[np.ndarray, list, bool]:
    """Codes in sorted order of the values (category order for a Categorical), the used values
    in that order, and whether they could be sorted (else the order is first appearance)."""
    codes, uniques = pd.factorize(series, sort=False)
    if isinstance(series.dtype, pd.CategoricalDtype):
        order = np.argsort(np.asarray(uniques.codes), kind="stable")
        sortable = True
    else:
        values = np.asarray(uniques, dtype=object) if uniques.dtype == object else np.asarray(uniques)
        try:
            order = np.argsort(values, kind="stable")
            sortable = True
        except TypeError:  # mixed types, e.g. 1 and "a"
            order = np.arange(len(uniques))
            sortable = False
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank[codes], [uniques[j] for j in order], sortable


def _python_scalar(value):
    """A NumPy scalar as the Python scalar it holds (labels print as ``3``, not ``np.int64(3)``)."""
    return value.item() if isinstance(value, np.generic) else value


def factor_codes(data, factor: tuple[str, ...], *, name: str | None = None) -> tuple[np.ndarray, tuple]:
    """Integer group index of each row for the grouping factor ``factor``, and the group labels.

    Only levels that occur become groups (unused categories of a pandas Categorical are dropped),
    so no group is empty. Labels are sorted: by value, in category order for a Categorical; for
    an interaction by the tuple of the columns' values; in order of first appearance when the
    values cannot be compared (mixed types). Everything is vectorised.

    Parameters
    ----------
    data : pandas.DataFrame
        The data, one row per observation.
    factor : tuple of str
        The columns whose interaction is the grouping factor, e.g. ``("state", "county")``.
    name : str, optional
        The name used in messages; ``factor_name(factor)`` by default.

    Returns
    -------
    codes : numpy.ndarray
        int64 of shape ``(n,)``, values ``0..J-1``.
    labels : tuple
        The ``J`` group labels: the values of the column for one column, else the values joined
        as strings with ``":"``, e.g. ``"MN:HENNEPIN"``.

    Raises
    ------
    ValueError
        A column is missing (the data frame's columns are listed), has missing values (their
        index labels are given), or the factor has only one level.

    Examples
    --------
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"state": ["MN", "MN", "IA"], "county": ["Clay", "Polk", "Clay"]})
    >>> factor_codes(frame, ("state", "county"))
    (array([1, 2, 0]), ('IA:Clay', 'MN:Clay', 'MN:Polk'))
    """
    factor = tuple(factor)
    name = factor_name(factor) if name is None else name
    if not factor:
        raise ValueError(f"grouping factor {name!r} names no column")
    _require_columns(data, factor, f"grouping factor {name!r}")
    for column in factor:
        _require_complete(data, column, f"grouping factor {name!r}")

    per_column = [_sorted_codes(data[column]) for column in factor]
    if len(factor) == 1:
        codes, uniques, _ = per_column[0]
        labels = tuple(_python_scalar(v) for v in uniques)
    else:
        sizes = [len(uniques) for _, uniques, _ in per_column]
        sort = all(sortable for _, _, sortable in per_column)  # else order of first appearance
        if float(np.prod(sizes, dtype=float)) < 2.0**62:  # one int64 key per row, in tuple order
            key = np.ravel_multi_index([codes for codes, _, _ in per_column], sizes)
            codes, keys = pd.factorize(key, sort=sort)
            combos = np.stack(np.unravel_index(keys, sizes), axis=1)
        else:  # too many combinations for one key
            stacked = np.stack([codes for codes, _, _ in per_column], axis=1)
            combos, first, codes = np.unique(stacked, axis=0, return_index=True, return_inverse=True)
            codes = np.asarray(codes).reshape(-1)
            if not sort:
                order = np.argsort(first, kind="stable")
                rank = np.empty(len(order), dtype=np.int64)
                rank[order] = np.arange(len(order))
                codes, combos = rank[codes], combos[order]
        # the strings of each column's few values, gathered per group and joined: no loop over rows
        parts = [
            pd.Series(np.array([str(_python_scalar(v)) for v in uniques], dtype=object)[combos[:, k]])
            for k, (_, uniques, _) in enumerate(per_column)
        ]
        joined = parts[0].str.cat(parts[1:], sep=":")
        labels = tuple(joined.tolist())
        duplicated = joined.duplicated().to_numpy()
        if duplicated.any():
            clash = labels[int(np.argmax(duplicated))]
            raise ValueError(
                f"two different groups of grouping factor {name!r} have the same label {clash!r} "
                "(a value contains ':'); rename the values of its columns"
            )
    codes = np.asarray(codes, dtype=np.int64)
    if not labels:
        raise ValueError(f"grouping factor {name!r} has no levels: the data frame has no rows")
    if len(labels) < 2:
        raise ValueError(
            f"grouping factor {name!r} has one level ({labels[0]!r} in every row); a factor with "
            "one level cannot have a varying effect: drop its group term"
        )
    return codes, labels


def _names_in(factor_expr: str) -> tuple[set[str], set[str]]:
    """The names a Python factor expression reads, and those that are the first argument of ``C``."""
    try:
        tree = ast.parse(factor_expr, mode="eval")
    except SyntaxError:  # backticks and other formulaic-only syntax: leave it to formulaic
        return set(), set()
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    categorical = {
        node.args[0].id for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "C"
        and node.args and isinstance(node.args[0], ast.Name)
    }
    return names, categorical


def term_design(expr: str, data, *, term_text: str) -> tuple[np.ndarray, list[str]]:
    """The design ``Z`` of the varying coefficients ``expr`` of one group term.

    formulaic evaluates ``expr`` on ``data`` (transforms such as ``log``, ``I``, ``C``,
    ``center`` and ``np`` are available; nothing from the caller's namespace). Each variable is
    checked first, so that errors name the column: it must exist, have no missing values, and be
    numeric (or boolean) unless it is wrapped in ``C(...)`` or is a pandas Categorical.

    Parameters
    ----------
    expr : str
        The formulaic right-hand side, e.g. ``"1 + Days"`` (:attr:`RandomTerm.expr`).
    data : pandas.DataFrame
        The data, one row per observation.
    term_text : str
        The term as the user wrote it, for messages (:attr:`RandomTerm.text`).

    Returns
    -------
    Z : numpy.ndarray
        float64 of shape ``(n, d)``.
    names : list of str
        formulaic's column names, e.g. ``["Intercept", "Days"]``.

    Raises
    ------
    ValueError
        Naming the column: missing from the data, with missing values, not numeric, or with
        non-finite values after evaluation (``log`` of 0); or naming the term when formulaic
        cannot evaluate the expression.

    Examples
    --------
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"Days": [0.0, 1.0, 2.0], "Subject": [1, 1, 2]})
    >>> Z, names = term_design("1 + Days", frame, term_text="(1 + Days | Subject)")
    >>> names, Z[:, 1].tolist()
    (['Intercept', 'Days'], [0.0, 1.0, 2.0])
    """
    import formulaic
    from formulaic.transforms import TRANSFORMS

    if not isinstance(data, pd.DataFrame):
        raise ValueError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    try:
        parsed = formulaic.Formula(expr)
    except Exception as exc:
        raise ValueError(f"could not parse the expression {expr!r} of group term {term_text!r}: {exc}") from exc

    required = {str(v) for v in parsed.required_variables}
    read, categorical = set(), set()
    for term in parsed:
        for factor in term.factors:
            if factor.eval_method.name == "LOOKUP":
                read.add(str(factor.expr))
            elif factor.eval_method.name == "PYTHON":
                names, in_c = _names_in(str(factor.expr))
                read |= names
                categorical |= in_c
    # formulaic does not report the variables of stateful transforms (center(x)); the names read
    # that are columns are checked too, the rest are transforms, numpy or builtins
    variables = sorted(required | {v for v in read if v in data.columns})
    unknown = sorted(v for v in read - set(variables) if v not in TRANSFORMS and not hasattr(builtins, v))
    _require_columns(data, variables + unknown, f"group term {term_text!r}")
    for var in variables:
        _require_complete(data, var, f"group term {term_text!r}")
        col = data[var]
        numeric = pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)
        if not numeric and var not in categorical and not isinstance(col.dtype, pd.CategoricalDtype):
            raise ValueError(
                f"slope column {var!r} of term {term_text!r} is not numeric (dtype {col.dtype}); "
                f"expected numbers, or wrap it in C({var}) for a varying effect of each category"
            )

    try:
        with np.errstate(all="ignore"):  # log(0) and the like: reported below, by column
            matrix = formulaic.model_matrix(parsed, data, context={}, na_action="ignore")
    except Exception as exc:
        raise ValueError(f"could not evaluate the expression {expr!r} of group term {term_text!r} "
                         f"on the data: {exc}") from exc
    names = [str(c) for c in matrix.columns]
    Z = np.asarray(matrix, dtype=np.float64)
    if Z.ndim != 2 or Z.shape[0] != len(data):
        raise ValueError(f"the design of group term {term_text!r} has {Z.shape[0]} rows, expected "
                         f"{len(data)} (one per row of the data)")
    if Z.shape[1] == 0:
        raise ValueError(f"group term {term_text!r} has no varying coefficient")
    bad = ~np.isfinite(Z)
    if bad.any():
        k = int(np.argmax(bad.any(axis=0)))
        raise ValueError(
            f"column {names[k]!r} of group term {term_text!r} has {int(bad[:, k].sum())} non-finite "
            f"value(s) after evaluating the expression ({_rows(bad[:, k], index=data.index)}); "
            "nothing is dropped silently"
        )
    return Z, names


def check_implicit_nesting(data, factors: list[tuple[str, ...]]) -> None:
    """Warn when a grouping factor's labels look nested in another's but repeat across its levels.

    lme4's classic silent mistake is ``(1 | state) + (1 | county)`` where county names repeat
    across states: county "WASHINGTON" then pools the houses of several states into one group.
    For every ordered pair of distinct one-column factors ``(A, B)`` in ``factors`` (interactions
    are skipped), ``B`` is *nearly nested* in ``A`` when

    * at least half of ``B``'s labels occur under exactly one level of ``A``, and
    * at least one label of ``B`` occurs under two or more levels of ``A``;

    a :class:`NestingWarning` then names both columns, how many labels of ``B`` repeat with an
    example, and the fix, ``(1 | A/B)`` (that is ``(1 | A) + (1 | A:B)``).

    An exactly nested factor with unique labels (``fips``) is silent, in either order of the terms (``A``
    exactly nested in ``B`` makes ``B`` the coarser factor, whose labels naturally sit under several
    levels of ``A``: grouseticks' locations over their broods), and so is a crossed design
    (Penicillin: every sample on every plate), where most labels occur under several levels.
    Labels that repeat under *every* level (Pastes' casks ``a, b, c`` under each batch) look
    exactly like a crossed design and cannot be told apart from the data: write ``(1 | batch/cask)``
    when the casks of different batches are different casks. A partially crossed design (a pupil
    who changed school) also warns; keep the formula then.

    Parameters
    ----------
    data : pandas.DataFrame
        The data.
    factors : list of tuple of str
        The grouping factors of a formula, e.g. ``[t.factor for t in parse_mixed_formula(f).terms]``.

    Raises
    ------
    ValueError
        A column of a one-column factor is not in the data frame.
    """
    singles = list(dict.fromkeys(tuple(f)[0] for f in factors if len(tuple(f)) == 1))
    if len(singles) < 2:
        return
    _require_columns(data, singles, "a grouping factor")
    for outer in singles:
        for inner in singles:
            if outer == inner:
                continue
            pairs = data[[outer, inner]].dropna().drop_duplicates()
            if pairs[outer].is_unique:   # outer nested in inner (broods in locations): inner is the coarser
                continue
            levels_per_label = pairs.groupby(inner, sort=False, observed=True)[outer].size()
            repeated = levels_per_label[levels_per_label >= 2]
            num_labels = len(levels_per_label)
            num_unique = num_labels - len(repeated)
            if len(repeated) == 0 or 2 * num_unique < num_labels:
                continue
            example = repeated.idxmax()  # the label under most levels of outer
            under = pairs.loc[pairs[inner] == example, outer]
            shown = ", ".join(repr(_python_scalar(v)) for v in sorted(under.unique().tolist(), key=str)[:5])
            warnings.warn(
                f"{len(repeated)} of the {num_labels} labels of grouping factor {inner!r} occur under "
                f"more than one level of {outer!r} (e.g. {_python_scalar(example)!r} under {shown}), "
                f"while the others occur under one: with (1 | {outer}) + (1 | {inner}) each such "
                f"label is one group pooling rows of several {outer!r} levels. If the labels of "
                f"{inner!r} are only unique within {outer!r}, write (1 | {outer}/{inner}), that is "
                f"(1 | {outer}) + (1 | {outer}:{inner}); if they really are the same groups "
                "(partially crossed), ignore this warning",
                NestingWarning,
                stacklevel=2,
            )

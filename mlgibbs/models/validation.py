"""Input checks: raised early, at model-build time, naming the column or argument at fault."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from mlgibbs._lazy import pandas as pd

__all__ = [
    "as_float_column",
    "check_full_rank",
    "encode_groups",
    "within_group_constant",
]


def _rows(mask: np.ndarray, limit: int = 5, index=None) -> str:
    """``"rows 3, 17, ..."`` for the rows where ``mask`` holds: the labels of ``index`` (a pandas
    index, e.g. of a filtered data frame, whose labels are what the user sees), else positions."""
    idx = np.flatnonzero(mask)
    labels = idx if index is None else np.asarray(index)[idx]
    shown = ", ".join(str(i) for i in labels[:limit])
    word = "rows" if index is None else "index labels"
    return f"{word} {shown}" + (", ..." if idx.size > limit else "")


def as_float_column(values, name: str, n: int | None = None) -> np.ndarray:
    """A 1-D float64 array, or a ValueError naming ``name`` (wrong length, non-numeric, NaN/inf)."""
    index = None
    if isinstance(values, pd.Series):
        index = values.index
        if not (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)):
            raise ValueError(
                f"column {name!r} is not numeric (dtype {values.dtype}); expected numbers"
                " (wrap a categorical predictor in C(...) in a formula)"
            )
        values = values.to_numpy(dtype=float, na_value=np.nan)
    arr = np.asarray(values)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{name!r} is not numeric (dtype {arr.dtype}); expected numbers")
    arr = arr.astype(float)
    if arr.ndim != 1:
        raise ValueError(f"{name!r} must be one-dimensional, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name!r} has length {arr.shape[0]}, expected {n} (one value per observation)")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(
            f"{name!r} has {int(bad.sum())} missing or non-finite value(s) ({_rows(bad, index=index)}); "
            "nothing is dropped silently: remove or impute these rows first"
        )
    return arr


def encode_groups(
    group, name: str, n: int, labels: Sequence | None = None
) -> tuple[np.ndarray, tuple]:
    """Integer codes ``0..J-1`` and the labels of a grouping factor.

    Raises a ValueError naming ``name`` for a wrong length, missing labels, labels not among
    ``labels`` (when given), groups in ``labels`` without observations, or fewer than two groups.
    """
    index = group.index if isinstance(group, pd.Series) else None
    series = group if isinstance(group, pd.Series) else pd.Series(np.asarray(group, dtype=object))
    if series.ndim != 1 or len(series) != n:
        raise ValueError(f"grouping factor {name!r} has length {len(series)}, expected {n}")
    missing = series.isna().to_numpy()
    if missing.any():
        raise ValueError(
            f"grouping factor {name!r} has {int(missing.sum())} missing label(s) ({_rows(missing, index=index)})"
        )
    if labels is None:
        if isinstance(series.dtype, pd.CategoricalDtype):
            labels = list(series.cat.categories)
        else:
            try:
                labels = sorted(series.unique())
            except TypeError:
                labels = list(pd.unique(series))
    labels = list(labels)
    if len(set(labels)) != len(labels):
        raise ValueError(f"the labels of grouping factor {name!r} contain duplicates")
    values = series.astype(object).to_numpy()
    try:  # vectorised: the position of each value among the labels, -1 for a value that is not one
        codes = pd.Index(labels, dtype=object).get_indexer(values).astype(np.int64)
    except (TypeError, ValueError):  # labels pandas cannot index (unhashable, mixed)
        lookup = {label: j for j, label in enumerate(labels)}
        codes = np.fromiter((lookup.get(v, -1) for v in values), dtype=np.int64, count=n)
    unknown = codes < 0
    if unknown.any():
        first = sorted({str(v) for v in values[unknown]})[:5]
        raise ValueError(
            f"grouping factor {name!r} has label(s) not among its {len(labels)} known groups: "
            f"{', '.join(first)} ({_rows(unknown, index=index)}); the known groups are the rows of U "
            "(its index, or 0..J-1), or pass group_labels="
        )
    counts = np.bincount(codes, minlength=len(labels))
    empty = counts == 0
    if empty.any():
        names = ", ".join(str(labels[j]) for j in np.flatnonzero(empty)[:5])
        raise ValueError(
            f"grouping factor {name!r} has {int(empty.sum())} group(s) without observations: {names}"
        )
    if len(labels) < 2:
        raise ValueError(
            f"grouping factor {name!r} has {len(labels)} group; a multilevel model needs at least 2 "
            "(fit a model without the group term instead)"
        )
    return codes, tuple(labels)


def within_group_constant(matrix: np.ndarray, codes: np.ndarray, num_groups: int) -> np.ndarray:
    """Boolean per column: is the column constant within every group?"""
    if matrix.shape[1] == 0:
        return np.zeros(0, dtype=bool)
    frame = pd.DataFrame(matrix)
    grouped = frame.groupby(codes)
    spread = (grouped.max() - grouped.min()).to_numpy()
    return np.all(spread == 0, axis=0)


def check_full_rank(matrix: np.ndarray, names: Sequence[str], what: str) -> None:
    """Raise a ValueError naming the first column that is a linear combination of earlier ones."""
    p = matrix.shape[1]
    if p == 0:
        return
    if matrix.shape[0] < p:
        raise ValueError(f"{what} has {p} columns but only {matrix.shape[0]} rows; it cannot have full rank")
    norms = np.linalg.norm(matrix, axis=0)
    zero = norms == 0
    if zero.any():
        raise ValueError(f"{what}: column {names[int(np.argmax(zero))]!r} is identically zero")
    scaled = matrix / norms
    if np.linalg.matrix_rank(scaled) == p:
        return
    for k in range(1, p + 1):
        if np.linalg.matrix_rank(scaled[:, :k]) < k:
            raise ValueError(
                f"{what} is rank deficient: column {names[k - 1]!r} is a linear combination of "
                f"{', '.join(repr(c) for c in names[: k - 1]) or 'nothing'}"
            )

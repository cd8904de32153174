"""The EPA radon survey data of Gelman & Hill (2007), shipped inside :mod:`mlgibbs`."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from importlib import resources

from mlgibbs._lazy import pandas as pd

__all__ = ["load_radon"]

_DATA_FILE = ("data", "radon.csv.gz")
_DTYPES = {
    "state": object,
    "county": object,
    "fips": "int64",
    "floor": "float64",
    "activity": "float64",
    "log_radon": "float64",
    "uranium": "float64",
    "log_uranium": "float64",
}


@functools.lru_cache(maxsize=1)
def _read_shipped() -> pd.DataFrame:
    """Read the shipped ``radon.csv.gz`` once (all states, all rows).

    Returns
    -------
    pandas.DataFrame
        The full table; callers must copy before handing it out.
    """
    ref = resources.files("mlgibbs.datasets")
    for part in _DATA_FILE:
        ref = ref / part
    with ref.open("rb") as fh:
        return pd.read_csv(
            fh,
            compression="gzip",
            dtype=_DTYPES,
            keep_default_na=False,
            na_values=[""],
        )


def _select_states(state: str | Sequence[str] | None, valid: Sequence[str]) -> list[str] | None:
    """Validate the ``state`` argument of :func:`load_radon`.

    Parameters
    ----------
    state : str, sequence of str or None
        As passed to :func:`load_radon`.
    valid : sequence of str
        The state codes present in the data.

    Returns
    -------
    list of str or None
        The requested codes (without repeats), or None for every state.

    Raises
    ------
    TypeError
        If ``state`` is neither None, a str nor a sequence of str.
    ValueError
        If ``state`` is empty or names a code not in ``valid``.
    """
    if state is None:
        return None
    if isinstance(state, str):
        requested = [state]
    elif isinstance(state, Sequence) and all(isinstance(s, str) for s in state):
        requested = list(dict.fromkeys(state))
    else:
        raise TypeError(
            f"state must be a state code, a sequence of state codes or None; got {state!r}"
        )
    if not requested:
        raise ValueError("state must name at least one state (use state=None for all states)")
    unknown = [s for s in requested if s not in valid]
    if unknown:
        raise ValueError(
            f"state has unknown code(s) {', '.join(map(repr, unknown))}; "
            f"valid codes are {', '.join(valid)} (or state=None for all)"
        )
    return requested


def load_radon(
    state: str | Sequence[str] | None = "MN",
    *,
    drop_missing: bool = True,
) -> pd.DataFrame:
    """Load the household radon measurements used by Gelman & Hill (2007).

    One row per house measurement of the EPA National Residential Radon Survey
    (the ``srrs2.dat`` file), joined to the soil uranium of its county
    (``cty.dat``). The default, Minnesota with complete cases, is the classic
    multilevel example of Gelman & Hill: 919 houses in 85 counties.

    Parameters
    ----------
    state : str, sequence of str or None, default "MN"
        Survey state code(s), as in the ``state`` column of ``srrs2.dat``:
        ``"AZ"``, ``"IN"``, ``"MA"``, ``"MN"``, ``"MO"``, ``"ND"``, ``"PA"``
        or ``"R5"`` (EPA Region 5 tribal-lands survey: houses on reservations
        in Michigan, Minnesota and Wisconsin; its ``county`` holds the
        reservation name). A sequence selects several states; ``None`` selects
        every state. Codes are case-sensitive.
    drop_missing : bool, default True
        Drop rows whose ``floor`` or ``log_uranium`` is NaN. This drops
        0 of the 919 Minnesota rows, and 694 of the 12,777 rows of all states
        (leaving 12,083 rows in 463 counties): 329 rows with an unknown floor
        code, 204 rows whose county has no row in ``cty.dat`` and 180 rows
        whose county has ``Uppm = 0`` (19 rows have two of these). With
        ``drop_missing=False`` every row is returned, NaNs included.

    Returns
    -------
    pandas.DataFrame
        Rows in file order, index reset to ``0..n-1``, with columns

        ``state`` : str
            Survey state code.
        ``county`` : str
            County name, upper case as in the source (padding stripped).
            Names repeat across states (e.g. ``"WASHINGTON"``); use ``fips``
            to identify counties when loading several states.
        ``fips`` : int
            County FIPS code, ``stfips * 1000 + cntyfips``.
        ``floor`` : float
            Floor of the measurement: 0.0 basement, 1.0 first floor, NaN for
            any other code of the source (2, 3 or 9 = unknown). Kept float
            whether or not ``drop_missing`` removes the NaNs, so the dtype
            does not depend on the arguments.
        ``activity`` : float
            Radon concentration, pCi/L, as in the source (may be 0).
        ``log_radon`` : float
            ``log(activity)``, with an activity of 0 replaced by 0.1.
        ``uranium`` : float
            County soil uranium (``Uppm`` of ``cty.dat``, ppm); NaN where the
            county has no row in ``cty.dat`` or ``Uppm <= 0``.
        ``log_uranium`` : float
            ``log(uranium)``; constant within a county.

    Raises
    ------
    ValueError
        If ``state`` is empty or holds an unknown code (the message lists
        the valid codes).
    TypeError
        If ``state`` is not None, a str or a sequence of str.

    Notes
    -----
    Source: the radon data of Gelman, A. and Hill, J. (2007), *Data Analysis
    Using Regression and Multilevel/Hierarchical Models*, Cambridge University
    Press, from the EPA National Residential Radon Survey. The files used are
    ``srrs2.dat`` and ``cty.dat`` as shipped inside the PyPI wheel
    ``pymc3==3.11.6`` under ``pymc3/tests/data/``. The derivation (joins,
    codes, counts by state) is in ``mlgibbs/datasets/README.md`` and the
    script ``python -m mlgibbs.datasets.derive_radon``.

    Counties are joined on ``fips``; ``cty.dat``'s duplicated county rows
    (identical ``Uppm``) are reduced to the first. Minnesota here is
    ``state == "MN"``: the 269 Minnesota houses of the ``"R5"`` tribal-lands
    survey are not included, and share some ``fips`` codes with it.

    Examples
    --------
    >>> from mlgibbs.datasets import load_radon
    >>> mn = load_radon()
    >>> mn.shape
    (919, 8)
    >>> int(mn["fips"].nunique())
    85
    >>> round(float(mn["log_radon"].mean()), 4)
    1.2246
    >>> everything = load_radon(state=None, drop_missing=False)
    >>> len(everything)
    12777
    """
    full = _read_shipped()
    valid = sorted(full["state"].unique())
    requested = _select_states(state, valid)
    mask = pd.Series(True, index=full.index)
    if requested is not None:
        mask &= full["state"].isin(requested)
    if drop_missing:
        mask &= full["floor"].notna() & full["log_uranium"].notna()
    return full.loc[mask].reset_index(drop=True).copy()

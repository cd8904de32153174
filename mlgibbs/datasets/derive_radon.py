"""Derive the radon table shipped with :mod:`mlgibbs` from the raw survey files.

Reads Gelman & Hill's ``srrs2.dat`` (one row per house measurement) and
``cty.dat`` (one row per US county, with soil uranium) and writes a single
gzip-compressed CSV, ``mlgibbs/datasets/data/radon.csv.gz``, holding every
house of every surveyed state with the columns

``state, county, fips, floor, activity, log_radon, uranium, log_uranium``.

Run it from the repository root::

    python -m mlgibbs.datasets.derive_radon [--source DIR] [--out PATH]

The defaults are ``--source ../shared/data/radon`` and
``--out mlgibbs/datasets/data/radon.csv.gz``, both resolved relative to the
current directory. The output is deterministic: the same input gives the
same bytes (fixed number formats, ``\\n`` line endings, gzip header with
``mtime=0`` and no file name).

Conventions (see ``mlgibbs/datasets/README.md`` for the reasoning and counts):

* ``fips = stfips * 1000 + cntyfips``; counties are joined on it to
  ``stfips * 1000 + ctfips`` of ``cty.dat``, keeping the first of duplicated
  county rows. No house row is dropped.
* ``floor`` is 0.0 (basement) or 1.0 (first floor); every other code
  (2, 3, 9 = unknown) becomes NaN.
* ``log_radon = log(activity)`` with ``activity == 0`` replaced by 0.1.
* ``uranium`` is the county's ``Uppm``; NaN where the county has no row in
  ``cty.dat`` or ``Uppm <= 0``. ``log_uranium = log(uranium)``.
* A blank ``county`` name is filled with the name the other houses of the same
  ``state`` and ``fips`` carry (23 Pennsylvania houses).
"""

from __future__ import annotations

import argparse
import gzip
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "COLUMNS",
    "DEFAULT_OUT",
    "DEFAULT_SOURCE",
    "derive_radon",
    "main",
    "radon_csv_gz",
    "write_radon",
]

#: Default folder holding ``srrs2.dat`` and ``cty.dat`` (relative to the current directory).
DEFAULT_SOURCE = Path("..") / "shared" / "data" / "radon"
#: Default output file (relative to the current directory, i.e. the repository root).
DEFAULT_OUT = Path("mlgibbs") / "datasets" / "data" / "radon.csv.gz"
#: Output columns, in order.
COLUMNS = (
    "state",
    "county",
    "fips",
    "floor",
    "activity",
    "log_radon",
    "uranium",
    "log_uranium",
)
#: Activity substituted for a measured 0 pCi/L before taking the log (Gelman & Hill).
ZERO_ACTIVITY = 0.1

# Text formats of the float columns: 6 significant digits reproduce the
# source's activity (one decimal) and Uppm (at most 6 significant digits)
# exactly; 8 significant digits keep the logs to ~1e-8 relative error.
_FORMATS = {
    "floor": ".6g",
    "activity": ".6g",
    "log_radon": ".8g",
    "uranium": ".6g",
    "log_uranium": ".8g",
}


def _read_houses(source: Path) -> pd.DataFrame:
    """Read the columns of ``srrs2.dat`` that the derivation uses.

    Parameters
    ----------
    source : pathlib.Path
        Folder holding ``srrs2.dat``.

    Returns
    -------
    pandas.DataFrame
        Columns ``state``, ``county`` (stripped of padding), ``fips``,
        ``floor`` (raw integer code) and ``activity``, in file order.
    """
    raw = pd.read_csv(
        source / "srrs2.dat",
        usecols=["state", "stfips", "cntyfips", "county", "floor", "activity"],
        dtype={
            "state": object,
            "county": object,
            "stfips": "int64",
            "cntyfips": "int64",
            "floor": "int64",
            "activity": "float64",
        },
        skipinitialspace=True,
        keep_default_na=False,
    )
    return pd.DataFrame(
        {
            "state": raw["state"].str.strip().astype(object),
            "county": raw["county"].str.strip().astype(object),
            "fips": raw["stfips"] * 1000 + raw["cntyfips"],
            "floor": raw["floor"],
            "activity": raw["activity"],
        }
    )


def _read_counties(source: Path) -> pd.DataFrame:
    """Read ``cty.dat`` as one row per county FIPS code.

    Parameters
    ----------
    source : pathlib.Path
        Folder holding ``cty.dat``.

    Returns
    -------
    pandas.DataFrame
        Columns ``fips`` (unique; the first of duplicated rows is kept) and
        ``Uppm``.
    """
    raw = pd.read_csv(
        source / "cty.dat",
        usecols=["stfips", "ctfips", "Uppm"],
        dtype={"stfips": "int64", "ctfips": "int64", "Uppm": "float64"},
        skipinitialspace=True,
    )
    counties = pd.DataFrame(
        {"fips": raw["stfips"] * 1000 + raw["ctfips"], "Uppm": raw["Uppm"]}
    )
    return counties.drop_duplicates(subset="fips", keep="first")


def _fill_blank_counties(houses: pd.DataFrame) -> pd.Series:
    """Fill blank county names from the other houses of the same state and FIPS code.

    Parameters
    ----------
    houses : pandas.DataFrame
        Output of :func:`_read_houses`.

    Returns
    -------
    pandas.Series
        The ``county`` column with every blank name replaced.

    Raises
    ------
    ValueError
        If a blank name's ``(state, fips)`` has no name, or several names,
        elsewhere in the file.
    """
    county = houses["county"].copy()
    blank = county == ""
    if not blank.any():
        return county
    named = houses.loc[~blank]
    names = named.groupby(["state", "fips"])["county"].unique()
    for idx in houses.index[blank]:
        key = (houses.at[idx, "state"], houses.at[idx, "fips"])
        candidates = names.get(key)
        if candidates is None or len(candidates) != 1:
            raise ValueError(
                f"cannot fill the blank county name of row {idx} "
                f"(state={key[0]!r}, fips={key[1]}): names found {candidates!r}"
            )
        county.at[idx] = candidates[0]
    return county


def derive_radon(source: str | Path = DEFAULT_SOURCE) -> pd.DataFrame:
    """Build the radon table from ``srrs2.dat`` and ``cty.dat``.

    Parameters
    ----------
    source : str or pathlib.Path, default ``../shared/data/radon``
        Folder holding ``srrs2.dat`` and ``cty.dat``.

    Returns
    -------
    pandas.DataFrame
        One row per house measurement (all 12,777 rows of ``srrs2.dat``, in
        file order) with the columns of :data:`COLUMNS`: ``state`` and
        ``county`` (str), ``fips`` (int), and float ``floor`` (0/1/NaN),
        ``activity``, ``log_radon``, ``uranium`` and ``log_uranium``.
    """
    source = Path(source)
    houses = _read_houses(source)
    counties = _read_counties(source)

    uppm = houses["fips"].map(counties.set_index("fips")["Uppm"])
    uranium = uppm.where(uppm > 0)  # no county row or Uppm <= 0 -> NaN
    activity = houses["activity"].astype("float64")

    out = pd.DataFrame(
        {
            "state": houses["state"],
            "county": _fill_blank_counties(houses),
            "fips": houses["fips"].astype("int64"),
            "floor": houses["floor"].where(houses["floor"].isin([0, 1])).astype("float64"),
            "activity": activity,
            "log_radon": np.log(activity.where(activity != 0, ZERO_ACTIVITY)),
            "uranium": uranium.astype("float64"),
            "log_uranium": np.log(uranium.astype("float64")),
        },
        columns=list(COLUMNS),
    )
    return out.reset_index(drop=True)


def _format_column(values: pd.Series, spec: str) -> list[str]:
    """Format a float column as text, with NaN as the empty string.

    Parameters
    ----------
    values : pandas.Series
        Float values.
    spec : str
        A :func:`format` specification such as ``".6g"``.

    Returns
    -------
    list of str
        The formatted values.
    """
    return ["" if np.isnan(v) else format(float(v), spec) for v in values.to_numpy()]


def radon_csv_gz(table: pd.DataFrame) -> bytes:
    """Serialise the radon table as deterministic gzip-compressed CSV bytes.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`derive_radon`.

    Returns
    -------
    bytes
        A gzip stream (``mtime=0``, no file name, level 9) of a UTF-8 CSV with a
        header row, ``\\n`` line endings and NaN written as an empty field.
    """
    text = pd.DataFrame(
        {
            name: (
                _format_column(table[name], _FORMATS[name])
                if name in _FORMATS
                else table[name].astype(str).tolist()
            )
            for name in COLUMNS
        },
        columns=list(COLUMNS),
    ).to_csv(index=False, lineterminator="\n")
    return gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0)


def write_radon(source: str | Path = DEFAULT_SOURCE, out: str | Path = DEFAULT_OUT) -> Path:
    """Derive the radon table and write it as gzip CSV.

    Parameters
    ----------
    source : str or pathlib.Path, default ``../shared/data/radon``
        Folder holding ``srrs2.dat`` and ``cty.dat``.
    out : str or pathlib.Path, default ``mlgibbs/datasets/data/radon.csv.gz``
        Output file; its parent folder is created if needed.

    Returns
    -------
    pathlib.Path
        The path written.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(radon_csv_gz(derive_radon(source)))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status, 0 on success.
    """
    parser = argparse.ArgumentParser(
        prog="python -m mlgibbs.datasets.derive_radon",
        description="Derive mlgibbs' radon.csv.gz from Gelman & Hill's srrs2.dat and cty.dat.",
    )
    parser.add_argument(
        "--source",
        type=Path,
        default=DEFAULT_SOURCE,
        help=f"folder with srrs2.dat and cty.dat (default: {DEFAULT_SOURCE})",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"output gzip CSV (default: {DEFAULT_OUT})",
    )
    args = parser.parse_args(argv)
    for name in ("srrs2.dat", "cty.dat"):
        if not (args.source / name).is_file():
            parser.error(f"{args.source / name} not found (use --source)")
    path = write_radon(args.source, args.out)
    print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

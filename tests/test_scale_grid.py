"""Tests of the ``"grid"`` sampler: both scales by an independence Metropolis-Hastings step from a grid.

What is tested
--------------
1. **The proposal's draws and its density agree** (radon's grid, 1,000,000 draws): for the 20 most probable
   cells and the rest, the frequency of draws in the cell against its probability under the mixture,
   ``(1 - eps) p_c + eps * (Cauchy mass of the cell)`` (product of Cauchy CDF differences), a chi-square test
   (21 classes, p > 1e-4); and that probability against the integral of ``exp(log_proposal_density)`` over
   the cell (a 20 x 20 midpoint rule, relative error < 1e-3). The cells' probabilities are integer counts out
   of ``2^30`` summing to exactly ``2^30``. Within the steepest well-populated cell the positions of the draws
   follow the truncated exponential of the cell's slopes (chi-square, 10 bins per axis), and the inversion
   that draws them matches its CDF for slopes from -20 to 20 (Kolmogorov-Smirnov).
2. **Exact posterior**: on a small data set (5 groups of 8, half-normal prior on ``sigma_alpha``: mass near
   zero), the posterior means and standard deviations of ``sigma_y`` and ``sigma_alpha`` and the means of
   ``beta`` and ``gamma`` (their conditional means given the scales, averaged) by quadrature of the scales'
   two-dimensional marginal on a 400 x 400 grid (float64), against 8 chains x 4,000 sweeps: ``|z| < 4`` with ArviZ's
   ESS-based MCSEs, after R-hat < 1.01. The same holds with a grid tabulated for *other* data (the response
   ``1.15 y + 0.5``, so the grid's bulk is off the posterior's): the Metropolis-Hastings correction, not the grid, makes the draws exact.
3. **Power**: the acceptance ratio without the proposal's density (as if the proposal were symmetric) samples
   ``p * q`` and is rejected by the same comparison.
4. ``mg.sample(..., sampler="grid")`` on radon agrees with ``"collapsed"`` (means of both scales and ``beta``
   within MCSE-based z < 4), takes its grid from ``kernel_data`` once per model, and a model without a
   grouping factor runs the two-block sampler.
5. **Large n in float32** (radon's sufficient statistics with every house repeated 10,000 times, n = 9.19e6):
   the scales' log density differences over the grid match float64 to 0.02 nats (written directly, its two
   n-sized terms were off by 0.7), the grid's box spans the posterior of ``log sigma_y^2`` (``sqrt(2/n)``
   wide) by 4 to 40 standard deviations, and the sampler accepts over 85% of its proposals.

Simulation-based calibration of the kernel is in ``tests/test_sbc.py`` (the grid tabulated per data set).
"""

from __future__ import annotations

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr
from scipy import stats

import mlgibbs as mg
from mlgibbs import priors as P
from mlgibbs.conditionals import scale_grid as sg
from mlgibbs.conditionals.collapsed import collapsed_system
from mlgibbs.samplers import kernel_data, with_scale_grid


def _radon():
    return mg.Model.from_formula("log_radon ~ floor + log_uranium + (1 | county)", mg.datasets.load_radon())


# ------------------------------------------------------------------ 1. the proposal
def test_proposal_draws_match_its_density():
    model = _radon()
    grid = kernel_data(model, "grid").scale_grid
    counts = np.diff(np.concatenate([[0], np.asarray(grid.cumulative, np.int64)]))
    assert counts.min() >= 0 and counts.sum() == 2**30
    draws = np.asarray(jax.jit(jax.vmap(lambda k: sg.draw_proposal(k, grid)))(
        jax.random.split(jax.random.key(0), 1_000_000)), np.float64)
    lower, width = np.asarray(grid.lower, np.float64), np.asarray(grid.width, np.float64)
    side = int(round(np.sqrt(counts.size)))
    mode, scale = np.asarray(grid.mode, np.float64), np.asarray(grid.tail_scale, np.float64)

    def cauchy_mass(cell):
        i, j = divmod(cell, side)
        lo = lower + np.array([i, j]) * width
        return np.prod(stats.cauchy.cdf(lo + width, mode, scale) - stats.cauchy.cdf(lo, mode, scale))

    top = np.argsort(counts)[::-1][:20]
    probs = np.array([(1 - sg.TAIL_WEIGHT) * counts[c] / 2**30 + sg.TAIL_WEIGHT * cauchy_mass(c) for c in top])
    index = np.floor((draws - lower) / width).astype(np.int64)
    inside = np.all((index >= 0) & (index < side), axis=1)
    cell_of = np.where(inside, index[:, 0] * side + index[:, 1], -1)
    observed = np.array([np.sum(cell_of == c) for c in top])
    observed = np.append(observed, draws.shape[0] - observed.sum())
    expected = draws.shape[0] * np.append(probs, 1 - probs.sum())
    chi2 = np.sum((observed - expected) ** 2 / expected)
    assert stats.chi2.sf(chi2, len(expected) - 1) > 1e-4, (observed, expected)
    # the density the acceptance ratio uses integrates, cell by cell, to those probabilities
    log_q = jax.jit(jax.vmap(lambda t: sg.log_proposal_density(grid, t)))
    offsets = (np.arange(20) + 0.5) / 20
    for c, p in zip(top[:5], probs[:5]):
        i, j = divmod(int(c), side)
        a = lower[0] + (i + offsets) * width[0]
        b = lower[1] + (j + offsets) * width[1]
        points = np.stack(np.meshgrid(a, b, indexing="ij"), -1).reshape(-1, 2)
        integral = np.mean(np.exp(np.asarray(log_q(jnp.asarray(points, grid.lower.dtype)), np.float64))) \
            * np.prod(width)
        np.testing.assert_allclose(integral, p, rtol=1e-3)
    # within a cell the draws follow the tangent plane: the steepest of the cells holding over 0.3%,
    # positions along each axis in 10 bins against the truncated exponential of its slope (chi-square)
    slope = np.asarray(grid.slope, np.float64)
    steep = max(np.flatnonzero(counts > 0.003 * 2**30), key=lambda c: np.abs(slope[c]).max())
    assert np.abs(slope[steep]).max() > 0.5          # steep enough to tell from a flat cell
    position = ((draws - lower) / width - index)[cell_of == steep]
    assert position.shape[0] > 2000
    edges = np.linspace(0.0, 1.0, 11)
    for k in range(2):
        a = slope[steep, k]
        expected = np.diff(np.expm1(a * edges) / np.expm1(a)) * position.shape[0]
        observed = np.histogram(position[:, k], edges)[0]
        assert stats.chi2.sf(np.sum((observed - expected) ** 2 / expected), 9) > 1e-4, (k, a, observed, expected)


@pytest.mark.parametrize("a", [-20.0, -3.0, -1e-7, 0.0, 1e-4, 0.7, 20.0])
def test_position_within_a_cell_follows_its_slope(a):
    """The inversion of ``exp(a (x - 1/2))`` on ``[0, 1]`` (float32, as the sampler draws it in the default
    dtype), against its CDF ``expm1(a x) / expm1(a)`` by Kolmogorov-Smirnov, steep and flat slopes alike."""
    u = jax.random.uniform(jax.random.key(1), (100_000,), jnp.float32)
    x = np.asarray(sg._within_cell(jnp.float32(a), u), np.float64)
    assert np.all((x >= 0) & (x <= 1))
    cdf = (lambda v: v) if a == 0.0 else (lambda v: np.expm1(a * v) / np.expm1(a))
    assert stats.kstest(x, cdf).pvalue > 1e-4


# ------------------------------------------------------------------ 2-3. exact posterior by quadrature
def _small_model():
    rng = np.random.default_rng(3)
    group = np.repeat(np.arange(5), 8)
    X = 1.5 + rng.normal(size=(40, 1))
    u = rng.normal(size=(5, 1))
    y = 0.5 * X[:, 0] + (0.3 * u[:, 0] + 0.4 * rng.normal(size=5))[group] + rng.normal(size=40)
    priors = {"sigma_y": P.InverseGamma(3.0, 2.0), "sigma_alpha": P.HalfNormal(1.0)}
    return mg.Model.from_arrays(y, X, group, u, priors=priors, dtype="float64"), y


def _quadrature(model):
    """Posterior means (and sds of the scales) in the kernel's coordinates by quadrature of exp(f) over a
    400 x 400 grid in t = (log sigma_y^2, log sigma_alpha^2) wide enough to hold all the mass."""
    data, priors = model.data, model.kernel_priors
    t0 = np.linspace(-4.0, 2.0, 400)
    t1 = np.linspace(-40.0, 4.0, 400)
    T = np.stack(np.meshgrid(t0, t1, indexing="ij"), -1).reshape(-1, 2)
    f = np.asarray(jax.jit(jax.vmap(lambda t: sg.log_scales_density(t, data, priors)))(jnp.asarray(T)))
    w = np.exp(f - f.max())
    w /= w.sum()
    assert w.reshape(400, 400)[[0, -1], :].max() < 1e-12 and w.reshape(400, 400)[:, [0, -1]].max() < 1e-9

    def theta_mean(t):
        Q, h, _ = collapsed_system(jnp.exp(0.5 * t[0]), jnp.exp(0.5 * t[1]), data, priors)
        return jnp.linalg.solve(Q, h)

    keep = w > 1e-14
    theta = np.asarray(jax.jit(jax.vmap(theta_mean))(jnp.asarray(T[keep])))
    sigma = np.exp(0.5 * T)
    out = {"sigma_y": sigma[:, 0], "sigma_alpha": sigma[:, 1]}
    result = {f"{k}_mean": float(np.sum(w * v)) for k, v in out.items()}
    result.update({f"{k}_sd": float(np.sqrt(np.sum(w * v**2) - np.sum(w * v) ** 2)) for k, v in out.items()})
    means = np.sum(w[keep, None] * theta, axis=0)
    result.update({f"theta_{i}_mean": float(m) for i, m in enumerate(means)})
    return result


def _chains(model, data, num_chains=8, num_draws=4000):
    kernel = mg.gibbs(model, "grid")

    def run(key):
        key_init, key_steps = jax.random.split(key)
        state = kernel.init(key_init, data)

        def sweep(state, k):
            state = kernel.step(k, state, data)
            return state, (state.sigma_y, state.sigma_alpha, jnp.concatenate([state.beta, state.gamma]))

        return jax.lax.scan(sweep, state, jax.random.split(key_steps, num_draws + 200))[1]

    sy, sa, theta = jax.jit(jax.vmap(run))(jax.random.split(jax.random.key(11), num_chains))
    out = {"sigma_y": sy[:, 200:], "sigma_alpha": sa[:, 200:]}
    out.update({f"theta_{i}": theta[:, 200:, i] for i in range(theta.shape[-1])})
    return xr.Dataset({k: (("chain", "draw"), np.asarray(v, np.float64)) for k, v in out.items()})


def _z_scores(draws: xr.Dataset, exact: dict) -> dict:
    rhat = az.rhat(draws)
    assert all(float(rhat[k]) < 1.01 for k in draws.data_vars), rhat
    mcse_mean, mcse_sd = az.mcse(draws, method="mean"), az.mcse(draws, method="sd")
    z = {}
    for k in draws.data_vars:
        values = draws[k].values.reshape(-1)
        z[f"{k}_mean"] = (values.mean() - exact[f"{k}_mean"]) / float(mcse_mean[k])
        if f"{k}_sd" in exact:
            z[f"{k}_sd"] = (values.std(ddof=1) - exact[f"{k}_sd"]) / float(mcse_sd[k])
    return z


@pytest.fixture(scope="module")
def small():
    with jax.enable_x64(True):
        model, y = _small_model()
        exact = _quadrature(model)
    return model, y, exact


@pytest.mark.parametrize("grid_from", ["own data", "other data"])
def test_agrees_with_quadrature(small, grid_from):
    model, y, exact = small
    with jax.enable_x64(True):
        data = model.data
        source = data if grid_from == "own data" else model.data_for(1.15 * y + 0.5)
        data = data._replace(scale_grid=with_scale_grid(source, model.kernel_priors).scale_grid)
        z = _z_scores(_chains(model, data), exact)
    assert all(abs(v) < 4.0 for v in z.values()), z


def test_ratio_without_the_proposal_density_is_rejected(small, monkeypatch):
    model, _, exact = small
    with jax.enable_x64(True):
        data = with_scale_grid(model.data, model.kernel_priors)
        monkeypatch.setattr(sg, "log_proposal_density", lambda grid, t: jnp.zeros((), t.dtype))
        z = _z_scores(_chains(model, data), exact)
    assert max(abs(v) for v in z.values()) > 8.0, z


# ------------------------------------------------------------------ 4. through mg.sample
def test_sample_with_grid_agrees_with_collapsed():
    model = _radon()
    fits = {name: mg.sample(jax.random.key(1), model, num_chains=4, num_warmup=300, num_draws=2000, sampler=name)
            for name in ("grid", "collapsed")}
    assert fits["grid"].posterior.attrs["sampler"] == "grid"
    assert model.cached(("scale_grid",), lambda: None) is not None      # tabulated once, kept on the model
    for name in ("sigma_y", "sigma_alpha", "beta"):
        a, b = (fit.posterior[name] for fit in fits.values())
        se = np.sqrt(np.asarray(az.mcse(a.to_dataset(name="v"), method="mean")["v"]) ** 2
                     + np.asarray(az.mcse(b.to_dataset(name="v"), method="mean")["v"]) ** 2)
        z = (a.mean(("chain", "draw")).values - b.mean(("chain", "draw")).values) / se
        assert np.all(np.abs(z) < 4.0), (name, z)


def test_without_groups_runs_the_two_block_sampler():
    df = mg.datasets.load_radon()
    model = mg.Model.from_formula("log_radon ~ floor", df)
    assert kernel_data(model, "grid").scale_grid is None
    idata = mg.sample(jax.random.key(0), model, num_chains=2, num_warmup=100, num_draws=300, sampler="grid")
    assert np.all(np.isfinite(idata.posterior["sigma_y"].values))


# ------------------------------------------------------------------ 5. large n, float32
def _replicated(data, k):
    """The sufficient statistics of ``data`` with every observation repeated ``k`` times (same group means and
    within-group fit, ``k`` times the counts and cross products): a large-``n`` data set at no cost."""
    g = data.groups
    return data._replace(num_obs=data.num_obs * k, rss_within=data.rss_within * k,
                         chol_within=data.chol_within * np.sqrt(k), xty_within=data.xty_within * k,
                         xtx=data.xtx * k, groups=g._replace(counts=g.counts * k), scale_grid=None)


def _radon_large(k):
    model = _radon()
    return model, _replicated(model.data, k)


@pytest.fixture(scope="module")
def large():
    """Radon repeated 10,000 times (n = 9.19 million), float32 and float64, and the float32 grid."""
    model32, data32 = _radon_large(10_000)
    with jax.enable_x64(True):
        model64, data64 = _radon_large(10_000)
        data64 = jax.tree.map(lambda a: np.asarray(a, np.float64), data64)
    grid32 = jax.jit(lambda d: sg.build_scale_grid(d, model32.priors))(data32)
    return model32, data32, model64, data64, grid32


def test_float32_log_density_of_the_scales_is_accurate_at_large_n(large):
    """Differences of ``f`` over the posterior's bulk in float32 match float64 to 0.02 nats at n = 9e6 (its two
    n-sized terms written directly, float32's rounding added about 0.25 nats of noise there)."""
    model32, data32, model64, data64, grid = large
    mode, width = np.asarray(grid.mode, np.float64), np.asarray(grid.width, np.float64)
    steps = np.linspace(-30, 30, 81)[:, None]     # across the whole grid
    T = np.concatenate([mode + steps * width * np.array([1.0, 0.0]), mode + steps * width * np.array([0.3, 1.0])])
    f32 = np.asarray(jax.vmap(lambda t: sg.log_scales_density(t, data32, model32.priors))(jnp.asarray(T, jnp.float32)),
                     np.float64)
    with jax.enable_x64(True):
        f64 = np.asarray(jax.vmap(lambda t: sg.log_scales_density(t, data64, model64.priors))(
            jnp.asarray(np.asarray(T, np.float32), jnp.float64)))     # the same points
    assert np.ptp(f64) > 10.0          # the points span the bulk
    error = (f32 - f32[40]) - (f64 - f64[40])
    assert np.max(np.abs(error)) < 0.02, np.max(np.abs(error))


def test_grid_resolves_a_concentrated_posterior(large):
    """At n = 9e6 the posterior of ``log sigma_y^2`` is about ``sqrt(2 / n) = 5e-4`` wide: the coarse passes
    zoom until the grid spans it by a few tens of cells, and the independence sampler accepts most proposals
    (with two fixed passes the grid's cells were wider than the posterior: on a GPU in float32 at n = 1e7 the
    minimum bulk ESS was 128 of 4,000 draws)."""
    model32, data32, _, _, grid = large
    sd = np.sqrt(2.0 / float(data32.num_obs))
    span = 64 * float(grid.width[0])
    assert 4 * sd < span < 40 * sd, (span, sd)
    kernel = mg.gibbs(model32, "grid")
    data = data32._replace(scale_grid=grid)
    state = kernel.init(jax.random.key(0), data)
    step = jax.jit(lambda k, s: kernel.step(k, s, data))
    values = []
    for key in jax.random.split(jax.random.key(1), 300):
        state = step(key, state)
        values.append(float(state.sigma_y))
    accepted = np.mean(np.diff(values) != 0)
    assert accepted > 0.85, accepted     # 0.93 measured; 0.75 with the noisy density, far less with wide cells


def test_grid_finds_a_mode_between_the_coarse_centres():
    """J = 1e5 groups of two (the benchmark's many-groups data): both scales' posterior is narrower than a coarse
    cell (``log sigma_y^2`` about 0.0045 wide, cells 0.375), and the cells kept around the best centre missed
    the mode by 16 standard deviations of ``log sigma_alpha^2``: the chain sampled the wrong region until a tail
    proposal reached the mode, and then stuck there (ESS 3 of 10,000). With Newton steps to the mode and a box
    that always holds it, the grid's most probable cell and the chain's draws sit at the mode that SciPy's
    Nelder-Mead finds on the same density (float64)."""
    from scipy import optimize

    rng = np.random.default_rng(1)
    J = 100_000
    group = np.arange(2 * J) % J
    u = rng.normal(size=J)
    alpha = 1.0 + 0.5 * u + 0.3 * rng.normal(size=J)
    x = rng.normal(size=2 * J)
    y = alpha[group] + 0.7 * x + rng.normal(size=2 * J)
    with jax.enable_x64(True):
        model = mg.Model.from_arrays(y, x[:, None], group, u[:, None],
                                     priors={"sigma_y": P.HalfNormal(1.0), "sigma_alpha": P.HalfNormal(1.0)})
        data = kernel_data(model, "grid")
        f = jax.jit(lambda t: sg.log_scales_density(t, data, model.kernel_priors))
        start = np.array([float(jnp.log(data.rss_within / (2 * J - J - 1))), float(jnp.log(jnp.var(data.groups.y_mean)))])
        fit = optimize.minimize(lambda t: -float(f(jnp.asarray(t))), start, method="Nelder-Mead",
                                options={"xatol": 1e-7, "fatol": 1e-9, "maxiter": 4000})
        mode = fit.x
        h = np.array([1e-4, 1e-3])
        curvature = [(float(f(jnp.asarray(mode + e))) - 2 * float(f(jnp.asarray(mode))) + float(f(jnp.asarray(mode - e))))
                     / (e**2).sum() for e in np.diag(h)]
        sd = 1.0 / np.sqrt(-np.array(curvature))      # conditional sds: at most the marginal ones
        # Newton's method from where the old grid put its mode (8 and 16 sds off, on a correlated posterior)
        found, _, found_sd, valid = jax.jit(lambda s: sg._newton_search(
            lambda t: sg._density_and_derivatives(t, data, model.kernel_priors), s))(jnp.asarray([0.0385, -3.09]))
        assert bool(valid) and np.all(np.abs(np.asarray(found) - mode) < 0.1 * sd), (found, mode, sd)
        assert np.all(np.asarray(found_sd) > sd) and np.all(np.asarray(found_sd) < 3 * sd)   # marginal >= conditional
        grid = data.scale_grid
        assert np.all(np.abs(np.asarray(grid.mode) - mode) < np.asarray(grid.width)), (grid.mode, mode, grid.width)
        assert np.all(np.asarray(grid.lower) < mode - 4 * sd) and np.all(np.asarray(grid.lower) + 64 * np.asarray(grid.width) > mode + 4 * sd)
        kernel = mg.gibbs(model, "grid")
        step = jax.jit(lambda k, s: kernel.step(k, s, data))
        state = kernel.init(jax.random.key(0), data)
        t2 = []
        for key in jax.random.split(jax.random.key(1), 300):
            state = step(key, state)
            t2.append(2 * np.log(float(state.sigma_alpha)))
    # the chain's draws of log sigma_alpha^2 around the mode (posterior sd about 0.04; before: 0.64 below it)
    assert abs(np.mean(t2[50:]) - mode[1]) < 0.05, (np.mean(t2[50:]), mode)

"""Agreement of the Gibbs sampler with NUTS on an independently written NumPyro model.

What is tested
--------------
1. **Log densities** (:func:`test_log_density_matches_mlgibbs` and friends). At random parameter points,
   :func:`mlgibbs.log_joint` (computed from the sufficient statistics) minus the log joint of the
   centred NumPyro model of :mod:`mlgibbs.numpyro` (computed from the raw data with
   ``numpyro.infer.util.log_density``) must be the same constant at every point. This is run for every
   scale prior family (on ``sigma_y`` and, with a different family and scale, on ``sigma_alpha``, so a
   swap is caught), for flat, normal and partly flat (``scale = inf``) coefficient priors (different on
   ``beta`` and ``gamma``), and for the model structures without groups, without ``beta`` and without
   ``gamma``. The points spread ``sigma`` over two orders of magnitude, so a wrong prior density or a
   missing Jacobian shows up as a non-constant difference. Each NumPyro scale distribution is also
   compared pointwise with the mlgibbs prior's ``log_prob`` (equal, not just up to a constant), and
   the non-centred model with the centred one (they differ by the Jacobian ``J log sigma_alpha``).
   These checks are in float64 (``jax.enable_x64``): the differences are exact up to round-off
   (observed: about 1e-16 of the largest term), so the tolerance is 1e-12 of the largest term; any
   error in a prior or the likelihood is many orders of magnitude larger.

2. **Posterior agreement** (:func:`test_sampler_agrees_with_nuts`, once per sampler: ``"gibbs"``,
   ``"px"``, ``"collapsed"``). Radon (Minnesota),
   ``log_radon ~ floor + log_uranium + (1 | county)`` with ``Normal(0, 10)`` on ``beta`` and ``gamma``
   and ``HalfNormal(1)`` on ``sigma_y`` and ``sigma_alpha`` (the priors of public reference fits of
   the radon models). Each mlgibbs sampler (:func:`mlgibbs.sample` with ``sampler=name``) and
   NumPyro's NUTS on the non-centred model each run 4 chains; the NUTS run is made once and shared
   by the three comparisons (a module-scope fixture). For ``beta``, ``gamma``, ``sigma_y``,
   ``sigma_alpha`` and the intercepts of three counties (the smallest, the largest, one of median
   size) the posterior mean, standard deviation and the 10% and 90% quantiles are compared through

   .. math:: z = (\\hat\\theta_{\\rm mlgibbs} - \\hat\\theta_{\\rm NUTS}) /
             \\sqrt{{\\rm mcse}_{\\rm mlgibbs}^2 + {\\rm mcse}_{\\rm NUTS}^2},

   with Monte Carlo standard errors from ArviZ (``az.mcse`` with ``method="mean"``, ``"sd"`` and
   ``"quantile"``; ESS-based, Vehtari et al. 2021). The two runs of a comparison are independent, so
   under agreement each ``z`` is approximately standard normal; the threshold is the
   Bonferroni-corrected two-sided quantile for a family-wise false-alarm rate of 1% over the
   comparisons of one sampler (``8 quantities x 4 statistics = 32``, ``|z| < 3.6``); each sampler is
   its own family (the shared NUTS run makes the three tests' errors correlated, not any one of
   them less exact). The threshold is not tuned to a seed.
   To make the MCSEs trustworthy the test first requires, for both runs of a comparison and every
   compared quantity, rank-normalised split R-hat below 1.01 and bulk and tail ESS of at least 400
   (Vehtari et al. 2021's recommendations), and fewer than 1% divergent NUTS transitions.

   Under the plain Gibbs sweep ``sigma_alpha`` mixes slowly (its bulk ESS is about 2-3% of the
   sweeps on radon: ``alpha`` and ``sigma_alpha`` are strongly dependent), so the Gibbs run keeps
   every 5th of 4 x 10,000 sweeps (ESS of ``sigma_alpha`` about 900-1000). ``"px"`` and
   ``"collapsed"`` keep every one of 4 x 2,000 sweeps, unthinned: measured bulk ESS of
   ``sigma_alpha`` about 1,600 (px, about 20% of the sweeps) and 5,000 (collapsed), tail ESS about
   2,200 and 3,900, every other compared quantity higher. NUTS needs 1,000 draws per chain (ESS
   about 1,000-1,200). The whole default module takes about 75 s on two cores (about a third of it
   the NUTS run, compilation included); :func:`test_sampler_agrees_with_nuts_long` (``-m slow``)
   repeats the comparisons against a second NUTS run, both sides with four times the draws, which
   halves the MCSEs and so the smallest detectable disagreement.

References
----------
Vehtari, A., Gelman, A., Simpson, D., Carpenter, B. and Bürkner, P.-C. (2021). Rank-normalization,
folding, and localization: an improved R-hat for assessing convergence of MCMC. *Bayesian Analysis*
16, 667-718.
"""

from __future__ import annotations

import math
import sys

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr
from scipy import stats

import mlgibbs as mg
from mlgibbs.priors import (
    Flat,
    HalfCauchy,
    HalfNormal,
    HalfStudentT,
    InverseGamma,
    Normal,
    Uniform,
)

pytest.importorskip("numpyro")
from numpyro.infer.util import log_density  # noqa: E402

from mlgibbs.numpyro import (  # noqa: E402
    NONCENTRED_SITE,
    numpyro_model,
    nuts_inference_data,
    run_nuts,
    scale_distribution,
)

FORMULA = "log_radon ~ floor + log_uranium + (1 | county)"
REFERENCE_PRIORS = {
    "beta": Normal(0.0, 10.0),
    "gamma": Normal(0.0, 10.0),
    "sigma_y": HalfNormal(1.0),
    "sigma_alpha": HalfNormal(1.0),
}

SCALE_PRIORS = [
    Uniform(),
    InverseGamma(2.0, 0.5),
    HalfNormal(0.7),
    HalfCauchy(1.3),
    HalfStudentT(4.0, 0.8),
]
# (beta prior, gamma prior); dicts name coefficients, the unnamed ones stay flat (scale = inf)
COEFFICIENT_PRIORS = {
    "flat": (Flat(), Flat()),
    "normal": (Normal(0.3, 2.0), Normal(-1.0, 5.0)),
    "partly-flat": ({"floor": Normal(-0.5, 0.4)}, {"log_uranium": Normal(0.5, 3.0)}),
}

NUM_POINTS = 6
FAMILYWISE_ALPHA = 0.01
MAX_RHAT = 1.01
MIN_ESS = 400


# --------------------------------------------------------------------------- log densities
def _random_states(rng: np.random.Generator, model, num: int) -> list[mg.GibbsState]:
    """Parameter points spread widely (sigmas over two orders of magnitude)."""
    p = len(model.predictors)
    q = len(model.group_predictors)
    J = model.num_groups
    states = []
    for _ in range(num):
        sigma_alpha = float(np.exp(rng.uniform(-2.5, 1.0))) if J else None
        gamma = rng.normal(0.0, 1.5, q) if J and q else None
        alpha = None
        if J:
            centre = model.U @ gamma if gamma is not None else np.zeros(J)
            alpha = np.asarray(centre) + sigma_alpha * rng.standard_normal(J) * rng.uniform(0.3, 3.0)
        states.append(mg.GibbsState(
            alpha=alpha,
            beta=rng.normal(0.0, 1.5, p) if p else None,
            gamma=gamma,
            sigma_y=float(np.exp(rng.uniform(-1.0, 1.5))),
            sigma_alpha=sigma_alpha,
        ))
    return [jax.tree.map(jnp.asarray, s) for s in states]


def _params(state: mg.GibbsState) -> dict:
    return {k: v for k, v in state._asdict().items() if v is not None}


def _check_constant_difference(model, seed: int) -> None:
    """``mlgibbs.log_joint - numpyro log joint`` is the same at every point (float64)."""
    model_fn = numpyro_model(model, centered=True)
    rng = np.random.default_rng(seed)
    diffs, scales = [], []
    for state in _random_states(rng, model, NUM_POINTS):
        # log_joint takes the kernel's coordinates and returns the density of the user's
        kernel_state = jax.tree.map(lambda a: jnp.asarray(a, model.dtype), model.to_kernel(state))
        ours = float(mg.log_joint(kernel_state, model.data, model.priors))
        theirs = float(log_density(model_fn, (), {}, _params(state))[0])
        assert np.isfinite(ours) and np.isfinite(theirs)
        diffs.append(ours - theirs)
        scales.append(abs(ours) + abs(theirs))
    diffs = np.asarray(diffs)
    tol = 1e-12 * (1.0 + max(scales))
    np.testing.assert_allclose(diffs - diffs[0], 0.0, atol=tol,
                               err_msg=f"log densities differ by a non-constant amount: {diffs}")


def _radon64(priors, formula: str = FORMULA):
    return mg.Model.from_formula(formula, mg.datasets.load_radon(), priors=priors, dtype=np.float64)


@pytest.mark.parametrize("coefficients", list(COEFFICIENT_PRIORS))
@pytest.mark.parametrize("family", range(len(SCALE_PRIORS)))
def test_log_density_matches_mlgibbs(family: int, coefficients: str) -> None:
    beta_prior, gamma_prior = COEFFICIENT_PRIORS[coefficients]
    priors = {
        "beta": beta_prior,
        "gamma": gamma_prior,
        "sigma_y": SCALE_PRIORS[family],
        "sigma_alpha": SCALE_PRIORS[(family + 1) % len(SCALE_PRIORS)],
    }
    with jax.enable_x64(True):
        _check_constant_difference(_radon64(priors), seed=100 + family)


@pytest.mark.parametrize(
    "formula, priors",
    [
        ("log_radon ~ floor", {"beta": Normal(0.0, 3.0), "sigma_y": HalfCauchy(2.0)}),
        ("log_radon ~ log_uranium + (1 | county)",
         {"gamma": Normal(0.0, 2.0), "sigma_y": InverseGamma(3.0, 1.0),
          "sigma_alpha": HalfStudentT(3.0, 0.5)}),
        ("log_radon ~ floor + (1 | county)", {"sigma_alpha": HalfNormal(0.5)}),
    ],
    ids=["no-groups", "no-beta", "intercept-only-gamma"],
)
def test_log_density_other_structures(formula: str, priors: dict) -> None:
    with jax.enable_x64(True):
        _check_constant_difference(_radon64(priors, formula), seed=7)


def test_log_density_without_gamma() -> None:
    """A grouping factor without group-level predictors: ``alpha ~ N(0, sigma_alpha^2)``."""
    rng = np.random.default_rng(3)
    group = np.repeat(np.arange(6), 5)
    X = rng.standard_normal((30, 2))
    y = rng.standard_normal(30)
    with jax.enable_x64(True):
        model = mg.Model.from_arrays(y, X, group, intercept=False, dtype=np.float64,
                                     priors={"beta": Normal(0.0, 2.0), "sigma_alpha": HalfCauchy(1.0)})
        assert model.data.groups.U.shape[1] == 0
        _check_constant_difference(model, seed=4)


@pytest.mark.parametrize("prior", SCALE_PRIORS, ids=lambda p: type(p).__name__)
def test_scale_distribution_log_prob(prior) -> None:
    """Pointwise equal to the mlgibbs prior (both 0 for the improper uniform), support (0, inf)."""
    with jax.enable_x64(True):
        sigma = jnp.exp(jnp.linspace(-4.0, 3.0, 41))
        theirs = scale_distribution(prior).log_prob(sigma)
        np.testing.assert_allclose(theirs, prior.log_prob(sigma), rtol=1e-12, atol=1e-12)
        assert not bool(scale_distribution(prior).support(-sigma).any())


def test_scale_distributions_normalised() -> None:
    """The proper ones integrate to one over (0, inf) (checks the half-t folding and the Jacobian)."""
    from scipy import integrate

    with jax.enable_x64(True):
        for prior in SCALE_PRIORS[1:]:
            d = scale_distribution(prior)
            mass, _ = integrate.quad(lambda s: math.exp(float(d.log_prob(s))), 0.0, np.inf, limit=200)
            assert mass == pytest.approx(1.0, abs=1e-6), prior


def test_noncentred_is_reparametrisation_of_centred() -> None:
    """``log p_centred(alpha, ...) = log p_noncentred(eta, ...) - J log sigma_alpha``."""
    with jax.enable_x64(True):
        model = _radon64(REFERENCE_PRIORS)
        centred, noncentred = numpyro_model(model, centered=True), numpyro_model(model)
        U = model.U
        for state in _random_states(np.random.default_rng(11), model, 3):
            params = _params(state)
            lp_c = float(log_density(centred, (), {}, params)[0])
            params[NONCENTRED_SITE] = (params.pop("alpha") - U @ state.gamma) / state.sigma_alpha
            lp_nc, trace = log_density(noncentred, (), {}, params)
            J = model.num_groups
            assert lp_c == pytest.approx(float(lp_nc) - J * math.log(state.sigma_alpha), rel=1e-12)
            np.testing.assert_allclose(trace["alpha"]["value"], state.alpha, rtol=1e-12)


def test_sites_and_shapes() -> None:
    from numpyro import handlers

    model = mg.Model.from_formula(FORMULA, mg.datasets.load_radon(), priors=REFERENCE_PRIORS)
    trace = handlers.trace(handlers.seed(numpyro_model(model, centered=True), 0)).get_trace()
    shapes = {k: v["value"].shape for k, v in trace.items()}
    assert shapes == {"beta": (1,), "gamma": (2,), "sigma_alpha": (), "alpha": (85,), "sigma_y": (),
                      "log_radon": (919,), "obs_id": (919,)}
    assert trace["log_radon"]["is_observed"]
    trace = handlers.trace(handlers.seed(numpyro_model(model), 0)).get_trace()
    assert trace["alpha"]["type"] == "deterministic" and trace[NONCENTRED_SITE]["value"].shape == (85,)
    assert trace["alpha"]["value"].dtype == model.dtype


def test_missing_numpyro_raises(monkeypatch) -> None:
    model = mg.Model.from_formula("log_radon ~ floor", mg.datasets.load_radon())
    monkeypatch.setitem(sys.modules, "numpyro", None)
    monkeypatch.setitem(sys.modules, "numpyro.distributions", None)
    with pytest.raises(ImportError, match="optional dependency"):
        numpyro_model(model)


# --------------------------------------------------------------------------- posterior agreement
def _reference_model():
    return mg.Model.from_formula(FORMULA, mg.datasets.load_radon(), priors=REFERENCE_PRIORS)


#: Per sampler: (draws per chain, thinning) of the CI-sized run; ``-m slow`` keeps four times the draws.
#: The five-step sampler mixes slowly in ``sigma_alpha`` and is thinned; ``px`` and ``collapsed`` are not.
SAMPLER_RUNS = {
    "gibbs": (2000, 5),
    "px": (2000, 1),
    "collapsed": (2000, 1),
}
SEED, SLOW_SEED = 20240, 777


def _sample(model, sampler: str, *, num_draws: int, thin: int, seed: int):
    return mg.sample(jax.random.key(seed), model, num_chains=4, num_warmup=1000, num_draws=num_draws,
                     thin=thin, sampler=sampler, log_likelihood=False)


def _nuts(model, *, num_samples: int, seed: int):
    mcmc = run_nuts(jax.random.key(seed + 1), model, num_chains=4, num_warmup=1000,
                    num_samples=num_samples)
    return nuts_inference_data(mcmc, model, log_likelihood=False)


def _sampler_seed(seed: int, sampler: str) -> int:
    """The five-step sampler keeps ``seed`` (NUTS uses ``seed + 1``); the others ``seed + 2, ...``."""
    return seed if sampler == "gibbs" else seed + 1 + list(SAMPLER_RUNS).index(sampler)


def _compared_quantities(model, posterior) -> xr.Dataset:
    """Scalar draws ``(chain, draw)`` of every compared quantity."""
    counts = model.group_counts
    order = np.argsort(counts, kind="stable")
    counties = {"smallest": order[0], "median": order[len(order) // 2], "largest": order[-1]}
    out = {f"beta[{k}]": posterior["beta"].sel(predictor=k) for k in model.predictors}
    out.update({f"gamma[{k}]": posterior["gamma"].sel(group_predictor=k)
                for k in model.group_predictors})
    out["sigma_y"] = posterior["sigma_y"]
    out["sigma_alpha"] = posterior["sigma_alpha"]
    for name, j in counties.items():
        out[f"alpha[{name} county, n={counts[j]}]"] = posterior["alpha"].isel({model.group_name: j})
    return xr.Dataset({k: v.drop_vars([c for c in v.coords if c not in ("chain", "draw")])
                       for k, v in out.items()})


QUANTILES = (0.1, 0.9)


def _estimates(draws: xr.Dataset) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Statistic -> (estimate per quantity, its MCSE per quantity)."""
    names = list(draws.data_vars)
    flat = {k: draws[k].values.reshape(-1) for k in names}

    def values(ds):
        return np.array([float(ds[k]) for k in names])

    out = {
        "mean": (np.array([flat[k].mean() for k in names]), values(az.mcse(draws, method="mean"))),
        "sd": (np.array([flat[k].std(ddof=1) for k in names]), values(az.mcse(draws, method="sd"))),
    }
    for prob in QUANTILES:
        out[f"q{prob:g}"] = (np.array([np.quantile(flat[k], prob) for k in names]),
                             values(az.mcse(draws, method="quantile", prob=prob)))
    return out


def _check_convergence(label: str, draws: xr.Dataset) -> None:
    rhat = az.rhat(draws)
    bulk = az.ess(draws, method="bulk")
    tail = az.ess(draws, method="tail")
    for k in draws.data_vars:
        assert float(rhat[k]) < MAX_RHAT, f"{label}: R-hat of {k} is {float(rhat[k]):.4f}"
        assert float(bulk[k]) >= MIN_ESS, f"{label}: bulk ESS of {k} is {float(bulk[k]):.0f}"
        assert float(tail[k]) >= MIN_ESS, f"{label}: tail ESS of {k} is {float(tail[k]):.0f}"


def _check_agreement(model, ours, nuts, label: str = "gibbs") -> None:
    diverging = np.asarray(nuts.sample_stats["diverging"])
    assert diverging.mean() < 0.01, f"{int(diverging.sum())} divergent NUTS transitions"
    draws_g = _compared_quantities(model, ours.posterior)
    draws_n = _compared_quantities(model, nuts.posterior)
    _check_convergence(f"mlgibbs {label!r}", draws_g)
    _check_convergence("NUTS", draws_n)

    est_g, est_n = _estimates(draws_g), _estimates(draws_n)
    names = list(draws_g.data_vars)
    num_comparisons = len(names) * len(est_g)
    threshold = stats.norm.ppf(1.0 - FAMILYWISE_ALPHA / (2 * num_comparisons))
    failures = []
    for stat in est_g:
        (g, se_g), (n, se_n) = est_g[stat], est_n[stat]
        z = (g - n) / np.sqrt(se_g**2 + se_n**2)
        for k, name in enumerate(names):
            if not abs(z[k]) < threshold:
                failures.append(f"{stat} of {name}: {label} {g[k]:.4f} (mcse {se_g[k]:.4f}), "
                                f"NUTS {n[k]:.4f} (mcse {se_n[k]:.4f}), z = {z[k]:.2f}")
    assert not failures, (f"{label!r} against NUTS, |z| >= {threshold:.2f} (Bonferroni over "
                          f"{num_comparisons}):\n" + "\n".join(failures))


@pytest.fixture(scope="module")
def radon_model():
    return _reference_model()


@pytest.fixture(scope="module")
def radon_nuts(radon_model):
    """One NUTS run, shared by the comparisons of every sampler."""
    return _nuts(radon_model, num_samples=1000, seed=SEED)


@pytest.fixture(scope="module")
def radon_gibbs(radon_model):
    num_draws, thin = SAMPLER_RUNS["gibbs"]
    return _sample(radon_model, "gibbs", num_draws=num_draws, thin=thin, seed=SEED)


@pytest.fixture(scope="module")
def radon_fits(radon_model, radon_gibbs, radon_nuts):
    return radon_model, radon_gibbs, radon_nuts


@pytest.mark.parametrize("sampler", list(SAMPLER_RUNS))
def test_sampler_agrees_with_nuts(sampler, radon_model, radon_nuts, request) -> None:
    if sampler == "gibbs":
        ours = request.getfixturevalue("radon_gibbs")
    else:
        num_draws, thin = SAMPLER_RUNS[sampler]
        ours = _sample(radon_model, sampler, num_draws=num_draws, thin=thin,
                       seed=_sampler_seed(SEED, sampler))
    assert ours.posterior.attrs["sampler"] == sampler
    _check_agreement(radon_model, ours, radon_nuts, sampler)


def test_nuts_inference_data_layout(radon_fits) -> None:
    """NUTS output is laid out as ``mlgibbs.sample``'s: same variables, dims, coords, ``lp``."""
    model, gibbs, nuts = radon_fits
    assert set(nuts.posterior.data_vars) == set(gibbs.posterior.data_vars)
    for name in gibbs.posterior.data_vars:
        assert nuts.posterior[name].dims == gibbs.posterior[name].dims
        assert nuts.posterior[name].dtype == gibbs.posterior[name].dtype
    for dim in (model.group_name, "predictor", "group_predictor"):
        np.testing.assert_array_equal(nuts.posterior[dim].values, gibbs.posterior[dim].values)
    assert nuts.posterior.sizes["chain"] == 4 and nuts.posterior.sizes["draw"] == 1000
    assert {"lp", "diverging", "n_steps", "acceptance_rate", "step_size"} <= set(nuts.sample_stats)
    assert nuts.posterior.attrs["inference_library"] == "numpyro"
    # lp is mlgibbs.log_joint on both sides: same posterior, so same distribution
    lp_g = np.asarray(gibbs.sample_stats["lp"]).reshape(-1)
    lp_n = np.asarray(nuts.sample_stats["lp"]).reshape(-1)
    se = math.hypot(float(az.mcse(gibbs.sample_stats["lp"].values)),
                    float(az.mcse(nuts.sample_stats["lp"].values)))
    assert abs(lp_g.mean() - lp_n.mean()) < stats.norm.ppf(1 - FAMILYWISE_ALPHA / 2) * se


@pytest.mark.parametrize("centered", [False, True], ids=["noncentred", "centred"])
def test_initial_params_round_trip(centered: bool) -> None:
    """NUTS starts where the Gibbs starts are: unconstrained init values map back to the states."""
    from numpyro.infer.util import constrain_fn

    from mlgibbs.numpyro import _initial_params

    with jax.enable_x64(True):
        model = _radon64({"sigma_y": InverseGamma(2.0, 0.5), "sigma_alpha": HalfStudentT(3.0, 1.0)})
        model_fn = numpyro_model(model, centered=centered)
        states = model.to_user(jax.vmap(mg.gibbs(model).init, in_axes=(0, None))(
            jax.random.split(jax.random.key(0), 3), model.data))
        unconstrained = _initial_params(model_fn, model, states, centered)
        assert unconstrained["sigma_y"].shape == (3,)
        np.testing.assert_allclose(unconstrained["sigma_y"], np.log(states.sigma_y), rtol=1e-12)
        back = jax.vmap(lambda u: constrain_fn(model_fn, (), {}, u, return_deterministic=True))(
            unconstrained)
        for name in ("alpha", "beta", "gamma", "sigma_y", "sigma_alpha"):
            np.testing.assert_allclose(back[name], getattr(states, name), rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_run_nuts_centred_and_one_chain() -> None:
    """The centred model and a single chain run under the default (flat, uniform) priors."""
    model = mg.Model.from_formula("log_radon ~ floor + (1 | county)", mg.datasets.load_radon())
    mcmc = run_nuts(jax.random.key(0), model, num_chains=1, num_warmup=20, num_samples=10,
                    centered=True)
    idata = nuts_inference_data(mcmc, model)
    assert idata.posterior["alpha"].shape == (1, 10, model.num_groups)
    assert idata.posterior.attrs["parametrization"] == "centred"
    assert idata.log_likelihood[model.response].shape == (1, 10, model.num_obs)
    assert np.isfinite(idata.sample_stats["lp"].values).all()


@pytest.fixture(scope="module")
def radon_nuts_long(radon_model):
    return _nuts(radon_model, num_samples=4000, seed=SLOW_SEED)


@pytest.mark.slow
@pytest.mark.parametrize("sampler", list(SAMPLER_RUNS))
def test_sampler_agrees_with_nuts_long(sampler, radon_model, radon_nuts_long) -> None:
    num_draws, thin = SAMPLER_RUNS[sampler]
    ours = _sample(radon_model, sampler, num_draws=4 * num_draws, thin=thin,
                   seed=_sampler_seed(SLOW_SEED, sampler))
    _check_agreement(radon_model, ours, radon_nuts_long, sampler)

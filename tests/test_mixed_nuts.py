"""The multilevel Gibbs sampler against NUTS on an independently written NumPyro model.

What is tested
--------------
1. **The NumPyro model's log density** (:func:`test_log_density_matches_direct`). At random parameter
   points, the log joint of :func:`mlgibbs.numpyro.mixed_numpyro_model` (``numpyro.infer.util.log_density``
   at its sample sites) minus a log joint written here directly with SciPy (``norm``,
   ``multivariate_normal``, ``invwishart``, ``invgamma``, ``halfnorm``, ...) in the user's coordinates
   must be the same constant at every point (both are normalised, so the constant is 0 up to round-off).
   The direct density is that of ``(beta, gamma_f, sd of the scalar blocks, Sigma of the correlated
   blocks, a_k, b_f)``; the NumPyro sites differ from these by known Jacobians, added to the direct side:
   ``log |d Sigma / d L| = d log 2 + sum_i (d - i) log L_ii`` for a Cholesky factor (itself checked
   against an automatic-differentiation determinant in :func:`test_cholesky_jacobian`), ``J_f log |L_f|``
   for the non-centred ``z_f`` and 0 for the hierarchically centred shift. Structures: a correlated
   intercept and slope under Huang & Wand's prior and under an inverse-Wishart with normal fixed-effect
   priors, a 3 x 3 correlated block, an uncorrelated ``||`` term, a correlated block and a scalar block
   in one factor, a slope without an intercept, crossed factors, nested factors with a group-level
   predictor on the inner one; each non-centred, centred and hierarchically centred. Float64.

2. **Posterior agreement** (:func:`test_agrees_with_nuts`), on data shipped with the package (case:
   model and priors; NUTS parametrisation):

   * ``sleepstudy-hw``: ``Reaction ~ Days + (1 + Days | Subject)`` with the defaults (Huang & Wand with
     data-scaled ``A``, flat fixed effects, uniform ``sigma_y``); centred, dense mass matrix;
   * ``sleepstudy-iw``: the same with ``InverseWishart(3, diag(625, 36))``, normal priors on the
     fixed effects and a half-t ``sigma_y``; centred, dense mass matrix;
   * ``penicillin``: ``diameter ~ 1 + (1 | plate) + (1 | sample)`` (crossed), half-t on ``sample``'s
     scale, a normal intercept; centred, dense mass matrix;
   * ``pastes``: ``strength ~ 1 + (1 | batch/cask)`` (nested), half-normal and half-Cauchy scales;
     batches non-centred, casks centred on their batch (hierarchical centring);
   * ``radon-nested``: ``log_radon ~ floor + log_uranium + (1 | state/fips)`` on all 12,083 rows
     (8 states, 480 state:county groups), normal coefficients, half-normal scales; centred, counties
     centred on their state.

   For every fixed effect, group-level coefficient, standard deviation, correlation, ``sigma_y`` and
   every varying coefficient of three groups per factor (the smallest, one of median size and the
   largest) the posterior mean, standard deviation and the 10% and 90% quantiles are compared through
   ``z = (Gibbs - NUTS) / sqrt(mcse_Gibbs^2 + mcse_NUTS^2)`` with ArviZ's ESS-based MCSEs, against the
   Bonferroni-corrected two-sided threshold for a family-wise false-alarm rate of 1% over every
   comparison of the default run (5 cases, 56 quantities x 4 statistics = 224: ``|z| < 4.08``; the
   ``-m slow`` run is a family of its own, of the same size). A family per case (1% each, ``|z| < 3.7``)
   would make a red run about five times as likely under agreement; with fixed seeds on two stacks
   (whose random streams differ) that happened in development (a NUTS run 3.5 MCSEs off the precise
   answer on its own, in radon; a Gibbs run 3.2 MCSEs off plus a NUTS run 2.1 off, in Penicillin;
   both checked against runs of 100,000+ draws and repeated seeds, see the report of the change).
   Calibration, 10 independent pairs of default-size runs per case: the ``z`` have root mean square
   0.90 (Penicillin) and 1.03 (sleep study) and normal tail frequencies. Before that, both runs must have rank-normalised split R-hat < 1.01 and bulk and tail ESS >= 400 in every
   compared quantity, and NUTS fewer than 1% divergent transitions (so the MCSEs can be trusted), as in
   ``tests/test_nuts_agreement.py``. The NUTS run of each case is made once per module and shared.

   Parametrisations: NUTS needs the one that suits each posterior, which changes nothing in the
   posterior (the log density test covers all three): the sleep study, Penicillin and radon effects are
   well informed by their data (centred); in Pastes the batch standard deviation has much mass near zero
   (non-centred batches) while each cask's total is well informed by its two measurements, so the casks
   are centred on their batch (``mu = alpha_batch + alpha_cask``); centring the casks on zero instead
   leaves a ridge between a batch's effect and the mean of its casks and NUTS diverges (about 3% of the
   transitions). In the Gibbs sampler Penicillin's crossed effects mix slowly (a shift between the
   plates' and the samples' levels: bulk ESS of the effects about 3% of the sweeps) and so does
   Pastes' batch scale (about 6%), so those two runs are thinned. Sizes: the Gibbs sampler keeps
   4 x 2,000 draws (Penicillin every 10th sweep, Pastes every 4th), NUTS 4 x 1,000 (radon 4 x 2,000:
   some of its chains adapt to short trajectories that move ``beta[floor]`` slowly), after 1,000 warmup
   iterations each.

3. **Power** (:func:`test_rejects_a_different_prior`): the Gibbs draws of a model whose prior differs
   from NUTS's in one place must be rejected by the same comparison: the inverse-Wishart scale matrix
   doubled (sleep study) and the half-normal scale of Pastes' batches halved. Observed: max |z| about
   11-15 and 16-19 against the threshold of 4.08.

Cost: the default module takes about 2 minutes on two CPU cores with JAX's compilation cache off
(each NUTS run is one compiled program, :func:`mlgibbs.numpyro.run_mixed_nuts_compiled`: 5-10 s per model,
radon 25-30 s). ``-m slow`` repeats the agreement with four times the draws on both sides (halving the
smallest detectable disagreement; about 2.5 minutes) and runs the other NUTS paths briefly.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr
from scipy import stats

import mlgibbs as mg
from mlgibbs.datasets import load_pastes, load_penicillin, load_radon, load_sleepstudy
from mlgibbs.priors import (
    Flat,
    HalfCauchy,
    HalfNormal,
    HalfStudentT,
    HuangWand,
    InverseGamma,
    InverseWishart,
    Normal,
    Uniform,
)

pytest.importorskip("numpyro")
from numpyro.infer.util import constrain_fn, log_density, unconstrain_fn  # noqa: E402

from mlgibbs.numpyro import (  # noqa: E402
    _inverse_wishart_cholesky_log_prob,
    _mixed_constrained_params,
    mixed_numpyro_model,
    mixed_nuts_draws,
    mixed_site_names,
    run_mixed_nuts,
    run_mixed_nuts_compiled,
)

FAMILYWISE_ALPHA = 0.01
MAX_RHAT = 1.01
MIN_ESS = 400
MAX_DIVERGENT = 0.01
QUANTILES = (0.1, 0.9)


def x64(enabled: bool = True):
    """``jax.enable_x64`` (or the older experimental context)."""
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(enabled)
    from jax.experimental import disable_x64, enable_x64

    return enable_x64() if enabled else disable_x64()


def _sleepstudy3():
    data = load_sleepstudy()
    data["Days2"] = (data["Days"] - 4.5) ** 2 / 10.0
    return data


# =========================================================================== log densities
def _scale_logpdf(prior, sd: float) -> float:
    if isinstance(prior, Uniform):
        return 0.0
    if isinstance(prior, HalfNormal):
        return float(stats.halfnorm.logpdf(sd, scale=prior.scale))
    if isinstance(prior, HalfCauchy):
        return float(stats.halfcauchy.logpdf(sd, scale=prior.scale))
    if isinstance(prior, HalfStudentT):
        return math.log(2.0) + float(stats.t.logpdf(sd, prior.df, scale=prior.scale))
    if isinstance(prior, InverseGamma):  # on the variance; density of sd = sqrt(variance)
        return float(stats.invgamma.logpdf(sd**2, prior.concentration, scale=prior.rate)) + math.log(2.0 * sd)
    raise TypeError(prior)


def _coef_logpdf(prior, value: float) -> float:
    if isinstance(prior, Flat) or not np.isfinite(prior.scale):
        return 0.0
    return float(stats.norm.logpdf(value, prior.loc, prior.scale))


def _cholesky_log_jacobian(L: np.ndarray) -> float:
    d = L.shape[0]
    return d * math.log(2.0) + float(np.sum((d - np.arange(d)) * np.log(np.diag(L))))


def _direct_log_density(model, point: dict, centered, hierarchical) -> float:
    """Log joint written with SciPy, in the user's coordinates, for the sites of the NumPyro model
    (Jacobians of the Cholesky factors and of the non-centred effects included)."""
    y, X = model.y, model.X
    mean = X @ point["beta"] if X.shape[1] else np.zeros_like(y)
    lp = 0.0
    beta_priors = model.priors["beta"]
    for j, name in enumerate(model.predictors):
        lp += _coef_logpdf(beta_priors.get(name, Flat()), point["beta"][j])
    names = [f.name for f in model.factors]
    centred = set(names) if centered is True else set(centered or ())
    for f, factor in enumerate(model.factors):
        name = factor.name
        alpha, cov = point[f"alpha_{name}"], point[f"cov_{name}"]
        J, d = alpha.shape
        mean = mean + np.sum(factor.Z * alpha[factor.codes], axis=1)
        centre = np.zeros((J, d))
        if model.U[f].shape[1]:
            gamma = point[f"gamma_{name}"]
            for j, pn in enumerate(model.group_predictors[f]):
                lp += _coef_logpdf(beta_priors.get(pn, Flat()), gamma[j])
            centre[:, model.structure.intercepts[f]] = model.U[f] @ gamma
        lp += float(np.sum(stats.multivariate_normal.logpdf(alpha - centre, np.zeros(d), cov)))
        log_det_chol = 0.0
        for (start, size), prior in zip(factor.blocks, model.priors[name]):
            block = cov[start:start + size, start:start + size]
            L = np.linalg.cholesky(block)
            log_det_chol += float(np.sum(np.log(np.diag(L))))
            if size == 1:
                lp += _scale_logpdf(prior, math.sqrt(block[0, 0]))
                continue
            lp += _cholesky_log_jacobian(L)
            if isinstance(prior, InverseWishart):
                lp += float(stats.invwishart.logpdf(block, prior.df, prior.scale_matrix(size)))
            else:
                a = point[f"a_{name}[{','.join(factor.coef_names[start:start + size])}]"]
                A = prior.scales(size)
                lp += float(np.sum(stats.invgamma.logpdf(a, 0.5, scale=1.0 / A**2)))
                lp += float(stats.invwishart.logpdf(block, prior.df + size - 1, 2.0 * prior.df * np.diag(1.0 / a)))
        if name not in centred:
            lp += J * log_det_chol    # alpha = centre + z L': d alpha / d z = L per group
    lp += float(np.sum(stats.norm.logpdf(y, mean, point["sigma_y"])))
    lp += _scale_logpdf(model.priors["sigma_y"], point["sigma_y"])
    return lp


def _random_point(rng: np.random.Generator, model) -> dict:
    """A parameter point of plausible size (standard deviations over about a factor 10)."""
    spread = float(np.std(model.y))
    point = {"sigma_y": spread * float(np.exp(rng.uniform(-1.5, 0.5)))}
    if model.X.shape[1]:
        coef, *_ = np.linalg.lstsq(model.X, model.y, rcond=None)
        point["beta"] = coef + rng.normal(0.0, 0.1, coef.shape) * (1.0 + np.abs(coef))
    for f, factor in enumerate(model.factors):
        name = factor.name
        J, d = len(factor.labels), factor.Z.shape[1]
        scale = spread / np.sqrt(np.mean(factor.Z**2, axis=0))
        L = np.zeros((d, d))
        for start, size in factor.blocks:
            sl = slice(start, start + size)
            block = np.tril(rng.normal(0.0, 0.4, (size, size)) * scale[sl][:, None])
            block[np.diag_indices(size)] = scale[sl] * np.exp(rng.uniform(-1.5, 0.5, size))
            L[sl, sl] = block
        cov = L @ L.T
        centre = np.zeros((J, d))
        if model.U[f].shape[1]:
            gamma = rng.normal(0.0, 1.0, model.U[f].shape[1]) * spread
            if "Intercept" in model.group_predictors[f]:
                gamma[model.group_predictors[f].index("Intercept")] += float(np.mean(model.y))
            point[f"gamma_{name}"] = gamma
            centre[:, model.structure.intercepts[f]] = model.U[f] @ gamma
        point[f"alpha_{name}"] = centre + rng.standard_normal((J, d)) @ L.T * rng.uniform(0.5, 2.0)
        point[f"cov_{name}"] = cov
        for (start, size), prior in zip(factor.blocks, model.priors[name]):
            if isinstance(prior, HuangWand):
                label = f"{name}[{','.join(factor.coef_names[start:start + size])}]"
                point[f"a_{label}"] = np.exp(rng.uniform(-3.0, 1.0, size)) / prior.scales(size) ** 2
    return point


def _sites(model, point: dict, centered, hierarchical) -> dict:
    params = _mixed_constrained_params(model, point, centered, hierarchical)
    for key, value in point.items():
        if key.startswith("a_"):
            params[key] = value   # random, not the conditional mode
    return {k: jnp.asarray(v) for k, v in params.items()}


#: (formula, data loader, priors): every structure and prior family of the multilevel model.
LOG_DENSITY_MODELS = {
    "slope-huang-wand": ("Reaction ~ Days + (1 + Days | Subject)", load_sleepstudy, None),
    "slope-inverse-wishart": (
        "Reaction ~ Days + (1 + Days | Subject)", load_sleepstudy,
        {"beta": {"Intercept": Normal(250.0, 50.0), "Days": Normal(10.0, 5.0)}, "sigma_y": HalfStudentT(4.0, 30.0),
         "Subject": InverseWishart(3.0, [[625.0, 20.0], [20.0, 36.0]])}),
    "three-by-three": (
        "Reaction ~ Days + Days2 + (1 + Days + Days2 | Subject)", _sleepstudy3,
        {"Subject": HuangWand(3.0, [40.0, 10.0, 20.0]), "sigma_y": InverseGamma(3.0, 2000.0)}),
    "uncorrelated": (
        "Reaction ~ Days + (1 + Days || Subject)", load_sleepstudy,
        {"Subject": {"sigma": HalfNormal(30.0)}, "sigma_y": HalfCauchy(20.0)}),
    "block-and-scalar": (
        "Reaction ~ Days + Days2 + (1 + Days | Subject) + (0 + Days2 | Subject)", _sleepstudy3,
        {"Subject": {"sigma": HalfCauchy(10.0), "covariance": InverseWishart(4.0, [900.0, 50.0])}}),
    "slope-only": ("Reaction ~ Days + (0 + Days | Subject)", load_sleepstudy,
                   {"beta": Normal(0.0, 300.0), "Subject": InverseGamma(2.0, 30.0)}),
    "crossed": ("diameter ~ 1 + (1 | plate) + (1 | sample)", load_penicillin,
                {"sample": HalfStudentT(3.0, 2.0), "beta": Normal(23.0, 10.0)}),
    "nested": ("log_radon ~ floor + log_uranium + (1 | state/fips)", lambda: load_radon(state=["MN", "ND", "MA"]),
               {"beta": {"floor": Normal(0.0, 2.0), "log_uranium": Normal(0.5, 1.0)}, "state": HalfNormal(1.0),
                "state:fips": HalfCauchy(0.5), "sigma_y": InverseGamma(2.0, 1.0)}),
}

PARAMETRISATIONS = {  # name -> (centered, hierarchical)
    "noncentred": (False, False),
    "centred": (True, False),
    "hierarchical": (True, True),
}


def _model64(key: str):
    formula, load, priors = LOG_DENSITY_MODELS[key]
    return mg.Model.from_formula(formula, load(), priors=priors, dtype=np.float64)


NESTED_MODELS = ("nested",)   # the models with a factor nested in another (hierarchical centring)


@pytest.mark.parametrize("key, parametrisation", [
    (key, par) for key in LOG_DENSITY_MODELS for par in PARAMETRISATIONS
    if par != "hierarchical" or key in NESTED_MODELS])
def test_log_density_matches_direct(key: str, parametrisation: str) -> None:
    centered, hierarchical = PARAMETRISATIONS[parametrisation]
    with x64():
        model = _model64(key)
        assert (key in NESTED_MODELS) == any(len(c) > 1 for c in model.structure.chains)
        model_fn = jax.jit(lambda params: log_density(
            mixed_numpyro_model(model, centered=centered, hierarchical=hierarchical), (), {}, params)[0])
        rng = np.random.default_rng(sum(map(ord, key + parametrisation)))
        diffs, scales = [], []
        for _ in range(4):
            point = _random_point(rng, model)
            ours = float(model_fn(_sites(model, point, centered, hierarchical)))
            direct = _direct_log_density(model, point, centered, hierarchical)
            assert np.isfinite(ours) and np.isfinite(direct)
            diffs.append(ours - direct)
            scales.append(abs(ours) + abs(direct))
        diffs = np.asarray(diffs)
        # normalised on both sides: the constant is 0 (up to round-off)
        np.testing.assert_allclose(diffs, 0.0, atol=1e-10 * (1.0 + max(scales)),
                                   err_msg=f"NumPyro minus direct log density: {diffs}")


@pytest.mark.parametrize("d", [2, 3, 4])
def test_cholesky_jacobian(d: int) -> None:
    """``log |d vech(L L') / d vech(L)| = d log 2 + sum_i (d - i) log L_ii``, by automatic differentiation;
    and the inverse-Wishart density of ``L`` agrees with SciPy's (and NumPyro's, where it has one)."""
    rng = np.random.default_rng(d)
    rows, cols = np.tril_indices(d)
    with x64():
        for _ in range(3):
            L = np.tril(rng.normal(size=(d, d)))
            L[np.diag_indices(d)] = np.exp(rng.normal(size=d))

            def vech_sigma(v):
                M = jnp.zeros((d, d)).at[rows, cols].set(v)
                return (M @ M.T)[rows, cols]

            jac = jax.jacfwd(vech_sigma)(jnp.asarray(L[rows, cols]))
            _, logdet = np.linalg.slogdet(np.asarray(jac))
            assert logdet == pytest.approx(_cholesky_log_jacobian(L), rel=1e-10, abs=1e-10)

            A = rng.normal(size=(d, d))
            psi = A @ A.T + d * np.eye(d)
            df = d + rng.uniform(-0.5, 3.0)
            ours = float(_inverse_wishart_cholesky_log_prob(jnp.asarray(L), df, jnp.asarray(np.linalg.cholesky(psi))))
            scipy_lp = float(stats.invwishart.logpdf(L @ L.T, df, psi)) + _cholesky_log_jacobian(L)
            assert ours == pytest.approx(scipy_lp, rel=1e-10, abs=1e-8)
            import numpyro.distributions as dist

            if hasattr(dist, "InverseWishartCholesky"):
                theirs = float(dist.InverseWishartCholesky(df, scale_matrix=jnp.asarray(psi)).log_prob(jnp.asarray(L)))
                assert ours == pytest.approx(theirs, rel=1e-10, abs=1e-8)


@pytest.mark.parametrize("parametrisation", list(PARAMETRISATIONS))
def test_initial_values_round_trip(parametrisation: str) -> None:
    """Sites from user values, unconstrained and constrained again, give back ``alpha`` and ``cov``."""
    centered, hierarchical = PARAMETRISATIONS[parametrisation]
    with x64():
        model = _model64("nested")
        model_fn = mixed_numpyro_model(model, centered=centered, hierarchical=hierarchical)
        point = _random_point(np.random.default_rng(5), model)
        params = _sites(model, point, centered, hierarchical)
        unconstrained = unconstrain_fn(model_fn, (), {}, params)
        back = constrain_fn(model_fn, (), {}, unconstrained, return_deterministic=True)
        for name in ("state", "state:fips"):
            np.testing.assert_allclose(back[f"alpha_{name}"], point[f"alpha_{name}"], rtol=1e-10, atol=1e-10)
            np.testing.assert_allclose(back[f"cov_{name}"], point[f"cov_{name}"], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(back["beta"], point["beta"], rtol=1e-12)


def test_sites_and_shapes() -> None:
    from numpyro import handlers

    formula, load, priors = LOG_DENSITY_MODELS["block-and-scalar"]
    model = mg.Model.from_formula(formula, load(), priors=priors)
    sites = mixed_site_names(model)
    assert sites["sigma"] == ["sigma_Subject[Days2]"]
    assert sites["chol"] == ["L_Subject[Intercept,Days]"] and sites["aux"] == []
    def traced(model_fn, params):
        return handlers.trace(handlers.substitute(handlers.seed(model_fn, 0), data=params)).get_trace()

    point = _random_point(np.random.default_rng(0), model)
    trace = traced(mixed_numpyro_model(model), _sites(model, point, False, False))
    shapes = {k: v["value"].shape for k, v in trace.items() if v["type"] in ("sample", "deterministic")}
    assert shapes == {"beta": (2,), "gamma_Subject": (1,), "L_Subject[Intercept,Days]": (2, 2),
                      "sigma_Subject[Days2]": (), "cov_Subject": (3, 3), "z_Subject": (18, 3),
                      "alpha_Subject": (18, 3), "sigma_y": (), "Reaction": (180,),
                      "L_Subject[Intercept,Days]_prior": (0,)}     # the factor() with the IW density
    cov = np.asarray(trace["cov_Subject"]["value"])
    assert cov[2, 0] == 0.0 and cov[2, 1] == 0.0          # block diagonal

    nested = mg.Model.from_formula("strength ~ 1 + (1 | batch/cask)", load_pastes(),
                                   priors={"batch": HalfNormal(2.0), "batch:cask": HalfCauchy(2.0)})
    point = _random_point(np.random.default_rng(0), nested)
    trace = traced(mixed_numpyro_model(nested, centered=["batch:cask"], hierarchical=True),
                   _sites(nested, point, ["batch:cask"], True))
    assert trace["mu_batch:cask"]["type"] == "sample" and trace["alpha_batch:cask"]["type"] == "deterministic"
    assert trace["z_batch"]["value"].shape == (10, 1)
    with pytest.raises(ValueError, match="centred too"):
        mixed_numpyro_model(nested, centered=False, hierarchical=["batch:cask"])
    with pytest.raises(ValueError, match="not factors nested"):
        mixed_numpyro_model(nested, centered=True, hierarchical=["batch"])


# =========================================================================== posterior agreement
@dataclasses.dataclass(frozen=True)
class Case:
    formula: str
    load: Callable[[], Any]
    priors: dict | None
    nuts: dict                      # centered, hierarchical, dense_mass, ...
    gibbs: tuple[int, int]          # (draws per chain, thin) of the default run
    nuts_draws: int = 1000


CASES = {
    "sleepstudy-hw": Case("Reaction ~ Days + (1 + Days | Subject)", load_sleepstudy, None,
                          dict(centered=True, dense_mass=True), (2000, 1)),
    "sleepstudy-iw": Case("Reaction ~ Days + (1 + Days | Subject)", load_sleepstudy,
                          {"beta": {"Intercept": Normal(250.0, 50.0), "Days": Normal(10.0, 5.0)},
                           "sigma_y": HalfStudentT(4.0, 30.0),
                           "Subject": InverseWishart(3.0, [625.0, 36.0])},
                          dict(centered=True, dense_mass=True), (2000, 1)),
    "penicillin": Case("diameter ~ 1 + (1 | plate) + (1 | sample)", load_penicillin,
                       {"sample": HalfStudentT(3.0, 2.0), "beta": Normal(23.0, 10.0)},
                       dict(centered=True, dense_mass=True), (2000, 10)),
    "pastes": Case("strength ~ 1 + (1 | batch/cask)", load_pastes,
                   {"batch": HalfNormal(2.0), "batch:cask": HalfCauchy(2.0), "sigma_y": HalfNormal(2.0)},
                   dict(centered=["batch:cask"], hierarchical=True), (2000, 4)),
    "radon-nested": Case("log_radon ~ floor + log_uranium + (1 | state/fips)", lambda: load_radon(state=None),
                         {"beta": Normal(0.0, 10.0), "sigma_y": HalfNormal(1.0), "state": HalfNormal(1.0),
                          "state:fips": HalfNormal(1.0)},
                         dict(centered=True, hierarchical=True), (2000, 1), nuts_draws=2000),
}

#: Per case, one prior changed for the power check (Gibbs of this model against NUTS of the case's).
PERTURBED = {
    "sleepstudy-iw": {"Subject": InverseWishart(3.0, [1250.0, 72.0])},
    "pastes": {"batch": HalfNormal(1.0)},
}

SEEDS = {name: 20250 + 17 * i for i, name in enumerate(CASES)}
LONG = 4       # -m slow: draws multiplied by this on both sides


def _model(name: str, priors: dict | None = None):
    case = CASES[name]
    merged = dict(case.priors or {})
    merged.update(priors or {})
    return mg.Model.from_formula(case.formula, case.load(), priors=merged or None)


class Fits:
    """Runs made at most once per module: NUTS per (case, length), Gibbs per (case, length, prior)."""

    def __init__(self):
        self._cache: dict = {}
        self.timings: dict = {}

    def _get(self, key, build):
        if key not in self._cache:
            start = time.perf_counter()
            self._cache[key] = build()
            self.timings[key] = time.perf_counter() - start
        return self._cache[key]

    def model(self, name: str, perturbed: bool = False):
        return self._get(("model", name, perturbed),
                         lambda: _model(name, PERTURBED[name] if perturbed else None))

    def nuts(self, name: str, factor: int = 1):
        case = CASES[name]

        def build():
            model = self.model(name)
            seed = SEEDS[name] + (0 if factor == 1 else 500)
            mcmc = run_mixed_nuts_compiled(model, jax.random.key(seed), num_chains=4, num_warmup=1000,
                                           num_draws=factor * case.nuts_draws, **case.nuts)
            samples = mcmc.get_samples(group_by_chain=True)
            extra = mcmc.get_extra_fields(group_by_chain=True)
            return {"draws": mixed_nuts_draws(model, samples), "samples": samples,
                    "diverging": np.asarray(extra["diverging"]), "num_steps": np.asarray(extra["num_steps"])}
        return self._get(("nuts", name, factor), build)

    def gibbs(self, name: str, factor: int = 1, perturbed: bool = False):
        case = CASES[name]

        def build():
            model = self.model(name, perturbed)
            seed = SEEDS[name] + 1 + (0 if factor == 1 else 500) + (7 if perturbed else 0)
            num_draws, thin = case.gibbs
            idata = mg.sample(jax.random.key(seed), model, num_chains=4, num_warmup=1000,
                              num_draws=factor * num_draws, thin=thin, log_likelihood=False,
                              check_convergence=False)
            return idata.posterior
        return self._get(("gibbs", name, factor, perturbed), build)


@pytest.fixture(scope="module")
def fits():
    fits = Fits()
    yield fits
    print("\nrun times (s): " + ", ".join(f"{'/'.join(map(str, k))}: {v:.1f}" for k, v in fits.timings.items()
                                          if k[0] != "model"))


def _picks(factor) -> dict[str, int]:
    counts = np.bincount(np.asarray(factor.codes), minlength=len(factor.labels))
    order = np.argsort(counts, kind="stable")
    return {"smallest": int(order[0]), "median": int(order[len(order) // 2]), "largest": int(order[-1])}


def _compared_quantities(model, draws: dict[str, np.ndarray]) -> xr.Dataset:
    """Scalar draws ``(chain, draw)`` of every compared quantity, from a dict laid out as
    ``mlgibbs.sample``'s posterior."""
    out = {}
    for j, name in enumerate(model.predictors):
        out[f"beta[{name}]"] = draws["beta"][..., j]
    for f, factor in enumerate(model.factors):
        name = factor.name
        for j, pn in enumerate(model.group_predictors[f]):
            out[f"gamma_{name}[{pn}]"] = draws[f"gamma_{name}"][..., j]
        for c, cn in enumerate(factor.coef_names):
            out[f"sigma_{name}[{cn}]"] = draws[f"sigma_{name}"][..., c]
        for start, size in factor.blocks:
            for a in range(start, start + size):
                for b in range(a + 1, start + size):
                    out[f"corr_{name}[{factor.coef_names[a]},{factor.coef_names[b]}]"] = \
                        draws[f"corr_{name}"][..., a, b]
        counts = np.bincount(np.asarray(factor.codes), minlength=len(factor.labels))
        for label, g in _picks(factor).items():
            for c, cn in enumerate(factor.coef_names):
                out[f"alpha_{name}[{factor.labels[g]},{cn}] ({label}, n={counts[g]})"] = \
                    draws[f"alpha_{name}"][..., g, c]
    if "sigma_y" in draws:   # families other than the Gaussian have none
        out["sigma_y"] = draws["sigma_y"]
    return xr.Dataset({k: (("chain", "draw"), np.asarray(v, np.float64)) for k, v in out.items()})


def _posterior_dict(posterior) -> dict[str, np.ndarray]:
    return {k: np.asarray(posterior[k].values) for k in posterior.data_vars}


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


def _check_convergence(label: str, draws: xr.Dataset) -> str:
    """Assert R-hat and ESS; return a one-line summary (the worst of each)."""
    rhat = az.rhat(draws)
    bulk = az.ess(draws, method="bulk")
    tail = az.ess(draws, method="tail")
    summary = (f"max R-hat {max(float(rhat[k]) for k in draws.data_vars):.4f}, min bulk ESS "
               f"{min(float(bulk[k]) for k in draws.data_vars):.0f}, min tail ESS "
               f"{min(float(tail[k]) for k in draws.data_vars):.0f}")
    problems = []
    for k in draws.data_vars:
        if not float(rhat[k]) < MAX_RHAT:
            problems.append(f"R-hat of {k} is {float(rhat[k]):.4f}")
        if not float(bulk[k]) >= MIN_ESS:
            problems.append(f"bulk ESS of {k} is {float(bulk[k]):.0f}")
        if not float(tail[k]) >= MIN_ESS:
            problems.append(f"tail ESS of {k} is {float(tail[k]):.0f}")
    assert not problems, f"{label}: " + "; ".join(problems)
    return summary


NUM_STATISTICS = 2 + len(QUANTILES)     # mean, sd and the quantiles


def _num_quantities(model) -> int:
    """How many quantities :func:`_compared_quantities` compares for this model."""
    count = len(model.predictors) + (1 if model.family.gaussian else 0)
    for f, factor in enumerate(model.factors):
        d = len(factor.coef_names)
        count += len(model.group_predictors[f]) + d + sum(size * (size - 1) // 2 for _, size in factor.blocks)
        count += 3 * d
    return count


def _threshold(models) -> float:
    """Bonferroni over every comparison of the default run (all cases): family-wise rate FAMILYWISE_ALPHA."""
    total = NUM_STATISTICS * sum(_num_quantities(m) for m in models)
    return float(stats.norm.ppf(1.0 - FAMILYWISE_ALPHA / (2 * total)))


@pytest.fixture(scope="module")
def threshold(fits) -> float:
    return _threshold([fits.model(name) for name in CASES])


def _z_scores(model, gibbs: dict, nuts: dict):
    """``(names, {stat: (gibbs, se_gibbs, nuts, se_nuts, z)}, (draws_gibbs, draws_nuts))``."""
    draws_g, draws_n = _compared_quantities(model, gibbs), _compared_quantities(model, nuts)
    est_g, est_n = _estimates(draws_g), _estimates(draws_n)
    names = list(draws_g.data_vars)
    assert len(names) == _num_quantities(model) and len(est_g) == NUM_STATISTICS
    table = {}
    for stat in est_g:
        (g, se_g), (n, se_n) = est_g[stat], est_n[stat]
        table[stat] = (g, se_g, n, se_n, (g - n) / np.sqrt(se_g**2 + se_n**2))
    return names, table, (draws_g, draws_n)


def _check_agreement(name: str, model, posterior, nuts: dict, threshold: float) -> None:
    diverging = nuts["diverging"]
    assert diverging.mean() < MAX_DIVERGENT, f"{name}: {int(diverging.sum())} divergent NUTS transitions"
    gibbs = _posterior_dict(posterior)
    names, table, (draws_g, draws_n) = _z_scores(model, gibbs, nuts["draws"])
    summary_g = _check_convergence(f"{name}: mlgibbs", draws_g)
    summary_n = _check_convergence(f"{name}: NUTS", draws_n)
    failures = []
    worst, worst_at = 0.0, ""
    for stat, (g, se_g, n, se_n, z) in table.items():
        k = int(np.argmax(np.abs(z)))
        if abs(z[k]) > worst:
            worst, worst_at = float(abs(z[k])), f"{stat} of {names[k]}"
        for k, qname in enumerate(names):
            if not abs(z[k]) < threshold:
                failures.append(f"{stat} of {qname}: Gibbs {g[k]:.5g} (mcse {se_g[k]:.2g}), "
                                f"NUTS {n[k]:.5g} (mcse {se_n[k]:.2g}), z = {z[k]:.2f}")
    print(f"\n{name}: {len(names)} quantities x {len(table)} statistics, max |z| = {worst:.2f} ({worst_at}) "
          f"(threshold {threshold:.2f}); NUTS mean steps {nuts['num_steps'].mean():.1f}, "
          f"{int(diverging.sum())} divergent\n  Gibbs: {summary_g}\n  NUTS: {summary_n}")
    assert not failures, (f"{name}: Gibbs against NUTS, |z| >= {threshold:.2f} (Bonferroni over every "
                          "comparison of the module's default run):\n" + "\n".join(failures))


def test_draws_layout(fits) -> None:
    """``mixed_nuts_draws`` gives exactly the variables, shapes and coordinates of ``mlgibbs.sample``
    (checked on the crossed and the correlated cases), and the same values as the library's own
    naming of the same parameters (:func:`mlgibbs.run_mixed.posterior_variables`)."""
    from mlgibbs.run_mixed import posterior_variables

    for name in ("penicillin", "sleepstudy-hw"):
        model = fits.model(name)
        posterior = fits.gibbs(name)
        nuts = fits.nuts(name)
        assert list(nuts["draws"]) == list(posterior.data_vars)
        for var, value in nuts["draws"].items():
            assert value.shape[2:] == posterior[var].shape[2:], var
            assert value.shape[:2] == (4, CASES[name].nuts_draws)
        samples = {k: np.asarray(v, np.float64) for k, v in nuts["samples"].items()}
        user = {"beta": samples.get("beta", np.zeros((4, CASES[name].nuts_draws, 0))),
                "sigma_y": samples["sigma_y"]}
        for factor in model.factors:
            for kind in ("alpha", "gamma", "cov"):
                key = f"{kind}_{factor.name}"
                user[key] = samples.get(key, np.zeros((4, CASES[name].nuts_draws, 0)))
        reference = posterior_variables(model, user)
        assert list(reference) == list(nuts["draws"])
        for var, (dims, value) in reference.items():
            assert posterior[var].dims[2:] == dims
            np.testing.assert_allclose(nuts["draws"][var], value, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", list(CASES))
def test_agrees_with_nuts(name: str, fits, threshold) -> None:
    _check_agreement(name, fits.model(name), fits.gibbs(name), fits.nuts(name), threshold)


@pytest.mark.parametrize("name", list(PERTURBED))
def test_rejects_a_different_prior(name: str, fits, threshold) -> None:
    """Power: the comparison rejects Gibbs draws of a model with one prior changed (see ``PERTURBED``)."""
    model = fits.model(name)
    names, table, _ = _z_scores(model, _posterior_dict(fits.gibbs(name, perturbed=True)),
                                fits.nuts(name)["draws"])
    worst = max(float(np.max(np.abs(z))) for *_, z in table.values())
    print(f"\n{name} with {PERTURBED[name]}: max |z| = {worst:.2f} (threshold {threshold:.2f})")
    assert worst >= threshold, f"a changed prior {PERTURBED[name]} went undetected: max |z| = {worst:.2f}"


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_agrees_with_nuts_long(name: str, fits, threshold) -> None:
    """A family of its own, of the same size (the same threshold)."""
    _check_agreement(f"{name} (x{LONG})", fits.model(name), fits.gibbs(name, LONG), fits.nuts(name, LONG),
                     threshold)


@pytest.mark.slow
def test_run_paths() -> None:
    """The other ways of running NUTS (short runs: shapes, finiteness, the same names through
    :func:`mixed_nuts_draws`): the compiled program vectorised and with one chain,
    :func:`run_mixed_nuts` (``numpyro.infer.MCMC`` from the Gibbs starts), and NumPyro's own ``MCMC``
    from its default starts."""
    from numpyro.infer import MCMC, NUTS

    model = _model("pastes")
    options = CASES["pastes"].nuts
    run = run_mixed_nuts_compiled(model, jax.random.key(0), num_chains=2, num_warmup=50, num_draws=20,
                                  chain_method="vectorized", **options)
    draws = mixed_nuts_draws(model, run.get_samples(group_by_chain=True))
    assert draws["alpha_batch:cask"].shape == (2, 20, 30, 1)
    assert run.get_extra_fields()["diverging"].shape == (40,)
    assert all(np.isfinite(v).all() for v in draws.values())
    one = run_mixed_nuts_compiled(model, jax.random.key(1), num_chains=1, num_warmup=50, num_draws=20, **options)
    assert mixed_nuts_draws(model, one.get_samples(group_by_chain=True))["sigma_y"].shape == (1, 20)

    mcmc = run_mixed_nuts(model, jax.random.key(2), num_chains=2, num_warmup=50, num_draws=20, **options)
    ours = mixed_nuts_draws(model, mcmc.get_samples(group_by_chain=True))
    assert list(ours) == list(draws) and ours["alpha_batch:cask"].shape == (2, 20, 30, 1)
    assert "diverging" in mcmc.get_extra_fields()

    model_fn = mixed_numpyro_model(model, centered=options["centered"], hierarchical=options["hierarchical"])
    mcmc = MCMC(NUTS(model_fn), num_warmup=50, num_samples=20, num_chains=1, progress_bar=False)
    mcmc.run(jax.random.key(3))
    theirs = mixed_nuts_draws(model, mcmc.get_samples(group_by_chain=True))
    assert list(theirs) == list(draws)
    assert all(theirs[k].shape[2:] == draws[k].shape[2:] for k in draws)

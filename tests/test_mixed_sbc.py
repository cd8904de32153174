"""Simulation-based calibration (Talts et al. 2018) of the multilevel Gibbs sampler, one case per structure.

What is tested
--------------
The kernel ``mixed_kernel(model.structure, model.kernel_priors)`` of :mod:`mlgibbs.samplers.mixed`
(its ``init`` and ``step``) on four structures, with the 60-row design of ``tests/test_mixed_geweke.py``:

1. ``slopes-huang-wand``: ``y ~ x + (1 + x | g)`` (6 groups), Huang-Wand covariance prior;
2. ``slopes-inverse-wishart``: the same under an inverse-Wishart prior;
3. ``nested``: ``y ~ x + (1 | a/b)`` (4 groups ``a``, 8 groups ``a:b``), half-normal scales;
4. ``crossed``: ``y ~ ua + (1 | a) + (1 | c)`` (4 and 3 groups; ``ua`` a group-level predictor of
   ``a``, the intercept a fixed effect, constant within both crossed factors), half-normal and
   half-Cauchy scales.

For each of many simulated data sets (one ``vmap``): draw ``theta* ~ p(theta)`` and
``y ~ p(y | theta*)`` with the NumPy/SciPy simulators of ``test_mixed_geweke`` (``draw_theta``,
``draw_y``: independent of the library); compute the data pytree with the pure-JAX
``model.data_for(y)``; start the kernel from its data-dependent ``init``, run a warm-up, then keep
``L`` draws thinned by ``thin`` sweeps, mapped to the user's coordinates by ``model.to_user``; record
the rank of ``theta*`` among them (the number of draws below it) for every scalar tested: each fixed
effect ``beta``, the log of each standard deviation, each correlation of a correlated term, each
group-level coefficient ``gamma``, the effects of the first and the last group of every factor (all
their coefficients), and ``sigma_y``. If the kernel samples the posterior, ``theta*`` and the
(thinned, nearly independent) draws are exchangeable and every rank is uniform on ``0..L``. Errors in
a conditional, in the assembly of the sweep, in the scale moves, in the coordinate maps or in ``init``
that survives the warm-up show up as skewed, peaked or U-shaped rank histograms. Everything runs in
float64 (``jax.enable_x64``), as the Geweke test does.

Priors
------
Proper everywhere: ``Normal(0, 1.5)`` on every fixed effect and group-level coefficient (the
``beta`` entry of the priors covers both; ``draw_theta`` draws both from it). On the scales:

* ``slopes-huang-wand``: ``sigma_y^2 ~ InvGamma(6, 1.25)``, ``HuangWand(2, A = (2, 1))`` (half-t(2)
  standard deviations, uniform correlation);
* ``slopes-inverse-wishart``: the same ``sigma_y``, ``InverseWishart(5, diag(2, 0.5))``;
* ``nested``: ``HalfNormal(0.5)`` on ``sigma_y``, ``HalfNormal(1)`` on both group scales;
* ``crossed``: ``HalfNormal(0.5)`` on ``sigma_y``, ``sd_a ~ HalfNormal(1)``, ``sd_c ~ HalfCauchy(1)``.

The inverse-gamma on ``sigma_y^2`` keeps ``sigma_y`` near 0.5 and away from zero, so that the group
scales are mostly well above ``sigma_y / sqrt(n_g)``.

Thinning
--------
The draws must be nearly independent (residual autocorrelation makes rank histograms U-shaped).
Autocorrelations per sweep of the tested scalars, measured over 200 simulated data sets (4,000 sweeps
each after 200 of warm-up, so a single estimate has a standard error of about 0.02 and the largest of
200 independent ones is noise up to about 0.05; "mean", "q95" and "max" are over data sets):

* Huang-Wand: the log standard deviations are the slowest (a correlated block has no scale move, and
  a half-t standard deviation has prior mass near zero, where ``Sigma | b`` and ``b | Sigma`` move
  little): lag 1 mean 0.50; lag 30 mean 0.09, q95 0.44, max 0.78; lag 40 mean 0.07, q95 0.36, max
  0.73; lag 100 max 0.47. The correlation: lag 10 mean 0.03, max 0.31. The other scalars: lag 10 at
  most 0.37, lag 30 at most 0.22. A few per cent of the data sets therefore stay autocorrelated at
  the thinning used; the slow run (4,000 data sets, thinning 40) shows no U-shape from them (its
  smallest p-value among the Huang-Wand scalars was 0.015, not at a standard deviation).
* inverse-Wishart (``nu = 5``: the standard deviations' prior vanishes at zero, so no funnel): lag 1
  at most 0.52, lag 4 at most 0.15, lag 8 at most 0.05 (noise).
* nested: the 4-group ``sd_a`` is the slowest: lag 1 mean 0.64; lag 10 mean 0.11, max 0.50; lag 20
  mean 0.03, max 0.24; lag 30 max 0.11. The effects: lag 20 at most 0.18, lag 30 at most 0.07.
* crossed: measured with the intercept as the group-level mean of ``c`` (before the fix below) the
  effects were the slowest (lag 20 mean 0.09, max 0.56); with the intercept a fixed effect, thinning 10
  gives p-values of 0.14 to 0.94 over the tested scalars at the CI size (20 at the slow size).

CI thinning: 30 (Huang-Wand), 8 (inverse-Wishart), 20 (nested), 10 (crossed); the slow run: 40, 10,
30, 20. The warm-up is ten thinning intervals at the CI size and twenty at the slow size.

Slow mixing found while choosing the priors
-------------------------------------------
* Crossed factors when one factor's mean carried the intercept (as it did, by the rule "a column constant
  within a factor's groups goes to the coarsest such factor"): the shift ``alpha_a + delta``,
  ``alpha_c - delta``, ``gamma_c - delta`` leaves the fit unchanged and only ``a``'s prior pinned
  ``delta``, while each sweep moved it by ``~ sigma_y / sqrt(n_a)``; with this case's priors this SBC at
  thinning 50 rejected every effect (p < 1e-16, U-shaped) and at thinning 400 no longer. Fixed in the
  model builder: a column constant within the groups of factors of different chains (crossed) stays a
  fixed effect, drawn jointly with each factor's effects in turn. The case now runs at thinning 10.
* A correlated block whose standard deviation has posterior mass near zero (Huang-Wand), above.

Tolerances
----------
Ranks from different data sets are independent. For each tested scalar the ``L + 1`` rank values are
pooled into 10 equal bins and compared with the uniform by a chi-square test (9 degrees of freedom,
expected counts of at least 40); the p-value must exceed the Bonferroni level ``1e-4 / m`` for the
``m`` scalars of a case (each case is a family: a failure names the case and the scalar). Seeds are
fixed for reproducibility; the thresholds do not depend on them. The CI size is 400 data sets with
``L = 49``; ``-m slow`` runs 4,000 data sets with ``L = 99``.

Power: a kernel whose inverse-Wishart draw has two degrees of freedom too many (the power check of
``test_mixed_geweke``) must be rejected by the same machinery, with 300 data sets.

References
----------
Talts, S., Betancourt, M., Simpson, D., Vehtari, A. & Gelman, A. (2018). Validating Bayesian
inference algorithms with simulation-based calibration. arXiv:1804.06788.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from mlgibbs.priors import HalfCauchy, HalfNormal, HuangWand, InverseGamma, InverseWishart
from mlgibbs.samplers.mixed import mixed_kernel


def _load_geweke():
    """``tests/test_mixed_geweke.py`` by path (the tests are not a package; ``--import-mode=importlib``)."""
    path = Path(__file__).resolve().with_name("test_mixed_geweke.py")
    spec = importlib.util.spec_from_file_location("mixed_geweke_simulators", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


geweke = _load_geweke()   # its simulators: Case, case_model, draw_theta, draw_y (a module: not collected)

FAMILY_ALPHA = 1e-4
NUM_BINS = 10
# With this much thinning the run, not the compilation, dominates: compiled normally, the four CI-sized
# runs took 55-70 s on two shared CPU cores (cold compilation cache), with XLA's backend optimisation
# off (as test_sbc compiles) about 40 % longer. Only the short power check compiles with it off.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


class SBCCase(NamedTuple):
    """A structure and its priors (a ``test_mixed_geweke.Case``) with its thinning (CI, slow)."""

    case: object
    thin: int
    thin_slow: int


SLOPES = "y ~ x + (1 + x | g)"
CASES = [
    SBCCase(geweke.Case("slopes-huang-wand", SLOPES,
                        {"sigma_y": InverseGamma(6.0, 1.25), "g": HuangWand(2.0, [2.0, 1.0])}),
            thin=30, thin_slow=40),
    SBCCase(geweke.Case("slopes-inverse-wishart", SLOPES,
                        {"sigma_y": InverseGamma(6.0, 1.25), "g": InverseWishart(5.0, [[2.0, 0.0], [0.0, 0.5]])}),
            thin=8, thin_slow=10),
    SBCCase(geweke.Case("nested", "y ~ x + (1 | a/b)",
                        {"sigma_y": HalfNormal(0.5), "a": HalfNormal(1.0), "a:b": HalfNormal(1.0)}),
            thin=20, thin_slow=30),
    SBCCase(geweke.Case("crossed", "y ~ ua + (1 | a) + (1 | c)",
                        {"sigma_y": HalfNormal(0.5), "a": HalfNormal(1.0), "c": HalfCauchy(1.0)}),
            thin=10, thin_slow=20),
]


# ------------------------------------------------------------------ the tested scalars
def scalars(model, theta, xp):
    """The tested scalars of ``theta`` (user's coordinates, :meth:`MixedModel.to_user`'s dict), ``(..., m)``."""
    out = [theta["beta"][..., j] for j in range(model.structure.p)]
    for factor in model.factors:
        cov = theta[f"cov_{factor.name}"]
        d = cov.shape[-1]
        sd = xp.sqrt(xp.diagonal(cov, axis1=-2, axis2=-1))
        out += [xp.log(sd[..., j]) for j in range(d)]
        for start, width in factor.blocks:
            for i in range(start, start + width):
                for j in range(i + 1, start + width):
                    out.append(cov[..., i, j] / (sd[..., i] * sd[..., j]))
        gamma = theta[f"gamma_{factor.name}"]
        out += [gamma[..., j] for j in range(gamma.shape[-1])]
        b = theta[f"alpha_{factor.name}"]
        out += [b[..., 0, j] for j in range(d)] + [b[..., -1, j] for j in range(d)]
    out.append(xp.log(theta["sigma_y"]))
    return xp.stack(out, axis=-1)


def scalar_names(model) -> list[str]:
    """Names of :func:`scalars`' columns."""
    out = [f"beta[{name}]" for name in model.predictors]
    for f, factor in enumerate(model.factors):
        coefs = factor.coef_names
        out += [f"log sd_{factor.name}[{c}]" for c in coefs]
        for start, width in factor.blocks:
            for i in range(start, start + width):
                for j in range(i + 1, start + width):
                    out.append(f"corr_{factor.name}[{coefs[i]}, {coefs[j]}]")
        out += [f"gamma_{factor.name}[{u}]" for u in model.group_predictors[f]]
        out += [f"alpha_{factor.name}[{factor.labels[g]}, {c}]" for g in (0, -1) for c in coefs]
    return out + ["log sigma_y"]


# ------------------------------------------------------------------ ranks
def ranks_one(rng_key, truth, y, *, model, kernel, num_warmup, num_draws, thin):
    """Rank of ``truth`` among ``num_draws`` thinned draws of one chain on the data ``y``."""
    data = model.data_for(y)
    key_init, key_warmup, key_draws = jax.random.split(rng_key, 3)
    state = kernel.init(key_init, data)

    def sweep(state, key):
        return kernel.step(key, state, data), None

    state, _ = jax.lax.scan(sweep, state, jax.random.split(key_warmup, num_warmup))

    def one_draw(state, key):
        state, _ = jax.lax.scan(sweep, state, jax.random.split(key, thin))
        return state, scalars(model, model.to_user(state, xp=jnp), jnp) < truth

    _, below = jax.lax.scan(one_draw, state, jax.random.split(key_draws, num_draws))
    return jnp.sum(below, axis=0)


def sbc_ranks(case, *, num_datasets, num_warmup, num_draws, thin, fast, seed, kernel=None):
    """``(num_datasets, m)`` ranks of the case's tested scalars; ``kernel`` replaces the library's."""
    rng = np.random.default_rng(seed)
    model = geweke.case_model(case)
    theta = geweke.draw_theta(rng, model, num_datasets)
    y = geweke.draw_y(rng, model, theta)
    truth = scalars(model, theta, np)
    if kernel is None:
        kernel = mixed_kernel(model.structure, model.kernel_priors)
    fn = jax.vmap(functools.partial(ranks_one, model=model, kernel=kernel, num_warmup=num_warmup,
                                    num_draws=num_draws, thin=thin))
    with jax.enable_x64(True):
        keys = jax.random.split(jax.random.key(seed), num_datasets)
        args = (keys, jnp.asarray(truth), jnp.asarray(y))
        lowered = jax.jit(fn).lower(*args)
        program = lowered.compile(FAST_COMPILE) if fast else lowered.compile()
        return np.asarray(program(*args)), scalar_names(model)


def rank_pvalues(ranks: np.ndarray, num_draws: int):
    """Chi-square p-value of each column of ``ranks`` (values ``0..num_draws``) against the uniform,
    and the bin counts."""
    assert (num_draws + 1) % NUM_BINS == 0
    assert ranks.min() >= 0 and ranks.max() <= num_draws
    counts = np.stack([np.bincount(r * NUM_BINS // (num_draws + 1), minlength=NUM_BINS) for r in ranks.T])
    expected = ranks.shape[0] / NUM_BINS
    chi2 = np.sum((counts - expected) ** 2 / expected, axis=1)
    return stats.chi2.sf(chi2, NUM_BINS - 1), counts


def non_uniform(ranks, num_draws, names) -> list[str]:
    """The tested scalars whose ranks fail the chi-square test at the Bonferroni level of the case."""
    p, counts = rank_pvalues(ranks, num_draws)
    level = FAMILY_ALPHA / ranks.shape[1]
    return [f"{name}: p = {pv:.1e}, bins {list(c)}" for name, pv, c in zip(names, p, counts) if pv < level]


def assert_uniform_ranks(ranks, num_draws, names, label):
    bad = non_uniform(ranks, num_draws, names)
    level = FAMILY_ALPHA / ranks.shape[1]
    assert not bad, f"non-uniform SBC ranks of {label!r} (level {level:.1e}):\n" + "\n".join(bad)


# ------------------------------------------------------------------ tests
@pytest.mark.parametrize("sbc", CASES, ids=[c.case.name for c in CASES])
def test_sbc(sbc):
    num_draws = 49
    ranks, names = sbc_ranks(sbc.case, num_datasets=400, num_warmup=10 * sbc.thin, num_draws=num_draws,
                             thin=sbc.thin, fast=False, seed=0)
    assert_uniform_ranks(ranks, num_draws, names, sbc.case.name)


@pytest.mark.slow
@pytest.mark.parametrize("sbc", CASES, ids=[c.case.name for c in CASES])
def test_sbc_slow(sbc):
    num_draws = 99
    ranks, names = sbc_ranks(sbc.case, num_datasets=4000, num_warmup=20 * sbc.thin_slow, num_draws=num_draws,
                             thin=sbc.thin_slow, fast=False, seed=1)
    assert_uniform_ranks(ranks, num_draws, names, sbc.case.name)


def test_sbc_rejects_a_wrong_inverse_wishart_draw():
    """The inverse-Wishart case with a covariance draw of two degrees of freedom too many
    (``IW(nu + J + 2, Psi + S)``, as in ``test_mixed_geweke``) must fail (300 data sets)."""
    sbc = CASES[1]
    model = geweke.case_model(sbc.case)
    kernel = mixed_kernel(model.structure, model.kernel_priors)
    broken = geweke.wrong_inverse_wishart_step(model, kernel)
    num_draws = 49
    ranks, names = sbc_ranks(sbc.case, num_datasets=300, num_warmup=10 * sbc.thin, num_draws=num_draws,
                             thin=sbc.thin, fast=True, seed=0, kernel=kernel._replace(step=broken))
    bad = non_uniform(ranks, num_draws, names)
    assert any(line.startswith("log sd_g") for line in bad), bad

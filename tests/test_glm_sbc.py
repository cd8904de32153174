"""Simulation-based calibration (Talts et al. 2018) of the multilevel Gibbs kernel, binomial-type families.

What is tested
--------------
The kernel ``mixed_kernel(model.structure, model.kernel_priors)`` of :mod:`mlgibbs.samplers.mixed` (its
``init`` and ``step``: the augmentation draw of :mod:`mlgibbs.conditionals.augmentation`, the weighted
location blocks, the scales and the parameter-expanded scale moves) for the non-Gaussian families, on the
cases, designs and priors of ``tests/test_glm_geweke.py`` (its 60-row frame: ``x`` centred near 0, trials
1 to 6 per row):

1. ``bernoulli-slopes``: ``family="bernoulli"`` (logit), ``yb ~ x + (1 + x | g)`` (6 groups of 10),
   correlated varying intercept and slope;
2. ``binomial-nested``: ``family="binomial"`` (logit) with ``trials="m"``, ``ys ~ x + (1 | a/b)``
   (4 groups ``a``, 8 groups ``a:b``);
3. ``probit-crossed``: ``family="probit"`` (one trial per row), ``yb ~ ua + (1 | a) + (1 | c)`` (4 and 3
   crossed groups, ``ua`` a group-level predictor of ``a``);
4. slow run only: ``probit-trials-uncorrelated``: ``family="probit"`` with ``trials="m"`` (the binomial
   probit: several Albert-Chib latents per row), ``ys ~ x + (1 + x || g)``.

For each of many simulated data sets (one ``vmap``): ``theta* ~ p(theta)`` by the NumPy/SciPy prior
simulator of ``test_mixed_geweke`` (``draw_theta``) and ``y ~ Binomial(trials, inverse link(eta*))`` by
``test_glm_geweke.draw_y`` (``numpy.random.Generator.binomial``: independent of the library); the data
pytree from the pure-JAX ``model.data_for(y)``; the kernel's data-dependent ``init``, a warm-up of ten
thinning intervals, then ``L`` draws thinned by ``thin`` sweeps, mapped to the user's coordinates by
``model.to_user``; the rank of ``theta*`` among them (the number of draws below it) for every tested
scalar: each fixed effect, the log of each group standard deviation, the correlation of a correlated
term, each group-level coefficient, and every coefficient of the first and the last group of each factor
(``scalars`` of ``test_mixed_sbc``, less ``log sigma_y``: these families have no ``sigma_y``, the state
keeps it at 1). If the kernel samples the posterior, ``theta*`` and the thinned draws are exchangeable
and every rank is uniform on ``0..L``. Data sets whose outcomes are all failures or all successes are
kept (the priors are proper; ``Model.from_formula`` refuses such a response, ``data_for`` does not): the
ranks are uniform given any ``y``. Everything runs in float64 (``jax.enable_x64``). The ranks and the
uniformity test are ``test_mixed_sbc``'s (``ranks_one``, ``scalars``, ``non_uniform``,
``assert_uniform_ranks``), loaded by path as that module loads ``test_mixed_geweke``.

Priors
------
Those of ``test_glm_geweke``, proper everywhere: ``Normal(0, 1.5)`` on every fixed effect and group-level
coefficient; ``HuangWand(2, A = (1, 0.5))`` on ``g``'s covariance (bernoulli-slopes: half-t(2)
standard deviations, uniform correlation); ``sd_a ~ HalfNormal(1)`` and ``sd_{a:b}^2 ~ InvGamma(3, 1)``
(binomial-nested); ``sd_a ~ HalfNormal(0.7)``, ``sd_c ~ HalfNormal(1)`` (probit-crossed); ``HalfNormal(0.8)``
on both standard deviations of ``g`` (probit-trials-uncorrelated).

Thinning
--------
The draws must be nearly independent (residual autocorrelation makes rank histograms U-shaped).
Autocorrelations per sweep of the tested scalars, measured over 200 simulated data sets (3,000 sweeps
each after 200 of warm-up, 4,000 after 300 for the lags above 30; "mean/q95/max" over data sets, so
noise is about 0.02 for one estimate and up to about 0.06 for the largest of 200):

* bernoulli-slopes: the slowest are the intercepts of the groups and their standard deviation:
  ``alpha_g[G5, Intercept]`` lag 1 0.40/0.89/0.99, lag 10 0.07/0.42/0.95, lag 20 0.03/0.20/0.91, lag 30
  0.02/0.09/0.88 (``G0``: lag 20 0.03/0.15/0.83); ``log sd_g[Intercept]`` lag 20 0.04/0.19/0.84, lag 30
  0.02/0.12/0.80. At lag 20 every other scalar has mean at most 0.02 and q95 at most 0.11.
* binomial-nested mixes fast: lag 10 means at most 0.02, q95 at most 0.08, max 0.39 (``alpha_a[A3]``);
  lag 20 max 0.16.
* probit-crossed: the slowest are ``gamma_a[ua]`` and the effect of the group with the largest ``ua``
  (``alpha_a[A3]``): lag 10 0.24/0.56/0.73 and 0.32/0.67/0.76; lag 30 0.10/0.35/0.53 and 0.14/0.42/0.54;
  lag 50 0.06/0.24/0.46 and 0.08/0.29/0.46; lag 80 0.02/0.14/0.34 and 0.03/0.19/0.32. All others at lag 50:
  mean at most 0.03, q95 at most 0.17.
* probit-trials-uncorrelated is the slowest case: ``alpha_g[G0, Intercept]`` lag 1 0.70/0.95/0.98,
  lag 10 0.24/0.69/0.89, lag 50 0.07/0.35/0.73, lag 100 0.03/0.20/0.58; ``gamma_g[Intercept]`` and
  ``beta[x]`` lag 50 0.06/0.34/0.67 and 0.06/0.29/0.43, lag 100 0.03/0.16/0.51 and 0.02/0.13/0.31.

CI thinning: 20 (bernoulli-slopes), 10 (binomial-nested), 50 (probit-crossed); slow: 30, 15, 80 and 100
(probit-trials-uncorrelated). At the CI size and thinning 50, probit-trials-uncorrelated passes (smallest
p-value 0.021, ``log sd_g[x]``) but alone took 57 s on the shared cores (its sweeps draw up to six latents
per row), so it runs in the slow test only (``test_glm_geweke`` checks it, and the multi-trial probit lanes, in CI).

Slow mixing found (not a fault: the known slowness of data augmentation with separated or imbalanced
outcomes; Johndrow, Smith, Pillai & Dunson 2019): the data sets that stay autocorrelated are those with
a group whose outcomes are all 0 or all 1 (bernoulli-slopes: under the half-t(2) prior 4 % of the data
sets have an intercept standard deviation above 5, and then group intercepts of +-15 whose posterior standard
deviations are 10 to 30 on the logit scale, which the Polya-Gamma sweeps move in small steps: lag-20
autocorrelation up to 0.9), or with almost all outcomes equal or a large ``|gamma_a|`` (probit: the
Albert-Chib latents then pin ``eta`` much more tightly than the outcomes do). They are a few per cent of
the data sets; the thinnings above absorb them, and the slow run confirms it.

Tolerances
----------
``test_mixed_sbc``'s: ranks of different data sets are independent; for each tested scalar the ``L + 1``
rank values are pooled into 10 equal bins and compared with the uniform by a chi-square test (9 degrees of
freedom); the p-value must exceed the Bonferroni level ``1e-4 / m`` for the ``m`` scalars of a case. Seeds
are fixed; the thresholds do not depend on them. CI size: 400 data sets, ``L = 49`` (40 expected per bin);
``-m slow``: 2,000 data sets, ``L = 99``.

Power (200 data sets, ``L = 49``, the CI thinning): the broken augmentations of ``test_glm_geweke``,
patched into a freshly built kernel, must be rejected by the same machinery:

* Polya-Gamma weights drawn from ``PG(1, eta / 2)`` on bernoulli-slopes: too large, so ``eta`` is shrunk.
  ``beta[x]`` must fail (U-shaped: p = 4e-14) and ``log sd_g[Intercept]`` too, ranked high (the draws too
  small: p = 2e-23); five of the nine scalars fail at the level 1.1e-5.
* Albert-Chib latents whose mean is ``0.8 eta`` on probit-crossed: ``beta[Intercept]`` (p = 5e-15) and
  ``gamma_a[ua]`` (p = 4e-43) must fail, ``log sd_c[Intercept]`` ranked high (p = 3e-10); all eight fail.

The correct kernel's p-values at the same CI thinning and 400 data sets are 0.008 to 0.92.

Run time of the default (CI) selection on two CPU cores shared with other jobs, ``jit`` compilation
included: 71 s (Python 3.11, JAX 0.10.2) and 115 s (Python 3.12, JAX 0.12.0); 70 to 130 s under heavier
load. The chains, not the compilation, dominate; XLA's backend optimisation is left on because with it off
(``test_mixed_sbc``'s ``FAST_COMPILE``) the Polya-Gamma sweeps run about four times slower. ``-m slow``
took about 25 minutes (2,000 data sets per case; smallest p-value per case: bernoulli-slopes 0.28,
binomial-nested 0.038, probit-crossed 0.077, probit-trials-uncorrelated 0.055).

References
----------
Talts, S., Betancourt, M., Simpson, D., Vehtari, A. & Gelman, A. (2018). Validating Bayesian
inference algorithms with simulation-based calibration. arXiv:1804.06788.
Johndrow, J. E., Smith, A., Pillai, N. & Dunson, D. B. (2019). MCMC for imbalanced categorical data.
Journal of the American Statistical Association 114, 1394-1403.
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

import mlgibbs.conditionals.augmentation as augmentation
from mlgibbs.samplers.mixed import mixed_kernel


def _load(filename: str, name: str):
    """A test module by path (the tests are not a package; ``--import-mode=importlib``)."""
    path = Path(__file__).resolve().with_name(filename)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# the Geweke test of these families: its cases (designs and priors), model builder, simulators and the
# kernels of its power checks; the Gaussian SBC: its ranks (one chain per data set) and uniformity test
glm = _load("test_glm_geweke.py", "glm_geweke_simulators")
sbc = _load("test_mixed_sbc.py", "mixed_sbc_machinery")


class GLMCase(NamedTuple):
    """A ``test_glm_geweke.Case`` (structure, family, priors) with its thinning (CI, slow)."""

    case: object
    thin: int
    thin_slow: int


_GEWEKE = {c.name: c for c in glm.CASES}
CASES = [
    GLMCase(_GEWEKE["bernoulli-slopes"], thin=20, thin_slow=30),
    GLMCase(_GEWEKE["binomial-nested"], thin=10, thin_slow=15),
    GLMCase(_GEWEKE["probit-crossed"], thin=50, thin_slow=80),
]
# slow only: the slowest-mixing case, too long for the CI budget at the thinning it needs
SLOW_CASES = CASES + [GLMCase(_GEWEKE["probit-trials-uncorrelated"], thin=50, thin_slow=100)]
_BY_NAME = {c.case.name: c for c in SLOW_CASES}


# ------------------------------------------------------------------ ranks
def sbc_ranks(case, *, num_datasets, num_warmup, num_draws, thin, seed, kernel=None):
    """``(num_datasets, m)`` ranks of the case's tested scalars and their names.

    ``kernel`` replaces the library's (a broken one for the power checks).
    """
    rng = np.random.default_rng(seed)
    model = glm.case_model(case)
    theta = glm.draw_theta(rng, model, num_datasets)          # sigma_y = 1: these families have none
    y = glm.draw_y(rng, model, theta)                         # Binomial(trials, inverse link of eta)
    truth = sbc.scalars(model, theta, np)
    names = sbc.scalar_names(model)
    assert names[-1] == "log sigma_y" and np.all(truth[:, -1] == 0.0)
    if kernel is None:
        kernel = mixed_kernel(model.structure, model.kernel_priors)
    fn = jax.vmap(functools.partial(sbc.ranks_one, model=model, kernel=kernel, num_warmup=num_warmup,
                                    num_draws=num_draws, thin=thin))
    with jax.enable_x64(True):
        keys = jax.random.split(jax.random.key(seed), num_datasets)
        args = (keys, jnp.asarray(truth), jnp.asarray(y))
        ranks = np.asarray(jax.jit(fn)(*args))     # compiled normally (see the module docstring)
    return ranks[:, :-1], names[:-1]        # log sigma_y: 0 = 0 in every draw, not a parameter


def run_case(sbc_case, *, num_datasets, num_draws, thin, seed, kernel=None):
    """:func:`sbc_ranks` of a case with a warm-up of ten thinning intervals."""
    return sbc_ranks(sbc_case.case, num_datasets=num_datasets, num_warmup=10 * thin, num_draws=num_draws,
                     thin=thin, seed=seed, kernel=kernel)


# ------------------------------------------------------------------ tests
@pytest.mark.parametrize("case", CASES, ids=[c.case.name for c in CASES])
def test_sbc(case):
    num_draws = 49
    ranks, names = run_case(case, num_datasets=400, num_draws=num_draws, thin=case.thin, seed=0)
    sbc.assert_uniform_ranks(ranks, num_draws, names, case.case.name)


@pytest.mark.slow
@pytest.mark.parametrize("case", SLOW_CASES, ids=[c.case.name for c in SLOW_CASES])
def test_sbc_slow(case):
    num_draws = 99
    ranks, names = run_case(case, num_datasets=2000, num_draws=num_draws, thin=case.thin_slow, seed=1)
    sbc.assert_uniform_ranks(ranks, num_draws, names, case.case.name)


def _broken_ranks(monkeypatch, name, function, wrong, num_datasets=200):
    """Ranks of case ``name`` at the CI thinning, with ``augmentation.<function>`` evaluated at
    ``wrong(eta)``: the names of the scalars that fail, the mean rank of each (``L = 49``)."""
    case = _BY_NAME[name]
    right = getattr(augmentation, function)
    monkeypatch.setattr(augmentation, function, lambda key, eta, *args: right(key, wrong(eta), *args))
    kernel = glm.fresh_kernel(glm.case_model(case.case))      # built and traced with the patch
    num_draws = 49
    ranks, names = run_case(case, num_datasets=num_datasets, num_draws=num_draws, thin=case.thin, seed=0,
                            kernel=kernel)
    failed = {line.split(": p = ")[0] for line in sbc.non_uniform(ranks, num_draws, names)}
    return failed, dict(zip(names, ranks.mean(axis=0)))


def test_sbc_rejects_polya_gamma_weights_at_half_eta(monkeypatch):
    """Polya-Gamma weights drawn from ``PG(1, eta / 2)`` (``test_glm_geweke``'s broken augmentation): too
    large, so ``eta`` is shrunk: the fixed effect's ranks U-shaped, the intercept scale's too high."""
    failed, mean_rank = _broken_ranks(monkeypatch, "bernoulli-slopes", "polya_gamma_augmentation",
                                      lambda eta: 0.5 * eta)
    assert {"beta[x]", "log sd_g[Intercept]"} <= failed, failed
    assert mean_rank["log sd_g[Intercept]"] > 49 / 2


def test_sbc_rejects_shrunk_probit_latents(monkeypatch):
    """Albert-Chib latents with their mean shrunk by 20 % (``test_glm_geweke``'s broken augmentation)."""
    failed, mean_rank = _broken_ranks(monkeypatch, "probit-crossed", "probit_augmentation", lambda eta: 0.8 * eta)
    assert {"beta[Intercept]", "gamma_a[ua]"} <= failed, failed
    assert mean_rank["log sd_c[Intercept]"] > 49 / 2

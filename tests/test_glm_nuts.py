"""The samplers of the non-Gaussian families against NUTS (NumPyro) on shipped data.

The same comparison as ``tests/test_mixed_nuts.py`` (whose helpers this file uses): for every fixed
effect, group-level coefficient, standard deviation, correlation and the varying coefficients of three
groups per factor (smallest, median, largest), the posterior mean, standard deviation and 10% / 90%
quantiles of the two samplers' draws are compared through ``z = (Gibbs - NUTS) / sqrt(mcse_G^2 +
mcse_N^2)`` (ArviZ's ESS-based MCSEs) against a Bonferroni threshold for a family-wise false-alarm rate
of 1% over every comparison of this module; both runs must first show R-hat < 1.01, bulk and tail ESS
>= 400 everywhere and NUTS fewer than 1% divergent transitions. NUTS runs
:func:`mlgibbs.numpyro.mixed_numpyro_model`, written independently from the raw data with NumPyro's
``Binomial(logits=eta)`` (logit) or a probit log likelihood through ``log_ndtr``.

Cases (the data of issue 9):

* ``radon-logistic``: houses above the EPA action level, ``I(activity > 4) ~ floor + log_uranium + (1 |
  county)`` (Minnesota, 919 houses, 85 counties), flat coefficients and a uniform county scale;
* ``radon-probit``: the same with the probit link and a half-normal county scale;
* ``cbpp``: ``incidence`` of ``size`` trials ``~ period + (1 | herd)`` (binomial), half-normal herd scale;
* ``contraception``: ``use ~ age + I(age**2) + urban + livch + (1 + urban | district)`` (1,934 women, 60
  districts), the default Huang-Wand prior on the correlated district block, normal coefficients;
* ``grouseticks-nb``: ticks on red grouse chicks, ``TICKS ~ YEAR + scale(HEIGHT) + (1 | BROOD) + (1 |
  LOCATION)`` with ``family="negbinomial"`` (403 chicks, 118 broods nested in 63 locations; the NB's ``r``
  takes the chick-level overdispersion), normal coefficients, half-normal scales, ``r ~ Gamma(0.01, 0.01)``;
  NumPyro's side is the NB2 log pmf of :func:`mlgibbs.families.negbinomial_log_prob`, checked against
  SciPy in ``tests/test_negbinomial.py``;
* ``grouseticks-poisson``: the same counts as a Poisson-lognormal model, ``TICKS ~ YEAR + scale(HEIGHT) + (1 |
  BROOD) + (1 | INDEX) + (1 | LOCATION)`` (the chick-level ``INDEX`` effect takes the overdispersion; the
  Metropolis-Hastings kernel of :mod:`mlgibbs.conditionals.poisson`), NumPyro's ``Poisson(e^eta)``.

NUTS is non-centred where the group scale has mass near zero (radon's county scale: the centred
parametrisation gave R-hat 1.06 and bulk ESS 59 for it; cbpp's 15 herds) and centred where the groups
are well informed (Contraception; its urban-slope scale needs 4 x 2,000 NUTS draws for a bulk ESS of 400). Power: the Gibbs draws of cbpp with its herd scale prior halved
must be rejected by the same comparison.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import numpy as np
import pytest

import mlgibbs as mg
from mlgibbs.numpyro import mixed_nuts_draws, run_mixed_nuts_compiled
from mlgibbs.priors import HalfNormal, Normal
from tests.test_mixed_nuts import _check_agreement, _posterior_dict, _threshold, _z_scores

pytest.importorskip("numpyro")


@dataclasses.dataclass(frozen=True)
class Case:
    formula: str
    load: Callable[[], Any]
    family: str
    priors: dict | None
    nuts: dict
    gibbs: tuple[int, int]          # (draws per chain, thin)
    trials: Any = None
    nuts_draws: int = 1000


def _radon():
    return mg.datasets.load_radon()


CASES = {
    "radon-logistic": Case("I(activity > 4) ~ floor + log_uranium + (1 | county)", _radon, "bernoulli", None,
                           dict(centered=False), (2000, 1)),
    "radon-probit": Case("I(activity > 4) ~ floor + log_uranium + (1 | county)", _radon, "probit",
                         {"county": HalfNormal(1.0)}, dict(centered=False), (2000, 1)),
    "cbpp": Case("incidence ~ period + (1 | herd)", mg.datasets.load_cbpp, "binomial", {"herd": HalfNormal(1.0)},
                 dict(centered=False), (2000, 2), trials="size"),
    "contraception": Case("use ~ age + I(age**2) + urban + livch + (1 + urban | district)",
                          mg.datasets.load_contraception, "bernoulli", {"beta": Normal(0.0, 5.0)},
                          dict(centered=True), (2000, 1), nuts_draws=2000),
    "grouseticks-nb": Case("TICKS ~ YEAR + scale(HEIGHT) + (1 | BROOD) + (1 | LOCATION)",
                           mg.datasets.load_grouseticks, "negbinomial",
                           {"beta": Normal(0.0, 5.0), "BROOD": HalfNormal(1.0), "LOCATION": HalfNormal(1.0)},
                           dict(centered=False), (8000, 1), nuts_draws=3000),
    "grouseticks-poisson": Case("TICKS ~ YEAR + scale(HEIGHT) + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)",
                                mg.datasets.load_grouseticks, "poisson",
                                {"beta": Normal(0.0, 5.0), "BROOD": HalfNormal(1.0), "INDEX": HalfNormal(1.0),
                                 "LOCATION": HalfNormal(1.0)},
                                dict(centered=False), (12000, 2), nuts_draws=3000),
}
# long: the location scale mixes slowly under the negative binomial (bulk ESS ~1.4% of draws) and the Poisson
# (~1% of sweeps), so 4 x 8,000 and 4 x 24,000 Gibbs sweeps for the ESS >= 400 gate; minutes each on 2 cores
SLOW = {"grouseticks-nb", "grouseticks-poisson"}

PERTURBED = {"cbpp": {"herd": HalfNormal(0.5)}}
SEEDS = {name: 90210 + 31 * i for i, name in enumerate(CASES)}


def _model(name, priors=None):
    case = CASES[name]
    merged = dict(case.priors or {})
    merged.update(priors or {})
    return mg.Model.from_formula(case.formula, case.load(), priors=merged or None, family=case.family,
                                 trials=case.trials)


class Fits:
    def __init__(self):
        self._cache = {}

    def _get(self, key, build):
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def model(self, name, perturbed=False):
        return self._get(("model", name, perturbed), lambda: _model(name, PERTURBED[name] if perturbed else None))

    def nuts(self, name):
        case = CASES[name]

        def build():
            model = self.model(name)
            run = run_mixed_nuts_compiled(model, jax.random.key(SEEDS[name]), num_chains=4, num_warmup=1000,
                                          num_draws=case.nuts_draws, **case.nuts)
            extra = run.get_extra_fields(group_by_chain=True)
            return {"draws": mixed_nuts_draws(model, run.get_samples(group_by_chain=True)),
                    "diverging": np.asarray(extra["diverging"]), "num_steps": np.asarray(extra["num_steps"])}
        return self._get(("nuts", name), build)

    def gibbs(self, name, perturbed=False):
        case = CASES[name]

        def build():
            num_draws, thin = case.gibbs
            idata = mg.sample(jax.random.key(SEEDS[name] + 1 + 7 * perturbed), self.model(name, perturbed),
                              num_chains=4, num_warmup=1000, num_draws=num_draws, thin=thin,
                              log_likelihood=False, check_convergence=False)
            return idata.posterior
        return self._get(("gibbs", name, perturbed), build)


@pytest.fixture(scope="module")
def fits():
    return Fits()


@pytest.fixture(scope="module")
def threshold(fits):
    return _threshold([fits.model(name) for name in CASES])


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in CASES])
def test_agrees_with_nuts(name, fits, threshold):
    _check_agreement(name, fits.model(name), fits.gibbs(name), fits.nuts(name), threshold)


@pytest.mark.parametrize("name", list(PERTURBED))
def test_rejects_a_different_prior(name, fits, threshold):
    names, table, _ = _z_scores(fits.model(name), _posterior_dict(fits.gibbs(name, perturbed=True)),
                                fits.nuts(name)["draws"])
    worst = max(float(np.max(np.abs(z))) for *_, z in table.values())
    assert worst >= threshold, f"a changed prior {PERTURBED[name]} went undetected: max |z| = {worst:.2f}"

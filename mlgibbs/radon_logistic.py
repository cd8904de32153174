r"""The logistic radon model: the probability that a house's radon exceeds the EPA action level.

The EPA advises fixing a house whose radon level is above the *action level* of 4 pCi/L
(:data:`ACTION_LEVEL`). Which Minnesota houses, and which counties, exceed it? A multilevel logistic
regression of the indicator ``z_i = 1[activity_i > 4]`` on the floor of the measurement, with
county intercepts drawn around a regression on county soil uranium (:data:`LOGISTIC_FORMULA`,
Gelman & Hill 2007, ch. 14 for the logistic multilevel model):

.. math::

    z_i \sim \mathrm{Bernoulli}\big(\mathrm{logit}^{-1}(\alpha_{j[i]} + \beta\,\mathrm{floor}_i)\big),
    \qquad
    \alpha_j \sim \mathcal N(\gamma_0 + \gamma_1 u_j,\ \sigma_{\mathrm{county}}^2),

with ``u_j`` the county's log soil uranium. :func:`mlgibbs.sample` draws it with the blocked Gibbs
sampler of the multilevel model, made exact for the Bernoulli likelihood by Polya-Gamma augmentation
(Polson, Scott & Windle 2013): given ``omega_i ~ PG(1, eta_i)`` the likelihood is Gaussian in the
linear predictor ``eta_i``, so the location blocks are the Gaussian sampler's with row weights
``omega_i`` (:mod:`mlgibbs.families`). In the model's names (:mod:`mlgibbs.models.mixed`)
``alpha_j`` is ``alpha_county``, ``beta`` is ``beta[floor]``, ``gamma_0, gamma_1`` are
``gamma_county[Intercept]``, ``gamma_county[log_uranium]`` and ``sigma_county`` is
``sigma_county[Intercept]``.

Building blocks, used by ``python -m mlgibbs radon`` (:mod:`mlgibbs.radon_job`) and the notebook
``notebooks/radon.ipynb``: :func:`fit_logistic`, :func:`logistic_table` (the fixed effects, the odds
ratio of the floor and the county sd, with 90% intervals and R-hat and ESS),
:func:`county_probabilities` (per county, the probability that a basement house exceeds the action
level) and :func:`probability_figure`.

References
----------
Gelman, A. & Hill, J. (2007). *Data Analysis Using Regression and Multilevel/Hierarchical Models*,
ch. 14. Polson, N. G., Scott, J. G. & Windle, J. (2013). Bayesian inference for logistic models using
Polya-Gamma latent variables. *JASA* 108, 1339-1349.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
import numpy as np
import pandas as pd
from scipy.special import expit

import mlgibbs as mg
import mlgibbs.arviz as mga

__all__ = [
    "ACTION_LEVEL",
    "LOGISTIC_FORMULA",
    "LOGISTIC_ROWS",
    "LogisticResults",
    "fit_logistic",
    "logistic_table",
    "county_probabilities",
    "probability_figure",
]

#: the EPA action level of radon in a house, pCi/L
ACTION_LEVEL = 4.0

#: the multilevel logistic model of a house exceeding :data:`ACTION_LEVEL`
LOGISTIC_FORMULA = f"I(activity > {ACTION_LEVEL:g}) ~ floor + log_uranium + (1 | county)"

#: rows of :func:`logistic_table`: name -> what it is
LOGISTIC_ROWS = {
    "beta[floor]": "first floor vs basement (log odds)",
    "odds_ratio[floor]": "exp(beta[floor]): odds of a first-floor vs a basement measurement",
    "gamma_county[Intercept]": "log odds of a basement house, county log uranium 0",
    "gamma_county[log_uranium]": "county log uranium (county-level predictor, log odds)",
    "sigma_county": "sigma_county[Intercept]: sd of the county intercepts (log odds)",
}

# jax.random.fold_in(jax.random.key(seed), _KEY_STREAM): the Minnesota models of mlgibbs.radon_job use
# jax.random.split(jax.random.key(seed), 4), its nested model fold_in(..., 4)
_KEY_STREAM = 5


@dataclasses.dataclass
class LogisticResults:
    """The logistic model (:data:`LOGISTIC_FORMULA`) and its summaries.

    Attributes
    ----------
    model
        The :class:`~mlgibbs.models.mixed.MixedModel` (family ``"bernoulli"``).
    fit
        Its posterior (InferenceData or DataTree).
    fit_seconds
        Wall time of :func:`mlgibbs.sample` (compilation included).
    table
        :func:`logistic_table`.
    counties
        :func:`county_probabilities`.
    """

    model: Any
    fit: Any
    fit_seconds: float
    table: pd.DataFrame
    counties: pd.DataFrame


def fit_logistic(data: pd.DataFrame, *, seed: int = 0, num_chains: int = 4, num_warmup: int = 500,
                 num_draws: int = 1000) -> tuple[Any, Any, float]:
    """Build and fit :data:`LOGISTIC_FORMULA` (family ``"bernoulli"``) on ``data``.

    The key is ``jax.random.fold_in(jax.random.key(seed), 5)``, distinct from the keys of the other
    models of :mod:`mlgibbs.radon_job`. Every sweep is kept: with 4 x 1000 draws after 500 warm-up
    sweeps the bulk ESS of ``sigma_county`` was 460-650 in four runs (R-hat up to 1.011), of the
    coefficients above 1,900; keeping one sweep in two roughly doubles the first.

    Returns
    -------
    model, fit, seconds
        The model, its posterior and the wall time of :func:`mlgibbs.sample`.

    Examples
    --------
    >>> model, fit, seconds = fit_logistic(mg.datasets.load_radon(), num_draws=200)  # doctest: +SKIP
    """
    model = mg.Model.from_formula(LOGISTIC_FORMULA, data, family="bernoulli")
    key = jax.random.fold_in(jax.random.key(seed), _KEY_STREAM)
    start = time.perf_counter()
    fit = mg.sample(key, model, num_chains=num_chains, num_warmup=num_warmup, num_draws=num_draws)
    return model, fit, time.perf_counter() - start


def _draws(fit, var: str, **coords) -> np.ndarray:
    """Draws of ``var`` (selected at ``coords``) as a float64 array ``(chain, draw, ...)``."""
    values = fit.posterior[var]
    if coords:
        values = values.sel(**coords)
    return np.asarray(values.values, dtype=np.float64)


def _summarise(values: dict[str, np.ndarray]) -> pd.DataFrame:
    """Mean, sd, 90% central interval, bulk and tail ESS and R-hat of scalar draws ``(chain, draw)``."""
    import xarray as xr

    # plain names for az.summary (it would read "beta[floor]" as a selection)
    plain = {f"v{k}": (("chain", "draw"), v) for k, v in enumerate(values.values())}
    diagnostics = mga.summary(mga.make_inference_data({"posterior": xr.Dataset(plain)}))
    diagnostics.index = list(values)
    rows = {}
    for name, draws in values.items():
        flat = draws.ravel()
        rows[name] = {"mean": flat.mean(), "sd": flat.std(ddof=1),
                      "q5": np.quantile(flat, 0.05), "q95": np.quantile(flat, 0.95)}
    table = pd.DataFrame.from_dict(rows, orient="index")
    return table.join(diagnostics[["ess_bulk", "ess_tail", "r_hat"]])


def logistic_table(fit) -> pd.DataFrame:
    r"""The fixed effects and the county sd of the logistic model, with 90% intervals.

    The odds ratio of the floor is summarised per draw, :math:`\mathrm{OR} = e^{\beta}`: the odds
    :math:`p / (1 - p)` of exceeding the action level for a first-floor measurement, divided by
    those of a basement measurement in the same county. Its posterior mean is
    :math:`\mathrm{E}\,e^{\beta}`, not :math:`e^{\mathrm{E}\beta}`; its bulk ESS is that of
    ``beta[floor]`` (rank-based, so unchanged by a monotone map).

    Returns
    -------
    pandas.DataFrame
        Indexed by ``parameter`` (the rows of :data:`LOGISTIC_ROWS`, in that order), columns
        ``mean``, ``sd``, ``q5``, ``q95`` (the 90% central interval), ``ess_bulk``, ``ess_tail``,
        ``r_hat`` (:func:`mlgibbs.arviz.summary`) and ``what``. Full precision.
    """
    beta = _draws(fit, "beta", predictor="floor")
    values = {
        "beta[floor]": beta,
        "odds_ratio[floor]": np.exp(beta),
        "gamma_county[Intercept]": _draws(fit, "gamma_county", county_predictor="Intercept"),
        "gamma_county[log_uranium]": _draws(fit, "gamma_county", county_predictor="log_uranium"),
        "sigma_county": _draws(fit, "sigma_county", county_coef="Intercept"),
    }
    table = _summarise(values)
    table["what"] = [LOGISTIC_ROWS[name] for name in table.index]
    table.index.name = "parameter"
    return table


def county_probabilities(fit, model, data: pd.DataFrame, *, floor: float = 0.0) -> pd.DataFrame:
    r"""Per county, the probability that a house measured on ``floor`` exceeds the action level.

    For each posterior draw ``s`` and county ``j``

    .. math::

        p_j^{(s)} = \mathrm{logit}^{-1}\big(\alpha_j^{(s)} + \beta^{(s)}\,\mathrm{floor}\big),

    summarised over the draws; ``floor = 0`` (default) is a basement house. These are the
    probabilities ``mu`` of :func:`mlgibbs.predict` for a new house of a county in the data.

    Parameters
    ----------
    fit
        Posterior of :data:`LOGISTIC_FORMULA` (:func:`fit_logistic`).
    model
        Its model: a logit-link model with the grouping factor ``county``.
    data
        The data it was fitted on (columns ``county``, ``activity``, ``log_uranium``).
    floor
        0 for a basement measurement, 1 for the first floor.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``county`` in the posterior's order, columns ``houses`` (measured in the county),
        ``above`` (of them, above :data:`ACTION_LEVEL`), ``observed`` (``above / houses``, every
        floor), ``log_uranium``, and ``mean``, ``sd``, ``q5``, ``q95`` (90% central interval) of
        ``p_j``.
    """
    family = getattr(model, "family", None)
    if family is None or family.link != "logit" or "alpha_county" not in fit.posterior:
        raise ValueError("expected a fit of a logit-link model with the grouping factor 'county' "
                         f"({LOGISTIC_FORMULA!r}), got a model of family "
                         f"{getattr(family, 'name', 'gaussian')!r} with posterior variables "
                         f"{sorted(fit.posterior.data_vars)}")
    alpha = _draws(fit, "alpha_county", county_coef="Intercept")
    labels = [str(v) for v in fit.posterior["alpha_county"]["county"].values]
    beta = _draws(fit, "beta", predictor="floor")
    prob = expit(alpha + beta[..., None] * floor).reshape(-1, len(labels))

    county = data["county"].astype(str)
    above = data["activity"] > ACTION_LEVEL
    by_county = pd.DataFrame({"houses": county.value_counts(),
                              "above": above.groupby(county).sum(),
                              "log_uranium": data["log_uranium"].groupby(county).first()}
                             ).reindex(labels)
    out = pd.DataFrame({
        "houses": by_county["houses"].to_numpy(), "above": by_county["above"].to_numpy(),
        "observed": (by_county["above"] / by_county["houses"]).to_numpy(),
        "log_uranium": by_county["log_uranium"].to_numpy(),
        "mean": prob.mean(axis=0), "sd": prob.std(axis=0, ddof=1),
        "q5": np.quantile(prob, 0.05, axis=0), "q95": np.quantile(prob, 0.95, axis=0),
    }, index=pd.Index(labels, name="county"))
    return out.astype({"houses": "int64", "above": "int64"})


def probability_figure(fit, counties: pd.DataFrame, *, dpi: int = 100):
    r"""County probability of exceeding the action level against county log uranium.

    Per county (from :func:`county_probabilities`): the posterior mean of the probability that a
    basement house exceeds :data:`ACTION_LEVEL`, with its 90% interval, and the observed fraction of
    the county's houses above it (open circle, area proportional to the houses measured). The
    curve is the population regression :math:`\mathrm{logit}^{-1}(\gamma_0 + \gamma_1 u)`, the
    probability for a county whose intercept sits on the regression line (county effect 0),
    posterior mean with its 90% band.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from mlgibbs.radon_job import _figure

    g0 = _draws(fit, "gamma_county", county_predictor="Intercept").ravel()
    g1 = _draws(fit, "gamma_county", county_predictor="log_uranium").ravel()
    u = counties["log_uranium"].to_numpy(float)
    grid = np.linspace(u.min() - 0.05, u.max() + 0.05, 120)
    curve = expit(g0[:, None] + g1[:, None] * grid)
    fig, (ax,) = _figure((7.5, 4.8), dpi)

    ax.fill_between(grid, np.quantile(curve, 0.05, axis=0), np.quantile(curve, 0.95, axis=0),
                    color="C3", alpha=0.15, lw=0)
    ax.plot(grid, curve.mean(axis=0), color="C3", lw=1.5,
            label=r"$\mathrm{logit}^{-1}(\gamma_0 + \gamma_1 u)$: county on the regression line, 90% band")
    circles = dict(facecolors="none", edgecolors="0.5", lw=0.7)
    ax.scatter(u, counties["observed"], s=4.0 * counties["houses"].to_numpy(float), **circles)
    ax.scatter([], [], s=30, **circles,  # the legend's circle, of a fixed size
               label=f"observed fraction above {ACTION_LEVEL:g} pCi/L, all floors (area: houses)")
    mean = counties["mean"].to_numpy()
    ax.errorbar(u, mean, yerr=[mean - counties["q5"].to_numpy(), counties["q95"].to_numpy() - mean],
                fmt="o", ms=3, lw=0.7, color="C0", alpha=0.85, zorder=3,
                label="basement house: posterior mean, 90% interval")
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel(r"county log uranium $u_j$")
    ax.set_ylabel(f"probability that radon exceeds {ACTION_LEVEL:g} pCi/L")
    ax.set_title(f"{int(counties['houses'].sum())} houses in {len(counties)} Minnesota counties: "
                 f"{LOGISTIC_FORMULA}", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    return fig

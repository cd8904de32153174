"""The radon example of Gelman & Hill (2007, ch. 12-13), end to end: Minnesota, then all states.

Run it with ``python -m mlgibbs radon``; the notebook ``notebooks/radon.ipynb`` tells the same story
with these functions. Four models of the log radon level ``y`` of 919 houses in 85 counties, all
fitted with :func:`mlgibbs.sample` under Gelman & Hill's default priors (flat on the coefficients,
uniform on the standard deviations):

=====================  ==================================================  ==============
name                   formula                                             Gelman & Hill
=====================  ==================================================  ==============
``complete_pooling``   ``log_radon ~ floor``                               12.2
``no_pooling``         ``log_radon ~ 0 + C(county)``                       12.2, fig 12.1a
``indicators``         ``log_radon ~ 0 + C(county) + floor``               12.3
``multilevel``         ``log_radon ~ floor + log_uranium + (1 | county)``  12.6, ch. 13
=====================  ==================================================  ==============

The plain Gibbs sampler mixes slowly for ``sigma_alpha`` in the multilevel model (bulk ESS of
roughly 40 to 80 out of 4 x 1000 draws when every sweep is kept), so the multilevel model keeps one
sweep in ``thin`` (default :data:`DEFAULT_THIN`); measured with 4 x 1000 kept draws: ``thin=5``
gave bulk ESS 240-420 and R-hat up to 1.014, ``thin=10`` gave 750-1100 and R-hat below 1.005
(seeds 0 and 1). The other three models are linear regressions whose two-block sampler mixes
almost perfectly (bulk ESS above 3000 of 4000 at ``thin=1``).

The job then fits the **nested model on all states** (:data:`NESTED_FORMULA`): 12,083 houses in
480 counties in 8 survey states, ``log_radon ~ floor + log_uranium + (1 | state/fips)``, with county
intercepts drawn around their state's intercept plus a uranium regression and the state intercepts
drawn around a common mean. Counties are identified by their FIPS code within the state (county
names repeat across states), so the factors are ``state`` and ``state:fips``; the intercept is
``gamma_state[Intercept]`` and log uranium, a county-level predictor,
``gamma_state:fips[log_uranium]`` (see :mod:`mlgibbs.models.mixed`). Its blocked Gibbs sampler (the
only sampler of a model with several grouping factors) mixes well at ``thin=1``: with 4 x 1000
draws the bulk ESS of every scale and fixed effect is above 1,800 (seed 0). It is summarised by
:func:`nested_table` (the three standard deviations, the share of variance at each level, the
fixed effects), :func:`nested_estimates` (state and county intercepts next to their raw means) and
:func:`nested_shrinkage_figure`. "State"
``R5`` is the EPA Region 5 tribal-lands survey (reservations in Michigan, Minnesota and Wisconsin),
whose counties are the reservations' parts in each county: a few FIPS codes of Minnesota counties
therefore appear both as ``MN:<fips>`` and ``R5:<fips>``.

Between the Minnesota models and the nested one the job fits the **logistic model** of a house
exceeding the EPA action level of 4 pCi/L (:mod:`mlgibbs.radon_logistic`,
:data:`~mlgibbs.radon_logistic.LOGISTIC_FORMULA`: ``I(activity > 4) ~ floor + log_uranium + (1 |
county)``, family ``"bernoulli"``, drawn exactly by Polya-Gamma augmented Gibbs, every sweep kept),
with the odds ratio of the floor, the probability that a basement house exceeds the level in each
county (:func:`~mlgibbs.radon_logistic.county_probabilities`) and its figure against county uranium.

Figures are built on :class:`matplotlib.figure.Figure` with the Agg canvas, never through
``pyplot``, so the job opens no window and the notebook shows them inline.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping, TextIO

import jax
import numpy as np
import pandas as pd

import mlgibbs as mg
import mlgibbs.arviz as mga
from mlgibbs import radon_logistic

__all__ = [
    "MODELS",
    "DEFAULT_THIN",
    "SUMMARY_VARS",
    "RadonResults",
    "load_data",
    "build_models",
    "fit_models",
    "multilevel_summary",
    "diagnostics_ok",
    "loo_compare",
    "county_estimates",
    "shrinkage_figure",
    "uranium_figure",
    "trace_rank_figure",
    "format_table",
    "NESTED_FORMULA",
    "STATE_NAMES",
    "NestedResults",
    "load_all_states",
    "fit_nested",
    "nested_table",
    "nested_estimates",
    "nested_shrinkage_figure",
    "run",
]

#: name -> (formula, what it is, section of Gelman & Hill 2007)
MODELS: dict[str, tuple[str, str, str]] = {
    "complete_pooling": ("log_radon ~ floor", "one regression for the whole state", "12.2"),
    "no_pooling": ("log_radon ~ 0 + C(county)", "each county alone (county means, common sigma_y)",
                   "12.2, fig. 12.1a"),
    "indicators": ("log_radon ~ 0 + C(county) + floor", "one indicator per county, plus floor", "12.3"),
    "multilevel": ("log_radon ~ floor + log_uranium + (1 | county)",
                   "county intercepts drawn around a uranium regression", "12.6, ch. 13"),
}

#: sweeps per kept draw for the multilevel model (see the module docstring for the measurements)
DEFAULT_THIN = 10

#: the blocks of the multilevel posterior that are summarised
SUMMARY_VARS = ("beta", "gamma", "sigma_y", "sigma_alpha")

#: the nested model of every state: houses in counties (by FIPS code) in states
NESTED_FORMULA = "log_radon ~ floor + log_uranium + (1 | state/fips)"

#: the survey "states" of :func:`mlgibbs.datasets.load_radon` (``R5``: EPA Region 5 tribal lands)
STATE_NAMES = {
    "AZ": "Arizona", "IN": "Indiana", "MA": "Massachusetts", "MN": "Minnesota", "MO": "Missouri",
    "ND": "North Dakota", "PA": "Pennsylvania", "R5": "Region 5 tribal lands (MI, MN, WI)",
}

#: healthy-chain thresholds used in the printed verdict (Vehtari et al. 2021)
RHAT_MAX = 1.01
ESS_MIN = 400


@dataclasses.dataclass
class RadonResults:
    """Everything the job computes.

    Attributes
    ----------
    data
        The radon data frame (919 rows).
    models
        Name -> :class:`~mlgibbs.Model`, in the order of :data:`MODELS`.
    fits
        Name -> InferenceData (ArviZ 0.x) or DataTree (ArviZ 1.x).
    fit_seconds
        Name -> wall time of :func:`mlgibbs.sample` (compilation included).
    summary
        :func:`multilevel_summary` of the multilevel fit (unrounded).
    comparison
        :func:`loo_compare` table.
    pareto_k
        Per model: observations with a Pareto k above the threshold, the threshold, the largest k.
    warnings
        Warnings raised while summarising and comparing, as ``(category, message, count)``.
    thin
        Sweeps per kept draw of the multilevel model.
    files
        Paths written.
    seconds
        Wall time of the whole job.
    nested
        The nested all-states model (:class:`NestedResults`).
    logistic
        The logistic model of a house above the action level
        (:class:`~mlgibbs.radon_logistic.LogisticResults`).
    """

    data: pd.DataFrame
    models: dict[str, Any]
    fits: dict[str, Any]
    fit_seconds: dict[str, float]
    summary: pd.DataFrame
    comparison: pd.DataFrame
    pareto_k: pd.DataFrame
    warnings: list[tuple[str, str, int]]
    thin: int
    files: list[Path] = dataclasses.field(default_factory=list)
    seconds: float = float("nan")
    nested: "NestedResults | None" = None
    logistic: "radon_logistic.LogisticResults | None" = None


@dataclasses.dataclass
class NestedResults:
    """The nested all-states model (:data:`NESTED_FORMULA`) and its summaries.

    Attributes
    ----------
    data
        The radon data of every state (:func:`load_all_states`, 12,083 rows).
    model
        The :class:`~mlgibbs.models.mixed.MixedModel`.
    fit
        Its posterior (InferenceData or DataTree).
    fit_seconds
        Wall time of :func:`mlgibbs.sample` (compilation included).
    table
        :func:`nested_table`.
    estimates
        :func:`nested_estimates`.
    """

    data: pd.DataFrame
    model: Any
    fit: Any
    fit_seconds: float
    table: pd.DataFrame
    estimates: pd.DataFrame


# ---------------------------------------------------------------------------------------- fitting
def load_data() -> pd.DataFrame:
    """The Minnesota radon data: 919 houses in 85 counties (:func:`mlgibbs.datasets.load_radon`)."""
    return mg.datasets.load_radon()


def build_models(data: pd.DataFrame) -> dict[str, Any]:
    """One :class:`~mlgibbs.Model` per entry of :data:`MODELS`, with the default priors."""
    return {name: mg.Model.from_formula(formula, data) for name, (formula, _, _) in MODELS.items()}


def fit_models(
    models: Mapping[str, Any],
    *,
    seed: int = 0,
    num_chains: int = 4,
    num_warmup: int = 500,
    num_draws: int = 1000,
    thin: int = DEFAULT_THIN,
    sampler: str = "gibbs",
) -> tuple[dict[str, Any], dict[str, float]]:
    """Fit every model with :func:`mlgibbs.sample`.

    Model ``k`` (in the order given) uses ``jax.random.split(jax.random.key(seed), len(models))[k]``.
    ``thin`` applies to the model named ``"multilevel"`` only; the others keep every sweep.
    ``sampler`` is the Gibbs sampler's name (default the five-step sampler of G&H ch. 18).

    Returns
    -------
    fits, seconds
        Name -> InferenceData, and name -> wall time of its :func:`mlgibbs.sample` call.
    """
    keys = jax.random.split(jax.random.key(seed), len(models))
    fits, seconds = {}, {}
    for key, (name, model) in zip(keys, models.items()):
        start = time.perf_counter()
        fits[name] = mg.sample(key, model, num_chains=num_chains, num_warmup=num_warmup,
                               num_draws=num_draws, thin=thin if name == "multilevel" else 1,
                               sampler=sampler)
        seconds[name] = time.perf_counter() - start
    return fits, seconds


# ------------------------------------------------------------------------------------ summaries
def multilevel_summary(fit) -> pd.DataFrame:
    """Summary of ``beta``, ``gamma``, ``sigma_y`` and ``sigma_alpha`` (:func:`mlgibbs.arviz.summary`).

    Unrounded, with the same columns under ArviZ 0.x and 1.x: ``mean, sd, hdi94_lb, hdi94_ub,
    ess_bulk, ess_tail, r_hat, mcse_mean, mcse_sd``.
    """
    posterior = fit.posterior
    return mga.summary(fit, var_names=[v for v in SUMMARY_VARS if v in posterior])


def diagnostics_ok(summary: pd.DataFrame, rhat_max: float = RHAT_MAX,
                   ess_min: float = ESS_MIN) -> tuple[bool, str]:
    """Check R-hat and bulk/tail ESS of a :func:`multilevel_summary`; return ``(ok, verdict)``."""
    missing = [c for c in ("r_hat", "ess_bulk", "ess_tail") if c not in summary.columns]
    if missing:
        return False, f"columns {missing} not in the summary (columns: {list(summary.columns)})"
    max_rhat = float(summary["r_hat"].max())
    min_ess = {c: float(summary[c].min()) for c in ("ess_bulk", "ess_tail")}
    ok = max_rhat < rhat_max and all(v > ess_min for v in min_ess.values())
    parts = [f"max R-hat {max_rhat:.4f}"] + [f"min {c} {v:.0f}" for c, v in min_ess.items()]
    verdict = "OK" if ok else "NOT OK: increase --thin or --num-draws"
    return ok, f"{', '.join(parts)} -> {verdict} (want R-hat < {rhat_max}, ESS > {ess_min})"


def loo_compare(fits: Mapping[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """PSIS-LOO of every fit and their comparison, by :func:`mlgibbs.arviz.loo` and ``compare``.

    Returns
    -------
    comparison
        Ranked, best first, full precision, the same columns and signs under ArviZ 0.x and 1.x:
        ``rank``, ``elpd`` (PSIS-LOO estimate of the expected log predictive density, higher is
        better), ``se``, ``p`` (effective number of parameters), ``elpd_diff`` (this model's elpd
        minus the best model's: 0 for the best, negative for the others), ``dse`` (its standard
        error), ``weight`` (stacking weight) and ``warning`` (some Pareto k above the threshold).
    pareto_k
        Per model: ``k_above`` (observations whose Pareto k exceeds ``k_threshold``, where the
        importance-sampling estimate is unreliable), ``k_threshold`` and ``k_max``.
    """
    loos = {name: mga.loo(fit) for name, fit in fits.items()}
    pareto_k = pd.DataFrame.from_dict(
        {name: {"k_above": result.k_above, "k_threshold": result.good_k,
                "k_max": float(np.max(result.pareto_k))} for name, result in loos.items()},
        orient="index")
    return mga.compare(loos), pareto_k


@contextlib.contextmanager
def _collect_warnings(into: list) -> Iterator[None]:
    """Record every warning raised inside the block (to print them, not to hide them)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    into.extend(caught)


def _unique_warnings(caught) -> list[tuple[str, str, int]]:
    counts: dict[tuple[str, str], int] = {}
    for w in caught:
        key = (w.category.__name__, " ".join(str(w.message).split()))
        counts[key] = counts.get(key, 0) + 1
    return [(category, message, n) for (category, message), n in counts.items()]


def format_table(table: pd.DataFrame, digits: int = 3) -> str:
    """Format a numeric table readably for printing (the table itself keeps full precision).

    ESS, ranks, counts and integer columns as integers, R-hat to 4 decimals, stacking weights to 3,
    other floats to ``digits`` decimals.
    """
    formatters = {}
    for col in table.columns:
        series = table[col]
        if pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series):
            continue
        if (str(col).startswith("ess") or str(col) in ("rank", "k_above")
                or pd.api.types.is_integer_dtype(series)):
            formatters[col] = lambda v: "" if v is pd.NA else f"{v:.0f}"
        elif str(col) == "r_hat":
            formatters[col] = lambda v: f"{v:.4f}"
        elif str(col) == "weight":
            formatters[col] = lambda v: f"{v:.3f}"
        else:
            formatters[col] = lambda v, d=digits: f"{v:.{d}f}"
    with pd.option_context("display.max_columns", None, "display.width", 250,
                           "display.max_colwidth", 60):
        return table.to_string(formatters=formatters)


# ---------------------------------------------------------------------------------- estimates
_INDICATOR = re.compile(r"^C\((?P<group>[^)]+)\)\[(?:T\.)?(?P<label>.*)\]$")


def county_estimates(fit, model, data: pd.DataFrame, group: str = "county") -> pd.DataFrame:
    """County intercepts of a fit: posterior mean and sd, with the county's sample size.

    For a multilevel model these are ``alpha_j``; for an indicator-variable model (no grouping
    factor, one ``C(county)[...]`` coefficient per county) they are those coefficients, the
    no-pooling estimates of Gelman & Hill (2007, sec. 12.3).

    Returns
    -------
    pandas.DataFrame
        Indexed by county, columns ``mean``, ``sd``, ``n`` (houses measured in the county).
    """
    posterior = fit.posterior
    if model.group_name == group and "alpha" in posterior:
        draws = posterior["alpha"]
        labels = [str(v) for v in draws[group].values]
        values = np.asarray(draws.values).reshape(-1, len(labels))
    else:
        beta = posterior["beta"]
        names = [str(v) for v in beta["predictor"].values]
        matches = [_INDICATOR.match(n) for n in names]
        columns = [i for i, m in enumerate(matches) if m and m.group("group").strip() == group]
        if not columns:
            raise ValueError(f"the fit has neither alpha over {group!r} nor C({group})[...] "
                             f"coefficients; its predictors are {names}")
        labels = [matches[i].group("label") for i in columns]
        values = np.asarray(beta.values).reshape(-1, len(names))[:, columns]
    counts = data[group].astype(str).value_counts()
    return pd.DataFrame({"mean": values.mean(axis=0), "sd": values.std(axis=0, ddof=1),
                         "n": counts.reindex(labels).to_numpy()},
                        index=pd.Index(labels, name=group))


def _posterior_mean(fit, var: str, **coords) -> float:
    values = fit.posterior[var]
    if coords:
        values = values.sel(**coords)
    return float(np.asarray(values.values).mean())


def _figure(figsize, dpi, nrows=1, ncols=1, **kwargs):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **kwargs)
    return fig, axes.ravel()


def shrinkage_figure(no_pooling: pd.DataFrame, multilevel: pd.DataFrame, average: float, *,
                     seed: int = 0, dpi: int = 100):
    """County estimates +- 1 sd against county sample size: no pooling next to multilevel.

    In the spirit of Gelman & Hill (2007), fig. 12.1 and 12.3: the estimates from counties with few
    houses scatter widely without pooling and are pulled toward the group-level regression by the
    multilevel model.

    Parameters
    ----------
    no_pooling, multilevel
        :func:`county_estimates` of the indicator-variable and multilevel fits.
    average
        Height of the horizontal reference line (the complete-pooling intercept).
    seed
        Seed of the horizontal jitter.
    dpi
        Resolution of the figure.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, axes = _figure((10, 4.2), dpi, 1, 2, sharey=True)
    rng = np.random.default_rng(seed)
    panels = [
        (no_pooling, "(a) no pooling: county indicators + floor\n(log_radon ~ 0 + C(county) + floor)"),
        (multilevel, "(b) multilevel: partial pooling\n(log_radon ~ floor + log_uranium + (1 | county))"),
    ]
    for ax, (est, title) in zip(axes, panels):
        x = est["n"].to_numpy(float) * np.exp(rng.uniform(-0.1, 0.1, len(est)))
        ax.errorbar(x, est["mean"], yerr=est["sd"], fmt="o", ms=3, lw=0.7, color="C0", alpha=0.8)
        ax.axhline(average, color="C3", lw=1, ls="--", label="complete-pooling intercept")
        ax.set_xscale("log")
        ax.set_xlabel("houses measured in the county (log scale, jittered)")
        ax.set_title(title, fontsize=10)
    axes[0].set_ylabel(r"county intercept $\alpha_j$: posterior mean $\pm$ 1 sd")
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle(f"Log radon in basement houses, by county: {int(no_pooling['n'].sum())} houses "
                 f"in {len(no_pooling)} Minnesota counties", fontsize=11)
    return fig


def uranium_figure(fit, data: pd.DataFrame, *, group: str = "county", dpi: int = 100):
    """County intercepts ``alpha_j`` (mean +- 1 sd) against county log uranium, with the fitted
    group-level regression ``gamma_0 + gamma_1 u`` (Gelman & Hill 2007, fig. 12.6)."""
    posterior = fit.posterior
    alpha = np.asarray(posterior["alpha"].values)
    labels = [str(v) for v in posterior["alpha"][group].values]
    alpha = alpha.reshape(-1, len(labels))
    u = data.groupby(data[group].astype(str))["log_uranium"].first().reindex(labels).to_numpy()
    gamma0 = _posterior_mean(fit, "gamma", group_predictor="Intercept")
    gamma1 = _posterior_mean(fit, "gamma", group_predictor="log_uranium")
    fig, (ax,) = _figure((6, 4.2), dpi)
    ax.errorbar(u, alpha.mean(axis=0), yerr=alpha.std(axis=0, ddof=1), fmt="o", ms=3, lw=0.7,
                alpha=0.8, label=r"$\alpha_j$: posterior mean $\pm$ 1 sd")
    grid = np.linspace(u.min(), u.max(), 50)
    ax.plot(grid, gamma0 + gamma1 * grid, color="C3",
            label=rf"$\gamma_0 + \gamma_1 u$ = {gamma0:.2f} + {gamma1:.2f} u (posterior means)")
    ax.set_xlabel(r"county log uranium $u_j$")
    ax.set_ylabel(r"county intercept $\alpha_j$")
    ax.set_title("Multilevel model: county intercepts against the county-level predictor",
                 fontsize=10)
    ax.legend(fontsize=8)
    return fig


def trace_rank_figure(fit, var: str = "sigma_alpha", *, bins: int = 20, dpi: int = 100):
    """Trace plot and rank plot of a scalar variable, one colour per chain.

    The rank plot (Vehtari et al. 2021) ranks all draws together and histograms each chain's
    ranks; for chains that mix well every histogram is flat around the dashed line. Drawn with
    matplotlib directly so it looks the same under ArviZ 0.x and 1.x (``az.plot_trace`` and
    ``az.plot_rank`` draw the same things).
    """
    draws = np.asarray(fit.posterior[var].values)
    num_chains, num_draws = draws.shape[:2]
    ranks = np.argsort(np.argsort(draws.ravel())).reshape(draws.shape)
    edges = np.linspace(0, draws.size, bins + 1)
    fig, (ax_trace, ax_rank) = _figure((10, 3.2), dpi, 1, 2)
    for c in range(num_chains):
        ax_trace.plot(draws[c], lw=0.5, alpha=0.8, label=f"chain {c}")
        counts, _ = np.histogram(ranks[c], bins=edges)
        ax_rank.stairs(counts, edges, baseline=None, lw=1.2)
    ax_rank.axhline(num_draws / bins, color="k", ls="--", lw=0.8)
    ax_trace.set(xlabel="kept draw", ylabel=var, title=f"trace of {var}")
    ax_rank.set(xlabel="rank of the draw among all chains", ylabel="draws per bin",
                title=f"rank plot of {var} (flat = well mixed)")
    ax_trace.legend(fontsize=7, ncol=num_chains)
    ax_rank.set_ylim(bottom=0)
    return fig


# ---------------------------------------------------------------------------- nested model
def load_all_states() -> pd.DataFrame:
    """The radon data of every survey state: 12,083 houses with a known floor and county uranium
    (:func:`mlgibbs.datasets.load_radon` with ``state=None``)."""
    return mg.datasets.load_radon(state=None)


def fit_nested(data: pd.DataFrame, *, seed: int = 0, num_chains: int = 4, num_warmup: int = 500,
               num_draws: int = 1000) -> tuple[Any, Any, float]:
    """Build and fit the nested model :data:`NESTED_FORMULA` on ``data``.

    The key is ``jax.random.fold_in(jax.random.key(seed), len(MODELS))``, distinct from the keys
    :func:`fit_models` gives the Minnesota models. Every sweep is kept (the blocked sampler mixes
    well) and no pointwise log likelihood is stored (12,083 houses; the LOO comparison is of the
    Minnesota models only).

    Returns
    -------
    model, fit, seconds
        The model, its posterior and the wall time of :func:`mlgibbs.sample`.
    """
    model = mg.Model.from_formula(NESTED_FORMULA, data)
    key = jax.random.fold_in(jax.random.key(seed), len(MODELS))
    start = time.perf_counter()
    fit = mg.sample(key, model, num_chains=num_chains, num_warmup=num_warmup,
                    num_draws=num_draws, log_likelihood=False)
    return model, fit, time.perf_counter() - start


def _draws(fit, var: str, **coords) -> np.ndarray:
    """Draws of ``var`` (selected at ``coords``) as a float64 array ``(chain, draw, ...)``."""
    values = fit.posterior[var]
    if coords:
        values = values.sel(**coords)
    return np.asarray(values.values, dtype=np.float64)


#: rows of :func:`nested_table`: name -> what it is
NESTED_ROWS = {
    "sigma_state": "sigma_state[Intercept]: sd of the state intercepts",
    "sigma_county": "sigma_state:fips[Intercept]: sd of counties within a state",
    "sigma_y": "sigma_y: sd of houses within a county",
    "share_state": "sigma_state^2 / total variance",
    "share_county": "sigma_county^2 / total variance",
    "share_house": "sigma_y^2 / total variance",
    "beta[floor]": "first floor vs basement",
    "gamma_state[Intercept]": "mean of the state intercepts",
    "gamma_state:fips[log_uranium]": "county log uranium (county-level predictor)",
}


def nested_table(fit) -> pd.DataFrame:
    """Variance components and fixed effects of the nested model, with 90% intervals.

    The shares of variance are computed per draw, e.g. ``share_state = sigma_state^2 /
    (sigma_state^2 + sigma_county^2 + sigma_y^2)``, then summarised: the variance of the log radon
    of a basement house drawn from a random county of a random state, given its county's uranium,
    split into between states, between counties within a state and between houses within a county.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``parameter`` (the rows of :data:`NESTED_ROWS`, in that order), columns ``mean``,
        ``sd``, ``q5``, ``q95`` (the 90% central interval), ``ess_bulk``, ``ess_tail``, ``r_hat``
        (:func:`mlgibbs.arviz.summary`) and ``what``. Full precision.
    """
    sigma_state = _draws(fit, "sigma_state", state_coef="Intercept")
    sigma_county = _draws(fit, "sigma_state:fips", **{"state:fips_coef": "Intercept"})
    sigma_y = _draws(fit, "sigma_y")
    total = sigma_state**2 + sigma_county**2 + sigma_y**2
    values = {
        "sigma_state": sigma_state, "sigma_county": sigma_county, "sigma_y": sigma_y,
        "share_state": sigma_state**2 / total, "share_county": sigma_county**2 / total,
        "share_house": sigma_y**2 / total,
        "beta[floor]": _draws(fit, "beta", predictor="floor"),
        "gamma_state[Intercept]": _draws(fit, "gamma_state", state_predictor="Intercept"),
        "gamma_state:fips[log_uranium]": _draws(fit, "gamma_state:fips",
                                                **{"state:fips_predictor": "log_uranium"}),
    }
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
    table = table.join(diagnostics[["ess_bulk", "ess_tail", "r_hat"]])
    table["what"] = [NESTED_ROWS[name] for name in table.index]
    table.index.name = "parameter"
    return table


def _county_names(data: pd.DataFrame) -> pd.Series:
    """``"<state>:<fips>"`` -> county name(s) (several reservations in one R5 county: joined)."""
    keys = data["state"].astype(str) + ":" + data["fips"].astype(str)
    names = data["county"].astype(str).groupby(keys)
    return names.agg(lambda values: " / ".join(sorted(set(values))))


def nested_estimates(fit, data: pd.DataFrame) -> pd.DataFrame:
    """State and county intercepts of the nested model next to their raw means.

    One row per state (``level == "state"``) then per county (``level == "county"``), counties
    sorted by state and FIPS code:

    * county: ``mean``, ``sd``, ``q5``, ``q95`` of the county intercept ``alpha_state[s] +
      alpha_state:fips[s:c]`` (the expected log radon of a basement house in the county);
      ``raw_mean`` is the county's mean of ``log_radon - b * floor`` (``b``: posterior mean of
      ``beta[floor]``), the no-pooling estimate; ``pooled_toward`` is the posterior mean of
      ``alpha_state[s] + g * log_uranium_c``, the centre that the county is shrunk toward;
    * state: the same columns for the state intercept ``alpha_state[s]`` (the county intercept of a
      county with log uranium 0 and no county effect); ``raw_mean`` is the state's estimate from its
      own data alone (no pooling across states): the mean of its counties' ``raw_mean - g *
      log_uranium`` (``g``: posterior mean of ``gamma_state:fips[log_uranium]``) weighted by
      ``1 / (sigma_county^2 + sigma_y^2 / houses)`` at the posterior means of the two scales, as the
      model weighs them (a plain mean over the state's houses would weigh large counties more
      than the model does, and differs from it by up to 0.12 in Pennsylvania);
      ``pooled_toward`` is the posterior mean of ``gamma_state[Intercept]``.

    Columns: ``level, state, fips, name`` (county name, or state name), ``houses``, ``counties``
    (states only), ``log_uranium`` (counties only), ``raw_mean, mean, sd, q5, q95, pooled_toward``.
    """
    posterior = fit.posterior
    county_labels = [str(v) for v in posterior["alpha_state:fips"]["state:fips"].values]
    state_labels = [str(v) for v in posterior["alpha_state"]["state"].values]
    a_state = _draws(fit, "alpha_state", state_coef="Intercept")
    a_state = a_state.reshape(-1, a_state.shape[-1])
    a_county = _draws(fit, "alpha_state:fips", **{"state:fips_coef": "Intercept"})
    a_county = a_county.reshape(-1, a_county.shape[-1])
    state_of = np.array([state_labels.index(label.split(":", 1)[0]) for label in county_labels])
    county = a_state[:, state_of] + a_county

    b = float(_draws(fit, "beta", predictor="floor").mean())
    g = float(_draws(fit, "gamma_state:fips", **{"state:fips_predictor": "log_uranium"}).mean())
    g0 = float(_draws(fit, "gamma_state", state_predictor="Intercept").mean())

    var_county = float((_draws(fit, "sigma_state:fips") ** 2).mean())
    var_y = float((_draws(fit, "sigma_y") ** 2).mean())

    keys = data["state"].astype(str) + ":" + data["fips"].astype(str)
    floor_adjusted = data["log_radon"] - b * data["floor"]
    by_county = pd.DataFrame({"raw_mean": floor_adjusted.groupby(keys).mean(),
                              "houses": keys.value_counts(),
                              "log_uranium": data["log_uranium"].groupby(keys).first(),
                              "name": _county_names(data)}).reindex(county_labels)
    by_county["state"] = [label.split(":", 1)[0] for label in county_labels]
    weight = 1.0 / (var_county + var_y / by_county["houses"])
    adjusted = by_county["raw_mean"] - g * by_county["log_uranium"]
    states = data["state"].astype(str)
    by_state = pd.DataFrame({
        "raw_mean": (weight * adjusted).groupby(by_county["state"]).sum()
                    / weight.groupby(by_county["state"]).sum(),
        "houses": states.value_counts(),
        "counties": keys.groupby(states).nunique(),
    }).reindex(state_labels)

    def summarise(draws):
        return {"mean": draws.mean(axis=0), "sd": draws.std(axis=0, ddof=1),
                "q5": np.quantile(draws, 0.05, axis=0), "q95": np.quantile(draws, 0.95, axis=0)}

    state_rows = pd.DataFrame({
        "level": "state", "state": state_labels, "fips": pd.NA,
        "name": [STATE_NAMES.get(s, s) for s in state_labels],
        "houses": by_state["houses"].to_numpy(), "counties": by_state["counties"].to_numpy(),
        "log_uranium": np.nan, "raw_mean": by_state["raw_mean"].to_numpy(), **summarise(a_state),
        "pooled_toward": g0,
    })
    county_rows = pd.DataFrame({
        "level": "county", "state": [label.split(":", 1)[0] for label in county_labels],
        "fips": [int(label.split(":", 1)[1]) for label in county_labels],
        "name": by_county["name"].to_numpy(), "houses": by_county["houses"].to_numpy(),
        "counties": pd.NA, "log_uranium": by_county["log_uranium"].to_numpy(),
        "raw_mean": by_county["raw_mean"].to_numpy(), **summarise(county),
        "pooled_toward": a_state[:, state_of].mean(axis=0) + g * by_county["log_uranium"].to_numpy(),
    })
    out = pd.concat([state_rows, county_rows], ignore_index=True)
    return out.astype({"fips": "Int64", "counties": "Int64", "houses": "int64"})


def nested_shrinkage_figure(estimates: pd.DataFrame, *, seed: int = 0, dpi: int = 100):
    """Shrinkage at both levels of the nested model, from :func:`nested_estimates`.

    (a) Counties: the raw (floor-adjusted) county mean (open grey circle) and the multilevel county
    intercept (dot, coloured by state), joined by a line, against the county's number of houses:
    counties with few houses are pulled strongly toward their state's level and uranium prediction,
    large ones barely move. (b) States: each state's estimate from its own data (``raw_mean`` of
    :func:`nested_estimates`) and the state intercept +- 1 sd against the state's number of
    houses, with the mean of the state intercepts (``gamma_state[Intercept]``): with ten or more
    counties per state the state intercepts are pulled toward it only slightly.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.collections import LineCollection
    from matplotlib.ticker import NullFormatter

    counties = estimates[estimates["level"] == "county"]
    states = estimates[estimates["level"] == "state"]
    order = list(states["state"])
    palette = ["C0", "C1", "C2", "C3", "C4", "C5", "C6", "C8", "C9"]  # no grey: raw means are grey
    colours = {s: palette[k % len(palette)] for k, s in enumerate(order)}
    fig, (ax_c, ax_s) = _figure((11, 5.0), dpi, 1, 2, width_ratios=(1.6, 1))
    rng = np.random.default_rng(seed)

    x = counties["houses"].to_numpy(float) * np.exp(rng.uniform(-0.12, 0.12, len(counties)))
    raw, pooled = counties["raw_mean"].to_numpy(), counties["mean"].to_numpy()
    ax_c.add_collection(LineCollection(np.stack([np.c_[x, raw], np.c_[x, pooled]], axis=1),
                                       colors="0.6", linewidths=0.5, alpha=0.6))
    ax_c.scatter(x, raw, s=12, facecolors="none", edgecolors="0.45", lw=0.6,
                 label="raw county mean (floor-adjusted)")
    for s in order:
        mine = (counties["state"] == s).to_numpy()
        ax_c.scatter(x[mine], pooled[mine], s=9, color=colours[s], label=s, zorder=3)
    ax_c.set_xscale("log")
    ax_c.set_xlabel("houses measured in the county (log scale, jittered)")
    ax_c.set_ylabel("county intercept (log radon, basement)")
    ax_c.set_title(f"(a) {len(counties)} counties: raw mean -> multilevel estimate "
                   "(coloured by state)", fontsize=10)
    ax_c.legend(fontsize=7, ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.15),
                markerscale=1.2, frameon=False)

    xs = states["houses"].to_numpy(float)
    ax_s.scatter(xs, states["raw_mean"], s=40, facecolors="none", edgecolors="0.3",
                 label="state's own estimate (no pooling across states)")
    ax_s.errorbar(xs, states["mean"], yerr=states["sd"], fmt="none", ecolor="0.2", lw=1)
    ax_s.scatter(xs, states["mean"], s=22, c=[colours[s] for s in order], zorder=3,
                 label=r"state intercept $\alpha_s$: posterior mean $\pm$ 1 sd")
    for xi, yi, s in zip(xs, states["mean"], order):
        ax_s.annotate(s, (xi, yi), xytext=(5, 3), textcoords="offset points", fontsize=8)
    ax_s.axhline(float(states["pooled_toward"].iloc[0]), color="C3", ls="--", lw=1,
                 label=r"mean of the state intercepts $\gamma_0$")
    ax_s.set_xscale("log")
    ax_s.set_xlabel("houses measured in the state (log scale)")
    ax_s.set_ylabel("state intercept (log radon, basement, log uranium 0)")
    ax_s.set_title(f"(b) {len(states)} states: own estimate and multilevel estimate", fontsize=10)
    ticks = [t for t in (250, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000)
             if xs.min() / 1.2 <= t <= xs.max() * 1.2]
    ax_s.set_xticks(ticks, [str(t) for t in ticks])
    ax_s.xaxis.set_minor_formatter(NullFormatter())
    ax_s.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15), frameon=False)
    fig.suptitle(f"All states: log_radon ~ floor + log_uranium + (1 | state/fips), "
                 f"{int(counties['houses'].sum())} houses", fontsize=11)
    return fig


# ----------------------------------------------------------------------------------------- job
def _print(stream: TextIO, text: str = "") -> None:
    print(text, file=stream, flush=True)


def _heading(stream: TextIO, title: str) -> None:
    _print(stream)
    _print(stream, f"== {title} " + "=" * max(3, 76 - len(title)))


def _nested_section(stream: TextIO, *, seed: int, num_chains: int, num_warmup: int,
                    num_draws: int) -> NestedResults:
    """Fit the nested all-states model and print its section of the report."""
    data = load_all_states()
    model, fit, seconds = fit_nested(data, seed=seed, num_chains=num_chains,
                                     num_warmup=num_warmup, num_draws=num_draws)
    table = nested_table(fit)
    estimates = nested_estimates(fit, data)
    states = estimates[estimates["level"] == "state"].set_index("state")
    counties = estimates[estimates["level"] == "county"]

    _heading(stream, "All states: houses in counties in states")
    _print(stream, f"  {NESTED_FORMULA}: {len(data)} houses in {len(counties)} counties (state:fips) "
                   f"in {len(states)} states")
    _print(stream, f"  blocked Gibbs sampler, {num_chains} chains x {num_draws} draws after "
                   f"{num_warmup} warm-up sweeps, thin 1; fit {seconds:.1f} s")
    _print(stream, "  priors: flat on the coefficients, uniform on the standard deviations (defaults)")
    _print(stream)
    _print(stream, format_table(table.drop(columns=["ess_tail", "what"])))
    _, verdict = diagnostics_ok(table)
    _print(stream, f"diagnostics: {verdict.replace('--thin or ', '')}")  # thin applies to MN only
    _print(stream, "sigma_state, sigma_county: sigma_state[Intercept], sigma_state:fips[Intercept]; "
                   "q5, q95: 90% interval;")
    _print(stream, "share_x: sigma_x^2 / (sigma_state^2 + sigma_county^2 + sigma_y^2), per draw, "
                   "then summarised.")
    share = table["mean"]
    _print(stream, f"Given floor and county uranium, {100 * share['share_state']:.0f}% of the variance "
                   f"of log radon lies between states, {100 * share['share_county']:.0f}% between "
                   f"counties within a state and {100 * share['share_house']:.0f}% between houses.")

    _print(stream)
    _print(stream, "State intercepts alpha_state (basement, log uranium 0); own: the state's "
                   "estimate from its own data")
    _print(stream, "(precision-weighted mean of its floor- and uranium-adjusted county means, "
                   "no pooling across states):")
    state_view = states[["name", "houses", "counties", "raw_mean", "mean", "q5", "q95"]]
    _print(stream, format_table(state_view.rename(columns={"raw_mean": "own"}), digits=2))
    shift = (states["mean"] - states["raw_mean"]).abs()
    _print(stream, f"  largest pull toward gamma_state[Intercept] = "
                   f"{float(states['pooled_toward'].iloc[0]):.2f}: {shift.max():.3f} "
                   f"({shift.idxmax()}); states have 10 or more counties each, so little pooling.")
    small = counties["houses"] <= 3
    _print(stream, f"Counties: spread (sd) of the {len(counties)} county intercepts: raw "
                   f"{counties['raw_mean'].std():.3f}, multilevel {counties['mean'].std():.3f}; "
                   f"the {int(small.sum())} with <= 3 houses move by")
    moved = (counties["mean"] - counties["raw_mean"]).abs()
    _print(stream, f"  {moved[small].mean():.3f} on average toward their state and uranium "
                   f"prediction, the {int((~small).sum())} others by {moved[~small].mean():.3f}.")
    return NestedResults(data=data, model=model, fit=fit, fit_seconds=seconds, table=table,
                         estimates=estimates)


def _logistic_section(stream: TextIO, data: pd.DataFrame, *, seed: int, num_chains: int,
                      num_warmup: int, num_draws: int) -> radon_logistic.LogisticResults:
    """Fit the logistic model of a house above the action level and print its section of the report."""
    rl = radon_logistic
    model, fit, seconds = rl.fit_logistic(data, seed=seed, num_chains=num_chains,
                                          num_warmup=num_warmup, num_draws=num_draws)
    table = rl.logistic_table(fit)
    counties = rl.county_probabilities(fit, model, data)
    level = f"{rl.ACTION_LEVEL:g} pCi/L"
    above = int(counties["above"].sum())

    _heading(stream, "Above the action level: logistic multilevel model")
    _print(stream, f"  {rl.LOGISTIC_FORMULA}, family 'bernoulli' (logit link):")
    _print(stream, f"  {len(data)} houses in {len(counties)} counties, {above} "
                   f"({100 * above / len(data):.0f}%) above the EPA action level of {level}")
    _print(stream, f"  Polya-Gamma augmented blocked Gibbs sampler (exact), {num_chains} chains x "
                   f"{num_draws} draws after {num_warmup} warm-up sweeps, thin 1; fit {seconds:.1f} s")
    _print(stream, "  priors: flat on the coefficients, uniform on sigma_county (defaults)")
    _print(stream)
    _print(stream, format_table(table.drop(columns=["ess_tail", "what"])))
    _, verdict = diagnostics_ok(table)
    _print(stream, f"diagnostics: {verdict.replace('--thin or ', '')}")  # every sweep is kept
    _print(stream, "log-odds scale; odds_ratio[floor] = exp(beta[floor]) per draw, then summarised; "
                   "q5, q95: 90% interval.")
    floor, uranium = table.loc["beta[floor]"], table.loc["gamma_county[log_uranium]"]
    ratio = table.loc["odds_ratio[floor]"]
    _print(stream, f"The odds that a first-floor measurement exceeds {level} are {ratio['mean']:.2f} "
                   "times those of a basement one")
    _print(stream, f"  in the same county (90% interval {ratio['q5']:.2f}-{ratio['q95']:.2f}): a "
                   f"basement measurement has about {np.exp(-floor['mean']):.1f} times the odds")
    _print(stream, f"  of a first-floor one ({np.exp(-floor['q95']):.1f}-{np.exp(-floor['q5']):.1f}). "
                   f"One unit more county log uranium multiplies the odds")
    _print(stream, f"  by about {np.exp(uranium['mean']):.1f} ({np.exp(uranium['q5']):.1f}-"
                   f"{np.exp(uranium['q95']):.1f}).")
    _print(stream)
    _print(stream, f"Probability that a basement house exceeds {level}, by county: posterior mean and "
                   "90% interval;")
    _print(stream, "observed: fraction of the county's houses above it (every floor). The three "
                   "highest and the three lowest:")
    ranked = counties.sort_values("mean", ascending=False)
    extremes = pd.concat([ranked.head(3), ranked.tail(3)])
    _print(stream, format_table(extremes[["houses", "observed", "log_uranium", "mean", "q5", "q95"]],
                                digits=2))
    top, bottom = ranked.iloc[0], ranked.iloc[-1]
    _print(stream, f"  from {bottom['mean']:.2f} in {ranked.index[-1]} (log uranium "
                   f"{bottom['log_uranium']:.2f}) to {top['mean']:.2f} in {ranked.index[0]} "
                   f"({top['log_uranium']:.2f}); a basement house is more")
    _print(stream, f"  likely than not to exceed the level in {int((counties['mean'] > 0.5).sum())} "
                   f"of the {len(counties)} counties.")
    return rl.LogisticResults(model=model, fit=fit, fit_seconds=seconds, table=table,
                              counties=counties)


def run(
    out: str | Path = ".",
    *,
    num_chains: int = 4,
    num_warmup: int = 500,
    num_draws: int = 1000,
    seed: int = 0,
    thin: int = DEFAULT_THIN,
    sampler: str = "gibbs",
    stream: TextIO | None = None,
) -> RadonResults:
    """Fit the four Minnesota radon models, the logistic model of a house above the action level and
    the nested all-states model, print the report and write the figures and CSV files to ``out``.

    Files: ``radon_shrinkage.png``, ``radon_multilevel_summary.csv``, ``radon_loo_compare.csv``
    (Minnesota); ``radon_nested_shrinkage.png`` (:func:`nested_shrinkage_figure`),
    ``radon_nested_summary.csv`` (:func:`nested_table`) and ``radon_nested_estimates.csv``
    (:func:`nested_estimates`) (all states); ``radon_logistic.png``
    (:func:`~mlgibbs.radon_logistic.probability_figure`), ``radon_logistic_summary.csv``
    (:func:`~mlgibbs.radon_logistic.logistic_table`) and ``radon_logistic_counties.csv``
    (:func:`~mlgibbs.radon_logistic.county_probabilities`) (Minnesota, above the action level).

    Parameters
    ----------
    out
        Output folder (created if missing).
    num_chains, num_warmup, num_draws, seed
        Passed to :func:`fit_models`, :func:`~mlgibbs.radon_logistic.fit_logistic` and
        :func:`fit_nested`.
    thin
        Sweeps per kept draw of the Minnesota multilevel model (the logistic and nested models keep
        every sweep).
    sampler
        Name of the Gibbs sampler of the Minnesota Gaussian models (``"gibbs"``, ``"px"``,
        ``"collapsed"``); the logistic and nested models have one sampler, the blocked Gibbs sampler.
    stream
        Where the report goes (default standard output).

    Returns
    -------
    RadonResults
    """
    stream = sys.stdout if stream is None else stream
    start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    data = load_data()
    models = build_models(data)
    _print(stream, "mlgibbs radon: the Minnesota radon example of Gelman & Hill (2007, ch. 12-13)")
    _print(stream, f"data:    {len(data)} houses in {data['county'].nunique()} counties "
                   "(EPA radon survey, Minnesota; mlgibbs.datasets.load_radon())")
    label = {"gibbs": "five-step Gibbs", "px": "parameter-expanded Gibbs",
             "collapsed": "collapsed Gibbs"}.get(sampler, sampler)
    _print(stream, f"sampler: {label} (mlgibbs.sample, sampler={sampler!r}), {num_chains} chains x "
                   f"{num_draws} draws after {num_warmup} warm-up sweeps, seed {seed}")
    _print(stream, f"thin:    {thin} sweeps per kept draw for the multilevel model"
                   + (" (its sigma_alpha mixes slowly under five-step Gibbs)" if sampler == "gibbs" else "")
                   + "; 1 for the others")
    _print(stream, "priors:  Gelman & Hill's defaults: flat on the coefficients (beta, gamma), "
                   "uniform on the scales (sigma_y, sigma_alpha)")

    _heading(stream, "Models")
    fits, seconds = fit_models(models, seed=seed, num_chains=num_chains, num_warmup=num_warmup,
                               num_draws=num_draws, thin=thin, sampler=sampler)
    for name, (formula, what, section) in MODELS.items():
        _print(stream, f"  {name:<17} {formula:<48} G&H {section:<16} fit {seconds[name]:5.1f} s")
        _print(stream, f"  {'':<17} {what}")

    caught: list = []
    _heading(stream, "Multilevel model: posterior summary (az.summary; hdi94: 94% HDI)")
    with _collect_warnings(caught):
        summary = multilevel_summary(fits["multilevel"])
    _print(stream, format_table(summary))
    _, verdict = diagnostics_ok(summary)
    _print(stream, f"diagnostics: {verdict}")

    _heading(stream, "LOO comparison (az.compare, PSIS-LOO; higher elpd is better)")
    with _collect_warnings(caught):
        comparison, pareto_k = loo_compare(fits)
    _print(stream, format_table(comparison, digits=1))
    _print(stream, "elpd_diff: elpd minus that of the best model (0 for it, negative for the others),")
    _print(stream, "dse: its standard error; weight: stacking weight; p: effective number of")
    _print(stream, "parameters; warning: some Pareto k above the threshold (table below).")
    _print(stream)
    _print(stream, "Pareto k by model (k above the threshold: the PSIS estimate of that house's")
    _print(stream, "leave-one-out density is unreliable, typically a county with one or two houses")
    _print(stream, "whose own coefficient moves a lot when the house is left out):")
    _print(stream, format_table(pareto_k, digits=2))

    _heading(stream, "Warnings from ArviZ")
    unique = _unique_warnings(caught)
    if not unique:
        _print(stream, "  (none)")
    for category, message, count in unique:
        _print(stream, f"  {category} (x{count}): {message}")

    _heading(stream, "Shrinkage")
    no_pool = county_estimates(fits["indicators"], models["indicators"], data)
    partial = county_estimates(fits["multilevel"], models["multilevel"], data)
    average = _posterior_mean(fits["complete_pooling"], "beta", predictor="Intercept")
    _print(stream, f"  spread (sd) of the 85 county intercepts: no pooling {no_pool['mean'].std():.3f}, "
                   f"multilevel {partial['mean'].std():.3f}")
    small = no_pool["n"] <= 3
    _print(stream, f"  counties with <= 3 houses ({int(small.sum())}): mean posterior sd "
                   f"{no_pool.loc[small, 'sd'].mean():.3f} without pooling, "
                   f"{partial.loc[small, 'sd'].mean():.3f} multilevel")

    logistic = _logistic_section(stream, data, seed=seed, num_chains=num_chains,
                                 num_warmup=num_warmup, num_draws=num_draws)

    nested = _nested_section(stream, seed=seed, num_chains=num_chains, num_warmup=num_warmup,
                             num_draws=num_draws)

    _heading(stream, "Files")
    files = [out / "radon_shrinkage.png", out / "radon_multilevel_summary.csv",
             out / "radon_loo_compare.csv", out / "radon_nested_shrinkage.png",
             out / "radon_nested_summary.csv", out / "radon_nested_estimates.csv",
             out / "radon_logistic.png", out / "radon_logistic_summary.csv",
             out / "radon_logistic_counties.csv"]
    fig = shrinkage_figure(no_pool, partial, average, seed=seed, dpi=110)
    fig.savefig(files[0])
    summary.to_csv(files[1], index_label="parameter")
    comparison.to_csv(files[2], index_label="model")
    nested_shrinkage_figure(nested.estimates, seed=seed, dpi=110).savefig(files[3])
    nested.table.to_csv(files[4], index_label="parameter")
    nested.estimates.to_csv(files[5], index=False)
    radon_logistic.probability_figure(logistic.fit, logistic.counties, dpi=110).savefig(files[6])
    logistic.table.to_csv(files[7], index_label="parameter")
    logistic.counties.to_csv(files[8], index_label="county")
    for path in files:
        _print(stream, f"  wrote {path}")

    elapsed = time.perf_counter() - start
    _print(stream)
    _print(stream, f"wall time: {elapsed:.1f} s")
    return RadonResults(data=data, models=models, fits=fits, fit_seconds=seconds, summary=summary,
                        comparison=comparison, pareto_k=pareto_k, warnings=unique, thin=thin,
                        files=files, seconds=elapsed, nested=nested, logistic=logistic)

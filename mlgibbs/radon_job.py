"""The Minnesota radon example of Gelman & Hill (2007, ch. 12-13), end to end.

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

    ESS, ranks and counts as integers, R-hat to 4 decimals, stacking weights to 3, other floats to
    ``digits`` decimals.
    """
    formatters = {}
    for col in table.columns:
        series = table[col]
        if pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series):
            continue
        if str(col).startswith("ess") or str(col) in ("rank", "k_above"):
            formatters[col] = lambda v: f"{v:.0f}"
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


# ----------------------------------------------------------------------------------------- job
def _print(stream: TextIO, text: str = "") -> None:
    print(text, file=stream, flush=True)


def _heading(stream: TextIO, title: str) -> None:
    _print(stream)
    _print(stream, f"== {title} " + "=" * max(3, 76 - len(title)))


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
    """Fit the four radon models, print the report and write the figure and CSV files to ``out``.

    Parameters
    ----------
    out
        Output folder (created if missing).
    num_chains, num_warmup, num_draws, seed
        Passed to :func:`fit_models`.
    thin
        Sweeps per kept draw of the multilevel model.
    sampler
        Name of the Gibbs sampler (``"gibbs"``, ``"px"``, ``"collapsed"``).
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

    _heading(stream, "Files")
    files = [out / "radon_shrinkage.png", out / "radon_multilevel_summary.csv",
             out / "radon_loo_compare.csv"]
    fig = shrinkage_figure(no_pool, partial, average, seed=seed, dpi=110)
    fig.savefig(files[0])
    summary.to_csv(files[1], index_label="parameter")
    comparison.to_csv(files[2], index_label="model")
    for path in files:
        _print(stream, f"  wrote {path}")

    elapsed = time.perf_counter() - start
    _print(stream)
    _print(stream, f"wall time: {elapsed:.1f} s")
    return RadonResults(data=data, models=models, fits=fits, fit_seconds=seconds, summary=summary,
                        comparison=comparison, pareto_k=pareto_k, warnings=unique, thin=thin,
                        files=files, seconds=elapsed)

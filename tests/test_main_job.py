"""Tests of the command line ``python -m mlgibbs radon`` and of :mod:`mlgibbs.radon_job`.

What is tested
--------------
* The job, run once in a subprocess exactly as a user would (``sys.executable -m mlgibbs radon
  --out DIR`` with 4 chains x 200 draws to keep it fast): exit status 0, every printed section
  (header with the data size, sampler, thin and priors; the multilevel summary with R-hat and ESS;
  the LOO comparison; the Pareto k table; the ArviZ warnings; the wall time), and the figure and two
  CSV files written to ``--out``.
* The multilevel posterior means in the summary CSV against the published estimates of Gelman &
  Hill (2007, sec. 12.6, the ``lmer`` fit of ``y ~ x + u + (1 | county)``): floor -0.67 (se 0.07),
  intercept 1.47 (se 0.04), log uranium 0.72 (se 0.09), sigma_y 0.76, sigma_alpha 0.16.
* The LOO table (``radon_loo_compare.csv``), the same under ArviZ 0.x and 1.x: the columns of
  :data:`mlgibbs.arviz.COMPARE_COLUMNS`, the multilevel model first, ``elpd_diff`` equal to the
  model's ``elpd`` minus the best one's (0 for the best, negative for the others) to 1e-6, which
  a table rounded to two significant figures (ArviZ 1.x's default) fails.
* The nested all-states model (``log_radon ~ floor + log_uranium + (1 | state/fips)``, 12,083
  houses in 480 counties in 8 states), from the same run: its printed section, the summary table
  ``radon_nested_summary.csv`` (rows: the three standard deviations, the three shares of variance,
  the fixed effects; 90% intervals), the estimates ``radon_nested_estimates.csv`` (8 states and 480
  counties, labelled by county name and state) and the figure ``radon_nested_shrinkage.png``.
  Posterior means against an independent REML fit of the same model (profiled Gaussian likelihood,
  one dense covariance per state, written for this check): sigma_y 0.934, sigma_county 0.355,
  sigma_state 0.53, floor -0.740, log uranium 0.634, intercept 0.724; and the shrinkage the model
  implies: a county with one house keeps about sigma_county^2 / (sigma_county^2 + sigma_y^2) = 0.13
  of its distance from the centre it is pooled toward, a county with 30+ houses most of it.
* The logistic model of a house above the EPA action level (``I(activity > 4) ~ floor +
  log_uranium + (1 | county)``, family ``"bernoulli"``), from the same run: its printed section
  (formula, table, the odds-ratio sentence, the highest and lowest counties), the files
  ``radon_logistic_summary.csv``, ``radon_logistic_counties.csv`` and ``radon_logistic.png``; the
  posterior means against the values of a long run (4 x 1000 draws, seeds 0-2): floor -1.33 (sd
  0.22), log uranium 1.83 (sd 0.27), intercept 0.25 (sd 0.11), sigma_county 0.39 (sd 0.16); the
  county probabilities in (0, 1), rising with uranium and less spread than the observed fractions.
  In process, on a short real fit of :func:`mlgibbs.radon_logistic.fit_logistic`, the county
  probabilities equal the mean of ``mg.predict(...).predictions["mu"]`` for basement rows of those
  counties (the same draws: equal to round-off).
* No ArviZ ``MigrationWarning`` (ArviZ 1.x's warning when a dropped name is used) is printed.
* The argument parser (in process, nothing sampled) and the job's helper functions on hand-made
  draws (no sampling), where the expected answer is known exactly; for the logistic model, with the
  posterior's names made by the same code as :func:`mlgibbs.sample`'s (``posterior_variables``).

Why the tolerances are what they are
------------------------------------
The bands on the posterior means are about three posterior standard deviations wide on each side
of the published values (floor: [-0.90, -0.45] around -0.67, sd 0.07; sigma_y: [0.70, 0.82] around
0.76, sd 0.02; intercept [1.35, 1.60], sd 0.04; uranium [0.45, 1.00], sd 0.09; sigma_alpha
[0.05, 0.35], sd 0.05 and skewed). The Monte Carlo error is negligible next to them: even at an ESS
of 100 the MCSE of a mean is sd/10, and the job's ESS for these parameters is several hundred. The
remaining gap between a flat-prior posterior mean and a REML point estimate is a small fraction of
a posterior sd. So these checks fail only when the job fits the wrong model, mislabels parameters,
or the sampler is wrong, not by chance; five bands at three-plus sd each keep the family-wise
false-alarm rate far below 1%.

The nested model's bands are wide in the same sense. Posterior sds (4 x 1000 draws): sigma_y 0.006,
sigma_county 0.018, floor 0.024, uranium 0.09; each band is more than four sds wide on each side
(sigma_county: (0.28, 0.45), inside the (0.2, 0.6) one might guess), yet a model that drops a
level or mislabels a factor lands outside it: without the state level (``(1 | state:fips)``)
sigma_county absorbs the state differences (0.51) and the uranium coefficient falls to 0.13 (the
state means are not explained by uranium); Minnesota alone has sigma_y 0.76. ``sigma_state`` is estimated from 8
states, so its posterior is wide and skewed (mean 0.65, sd 0.24, REML 0.53): its band (0.3, 1.3)
only guards against a wrong model. The shares of variance are checked to add up to 1 per row of
means and against bands around their means (state 0.29, county 0.09, house 0.62).

The logistic model's bands are about three posterior sds or more on each side of the long-run
means (floor (-2.0, -0.7), uranium (1.0, 2.7), intercept (-0.1, 0.6), sigma_county (0.1, 0.8)); with
4 x 200 draws the MCSE of a mean is under a fifth of a sd. The same model without uranium has
sigma_county 0.88 (sd 0.16), outside its band. R-hat: the job keeps only 4 x 200 draws, a bulk ESS
of 350-600 for the coefficients and 110-150 for sigma_county. For well-mixed chains with 8 split
chains, R-hat - 1 is about (chi2_7 / 7 - 1) / (2 ESS / 8): at ESS 360 above 1.01 for a
coefficient 6% of the time, above 1.02 0.6%; for sigma_county (ESS 125) above 1.08 about 0.1%
(1.03 in the current run). So the checks are 1.02 and 1.08; the job's default run (4 x 1000 draws)
gives under 1.003 for the coefficients and about 1.01 for sigma_county.

The LOO ranking is a property of the data: the multilevel model beats the next best by about
35 elpd with a standard error of the difference near 9 (about 4 SE), while the Monte Carlo error of
an ``elpd`` from 800 draws is well under 1.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mlgibbs as mg
import mlgibbs.arviz as mga
from mlgibbs import radon_job, radon_logistic
from mlgibbs.__main__ import main

REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL_NAMES = {"complete_pooling", "no_pooling", "indicators", "multilevel"}

NESTED_ROWS = list(radon_job.NESTED_ROWS)
LOGISTIC_ROWS = list(radon_logistic.LOGISTIC_ROWS)
LOGISTIC_HEADING = "== Above the action level: logistic multilevel model"

# logistic model: parameter -> (lower, upper) bound on the posterior mean (module docstring)
LOGISTIC_BANDS = {
    "beta[floor]": (-2.0, -0.7),
    "odds_ratio[floor]": (0.13, 0.5),
    "gamma_county[Intercept]": (-0.1, 0.6),
    "gamma_county[log_uranium]": (1.0, 2.7),
    "sigma_county": (0.1, 0.8),
}

# nested all-states model: parameter -> (lower, upper) bound on the posterior mean (module docstring)
NESTED_BANDS = {
    "sigma_y": (0.88, 0.99),
    "sigma_county": (0.28, 0.45),
    "sigma_state": (0.3, 1.3),
    "beta[floor]": (-0.9, -0.5),
    "gamma_state:fips[log_uranium]": (0.35, 0.95),
    "gamma_state[Intercept]": (0.3, 1.2),
    "share_state": (0.08, 0.6),
    "share_county": (0.04, 0.2),
    "share_house": (0.35, 0.85),
}

# parameter -> (published value, lower bound, upper bound)
PUBLISHED = {
    "beta[floor]": (-0.67, -0.90, -0.45),
    "gamma[Intercept]": (1.47, 1.35, 1.60),
    "gamma[log_uranium]": (0.72, 0.45, 1.00),
    "sigma_y": (0.76, 0.70, 0.82),
    "sigma_alpha": (0.16, 0.05, 0.35),
}


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """Run ``python -m mlgibbs radon`` once in a subprocess; return (completed process, out dir)."""
    out = tmp_path_factory.mktemp("radon_job") / "results"  # not created yet: the job creates it
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    env["MPLBACKEND"] = "Agg"
    proc = subprocess.run(
        [sys.executable, "-m", "mlgibbs", "radon", "--out", str(out), "--num-chains", "4",
         "--num-warmup", "200", "--num-draws", "200", "--seed", "0"],
        cwd=out.parent, env=env, capture_output=True, text=True, timeout=600,
    )
    return proc, out


def test_job_exits_cleanly(job):
    proc, _ = job
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"


def test_job_prints_every_section(job):
    proc, _ = job
    text = proc.stdout
    for expected in [
        "919 houses in 85 counties",
        "4 chains x 200 draws after 200 warm-up sweeps, seed 0",
        f"thin:    {radon_job.DEFAULT_THIN} sweeps per kept draw",
        "flat on the coefficients",
        "uniform on the scales",
        "== Models",
        "== Multilevel model: posterior summary",
        "diagnostics: max R-hat",
        "== LOO comparison",
        "Pareto k by model",
        "== Warnings from ArviZ",
        "== Shrinkage",
        LOGISTIC_HEADING,
        "== All states: houses in counties in states",
        "12083 houses in 480 counties (state:fips) in 8 states",
        "== Files",
        "wall time:",
    ]:
        assert expected in text, f"missing {expected!r} in:\n{text}"
    summary = text.split("== Multilevel model")[1].split("== LOO")[0]
    for column in ("mean", "sd", "ess_bulk", "ess_tail", "r_hat"):
        assert column in summary
    for parameter in PUBLISHED:
        assert parameter in summary
    comparison = text.split("== LOO comparison")[1].split("== Warnings")[0]
    for name in MODEL_NAMES:
        assert name in comparison
    for column in ("elpd", "elpd_diff", "dse", "weight", "negative for the others"):
        assert column in comparison
    assert "elpd_loo" not in comparison
    nested = text.split("== All states")[1].split("== Files")[0]
    for expected in list(NESTED_ROWS) + ["q5", "q95", "r_hat", "diagnostics: max R-hat",
                                         "Minnesota", "Pennsylvania", "between states"]:
        assert expected in nested, f"missing {expected!r} in:\n{nested}"


def test_job_prints_no_arviz_migration_warning(job):
    proc, _ = job
    for stream in (proc.stdout, proc.stderr):
        assert "MigrationWarning" not in stream and "InferenceData is no longer" not in stream


def test_job_shows_pareto_k_warnings(job):
    """Counties with a single house make PSIS fail for the no-pooling model: its leave-one-out
    posterior for that county is the (flat) prior. The warning must reach the output."""
    proc, _ = job
    warnings_section = proc.stdout.split("== Warnings from ArviZ")[1].split("== Shrinkage")[0]
    assert "(none)" not in warnings_section
    assert "Pareto" in warnings_section


def test_job_writes_figure_and_csv(job):
    _, out = job
    png = out / "radon_shrinkage.png"
    assert png.is_file() and png.stat().st_size > 10_000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("radon_multilevel_summary.csv", "radon_loo_compare.csv",
                 "radon_nested_summary.csv", "radon_nested_estimates.csv"):
        path = out / name
        assert path.is_file() and path.stat().st_size > 0
        assert len(pd.read_csv(path)) > 0
    png = out / "radon_nested_shrinkage.png"
    assert png.is_file() and png.stat().st_size > 10_000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_multilevel_summary_matches_published_values(job):
    _, out = job
    summary = pd.read_csv(out / "radon_multilevel_summary.csv", index_col="parameter")
    assert set(PUBLISHED) <= set(summary.index)
    for parameter, (published, low, high) in PUBLISHED.items():
        mean = summary.loc[parameter, "mean"]
        assert low <= mean <= high, f"{parameter}: posterior mean {mean:.3f}, published {published}"
    assert np.all(np.isfinite(summary["r_hat"])) and np.all(summary["ess_bulk"] > 0)


def test_loo_ranks_multilevel_first(job):
    _, out = job
    comparison = pd.read_csv(out / "radon_loo_compare.csv", index_col="model")
    assert tuple(comparison.columns) == mga.COMPARE_COLUMNS
    assert set(comparison.index) == MODEL_NAMES
    assert comparison.index[0] == "multilevel"
    assert list(comparison["rank"]) == [0, 1, 2, 3]
    elpd_diff = comparison["elpd_diff"].to_numpy()
    assert elpd_diff[0] == 0 and np.all(elpd_diff[1:] < 0)
    best = comparison["elpd"].max()
    np.testing.assert_allclose(elpd_diff, comparison["elpd"] - best, rtol=0, atol=1e-6)
    assert comparison["weight"].sum() == pytest.approx(1)


# ------------------------------------------------------------------- nested all-states model
def test_nested_summary_has_the_right_rows_and_plausible_values(job):
    _, out = job
    table = pd.read_csv(out / "radon_nested_summary.csv", index_col="parameter")
    assert list(table.index) == list(NESTED_ROWS)
    for column in ("mean", "sd", "q5", "q95", "ess_bulk", "ess_tail", "r_hat", "what"):
        assert column in table.columns
    for parameter, (low, high) in NESTED_BANDS.items():
        mean = table.loc[parameter, "mean"]
        assert low < mean < high, f"{parameter}: posterior mean {mean:.3f} not in ({low}, {high})"
    assert np.all(table["q5"] < table["mean"]) and np.all(table["mean"] < table["q95"])
    assert np.all(table["sd"] > 0)
    shares = table.loc[["share_state", "share_county", "share_house"]]
    assert shares["mean"].sum() == pytest.approx(1, abs=1e-9)
    assert np.all(shares["q5"] > 0) and np.all(shares["q95"] < 1)
    # the 90% interval of sigma_state is wide (8 states) and skewed to the right
    sigma_state = table.loc["sigma_state"]
    assert sigma_state["q95"] - sigma_state["mean"] > sigma_state["mean"] - sigma_state["q5"]
    assert np.all(np.isfinite(table["r_hat"])) and np.all(table["r_hat"] < 1.05)
    assert np.all(table["ess_bulk"] > 100)


def test_nested_estimates_are_labelled_and_shrunk(job):
    _, out = job
    est = pd.read_csv(out / "radon_nested_estimates.csv")
    assert list(est.columns) == ["level", "state", "fips", "name", "houses", "counties",
                                 "log_uranium", "raw_mean", "mean", "sd", "q5", "q95",
                                 "pooled_toward"]
    states = est[est["level"] == "state"].set_index("state")
    counties = est[est["level"] == "county"]
    assert len(est) == 8 + 480 and len(states) == 8 and len(counties) == 480
    assert sorted(states.index) == ["AZ", "IN", "MA", "MN", "MO", "ND", "PA", "R5"]
    assert states.loc["MN", "name"] == "Minnesota" and states.loc["PA", "name"] == "Pennsylvania"
    assert states["houses"].sum() == counties["houses"].sum() == 12083
    assert states["counties"].sum() == 480 and states.loc["MN", "counties"] == 85
    assert counties["fips"].notna().all() and counties["name"].notna().all()
    by_key = counties.set_index(["state", "fips"])
    assert by_key.loc[("MN", 27137), "name"] == "ST LOUIS"
    assert by_key.loc[("MN", 27137), "houses"] == 116
    assert by_key.loc[("R5", 27137), "name"] == "BOIS FORTE / FOND DU LAC"  # two reservations
    assert by_key.loc[("AZ", 4001), "name"] == "APACHE"
    # Minnesota's state intercept is the Minnesota model's intercept (1.47, se 0.04) to within
    # a few sds; states have 10 or more counties each, so they are pooled very little
    assert 1.3 < states.loc["MN", "mean"] < 1.65
    assert np.all((states["mean"] - states["raw_mean"]).abs() < 0.1)
    # counties: the spread shrinks, small counties are pulled most of the way, large ones little
    assert counties["mean"].std() < 0.85 * counties["raw_mean"].std()
    kept = ((counties["mean"] - counties["pooled_toward"]).abs()
            / (counties["raw_mean"] - counties["pooled_toward"]).abs())
    one_house = counties["houses"] == 1
    assert one_house.sum() == 17
    assert kept[one_house].median() < 0.3
    assert kept[counties["houses"] > 30].median() > 0.7
    assert np.all((counties["q5"] < counties["mean"]) & (counties["mean"] < counties["q95"]))


# --------------------------------------------------------------- logistic model, from the job
def test_job_prints_the_logistic_section(job):
    proc, out = job
    text = proc.stdout
    assert text.index("== Shrinkage") < text.index(LOGISTIC_HEADING) < text.index("== All states")
    section = text.split(LOGISTIC_HEADING)[1].split("== All states")[0]
    for expected in [radon_logistic.LOGISTIC_FORMULA, "family 'bernoulli'", "919 houses in 85 counties",
                     "406 (44%) above the EPA action level of 4 pCi/L", "Polya-Gamma",
                     "4 chains x 200 draws after 200 warm-up sweeps", "fit ", "q5", "q95", "r_hat",
                     "diagnostics: max R-hat", "times those of a basement one",
                     "a basement measurement has about", "county log uranium multiplies the odds",
                     "three highest and the three lowest", *LOGISTIC_ROWS]:
        assert expected in section, f"missing {expected!r} in:\n{section}"
    counties = pd.read_csv(out / "radon_logistic_counties.csv", index_col="county")
    ranked = counties.sort_values("mean")
    for county in list(ranked.index[:3]) + list(ranked.index[-3:]):
        assert county in section
    assert f"to {ranked['mean'].iloc[-1]:.2f} in {ranked.index[-1]}" in section


def test_job_writes_the_logistic_files(job):
    _, out = job
    png = out / "radon_logistic.png"
    assert png.is_file() and png.stat().st_size > 10_000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("radon_logistic_summary.csv", "radon_logistic_counties.csv"):
        assert (out / name).is_file() and len(pd.read_csv(out / name)) > 0
    files = job[0].stdout.split("== Files")[1]
    for name in ("radon_logistic.png", "radon_logistic_summary.csv", "radon_logistic_counties.csv"):
        assert f"{name}\n" in files


def test_logistic_summary_has_plausible_values(job):
    _, out = job
    table = pd.read_csv(out / "radon_logistic_summary.csv", index_col="parameter")
    assert list(table.index) == LOGISTIC_ROWS
    for column in ("mean", "sd", "q5", "q95", "ess_bulk", "ess_tail", "r_hat", "what"):
        assert column in table.columns
    for parameter, (low, high) in LOGISTIC_BANDS.items():
        mean = table.loc[parameter, "mean"]
        assert low < mean < high, f"{parameter}: posterior mean {mean:.3f} not in ({low}, {high})"
    # clearly negative / positive: the whole 90% interval on one side
    assert table.loc["beta[floor]", "q95"] < 0 and table.loc["odds_ratio[floor]", "q95"] < 1
    assert table.loc["gamma_county[log_uranium]", "q5"] > 0
    assert np.all(table["q5"] < table["mean"]) and np.all(table["mean"] < table["q95"])
    assert np.all(table["sd"] > 0)
    # the odds ratio is exp(beta) per draw: its 90% interval is the exponential of beta's
    floor = table.loc["beta[floor]"]
    np.testing.assert_allclose(table.loc["odds_ratio[floor]", ["q5", "q95"]].to_numpy(float),
                               np.exp(floor[["q5", "q95"]].to_numpy(float)), rtol=0.02)
    assert table.loc["odds_ratio[floor]", "mean"] > np.exp(floor["mean"])  # Jensen
    # R-hat thresholds for 4 x 200 draws (module docstring)
    coefficients = table.loc[["beta[floor]", "gamma_county[Intercept]", "gamma_county[log_uranium]"]]
    assert np.all(coefficients["r_hat"] < 1.02), coefficients["r_hat"]
    assert table.loc["sigma_county", "r_hat"] < 1.08
    assert np.all(table["ess_bulk"] > 80)


def test_logistic_county_probabilities_are_sensible(job, radon_data):
    _, out = job
    counties = pd.read_csv(out / "radon_logistic_counties.csv", index_col="county")
    assert list(counties.columns) == ["houses", "above", "observed", "log_uranium", "mean", "sd",
                                      "q5", "q95"]
    assert len(counties) == 85 and counties["houses"].sum() == 919
    assert counties["above"].sum() == (radon_data["activity"] > 4).sum() == 406
    assert counties.loc["HENNEPIN", "houses"] == 105
    np.testing.assert_allclose(counties["observed"], counties["above"] / counties["houses"])
    assert np.all((0 < counties["q5"]) & (counties["q5"] < counties["mean"])
                  & (counties["mean"] < counties["q95"]) & (counties["q95"] < 1))
    # ordered with uranium on average: county intercepts are drawn around the uranium regression
    assert counties["mean"].corr(counties["log_uranium"], method="spearman") > 0.7
    by_third = counties.groupby(pd.qcut(counties["log_uranium"], 3, labels=False))["mean"].mean()
    assert by_third.is_monotonic_increasing and by_third[2] - by_third[0] > 0.2
    # partial pooling: far less spread than the raw fractions (0 or 1 in many small counties)
    assert counties["mean"].std() < 0.6 * counties["observed"].std()


# ------------------------------------------------------------------------ parser, in process
def test_help_lists_the_radon_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "radon" in capsys.readouterr().out


def test_radon_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["radon", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--out", "--num-chains", "--num-warmup", "--num-draws", "--seed", "--thin"):
        assert option in text


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "radon" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["radon", "--num-draws", "0"], ["radon", "--num-chains", "x"],
                                  ["radon", "--thin", "0"], ["unknown"]])
def test_bad_arguments_are_rejected(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "error" in capsys.readouterr().err


# --------------------------------------------------------------- job functions, known answers
@pytest.fixture(scope="module")
def radon_data():
    return radon_job.load_data()


def _draws(num_chains=2, num_draws=3, *, alpha=None, beta=None, gamma=None, sigma_alpha=None):
    sigma_y = np.full((num_chains, num_draws), 0.8)
    return mg.GibbsState(alpha=alpha, beta=beta, gamma=gamma, sigma_y=sigma_y,
                         sigma_alpha=sigma_alpha)


def test_county_estimates_of_the_indicator_model(radon_data):
    """The indicator model's C(county)[...] coefficients are read by county name, floor skipped."""
    model = mg.Model.from_formula(radon_job.MODELS["indicators"][0], radon_data)
    p = len(model.predictors)
    rng = np.random.default_rng(0)
    beta = rng.normal(size=(2, 3, p))
    fit = mg.to_inference_data(model, _draws(beta=beta))
    est = radon_job.county_estimates(fit, model, radon_data)
    assert len(est) == 85 and est["n"].sum() == 919
    for county in ("AITKIN", "HENNEPIN", "LAC QUI PARLE"):
        col = model.predictors.index(f"C(county)[{county}]")
        np.testing.assert_allclose(est.loc[county, "mean"], beta[..., col].mean(), rtol=1e-6)
        np.testing.assert_allclose(est.loc[county, "sd"], beta[..., col].std(ddof=1), rtol=1e-6)
        assert est.loc[county, "n"] == (radon_data["county"] == county).sum()


def test_county_estimates_of_the_multilevel_model(radon_data):
    model = mg.Model.from_formula(radon_job.MODELS["multilevel"][0], radon_data)
    rng = np.random.default_rng(1)
    alpha = rng.normal(size=(2, 3, 85))
    draws = _draws(alpha=alpha, beta=rng.normal(size=(2, 3, 1)), gamma=rng.normal(size=(2, 3, 2)),
                   sigma_alpha=np.full((2, 3), 0.2))
    fit = mg.to_inference_data(model, draws)
    est = radon_job.county_estimates(fit, model, radon_data)
    j = model.group_labels.index("HENNEPIN")
    np.testing.assert_allclose(est.loc["HENNEPIN", "mean"], alpha[..., j].mean(), rtol=1e-6)
    assert est.loc["HENNEPIN", "n"] == 105

    fig = radon_job.shrinkage_figure(est, est, 1.3, dpi=50)
    left, right = fig.axes[:2]
    assert left.get_ylim() == right.get_ylim()
    assert left.get_xscale() == right.get_xscale() == "log"
    assert left.get_xlabel() and left.get_ylabel() and left.get_title() and right.get_title()
    assert radon_job.uranium_figure(fit, radon_data, dpi=50).axes
    assert len(radon_job.trace_rank_figure(fit, dpi=50).axes) == 2


def test_county_estimates_rejects_a_fit_without_counties(radon_data):
    model = mg.Model.from_formula(radon_job.MODELS["complete_pooling"][0], radon_data)
    fit = mg.to_inference_data(model, _draws(beta=np.zeros((2, 3, 2))))
    with pytest.raises(ValueError, match="C\\(county\\)"):
        radon_job.county_estimates(fit, model, radon_data)


def test_diagnostics_verdict():
    healthy = pd.DataFrame({"ess_bulk": [900.0, 500.0], "ess_tail": [800.0, 450.0],
                            "r_hat": [1.001, 1.004]})
    ok, verdict = radon_job.diagnostics_ok(healthy)
    assert ok and "OK" in verdict
    slow = healthy.assign(ess_bulk=[900.0, 80.0])
    assert not radon_job.diagnostics_ok(slow)[0]
    unconverged = healthy.assign(r_hat=[1.001, 1.05])
    assert not radon_job.diagnostics_ok(unconverged)[0]
    missing = pd.DataFrame({"mean": [0.0]})
    assert not radon_job.diagnostics_ok(missing)[0]


def test_format_table_shows_every_column():
    table = pd.DataFrame({f"col{k}": [1.23456] for k in range(30)} | {"ess_bulk": [812.7]},
                         index=["sigma_alpha"])
    text = radon_job.format_table(table)
    assert "col29" in text and "..." not in text
    assert "813" in text and "1.235" in text


# ------------------------------------------------------ nested model functions, known answers
def _nested_fit(rng, num_chains=2, num_draws=50):
    """A hand-made posterior with the nested model's names (mlgibbs.models.mixed) for a tiny data
    set: states A (counties 1, 2) and B (county 1, the same FIPS code as A's county 1)."""
    import xarray as xr

    shape = (num_chains, num_draws)
    cd = ("chain", "draw")
    posterior = xr.Dataset(
        {
            "beta": (cd + ("predictor",), rng.normal(-0.5, 0.1, shape + (1,))),
            "alpha_state": (cd + ("state", "state_coef"), rng.normal(size=shape + (2, 1))),
            "gamma_state": (cd + ("state_predictor",), rng.normal(size=shape + (1,))),
            "sigma_state": (cd + ("state_coef",), rng.uniform(0.1, 2.0, shape + (1,))),
            "alpha_state:fips": (cd + ("state:fips", "state:fips_coef"),
                                 rng.normal(size=shape + (3, 1))),
            "gamma_state:fips": (cd + ("state:fips_predictor",), rng.normal(0.7, 0.1, shape + (1,))),
            "sigma_state:fips": (cd + ("state:fips_coef",), rng.uniform(0.2, 0.5, shape + (1,))),
            "sigma_y": (cd, rng.uniform(0.5, 1.0, shape)),
        },
        coords={"chain": np.arange(num_chains), "draw": np.arange(num_draws),
                "predictor": ["floor"], "state": ["A", "B"], "state_coef": ["Intercept"],
                "state_predictor": ["Intercept"], "state:fips": ["A:1", "A:2", "B:1"],
                "state:fips_coef": ["Intercept"], "state:fips_predictor": ["log_uranium"]},
    )
    return mga.make_inference_data({"posterior": posterior})


_NESTED_DATA = pd.DataFrame({
    "state": ["A", "A", "A", "A", "B", "B"],
    "county": ["ONE", "ONE", "TWO", "TWO", "RES X", "RES Y"],
    "fips": [1, 1, 2, 2, 1, 1],
    "floor": [0.0, 1.0, 0.0, 0.0, 1.0, 0.0],
    "log_radon": [1.0, 0.5, 2.0, 1.5, 0.2, 0.8],
    "log_uranium": [0.1, 0.1, -0.3, -0.3, 0.4, 0.4],
})


def test_nested_table_shares_are_per_draw():
    fit = _nested_fit(np.random.default_rng(3))
    table = radon_job.nested_table(fit)
    assert list(table.index) == NESTED_ROWS
    post = fit.posterior
    s_state = np.asarray(post["sigma_state"].values)[..., 0].ravel()
    s_county = np.asarray(post["sigma_state:fips"].values)[..., 0].ravel()
    s_y = np.asarray(post["sigma_y"].values).ravel()
    total = s_state**2 + s_county**2 + s_y**2
    share = s_state**2 / total
    np.testing.assert_allclose(table.loc["share_state", "mean"], share.mean(), rtol=1e-12)
    # per draw, then summarised: not the ratio of the mean squares
    ratio_of_means = (s_state**2).mean() / total.mean()
    assert abs(share.mean() - ratio_of_means) > 1e-3
    np.testing.assert_allclose(table.loc["share_house", "q95"], np.quantile(s_y**2 / total, 0.95))
    np.testing.assert_allclose(table.loc["sigma_county", "q5"], np.quantile(s_county, 0.05))
    np.testing.assert_allclose(table.loc["sigma_county", "sd"], s_county.std(ddof=1))
    floor = np.asarray(post["beta"].values)[..., 0].ravel()
    np.testing.assert_allclose(table.loc["beta[floor]", "mean"], floor.mean())
    assert table.loc[["share_state", "share_county", "share_house"], "mean"].sum() == pytest.approx(1)
    assert np.all(np.isfinite(table[["ess_bulk", "ess_tail", "r_hat"]]))


def test_nested_estimates_of_hand_made_draws():
    fit = _nested_fit(np.random.default_rng(4))
    post = fit.posterior
    est = radon_job.nested_estimates(fit, _NESTED_DATA)
    assert list(est["level"]) == ["state", "state", "county", "county", "county"]
    counties = est[est["level"] == "county"].set_index(["state", "fips"])
    states = est[est["level"] == "state"].set_index("state")
    assert counties.loc[("B", 1), "name"] == "RES X / RES Y"
    assert counties.loc[("A", 2), "name"] == "TWO"
    assert list(counties["houses"]) == [2, 2, 2] and list(states["counties"]) == [2, 1]
    a_state = np.asarray(post["alpha_state"].values)[..., 0].reshape(-1, 2)
    a_county = np.asarray(post["alpha_state:fips"].values)[..., 0].reshape(-1, 3)
    np.testing.assert_allclose(counties.loc[("B", 1), "mean"], (a_state[:, 1] + a_county[:, 2]).mean())
    np.testing.assert_allclose(counties.loc[("A", 2), "sd"],
                               (a_state[:, 0] + a_county[:, 1]).std(ddof=1))
    np.testing.assert_allclose(states.loc["A", "mean"], a_state[:, 0].mean())
    b = float(np.asarray(post["beta"].values).mean())
    g = float(np.asarray(post["gamma_state:fips"].values).mean())
    np.testing.assert_allclose(counties.loc[("A", 1), "raw_mean"], (1.0 + 0.5 - b) / 2)
    np.testing.assert_allclose(counties.loc[("A", 1), "pooled_toward"],
                               (a_state[:, 0] + g * 0.1).mean())
    # a state's own estimate: its counties' adjusted means, precision-weighted
    var_c = float((np.asarray(post["sigma_state:fips"].values) ** 2).mean())
    var_y = float((np.asarray(post["sigma_y"].values) ** 2).mean())
    assert states.loc["B", "raw_mean"] == pytest.approx((0.2 - b + 0.8) / 2 - g * 0.4)
    adjusted = np.array([(1.5 - b) / 2 - g * 0.1, 1.75 + g * 0.3])
    assert states.loc["A", "raw_mean"] == pytest.approx(adjusted.mean())  # equal sizes, weights
    # with unequal sizes the weights 1 / (sigma_county^2 + sigma_y^2 / houses) matter
    data = pd.concat([_NESTED_DATA, _NESTED_DATA.iloc[[2]].assign(log_radon=3.0)], ignore_index=True)
    est = radon_job.nested_estimates(fit, data)
    states = est[est["level"] == "state"].set_index("state")
    adjusted[1] = (2.0 + 1.5 + 3.0) / 3 + g * 0.3
    weights = 1 / (var_c + var_y / np.array([2, 3]))
    assert states.loc["A", "raw_mean"] == pytest.approx(np.average(adjusted, weights=weights))
    assert states.loc["A", "houses"] == 5
    np.testing.assert_allclose(states["pooled_toward"],
                               float(np.asarray(post["gamma_state"].values).mean()))

    fig = radon_job.nested_shrinkage_figure(est, dpi=50)
    left, right = fig.axes[:2]
    assert left.get_xscale() == right.get_xscale() == "log"
    assert left.get_title().startswith("(a) 3 counties") and right.get_title().startswith("(b) 2 states")


# ---------------------------------------------------- logistic model functions, known answers
@pytest.fixture(scope="module")
def logistic_model(radon_data):
    return mg.Model.from_formula(radon_logistic.LOGISTIC_FORMULA, radon_data, family="bernoulli")


def _logistic_fit(model, rng, num_chains=2, num_draws=40):
    """Hand-made draws of the logistic model, named by the code that names mlgibbs.sample's output."""
    from mlgibbs.run_mixed import posterior_variables, to_inference_data_mixed

    shape = (num_chains, num_draws)
    num_counties = len(model.factors[0].labels)
    sigma = rng.uniform(0.2, 0.6, shape)
    user = {"beta": rng.normal(-1.3, 0.3, shape + (1,)),
            "alpha_county": rng.normal(0.3, 0.8, shape + (num_counties, 1)),
            "gamma_county": np.stack([rng.normal(0.25, 0.1, shape), rng.normal(1.8, 0.3, shape)], -1),
            "cov_county": (sigma**2)[..., None, None]}
    return to_inference_data_mixed(model, posterior_variables(model, user)), user


def _expit(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_logistic_table_of_hand_made_draws(logistic_model):
    fit, user = _logistic_fit(logistic_model, np.random.default_rng(5))
    table = radon_logistic.logistic_table(fit)
    assert list(table.index) == LOGISTIC_ROWS
    beta = user["beta"][..., 0].ravel()
    np.testing.assert_allclose(table.loc["beta[floor]", ["mean", "sd", "q5", "q95"]].to_numpy(float),
                               [beta.mean(), beta.std(ddof=1), np.quantile(beta, 0.05),
                                np.quantile(beta, 0.95)], rtol=1e-12)
    ratio = table.loc["odds_ratio[floor]"]
    np.testing.assert_allclose(ratio["mean"], np.exp(beta).mean(), rtol=1e-12)
    assert abs(ratio["mean"] - np.exp(beta.mean())) > 0.005  # per draw, then summarised
    np.testing.assert_allclose(ratio["q95"], np.quantile(np.exp(beta), 0.95), rtol=1e-12)
    np.testing.assert_allclose(ratio["ess_bulk"], table.loc["beta[floor]", "ess_bulk"], rtol=1e-9)
    gamma = user["gamma_county"].reshape(-1, 2)
    np.testing.assert_allclose(table.loc["gamma_county[Intercept]", "mean"], gamma[:, 0].mean())
    np.testing.assert_allclose(table.loc["gamma_county[log_uranium]", "sd"], gamma[:, 1].std(ddof=1))
    sigma = np.sqrt(user["cov_county"]).ravel()
    np.testing.assert_allclose(table.loc["sigma_county", "q5"], np.quantile(sigma, 0.05))
    assert np.all(np.isfinite(table[["ess_bulk", "ess_tail", "r_hat"]]))
    assert list(table["what"]) == list(radon_logistic.LOGISTIC_ROWS.values())


def test_county_probabilities_of_hand_made_draws(logistic_model, radon_data):
    model = logistic_model
    rng = np.random.default_rng(6)
    fit, user = _logistic_fit(model, rng)
    labels = [str(v) for v in model.factors[0].labels]
    alpha = user["alpha_county"][..., 0].reshape(-1, len(labels))
    beta = user["beta"][..., 0].ravel()
    est = radon_logistic.county_probabilities(fit, model, radon_data)
    assert list(est.index) == labels
    for county in ("AITKIN", "HENNEPIN", "LAC QUI PARLE"):
        j = labels.index(county)
        p = _expit(alpha[:, j])
        np.testing.assert_allclose(est.loc[county, ["mean", "sd", "q5", "q95"]].to_numpy(float),
                                   [p.mean(), p.std(ddof=1), np.quantile(p, 0.05),
                                    np.quantile(p, 0.95)], rtol=1e-12)
        rows = radon_data[radon_data["county"] == county]
        assert est.loc[county, "houses"] == len(rows)
        assert est.loc[county, "above"] == (rows["activity"] > 4).sum()
        assert est.loc[county, "log_uranium"] == rows["log_uranium"].iloc[0]
    assert est.loc["HENNEPIN", "houses"] == 105
    # first floor: alpha + beta
    upstairs = radon_logistic.county_probabilities(fit, model, radon_data, floor=1)
    j = labels.index("HENNEPIN")
    np.testing.assert_allclose(upstairs.loc["HENNEPIN", "mean"], _expit(alpha[:, j] + beta).mean(),
                               rtol=1e-12)
    assert np.all(upstairs["mean"] < est["mean"])  # beta < 0 in every draw here

    # a county whose intercept is log 3 in every draw: probability 3/4 exactly
    user["alpha_county"][..., j, 0] = np.log(3.0)
    from mlgibbs.run_mixed import posterior_variables, to_inference_data_mixed

    fixed = to_inference_data_mixed(model, posterior_variables(model, user))
    row = radon_logistic.county_probabilities(fixed, model, radon_data).loc["HENNEPIN"]
    np.testing.assert_allclose(row[["mean", "q5", "q95"]].to_numpy(float), 0.75, rtol=1e-12)
    assert row["sd"] < 1e-12


def _predicted_mu(fit, model, data, counties, floor):
    """Mean over the draws of mg.predict's probability for one row per county at ``floor``."""
    rows = data[data["county"].isin(counties)].drop_duplicates("county").set_index("county")
    newdata = rows.loc[list(counties), ["log_uranium"]].reset_index().assign(floor=float(floor))
    mu = mg.predict(fit, model, newdata, new_levels="error", observations=False).predictions["mu"]
    return np.asarray(mu.values).reshape(-1, len(counties)).mean(axis=0)


COUNTIES = ["AITKIN", "HENNEPIN", "LAC QUI PARLE", "YELLOW MEDICINE"]


def test_county_probabilities_equal_predict_on_hand_made_draws(logistic_model, radon_data):
    fit, _ = _logistic_fit(logistic_model, np.random.default_rng(7))
    for floor in (0, 1):
        est = radon_logistic.county_probabilities(fit, logistic_model, radon_data, floor=floor)
        np.testing.assert_allclose(est.loc[COUNTIES, "mean"],
                                   _predicted_mu(fit, logistic_model, radon_data, COUNTIES, floor),
                                   rtol=1e-12, atol=0)


@pytest.fixture(scope="module")
def short_logistic_fit(radon_data):
    """A short real fit (2 chains x 30 draws): the layout of mg.sample's output, not its accuracy."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mg.ConvergenceWarning)
        return radon_logistic.fit_logistic(radon_data, seed=0, num_chains=2, num_warmup=30,
                                           num_draws=30)


def test_county_probabilities_equal_predict_on_sampled_draws(short_logistic_fit, radon_data):
    model, fit, seconds = short_logistic_fit
    assert seconds > 0 and model.family.name == "bernoulli"
    est = radon_logistic.county_probabilities(fit, model, radon_data)
    assert len(est) == 85
    np.testing.assert_allclose(est.loc[COUNTIES, "mean"],
                               _predicted_mu(fit, model, radon_data, COUNTIES, 0), rtol=1e-12, atol=0)
    assert list(radon_logistic.logistic_table(fit).index) == LOGISTIC_ROWS


def test_county_probabilities_rejects_a_gaussian_fit(radon_data):
    model = mg.Model.from_formula(radon_job.MODELS["multilevel"][0], radon_data)
    rng = np.random.default_rng(8)
    draws = _draws(alpha=rng.normal(size=(2, 3, 85)), beta=rng.normal(size=(2, 3, 1)),
                   gamma=rng.normal(size=(2, 3, 2)), sigma_alpha=np.full((2, 3), 0.2))
    with pytest.raises(ValueError, match="logit-link"):
        radon_logistic.county_probabilities(mg.to_inference_data(model, draws), model, radon_data)


def test_probability_figure(logistic_model, radon_data):
    fit, _ = _logistic_fit(logistic_model, np.random.default_rng(9))
    est = radon_logistic.county_probabilities(fit, logistic_model, radon_data)
    fig = radon_logistic.probability_figure(fit, est, dpi=50)
    (ax,) = fig.axes
    low, high = ax.get_ylim()
    assert -0.1 < low < 0 and 1 < high < 1.1
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
    assert len(ax.get_legend().get_texts()) == 3
    curve = ax.get_lines()[0].get_ydata()  # the population curve rises with uranium
    assert np.all(np.diff(curve) > 0) and np.all((0 < curve) & (curve < 1))

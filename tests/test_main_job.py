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
* No ArviZ ``MigrationWarning`` (ArviZ 1.x's warning when a dropped name is used) is printed.
* The argument parser (in process, nothing sampled) and the job's helper functions on hand-made
  draws (no sampling), where the expected answer is known exactly.

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
from mlgibbs import radon_job
from mlgibbs.__main__ import main

REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL_NAMES = {"complete_pooling", "no_pooling", "indicators", "multilevel"}

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
    for name in ("radon_multilevel_summary.csv", "radon_loo_compare.csv"):
        path = out / name
        assert path.is_file() and path.stat().st_size > 0
        assert len(pd.read_csv(path)) > 0


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

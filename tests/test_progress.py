"""Long runs: the progress bar, and runs in parts that continue the chains without compiling again.

* ``progress_bar=True`` shows the sweeps done (all of them at the end) and changes no draw;
* a continuation (``initial_state=idata, num_warmup=0``) with the first part's ``num_draws`` reuses its
  compiled sampling program (the chains' starts are drawn by a program of their own), for the seed model
  and for a multilevel model;
* it goes on in the key's stream: ``num_sweeps`` counts the sweeps of every part, and the continuation's
  sweep ``d`` is the chain's sweep ``num_sweeps + d`` (its draws are the kernel's at those keys, checked
  in ``tests/test_run.py::test_continuation_starts_from_the_last_draw``).
"""

from __future__ import annotations

import numpy as np

import mlgibbs as mg
from mlgibbs import run, run_mixed

QUIET = dict(num_chains=2, check_convergence=False)


def radon_model():
    return mg.Model.from_formula("log_radon ~ floor + log_uranium + (1 | county)", mg.datasets.load_radon())


def test_the_progress_bar_counts_every_sweep_and_changes_no_draw(capsys):
    model = radon_model()
    quiet = mg.sample(3, model, num_warmup=30, num_draws=20, thin=2, **QUIET)
    shown = mg.sample(3, model, num_warmup=30, num_draws=20, thin=2, progress_bar=True, **QUIET)
    err = capsys.readouterr().err
    assert "70/70" in err and "sweep" in err, err           # 30 + 20 x 2 sweeps, all reported
    assert "draws 20 x 2 chains" in err, err
    for name in ("alpha", "beta", "sigma_y", "sigma_alpha"):
        np.testing.assert_array_equal(shown.posterior[name].values, quiet.posterior[name].values, err_msg=name)


def test_the_progress_bar_of_a_multilevel_model(capsys):
    model = mg.Model.from_formula("Reaction ~ Days + (1 + Days | Subject)", mg.datasets.load_sleepstudy())
    mg.sample(0, model, num_warmup=10, num_draws=10, progress_bar=True, **QUIET)
    err = capsys.readouterr().err
    assert "20/20" in err, err


def _continue_without_compiling(model, program_cache, draws_name):
    first = mg.sample(0, model, num_warmup=20, num_draws=15, **QUIET)
    misses = program_cache.cache_info().misses
    more = mg.sample(0, model, initial_state=first, num_warmup=0, num_draws=15, **QUIET)
    assert program_cache.cache_info().misses == misses, "the continuation built another sampling program"
    assert first.posterior.attrs["num_sweeps"] == 35
    assert more.posterior.attrs["num_sweeps"] == 50
    assert more.posterior[draws_name].shape[:2] == (2, 15)
    # a new stretch of the chain, not a replay of the first part's random numbers
    assert not np.allclose(more.posterior[draws_name].values, first.posterior[draws_name].values)


def test_a_continuation_reuses_the_compiled_program():
    _continue_without_compiling(radon_model(), run._sampling_program, "alpha")


def test_a_multilevel_continuation_reuses_the_compiled_program():
    model = mg.Model.from_formula("Reaction ~ Days + (1 + Days | Subject)", mg.datasets.load_sleepstudy())
    _continue_without_compiling(model, run_mixed._program, "alpha_Subject")

"""mlgibbs/_mappings.py: a session that compiles many programs stays below the cap on memory mappings.

Without the guard, a loop of ``mg.sample`` calls on models of different shapes adds about 600 mappings
per fit and never gives them back (JAX keeps every shape's program), so on Linux's default
``vm.max_map_count`` (65,530) the process dies inside XLA after about a hundred fits. Here the cap is
lowered (the guard's view of it) to a little above the process's current count, and the loop must stay
bounded, with a warning when the caches are cleared.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mlgibbs as mg
from mlgibbs import _mappings

pytestmark = pytest.mark.skipif(_mappings.mapping_count() is None or _mappings.mapping_limit() is None,
                                reason="needs /proc (Linux)")


def test_clearing_unmaps_compiled_programs():
    functions = [jax.jit(lambda x, i=i: jnp.cumsum(jnp.sin(x) * i)) for i in range(30)]
    for i, f in enumerate(functions):
        f(jnp.ones(5 + i)).block_until_ready()
    before = _mappings.mapping_count()
    with pytest.warns(RuntimeWarning, match="vm.max_map_count"):
        assert _mappings.release_if_needed(fraction=0.0)
    after = _mappings.mapping_count()
    assert after < before - 30 * 10, (before, after)     # about 18 mappings per program here
    assert not _mappings.release_if_needed(fraction=1.0)  # far below the real cap: nothing done


def test_a_loop_of_fits_stays_below_the_cap(monkeypatch):
    df = mg.datasets.load_radon()
    jax.clear_caches()
    baseline = _mappings.mapping_count()
    budget = 1_500                                       # about two fits' worth of programs
    monkeypatch.setattr(_mappings, "mapping_limit", lambda: int((baseline + budget) / _mappings.FRACTION))
    counts, cleared = [], 0
    for i in range(6):
        sub = df.iloc[: 700 + 10 * i]                    # a new shape, hence new programs, every time
        model = mg.Model.from_formula("log_radon ~ floor + (1 | county)", sub)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            mg.sample(i, model, num_chains=2, num_warmup=20, num_draws=20, check_convergence=False)
        cleared += sum("vm.max_map_count" in str(w.message) for w in caught)
        counts.append(_mappings.mapping_count())
    assert cleared >= 1, counts
    # never more than the budget plus one fit's programs above where the loop started
    assert max(counts) < baseline + budget + 1_500, (baseline, counts)
    assert np.all(np.isfinite(counts))

"""The benchmark scripts run (smoke sizes): they are not timed here, only kept from rotting.

``benchmarks/gpu.py --smoke`` runs the GPU check's code at CPU-friendly sizes (100 chains on radon,
n = 1e5) for one sampler, after one ``mg.sample`` call on radon, and writes its results file; every row
must report a finite time and ESS. Speed itself is measured by ``benchmarks/run.py``, never asserted in tests.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_script_smoke(tmp_path):
    gpu = _load("gpu")
    out = tmp_path / "gpu_results.json"
    assert gpu.main(["--smoke", "--samplers", "px", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    user, *runs = result["runs"]
    assert user["run"] == "mg.sample" and user["sampler"] == "grid"     # mg.sample as a user calls it
    assert math.isfinite(user["second_call_s"]) and user["min_ess_bulk"] > 0 and user["max_rhat"] < 1.1, user
    assert [(r["sampler"], r["num_chains"]) for r in runs] == [("px", 100), ("px", 4)]
    assert runs[1]["n"] == 100_000
    for r in runs:
        assert math.isfinite(r["sample_s"]) and r["sample_s"] > 0
        assert r["min_ess_bulk"] > 0 and r["max_rhat"] < 1.1, r


def test_compile_clock_counts_compilation_and_nothing_else():
    """What the benchmarks take out of NUTS's timed run: a jit's first call is counted (its backend compile
    named), a second call of the compiled program counts nothing, and a block outside any clock is not
    added to an earlier one."""
    import jax
    import jax.numpy as jnp

    clock_module = _load("compile_clock")
    f = jax.jit(lambda x: jnp.sin(x) * 2.0 + jnp.cumsum(x))
    x = jnp.linspace(0.0, 1.0, 1000)
    with clock_module.CompileClock() as first:
        jax.block_until_ready(f(x))
    assert first.seconds > 0
    assert any(event == "backend_compile_duration" for event, _, _ in first.events), first.events
    with clock_module.CompileClock() as second:
        jax.block_until_ready(f(x))
    assert second.seconds == 0 and not second.events
    before = first.seconds
    jax.block_until_ready(jax.jit(lambda x: x * 3.0)(x))   # compiles, outside every clock
    assert first.seconds == before

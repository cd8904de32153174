"""Time per sweep at a fixed number of groups (J = 100) as n grows from 1e3 to 1e6.

    python benchmarks/sweep_cost.py        # writes benchmarks/sweep_cost.json

Every conditional works from sufficient statistics computed once when the model is built, so a
sweep should cost the same whatever ``n`` is; the build time (statistics, in float64) is reported
apart. 4 chains, 2000 sweeps, compilation excluded.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import PRIORS  # noqa: E402

import mlgibbs as mg  # noqa: E402
from mlgibbs.run import chain_runner  # noqa: E402
from mlgibbs.samplers import kernel_data  # noqa: E402


def model_with(n: int, num_groups: int = 100, seed: int = 0):
    rng = np.random.default_rng(seed)
    group = np.arange(n) % num_groups
    u = rng.normal(size=num_groups)
    alpha = 1.0 + 0.5 * u + 0.3 * rng.normal(size=num_groups)
    x = rng.normal(size=n)
    y = alpha[group] + 0.7 * x + rng.normal(size=n)
    return mg.Model.from_arrays(y, x[:, None], group, u[:, None], priors=PRIORS)


def main() -> int:
    rows = []
    for n in (1_000, 10_000, 100_000, 1_000_000):
        t0 = time.perf_counter()
        model = model_with(n)
        build_s = time.perf_counter() - t0
        for sampler in sorted(mg.SAMPLERS):
            kernel = mg.gibbs(model, sampler)
            data = kernel_data(model, sampler)   # "grid": its proposal tabulated once per model
            init = jax.vmap(kernel.init, in_axes=(0, None))(jax.random.split(jax.random.key(0), 4), data)
            keys = jax.random.split(jax.random.key(1), 4)
            run = chain_runner(kernel, num_draws=2000).lower(keys, init, data).compile()
            jax.block_until_ready(run(keys, init, data))
            t0 = time.perf_counter()
            jax.block_until_ready(run(keys, init, data))
            sweep_us = 1e6 * (time.perf_counter() - t0) / 2000
            rows.append({"n": n, "J": 100, "sampler": sampler, "build_s": build_s, "sweep_us": sweep_us})
            print(json.dumps(rows[-1]), flush=True)
    out = Path(__file__).resolve().parent / "sweep_cost.json"
    out.write_text(json.dumps({"jax": jax.__version__, "backend": jax.default_backend(), "runs": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

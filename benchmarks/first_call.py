"""The first five minutes: import, model building, compilation and sampling, each timed apart.

Run from the repository root (after installing the package with its ``test`` extra)::

    python benchmarks/first_call.py            # every row, NumPyro's first posterior included
    python benchmarks/first_call.py --no-nuts  # without NumPyro

Every row runs in a fresh Python process, as a user meets it, with the persistent compilation cache
in a fresh temporary folder (``MLGIBBS_COMPILATION_CACHE``), so "cold" means nothing compiled yet and
"warm" means a second process after the first one filled the cache. Writes
``benchmarks/first_call.json`` and prints a Markdown table (the one in the README).

Rows (median of ``--repeats`` processes each; radon is Minnesota, 919 houses, 85 counties,
``log_radon ~ floor + log_uranium + (1 | county)``, 4 chains x (500 warm-up + 1,000) sweeps):

* ``import jax``; ``import mlgibbs`` after it; ``import arviz`` (the README's quickstart imports it;
  ``mg.sample`` returns its objects);
* building the radon model (first in the process: formula parser imported) and a 30,000-row model
  (``y ~ x + u + (1 | g)``, 3,000 groups; first in the process, and a second one);
* the first ``mg.sample`` on radon, cache cold and cache warm, with its compilation and its sampling
  reported apart (``mg.sample`` timed again in the same process gives the sampling alone);
* a second model of the same shapes (radon with another response) sampled after the first;
* NumPyro NUTS (non-centred, same priors, 4 chains x (500 + 1,000)), fresh process: model building
  plus MCMC, compilation included (its time to a first posterior).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

PRELUDE = """
import time, json, warnings
warnings.simplefilter("ignore")
t0 = time.perf_counter()
import jax
t1 = time.perf_counter()
import mlgibbs as mg
t2 = time.perf_counter()
import arviz
t3 = time.perf_counter()
out = {"import_jax": t1 - t0, "import_mlgibbs": t2 - t1, "import_arviz": t3 - t2}
"""

RADON = """
t = time.perf_counter()
df = mg.datasets.load_radon()
model = mg.Model.from_formula("log_radon ~ floor + log_uranium + (1 | county)", df)
out["build_radon"] = time.perf_counter() - t
t = time.perf_counter()
idata = mg.sample(0, model, num_chains=4, num_warmup=500, num_draws=1000)
out["first_sample"] = time.perf_counter() - t
t = time.perf_counter()
idata = mg.sample(1, model, num_chains=4, num_warmup=500, num_draws=1000)
out["same_model_again"] = time.perf_counter() - t
df2 = df.assign(log_radon=df["log_radon"] + 0.1 * __import__("numpy").random.default_rng(0).normal(size=len(df)))
t = time.perf_counter()
model2 = mg.Model.from_formula("log_radon ~ floor + log_uranium + (1 | county)", df2)
idata2 = mg.sample(0, model2, num_chains=4, num_warmup=500, num_draws=1000)
out["second_model"] = time.perf_counter() - t
"""

BUILD_30K = """
import numpy as np, pandas as pd
rng = np.random.default_rng(0)
g = rng.integers(0, 3000, 30000)
u = rng.normal(size=3000)
frame = pd.DataFrame({"y": u[g] + rng.normal(size=30000), "x": rng.normal(size=30000), "u": u[g], "g": g})
t = time.perf_counter()
mg.Model.from_formula("y ~ x + u + (1 | g)", frame)
out["build_30k_first"] = time.perf_counter() - t
frame["y"] = frame["y"] + 1.0
t = time.perf_counter()
mg.Model.from_formula("y ~ x + u + (1 | g)", frame)
out["build_30k_second"] = time.perf_counter() - t
"""

NUTS = """
t = time.perf_counter()
from mlgibbs.numpyro import run_nuts
model = mg.Model.from_formula("log_radon ~ floor + log_uranium + (1 | county)", mg.datasets.load_radon())
mcmc = run_nuts(jax.random.key(0), model, num_chains=4, num_warmup=500, num_samples=1000)
mcmc.get_samples()["sigma_y"].block_until_ready()
out["nuts_first_posterior"] = time.perf_counter() - t
"""


def run_process(code: str, cache_dir: str | None) -> dict:
    env = dict(os.environ)
    env["MLGIBBS_COMPILATION_CACHE"] = cache_dir or "0"
    script = PRELUDE + code + "\nprint('RESULT', json.dumps(out))\n"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          check=True)
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def median_of(runs: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-nuts", action="store_true")
    parser.add_argument("--out", default=str(HERE / "first_call.json"))
    args = parser.parse_args(argv)

    rows: dict[str, dict] = {}
    cold, warm, off = [], [], []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as cache:
            cold.append(run_process(RADON, cache))
            warm.append(run_process(RADON, cache))
        off.append(run_process(RADON + BUILD_30K, None))
    rows["cache cold"] = median_of(cold)
    rows["cache warm"] = median_of(warm)
    rows["cache off"] = median_of(off)
    if not args.no_nuts:
        rows["numpyro"] = median_of([run_process(NUTS, None) for _ in range(args.repeats)])

    import jax

    result = {
        "machine": f"{os.cpu_count()} CPU cores ({platform.platform()})",
        "python": platform.python_version(),
        "jax": jax.__version__,
        "repeats": args.repeats,
        "rows": rows,
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    return 0


LABELS = [
    ("import_jax", "`import jax`"),
    ("import_mlgibbs", "`import mlgibbs` (after jax)"),
    ("import_arviz", "`import arviz`"),
    ("build_radon", "build the radon model (first in the process)"),
    ("build_30k_first", "build a 30,000-row model (first in the process)"),
    ("build_30k_second", "build a 30,000-row model (second)"),
    ("first_sample", "first `mg.sample` on radon (4 x 1,500 sweeps)"),
    ("same_model_again", "the same call again (sampling and conversion, no compiling)"),
    ("second_model", "a second model of the same shapes: build + `mg.sample`"),
    ("nuts_first_posterior", "NumPyro NUTS, fresh process: build + first posterior (4 x 1,500)"),
]


def table(result: dict) -> str:
    rows = result["rows"]
    cols = list(rows)
    lines = ["| seconds | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for key, label in LABELS:
        if not any(key in rows[c] for c in cols):
            continue
        cells = [f"{rows[c][key]:.2f}" if key in rows[c] else "" for c in cols]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

"""Polya-Gamma draws per second: :mod:`mlgibbs.polyagamma` against the ``polyagamma`` package, same process.

    python benchmarks/polyagamma.py            # writes benchmarks/polyagamma.json
    python benchmarks/polyagamma.py --quick    # n = 1e4 and 1e5 only

Cases (``c ~ N(0, 2)``, i.e. standard deviation sqrt 2, one ``c`` per draw): ``PG(1, c)`` by
``polyagamma_one``; ``PG(5, c)`` (five lanes a draw); ``PG(3.5, c)`` (two Devroye lanes and one
alternate-method ``PG(1.5, c)``); ``PG(1.5, c)`` (the alternate method alone); at ``n`` = 1e4, 1e5 and 1e6
draws. Ours in float32 and float64, jitted with ``b`` fixed, timed over fresh keys after a first call;
compilation (tracing, lowering, XLA) is timed apart, with mlgibbs' persistent compilation cache off. The
package is timed on the same ``c`` (float64, its default method, and ``method="alternate"`` for
non-integer ``b``). Rates are draws of ``PG(b, c)`` per second, best of the repeats (median reported too):
this machine may be shared, and the best is the least disturbed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("MLGIBBS_COMPILATION_CACHE", "0")     # honest compile times
# This file's name shadows the ``polyagamma`` package when run as a script: drop its folder from the path.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_enable_x64", True)                   # float64 available; float32 stays float32

import mlgibbs  # noqa: E402,F401  (after the cache choice)
from mlgibbs.polyagamma import polyagamma, polyagamma_one  # noqa: E402

CASES = ((1, "polyagamma_one"), (5, "lanes"), (3.5, "lanes + alternate"), (1.5, "alternate"))


def repeat_timing(call, min_total=1.0, min_repeats=5, max_repeats=50):
    """Seconds per call: (best, median) over repeats, at least ``min_total`` seconds in all."""
    times = []
    while len(times) < min_repeats or (sum(times) < min_total and len(times) < max_repeats):
        t0 = time.perf_counter()
        call(len(times))
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def ours(b, c, dtype):
    c = jnp.asarray(c, dtype)
    if b == 1:
        fn = jax.jit(polyagamma_one)
    else:
        fn = jax.jit(lambda key, c: polyagamma(key, b, c))
    key = jax.random.key(0)
    t0 = time.perf_counter()
    compiled = fn.lower(key, c).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(key, c))
    first_run_s = time.perf_counter() - t0
    best, median = repeat_timing(lambda i: jax.block_until_ready(compiled(jax.random.key(i + 1), c)))
    return {"compile_s": compile_s, "first_run_s": first_run_s, "best_s": best, "median_s": median}


def package(b, c, method):
    import polyagamma as pg

    rng = np.random.default_rng(0)
    kwargs = {} if method is None else {"method": method}
    best, median = repeat_timing(lambda i: pg.random_polyagamma(b, c, random_state=rng, **kwargs))
    return {"best_s": best, "median_s": median}


def versions():
    import jaxlib
    import polyagamma as pg

    return {"python": platform.python_version(), "jax": jax.__version__, "jaxlib": jaxlib.__version__,
            "numpy": np.__version__, "polyagamma": getattr(pg, "__version__", "?")}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    sizes = (10_000, 100_000) if args.quick else (10_000, 100_000, 1_000_000)
    load_at_start = os.getloadavg()
    rng = np.random.default_rng(0)
    rows = []
    for b, how in CASES:
        for n in sizes:
            c = rng.normal(0.0, np.sqrt(2.0), n)
            row = {"b": b, "how": how, "n": n}
            for dtype in (jnp.float32, jnp.float64):
                t = ours(b, c, dtype)
                row[f"ours_{jnp.dtype(dtype).name}"] = {**t, "draws_per_s": n / t["best_s"],
                                                         "draws_per_s_median": n / t["median_s"]}
            for method in ((None, "alternate") if b != int(b) else (None,)):
                t = package(b, c, method)
                row[f"package_{method or 'default'}"] = {**t, "draws_per_s": n / t["best_s"],
                                                         "draws_per_s_median": n / t["median_s"]}
            reference = row["package_default"]["draws_per_s"]
            row["ratio_float32"] = row["ours_float32"]["draws_per_s"] / reference
            row["ratio_float64"] = row["ours_float64"]["draws_per_s"] / reference
            rows.append(row)
            print(f"PG({b}, c) n={n:>9,}: ours float32 {row['ours_float32']['draws_per_s']:.3g}/s "
                  f"(compile {row['ours_float32']['compile_s']:.2f} s), float64 "
                  f"{row['ours_float64']['draws_per_s']:.3g}/s (compile {row['ours_float64']['compile_s']:.2f} s); "
                  f"package {reference:.3g}/s; ratio {row['ratio_float32']:.2f} / {row['ratio_float64']:.2f}",
                  flush=True)
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu_count": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)),
                    "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "load_average_at_start": load_at_start, "load_average_at_end": os.getloadavg()},
        "versions": versions(),
        "backend": jax.default_backend(),
        "c": "N(0, 2): normal, standard deviation sqrt(2), one per draw",
        "rates": "draws of PG(b, c) per second, best of repeats (median also given)",
        "runs": rows,
    }
    if not args.quick:
        out = HERE / "polyagamma.json"
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

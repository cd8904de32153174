"""Benchmarks of the multilevel structures: ESS per second of mlgibbs and NumPyro NUTS in one process.

Run from the repository root (after installing the package with its ``test`` extra)::

    python benchmarks/structures.py                  # every problem
    python benchmarks/structures.py --only sleepstudy pastes
    python benchmarks/structures.py --quick          # short runs (a smoke test)

Writes ``benchmarks/structures.json`` and prints the Markdown table of the README.

Problems (data shipped in ``mlgibbs.datasets``), each with the same priors for both samplers:

* ``sleepstudy``: ``Reaction ~ Days + (1 + Days | Subject)`` (correlated slopes; Huang-Wand default);
* ``penicillin``: ``diameter ~ 1 + (1 | plate) + (1 | sample)`` (crossed);
* ``pastes``: ``strength ~ 1 + (1 | batch/cask)`` (nested), half-normal scale priors;
* ``radon_nested``: ``log_radon ~ floor + log_uranium + (1 | state/fips)``, every state (12,393 houses,
  nested counties in states);
* ``insteval``: ``y ~ service + (1 | s) + (1 | d) + (1 | dept)`` (73,421 ratings, crossed students and
  lecturers in departments).

For each: mlgibbs through :func:`mlgibbs.sample` as a user calls it (4 chains, 500 warm-up sweeps and
1,000 draws), timed on a second call with a new key (the first call's compilation is reported apart,
``first_call_s``, a fresh process's cost with the persistent cache off); NUTS (4 vectorised chains,
non-centred, NumPyro's defaults) timed on a second run of the same MCMC object, less the compilation
NumPyro repeats in every run (``recompile_s``, counted from JAX's compile events: compile_clock.py;
included before 2026-12-04, which understated NUTS's speed 2-3x on the small problems). The minimum bulk
and tail ESS is taken over *every* scalar parameter: each group effect, the fixed effects, the scales and
correlations. ``ratio`` is mlgibbs's min ESS per second over NUTS's, sampling only; ``ratio_first_call``
counts each sampler's compilation in.
The sweep-cost rows time a Gaussian sweep at a fixed design (``(1 + x | g) + (1 | h)``, 50 x 10
cells) for ``n`` from 1e3 to 1e6: the cost depends on the cells, not on ``n``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore", category=FutureWarning)
os.environ.setdefault("MLGIBBS_COMPILATION_CACHE", "0")   # compile times are measured

import jax  # noqa: E402

import mlgibbs as mg  # noqa: E402
from mlgibbs.convergence import ess_bulk, ess_tail, rhat  # noqa: E402
from mlgibbs.priors import HalfNormal, Normal  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from compile_clock import CompileClock  # noqa: E402


def problems():
    d = mg.datasets
    return {
        "sleepstudy": ("Reaction ~ Days + (1 + Days | Subject)", d.load_sleepstudy, {}),
        "penicillin": ("diameter ~ 1 + (1 | plate) + (1 | sample)", d.load_penicillin, {}),
        "pastes": ("strength ~ 1 + (1 | batch/cask)", d.load_pastes,
                   {"batch": HalfNormal(5.0), "batch:cask": HalfNormal(5.0), "sigma_y": HalfNormal(5.0)}),
        "radon_nested": ("log_radon ~ floor + log_uranium + (1 | state/fips)",
                         lambda: d.load_radon(state=None), {"state": HalfNormal(1.0)}),
        "insteval": ("y ~ service + (1 | s) + (1 | d) + (1 | dept)", d.load_insteval, {}),
    }


def flat_draws(posterior: dict) -> np.ndarray:
    """``(chain, draw, k)``: every scalar of every variable (correlation diagonals left out)."""
    parts = []
    for name, value in posterior.items():
        value = np.asarray(value, np.float64)
        C, S = value.shape[:2]
        if name.startswith("corr_"):
            d = value.shape[-1]
            iu = np.triu_indices(d, 1)
            value = value[..., iu[0], iu[1]]
        parts.append(value.reshape(C, S, -1))
    return np.concatenate(parts, axis=2)


def diagnostics(posterior: dict) -> dict:
    x = flat_draws(posterior)
    bulk, tail, r = ess_bulk(x), ess_tail(x), rhat(x)
    return {"min_ess_bulk": float(np.nanmin(bulk)), "min_ess_tail": float(np.nanmin(tail)),
            "max_rhat": float(np.nanmax(r)), "num_parameters": int(x.shape[2])}


def run_mlgibbs(model, num_chains, num_warmup, num_draws, sampler=None):
    """``mg.sample`` twice (the first call compiles); ``sampler`` as ``mg.sample``'s (``None``: its default)."""
    t0 = time.perf_counter()
    mg.sample(0, model, num_chains=num_chains, num_warmup=num_warmup, num_draws=num_draws,
              log_likelihood=False, check_convergence=False, sampler=sampler)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    with CompileClock() as clock:   # counted, not taken out: what the user waits for
        idata = mg.sample(1, model, num_chains=num_chains, num_warmup=num_warmup, num_draws=num_draws,
                          log_likelihood=False, check_convergence=False, sampler=sampler)
    second = time.perf_counter() - t0
    post = {str(k): idata.posterior[k].values for k in idata.posterior.data_vars}
    out = {"sampler": "mlgibbs", "mlgibbs_sampler": idata.posterior.attrs.get("sampler"),
           "first_call_s": first, "sample_s": second, "compile_in_call_s": clock.seconds,
           "sweep_ms": 1e3 * second / (num_warmup + num_draws)}
    out.update(diagnostics(post))
    return out


def run_nuts(model, num_chains, num_warmup, num_draws):
    from mlgibbs.numpyro import _SAMPLE_STATS, mixed_nuts_draws, run_mixed_nuts

    key_first, key_second = jax.random.split(jax.random.key(0))
    t0 = time.perf_counter()
    mcmc = run_mixed_nuts(model, key_first, num_chains=num_chains, num_warmup=num_warmup, num_draws=num_draws)
    jax.block_until_ready(mcmc.get_samples())
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    with CompileClock() as clock:   # NumPyro compiles its loop again on every run: not sampling time
        mcmc.run(key_second, init_params=mcmc.last_state.z, extra_fields=tuple(_SAMPLE_STATS))
        samples = mcmc.get_samples(group_by_chain=True)
        jax.block_until_ready(samples)
    second = time.perf_counter() - t0 - clock.seconds
    post = mixed_nuts_draws(model, samples)
    out = {"sampler": "nuts", "first_call_s": first, "sample_s": second, "recompile_s": clock.seconds,
           "sweep_ms": 1e3 * second / (num_warmup + num_draws)}
    extra = mcmc.get_extra_fields()
    if "diverging" in extra:
        out["divergences"] = int(np.sum(np.asarray(extra["diverging"])))
    if "num_steps" in extra:
        out["mean_leapfrog_steps"] = float(np.mean(np.asarray(extra["num_steps"])))
    out.update(diagnostics(post))
    return out


def rate(row, with_compile=False):
    ess = min(row["min_ess_bulk"], row["min_ess_tail"])
    return ess / (row["first_call_s"] if with_compile else row["sample_s"])


def compare(log, name, model, chains, warmup, draws, *, nuts_sizes, quick, with_nuts, width=13, nuts_model=None):
    """One problem side by side: :func:`run_mlgibbs`, then (``with_nuts``) :func:`run_nuts` with the
    problem's sizes from ``nuts_sizes`` (at most 100 + 100 when ``quick``), each logged; returns the
    ``mlgibbs``, ``nuts``, ``ratio`` and ``ratio_first_call`` entries of the results file. ``nuts_model``:
    the model NUTS runs if not ``model`` (the same posterior written on fewer rows)."""
    row = run_mlgibbs(model, chains, warmup, draws)
    log(f"{name:>{width}} mlgibbs: min ESS {min(row['min_ess_bulk'], row['min_ess_tail']):7.0f}  "
        f"sample {row['sample_s']:6.2f}s  first call {row['first_call_s']:6.2f}s  R-hat {row['max_rhat']:.3f}")
    entry = {"mlgibbs": row}
    if with_nuts:
        nw, nd = nuts_sizes.get(name, (warmup, draws))
        if quick:
            nw, nd = min(nw, 100), min(nd, 100)
        nuts = run_nuts(model if nuts_model is None else nuts_model, chains, nw, nd)
        log(f"{name:>{width}}    nuts: min ESS {min(nuts['min_ess_bulk'], nuts['min_ess_tail']):7.0f}  "
            f"sample {nuts['sample_s']:6.2f}s  first call {nuts['first_call_s']:6.2f}s  "
            f"R-hat {nuts['max_rhat']:.3f}")
        entry["nuts"] = nuts
        entry["ratio"] = rate(row) / rate(nuts)
        entry["ratio_first_call"] = rate(row, True) / rate(nuts, True)
        log(f"{name:>{width}}   ratio: {entry['ratio']:.1f}x (first call included: {entry['ratio_first_call']:.1f}x)")
    return entry


def sweep_cost(log, sizes=(1_000, 10_000, 100_000, 1_000_000)):
    """Seconds per 4-chain sweep at a fixed design of 50 x 10 cells, for growing ``n``."""
    rows = []
    for n in sizes:
        rng = np.random.default_rng(0)
        g = rng.integers(0, 50, n)
        h = rng.integers(0, 10, n)
        x = rng.normal(size=n)
        y = 1 + 0.5 * x + rng.normal(size=50)[g] + 0.3 * rng.normal(size=50)[g] * x + rng.normal(size=10)[h] \
            + rng.normal(size=n)
        import pandas as pd

        df = pd.DataFrame({"y": y, "x": x, "g": g, "h": h})
        model = mg.Model.from_formula("y ~ x + (1 + x | g) + (1 | h)", df)
        mg.sample(0, model, num_chains=4, num_warmup=10, num_draws=500, log_likelihood=False,
                  check_convergence=False)     # compiles (the lengths are run-time values; the shape is not)
        t0 = time.perf_counter()
        mg.sample(1, model, num_chains=4, num_warmup=500, num_draws=500, log_likelihood=False,
                  check_convergence=False)
        s = time.perf_counter() - t0
        row = {"n": n, "rows_in_kernel": int(model.data.W.shape[0]), "ms_per_sweep": 1e3 * s / 1000}
        log(f"  sweep cost n={n:>8}: {row['ms_per_sweep']:.3f} ms per 4-chain sweep "
            f"({row['rows_in_kernel']} kernel rows)")
        rows.append(row)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-nuts", action="store_true")
    parser.add_argument("--out", default=str(HERE / "structures.json"))
    args = parser.parse_args(argv)

    def log(msg):
        print(msg, flush=True)

    chains, warmup, draws = 4, 500, 1000
    nuts_sizes = {"insteval": (200, 200)}
    if args.quick:
        warmup, draws = 100, 200
    results = {"machine": {"python": sys.version.split()[0], "platform": platform.platform(),
                           "cpus": os.cpu_count(), "jax": jax.__version__},
               "date": time.strftime("%Y-%m-%d"), "problems": {}}
    for name, (formula, load, priors) in problems().items():
        if args.only and name not in args.only:
            continue
        model = mg.Model.from_formula(formula, load(), priors=priors)
        results["problems"][name] = {"formula": formula, "n": model.num_obs,
                                     **compare(log, name, model, chains, warmup, draws, nuts_sizes=nuts_sizes,
                                               quick=args.quick, with_nuts=not args.no_nuts)}
    if not args.only or "sweep_cost" in args.only:
        results["sweep_cost"] = sweep_cost(log, (1_000, 10_000) if args.quick else (1_000, 10_000, 100_000, 1_000_000))
    Path(args.out).write_text(json.dumps(results, indent=1))
    print()
    print("| problem | n | parameters | mlgibbs min ESS/s | NUTS min ESS/s | ratio | incl. compile | mlgibbs first call |")
    print("|---|---|---|---|---|---|---|---|")
    for name, e in results["problems"].items():
        m = e["mlgibbs"]
        nuts = e.get("nuts")
        print(f"| {name} | {e['n']:,} | {m['num_parameters']:,} | {rate(m):,.0f} | "
              f"{rate(nuts):,.1f} | {e['ratio']:,.0f}x | {e['ratio_first_call']:,.0f}x | {m['first_call_s']:.1f} s |"
              if nuts else f"| {name} | {e['n']:,} | {m['num_parameters']:,} | {rate(m):,.0f} | | | | "
                           f"{m['first_call_s']:.1f} s |")


if __name__ == "__main__":
    main()

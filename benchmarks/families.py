"""Benchmarks of the non-Gaussian families: ESS per second of mlgibbs and NumPyro NUTS in one process.

Run from the repository root (after installing the package with its ``test`` extra)::

    python benchmarks/families.py                      # every problem
    python benchmarks/families.py --only cbpp verbagg
    python benchmarks/families.py --quick              # short runs (a smoke test)

Writes ``benchmarks/families.json`` and prints the Markdown table of the README.

Problems (data shipped in ``mlgibbs.datasets``; the same model and priors for both samplers):

* ``radon_logistic``: ``I(activity > 4) ~ floor + log_uranium + (1 | county)`` (Bernoulli, 919 houses);
* ``cbpp``: ``incidence`` of ``size`` trials ``~ period + (1 | herd)`` (binomial, 56 rows, 842 trials);
* ``contraception``: ``use ~ age + I(age**2) + urban + livch + (1 + urban | district)`` (Bernoulli, 1,934
  women, correlated district intercepts and urban slopes, Huang-Wand default);
* ``verbagg``: ``r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)`` (Bernoulli, 7,584 answers,
  crossed subjects and items);
* ``grouseticks_nb``: ``TICKS ~ YEAR + scale(HEIGHT) + (1 | BROOD) + (1 | LOCATION)`` (negative binomial, 403
  chicks; normal(0, 5) coefficients, half-normal(1) scales, ``r ~ Gamma(0.01, 0.01)``);
* ``grouseticks_poisson``: the same with ``(1 | INDEX)``, a chick-level effect, and the Poisson family
  (Poisson-lognormal; half-normal(1) on the INDEX scale too);
* ``synthetic``: ``y ~ x + (1 | g)`` (Bernoulli) with ``n`` rows and ``J`` groups (``--synthetic-n``,
  ``--synthetic-j``; default 1e6 and 1e4 as in the issue's target), ``x`` binary, so the kernel rows are
  the ``2 J`` cells and the Polya-Gamma lanes the ``n`` trials. NUTS runs the same posterior written as a
  binomial model of those ``2 J`` cells (successes of trials per group and ``x``: the likelihood of the rows
  up to a constant), what a NumPyro user would write for data of this size; on the ``n`` rows themselves
  it did not finish 4 x (100 + 100) iterations in 30 minutes (2026-12-03).

As in ``benchmarks/structures.py``: mlgibbs through :func:`mlgibbs.sample` as a user calls it (4 chains,
500 warm-up sweeps and 1,000 draws), timed on a second call with a new key (the first call's compilation
is reported apart); NUTS (NumPyro, 4 vectorised chains, non-centred) timed on a second run of the same
MCMC object, less the compilation NumPyro repeats in every run (``recompile_s``: compile_clock.py). The
minimum of the bulk and tail ESS over *every* scalar parameter (each group effect, the fixed effects, the
scales, correlations) per second of sampling; ``ratio`` is mlgibbs's over NUTS's.

For the logit families every sampler of ``mlgibbs.run_mixed.MIXED_SAMPLERS`` runs (``"augmented"``,
``"augmented-px"``, ``"iwls"``; the entry ``alternatives``), so that the default's choice
(:func:`mlgibbs.run_mixed.default_mixed_sampler`) can be checked against the others; the main row is the
default's (``--no-alternatives`` skips the others).

``--chains-scaling`` times sweeps of the logistic radon model with 4 and 1,000 vmapped chains (one call
each): the cost per chain-sweep.
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from structures import compare, rate, run_mlgibbs  # noqa: E402

from mlgibbs.priors import HalfNormal, Normal  # noqa: E402


def synthetic(n: int, J: int, seed: int = 0):
    import pandas as pd

    rng = np.random.default_rng(seed)
    g = rng.integers(0, J, n)
    x = rng.integers(0, 2, n).astype(float)
    eta = -0.5 + 0.8 * x + 0.7 * rng.normal(size=J)[g]
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-eta))).astype(int)
    return pd.DataFrame({"y": y, "x": x, "g": g})


def aggregated(df):
    """The binomial cells of a Bernoulli frame ``y ~ x + (1 | g)``: successes ``y`` of ``m`` trials per
    ``(g, x)``."""
    cells = df.groupby(["g", "x"], as_index=False).agg(y=("y", "sum"), m=("y", "size"))
    return cells


def problems(n_synth: int, j_synth: int):
    d = mg.datasets
    return {
        "radon_logistic": ("I(activity > 4) ~ floor + log_uranium + (1 | county)", d.load_radon, {}, "bernoulli",
                           None),
        "cbpp": ("incidence ~ period + (1 | herd)", d.load_cbpp, {"herd": HalfNormal(1.0)}, "binomial", "size"),
        "contraception": ("use ~ age + I(age**2) + urban + livch + (1 + urban | district)", d.load_contraception,
                          {"beta": Normal(0.0, 5.0)}, "bernoulli", None),
        "verbagg": ("r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)", d.load_verbagg, {}, "bernoulli",
                    None),
        "grouseticks_nb": ("TICKS ~ YEAR + scale(HEIGHT) + (1 | BROOD) + (1 | LOCATION)", d.load_grouseticks,
                           {"beta": Normal(0.0, 5.0), "BROOD": HalfNormal(1.0), "LOCATION": HalfNormal(1.0)},
                           "negbinomial", None),
        "grouseticks_poisson": ("TICKS ~ YEAR + scale(HEIGHT) + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)",
                                d.load_grouseticks, {"beta": Normal(0.0, 5.0), "BROOD": HalfNormal(1.0),
                                                     "INDEX": HalfNormal(1.0), "LOCATION": HalfNormal(1.0)},
                                "poisson", None),
        "synthetic": ("y ~ x + (1 | g)", lambda: synthetic(n_synth, j_synth), {}, "bernoulli", None),
    }


def chains_scaling(log, counts=(4, 1000), sweeps=200):
    """Seconds per chain-sweep of the logistic radon model with ``counts`` vmapped chains (one call each)."""
    model = mg.Model.from_formula("I(activity > 4) ~ floor + log_uranium + (1 | county)", mg.datasets.load_radon(),
                                  family="bernoulli")
    rows = []
    for chains in counts:
        kwargs = dict(num_chains=chains, num_warmup=0, num_draws=sweeps, log_likelihood=False,
                      check_convergence=False, var_names=["beta"])
        mg.sample(0, model, **kwargs)                       # compiles
        t0 = time.perf_counter()
        mg.sample(1, model, **kwargs)
        s = time.perf_counter() - t0
        row = {"chains": chains, "sweeps": sweeps, "seconds": s, "us_per_chain_sweep": 1e6 * s / (chains * sweeps)}
        log(f"  {chains:>5} chains: {s:6.2f} s for {sweeps} sweeps, {row['us_per_chain_sweep']:.1f} us per chain-sweep")
        rows.append(row)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-nuts", action="store_true")
    parser.add_argument("--synthetic-n", type=int, default=1_000_000)
    parser.add_argument("--synthetic-j", type=int, default=10_000)
    parser.add_argument("--chains-scaling", action="store_true")
    parser.add_argument("--no-alternatives", action="store_true")
    parser.add_argument("--out", default=str(HERE / "families.json"))
    args = parser.parse_args(argv)

    def log(msg):
        print(msg, flush=True)

    chains, warmup, draws = 4, 500, 1000
    nuts_sizes = {"verbagg": (500, 500)}
    if args.quick:
        warmup, draws = 100, 200
    results = {"machine": {"python": sys.version.split()[0], "platform": platform.platform(),
                           "cpus": os.cpu_count(), "jax": jax.__version__},
               "date": time.strftime("%Y-%m-%d"), "problems": {}}
    out_path = Path(args.out)
    if out_path.exists():   # keep the rows of problems not rerun
        previous = json.loads(out_path.read_text())
        results["problems"].update(previous.get("problems", {}))
        if "chains_scaling" in previous:
            results["chains_scaling"] = previous["chains_scaling"]
    for name, (formula, load, priors, family, trials) in problems(args.synthetic_n, args.synthetic_j).items():
        if args.only is not None and name not in args.only:
            continue
        t0 = time.perf_counter()
        frame = load()
        model = mg.Model.from_formula(formula, frame, priors=priors, family=family, trials=trials)
        build = time.perf_counter() - t0
        nuts_model = None
        if name == "synthetic":   # NUTS on the 2 J binomial cells: the same posterior on fewer rows
            nuts_model = mg.Model.from_formula(formula, aggregated(frame), priors=priors, family="binomial",
                                               trials="m")
        entry = {"formula": formula, "family": family, "n": model.num_obs,
                 "kernel_rows": int(model.data.W.shape[0]),
                 "lanes": 0 if model.data.lane_rows is None else int(model.data.lane_rows.shape[0]),
                 **compare(log, name, model, chains, warmup, draws, nuts_sizes=nuts_sizes, quick=args.quick,
                           with_nuts=not args.no_nuts, width=15, nuts_model=nuts_model)}
        entry["mlgibbs"]["build_s"] = build
        if not args.no_alternatives:
            from mlgibbs.run_mixed import MIXED_SAMPLERS

            entry["alternatives"] = {}
            for sampler in MIXED_SAMPLERS[family]:
                if sampler == entry["mlgibbs"]["mlgibbs_sampler"] or len(MIXED_SAMPLERS[family]) == 1:
                    continue
                row = run_mlgibbs(model, chains, warmup, draws, sampler=sampler)
                entry["alternatives"][sampler] = row
                log(f"{name:>15} {sampler:>12}: min ESS {min(row['min_ess_bulk'], row['min_ess_tail']):7.0f}  "
                    f"sample {row['sample_s']:6.2f}s  ({rate(row):,.0f} ESS/s; the default "
                    f"{entry['mlgibbs']['mlgibbs_sampler']}: {rate(entry['mlgibbs']):,.0f})")
        results["problems"][name] = entry
        out_path.write_text(json.dumps(results, indent=1))
    if args.chains_scaling:
        results["chains_scaling"] = chains_scaling(log, sweeps=50 if args.quick else 200)
    out_path.write_text(json.dumps(results, indent=1))
    print()
    print("| problem | family | n | parameters | sampler | mlgibbs min ESS/s | others' min ESS/s | NUTS min ESS/s | "
          "ratio | incl. compile | mlgibbs first call |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, e in results["problems"].items():
        m = e["mlgibbs"]
        nuts = e.get("nuts")
        others = ", ".join(f"{k} {rate(v):,.0f}" for k, v in e.get("alternatives", {}).items())
        head = (f"| {name} | {e['family']} | {e['n']:,} | {m['num_parameters']:,} | {m.get('mlgibbs_sampler')} | "
                f"{rate(m):,.0f} | {others} |")
        if nuts:
            print(f"{head} {rate(nuts):,.1f} | {e['ratio']:,.0f}x | {e['ratio_first_call']:,.0f}x | "
                  f"{m['first_call_s']:.1f} s |")
        else:
            print(f"{head} | | | {m['first_call_s']:.1f} s |")


if __name__ == "__main__":
    main()

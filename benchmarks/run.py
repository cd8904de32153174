"""Benchmarks: effective samples per second of every mlgibbs sampler and NumPyro NUTS, in one process.

Run from the repository root (after installing the package with its ``test`` extra)::

    python benchmarks/run.py                 # full: radon + synthetic n = 1e3..1e6 + many chains
    python benchmarks/run.py --quick         # a smaller smoke version (n <= 1e4)

Writes ``benchmarks/results.json`` and ``benchmarks/ess_per_second.png`` (log-log ESS/s against n)
and prints a Markdown table (the one in the README).

For each run: wall time with warmup, with the compilation reported apart (ahead-of-time
``jit(...).lower(...).compile()`` for mlgibbs; for NUTS, a first run minus the sampling time of a second
run, from whose wall time the compilation NumPyro repeats in every run is taken out: compile_clock.py), the
minimum over all parameters (every ``alpha_j`` included) of the bulk and of the tail ESS, the
minimum ESS per second of sampling (compilation excluded), its ratio to NUTS in the same run, the
maximum R-hat, and the time per sweep (per iteration for NUTS) of the whole batch of chains.

Models: (a) radon Minnesota, ``log_radon ~ floor + log_uranium + (1 | county)``; (b) synthetic
varying-intercept data, ``y = gamma_0 + gamma_1 u_j + sigma_alpha eta_j + beta x_i + sigma_y e_i``
with ``J = n / 100`` groups. Priors for every sampler, NUTS included (non-centred): Normal(0, 10) on
the coefficients, HalfNormal(1) on both scales. Every Gibbs sampler runs 4 chains of 500 warmup
sweeps and 1000 draws; NUTS runs 4 chains of 1000 + 1000 iterations (radon, n <= 1e4), 500 + 500
(n = 1e5) and 200 + 200 (n = 1e6, where one NUTS run takes many minutes on 2 cores); ESS per second
makes the figures comparable across run lengths.

Radon is also run through ``mg.sample`` as a user calls it (every default: the default sampler, ``lp``, the
pointwise log likelihood, the convergence screen, the conversion to ArviZ), its first call and the median of
three more timed apart, its min ESS per second against NUTS's in the same process (``through_sample``).
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
# compile times are measured: keep JAX's persistent compilation cache (on by default in mlgibbs) off
os.environ.setdefault("MLGIBBS_COMPILATION_CACHE", "0")

import arviz as az  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import mlgibbs as mg  # noqa: E402
from mlgibbs.priors import HalfNormal, Normal  # noqa: E402
from mlgibbs.run import chain_runner  # noqa: E402
from mlgibbs._ahead import sampling_options  # noqa: E402
from mlgibbs.samplers import chains_runner  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from compile_clock import CompileClock  # noqa: E402

PRIORS = {"beta": Normal(0.0, 10.0), "gamma": Normal(0.0, 10.0),
          "sigma_y": HalfNormal(1.0), "sigma_alpha": HalfNormal(1.0)}


def synthetic(n: int, seed: int = 0, sigma_alpha: float = 0.3, sigma_y: float = 1.0):
    """Varying-intercept data with ``J = n / 100`` groups (as a :class:`mlgibbs.Model`)."""
    rng = np.random.default_rng(seed)
    J = max(n // 100, 2)
    group = np.arange(n) % J
    u = rng.normal(size=J)
    alpha = 1.0 + 0.5 * u + sigma_alpha * rng.normal(size=J)
    x = rng.normal(size=n)
    y = alpha[group] + 0.7 * x + sigma_y * rng.normal(size=n)
    return mg.Model.from_arrays(y, x[:, None], group, u[:, None], priors=PRIORS,
                                predictors=["x"], group_predictors=["u"])


def diagnostics(draws: dict) -> dict:
    """Min bulk/tail ESS and max R-hat over every scalar of ``draws`` (arrays ``(chain, draw, ...)``)."""
    ds = az.convert_to_dataset({k: np.asarray(v, dtype=np.float64) for k, v in draws.items()})
    bulk = az.ess(ds, method="bulk")
    tail = az.ess(ds, method="tail")
    rhat = az.rhat(ds)
    low = lambda d: min(float(d[v].min()) for v in d.data_vars)  # noqa: E731
    high = lambda d: max(float(d[v].max()) for v in d.data_vars)  # noqa: E731
    return {"min_ess_bulk": low(bulk), "min_ess_tail": low(tail), "max_rhat": high(rhat)}


def run_gibbs(model, sampler: str, *, num_chains: int, num_warmup: int, num_draws: int, seed: int = 0,
              repeats: int = 3, scan_step: bool = False) -> dict:
    """One mlgibbs sampler: compile, then time ``repeats`` runs of the compiled program (median).

    Compiled with the options ``mg.sample`` compiles its programs with (:func:`mlgibbs._ahead.sampling_options`:
    LLVM level 1 on CPU). ``"grid"`` first tabulates its proposal (once per model, as ``mg.sample`` does): its
    compilation is counted in the compile time and its run in the sampling time. Its chains run as
    ``mg.sample`` runs them, the sweeps in parallel (:func:`mlgibbs.samplers.chains_runner`); with
    ``scan_step`` (the row ``"grid (step scanned)"``) as every other sampler's, ``kernel.step`` scanned, as a
    user composing the kernel runs it (the same draws).

    A run takes well under a second on radon, where a single timing varies by 2x with what else the
    machine does; the median of three identical runs is the sampling time.
    """
    from mlgibbs.samplers import with_scale_grid

    kernel = mg.gibbs(model, sampler)
    data, setup_compile_s, setup_s = model.data, 0.0, 0.0
    if sampler == "grid":   # its proposal, tabulated once per model: first call (compiles) and a second (run)
        t0 = time.perf_counter()
        jax.block_until_ready(with_scale_grid(model.data, model.kernel_priors))
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        data = jax.block_until_ready(with_scale_grid(model.data, model.kernel_priors))
        setup_s = time.perf_counter() - t0
        setup_compile_s = max(first - setup_s, 0.0)
    key_init, key_run = jax.random.split(jax.random.key(seed))
    init = jax.vmap(kernel.init, in_axes=(0, None))(jax.random.split(key_init, num_chains), data)
    keys = jax.random.split(key_run, num_chains)
    chains = chains_runner(model, sampler) if not scan_step else None
    if chains is not None:   # what mg.sample runs: "grid"'s sweeps in parallel (the draws of its step scanned)
        run = jax.jit(lambda k, s, d: (chains(k, s, d, num_draws=num_draws, num_warmup=num_warmup, thin=1), None))
    else:
        run = chain_runner(kernel, num_draws=num_draws, num_warmup=num_warmup)
    t0 = time.perf_counter()
    compiled = run.lower(keys, init, data).compile(sampling_options())   # as mg.sample compiles it
    compile_s = time.perf_counter() - t0 + setup_compile_s
    times = []
    for _ in range(repeats):  # the same compiled program, keys and starts: identical draws each time
        t0 = time.perf_counter()
        draws, _ = compiled(keys, init, data)
        jax.block_until_ready(draws)
        times.append(time.perf_counter() - t0)
    sample_s = float(np.median(times)) + setup_s   # the grid's tabulation counted as sampling time
    draws = model.to_user(draws)  # the reported coordinates: ESS is not invariant under the model's map
    fields = {k: v for k, v in zip(mg.GibbsState._fields, (getattr(draws, f) for f in mg.GibbsState._fields))
              if v is not None}
    out = {"sampler": sampler + (" (step scanned)" if scan_step else ""), "num_chains": num_chains,
           "num_warmup": num_warmup, "num_draws": num_draws, "runner": "parallel" if chains is not None else "scan",
           "compile_s": compile_s, "sample_s": sample_s, "wall_s": compile_s + sample_s,
           "sweep_ms": 1e3 * sample_s / (num_warmup + num_draws)}
    out.update(diagnostics(fields))
    return out


def run_nuts(model, *, num_chains: int, num_warmup: int, num_draws: int, seed: int = 0,
             second_run: bool = True) -> dict:
    """NumPyro NUTS (non-centred, chains vectorised: faster than sequential chains here), timed on a
    second run of the same MCMC object.

    The first run compiles; the second starts its warmup from the first run's last state (if anything,
    an advantage to NUTS). NumPyro compiles its sampling loop again in the second run (a new closure
    each run): that compilation (``recompile_s``, counted by :class:`compile_clock.CompileClock`) is
    taken out of the second run's time, which is the sampling time. Compilation time is reported as
    the first run's time less the sampling time. With ``second_run=False`` (n = 1e6, where one run
    takes many minutes) there is one run and its wall time, compilation included, is the sampling
    time (``compile_included``): that favours mlgibbs by the compile time, about 20 s.
    """
    from mlgibbs.numpyro import _SAMPLE_STATS
    from mlgibbs.numpyro import run_nuts as nuts

    key_first, key_second = jax.random.split(jax.random.key(seed))
    t0 = time.perf_counter()
    mcmc = nuts(key_first, model, num_chains=num_chains, num_warmup=num_warmup, num_samples=num_draws)
    jax.block_until_ready(mcmc.get_samples())
    first_s = time.perf_counter() - t0
    recompile_s = float("nan")
    if second_run:
        t0 = time.perf_counter()
        with CompileClock() as clock:   # NumPyro compiles its loop again on every run: not sampling
            mcmc.run(key_second, init_params=mcmc.last_state.z, extra_fields=tuple(_SAMPLE_STATS))
            samples = mcmc.get_samples(group_by_chain=True)
            jax.block_until_ready(samples)
        recompile_s = clock.seconds
        sample_s = time.perf_counter() - t0 - recompile_s
        compile_s = max(first_s - sample_s, 0.0)
    else:
        samples = mcmc.get_samples(group_by_chain=True)
        sample_s, compile_s = first_s, float("nan")
    keep = {k: samples[k] for k in ("alpha", "beta", "gamma", "sigma_y", "sigma_alpha") if k in samples}
    out = {"sampler": "nuts", "num_chains": num_chains, "num_warmup": num_warmup, "num_draws": num_draws,
           "compile_s": compile_s, "sample_s": sample_s, "wall_s": first_s, "recompile_s": recompile_s,
           "compile_included": not second_run,
           "sweep_ms": 1e3 * sample_s / (num_warmup + num_draws)}
    steps = mcmc.get_extra_fields().get("num_steps")
    if steps is not None:
        out["mean_leapfrog_steps"] = float(np.mean(np.asarray(steps)))
    out.update(diagnostics(keep))
    return out


def add_rates(rows: list[dict]) -> None:
    for r in rows:
        ess = min(r["min_ess_bulk"], r["min_ess_tail"])
        r["min_ess_per_s"] = ess / r["sample_s"]
        r["min_ess_per_s_with_compile"] = ess / r["wall_s"]
    nuts = next((r for r in rows if r["sampler"] == "nuts"), None)
    for r in rows:
        if nuts is not None:
            r["ratio_to_nuts"] = r["min_ess_per_s"] / nuts["min_ess_per_s"]


def bench_problem(name: str, model, samplers, *, num_chains, num_warmup, num_draws, nuts_draws, log) -> list[dict]:
    rows = []
    runs = [(s, False) for s in samplers] + [("grid", True)] * ("grid" in samplers and name == "radon")
    for sampler, scan_step in runs:
        r = run_gibbs(model, sampler, num_chains=num_chains, num_warmup=num_warmup, num_draws=num_draws,
                      scan_step=scan_step)
        sampler = r["sampler"]
        log(f"  {name:>12} {sampler:>9}: min ESS {min(r['min_ess_bulk'], r['min_ess_tail']):8.0f}  "
            f"sample {r['sample_s']:7.2f}s  compile {r['compile_s']:6.2f}s  R-hat {r['max_rhat']:.3f}")
        rows.append(r)
    if nuts_draws:
        r = run_nuts(model, num_chains=num_chains, num_warmup=nuts_draws, num_draws=nuts_draws,
                     second_run=model.num_obs < 1_000_000)
        log(f"  {name:>12}      nuts: min ESS {min(r['min_ess_bulk'], r['min_ess_tail']):8.0f}  "
            f"sample {r['sample_s']:7.2f}s  compile {r['compile_s']:6.2f}s  R-hat {r['max_rhat']:.3f}")
        rows.append(r)
    add_rates(rows)
    for r in rows:
        r.update({"problem": name, "n": model.num_obs, "J": model.num_groups})
    return rows


def bench_through_sample(model, nuts_row: dict | None, *, num_chains: int, num_warmup: int, num_draws: int, log,
                         repeats: int = 3) -> dict:
    """Radon as a user calls it: ``mg.sample(key, model, num_chains=..., num_warmup=..., num_draws=...)`` with
    every default (the default sampler, ``lp``, the pointwise log likelihood, the convergence screen, the
    conversion to ArviZ). The first call (compilation and the grid's tabulation included) is timed apart;
    then ``repeats`` calls with new keys, the median timed. Min ESS (the smaller of bulk and tail) over every
    scalar of the posterior group, per second of the median call, and its ratio to NUTS's min ESS per second
    in the same process (``nuts_row``, timed on its compiled sampler alone: a comparison that favours NUTS)."""
    t0 = time.perf_counter()
    idata = mg.sample(jax.random.key(0), model, num_chains=num_chains, num_warmup=num_warmup, num_draws=num_draws)
    first = time.perf_counter() - t0
    times, runs = [], []
    compile_in_calls = []
    for k in range(repeats):
        t0 = time.perf_counter()
        with CompileClock() as clock:   # counted, not taken out: what the user waits for
            idata = mg.sample(jax.random.key(k + 1), model, num_chains=num_chains, num_warmup=num_warmup,
                              num_draws=num_draws)
        times.append(time.perf_counter() - t0)
        compile_in_calls.append(clock.seconds)
        post = idata.posterior
        runs.append(diagnostics({v: np.asarray(post[v]) for v in post.data_vars}))
    median = float(np.median(times))
    worst = {key: (max if key == "max_rhat" else min)(r[key] for r in runs) for key in runs[0]}
    ess = min(worst["min_ess_bulk"], worst["min_ess_tail"])
    out = {"sampler": idata.posterior.attrs["sampler"], "num_chains": num_chains, "num_warmup": num_warmup,
           "num_draws": num_draws, "first_call_s": first, "call_s": median, "calls_s": times,
           "compile_in_calls_s": compile_in_calls, **worst,
           "min_ess_per_s": ess / median}
    if nuts_row is not None:
        out["nuts_min_ess_per_s"] = nuts_row["min_ess_per_s"]
        out["ratio_to_nuts"] = out["min_ess_per_s"] / nuts_row["min_ess_per_s"]
    log(f"  mg.sample ({out['sampler']}): first call {first:.2f}s, then {median:.3f}s; min ESS {ess:.0f} "
        f"(the worst of {repeats} calls), {out['min_ess_per_s']:,.0f}/s"
        + (f", {out['ratio_to_nuts']:.0f}x NUTS" if nuts_row is not None else ""))
    return out


def bench_many_chains(model, sampler: str, chain_counts, *, num_draws: int, log) -> list[dict]:
    rows = []
    for c in chain_counts:
        r = run_gibbs(model, sampler, num_chains=c, num_warmup=0, num_draws=num_draws)
        r["us_per_chain_sweep"] = 1e6 * r["sample_s"] / (c * num_draws)
        log(f"  chains {c:>6}: {r['us_per_chain_sweep']:8.2f} us per chain-sweep ({r['sample_s']:.2f}s)")
        rows.append({k: r[k] for k in ("sampler", "num_chains", "num_draws", "sample_s", "compile_s",
                                       "us_per_chain_sweep")})
    return rows


def bench_many_groups(num_groups: int, num_draws: int, log, num_chains: int = 2) -> dict:
    """``J`` groups of 2 observations, ``num_draws`` draws of ``num_chains`` chains through :func:`mlgibbs.sample` with
    ``var_names`` set to the scalars: ``alpha`` is summarised by running moments, not stored per draw.

    Storing every ``alpha`` draw would take ``num_chains * num_draws * J * 4`` bytes (8 GB for two
    chains at ``J = 1e5`` and ``1e4`` draws); the peak resident memory of the process is reported.
    """
    import resource

    rng = np.random.default_rng(1)
    n = 2 * num_groups
    group = np.arange(n) % num_groups
    u = rng.normal(size=num_groups)
    alpha = 1.0 + 0.5 * u + 0.3 * rng.normal(size=num_groups)
    x = rng.normal(size=n)
    y = alpha[group] + 0.7 * x + rng.normal(size=n)
    model = mg.Model.from_arrays(y, x[:, None], group, u[:, None], priors=PRIORS)
    t0 = time.perf_counter()
    idata = mg.sample(jax.random.key(0), model, num_chains=num_chains, num_warmup=200, num_draws=num_draws,
                      var_names=["beta", "gamma", "sigma_y", "sigma_alpha"])
    wall = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {"J": num_groups, "n": n, "num_chains": num_chains, "num_draws": num_draws, "wall_s": wall,
           "peak_rss_mb": peak_mb, "alpha_draws_would_need_gb": num_chains * num_draws * num_groups * 4 / 1e9,
           "groups": sorted(mg.groups(idata)), "sampler": idata.posterior.attrs["sampler"]}
    out.update(diagnostics({k: np.asarray(idata.posterior[k]) for k in ("beta", "gamma", "sigma_y", "sigma_alpha")}))
    log(f"  J={num_groups:,}: {wall:.1f}s, peak RSS {peak_mb:,.0f} MB "
        f"(storing alpha would need {out['alpha_draws_would_need_gb']:.1f} GB), "
        f"min bulk ESS {out['min_ess_bulk']:.0f} of {num_chains * num_draws}")
    return out


def markdown_table(rows: list[dict]) -> str:
    head = ("| problem | n | J | sampler | min bulk ESS | min tail ESS | max R-hat | sample s | compile s "
            "| ms / sweep | min ESS/s | x NUTS |")
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        lines.append(
            f"| {r['problem']} | {r['n']:,} | {r['J']:,} | {r['sampler']} | {r['min_ess_bulk']:.0f} | "
            f"{r['min_ess_tail']:.0f} | {r['max_rhat']:.3f} | {r['sample_s']:.2f}{'*' if r.get('compile_included') else ''} | {r['compile_s']:.1f} | "
            f"{r['sweep_ms']:.3f} | {r['min_ess_per_s']:.1f} | {r.get('ratio_to_nuts', float('nan')):.1f} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    synth = [r for r in rows if r["problem"] == "synthetic"]
    for sampler in sorted({r["sampler"] for r in synth}):
        pts = sorted((r["n"], r["min_ess_per_s"]) for r in synth if r["sampler"] == sampler)
        ax.loglog(*zip(*pts), marker="o", label=sampler)
    ax.set_xlabel("observations n (J = n / 100 groups)")
    ax.set_ylabel("min ESS per second (all parameters)")
    ax.set_title("Synthetic varying-intercept model, 4 chains, CPU (2 cores)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="n <= 1e4 and fewer draws (a smoke run)")
    parser.add_argument("--out", type=Path, default=HERE, help="folder for results.json and the plot")
    parser.add_argument("--samplers", nargs="*", default=sorted(mg.SAMPLERS))
    parser.add_argument("--nuts-max-n", type=int, default=1_000_000,
                        help="run NUTS only up to this n (a NUTS run at n = 1e6 takes over half an hour on 2 cores)")
    parser.add_argument("--runs-from", type=Path, default=None,
                        help="take the radon and synthetic rows from this JSON ({'runs': [...]}) instead of running them")
    args = parser.parse_args(argv)
    log = lambda s: print(s, flush=True)  # noqa: E731
    num_chains, num_warmup, num_draws = 4, 500, 1000
    sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000, 1_000_000]
    rows = []
    started = time.perf_counter()

    radon = mg.Model.from_formula("log_radon ~ floor + log_uranium + (1 | county)",
                                  mg.datasets.load_radon(), priors=PRIORS)
    runs_source = None
    if args.runs_from is not None:
        loaded = json.loads(args.runs_from.read_text())
        rows, runs_source = loaded["runs"], loaded.get("source", str(args.runs_from))
        sizes = []
    else:
        log("radon Minnesota")
        rows += bench_problem("radon", radon, args.samplers, num_chains=num_chains, num_warmup=num_warmup,
                              num_draws=num_draws, nuts_draws=500 if args.quick else 1000, log=log)
    for n in sizes:
        log(f"synthetic n={n:,}")
        t0 = time.perf_counter()
        model = synthetic(n)
        build_s = time.perf_counter() - t0
        nuts_draws = 1000 if n <= 10_000 else (500 if n <= 100_000 else 200)
        if n > args.nuts_max_n:
            nuts_draws = 0
        part = bench_problem("synthetic", model, args.samplers, num_chains=num_chains, num_warmup=num_warmup,
                             num_draws=num_draws, nuts_draws=nuts_draws, log=log)
        for r in part:
            r["model_build_s"] = build_s
        rows += part

    through_sample = None
    if args.runs_from is None:
        log("radon through mg.sample, as a user calls it")
        nuts_radon = next((r for r in rows if r["problem"] == "radon" and r["sampler"] == "nuts"), None)
        through_sample = bench_through_sample(radon, nuts_radon, num_chains=num_chains, num_warmup=num_warmup,
                                              num_draws=num_draws, log=log)

    log("many chains, radon, collapsed/gibbs sweeps")
    chain_counts = [1, 10, 100, 1000] if not args.quick else [1, 100]
    many = {s: bench_many_chains(radon, s, chain_counts, num_draws=200, log=log) for s in args.samplers}

    log("many groups: J = 1e5, 1e4 draws, scalars stored, running moments of alpha")
    big_groups = bench_many_groups(num_groups=10_000 if args.quick else 100_000,
                                   num_draws=1_000 if args.quick else 10_000, num_chains=1, log=log)

    result = {
        "command": "python benchmarks/run.py" + (" --quick" if args.quick else "")
                   + (f" --nuts-max-n {args.nuts_max_n}" if args.nuts_max_n != 1_000_000 else "")
                   + (f" --runs-from {args.runs_from}" if args.runs_from else ""),
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpu_count": os.cpu_count(), "jax": jax.__version__, "backend": jax.default_backend(),
                    "python": sys.version.split()[0]},
        "dtype": str(jnp.zeros(()).dtype),
        "priors": {k: repr(v) for k, v in PRIORS.items()},
        "runs": rows,
        "runs_source": runs_source or "this run",
        "through_sample": through_sample,
        "many_chains": many,
        "many_groups": big_groups,
        "total_s": time.perf_counter() - started,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=2))
    plot(rows, args.out / "ess_per_second.png")
    log(markdown_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

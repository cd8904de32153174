"""GPU checks: 10,000 chains on radon Minnesota, and one data set of n = 1e7 observations.

Run on a machine with a GPU (``pip install -U "jax[cuda12]"`` or ``"jax[cuda13]"`` there, to match the driver),
from the repository root (its results of 2026-12-04 on an H200 are in the README)::

    python benchmarks/gpu.py                # the full check
    python benchmarks/gpu.py --smoke        # the same code at CPU-friendly sizes

Writes ``benchmarks/gpu_results.json`` (or ``--out``) after every run, so that a run cut short keeps
what it finished: for each run the device, compile and sampling time, time per chain-sweep, and the
minimum bulk ESS. The many-chain runs keep only the scalar parameters per draw and running moments of
``alpha`` (``var_names``), so 10,000 chains fit in memory. ``"grid"``'s proposal is tabulated once per
model before the timed run (``setup_s``, its compilation included; about 0 where the model already
holds it, as radon does after the first row). One more row times ``mg.sample`` on
radon as a user calls it (4 chains, its defaults), first call (compilation) and second.
The kernels run in JAX's default dtype: float32 unless ``JAX_ENABLE_X64=1``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import PRIORS, diagnostics, synthetic  # noqa: E402

import mlgibbs as mg  # noqa: E402
from mlgibbs.run import chain_runner  # noqa: E402
from mlgibbs.samplers import kernel_data  # noqa: E402

SCALARS = ("beta", "gamma", "sigma_y", "sigma_alpha")


def timed_run(model, sampler, num_chains, num_warmup, num_draws):
    kernel = mg.gibbs(model, sampler)
    t0 = time.perf_counter()
    data = kernel_data(model, sampler)   # "grid": its proposal tabulated once per model
    jax.block_until_ready(data)
    setup_s = time.perf_counter() - t0
    key_init, key_run = jax.random.split(jax.random.key(0))
    init = jax.vmap(kernel.init, in_axes=(0, None))(jax.random.split(key_init, num_chains), data)
    keys = jax.random.split(key_run, num_chains)
    run = chain_runner(kernel, num_draws=num_draws, num_warmup=num_warmup,
                       record=lambda s: {k: getattr(s, k) for k in SCALARS},
                       moments=lambda s: {"alpha": s.alpha})
    t0 = time.perf_counter()
    compiled = run.lower(keys, init, data).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    draws, _, _ = compiled(keys, init, data)
    jax.block_until_ready(draws)
    sample_s = time.perf_counter() - t0
    user = model.to_user(mg.GibbsState(alpha=None, **draws))  # the reported coordinates
    draws = {k: getattr(user, k) for k in SCALARS}
    sweeps = num_chains * (num_warmup + num_draws)
    out = {"sampler": sampler, "n": model.num_obs, "J": model.num_groups, "num_chains": num_chains,
           "num_warmup": num_warmup, "num_draws": num_draws, "setup_s": setup_s, "compile_s": compile_s,
           "sample_s": sample_s, "ns_per_chain_sweep": 1e9 * sample_s / sweeps,
           "device": str(jax.devices()[0])}
    out.update(diagnostics(draws))
    print(json.dumps(out), flush=True)
    return out


def user_call(model) -> dict:
    """``mg.sample`` on ``model`` as a user calls it: wall time of a first call and of a second."""
    times = []
    for seed in (0, 1):
        t0 = time.perf_counter()
        idata = mg.sample(seed, model, check_convergence=False)
        times.append(time.perf_counter() - t0)
    out = {"run": "mg.sample", "sampler": idata.posterior.attrs["sampler"], "n": model.num_obs,
           "J": model.num_groups, "first_call_s": times[0], "second_call_s": times[1],
           "device": str(jax.devices()[0])}
    post = idata.posterior
    out.update(diagnostics({k: np.asarray(post[k]) for k in SCALARS}))
    print(json.dumps(out), flush=True)
    return out


def write(path: Path, rows: list) -> None:
    path.write_text(json.dumps({"backend": jax.default_backend(), "jax": jax.__version__,
                                "x64": bool(jax.config.jax_enable_x64), "runs": rows}, indent=2))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "gpu_results.json")
    parser.add_argument("--samplers", nargs="*", default=sorted(mg.SAMPLERS))
    args = parser.parse_args(argv)
    chains = 100 if args.smoke else 10_000
    big_n = 100_000 if args.smoke else 10_000_000
    radon = mg.Model.from_formula("log_radon ~ floor + log_uranium + (1 | county)",
                                  mg.datasets.load_radon(), priors=PRIORS)
    rows = [user_call(radon)]
    write(args.out, rows)
    for s in args.samplers:
        rows.append(timed_run(radon, s, chains, 200, 200))
        write(args.out, rows)
    t0 = time.perf_counter()
    big = synthetic(big_n)
    build_s = time.perf_counter() - t0
    for s in args.samplers:
        row = timed_run(big, s, 4, 500, 1000)
        row["model_build_s"] = build_s
        rows.append(row)
        write(args.out, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())

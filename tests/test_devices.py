"""Chains sharded over several devices (``mlgibbs.devices``), on CPU devices forced with
``XLA_FLAGS=--xla_force_host_platform_device_count=2`` in a subprocess (the flag must be set before JAX
starts):

* the sampling program's outputs lie on both devices (the chain axis is partitioned, two chains each);
* the draws are those of the same run on one device, chain by chain (the same keys; equal up to the
  rounding of a differently vectorised program, far below any difference a wrong key or a permuted chain
  would make), for the seed model and a multilevel model with a correlated block.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np

import mlgibbs as mg
from mlgibbs.devices import num_chain_devices

SCRIPT = textwrap.dedent("""
    import sys, warnings
    warnings.filterwarnings("ignore")
    import jax, numpy as np
    import mlgibbs as mg
    import mlgibbs.run as run

    assert jax.device_count() == 2, jax.devices()
    spread = []
    original = run.run_program

    def spy(program, args, **kw):
        out = program(*args, kw["num_warmup"], kw["thin"], np.int32(kw["first_sweep"]))
        spread.append(sorted({len(leaf.sharding.device_set) for leaf in jax.tree.leaves(out["draws"])}))
        return original(program, args, **kw)

    run.run_program = spy
    radon = mg.Model.from_formula("log_radon ~ floor + log_uranium + (1 | county)", mg.datasets.load_radon())
    sleep = mg.Model.from_formula("Reaction ~ Days + (1 + Days | Subject)", mg.datasets.load_sleepstudy())
    a = mg.sample(0, radon, num_chains=4, num_warmup=50, num_draws=30, check_convergence=False)
    b = mg.sample(0, sleep, num_chains=4, num_warmup=50, num_draws=30, check_convergence=False)
    np.savez(sys.argv[1], alpha=a.posterior["alpha"].values, alpha_Subject=b.posterior["alpha_Subject"].values,
             spread=np.asarray(spread))
""")


def test_the_chains_go_to_the_largest_divisor_of_the_device_count():
    assert num_chain_devices(4, 1) == 1
    assert num_chain_devices(4, 2) == 2
    assert num_chain_devices(4, 8) == 4
    assert num_chain_devices(6, 4) == 3
    assert num_chain_devices(3, 2) == 1
    assert num_chain_devices(1, 8) == 1


def test_chains_on_two_devices_are_the_chains_on_one(tmp_path):
    out = tmp_path / "two.npz"
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", MLGIBBS_COMPILATION_CACHE="0")
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(out)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    two = np.load(out)
    assert two["spread"].tolist() == [[2], [2]], two["spread"]    # every output on both devices
    radon = mg.Model.from_formula("log_radon ~ floor + log_uranium + (1 | county)", mg.datasets.load_radon())
    sleep = mg.Model.from_formula("Reaction ~ Days + (1 + Days | Subject)", mg.datasets.load_sleepstudy())
    a = mg.sample(0, radon, num_chains=4, num_warmup=50, num_draws=30, check_convergence=False)
    b = mg.sample(0, sleep, num_chains=4, num_warmup=50, num_draws=30, check_convergence=False)
    np.testing.assert_allclose(two["alpha"], a.posterior["alpha"].values, rtol=0, atol=1e-4)
    np.testing.assert_allclose(two["alpha_Subject"], b.posterior["alpha_Subject"].values, rtol=1e-4, atol=1e-3)

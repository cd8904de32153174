"""The univariate slice sampler (:func:`mlgibbs.conditionals.slice_sample`), alone and under ``vmap``.

What is tested
--------------
* Invariance and convergence, batched as the samplers use it (one ``vmap`` over 20,000 lanes): exact
  draws of a skewed target (``log x`` for ``x ~ Gamma(3, 1)``) in, one transition, KS test of the output
  against the target; and lanes all started far in the tail (``log x = -5``, where the target CDF is 5e-8), fifteen transitions, KS
  test. Bonferroni over the two at family-wise level 1e-4. An identity kernel passes the first and
  fails the second; a kernel with a wrong target fails the first.
* No ``while_loop`` condition evaluates the log density. Under ``vmap`` a batched while loop evaluates
  its predicate twice, once to decide whether to go on and once to select the lanes that take the
  body's result; two compilations of ``logdensity(edge) > level`` can round differently in float32
  when the density at the edge is within rounding of the slice level, and then no lane moves while
  the loop goes on for ever. This hung 1,000 chains of the collapsed sampler on radon after a few
  hundred sweeps. The predicate must be computed once, in the body, and carried. The check walks
  the jaxpr, nested jaxprs included (``jax.extend.core.jaxprs_in_params``; it was
  ``jax.core.jaxprs_in_params`` before JAX 0.12 removed it), and is itself tested: it must find the
  log density in the condition of a deliberately naive stepping-out loop, nested inside ``jit``.
* The regression itself: 1,000 chains of the collapsed sampler on radon, 400 sweeps, in a subprocess
  with a time limit (it hung within 70 to 500 sweeps before the fix; it takes about 10 s after it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.extend.core
import jax.numpy as jnp
import numpy as np
from scipy import stats

from mlgibbs.conditionals import slice_sample

FAMILY_ALPHA = 1e-4
NUM_LANES = 20_000
SHAPE = 3.0  # target: theta = log x, x ~ Gamma(SHAPE, 1); density exp(SHAPE theta - e^theta)


def log_target(theta):
    return SHAPE * theta - jnp.exp(theta)


def target_cdf(theta):
    return stats.gamma(SHAPE).cdf(np.exp(theta))


def transitions(theta0, seed: int, num: int):
    step = jax.jit(jax.vmap(lambda key, x: slice_sample(key, x, log_target, 1.0)))
    theta = jnp.asarray(theta0, jnp.float32)
    for key in jax.random.split(jax.random.key(seed), num):
        theta = step(jax.random.split(key, theta.shape[0]), theta)
    return np.asarray(theta, np.float64)


def test_slice_invariance_and_convergence_under_vmap():
    rng = np.random.default_rng(0)
    exact = np.log(rng.gamma(SHAPE, size=NUM_LANES))
    out = transitions(exact, seed=1, num=1)
    assert np.mean(out == exact.astype(np.float32)) < 0.01, "the kernel does not move"
    p_invariance = stats.kstest(out, target_cdf).pvalue
    far = transitions(np.full(NUM_LANES, -5.0), seed=2, num=15)
    p_convergence = stats.kstest(far, target_cdf).pvalue
    assert p_invariance > FAMILY_ALPHA / 2, p_invariance
    assert p_convergence > FAMILY_ALPHA / 2, p_convergence


def _jaxprs_in_params(params):
    """The jaxprs nested in an equation's parameters (in ``jax.extend.core``; ``jax.core`` before)."""
    find = getattr(jax.extend.core, "jaxprs_in_params", None) or jax.core.jaxprs_in_params
    return find(params)


def _while_equations(jaxpr):
    """Every ``while`` equation of ``jaxpr``, at any depth (inside ``jit``, ``cond``, other loops)."""
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "while":
            yield eqn
        for sub in _jaxprs_in_params(eqn.params):
            yield from _while_equations(sub)


def _primitives(jaxpr) -> set[str]:
    """Names of the primitives ``jaxpr`` evaluates, at any depth."""
    names = set()
    for eqn in jaxpr.eqns:
        names.add(eqn.primitive.name)
        for sub in _jaxprs_in_params(eqn.params):
            names |= _primitives(sub)
    return names


def _while_conditions(fn, *args) -> list[set[str]]:
    """The primitives of the condition of every while loop of ``jax.vmap(fn)``."""
    closed = jax.make_jaxpr(jax.vmap(fn))(*args)
    return [_primitives(eqn.params["cond_jaxpr"].jaxpr) for eqn in _while_equations(closed.jaxpr)]


def _batch(size: int = 4):
    return jax.random.split(jax.random.key(0), size), jnp.zeros(size)


def test_no_while_condition_evaluates_the_log_density():
    conditions = _while_conditions(lambda key, x: slice_sample(key, x, log_target, 1.0), *_batch())
    assert len(conditions) == 3, "stepping out (two loops) and shrinkage"
    for primitives in conditions:
        assert "exp" not in primitives, f"a while condition evaluates the log density: {primitives}"


def test_the_while_condition_check_finds_a_naive_loop():
    """The check above can fail: a stepping-out loop that tests ``log_target(edge) > level`` in its
    condition, hidden inside ``jit``, is found, and its condition evaluates ``exp``."""

    @jax.jit
    def naive_step_out(edge, level):
        return jax.lax.while_loop(lambda e: log_target(e) > level, lambda e: e + 1.0, edge)

    def run(key, x):
        level = log_target(x) - jax.random.exponential(key)
        return naive_step_out(x + 1.0, level)

    conditions = _while_conditions(run, *_batch())
    assert len(conditions) == 1
    assert "exp" in conditions[0], conditions[0]


def test_many_collapsed_chains_do_not_hang():
    script = textwrap.dedent("""
        import jax, mlgibbs as mg
        from mlgibbs.priors import HalfNormal, Normal
        priors = {"beta": Normal(0.0, 10.0), "gamma": Normal(0.0, 10.0),
                  "sigma_y": HalfNormal(1.0), "sigma_alpha": HalfNormal(1.0)}
        model = mg.Model.from_formula("log_radon ~ floor + log_uranium + (1 | county)",
                                      mg.datasets.load_radon(), priors=priors)
        idata = mg.sample(jax.random.key(0), model, num_chains=1000, num_warmup=300, num_draws=100,
                          sampler="collapsed", var_names=["sigma_alpha"], log_likelihood=False)
        print(float(idata.posterior["sigma_alpha"].mean()))
    """)
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True,
                            timeout=600, env={**os.environ, "PYTHONPATH": str(root)})
    assert result.returncode == 0, result.stderr[-3000:]

"""The parameter-expanded scale moves of the multilevel sampler against their definition, row by row.

What is tested
--------------
:func:`mlgibbs.samplers.mixed.scale_moves` moves every scalar covariance block in turn,
``(delta_j, sigma_j) -> (c delta_j, |c| sigma_j)`` with ``c`` drawn given the *current* residuals. The
library forms every block's ``A = sum v^2`` and ``B = sum v (resid + v)`` from one pass over the rows
(``V'V`` and ``V' resid``, with the earlier moves' changes to the residuals folded in algebraically).
The reference here does what the docstring defines, in NumPy float64 and independently of that
shortcut: for each block, recompute the deviations and the residuals from the current state, form
``A`` and ``B`` from the rows, draw ``c`` with the same normal (and uniform) variates, rescale, and go
on to the next block. The design has every kind of scalar block (the intercept and the uncorrelated
slope of ``(1 + x || g)``, whose coordinates differ from the kernel's centred ones; a nested pair
``a/b``; a factor with a group-level predictor) and the three kinds of draw (uniform: Gaussian;
half-normal: Gaussian with the prior's factor; half-Cauchy: independence Metropolis-Hastings). The
results must agree to float64 rounding, and a reference that leaves out the earlier moves' effect on
the residuals must not (the check has power).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

import mlgibbs as mg
from mlgibbs.priors import HalfCauchy, HalfNormal, Uniform
from mlgibbs.samplers.mixed import _block_index, deviations, mixed_kernel, scale_moves


def make_model():
    rng = np.random.default_rng(5)
    n = 300
    g = rng.integers(0, 8, n)
    a = rng.integers(0, 5, n)
    b = rng.integers(0, 3, n)
    ua = np.array([0.4, -1.0, 0.3, 1.2, 0.1])[a]
    x = rng.normal(size=n) + 3.0
    y = (x + rng.normal(size=8)[g] + 0.5 * rng.normal(size=8)[g] * x + ua + rng.normal(size=5)[a]
         + rng.normal(size=(5, 3))[a, b] + rng.normal(size=n))
    df = pd.DataFrame({"y": y, "x": x, "ua": ua, "g": [f"G{i}" for i in g], "a": [f"A{i}" for i in a],
                       "b": [f"B{i}" for i in b]})
    priors = {"g": HalfNormal(1.0), "a": HalfCauchy(1.0), "a:b": Uniform()}
    return mg.Model.from_formula("y ~ x + ua + (1 + x || g) + (1 | a/b)", df, priors=priors)


def reference(model, state, key, fold_in_earlier_moves=True):
    """The moves by their definition (module docstring), in NumPy float64."""
    s, data, priors = model.structure, model.data, model.kernel_priors
    W, t, codes = (np.asarray(v, np.float64) for v in (data.W, data.t, data.codes))
    codes = codes.astype(int)
    slices = s.column_slices()
    blocks = [(f, j) for f in range(s.num_factors) for j, size in s.cov_blocks[f] if size == 1]
    key_z, key_u = jax.random.split(key)
    normals = np.asarray(jax.random.normal(key_z, (len(blocks),), jnp.float64))
    uniforms = np.asarray(jax.random.uniform(key_u, (len(blocks),), jnp.float64))
    beta = np.asarray(state.beta)
    gamma = [np.asarray(v) for v in state.gamma]
    b = [np.asarray(v).copy() for v in state.b]
    cov = [np.asarray(v).copy() for v in state.cov]
    U = [np.asarray(u) for u in data.U]
    var_y = float(state.sigma_y) ** 2

    def fitted(b):
        out = W[:, :s.p] @ beta
        for f, (start, d) in enumerate(slices):
            out = out + np.sum(W[:, start:start + d] * b[f][codes[:, f]], axis=1)
        return out

    resid0 = t - fitted(b)
    for i, (f, j) in enumerate(blocks):
        start, d = slices[f]
        c_inv = np.asarray(data.coef_maps[f])
        c_map = np.linalg.inv(c_inv)
        shift = np.zeros_like(b[f])
        k = s.intercepts[f]
        if s.q[f] and k >= 0:
            shift[:, k] = U[f] @ gamma[f]
        dev = (b[f] - shift) @ c_inv.T
        v = (W[:, start:start + d] @ c_map[:, j]) * dev[codes[:, f], j]
        resid = t - fitted(b) if fold_in_earlier_moves else resid0
        A, B = np.sum(v**2), np.sum(v * (resid + v))
        prior = priors.cov[f][_block_index(s, f, j)]
        sigma = np.sqrt(cov[f][j, j])
        if isinstance(prior, (Uniform, HalfNormal)):
            precision = A / var_y + (cov[f][j, j] / prior.scale**2 if isinstance(prior, HalfNormal) else 0.0)
            c = (B / var_y) / precision + normals[i] / np.sqrt(precision)
        else:
            proposal = B / A + np.sqrt(var_y / A) * normals[i]
            log_ratio = float(prior.log_prob(abs(proposal) * sigma) - prior.log_prob(sigma))
            c = proposal if np.log(uniforms[i]) < log_ratio and proposal != 0 else 1.0
        dev[:, j] *= c
        b[f] = dev @ c_map.T + shift
        cov[f][j, :] *= abs(c)
        cov[f][:, j] *= abs(c)
    return b, cov


def test_scale_moves_follow_their_definition():
    with jax.enable_x64(True):
        model = make_model()
        s, data = model.structure, model.data
        kernel = mixed_kernel(s, model.kernel_priors)
        run = jax.jit(lambda k: jax.lax.fori_loop(0, 3, lambda i, st: kernel.step(jax.random.fold_in(k, i), st, data),
                                                  kernel.init(k, data)))
        move = jax.jit(lambda k, st: scale_moves(s, model.kernel_priors, k, st, data))
        a = [f.name for f in model.factors].index("a")       # the half-Cauchy scale: a Metropolis-Hastings move
        accepted = 0
        for seed in range(6):
            key_state, key = jax.random.split(jax.random.key(seed))
            state = run(key_state)                             # a state the sampler visits
            moved = move(key, state)
            b_ref, cov_ref = reference(model, state, key)
            for f in range(s.num_factors):
                np.testing.assert_allclose(np.asarray(moved.b[f]), b_ref[f], rtol=1e-9, atol=1e-10)
                np.testing.assert_allclose(np.asarray(moved.cov[f]), cov_ref[f], rtol=1e-9, atol=1e-12)
            changed = [not np.allclose(np.asarray(state.cov[f]), cov_ref[f]) for f in range(s.num_factors)]
            assert all(c for f, c in enumerate(changed) if f != a), "the Gaussian moves always move"
            accepted += changed[a]
            # power: the residuals must include the earlier blocks' moves
            b_wrong, _ = reference(model, state, key, fold_in_earlier_moves=False)
            assert not all(np.allclose(np.asarray(moved.b[f]), b_wrong[f], rtol=1e-6) for f in range(s.num_factors))
        assert accepted, "no Metropolis-Hastings move accepted in six tries: the check would not cover that branch"


def test_deviations_are_the_effects_less_their_group_level_means():
    with jax.enable_x64(True):
        model = make_model()
        s = model.structure
        f = [fac.name for fac in model.factors].index("a")
        state = mixed_kernel(s, model.kernel_priors).init(jax.random.key(0), model.data)
        state = state._replace(gamma=tuple(jnp.ones_like(g) for g in state.gamma))
        dev = np.asarray(deviations(s, model.data.U, state.gamma, state.b, f))
        expected = np.asarray(state.b[f]).copy()
        expected[:, s.intercepts[f]] -= np.asarray(model.data.U[f]) @ np.ones(s.q[f])
        np.testing.assert_allclose(dev, expected)

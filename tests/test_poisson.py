"""The Poisson family (``family="poisson"``): input checks, output, the proposals' normalizers, Geweke's test.

The kernel (:mod:`mlgibbs.conditionals.poisson`) is Metropolis-Hastings with IWLS Gaussian proposals: its
exactness rests on the proposal densities, i.e. on the log normalizers of the tree pass, which are checked
against dense linear algebra (the whole chain, and each subtree given ``rho``). Geweke's (2004)
joint-distribution test as in ``tests/test_negbinomial.py``: the marginal-conditional simulator draws
``theta`` from the prior with NumPy and ``y`` by ``numpy.random.Generator.poisson``; the successive-conditional
one alternates a sweep with a fresh ``y`` by ``jax.random.poisson``. Cases: nested ``(1 | a/b)`` (subtrees of
two levels) and crossed chains with a correlated Huang-Wand slope block and a group-level predictor
(``gamma`` in both parametrizations, the parameter-expanded moves of a correlated block). Power: every
proposal accepted (the Metropolis-Hastings correction left out), and the slice step of the parameter-expanded
moves without its Jacobian (a slip made while writing it: it pulls the scales towards 0), must each be
rejected.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import mlgibbs as mg
import mlgibbs.conditionals.poisson as poisson
from mlgibbs.priors import HalfNormal, HuangWand, Normal
from mlgibbs.samplers import mixed as mixed_sampler
from mlgibbs.samplers.mixed import fitted_values
from tests.test_glm_geweke import fresh_kernel, parameter_functions, z_crit
from tests.test_mixed_geweke import user_mean
from tests.test_negbinomial import BETA, count_functions, counts_frame, draw_coefficients, posterior_eta
from tests.test_negbinomial import geweke_z as count_geweke_z


# ------------------------------------------------------------------ bad input (bad counts: test_negbinomial)
def test_bad_options():
    df = counts_frame()
    with pytest.raises(ValueError, match="trials="):
        mg.Model.from_formula("n ~ x + (1 | g)", df, family="poisson", trials=3)
    with pytest.raises(ValueError, match="sigma_y"):
        mg.Model.from_formula("n ~ x + (1 | g)", df, family="poisson", priors={"sigma_y": HalfNormal(1)})
    with pytest.raises(ValueError, match="'r'"):
        mg.Model.from_formula("n ~ x + (1 | g)", df, family="poisson", priors={"r": mg.priors.Gamma(1.0, 1.0)})


# ------------------------------------------------------------------ output
def test_output_log_likelihood_replicates_and_predict():
    df = mg.datasets.load_grouseticks()
    model = mg.Model.from_formula("TICKS ~ YEAR + scale(HEIGHT) + (1 | BROOD) + (1 | LOCATION)", df,
                                  family="poisson")
    idata = mg.sample(3, model, num_chains=2, num_warmup=100, num_draws=50, posterior_predictive=True,
                      check_convergence=False)
    post = idata.posterior
    assert "sigma_y" not in post and "r" not in post
    ll = np.asarray(idata.log_likelihood["TICKS"])
    assert ll.shape == (2, 50, len(df)) and np.all(np.isfinite(ll))
    values = {k: np.asarray(post[k]) for k in post.data_vars}
    mu = np.exp(posterior_eta(model, post))
    np.testing.assert_allclose(ll, stats.poisson.logpmf(df["TICKS"].to_numpy(), mu), rtol=2e-4, atol=2e-4)
    ppc = np.asarray(idata.posterior_predictive["TICKS"])
    assert ppc.shape == (2, 50, len(df)) and np.all(ppc >= 0) and np.all(ppc == np.round(ppc))
    pred = mg.predict(idata, model, df).predictions
    np.testing.assert_allclose(np.asarray(pred["mu"]), mu, rtol=1e-4)
    new = np.asarray(pred["TICKS"])
    assert np.all(new == np.round(new)) and np.all(new >= 0)
    z = (new - mu) / np.sqrt(mu)              # given each draw's mu: independent, mean and variance mu
    assert abs(np.mean(z)) < 4.0 / np.sqrt(z.size), np.mean(z)
    assert abs(np.mean(z**2) - 1.0) < 0.1, np.mean(z**2)
    # every chain moves (the Metropolis-Hastings blocks are not stuck): the intercept and the effects change
    for name in ("gamma_LOCATION", "alpha_BROOD"):
        first = values[name].reshape(2, 50, -1)[..., 0]
        assert np.all(np.mean(first[:, 1:] != first[:, :-1], axis=1) > 0.5), name


# ------------------------------------------------------------------ the proposals' normalizers
def _dense_check(formula, seed=0):
    """Log normalizers of the tree pass against dense linear algebra, for random weights and linear terms."""
    from mlgibbs.conditionals.tree import chain_log_normalizer, subtree_log_normalizers

    with jax.enable_x64(True):
        df = counts_frame()
        model = mg.Model.from_formula(formula, df, family="poisson", priors={"beta": Normal(0.0, 2.0)})
        data, st = model.data, model.structure
        state = mixed_sampler.mixed_init(st, jax.random.key(seed), data)
        rng = np.random.default_rng(seed)
        state = state._replace(beta=jnp.asarray(rng.normal(size=st.p)),
                               gamma=tuple(jnp.asarray(rng.normal(size=g.shape)) for g in state.gamma),
                               b=tuple(jnp.asarray(rng.normal(size=b.shape)) for b in state.b))
        precisions = mixed_sampler.effect_precisions(state, data)
        w = jnp.asarray(rng.uniform(0.2, 3.0, data.t.shape[0]))
        s = jnp.asarray(rng.normal(size=data.t.shape[0]))
        k = 0
        chain = st.chains[k]
        outside = tuple(f for f in range(st.num_factors) if f not in chain)
        offsets = mixed_sampler._row_effects(st, data, state.b, outside) if outside else jnp.zeros_like(w)
        inputs = mixed_sampler._chain_inputs(st, k, state, data, precisions, w, s)
        P = st.p + sum(st.q)
        sizes = [state.b[f].size for f in chain]

        def unpack(x):
            beta, gammas = x[:st.p], []
            at = st.p
            for q in st.q:
                gammas.append(x[at:at + q])
                at += q
            b = list(state.b)
            for f, size in zip(chain, sizes):
                b[f] = x[at:at + size].reshape(state.b[f].shape)
                at += size
            return beta, tuple(gammas), tuple(b)

        def log_integrand(x, with_root):
            """The canonical Gaussian of the chain (priors' normalizers left out)."""
            beta, gamma, b = unpack(x)
            a = fitted_values(st, data.W, data.codes, beta, b) - offsets
            total = jnp.sum((s - w * offsets) * a - 0.5 * w * a * a)
            for f in chain:
                dev = mixed_sampler.deviations(st, data.U, gamma, b, f)
                total = total - 0.5 * jnp.sum((dev @ precisions[f]) * dev)
            if with_root:
                lam, h = mixed_sampler._root_prior(st, data, precisions, state.b, outside)
                rho = x[:P]
                total = total - 0.5 * rho @ lam @ rho + h @ rho
            return total

        x0 = jnp.zeros(P + sum(sizes))
        A = -jax.hessian(log_integrand)(x0, True)
        l = jax.grad(log_integrand)(x0, True)
        dense = 0.5 * l @ jnp.linalg.solve(A, l) - 0.5 * jnp.linalg.slogdet(A)[1]
        np.testing.assert_allclose(float(chain_log_normalizer(*inputs)), float(dense), rtol=1e-10)
        # given rho: the subtrees' normalizers sum to the effects' Gaussian's (rho fixed)
        rho = jnp.concatenate([state.beta, *state.gamma])
        x_rho = jnp.concatenate([rho, jnp.zeros(sum(sizes))])
        fn = lambda e: log_integrand(jnp.concatenate([rho, e]), False)  # noqa: E731
        e0 = jnp.zeros(sum(sizes))
        A_e = -jax.hessian(fn)(e0)
        l_e = jax.grad(fn)(e0)
        dense_e = 0.5 * l_e @ jnp.linalg.solve(A_e, l_e) - 0.5 * jnp.linalg.slogdet(A_e)[1] + fn(e0)
        per_subtree = subtree_log_normalizers(*inputs[:6], rho)
        assert per_subtree.shape == (state.b[chain[0]].shape[0],)
        np.testing.assert_allclose(float(jnp.sum(per_subtree)), float(dense_e), rtol=1e-10)
        del x_rho


@pytest.mark.parametrize("formula", ["n ~ x + ua + (1 + x | a/b)", "n ~ x + (1 + x | g) + (1 | c)"])
def test_tree_log_normalizers_against_dense_algebra(formula):
    _dense_check(formula)


# ------------------------------------------------------------------ Geweke
class Case(NamedTuple):
    name: str
    formula: str
    priors: dict
    num_chains: int = 300
    num_steps: int = 30


CASES = [
    Case("nested", "n ~ x + (1 | a/b)", {"a": HalfNormal(0.6), "a:b": HalfNormal(0.4)}),
    Case("crossed-slopes", "n ~ x + ua + (1 + x | a) + (1 | c)",
         {"a": HuangWand(4.0, [0.3, 0.2]), "c": HalfNormal(0.5)}),
]


def case_model(case: Case):
    priors = dict(case.priors)
    priors["beta"] = Normal(0.0, BETA)
    with jax.enable_x64(True):
        return mg.Model.from_formula(case.formula, counts_frame(), priors=priors, family="poisson")


def draw_joint(rng, model, size):
    theta = draw_coefficients(rng, model, size)
    return theta, rng.poisson(np.exp(user_mean(model, theta))).astype(np.float64)


def functions(model, theta, y, xp):
    out, eta = parameter_functions(model, theta, xp)
    return xp.stack(out + count_functions(y, eta, xp), axis=-1)


def geweke_z(model, step, *, num_chains, num_steps, seed=0):
    return count_geweke_z(model, step, num_chains=num_chains, num_steps=num_steps, seed=seed,
                          draw_joint=draw_joint, functions=functions,
                          new_counts=lambda key, state, eta: jax.random.poisson(key, jnp.exp(eta), eta.shape))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_geweke(case):
    model = case_model(case)
    z = geweke_z(model, fresh_kernel(model).step, num_chains=case.num_chains, num_steps=case.num_steps)
    assert np.all(np.isfinite(z))
    assert np.max(np.abs(z)) < z_crit(z.size), np.round(z, 2)


def test_geweke_rejects_proposals_taken_without_the_correction(monkeypatch):
    monkeypatch.setattr(poisson, "metropolis_accept", lambda key, log_ratio: jnp.ones(jnp.shape(log_ratio), bool))
    case = CASES[0]
    model = case_model(case)
    z = geweke_z(model, fresh_kernel(model).step, num_chains=case.num_chains, num_steps=case.num_steps)
    assert np.max(np.abs(z)) > z_crit(z.size), np.round(z, 2)


def test_geweke_rejects_the_scale_moves_without_their_jacobian(monkeypatch):
    monkeypatch.setattr(poisson, "px_log_jacobian", lambda u, size: size * u)
    case = CASES[0]
    model = case_model(case)
    z = geweke_z(model, fresh_kernel(model).step, num_chains=case.num_chains, num_steps=case.num_steps)
    assert np.max(np.abs(z)) > z_crit(z.size), np.round(z, 2)

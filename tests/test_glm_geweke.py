"""Geweke's (2004) joint-distribution test of the augmented samplers of the binomial-type families.

As in ``test_mixed_geweke`` (whose independent prior simulators this file reuses): the
marginal-conditional simulator draws ``theta`` from the prior with NumPy/SciPy and ``y`` from the
family's likelihood (``numpy.random.Generator.binomial`` of the inverse link); the successive-conditional
simulator alternates one sweep of the kernel (the augmentation draw, the weighted location blocks, the
scales, the parameter-expanded moves) with a fresh ``y`` given the new ``theta``. Each chain starts from
an exact joint draw, so every pair is an exact joint draw if the sweep leaves the posterior invariant;
the means of test functions (fixed effects and their squares, log scales, bounded transforms of the
effects, correlations, the whitened deviations' chi-square pivot, and functions of ``y`` joint with
``eta``) must agree, ``z`` with a Bonferroni threshold at family-wise level 1e-3 per case.

Cases: Bernoulli (logit) with a correlated varying intercept and slope under Huang-Wand; binomial
(logit) with trials 1 to 6 on a nested ``(1 | a/b)``; probit (Bernoulli) on crossed factors with a
group-level predictor; binomial-probit with ``||`` slopes. Power: an augmentation that draws the
Polya-Gamma weights at ``eta / 2`` (a plausible slip of the ``c/2`` in ``PG(1, c) = J*(1, c/2)/4``), and
Albert-Chib latents with a mean shrunk by 20%, and the collapsed slice step of the scales without the
effects' prior normalizer, must each be rejected by the same statistics. The ``"augmented-px"`` sampler
(no collapsed scale draws) is tested on the nested binomial and the crossed probit cases.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

import mlgibbs as mg
import mlgibbs.conditionals.augmentation as augmentation
from mlgibbs.priors import HalfNormal, HuangWand, InverseGamma, Normal
from mlgibbs.samplers.mixed import fitted_values, mixed_kernel
from tests.test_mixed_geweke import BETA_SCALE, FAMILY_LEVEL, draw_theta, frame, user_mean


class Case(NamedTuple):
    name: str
    formula: str
    family: str
    priors: dict
    trials: bool = False
    num_chains: int = 400
    num_steps: int = 40


CASES = [
    Case("bernoulli-slopes", "yb ~ x + (1 + x | g)", "bernoulli", {"g": HuangWand(2.0, [1.0, 0.5])}),
    Case("binomial-nested", "ys ~ x + (1 | a/b)", "binomial", {"a": HalfNormal(1.0), "a:b": InverseGamma(3.0, 1.0)},
         trials=True),
    Case("probit-crossed", "yb ~ ua + (1 | a) + (1 | c)", "probit", {"a": HalfNormal(0.7), "c": HalfNormal(1.0)}),
    Case("probit-trials-uncorrelated", "ys ~ x + (1 + x || g)", "probit", {"g": HalfNormal(0.8)}, trials=True),
    # two correlated blocks in one nested chain: the collapsed move of a's redraws b_a before a:b's conditions on it
    Case("bernoulli-nested-slopes", "yb ~ x + (1 + x | a/b)", "bernoulli",
         {"a": HuangWand(2.0, [1.0, 0.5]), "a:b": HuangWand(2.0, [0.7, 0.4])}, num_chains=800),
]


def glm_frame():
    df = frame()
    rng = np.random.default_rng(3)
    df["m"] = rng.integers(1, 7, len(df))
    df["yb"] = np.arange(len(df)) % 2          # any valid response: only the design matters here
    df["ys"] = np.minimum(df["yb"] * 2, df["m"])
    df["x"] = df["x"] - 2.0
    return df


def case_model(case: Case):
    priors = dict(case.priors)
    priors["beta"] = Normal(0.0, BETA_SCALE)
    with jax.enable_x64(True):
        return mg.Model.from_formula(case.formula, glm_frame(), priors=priors, family=case.family,
                                     trials="m" if case.trials else None)


def probability(family, eta, xp):
    if family == "probit":
        return special.ndtr(eta) if xp is np else jax.scipy.special.ndtr(eta)
    return special.expit(eta) if xp is np else jax.nn.sigmoid(eta)


def functions(model, theta, y, xp):
    """Test functions of a pair (user's coordinates), stacked ``(..., m)``."""
    out, eta = parameter_functions(model, theta, xp)
    m = xp.asarray(model.trials)
    p = probability(model.family.name, eta, xp)
    out.append(xp.mean((y - m * p) * xp.tanh(eta), axis=-1))      # the likelihood's score direction
    out.append(xp.mean(y / m, axis=-1))
    out.append(xp.mean(y * xp.tanh(eta), axis=-1))
    return xp.stack(out, axis=-1)


def parameter_functions(model, theta, xp):
    """The test functions of the parameters (a list) and the linear predictor ``eta`` of every observation."""
    out = []
    beta = theta["beta"]
    out += [beta[..., j] for j in range(beta.shape[-1])] + [beta[..., j] ** 2 for j in range(beta.shape[-1])]
    eta = theta["beta"] @ xp.asarray(model.X.T)
    for f, factor in enumerate(model.factors):
        b = theta[f"alpha_{factor.name}"]
        eta = eta + xp.einsum("...ij,ij->...i", b[..., factor.codes, :], xp.asarray(factor.Z))
        cov = theta[f"cov_{factor.name}"]
        d = cov.shape[-1]
        sd = xp.sqrt(xp.diagonal(cov, axis1=-2, axis2=-1))
        out += [xp.log(sd[..., j]) for j in range(d)]
        out += [xp.tanh(b[..., 0, j]) for j in range(d)]
        for start, width in factor.blocks:
            for i in range(start, start + width):
                for j in range(i + 1, start + width):
                    out.append(cov[..., i, j] / (sd[..., i] * sd[..., j]))
        gamma = theta[f"gamma_{factor.name}"]
        out += [gamma[..., j] for j in range(gamma.shape[-1])]
        dev = b
        k = model.structure.intercepts[f]
        if gamma.shape[-1] and k >= 0:
            shift = gamma @ xp.asarray(model.U[f].T)
            dev = b - shift[..., :, None] * xp.asarray(np.eye(d)[k])
        solved = xp.linalg.solve(cov[..., None, :, :], dev[..., :, :, None])[..., 0]
        out.append(xp.sum(dev * solved, axis=(-2, -1)))
    return out, eta


def draw_y(rng, model, theta):
    p = probability(model.family.name, user_mean(model, theta), np)
    return rng.binomial(model.trials.astype(np.int64), p).astype(np.float64)


def successive_conditional(model, step, num_chains, num_steps, seed):
    rng = np.random.default_rng(seed + 1)
    theta0 = draw_theta(rng, model, num_chains)
    y0 = draw_y(rng, model, theta0)
    state0 = jax.tree.map(jnp.asarray, model.to_kernel(theta0))
    W, _, codes = model.kernel_rows
    W, codes = jnp.asarray(W), jnp.asarray(codes)
    trials = jnp.asarray(model.trials)
    family = model.family.name

    def chain(key, state, y):
        def body(carry, key):
            state, y = carry
            key_step, key_y = jax.random.split(key)
            state = step(key_step, state, model.data_for(y))
            user = model.to_user(state, xp=jnp)
            g = functions(model, user, y, jnp)
            eta = fitted_values(model.structure, W, codes, state.beta, state.b)
            y_new = jax.random.binomial(key_y, trials, probability(family, eta, jnp)).astype(y.dtype)
            return (state, y_new), g

        _, gs = jax.lax.scan(body, (state, y), jax.random.split(key, num_steps))
        return gs

    keys = jax.random.split(jax.random.key(seed), num_chains)
    return np.asarray(jax.jit(jax.vmap(chain))(keys, state0, jnp.asarray(y0)))


def geweke_z(model, step, *, num_chains, num_steps, seed=0):
    with jax.enable_x64(True):
        sc = successive_conditional(model, step, num_chains, num_steps, seed)
    rng = np.random.default_rng(seed)
    theta = draw_theta(rng, model, 20_000)
    mc = functions(model, theta, draw_y(rng, model, theta), np)
    per_chain = sc.mean(axis=1)
    se_sc = per_chain.std(axis=0, ddof=1) / np.sqrt(num_chains)
    se_mc = mc.std(axis=0, ddof=1) / np.sqrt(mc.shape[0])
    return (per_chain.mean(axis=0) - mc.mean(axis=0)) / np.sqrt(se_sc**2 + se_mc**2)


def z_crit(m):
    return stats.norm.isf(FAMILY_LEVEL / (2 * m))


def fresh_kernel(model):
    """A kernel built for this call (not the cached one: the power tests patch the augmentation)."""
    from mlgibbs.samplers.mixed import _build_kernel

    return _build_kernel(model.structure, model.kernel_priors)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_geweke(case):
    model = case_model(case)
    kernel = mixed_kernel(model.structure, model.kernel_priors)
    z = geweke_z(model, kernel.step, num_chains=case.num_chains, num_steps=case.num_steps)
    assert np.all(np.isfinite(z))
    assert np.max(np.abs(z)) < z_crit(z.size), np.round(z, 2)


@pytest.mark.parametrize("case", [CASES[1], CASES[2]], ids=[CASES[1].name, CASES[2].name])
def test_geweke_of_the_augmented_px_sampler(case):
    """``sampler="augmented-px"``: the same augmentation, the scales given the locations and the
    parameter-expanded moves instead of the collapsed scale draws."""
    from mlgibbs.samplers.mixed import _build_kernel

    model = case_model(case)
    kernel = _build_kernel(model.structure._replace(collapsed_scales=False), model.kernel_priors)
    z = geweke_z(model, kernel.step, num_chains=case.num_chains, num_steps=case.num_steps)
    assert np.all(np.isfinite(z))
    assert np.max(np.abs(z)) < z_crit(z.size), np.round(z, 2)


def test_geweke_rejects_polya_gamma_weights_at_half_eta(monkeypatch):
    right = augmentation.polya_gamma_augmentation
    monkeypatch.setattr(augmentation, "polya_gamma_augmentation",
                        lambda key, eta, *args: right(key, 0.5 * eta, *args))
    case = CASES[0]
    model = case_model(case)
    z = geweke_z(model, fresh_kernel(model).step, num_chains=case.num_chains, num_steps=case.num_steps)
    assert np.max(np.abs(z)) > z_crit(z.size), np.round(z, 2)


def test_geweke_rejects_shrunk_probit_latents(monkeypatch):
    right = augmentation.probit_augmentation
    monkeypatch.setattr(augmentation, "probit_augmentation",
                        lambda key, eta, *args: right(key, 0.8 * eta, *args))
    case = CASES[2]
    model = case_model(case)
    z = geweke_z(model, fresh_kernel(model).step, num_chains=case.num_chains, num_steps=case.num_steps)
    assert np.max(np.abs(z)) > z_crit(z.size), np.round(z, 2)


def test_geweke_rejects_collapsed_scales_without_the_effects_prior_normalizer(monkeypatch):
    """The collapsed slice step of the scales (locations integrated out) without the ``-J log sigma`` of the
    effects' prior: the scales are then drawn from the wrong marginal."""
    import mlgibbs.samplers.mixed as mixed

    monkeypatch.setattr(mixed, "effects_prior_log_normalizer", lambda log_sigma, num_groups: 0.0 * log_sigma)
    case = CASES[1]
    model = case_model(case)
    z = geweke_z(model, fresh_kernel(model).step, num_chains=case.num_chains, num_steps=case.num_steps)
    assert np.max(np.abs(z)) > z_crit(z.size), np.round(z, 2)


def test_geweke_rejects_collapsed_covariance_without_the_cholesky_jacobian(monkeypatch):
    """The collapsed slice steps of a correlated block on its log-Cholesky coordinates, with the Jacobian of
    ``theta_ii -> L_ii = exp(theta_ii)`` counted twice (exponents ``d - i + 3`` instead of ``d - i + 2``): the
    covariance is then drawn from the wrong marginal. (Counted not at all, the marginal is improper at
    ``Sigma -> 0`` under this prior, and the draws run off to NaN.)"""
    import mlgibbs.samplers.mixed as mixed

    right = mixed.cholesky_log_jacobian
    monkeypatch.setattr(mixed, "cholesky_log_jacobian", lambda log_diag: right(log_diag) + jnp.sum(log_diag))
    case = CASES[0]
    model = case_model(case)
    z = geweke_z(model, fresh_kernel(model).step, num_chains=case.num_chains, num_steps=case.num_steps)
    assert np.max(np.abs(z)) > z_crit(z.size), np.round(z, 2)

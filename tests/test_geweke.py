"""Geweke's (2004) joint-distribution test of every sampler's kernel, under proper priors.

What is tested
--------------
The joint distribution ``p(theta, y) = p(theta) p(y | theta)`` can be simulated in two ways:

* the *marginal-conditional* simulator draws ``theta ~ p(theta)`` (written here in NumPy, independent
  of the library) and ``y ~ p(y | theta)``;
* the *successive-conditional* simulator alternates one sweep of the kernel under test,
  ``theta' ~ K(theta, . | y)``, with a fresh ``y' ~ p(y | theta')``. The joint distribution is
  stationary for it when ``K`` leaves ``p(theta | y)`` invariant.

Each successive chain starts from an exact draw of the joint (a prior draw and its data), so if the
kernel is right every pair of every chain is an exact draw of the joint, however slowly the chain
mixes. The pairs used are ``(theta_t, y_{t-1})``: each sweep's output with the data it conditioned
on (exact if ``theta_t ~ p(theta | y_{t-1})``), rather than ``(theta_t, y_t)``, for which pivots such
as ``RSS / sigma_y^2`` would only see the simulation of ``y`` itself. Means of test functions
``g(theta, y)`` (parameters, their squares, cross products, data statistics, and pivots such as
``RSS / sigma_y^2 ~ chi2(n)``, which probe the posterior draws against their data) must then agree
between the two simulators. The data pytree is recomputed from each fresh ``y`` inside the scan
with the pure-JAX ``mg.sufficient_statistics``. The kernels are ``mg.gibbs(model, sampler=name)``
with normal priors on ``beta`` and ``gamma`` and, on the two scales:

* ``"gibbs"`` and ``"collapsed"``: in turn every proper scale-prior family on both ``sigma_y`` and
  ``sigma_alpha``: InverseGamma, HalfNormal, HalfCauchy, HalfStudentT(3) (the improper Uniform
  cannot be simulated);
* ``"px"``: HalfNormal, HalfCauchy and HalfStudentT(3) on both scales, and InverseGamma on
  ``sigma_y`` with HalfStudentT(3) on ``sigma_alpha``. An InverseGamma prior on ``sigma_alpha`` has
  no parameter expansion: building that kernel must raise ``ValueError``.
* ``"grid"``: every proper family on both scales, with one proposal grid for all the chains' data sets
  (tabulated on the model's placeholder response): its independence step is exact for any proposal that
  does not depend on the chain, so a grid fitted to other data tests the Metropolis-Hastings correction
  itself (the proposal's fit only changes how often it accepts).

Parameter expansion
-------------------
The px kernel runs on the expanded state ``(eta, xi, sigma_eta, beta, gamma, sigma_y)`` with
``alpha = U gamma + xi eta`` and ``sigma_alpha = |xi| sigma_eta``; it leaves the *expanded* posterior
invariant, and its chains are exact draws of the joint only if they start from an exact draw of the
expanded joint. Its successive chains therefore start from the working prior: for a half-t prior
``t+(nu, s)`` on ``sigma_alpha`` (half-Cauchy: ``nu = 1``), ``xi ~ N(0, s^2)`` and
``sigma_eta^2 ~ InvGamma(nu/2, nu/2)``; for a half-normal ``N+(0, s)``, ``sigma_eta ~ Cauchy+(0, 1)``
and ``xi | sigma_eta ~ N(0, s^2 / sigma_eta^2)``; then ``eta_j ~ N(0, sigma_eta^2)``. This is written
here from the working-prior table of :mod:`mlgibbs.conditionals.px` (not from the kernel's
``from_gibbs_state``, which is not a draw of the expanded prior), and a test checks that the
library's ``px_working_prior`` names the same table. Then ``|xi| sigma_eta`` is ``s |t_nu|`` (or
``s |N(0, 1)|``), the intended prior on ``sigma_alpha``: a KS test checks this construction against
the prior's CDF, so the start is an exact draw of the joint of the model.
The test functions are evaluated on the :class:`~mlgibbs.GibbsState` fields alone, so the
marginal-conditional simulator is the same for every sampler; a wrong working prior in the library
moves the chains away from the joint of the start, which the same statistics see.

Power
-----
Three deliberately broken kernels must be rejected by the same statistic, so the test has power:
the five-step InverseGamma sweep followed by a redraw ``sigma_y^2 = RSS / chi2(n + 2)`` (the prior
ignored, and three degrees of freedom more than the uniform-prior draw ``RSS / chi2(n - 1)``); a
collapsed kernel, assembled here from the library's public pieces in the order of its sweep, whose
slice step on ``log sigma_alpha^2`` targets the marginal density *without* the Jacobian
``log sigma_alpha^2 / 2`` (so it samples a density proportional to
``p(sigma_alpha | sigma_y, y) / sigma_alpha`` instead), under the InverseGamma priors, where the
wrong target is still proper (under a half-normal prior it would tend to a constant as
``sigma_alpha -> 0``). The second one is rejected at a quarter of the CI size (250 chains of 100
steps; observed ``|z|`` about 15 for ``log sigma_alpha`` and ``sigma_alpha^2``, threshold 4.7),
which keeps the extra compile-and-run short. Third, the px kernel under a half-normal prior
with its working prior broken in the most plausible way (``xi ~ N(0, s^2)`` drawn independently of
``sigma_eta ~ Cauchy+(0, 1)``, so that ``|xi| sigma_eta`` is far heavier-tailed than ``N+(0, s)``),
started from exact draws of the right expanded joint: at a quarter of the CI size the largest ``|z|``
is about 8 (``(log sigma_alpha)^2``), threshold 4.7; the test runs it at the full CI size.

Test functions under heavy tails
--------------------------------
Under half-Cauchy and half-t(3) priors the scales have no (or only a few) moments, and neither have
``alpha`` and ``y``. Every case is therefore tested with functions of finite variance: ``beta``,
``gamma`` and their squares and products (normal priors), ``log sigma`` and its square, bounded
transforms ``tanh`` of ``alpha_j`` and of ``mean(y)``, ``log`` of the sample variance of ``y``, and the
pivots ``RSS / sigma_y^2``, ``sum_j (alpha_j - U_j gamma)^2 / sigma_alpha^2`` and the standardised mean
residual. Light-tailed priors (InverseGamma with shape 6, HalfNormal) add raw moments: on ``sigma_y``,
``sigma_y^2`` and ``beta_0 sigma_y``; on ``sigma_alpha``, ``sigma_alpha^2``, ``alpha_0``,
``alpha_0^2`` and ``alpha_0 gamma_0``; on both, ``mean(y)``.

Tolerances
----------
Chains are independent, so the variance of the successive-conditional mean is estimated from the
spread of the per-chain means (valid whatever the autocorrelation within a chain); the marginal
simulator's Monte Carlo variance ``var(g) / M`` is added. ``|z|`` must stay below the two-sided
Bonferroni threshold for the number of test functions of the case at family-wise level 1e-4 (about
4.6). Seeds are fixed for reproducibility; the thresholds do not depend on them. The CI size (500
chains of 200 steps, 100,000 marginal draws) keeps the run short (about 4 s per case, mostly
compilation); ``-m slow`` runs 2,000 chains of 1,000 steps.

References
----------
Geweke, J. (2004). Getting it right: joint distribution tests of posterior simulators.
*Journal of the American Statistical Association* 99(467), 799-804.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import mlgibbs as mg
from mlgibbs import priors as P
from mlgibbs.conditionals import residual_sum_of_squares, slice_sample
from mlgibbs.conditionals.collapsed import log_marginal_scales, update_locations
from mlgibbs.conditionals.px import PXState, px_working_prior
from mlgibbs.samplers import kernel_data

FAMILY_ALPHA = 1e-4
NUM_MARGINAL = 100_000

# the design: n = 40 observations in J = 5 groups of 8, p = 2, q = 2 (intercept and u)
NUM_GROUPS, PER_GROUP = 5, 8
BETA_PRIOR = P.Normal(np.array([0.5, -0.5]), np.array([1.0, 0.7]))
GAMMA_PRIOR = P.Normal(np.array([1.0, 0.0]), np.array([1.0, 0.5]))
SCALE_FAMILIES = {
    "InverseGamma": P.InverseGamma(6.0, 5.0),
    "HalfNormal": P.HalfNormal(1.0),
    "HalfCauchy": P.HalfCauchy(0.5),
    "HalfStudentT": P.HalfStudentT(3.0, 0.7),
}
LIGHT_TAILED = ("InverseGamma", "HalfNormal")


class Case(NamedTuple):
    """A kernel under test: the sampler's name and the scale-prior families on the two scales."""

    sampler: str
    sigma_y: str
    sigma_alpha: str

    @property
    def id(self) -> str:
        scales = self.sigma_y if self.sigma_y == self.sigma_alpha else f"{self.sigma_y}-{self.sigma_alpha}"
        return f"{self.sampler}-{scales}"


PX_FAMILIES = ("HalfNormal", "HalfCauchy", "HalfStudentT")
CASES = (
    [Case("gibbs", f, f) for f in SCALE_FAMILIES]
    + [Case("collapsed", f, f) for f in SCALE_FAMILIES]
    + [Case("px", f, f) for f in PX_FAMILIES]
    + [Case("px", "InverseGamma", "HalfStudentT")]
    + [Case("grid", f, f) for f in SCALE_FAMILIES]
)


class Design(NamedTuple):
    X: np.ndarray
    group: np.ndarray
    u: np.ndarray
    U: np.ndarray


def make_design(seed: int = 7) -> Design:
    """Uncentred predictors (offset 1.5, so the model's standardization has work to do)."""
    rng = np.random.default_rng(seed)
    group = np.repeat(np.arange(NUM_GROUPS), PER_GROUP)
    X = 1.5 + rng.normal(size=(group.size, 2)) + 0.5 * rng.normal(size=(NUM_GROUPS, 2))[group]
    u = rng.normal(size=(NUM_GROUPS, 1))
    return Design(X=X, group=group, u=u, U=np.column_stack([np.ones(NUM_GROUPS), u]))


DESIGN = make_design()


# ----------------------------------------------------------------------------- the prior, in NumPy
def draw_scale(rng: np.random.Generator, prior, size: int) -> np.ndarray:
    """Draws of ``sigma`` from a scale prior, by the textbook constructions."""
    if isinstance(prior, P.InverseGamma):
        return np.sqrt(prior.rate / rng.gamma(prior.concentration, size=size))
    if isinstance(prior, P.HalfNormal):
        return prior.scale * np.abs(rng.standard_normal(size))
    if isinstance(prior, P.HalfCauchy):
        return prior.scale * np.abs(rng.standard_cauchy(size))
    if isinstance(prior, P.HalfStudentT):
        return prior.scale * np.abs(rng.standard_t(prior.df, size))
    raise TypeError(prior)


def draw_working(rng: np.random.Generator, prior, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(xi, sigma_eta)`` from the working prior that px pairs with ``prior`` on ``sigma_alpha``.

    The table of :mod:`mlgibbs.conditionals.px`: half-normal ``N+(0, s)``: ``sigma_eta ~ Cauchy+(0, 1)``
    and ``xi | sigma_eta ~ N(0, s^2 / sigma_eta^2)``; half-t ``t+(nu, s)`` (half-Cauchy: ``nu = 1``):
    ``sigma_eta^2 ~ InvGamma(nu/2, nu/2)`` and ``xi ~ N(0, s^2)``.
    """
    if isinstance(prior, P.HalfCauchy):
        prior = P.HalfStudentT(1.0, prior.scale)
    if isinstance(prior, P.HalfNormal):
        sigma_eta = np.abs(rng.standard_cauchy(size))
        return prior.scale * rng.standard_normal(size) / sigma_eta, sigma_eta
    if isinstance(prior, P.HalfStudentT):
        nu = prior.df
        sigma_eta = np.sqrt((0.5 * nu) / rng.gamma(0.5 * nu, size=size))
        return prior.scale * rng.standard_normal(size), sigma_eta
    raise TypeError(prior)


def draw_joint(rng: np.random.Generator, case: Case, size: int, expanded: bool = False):
    """``size`` independent draws of ``(theta, y)`` from the prior and the likelihood.

    With ``expanded``, ``theta`` is a :class:`~mlgibbs.conditionals.px.PXState`: a draw of the
    parameter-expanded prior, ``alpha = U gamma + xi eta`` and ``sigma_alpha = |xi| sigma_eta``.
    """
    design = DESIGN
    prior_y, prior_alpha = SCALE_FAMILIES[case.sigma_y], SCALE_FAMILIES[case.sigma_alpha]
    p, q = design.X.shape[1], design.U.shape[1]
    beta = BETA_PRIOR.loc + BETA_PRIOR.scale * rng.standard_normal((size, p))
    gamma = GAMMA_PRIOR.loc + GAMMA_PRIOR.scale * rng.standard_normal((size, q))
    sigma_y = draw_scale(rng, prior_y, size)
    if expanded:
        xi, sigma_eta = draw_working(rng, prior_alpha, size)
        eta = sigma_eta[:, None] * rng.standard_normal((size, NUM_GROUPS))
        alpha = gamma @ design.U.T + xi[:, None] * eta
        sigma_alpha = np.abs(xi) * sigma_eta
    else:
        sigma_alpha = draw_scale(rng, prior_alpha, size)
        alpha = gamma @ design.U.T + sigma_alpha[:, None] * rng.standard_normal((size, NUM_GROUPS))
    mean = alpha[:, design.group] + beta @ design.X.T
    y = mean + sigma_y[:, None] * rng.standard_normal(mean.shape)
    fields = dict(alpha=alpha, beta=beta, gamma=gamma, sigma_y=sigma_y, sigma_alpha=sigma_alpha)
    theta = PXState(**fields, eta=eta, xi=xi, sigma_eta=sigma_eta) if expanded else mg.GibbsState(**fields)
    return jax.tree.map(lambda a: np.asarray(a, np.float32), theta), y.astype(np.float32)


# ----------------------------------------------------------------------------- test functions
FUNCTION_NAMES = (
    "beta_0", "beta_1", "beta_0^2", "beta_1^2", "beta_0*beta_1",
    "gamma_0", "gamma_1", "gamma_0^2", "gamma_1^2",
    "log sigma_y", "(log sigma_y)^2", "log sigma_alpha", "(log sigma_alpha)^2",
    "log sigma_y*log sigma_alpha",
    "tanh alpha_0", "(tanh alpha_0)^2", "tanh alpha_J", "(tanh alpha_J)^2",
    "tanh alpha_0*gamma_0", "beta_0*log sigma_y", "beta_0*gamma_0",
    "tanh mean(y)", "log var(y)", "RSS/sigma_y^2", "S_alpha/sigma_alpha^2", "sum(resid)/(sigma_y sqrt n)",
)
LIGHT_Y_NAMES = ("sigma_y^2", "beta_0*sigma_y")
LIGHT_ALPHA_NAMES = ("sigma_alpha^2", "alpha_0", "alpha_0^2", "alpha_0*gamma_0")
LIGHT_BOTH_NAMES = ("mean(y)",)


def light_tails(case: Case) -> tuple[bool, bool]:
    """Whether the priors on ``sigma_y`` and on ``sigma_alpha`` are light-tailed."""
    return case.sigma_y in LIGHT_TAILED, case.sigma_alpha in LIGHT_TAILED


def function_names(case: Case) -> tuple[str, ...]:
    light_y, light_alpha = light_tails(case)
    return (FUNCTION_NAMES + LIGHT_Y_NAMES * light_y + LIGHT_ALPHA_NAMES * light_alpha
            + LIGHT_BOTH_NAMES * (light_y and light_alpha))


def geweke_functions(theta, y, light_y: bool, light_alpha: bool) -> jax.Array:
    """The vector of ``g(theta, y)`` for one draw (see the module docstring).

    Only the :class:`~mlgibbs.GibbsState` fields of ``theta`` are read.
    """
    X, U = jnp.asarray(DESIGN.X, y.dtype), jnp.asarray(DESIGN.U, y.dtype)
    group = jnp.asarray(DESIGN.group)
    alpha, beta, gamma = theta.alpha, theta.beta, theta.gamma
    log_sy, log_sa = jnp.log(theta.sigma_y), jnp.log(theta.sigma_alpha)
    resid = y - alpha[group] - X @ beta
    n = y.shape[0]
    ybar = jnp.mean(y)
    g = [  # in the order of function_names(case)
        beta[0], beta[1], beta[0] ** 2, beta[1] ** 2, beta[0] * beta[1],
        gamma[0], gamma[1], gamma[0] ** 2, gamma[1] ** 2,
        log_sy, log_sy**2, log_sa, log_sa**2, log_sy * log_sa,
        jnp.tanh(alpha[0]), jnp.tanh(alpha[0]) ** 2, jnp.tanh(alpha[-1]), jnp.tanh(alpha[-1]) ** 2,
        jnp.tanh(alpha[0]) * gamma[0], beta[0] * log_sy, beta[0] * gamma[0],
        jnp.tanh(ybar), jnp.log(jnp.mean((y - ybar) ** 2)),
        jnp.sum(resid**2) / theta.sigma_y**2,
        jnp.sum((alpha - U @ gamma) ** 2) / theta.sigma_alpha**2,
        jnp.sum(resid) / (theta.sigma_y * jnp.sqrt(n)),
    ]
    if light_y:
        g += [theta.sigma_y**2, beta[0] * theta.sigma_y]
    if light_alpha:
        g += [theta.sigma_alpha**2, alpha[0], alpha[0] ** 2, alpha[0] * gamma[0]]
    if light_y and light_alpha:
        g += [ybar]
    return jnp.stack(g)


# ----------------------------------------------------------------------------- the two simulators
def marginal_conditional(case: Case, seed: int):
    """Mean and variance of each ``g`` over :data:`NUM_MARGINAL` exact draws of the joint."""
    theta, y = draw_joint(np.random.default_rng(seed), case, NUM_MARGINAL)
    light_y, light_alpha = light_tails(case)
    g = jax.vmap(functools.partial(geweke_functions, light_y=light_y, light_alpha=light_alpha))(theta, y)
    g = np.asarray(g, np.float64)
    return g.mean(axis=0), g.var(axis=0, ddof=1)


def successive_conditional(rng_key, theta0, y0, corrupt, *, model, step, light_y, light_alpha, num_steps):
    """Per-chain means of ``g`` along successive-conditional chains (vmap over chains).

    ``step(rng_key, state, data)`` is the kernel under test, run as :func:`mlgibbs.sample` runs it:
    in the model's standardized coordinates, on the data pytree ``model.data_for(y)`` of each fresh
    ``y`` (which carries the test's coefficient priors, mapped into those coordinates). The chain
    state is kept in the kernel's coordinates; ``g`` and the next ``y`` are computed from its image
    in the user's (``model.to_user``), where the prior was drawn. When the (traced) flag ``corrupt``
    is true, every sweep is followed by :func:`broken_sigma_y`, which makes the kernel wrong; the
    correct and the broken sampler then share one compiled program.
    """
    X = jnp.asarray(DESIGN.X, jnp.float32)
    group = jnp.asarray(DESIGN.group)
    assert model.standardization.y_scale == 1.0  # then eta, xi, sigma_eta need no mapping

    def to_kernel(theta):
        return theta._replace(**model.to_kernel(mg.GibbsState(*theta[:5]), xp=jnp)._asdict())

    def to_user(theta):
        return model.to_user(mg.GibbsState(*theta[:5]), xp=jnp)

    def chain(key, theta, y):
        def one(carry, k):
            theta, y = carry
            key_theta, key_broken, key_y = jax.random.split(k, 3)
            data = model.data_for(y)
            theta = step(key_theta, theta, data)
            theta = jax.lax.cond(corrupt, broken_sigma_y, lambda k, s, d: s, key_broken, theta, data)
            user = to_user(theta)
            g = geweke_functions(user, y, light_y, light_alpha)  # the draw and the data it conditioned on
            mean = user.alpha[group] + X @ user.beta
            y = mean + user.sigma_y * jax.random.normal(key_y, mean.shape, mean.dtype)
            return (theta, y), g

        _, g = jax.lax.scan(one, (to_kernel(theta), y), jax.random.split(key, num_steps))
        return jnp.mean(g, axis=0)

    keys = jax.random.split(rng_key, y0.shape[0])
    return jax.vmap(chain)(keys, theta0, y0)


# Compilation dominates the CI-sized runs (seconds per kernel on CPU, against a fraction of a
# second of sampling): the CI size compiles with XLA's backend optimisation off, which halves the
# compile time; the slow size compiles normally. Compiled programs are cached by configuration so
# that the power test reuses the gibbs InverseGamma program.
FAST_COMPILE = {"xla_backend_optimization_level": 0}
_PROGRAMS: dict = {}


def successive_program(case: Case, num_chains: int, num_steps: int, fast: bool):
    key = (case, num_chains, num_steps, fast)
    if key not in _PROGRAMS:
        theta0, y0 = draw_start(np.random.default_rng(0), case, num_chains)  # shapes only
        light_y, light_alpha = light_tails(case)
        fn = functools.partial(successive_conditional, model=case_model(case), step=kernel_step(case),
                               light_y=light_y, light_alpha=light_alpha, num_steps=num_steps)
        lowered = jax.jit(fn).lower(jax.random.key(0), theta0, y0, jnp.asarray(False))
        _PROGRAMS[key] = lowered.compile(FAST_COMPILE) if fast else lowered.compile()
    return _PROGRAMS[key]


def draw_start(rng: np.random.Generator, case: Case, size: int):
    """Exact draws of the joint the kernel runs on (the expanded one for px)."""
    return draw_joint(rng, case, size, expanded=case.sampler.startswith("px"))


def geweke_z(case: Case, *, num_chains: int, num_steps: int, seed: int, fast: bool = True,
             corrupt: bool = False):
    """z-scores of the differences between the two simulators' means, one per test function."""
    program = successive_program(case, num_chains, num_steps, fast)
    mean_mc, var_mc = marginal_conditional(case, seed=seed)
    theta0, y0 = draw_start(np.random.default_rng(seed + 1), case, num_chains)
    chain_means = program(jax.random.key(seed), theta0, y0, jnp.asarray(corrupt))
    chain_means = np.asarray(chain_means, np.float64)
    mean_sc = chain_means.mean(axis=0)
    var_sc = chain_means.var(axis=0, ddof=1) / num_chains
    return (mean_sc - mean_mc) / np.sqrt(var_sc + var_mc / NUM_MARGINAL)


def z_crit(num_comparisons: int) -> float:
    return float(stats.norm.isf(FAMILY_ALPHA / (2 * num_comparisons)))


@functools.lru_cache(maxsize=None)
def case_model(case: Case) -> mg.Model:
    """The model with the test priors; the placeholder response fixes the shapes and the model's
    standardized coordinates (any fixed affine map will do; the chains' ``y`` are simulated)."""
    design = DESIGN
    placeholder = np.random.default_rng(99).normal(size=design.group.size) + design.X @ [1.0, -1.0]
    return mg.Model.from_arrays(
        placeholder, design.X, design.group, design.u,
        priors={"beta": BETA_PRIOR, "gamma": GAMMA_PRIOR, "sigma_y": SCALE_FAMILIES[case.sigma_y],
                "sigma_alpha": SCALE_FAMILIES[case.sigma_alpha]},
    )


def kernel_step(case: Case):
    """The step of ``mg.gibbs(model, sampler)`` (or of a test-local broken kernel)."""
    model = case_model(case)
    if case.sampler == "collapsed-without-jacobian":
        return collapsed_step_without_jacobian(model.priors)
    if case.sampler == "px-xi-independent":
        return px_step_xi_independent(model.priors)
    if case.sampler == "grid":
        # one proposal for every data set of the chains: tabulated on the placeholder response (a kernel
        # that is exact for any proposal independent of the chain; rebuilding it per y costs ~1,000 sweeps)
        grid = kernel_data(model, "grid").scale_grid
        step = mg.gibbs(model, sampler="grid").step
        return lambda key, state, data: step(key, state, data._replace(scale_grid=grid))
    return mg.gibbs(model, sampler=case.sampler).step


def broken_sigma_y(rng_key, state, data):
    """A wrong ``sigma_y`` update: ``RSS / chi2(n + 2)``, ignoring the prior."""
    rss = residual_sum_of_squares(state, data)
    chi2 = 2.0 * jax.random.gamma(rng_key, 0.5 * (data.num_obs + 2.0), (), rss.dtype)
    return state._replace(sigma_y=jnp.sqrt(rss / chi2))


def collapsed_step_without_jacobian(priors: P.Priors):
    """The collapsed sweep with a wrong ``sigma_alpha`` step: its slice target lacks the Jacobian.

    Built from the public pieces (``slice_sample``, ``log_marginal_scales``, ``update_locations``,
    ``update_alpha``, ``update_sigma_y``) in the order of the library's collapsed sweep; it samples
    ``p(sigma_alpha | sigma_y, y) / sigma_alpha`` instead of ``p(sigma_alpha | sigma_y, y)``.
    """

    def update_sigma_alpha(rng_key, state, data):
        def log_target(theta):  # the Jacobian + theta / 2 is missing
            return log_marginal_scales(state.sigma_y, jnp.exp(0.5 * theta), data, priors)

        theta = slice_sample(rng_key, jnp.log(state.sigma_alpha**2), log_target, 1.0)
        return state._replace(sigma_alpha=jnp.exp(0.5 * theta))

    return mg.compose([update_sigma_alpha, functools.partial(update_locations, priors=priors),
                       mg.update_alpha, functools.partial(mg.update_sigma_y, prior=priors.sigma_y)])


def px_step_xi_independent(priors: P.Priors):
    """The px kernel under a half-normal prior with a wrong working prior: ``xi ~ N(0, s^2)``
    independent of ``sigma_eta ~ Cauchy+(0, 1)`` (the ``xi | sigma_eta`` dependence dropped), so that
    ``|xi| sigma_eta`` has far heavier tails than the ``N+(0, s)`` prior it should follow."""
    from mlgibbs.samplers import px as px_module

    right = px_working_prior(priors.sigma_alpha)
    assert right.xi_given_sigma_eta
    wrong = right._replace(xi_given_sigma_eta=False)
    original = px_module.px_working_prior
    px_module.px_working_prior = lambda prior: wrong
    try:
        return px_module.px_kernel(priors).step
    finally:
        px_module.px_working_prior = original


def run_geweke(case: Case, num_chains: int, num_steps: int, seed: int = 0, fast: bool = True):
    z = geweke_z(case, num_chains=num_chains, num_steps=num_steps, seed=seed, fast=fast)
    names = function_names(case)
    assert z.size == len(names)
    crit = z_crit(z.size)
    assert np.all(np.isfinite(z)), z
    bad = {name: round(float(v), 2) for name, v in zip(names, z) if abs(v) >= crit}
    assert not bad, f"Geweke test of {case} (threshold {crit:.2f}): {bad}"


CI_CHAINS, CI_STEPS = 500, 200


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_geweke(case):
    run_geweke(case, num_chains=CI_CHAINS, num_steps=CI_STEPS)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_geweke_slow(case):
    run_geweke(case, num_chains=2000, num_steps=1000, seed=1, fast=False)


def test_geweke_rejects_a_broken_sampler():
    """The InverseGamma sweep followed by ``sigma_y^2 = RSS / chi2(n + 2)`` must be rejected."""
    case = Case("gibbs", "InverseGamma", "InverseGamma")
    z = geweke_z(case, num_chains=CI_CHAINS, num_steps=CI_STEPS, seed=0, corrupt=True)
    assert np.max(np.abs(z)) > z_crit(z.size), np.round(z, 2)


def test_geweke_rejects_collapsed_without_jacobian():
    """A collapsed kernel whose slice steps omit the Jacobian of ``log sigma^2`` must be rejected."""
    case = Case("collapsed-without-jacobian", "InverseGamma", "InverseGamma")
    z = geweke_z(case, num_chains=CI_CHAINS // 2, num_steps=CI_STEPS // 2, seed=0)
    assert np.max(np.abs(z)) > z_crit(z.size), dict(zip(function_names(case), np.round(z, 2)))


def test_geweke_rejects_px_with_a_wrong_working_prior():
    """px under a half-normal prior, with ``xi`` drawn independently of ``sigma_eta``, must be rejected.

    The chains start from exact draws of the right expanded joint, so only the kernel is wrong.
    """
    case = Case("px-xi-independent", "HalfNormal", "HalfNormal")
    z = geweke_z(case, num_chains=CI_CHAINS, num_steps=CI_STEPS, seed=0)
    assert np.max(np.abs(z)) > z_crit(z.size), dict(zip(function_names(case), np.round(z, 2)))


@pytest.mark.parametrize("family", PX_FAMILIES)
def test_px_start_is_a_draw_of_the_sigma_alpha_prior(family):
    """``|xi| sigma_eta`` under the working prior of the start follows the ``sigma_alpha`` prior (KS).

    The library's own table (:func:`~mlgibbs.conditionals.px.px_working_prior`) must name the same
    working prior: otherwise the px chains would not start from an exact draw of the expanded joint
    that the kernel leaves invariant, and :func:`draw_working` must follow the library.
    """
    prior = SCALE_FAMILIES[family]
    xi, sigma_eta = draw_working(np.random.default_rng(3), prior, 100_000)
    s = prior.scale
    if isinstance(prior, P.HalfNormal):
        cdf = stats.halfnorm(scale=s).cdf
        expected = (s, P.HalfCauchy(1.0), True)
    else:
        nu = 1.0 if isinstance(prior, P.HalfCauchy) else prior.df
        cdf = lambda x: 2.0 * stats.t.cdf(x / s, nu) - 1.0  # noqa: E731
        expected = (s, P.InverseGamma(nu / 2, nu / 2), False)
    assert stats.kstest(np.abs(xi) * sigma_eta, cdf).pvalue > FAMILY_ALPHA / len(PX_FAMILIES)
    assert tuple(px_working_prior(prior)) == expected


def test_px_rejects_an_inverse_gamma_prior_on_sigma_alpha():
    with pytest.raises(ValueError, match="InverseGamma"):
        mg.gibbs(case_model(Case("px", "HalfNormal", "InverseGamma")), sampler="px")

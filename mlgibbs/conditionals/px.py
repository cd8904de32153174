r"""Conditionals of the parameter-expanded model (Liu & Wu 1999; Gelman, van Dyk, Huang & Boscardin 2008).

The group intercepts are written with a redundant multiplier ``xi``:

.. math::

    \alpha_j = U_j\gamma + \xi\,\eta_j,\qquad \eta_j \sim \mathcal N(0, \sigma_\eta^2),\qquad
    \sigma_\alpha = |\xi|\,\sigma_\eta,

so that ``y_i ~ N(X_i beta + U_j gamma + xi eta_j, sigma_y^2)``. The prior on ``sigma_alpha`` is
carried by priors on ``(xi, sigma_eta)`` that imply it (Gelman 2006):

==========================  ==============================  ======================================
prior on ``sigma_alpha``    ``xi``                          ``sigma_eta``
==========================  ==============================  ======================================
Uniform (G&H default)       flat                            uniform
HalfNormal(s)               ``N(0, s^2 / sigma_eta^2)``     ``sigma_eta ~ Cauchy+(0, 1)``
HalfStudentT(nu, s)         ``N(0, s^2)``                   ``sigma_eta^2 ~ InvGamma(nu/2, nu/2)``
HalfCauchy(s)               ``N(0, s^2)``                   ``sigma_eta^2 ~ InvGamma(1/2, 1/2)``
==========================  ==============================  ======================================

``|xi| sigma_eta`` is then uniform, half-normal (given ``sigma_eta``, ``|xi| sigma_eta ~ N+(0, s)``
whatever ``sigma_eta`` is, so its own prior only needs to be proper and broad), half-t. Under the
half-normal prior ``sigma_eta``'s conditional, ``p(sigma_eta) sigma_eta exp(-xi^2 sigma_eta^2 / 2 s^2)``
times the likelihood of ``eta``, is a tilted generalised inverse Gaussian in ``sigma_eta^2``: it is
updated by an independence Metropolis-Hastings step (:func:`~mlgibbs.conditionals.variance.draw_variance_gig`
with the half-Cauchy density as the bounded factor). (Fixing
``sigma_eta = 1`` would be exact too, but it removes the redundancy: the sampler would be the
non-centred parametrisation, which mixes badly when the data pin down the group effects.) An
inverse-gamma prior on ``sigma_alpha^2`` has no such representation: use ``"collapsed"`` or ``"gibbs"``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from mlgibbs.conditionals._linalg import draw_gaussian_canonical, group_fixed_effect, location_prior_blocks
from mlgibbs.conditionals.variance import draw_variance, draw_variance_gig
from mlgibbs.models.data import LinearData
from mlgibbs.priors import HalfCauchy, HalfNormal, HalfStudentT, InverseGamma, Priors, Uniform

__all__ = [
    "PXState",
    "px_working_prior",
    "update_eta",
    "update_beta_gamma",
    "update_xi",
    "update_sigma_eta",
]


class PXState(NamedTuple):
    """State of the parameter-expanded sampler.

    Attributes
    ----------
    alpha, beta, gamma, sigma_y, sigma_alpha
        As in :class:`~mlgibbs.GibbsState`; ``alpha = U gamma + xi eta`` and
        ``sigma_alpha = |xi| sigma_eta`` are kept up to date by the sampler.
    eta
        Scaled group effects, shape ``(J,)``.
    xi
        Redundant multiplier, shape ``()``.
    sigma_eta
        Standard deviation of ``eta``, shape ``()``.
    """

    alpha: jax.Array
    beta: jax.Array | None
    gamma: jax.Array | None
    sigma_y: jax.Array
    sigma_alpha: jax.Array
    eta: jax.Array
    xi: jax.Array
    sigma_eta: jax.Array


class WorkingPrior(NamedTuple):
    """Priors on ``(xi, sigma_eta)`` implied by a prior on ``sigma_alpha``.

    ``xi ~ N(0, xi_scale^2)`` (``inf``: flat), or ``N(0, xi_scale^2 / sigma_eta^2)`` when
    ``xi_given_sigma_eta`` (then ``sigma_eta`` must be half-Cauchy); ``sigma_eta`` has the scale prior
    ``sigma_eta``.
    """

    xi_scale: float
    sigma_eta: object
    xi_given_sigma_eta: bool = False


def px_working_prior(prior) -> WorkingPrior:
    """The ``(xi, sigma_eta)`` priors that make ``|xi| sigma_eta`` follow ``prior``."""
    if isinstance(prior, Uniform):
        return WorkingPrior(float("inf"), Uniform())
    if isinstance(prior, HalfNormal):
        return WorkingPrior(float(prior.scale), HalfCauchy(1.0), xi_given_sigma_eta=True)
    if isinstance(prior, HalfCauchy):
        prior = prior.as_student_t()
    if isinstance(prior, HalfStudentT):
        return WorkingPrior(float(prior.scale), InverseGamma(0.5 * prior.df, 0.5 * prior.df))
    if isinstance(prior, InverseGamma):
        raise ValueError(
            "the 'px' sampler has no parameter expansion for an InverseGamma prior on sigma_alpha^2; "
            "use sampler='collapsed' or 'gibbs'"
        )
    raise TypeError(f"unsupported prior on sigma_alpha: {prior!r}")


def _group_location(state, data: LinearData) -> jax.Array:
    """``xbar_j beta + U_j gamma`` for every group."""
    g = data.groups
    loc = group_fixed_effect(data, state.beta)
    if state.gamma is not None:
        loc = loc + g.U @ state.gamma
    return loc


def update_eta(rng_key: jax.Array, state: PXState, data: LinearData) -> PXState:
    r"""Draw ``eta_j | rest``, independently across groups.

    .. math::

        \eta_j \mid \text{rest} \sim \mathcal N\!\left(
          \frac{\xi\, n_j (\bar y_j - \bar x_j\beta - U_j\gamma)/\sigma_y^2}{\xi^2 n_j/\sigma_y^2 + 1/\sigma_\eta^2},\
          \left(\xi^2 n_j/\sigma_y^2 + 1/\sigma_\eta^2\right)^{-1}\right)
    """
    g = data.groups
    prec_lik = g.counts * state.xi**2 / state.sigma_y**2
    var = 1.0 / (prec_lik + 1.0 / state.sigma_eta**2)
    resid = g.y_mean - _group_location(state, data)
    mean = var * state.xi * g.counts * resid / state.sigma_y**2
    eta = mean + jnp.sqrt(var) * jax.random.normal(rng_key, mean.shape, mean.dtype)
    return state._replace(eta=eta)


def update_beta_gamma(rng_key: jax.Array, state: PXState, data: LinearData, priors: Priors | None = None) -> PXState:
    r"""Draw ``(beta, gamma)`` jointly: the regression of ``y - xi eta_j[i]`` on ``[X_i, U_j[i]]``.

    .. math::

        (\beta,\gamma) \mid \text{rest} \sim \mathcal N(Q^{-1}h, Q^{-1}),\quad
        Q = \frac{1}{\sigma_y^2}\begin{pmatrix} X'X & \sum_j n_j \bar x_j' U_j \\ \cdot & \sum_j n_j U_j'U_j\end{pmatrix} + P_0,\quad
        h = \frac{1}{\sigma_y^2}\begin{pmatrix} X'(y - \xi\eta_{j[\cdot]}) \\ \sum_j n_j U_j'(\bar y_j - \xi\eta_j)\end{pmatrix} + P_0 m_0

    with the joint prior ``N(m_0, P_0^{-1})`` of ``(beta, gamma)`` carried by ``data.location_prior``
    (``priors`` is not used; it is accepted for symmetry with the other updates).
    """
    g = data.groups
    p = data.xtx.shape[0]
    dtype = g.y_mean.dtype
    inv_var = 1.0 / state.sigma_y**2
    G = jnp.concatenate([g.x_mean, g.U], axis=1)
    Q = (G * g.counts[:, None]).T @ G
    Q = Q.at[:p, :p].set(data.xtx)
    partial = g.counts * (g.y_mean - state.xi * state.eta)
    h = G.T @ partial
    h = h.at[:p].add(data.xty_within)
    prec0, lin0 = location_prior_blocks(data, p)
    Q = Q * inv_var + prec0
    h = h * inv_var + lin0
    theta = draw_gaussian_canonical(rng_key, Q, h)
    beta = theta[:p] if p > 0 else None
    gamma = theta[p:] if theta.shape[0] > p else None
    return state._replace(beta=beta, gamma=gamma)


def update_xi(rng_key: jax.Array, state: PXState, data: LinearData, xi_scale: float,
              given_sigma_eta: bool = False) -> PXState:
    r"""Draw the multiplier: the regression of ``y - X beta - U_j gamma`` on ``eta_j[i]``.

    .. math::

        \xi \mid \text{rest} \sim \mathcal N\!\left(
          \frac{\sum_j n_j \eta_j (\bar y_j - \bar x_j\beta - U_j\gamma)/\sigma_y^2}{\sum_j n_j\eta_j^2/\sigma_y^2 + 1/B^2},\
          \left(\sum_j n_j\eta_j^2/\sigma_y^2 + 1/B^2\right)^{-1}\right)

    with prior ``xi ~ N(0, B^2)`` (``B = xi_scale``; ``inf``: flat), or ``B = xi_scale / sigma_eta``
    when ``given_sigma_eta``.
    """
    g = data.groups
    resid = g.y_mean - _group_location(state, data)
    prior_prec = 0.0 if xi_scale == float("inf") else 1.0 / xi_scale**2
    if given_sigma_eta:
        prior_prec = prior_prec * state.sigma_eta**2
    prec = jnp.sum(g.counts * state.eta**2) / state.sigma_y**2 + prior_prec
    mean = jnp.sum(g.counts * state.eta * resid) / state.sigma_y**2 / prec
    xi = mean + jax.random.normal(rng_key, (), mean.dtype) / jnp.sqrt(prec)
    return state._replace(xi=xi)


def update_sigma_eta(rng_key: jax.Array, state: PXState, data: LinearData, working: WorkingPrior) -> PXState:
    r"""Draw ``sigma_eta`` given ``eta`` (sum of squares ``sum_j eta_j^2`` over the ``J`` groups).

    Under the working prior of :func:`px_working_prior`. When ``xi | sigma_eta ~ N(0, s^2 / sigma_eta^2)``
    (the half-normal case, ``sigma_eta ~ Cauchy+(0, c)``), ``xi``'s density enters the conditional:
    for ``v = sigma_eta^2``, ``p(v | eta, xi) ∝ v^{-J/2} exp(-S / 2v - xi^2 v / 2 s^2) / (1 + v / c^2)``,
    a tilted generalised inverse Gaussian, updated by
    :func:`~mlgibbs.conditionals.variance.draw_variance_gig`.
    """
    prior = working.sigma_eta
    ss = jnp.sum(state.eta**2)
    num_groups = state.eta.shape[0]
    if not working.xi_given_sigma_eta:
        var = draw_variance(rng_key, prior, ss, num_groups, state.sigma_eta**2)
    elif isinstance(prior, HalfCauchy):
        c2 = prior.scale**2
        var = draw_variance_gig(rng_key, 0.5 * num_groups - 1.0, 0.5 * ss,
                                0.5 * (state.xi / working.xi_scale) ** 2, state.sigma_eta**2,
                                log_factor=lambda v: -jnp.log1p(v / c2))
    else:
        raise TypeError(f"xi | sigma_eta working priors need a HalfCauchy prior on sigma_eta, got {prior!r}")
    return state._replace(sigma_eta=jnp.sqrt(var))

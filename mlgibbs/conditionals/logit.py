r"""The logit link's likelihood for the Metropolis-Hastings location blocks (``sampler="iwls"``).

The bernoulli and binomial families are drawn by default with Polya-Gamma augmentation
(:mod:`mlgibbs.conditionals.augmentation`), an exact Gibbs sampler whose locations are autocorrelated
through the augmentation weights. The alternative is the Poisson family's kernel
(:mod:`mlgibbs.conditionals.poisson`): Metropolis-Hastings with the Gaussian proposal of one IWLS step, per
subtree of each chain of nested factors and for ``rho = (beta, gamma)``, with no augmentation at all.
This module gives that kernel the logit likelihood. For a kernel row ``r`` of ``m_r`` trials with ``y_r``
successes the log likelihood is ``y_r eta_r - m_r log(1 + e^{eta_r})``; its second-order expansion at
``eta`` is the working likelihood

.. math::

    \exp\big(\textstyle\sum_r s_r \eta_r(x') - \tfrac12 w_r \eta_r(x')^2\big), \qquad
    w_r = m_r p_r (1 - p_r), \quad s_r = y_r - m_r p_r + w_r \eta_r, \quad p_r = 1 / (1 + e^{-\eta_r}).

Precision: for ``|d| < 1`` the change of a row's log likelihood from ``eta`` to ``eta' = eta + d`` is
formed as ``y d - m log(1 + p (e^d - 1))`` (``d <= 0``) or ``y d - m [d + log(1 + (1 - p)(e^{-d} - 1))]``
(``d > 0``): ``log1p`` of a number in ``(-0.64, 0]``, never the difference of two large totals, so the
Metropolis-Hastings ratios keep their precision in float32 however small the step; a larger step takes
``log(1 - p + p e^{-|d|})`` (``p`` the sigmoid of ``-eta`` or ``eta`` by the sign of ``d``) with ``1 - p``
formed apart, which stays finite where ``p`` rounds to 1.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["iwls_terms", "log_likelihood_change", "start"]


def iwls_terms(eta, data):
    """``(w, s)`` per kernel row: ``w_r = m_r p_r (1 - p_r)``, ``s_r = y_r - m_r p_r + w_r eta_r``."""
    p = jax.nn.sigmoid(eta)
    w = data.trials * p * jax.nn.sigmoid(-eta)
    return w, data.t - data.trials * p + w * eta


def log_likelihood_change(eta_old, eta_new, data):
    """Per kernel row ``l_r(eta') - l_r(eta)`` from order-one terms (module docstring)."""
    # softplus(eta + d) - softplus(eta) = max(d, 0) + log(1 + p (e^{-|d|} - 1)), p = sigmoid(+-eta) (the sign
    # of d): log1p of a number in (-0.64, 0] for |d| < 1, else log(q + p e^{-|d|}) with q = 1 - p formed
    # apart (no cancellation when p is near 1); p and q from one exp
    d = eta_new - eta_old
    up = d > 0
    a = jnp.where(up, -eta_old, eta_old)
    e = jnp.exp(-jnp.abs(a))
    inv = 1.0 / (1.0 + e)
    p = jnp.where(a >= 0, inv, e * inv)
    q = jnp.where(a >= 0, e * inv, inv)
    shrink = jnp.expm1(-jnp.abs(d))                           # in (-1, 0]
    near = jnp.abs(d) < 1.0
    log_term = jnp.where(near, jnp.log1p(p * shrink), jnp.log(q + p * jnp.exp(-jnp.abs(d))))
    return data.t * d - data.trials * (jnp.maximum(d, 0.0) + log_term)


def start(data):
    """The first IWLS point: ``eta_r = log((y_r + 1/2) / (m_r - y_r + 1/2))``, the empirical logit."""
    return jnp.log((data.t + 0.5) / (data.trials - data.t + 0.5))

"""Log densities of the varying-intercept model: the joint (for ``lp``) and the pointwise likelihood."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from mlgibbs.base import GibbsState
from mlgibbs.conditionals import group_sum_of_squares, residual_sum_of_squares
from mlgibbs.models.data import LinearData
from mlgibbs.priors import Priors

__all__ = ["log_joint", "pointwise_log_likelihood", "predict_mean"]

_LOG_2PI = math.log(2 * math.pi)


def log_joint(state: GibbsState, data: LinearData, priors: Priors) -> jax.Array:
    """``log p(y | alpha, beta, sigma_y) + log p(alpha | gamma, sigma_alpha) + log p(beta, gamma, sigmas)``.

    Up to the constants of improper priors; computed from the sufficient statistics. ``state`` and
    ``data`` are in the kernel's coordinates (:mod:`mlgibbs.models.standardize`), ``priors`` are the
    user's: the value is the log density of the *user's* parametrisation at the corresponding point
    (the affine change of coordinates leaves every quadratic form as it is; the response's units
    enter through ``data.y_scale``), so ``lp`` means the same whatever coordinates the kernel uses.
    """
    n = data.num_obs
    k = data.y_scale
    sigma_y = k * state.sigma_y
    lp = (-0.5 * n * _LOG_2PI - n * jnp.log(sigma_y)
          - 0.5 * residual_sum_of_squares(state, data) / state.sigma_y**2)
    lp = lp + priors.sigma_y.log_prob(sigma_y)
    blocks = [b for b in (state.beta, state.gamma) if b is not None]
    if blocks:
        lp = lp + data.location_prior.log_prob(jnp.concatenate(blocks))
    if state.alpha is not None:
        J = state.alpha.shape[0]
        ss = group_sum_of_squares(state, data)
        sigma_alpha = k * state.sigma_alpha
        lp = lp - 0.5 * J * _LOG_2PI - J * jnp.log(sigma_alpha) - 0.5 * ss / state.sigma_alpha**2
        lp = lp + priors.sigma_alpha.log_prob(sigma_alpha)
    return lp


def predict_mean(state: GibbsState, X: jax.Array, group: jax.Array | None) -> jax.Array:
    """``alpha_j[i] + X_i beta`` for every observation."""
    mean = jnp.zeros(X.shape[0], X.dtype)
    if state.beta is not None:
        mean = mean + X @ state.beta
    if state.alpha is not None:
        mean = mean + state.alpha[group]
    return mean


def pointwise_log_likelihood(state: GibbsState, y: jax.Array, X: jax.Array, group: jax.Array | None,
                             y_scale=1.0) -> jax.Array:
    """``log N(y_i | alpha_j[i] + X_i beta, sigma_y^2)`` for every observation, shape ``(n,)``.

    With the kernel's coordinates (``y``, ``X`` of the model's kernel design, a kernel state), pass
    ``y_scale = k`` to get the log density of the response in the user's units (``- log k``).
    """
    z = (y - predict_mean(state, X, group)) / state.sigma_y
    return -0.5 * z**2 - jnp.log(y_scale * state.sigma_y) - 0.5 * _LOG_2PI

"""Log densities: the joint (``lp``) of the seed and of the multilevel model; the pointwise likelihood."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from mlgibbs.base import GibbsState
from mlgibbs.conditionals import group_sum_of_squares, residual_sum_of_squares
from mlgibbs.conditionals.tree import cholesky, solve_lower
from mlgibbs.models.data import LinearData
from mlgibbs.priors import Priors

__all__ = ["log_joint", "mixed_log_joint", "pointwise_log_likelihood", "predict_mean"]

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


def mixed_log_joint(state, data, structure, priors, z_scale) -> jax.Array:
    r"""Log joint density of a :class:`~mlgibbs.models.mixed.MixedModel`, in the user's parametrisation.

    .. math::

        \log p(y \mid \beta, b, \sigma_y) + \sum_f \log p(b_f \mid \gamma_f, \Sigma_f)
        + \log p(\beta, \gamma) + \log p(\sigma_y) + \sum_f \sum_{\text{blocks}} \log p(\Sigma_{f,\text{block}})

    A pure JAX function (``jit``, ``vmap``). ``state`` (:class:`~mlgibbs.samplers.mixed.MixedState`)
    and ``data`` (:class:`~mlgibbs.models.mixed_data.MixedData`) are in the kernel's coordinates,
    ``priors`` are the user's (a :class:`~mlgibbs.samplers.mixed.MixedPriors` of the priors as the
    model resolved them in the user's units: ``model.priors["sigma_y"]`` and, per factor,
    ``model.priors[name]``) and ``z_scale`` are the scales of the varying-coefficient columns
    (``model.transform.z_scale``, one ``(d_f,)`` array per factor).

    The value is the log density of the *user's* parameters at the point ``model.to_user(state)``,
    with respect to Lebesgue measure on ``beta``, every ``gamma_f``, every ``alpha_f`` (the user's
    effects ``b_f``), ``sigma_y``, the standard deviation of every one-column block of ``Sigma_f``,
    and the ``d (d + 1) / 2`` free entries of every correlated block of ``Sigma_f``; no Jacobian of
    the map to the kernel's coordinates enters (the same convention as :func:`log_joint`). It is
    computed without leaving the kernel's coordinates:

    * the residual sum of squares and the quadratic forms of the effects are invariant: the kernel's
      rows are ``(y - c)/k`` against centred and scaled columns, so ``rss = rss_user / k^2``
      (``k = data.y_scale``) and ``sigma_y = sigma_y,user / k``; the kernel's deviations
      ``C_f^{-1} (b_f - e U_f gamma_f) = D_f delta_user / k`` (``D_f = diag(z_scale_f)``) have the
      covariance ``Sigma_f = D_f Sigma_user D_f / k^2`` the state holds, so ``delta' Sigma^{-1} delta``
      is the user's;
    * the normalising terms use the user's scales: ``n log(k sigma_y)`` and, block by block
      (``Sigma_f`` is block-diagonal), ``J_f / 2 log |Sigma_user| = J_f / 2 (log |Sigma_f| +
      2 size log k - 2 sum log z_scale_f)``;
    * the priors are evaluated at the user's values: ``priors.sigma_y`` at ``k sigma_y``, a scalar
      block's prior at its standard deviation ``k sqrt(Sigma_f,jj) / z_scale_f,j`` (as
      :func:`log_joint` does for ``sigma_alpha``), a correlated block's prior
      (:class:`~mlgibbs.priors.InverseWishart`, :class:`~mlgibbs.priors.HuangWand`: both normalised,
      the latter with its auxiliary variables integrated out) at the user's covariance block, through
      its inverse ``D_f Sigma_f^{-1} D_f / k^2`` and log-determinant
      (``log_prob_from_precision``); ``data.location_prior`` holds the user's independent Normal /
      Flat priors on ``(beta, gamma)`` as a Gaussian in the kernel's coordinates whose quadratic form
      and normaliser are the user's.

    The small factorizations are written elementwise (no LAPACK call for blocks up to 8 x 8).

    Improper priors (:class:`~mlgibbs.priors.Flat`, :class:`~mlgibbs.priors.Uniform`) contribute 0, so
    the value is then defined up to that constant (differences between states are exact).

    A binomial-type family (``structure.family``) has no ``sigma_y``: its likelihood is the binomial one
    of the kernel's rows (observations with the same design row and groups merged), whose binomial
    coefficients differ from the observations' by a constant.
    """
    from mlgibbs.samplers.mixed import deviations, fitted_values

    k = data.y_scale
    n = data.num_obs
    dtype = data.t.dtype
    fit = fitted_values(structure, data.W, data.codes, state.beta, state.b)
    if structure.family == "gaussian":
        resid = data.t - fit
        rss = data.rss_floor + jnp.sum(resid**2)
        lp = -0.5 * n * _LOG_2PI - n * jnp.log(k * state.sigma_y) - 0.5 * rss / state.sigma_y**2
        lp = lp + priors.sigma_y.log_prob(k * state.sigma_y)
    elif structure.family == "negbinomial":  # every observation's NB probability; r has sigma_y's slot
        from mlgibbs.conditionals.negbinomial import log_likelihood

        lp = log_likelihood(fit, data, state.sigma_y) + priors.sigma_y.log_prob(state.sigma_y)
    elif structure.family == "poisson":  # every observation's Poisson probability, from the merged rows
        from mlgibbs.conditionals.poisson import log_likelihood

        lp = log_likelihood(fit, data)
    else:  # the binomial log likelihood of the kernel's merged rows (binomial coefficients of the rows)
        from mlgibbs.families import FAMILIES, log_prob

        lp = jnp.sum(log_prob(FAMILIES[structure.family], data.t, data.trials, fit))
    lp = lp + data.location_prior.log_prob(jnp.concatenate([state.beta, *state.gamma]))
    for f in range(structure.num_factors):
        dev = deviations(structure, data.U, state.gamma, state.b, f) @ data.coef_maps[f].T   # (J, d)
        J = dev.shape[0]
        zs = jnp.asarray(z_scale[f], dtype)
        for (start, size), prior in zip(structure.cov_blocks[f], priors.cov[f]):
            block = slice(start, start + size)
            cov = state.cov[f][None, block, block]
            inv_chol = solve_lower(cholesky(cov), jnp.eye(size, dtype=dtype)[None])[0]         # L^{-1}
            white = jnp.sum(dev[:, None, block] * inv_chol[None, :, :], axis=-1)                # L^{-1} delta_g
            # log |Sigma_user| of the block: Sigma_user = k^2 D^{-1} Sigma D^{-1}
            log_det = (-2.0 * jnp.sum(jnp.log(jnp.diagonal(inv_chol))) + 2.0 * size * jnp.log(k)
                       - 2.0 * jnp.sum(jnp.log(zs[block])))
            lp = lp - 0.5 * J * size * _LOG_2PI - 0.5 * J * log_det - 0.5 * jnp.sum(white**2)
            if size == 1:
                lp = lp + prior.log_prob(k / (inv_chol[0, 0] * zs[start]))
            else:   # the user's precision D Sigma^{-1} D / k^2, with Sigma^{-1} = L^{-T} L^{-1}
                precision = jnp.sum(inv_chol[:, :, None] * inv_chol[:, None, :], axis=0)
                precision = precision * (zs[block, None] * zs[None, block]) / k**2
                lp = lp + prior.log_prob_from_precision(precision, log_det)
    return lp

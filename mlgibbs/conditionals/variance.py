"""Conditional draw of a variance given a Gaussian sum of squares, for each scale prior.

Every scale update reduces to this: ``m`` terms ``e_k ~ N(0, sigma^2)`` with ``S = sum_k e_k^2``
give the likelihood ``(sigma^2)^{-m/2} exp(-S / (2 sigma^2))``, and the prior on ``sigma`` decides
the draw (see :mod:`mlgibbs.priors` for the table).
"""

from __future__ import annotations


import jax
import jax.numpy as jnp

from mlgibbs.conditionals.slice import slice_sample
from mlgibbs.priors import (
    HalfCauchy,
    HalfNormal,
    HalfStudentT,
    InverseGamma,
    ScalePrior,
    Uniform,
)

__all__ = ["draw_variance", "variance_log_conditional"]


def _inverse_gamma(rng_key, concentration, rate, dtype):
    return rate / jax.random.gamma(rng_key, jnp.asarray(concentration, dtype), (), dtype)


def variance_log_conditional(prior: ScalePrior, sum_sq, count):
    """Log density of ``theta = log sigma^2`` given ``S`` and ``m``, up to a constant.

    ``-(m/2) theta - S e^{-theta} / 2 + log p_sigma(e^{theta/2}) + theta/2`` (the last term is the
    Jacobian of ``sigma = e^{theta/2}``).
    """

    def logdensity(theta):
        sigma = jnp.exp(0.5 * theta)
        return -0.5 * count * theta - 0.5 * sum_sq * jnp.exp(-theta) + prior.log_prob(sigma) + 0.5 * theta

    return logdensity


def draw_variance(
    rng_key: jax.Array, prior: ScalePrior, sum_sq: jax.Array, count, variance: jax.Array
) -> jax.Array:
    r"""Draw ``sigma^2`` from ``p(sigma^2 | S, m) ∝ p(sigma) (sigma^2)^{-m/2} exp(-S / 2 sigma^2)``.

    * :class:`~mlgibbs.priors.Uniform`: :math:`\sigma^2 = S / \chi^2_{m-1}` (exact).
    * :class:`~mlgibbs.priors.InverseGamma` ``(a, b)``:
      :math:`\sigma^2 \sim \mathrm{InvGamma}(a + m/2,\ b + S/2)` (exact).
    * :class:`~mlgibbs.priors.HalfStudentT` ``(nu, s)`` and :class:`~mlgibbs.priors.HalfCauchy`:
      auxiliary :math:`a \mid \sigma^2 \sim \mathrm{InvGamma}((\nu+1)/2,\ \nu/\sigma^2 + 1/s^2)`, then
      :math:`\sigma^2 \mid a \sim \mathrm{InvGamma}((\nu + m)/2,\ \nu/a + S/2)` (exact two-block
      Gibbs; ``a`` is redrawn each time from its full conditional, so it is not kept in the state).
    * :class:`~mlgibbs.priors.HalfNormal`, and any other prior object with a ``log_prob(sigma)``
      method: one slice-sampling transition on ``log sigma^2`` (leaves the conditional invariant).

    Parameters
    ----------
    rng_key
        PRNG key.
    prior
        The prior on ``sigma``.
    sum_sq
        ``S``.
    count
        ``m``, the number of Gaussian terms in ``S``.
    variance
        The current ``sigma^2`` (used by the auxiliary-variable and slice draws).

    Returns
    -------
    jax.Array
        The new ``sigma^2``.
    """
    dtype = jnp.result_type(sum_sq)
    count = jnp.asarray(count, dtype)
    if isinstance(prior, Uniform):
        chi2 = 2.0 * jax.random.gamma(rng_key, 0.5 * (count - 1.0), (), dtype)
        return sum_sq / chi2
    if isinstance(prior, InverseGamma):
        return _inverse_gamma(rng_key, prior.concentration + 0.5 * count, prior.rate + 0.5 * sum_sq, dtype)
    if isinstance(prior, HalfCauchy):
        prior = prior.as_student_t()
    if isinstance(prior, HalfStudentT):
        key_aux, key_var = jax.random.split(rng_key)
        nu, s = prior.df, prior.scale
        aux = _inverse_gamma(key_aux, 0.5 * (nu + 1.0), nu / variance + 1.0 / s**2, dtype)
        return _inverse_gamma(key_var, 0.5 * (nu + count), nu / aux + 0.5 * sum_sq, dtype)
    if isinstance(prior, HalfNormal) or hasattr(prior, "log_prob"):
        logdensity = variance_log_conditional(prior, sum_sq, count)
        width = 3.0 * jnp.sqrt(2.0 / (count + 1.0)) + 0.1
        theta = slice_sample(rng_key, jnp.log(variance), logdensity, width)
        return jnp.exp(theta)
    raise TypeError(f"unsupported scale prior {prior!r}; expected one of Uniform, InverseGamma, "
                    "HalfNormal, HalfCauchy, HalfStudentT, or an object with a log_prob(sigma) method")



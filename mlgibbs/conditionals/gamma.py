"""Full conditional of the group-level coefficients ``gamma``."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mlgibbs.base import GibbsState
from mlgibbs.conditionals._linalg import draw_gaussian_canonical, prior_precision
from mlgibbs.models.data import LinearData
from mlgibbs.priors import CoefficientPrior, Flat

__all__ = ["update_gamma", "gamma_conditional"]


def gamma_conditional(
    state: GibbsState, data: LinearData, prior: CoefficientPrior = Flat()
) -> tuple[jax.Array, jax.Array]:
    """Precision ``Q`` and linear term ``h`` of ``gamma | rest`` (mean ``Q^{-1} h``)."""
    U = data.groups.U
    prec0, lin0 = prior_precision(prior, U.shape[1], U.dtype)
    inv_var = 1.0 / state.sigma_alpha**2
    precision = (U.T @ U) * inv_var + jnp.diag(prec0)
    linear = (U.T @ state.alpha) * inv_var + lin0
    return precision, linear


def update_gamma(
    rng_key: jax.Array, state: GibbsState, data: LinearData, prior: CoefficientPrior = Flat()
) -> GibbsState:
    r"""Draw the group-level coefficients: the regression of ``alpha`` on ``U``.

    .. math::

        \gamma \mid \text{rest} \sim \mathcal N\!\left(Q^{-1} h,\ Q^{-1}\right),\qquad
        Q = \frac{U'U}{\sigma_\alpha^2} + P_0,\qquad
        h = \frac{U'\alpha}{\sigma_\alpha^2} + P_0 m_0

    (Gelman & Hill 2007, sec. 18.3), with ``P_0 = 0`` under a flat prior.

    Parameters
    ----------
    rng_key
        PRNG key.
    state
        Current state; ``alpha`` and ``sigma_alpha`` are read.
    data
        :class:`~mlgibbs.LinearData` with a grouping factor.
    prior
        :class:`~mlgibbs.priors.Flat` or :class:`~mlgibbs.priors.Normal`.

    Returns
    -------
    GibbsState
        ``state`` with ``gamma`` redrawn.
    """
    precision, linear = gamma_conditional(state, data, prior)
    return state._replace(gamma=draw_gaussian_canonical(rng_key, precision, linear))

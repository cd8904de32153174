"""Full conditional of the group intercepts ``alpha``."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mlgibbs.base import GibbsState
from mlgibbs.conditionals._linalg import group_fixed_effect
from mlgibbs.models.data import LinearData

__all__ = ["update_alpha", "alpha_conditional"]


def alpha_conditional(state: GibbsState, data: LinearData) -> tuple[jax.Array, jax.Array]:
    """Mean and standard deviation of ``alpha_j | rest`` for every group (see :func:`update_alpha`)."""
    g = data.groups
    prec_y = g.counts / state.sigma_y**2
    prec_alpha = 1.0 / state.sigma_alpha**2
    var = 1.0 / (prec_y + prec_alpha)
    prior_mean = g.U @ state.gamma if state.gamma is not None else jnp.zeros_like(g.y_mean)
    resid_mean = g.y_mean - group_fixed_effect(data, state.beta)
    mean = var * (prec_y * resid_mean + prec_alpha * prior_mean)
    return mean, jnp.sqrt(var)


def update_alpha(rng_key: jax.Array, state: GibbsState, data: LinearData) -> GibbsState:
    r"""Draw the group intercepts from their full conditional, independently across groups.

    .. math::

        \alpha_j \mid \text{rest} \sim \mathcal N\!\left(
            \frac{\frac{n_j}{\sigma_y^2}(\bar y_j - \bar x_j \beta) + \frac{1}{\sigma_\alpha^2} U_j\gamma}
                 {\frac{n_j}{\sigma_y^2} + \frac{1}{\sigma_\alpha^2}},\;
            \left(\frac{n_j}{\sigma_y^2} + \frac{1}{\sigma_\alpha^2}\right)^{-1}\right)

    the precision-weighted average of the group's partial-residual mean and its group-level
    prediction (Gelman & Hill 2007, eq. 12.16 and sec. 18.3).

    Parameters
    ----------
    rng_key
        PRNG key.
    state
        Current :class:`~mlgibbs.GibbsState`; ``beta``, ``gamma``, ``sigma_y``, ``sigma_alpha`` are read.
    data
        :class:`~mlgibbs.LinearData` with a grouping factor.

    Returns
    -------
    GibbsState
        ``state`` with ``alpha`` redrawn.
    """
    mean, sd = alpha_conditional(state, data)
    z = jax.random.normal(rng_key, mean.shape, mean.dtype)
    return state._replace(alpha=mean + sd * z)

"""Full conditional of the residual standard deviation ``sigma_y``."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mlgibbs.base import GibbsState
from mlgibbs.conditionals._linalg import group_fixed_effect
from mlgibbs.conditionals.variance import draw_variance
from mlgibbs.models.data import LinearData
from mlgibbs.priors import ScalePrior, Uniform

__all__ = ["update_sigma_y", "residual_sum_of_squares"]


def residual_sum_of_squares(state: GibbsState, data: LinearData) -> jax.Array:
    """``sum_i (y_i - alpha_j[i] - X_i beta)^2`` from the sufficient statistics.

    ``e_w + |R_w (beta - b_w)|^2 + sum_j n_j (ybar_j - alpha_j - xbar_j beta)^2``: every term is
    non-negative, so no precision is lost to cancellation.
    """
    rss = data.rss_within
    if state.beta is not None:
        rss = rss + jnp.sum((data.chol_within @ (state.beta - data.beta_within)) ** 2)
    if data.groups is not None:
        g = data.groups
        between = g.y_mean - state.alpha - group_fixed_effect(data, state.beta)
        rss = rss + jnp.sum(g.counts * between**2)
    return rss


def update_sigma_y(
    rng_key: jax.Array, state: GibbsState, data: LinearData, prior: ScalePrior = Uniform()
) -> GibbsState:
    r"""Draw the residual standard deviation from its full conditional.

    With :math:`S_y = \sum_{i=1}^n (y_i - \alpha_{j[i]} - X_i\beta)^2`,

    .. math::

        p(\sigma_y \mid \text{rest}) \propto p(\sigma_y)\,\sigma_y^{-n}\exp\!\left(-\frac{S_y}{2\sigma_y^2}\right);

    under the uniform prior :math:`\sigma_y^2 = S_y / \chi^2_{n-1}` (Gelman & Hill 2007, sec. 18.3),
    a draw, never the plug-in :math:`S_y / n`. Other priors: :func:`~mlgibbs.conditionals.variance.draw_variance`.

    Parameters
    ----------
    rng_key
        PRNG key.
    state
        Current state; ``alpha`` and ``beta`` are read.
    data
        :class:`~mlgibbs.LinearData`.
    prior
        Prior on ``sigma_y``.

    Returns
    -------
    GibbsState
        ``state`` with ``sigma_y`` redrawn.
    """
    rss = residual_sum_of_squares(state, data)
    var = draw_variance(rng_key, prior, rss, data.num_obs, state.sigma_y**2)
    return state._replace(sigma_y=jnp.sqrt(var))

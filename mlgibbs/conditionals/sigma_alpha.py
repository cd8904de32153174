"""Full conditional of the group-level standard deviation ``sigma_alpha``."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mlgibbs.base import GibbsState
from mlgibbs.conditionals.variance import draw_variance
from mlgibbs.models.data import LinearData
from mlgibbs.priors import ScalePrior, Uniform

__all__ = ["update_sigma_alpha", "group_sum_of_squares"]


def group_sum_of_squares(state: GibbsState, data: LinearData) -> jax.Array:
    """``sum_{j=1}^J (alpha_j - U_j gamma)^2``."""
    resid = state.alpha
    if state.gamma is not None:
        resid = resid - data.groups.U @ state.gamma
    return jnp.sum(resid**2)


def update_sigma_alpha(
    rng_key: jax.Array, state: GibbsState, data: LinearData, prior: ScalePrior = Uniform()
) -> GibbsState:
    r"""Draw the group-level standard deviation from its full conditional.

    With :math:`S_\alpha = \sum_{j=1}^J (\alpha_j - U_j\gamma)^2`, a sum over the ``J`` groups,

    .. math::

        p(\sigma_\alpha \mid \text{rest}) \propto p(\sigma_\alpha)\,\sigma_\alpha^{-J}
            \exp\!\left(-\frac{S_\alpha}{2\sigma_\alpha^2}\right);

    under the uniform prior :math:`\sigma_\alpha^2 = S_\alpha / \chi^2_{J-1}` (Gelman & Hill 2007,
    sec. 18.3). Other priors: :func:`~mlgibbs.conditionals.variance.draw_variance`.

    Parameters
    ----------
    rng_key
        PRNG key.
    state
        Current state; ``alpha`` and ``gamma`` are read.
    data
        :class:`~mlgibbs.LinearData` with a grouping factor.
    prior
        Prior on ``sigma_alpha``.

    Returns
    -------
    GibbsState
        ``state`` with ``sigma_alpha`` redrawn.
    """
    ss = group_sum_of_squares(state, data)
    count = data.groups.counts.shape[0]
    var = draw_variance(rng_key, prior, ss, count, state.sigma_alpha**2)
    return state._replace(sigma_alpha=jnp.sqrt(var))

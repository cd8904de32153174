"""Full conditional of the individual-level coefficients ``beta``."""

from __future__ import annotations

import jax

from mlgibbs.base import GibbsState
from mlgibbs.conditionals._linalg import draw_gaussian_canonical, prior_precision
from mlgibbs.models.data import LinearData
from mlgibbs.priors import CoefficientPrior, Flat

__all__ = ["update_beta", "beta_conditional"]


def beta_conditional(
    state: GibbsState, data: LinearData, prior: CoefficientPrior = Flat()
) -> tuple[jax.Array, jax.Array]:
    """Precision ``Q`` and linear term ``h`` of ``beta | rest`` (mean ``Q^{-1} h``)."""
    dtype = data.xtx.dtype
    p = data.xtx.shape[0]
    prec0, lin0 = prior_precision(prior, p, dtype)
    inv_var = 1.0 / state.sigma_y**2
    xty = data.xty_within
    if data.groups is not None:
        g = data.groups
        xty = xty + g.x_mean.T @ (g.counts * (g.y_mean - state.alpha))
    precision = data.xtx * inv_var + jax.numpy.diag(prec0)
    linear = xty * inv_var + lin0
    return precision, linear


def update_beta(
    rng_key: jax.Array, state: GibbsState, data: LinearData, prior: CoefficientPrior = Flat()
) -> GibbsState:
    r"""Draw the individual-level coefficients: the regression of ``y - alpha_j[i]`` on ``X``.

    With prior ``beta ~ N(m_0, P_0^{-1})`` (``P_0 = 0`` for a flat prior),

    .. math::

        \beta \mid \text{rest} \sim \mathcal N\!\left(Q^{-1} h,\ Q^{-1}\right),\qquad
        Q = \frac{X'X}{\sigma_y^2} + P_0,\qquad
        h = \frac{X'(y - \alpha_{j[\cdot]})}{\sigma_y^2} + P_0 m_0,

    where ``X'(y - alpha_j[i]) = X_w' y_w + sum_j n_j xbar_j (ybar_j - alpha_j)`` is formed from the
    sufficient statistics (Gelman & Hill 2007, sec. 18.3). Without a grouping factor this is the
    ordinary Bayesian regression of ``y`` on ``X``.

    Parameters
    ----------
    rng_key
        PRNG key.
    state
        Current state; ``alpha`` and ``sigma_y`` are read.
    data
        :class:`~mlgibbs.LinearData`.
    prior
        :class:`~mlgibbs.priors.Flat` or :class:`~mlgibbs.priors.Normal`.

    Returns
    -------
    GibbsState
        ``state`` with ``beta`` redrawn.
    """
    precision, linear = beta_conditional(state, data, prior)
    return state._replace(beta=draw_gaussian_canonical(rng_key, precision, linear))

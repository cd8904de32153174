"""Full conditional of the individual-level coefficients ``beta``."""

from __future__ import annotations

import jax

from mlgibbs.base import GibbsState
from mlgibbs.conditionals._linalg import conditional_prior, draw_gaussian_canonical, prior_precision
from mlgibbs.models.data import LinearData
from mlgibbs.priors import CoefficientPrior

__all__ = ["update_beta", "beta_conditional"]


def beta_conditional(
    state: GibbsState, data: LinearData, prior: CoefficientPrior | None = None
) -> tuple[jax.Array, jax.Array]:
    """Precision ``Q`` and linear term ``h`` of ``beta | rest`` (mean ``Q^{-1} h``)."""
    dtype = data.xtx.dtype
    p = data.xtx.shape[0]
    if prior is None:
        prec0, lin0 = conditional_prior(data, p, "beta", state.gamma)
    else:
        prec0, lin0 = prior_precision(prior, p, dtype)
        prec0 = jax.numpy.diag(prec0)
    inv_var = 1.0 / state.sigma_y**2
    xty = data.xty_within
    if data.groups is not None:
        g = data.groups
        xty = xty + g.x_mean.T @ (g.counts * (g.y_mean - state.alpha))
    precision = data.xtx * inv_var + prec0
    linear = xty * inv_var + lin0
    return precision, linear


def update_beta(
    rng_key: jax.Array, state: GibbsState, data: LinearData, prior: CoefficientPrior | None = None
) -> GibbsState:
    r"""Draw the individual-level coefficients: the regression of ``y - alpha_j[i]`` on ``X``.

    With the prior of ``beta`` given ``gamma`` in canonical form ``(P_0, h_0)`` (``P_0 = 0`` for a flat
    prior; from the joint prior ``data.location_prior`` of ``(beta, gamma)``,
    ``P_0 = P_{\beta\beta}``, ``h_0 = (P m)_\beta - P_{\beta\gamma}\gamma``),

    .. math::

        \beta \mid \text{rest} \sim \mathcal N\!\left(Q^{-1} h,\ Q^{-1}\right),\qquad
        Q = \frac{X'X}{\sigma_y^2} + P_0,\qquad
        h = \frac{X'(y - \alpha_{j[\cdot]})}{\sigma_y^2} + h_0,

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
        ``None`` (default): the prior carried by ``data``. A :class:`~mlgibbs.priors.Flat` or
        :class:`~mlgibbs.priors.Normal` replaces it (independent of ``gamma``, in the coordinates of
        ``data``).

    Returns
    -------
    GibbsState
        ``state`` with ``beta`` redrawn.
    """
    precision, linear = beta_conditional(state, data, prior)
    return state._replace(beta=draw_gaussian_canonical(rng_key, precision, linear))

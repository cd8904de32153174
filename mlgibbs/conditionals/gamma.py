"""Full conditional of the group-level coefficients ``gamma``."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mlgibbs.base import GibbsState
from mlgibbs.conditionals._linalg import conditional_prior, draw_gaussian_canonical, prior_precision
from mlgibbs.models.data import LinearData
from mlgibbs.priors import CoefficientPrior

__all__ = ["update_gamma", "gamma_conditional"]


def gamma_conditional(
    state: GibbsState, data: LinearData, prior: CoefficientPrior | None = None
) -> tuple[jax.Array, jax.Array]:
    """Precision ``Q`` and linear term ``h`` of ``gamma | rest`` (mean ``Q^{-1} h``)."""
    U = data.groups.U
    if prior is None:
        prec0, lin0 = conditional_prior(data, data.xtx.shape[0], "gamma", state.beta)
    else:
        prec0, lin0 = prior_precision(prior, U.shape[1], U.dtype)
        prec0 = jnp.diag(prec0)
    inv_var = 1.0 / state.sigma_alpha**2
    precision = (U.T @ U) * inv_var + prec0
    linear = (U.T @ state.alpha) * inv_var + lin0
    return precision, linear


def update_gamma(
    rng_key: jax.Array, state: GibbsState, data: LinearData, prior: CoefficientPrior | None = None
) -> GibbsState:
    r"""Draw the group-level coefficients: the regression of ``alpha`` on ``U``.

    .. math::

        \gamma \mid \text{rest} \sim \mathcal N\!\left(Q^{-1} h,\ Q^{-1}\right),\qquad
        Q = \frac{U'U}{\sigma_\alpha^2} + P_0,\qquad
        h = \frac{U'\alpha}{\sigma_\alpha^2} + h_0

    (Gelman & Hill 2007, sec. 18.3), with the prior of ``gamma`` given ``beta`` in canonical form
    ``(P_0, h_0)`` (``P_0 = 0`` under a flat prior; from the joint prior ``data.location_prior``,
    ``P_0 = P_{\gamma\gamma}``, ``h_0 = (P m)_\gamma - P_{\gamma\beta}\beta``).

    Parameters
    ----------
    rng_key
        PRNG key.
    state
        Current state; ``alpha`` and ``sigma_alpha`` are read.
    data
        :class:`~mlgibbs.LinearData` with a grouping factor.
    prior
        ``None`` (default): the prior carried by ``data``. A :class:`~mlgibbs.priors.Flat` or
        :class:`~mlgibbs.priors.Normal` replaces it (independent of ``beta``, in the coordinates of
        ``data``).

    Returns
    -------
    GibbsState
        ``state`` with ``gamma`` redrawn.
    """
    precision, linear = gamma_conditional(state, data, prior)
    return state._replace(gamma=draw_gaussian_canonical(rng_key, precision, linear))

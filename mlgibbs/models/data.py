"""The data pytree of the varying-intercept linear model: sufficient statistics.

Every full conditional of the Gaussian model depends on the data only through

* per-group counts ``n_j``, means ``ybar_j`` and ``xbar_j`` (rows of ``X`` averaged in group ``j``);
* the within-group least-squares fit of ``y`` on ``X`` (both centred at their group means):
  its minimum residual sum of squares ``e_w``, its minimiser ``b_w`` and the triangular factor
  ``R_w`` of the within-group cross product ``X_w' X_w = R_w' R_w``;
* the total cross product ``X'X`` and the within cross product ``X_w' y_w``;
* the group-level design ``U``.

The residual sum of squares then splits into non-negative parts with no cancellation::

    sum_i (y_i - alpha_j[i] - X_i beta)^2
        = e_w + |R_w (beta - b_w)|^2 + sum_j n_j (ybar_j - alpha_j - xbar_j beta)^2,

which keeps float32 accurate, and a sweep costs ``O(J p + p^3)`` whatever ``n`` is. Without a
grouping factor the same fields hold the ordinary least-squares fit of ``y`` on the raw ``X``.

:func:`sufficient_statistics` is a pure JAX function (two-pass, centred), so it can be ``jit``-ed and
``vmap``-ed over simulated data sets, as the Geweke and SBC tests do.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from mlgibbs.priors import LocationPrior

__all__ = ["GroupData", "LinearData", "sufficient_statistics", "to_device"]


def to_device(tree, dtype):
    """Host arrays of a pytree cast (on the host, by NumPy) and placed on the default device.

    ``jnp.asarray(x, dtype)`` of a float64 NumPy array converts on the device, which compiles a small
    program per shape the first time: a few at model build, tenths of a second of a user's first call.
    """
    return jax.tree.map(lambda a: jax.device_put(np.asarray(a, dtype)), tree)


class GroupData(NamedTuple):
    """Per-group statistics of one grouping factor.

    Attributes
    ----------
    counts
        ``n_j``, shape ``(J,)``.
    y_mean
        ``ybar_j``, shape ``(J,)``.
    x_mean
        ``xbar_j``, shape ``(J, p)``.
    U
        Group-level predictors, shape ``(J, q)`` (intercept column included when the model has one).
    """

    counts: jax.Array
    y_mean: jax.Array
    x_mean: jax.Array
    U: jax.Array


class LinearData(NamedTuple):
    """Sufficient statistics of the Gaussian linear model with at most one grouping factor.

    Attributes
    ----------
    num_obs
        ``n``, shape ``()``.
    rss_within
        ``e_w``: the minimum over ``beta`` of the within-group residual sum of squares.
    chol_within
        Upper-triangular ``R_w`` with ``R_w' R_w = X_w' X_w``, shape ``(p, p)``.
    beta_within
        ``b_w``, the within-group least-squares coefficients, shape ``(p,)``.
    xty_within
        ``X_w' y_w``, shape ``(p,)``.
    xtx
        The total cross product ``X' X``, shape ``(p, p)``.
    groups
        :class:`GroupData`, or ``None`` for a model without a grouping factor (then the fields above
        describe the raw, uncentred least-squares fit).
    location_prior
        :class:`~mlgibbs.priors.LocationPrior`: the joint Gaussian prior of ``(beta, gamma)`` in
        these coordinates (flat by default).
    y_scale
        ``k``, shape ``()``: the response is in units of ``k`` times the user's (1 unless the model
        rescaled it; see :mod:`mlgibbs.models.standardize`). Only the log density reported as ``lp``
        uses it, to be the density of the user's parametrisation.
    scale_grid
        The ``"grid"`` sampler's tabulated proposal of the scales for these data
        (:class:`~mlgibbs.conditionals.scale_grid.ScaleGrid`), or ``None`` (the sampler then builds it in
        every sweep; :func:`mlgibbs.samplers.grid.with_scale_grid` adds it once).
    """

    num_obs: jax.Array
    rss_within: jax.Array
    chol_within: jax.Array
    beta_within: jax.Array
    xty_within: jax.Array
    xtx: jax.Array
    groups: GroupData | None
    location_prior: LocationPrior
    y_scale: jax.Array
    scale_grid: Any = None


def _segment_sum(xp, values, codes, num_groups):
    if xp is np:
        if values.ndim == 1:
            return np.bincount(codes, weights=values, minlength=num_groups)
        if values.shape[1] == 0:
            return np.zeros((num_groups, 0), values.dtype)
        return np.stack([np.bincount(codes, weights=values[:, k], minlength=num_groups)
                         for k in range(values.shape[1])], axis=1).reshape(num_groups, values.shape[1])
    return jax.ops.segment_sum(values, codes, num_segments=num_groups)


def sufficient_statistics(
    y: ArrayLike,
    X: ArrayLike,
    group: ArrayLike | None = None,
    U: ArrayLike | None = None,
    num_groups: int | None = None,
    *,
    location_prior: LocationPrior | None = None,
    y_scale: float = 1.0,
    xp=None,
) -> LinearData:
    """Compute the :class:`LinearData` of a data set.

    Parameters
    ----------
    y
        Responses, shape ``(n,)``.
    X
        Individual-level predictors, shape ``(n, p)`` (``p`` may be 0).
    group
        Integer group index ``j[i]`` in ``0..J-1``, shape ``(n,)``; ``None`` for no grouping factor.
    U
        Group-level predictors, shape ``(J, q)``; required with ``group``.
    num_groups
        ``J`` (static); defaults to ``U.shape[0]``.
    location_prior
        Prior of ``(beta, gamma)`` in these coordinates; default flat.
    y_scale
        Units of ``y`` relative to the user's (see :class:`LinearData`).
    xp
        ``numpy`` to compute on the host (float64, as model building does; fast, no compilation),
        or ``jax.numpy`` (default) for a pure JAX function that can be ``jit``-ed and ``vmap``-ed over
        simulated data sets, as the Geweke and SBC tests do.

    Returns
    -------
    LinearData
        In the floating dtype of ``y``.

    Notes
    -----
    The input is assumed valid (the model front ends check it); a within-group design of full
    column rank is required for ``R_w`` and ``b_w`` to be well defined.
    """
    xp = jnp if xp is None else xp
    y = xp.asarray(y)
    dtype = y.dtype if xp.issubdtype(y.dtype, xp.floating) else xp.result_type(float)
    y = y.astype(dtype)
    X = xp.asarray(X, dtype).reshape(y.shape[0], -1)
    n = y.shape[0]

    if group is None:
        yw, Xw, groups = y, X, None
    else:
        U = xp.asarray(U, dtype)
        J = U.shape[0] if num_groups is None else num_groups
        group = xp.asarray(group)
        counts = _segment_sum(xp, xp.ones_like(y), group, J)
        y_mean = _segment_sum(xp, y, group, J) / counts
        x_mean = _segment_sum(xp, X, group, J) / counts[:, None]
        yw = y - y_mean[group]
        Xw = X - x_mean[group]
        groups = GroupData(counts=counts, y_mean=y_mean, x_mean=x_mean, U=U)

    p = X.shape[1]
    if p == 0:
        rss = xp.sum(yw**2)
        R = xp.zeros((0, 0), dtype)
        b = xp.zeros((0,), dtype)
        xty = xp.zeros((0,), dtype)
        xtx = xp.zeros((0, 0), dtype)
    else:
        Q, R = xp.linalg.qr(Xw, mode="reduced")
        qty = Q.T @ yw
        if xp is np:
            b = np.linalg.solve(R, qty)
        else:
            b = jax.scipy.linalg.solve_triangular(R, qty, lower=False)
        resid = yw - Xw @ b
        rss = xp.sum(resid**2)
        xty = R.T @ qty
        xtx = R.T @ R
        if groups is not None:
            xtx = xtx + (groups.x_mean * groups.counts[:, None]).T @ groups.x_mean
    d = p + (0 if groups is None else groups.U.shape[1])
    if location_prior is None:
        location_prior = LocationPrior(xp.zeros((d,), dtype), xp.zeros((d, d), dtype), xp.zeros((), dtype))
    else:
        location_prior = LocationPrior(*(xp.asarray(a, dtype) for a in location_prior))
    return LinearData(
        num_obs=xp.asarray(n, dtype),
        rss_within=rss,
        chol_within=R,
        beta_within=b,
        xty_within=xty,
        xtx=xtx,
        groups=groups,
        location_prior=location_prior,
        y_scale=xp.asarray(y_scale, dtype),
    )

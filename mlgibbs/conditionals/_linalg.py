"""Small linear-algebra helpers shared by the Gaussian conditionals."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def draw_gaussian_canonical(rng_key: jax.Array, precision: jax.Array, linear: jax.Array) -> jax.Array:
    """Draw from ``N(Q^{-1} h, Q^{-1})`` given the precision ``Q`` and the linear term ``h``.

    With ``Q = L L'`` (Cholesky), the draw is ``L'^{-1} (L^{-1} h + z)``, ``z ~ N(0, I)``
    (Rue 2001): two triangular solves, no explicit inverse.
    """
    return draw_gaussian_cholesky(rng_key, jnp.linalg.cholesky(precision), linear)


def draw_gaussian_cholesky(rng_key: jax.Array, chol: jax.Array, linear: jax.Array) -> jax.Array:
    """:func:`draw_gaussian_canonical` given the lower Cholesky factor ``L`` of the precision."""
    z = jax.random.normal(rng_key, linear.shape, linear.dtype)
    w = jax.scipy.linalg.solve_triangular(chol, linear, lower=True)
    return jax.scipy.linalg.solve_triangular(chol.T, w + z, lower=False)


def prior_precision(prior, size: int, dtype) -> tuple[jax.Array, jax.Array]:
    """Diagonal precision and precision-weighted mean ``(P0, P0 m0)`` of a coefficient prior."""
    normal = prior.as_normal()
    loc = jnp.broadcast_to(jnp.asarray(normal.loc, dtype), (size,))
    scale = jnp.broadcast_to(jnp.asarray(normal.scale, dtype), (size,))
    prec = jnp.where(jnp.isfinite(scale), 1.0 / scale**2, 0.0).astype(dtype)
    return prec, prec * loc


def group_fixed_effect(data, beta: jax.Array | None) -> jax.Array:
    """``xbar_j beta`` for every group, zeros when the model has no individual-level predictor."""
    groups = data.groups
    if beta is None:
        return jnp.zeros_like(groups.y_mean)
    return groups.x_mean @ beta


def location_prior_blocks(data, p: int):
    """The joint prior of ``(beta, gamma)`` split at ``p``: ``(P, P m)`` and its blocks.

    Returns ``(P, h)`` with ``h = P m`` (canonical form) of ``data.location_prior``.
    """
    prior = data.location_prior
    precision = prior.precision
    return precision, precision @ prior.mean


def conditional_prior(data, p: int, block: str, other: jax.Array | None):
    """Canonical form ``(P_bb, h_b - P_bo theta_o)`` of one block of the joint location prior given the other.

    ``block`` is ``"beta"`` (the first ``p`` coordinates) or ``"gamma"`` (the rest); ``other`` is the
    current value of the other block (``None`` when the model has none).
    """
    precision, linear = location_prior_blocks(data, p)
    own = slice(0, p) if block == "beta" else slice(p, None)
    rest = slice(p, None) if block == "beta" else slice(0, p)
    prec = precision[own, own]
    lin = linear[own]
    if other is not None:
        lin = lin - precision[own, rest] @ other
    return prec, lin

"""Small linear-algebra helpers shared by the Gaussian conditionals."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def draw_gaussian_canonical(rng_key: jax.Array, precision: jax.Array, linear: jax.Array) -> jax.Array:
    """Draw from ``N(Q^{-1} h, Q^{-1})`` given the precision ``Q`` and the linear term ``h``.

    With ``Q = L L'`` (Cholesky), the draw is ``L'^{-1} (L^{-1} h + z)``, ``z ~ N(0, I)``
    (Rue 2001): two triangular solves, no explicit inverse.
    """
    chol = jnp.linalg.cholesky(precision)
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

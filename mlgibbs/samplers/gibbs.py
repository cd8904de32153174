"""The five-step Gibbs sampler of Gelman & Hill (2007, ch. 18) for the varying-intercept model.

One sweep draws, in turn, from the full conditionals

1. ``alpha | beta, gamma, sigma_y, sigma_alpha, y`` (independent normals, one per group),
2. ``beta | alpha, sigma_y, y`` (the regression of ``y - alpha_j[i]`` on ``X``),
3. ``gamma | alpha, sigma_alpha`` (the regression of ``alpha`` on ``U``),
4. ``sigma_y | alpha, beta, y`` (residual sum of squares over a chi-square draw, or per prior),
5. ``sigma_alpha | alpha, gamma`` (sum over the ``J`` groups, per prior),

each an update of :mod:`mlgibbs.conditionals`. Blocks the model does not have are skipped: without
a grouping factor the sweep is ``beta, sigma_y`` (Bayesian linear regression). Every draw is exact
except the variance under a half-normal prior, which is one independence Metropolis-Hastings step
(:func:`~mlgibbs.conditionals.variance.draw_variance_gig`).

It is the right choice as a transparent baseline and when ``sigma_alpha`` is not small next to
``sigma_y / sqrt(n_j)``; when the group effects are strongly shrunk it mixes slowly (``alpha`` and
``sigma_alpha`` are highly dependent in the posterior).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from mlgibbs.base import GibbsState, SamplingAlgorithm, compose
from mlgibbs.conditionals import (
    update_alpha,
    update_beta,
    update_gamma,
    update_sigma_alpha,
    update_sigma_y,
)
from mlgibbs.models.data import LinearData
from mlgibbs.priors import Priors

__all__ = ["Structure", "gibbs_kernel", "initial_state", "systematic_kernel"]


class Structure(NamedTuple):
    """Which blocks a model has (static configuration of a kernel)."""

    has_groups: bool
    has_beta: bool
    has_gamma: bool


def structure_of(data: LinearData) -> Structure:
    """Read the block structure off a data pytree (its shapes are static)."""
    has_groups = data.groups is not None
    return Structure(
        has_groups=has_groups,
        has_beta=data.xtx.shape[0] > 0,
        has_gamma=has_groups and data.groups.U.shape[1] > 0,
    )


def _inverse_diagonal(matrix: jax.Array) -> jax.Array:
    """``diag(A^{-1})`` of a symmetric positive definite ``A``, by its Cholesky factor (cheap to compile,
    unlike the SVD behind ``inv``/``pinv``/``lstsq``)."""
    chol_inv = jax.scipy.linalg.solve_triangular(jnp.linalg.cholesky(matrix), jnp.eye(matrix.shape[0],
                                                 dtype=matrix.dtype), lower=True)
    return jnp.sum(chol_inv**2, axis=0)


def initial_state(rng_key: jax.Array, data: LinearData, structure: Structure) -> GibbsState:
    """An over-dispersed starting state built from the least-squares fits in ``data``.

    Locations start at the least-squares estimates plus normal noise of twice their rough standard
    errors; scales start at their rough estimates times ``exp(Uniform(-1, 1))``. All the noise comes
    from one draw of normals and one of uniforms (each random call site is a compiled loop of its own,
    and compiling dominates a first run).
    """
    dtype = data.rss_within.dtype
    n = data.num_obs
    p = data.xtx.shape[0]
    J = data.groups.counts.shape[0] if structure.has_groups else 0
    q = data.groups.U.shape[1] if structure.has_gamma else 0
    key_normal, key_uniform = jax.random.split(rng_key)
    z = jax.random.normal(key_normal, (p + q + J,), dtype)
    z_beta, z_gamma, z_alpha = z[:p], z[p:p + q], z[p + q:]
    jitter = jnp.exp(jax.random.uniform(key_uniform, (2,), dtype, -1.0, 1.0))

    sigma_y = jitter[0] * jnp.sqrt(data.rss_within / jnp.maximum(n - p, 1.0))
    beta = None
    if structure.has_beta:
        se = sigma_y * jnp.sqrt(_inverse_diagonal(data.xtx))
        beta = data.beta_within + 2.0 * se * z_beta
    if not structure.has_groups:
        return GibbsState(alpha=None, beta=beta, gamma=None, sigma_y=sigma_y, sigma_alpha=None)

    g = data.groups
    alpha_hat = g.y_mean - (g.x_mean @ data.beta_within if structure.has_beta else 0.0)
    gamma = None
    centre = jnp.zeros_like(alpha_hat)
    if structure.has_gamma:
        utu = g.U.T @ g.U  # full rank (checked when the model is built)
        gamma_hat = jax.scipy.linalg.cho_solve((jnp.linalg.cholesky(utu), True), g.U.T @ alpha_hat)
        centre = g.U @ gamma_hat
    spread = jnp.sqrt(jnp.mean((alpha_hat - centre) ** 2) + 0.01 * sigma_y**2)
    sigma_alpha = jitter[1] * spread
    if structure.has_gamma:
        se = sigma_alpha * jnp.sqrt(_inverse_diagonal(utu))
        gamma = gamma_hat + 2.0 * se * z_gamma
    alpha = alpha_hat + sigma_y / jnp.sqrt(g.counts) * z_alpha
    return GibbsState(alpha=alpha, beta=beta, gamma=gamma, sigma_y=sigma_y, sigma_alpha=sigma_alpha)


def systematic_kernel(updates_for, structure: Structure | None = None) -> SamplingAlgorithm:
    """The kernel of a systematic-scan sweep on a :class:`~mlgibbs.GibbsState`: ``init`` the over-dispersed
    :func:`initial_state`, ``step`` the sweep ``updates_for(structure)`` (the structure read off ``data``
    when ``None``). The samplers ``"gibbs"``, ``"collapsed"`` and ``"grid"`` differ only in their sweep."""

    def init(rng_key: jax.Array, data: LinearData) -> GibbsState:
        return initial_state(rng_key, data, structure or structure_of(data))

    def step(rng_key: jax.Array, state: GibbsState, data: LinearData) -> GibbsState:
        return updates_for(structure or structure_of(data))(rng_key, state, data)

    return SamplingAlgorithm(init=init, step=step)


def gibbs_kernel(priors: Priors = Priors(), structure: Structure | None = None) -> SamplingAlgorithm:
    """Build the five-step Gibbs kernel.

    Parameters
    ----------
    priors
        :class:`~mlgibbs.priors.Priors` of the four parameter blocks.
    structure
        Which blocks the model has; ``None`` reads it off ``data`` when the kernel is called.

    Returns
    -------
    SamplingAlgorithm
        ``init(rng_key, data)`` and ``step(rng_key, state, data)``, both pure and jittable.

    Examples
    --------
    >>> import jax, mlgibbs as mg
    >>> model = mg.Model.from_formula("log_radon ~ floor + log_uranium + (1 | county)",
    ...                               mg.datasets.load_radon())
    >>> kernel = mg.gibbs(model)
    >>> state = kernel.init(jax.random.key(0), model.data)
    >>> state = jax.jit(kernel.step)(jax.random.key(1), state, model.data)
    """

    def updates_for(s: Structure):
        updates = []
        if s.has_groups:
            updates.append(update_alpha)
        if s.has_beta:
            updates.append(update_beta)
        if s.has_gamma:
            updates.append(update_gamma)
        updates.append(functools.partial(update_sigma_y, prior=priors.sigma_y))
        if s.has_groups:
            updates.append(functools.partial(update_sigma_alpha, prior=priors.sigma_alpha))
        return compose(updates)

    return systematic_kernel(updates_for, structure)

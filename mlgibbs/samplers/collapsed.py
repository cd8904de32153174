"""Collapsed (blocked) Gibbs: scales from their marginal, then every location in one exact block.

One sweep:

1. ``sigma_y, sigma_alpha | y`` with ``alpha``, ``beta``, ``gamma`` integrated out: one slice step on
   each ``log sigma^2`` of the two-dimensional marginal posterior
   (:func:`~mlgibbs.conditionals.collapsed.update_scales_collapsed`);
2. ``beta, gamma | sigma, y`` jointly, ``alpha`` integrated out (Gaussian,
   :func:`~mlgibbs.conditionals.collapsed.update_locations`);
3. ``alpha | beta, gamma, sigma, y`` (:func:`~mlgibbs.update_alpha`).

Steps 2-3 are an exact joint draw of the locations given the scales, and step 1 never looks at the
locations, so the chain on the scales is a Gibbs sampler on ``p(sigma_y, sigma_alpha | y)`` alone:
the dependence between ``alpha`` and ``sigma_alpha`` that stalls the five-step sampler when
``sigma_alpha`` is small (the funnel) does not enter. A partially collapsed Gibbs sampler
(van Dyk & Park 2008), valid for every scale prior (it only needs the prior's log density).

The right choice for the Gaussian varying-intercept model in general, and in particular when
``sigma_alpha`` is small next to ``sigma_y / sqrt(n_j)`` (strong pooling, as in radon Minnesota).
A sweep costs ``O(J (p + q)^2 + (p + q)^3)`` times the number of slice evaluations (about 5-10
per scale), independent of ``n``.
"""

from __future__ import annotations

import functools

import jax

from mlgibbs.base import GibbsState, SamplingAlgorithm, compose
from mlgibbs.conditionals import update_alpha
from mlgibbs.conditionals.collapsed import update_locations, update_scales_collapsed
from mlgibbs.models.data import LinearData
from mlgibbs.priors import Priors
from mlgibbs.samplers.gibbs import Structure, initial_state, structure_of

__all__ = ["collapsed_kernel"]


def collapsed_kernel(priors: Priors = Priors(), structure: Structure | None = None) -> SamplingAlgorithm:
    """Build the collapsed Gibbs kernel (see the module docstring).

    Parameters
    ----------
    priors
        :class:`~mlgibbs.priors.Priors`; any scale prior.
    structure
        Which blocks the model has; ``None`` reads it off ``data``.

    Returns
    -------
    SamplingAlgorithm
        ``init(rng_key, data)``, ``step(rng_key, state, data)`` on a :class:`~mlgibbs.GibbsState`.
    """

    def updates_for(s: Structure):
        updates = [
            functools.partial(update_scales_collapsed, priors=priors),
            functools.partial(update_locations, priors=priors),
        ]
        if s.has_groups:
            updates.append(update_alpha)
        return compose(updates)

    def init(rng_key: jax.Array, data: LinearData) -> GibbsState:
        return initial_state(rng_key, data, structure or structure_of(data))

    def step(rng_key: jax.Array, state: GibbsState, data: LinearData) -> GibbsState:
        return updates_for(structure or structure_of(data))(rng_key, state, data)

    return SamplingAlgorithm(init=init, step=step)

"""Collapsed (blocked) Gibbs: ``sigma_alpha`` from its marginal, then every location in one exact block.

One sweep:

1. ``sigma_alpha | sigma_y, y`` with ``alpha``, ``beta``, ``gamma`` integrated out: one slice step on
   ``log sigma_alpha^2`` (:func:`~mlgibbs.conditionals.collapsed.update_sigma_alpha_collapsed`);
2. ``beta, gamma | sigma, y`` jointly, ``alpha`` integrated out (Gaussian,
   :func:`~mlgibbs.conditionals.collapsed.update_locations`);
3. ``alpha | beta, gamma, sigma, y`` (:func:`~mlgibbs.update_alpha`);
4. ``sigma_y | alpha, beta, y`` (:func:`~mlgibbs.update_sigma_y`, exact for the conjugate priors).

Steps 1-3 are one joint draw of ``(sigma_alpha, alpha, beta, gamma)`` given ``sigma_y``: step 1 never
looks at the locations, so the dependence between ``alpha`` and ``sigma_alpha`` that stalls the
five-step sampler when ``sigma_alpha`` is small (the funnel) does not enter, and ``gamma`` moves with
``beta`` in one block. ``sigma_y`` is pinned by the data and mixes well from its conditional. A
partially collapsed Gibbs sampler (van Dyk & Park 2008), valid for every scale prior (step 1 only
needs the prior's log density). Without a grouping factor it is the two-block sampler
``beta | sigma_y``, ``sigma_y | beta``.

The right choice for the Gaussian varying-intercept model in general, and in particular when
``sigma_alpha`` is small next to ``sigma_y / sqrt(n_j)`` (strong pooling, as in radon Minnesota).
A sweep costs ``O(J (p + q)^2 + (p + q)^3)`` times the number of slice evaluations (about 5-10),
independent of ``n``. (:func:`~mlgibbs.conditionals.collapsed.update_scales_collapsed` draws both
scales from their joint marginal instead; it is slower per sweep and gains nothing for ``sigma_y``.)
"""

from __future__ import annotations

import functools

from mlgibbs.base import SamplingAlgorithm, compose
from mlgibbs.conditionals import update_alpha, update_sigma_y
from mlgibbs.conditionals.collapsed import update_locations, update_sigma_alpha_collapsed
from mlgibbs.priors import Priors
from mlgibbs.samplers.gibbs import Structure, systematic_kernel

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
        updates = []
        if s.has_groups:
            updates.append(functools.partial(update_sigma_alpha_collapsed, priors=priors))
        updates.append(functools.partial(update_locations, priors=priors))
        if s.has_groups:
            updates.append(update_alpha)
        updates.append(functools.partial(update_sigma_y, prior=priors.sigma_y))
        return compose(updates)

    return systematic_kernel(updates_for, structure)

"""Parameter-expanded Gibbs (Liu & Wu 1999; Gelman, van Dyk, Huang & Boscardin 2008; G&H sec. 18.6).

One sweep on the expanded model ``alpha_j = U_j gamma + xi eta_j`` (see :mod:`mlgibbs.conditionals.px`):

1. ``eta | rest`` (independent normals),
2. ``beta, gamma | rest`` jointly (regression of ``y - xi eta_j[i]`` on ``[X, U_j[i]]``),
3. ``xi | rest`` (regression on ``eta_j[i]``),
4. ``sigma_y | rest`` (per its prior),
5. ``sigma_eta | eta`` (per the working prior),

6. ``gamma | alpha, sigma_alpha`` (the centred regression of ``alpha`` on ``U``, with ``alpha = U gamma + xi eta``
   held fixed and ``eta`` re-expressed): a Gibbs update in the coordinates ``(alpha, xi, sigma_eta,
   beta, gamma)``, whose Jacobian ``|xi|^{-J}`` does not involve ``gamma``,

then ``alpha = U gamma + xi eta`` and ``sigma_alpha = |xi| sigma_eta`` are recorded. Step 2 alone
moves ``gamma`` only as far as the data allow given ``eta``, which is very little when the groups are
large (``n_j sigma_alpha^2 >> sigma_y^2``); step 6 adds the centred move, which is fast exactly then
(an interweaving of the two parametrisations, Yu & Meng 2011). The multiplier
``xi`` moves all the group effects and their scale together, which breaks the ``alpha``-``sigma_alpha``
dependence that stalls the five-step sampler. Under the uniform prior the working prior on
``(xi, sigma_eta)`` is improper and invariant under ``(xi, eta, sigma_eta) -> (xi / c, c eta, c sigma_eta)``;
the sweep is equivariant under that action, so after each sweep the state is moved to the
representative ``|xi| = 1`` (which keeps ``alpha`` and ``sigma_alpha``), so that ``xi`` cannot
drift to overflow.

The right choice when the model has varying intercepts and ``sigma_alpha`` is small next to
``sigma_y / sqrt(n_j)`` and the collapsed sampler's slice steps are unwanted; for an inverse-gamma
prior on ``sigma_alpha^2`` use ``"collapsed"``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from mlgibbs.base import GibbsState, SamplingAlgorithm, compose
from mlgibbs.conditionals import update_gamma, update_sigma_y
from mlgibbs.conditionals.px import (
    PXState,
    px_working_prior,
    update_beta_gamma,
    update_eta,
    update_sigma_eta,
    update_xi,
)
from mlgibbs.models.data import LinearData
from mlgibbs.priors import Priors
from mlgibbs.samplers.gibbs import Structure, gibbs_kernel, initial_state, structure_of

__all__ = ["px_kernel", "px_state_from_gibbs"]


def px_state_from_gibbs(state: GibbsState, data: LinearData) -> PXState:
    """Expand a :class:`~mlgibbs.GibbsState` with the same ``alpha`` and ``sigma_alpha``:
    ``xi = 1``, ``eta = alpha - U gamma``, ``sigma_eta = sigma_alpha``."""
    centre = data.groups.U @ state.gamma if state.gamma is not None else 0.0
    return PXState(
        alpha=state.alpha, beta=state.beta, gamma=state.gamma, sigma_y=state.sigma_y,
        sigma_alpha=state.sigma_alpha, eta=state.alpha - centre,
        xi=jnp.ones_like(state.sigma_alpha), sigma_eta=state.sigma_alpha,
    )


def px_kernel(priors: Priors = Priors(), structure: Structure | None = None) -> SamplingAlgorithm:
    """Build the parameter-expanded Gibbs kernel (see the module docstring).

    Models without a grouping factor have nothing to expand: the kernel is then the five-step one.
    """
    if structure is not None and not structure.has_groups:
        return gibbs_kernel(priors, structure)
    working = px_working_prior(priors.sigma_alpha)
    rescale = working.xi_scale == float("inf")

    def init(rng_key: jax.Array, data: LinearData) -> PXState:
        start = initial_state(rng_key, data, structure or structure_of(data))
        return px_state_from_gibbs(start, data)

    sweep = compose([
        update_eta,
        functools.partial(update_beta_gamma, priors=priors),
        functools.partial(update_xi, xi_scale=working.xi_scale, given_sigma_eta=working.xi_given_sigma_eta),
        lambda key, st, data: _with_alpha(update_sigma_y(key, _with_alpha(st, data), data, priors.sigma_y), data),
        functools.partial(update_sigma_eta, working=working),
    ])

    def step(rng_key: jax.Array, state: PXState, data: LinearData) -> PXState:
        key_sweep, key_gamma = jax.random.split(rng_key)
        state = _with_alpha(sweep(key_sweep, state, data), data)
        if state.gamma is not None:  # centred gamma | alpha, then eta re-expressed
            state = update_gamma(key_gamma, state, data)
            state = state._replace(eta=(state.alpha - data.groups.U @ state.gamma) / state.xi)
        if rescale:
            c = jnp.abs(state.xi)
            state = state._replace(xi=state.xi / c, eta=state.eta * c, sigma_eta=state.sigma_eta * c)
        return _with_alpha(state, data)

    return SamplingAlgorithm(
        init=init, step=step,
        from_gibbs_state=px_state_from_gibbs,
    )


def _with_alpha(state: PXState, data: LinearData) -> PXState:
    centre = data.groups.U @ state.gamma if state.gamma is not None else 0.0
    return state._replace(alpha=centre + state.xi * state.eta,
                          sigma_alpha=jnp.abs(state.xi) * state.sigma_eta)

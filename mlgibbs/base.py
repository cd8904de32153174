"""The kernel interface shared by every sampler.

A sampler is a :class:`SamplingAlgorithm`: a NamedTuple of two pure functions, in the spirit of
Optax's ``GradientTransformation`` and BlackJAX's ``SamplingAlgorithm``::

    state = kernel.init(rng_key, data)
    state = kernel.step(rng_key, state, data)

The PRNG key always comes first and is never stored in the state; ``data`` is a pytree of arrays
passed in (not closed over), so a step can be ``jit``-ed, ``vmap``-ed over chains or over whole data
sets, and called inside a user's own ``lax.scan``. Configuration (which blocks the model has, the
priors) lives in the closure of the factory that builds the kernel.

Each conditional update has the :class:`Update` signature ``(rng_key, state, data) -> state``: it
redraws one block of the state from its full conditional and leaves the other fields untouched.
Composing updates with :func:`compose` gives a systematic-scan Gibbs step.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Protocol, Sequence

import jax

__all__ = ["GibbsState", "SamplingAlgorithm", "Update", "compose"]

PRNGKey = jax.Array
PyTree = Any


class GibbsState(NamedTuple):
    """State of a Gibbs sampler for the varying-intercept linear model.

    Blocks a model does not have are ``None`` (an empty pytree node), so the same state type serves
    complete pooling (no ``alpha``), models without individual-level predictors (no ``beta``) and
    models without group-level predictors (no ``gamma``).

    Attributes
    ----------
    alpha
        Group intercepts, shape ``(J,)``: ``alpha_j ~ N(U_j gamma, sigma_alpha^2)``.
    beta
        Individual-level coefficients, shape ``(p,)`` (the columns of ``X``).
    gamma
        Group-level coefficients, shape ``(q,)`` (the columns of ``U``, intercept included).
    sigma_y
        Residual standard deviation, shape ``()``.
    sigma_alpha
        Standard deviation of the group intercepts around ``U gamma``, shape ``()``.
    """

    alpha: jax.Array | None
    beta: jax.Array | None
    gamma: jax.Array | None
    sigma_y: jax.Array
    sigma_alpha: jax.Array | None


class Update(Protocol):
    """A conditional update: redraws one block of ``state`` from its full conditional."""

    def __call__(self, rng_key: PRNGKey, state: PyTree, data: PyTree) -> PyTree: ...


class SamplingAlgorithm(NamedTuple):
    """A Markov kernel as a pair of pure functions.

    Attributes
    ----------
    init
        ``init(rng_key, data) -> state``: a (random, over-dispersed) starting state.
    step
        ``step(rng_key, state, data) -> state``: one full sweep of the sampler.
    from_gibbs_state
        ``from_gibbs_state(gibbs_state, data) -> state`` for samplers whose state carries more than
        a :class:`GibbsState` (for example the parameter-expanded one); ``None`` when the state is a
        :class:`GibbsState`. Used to continue a run from stored draws.
    """

    init: Callable[[PRNGKey, PyTree], PyTree]
    step: Callable[[PRNGKey, PyTree, PyTree], PyTree]
    from_gibbs_state: Callable[[GibbsState, PyTree], PyTree] | None = None


def compose(updates: Sequence[Update]) -> Callable[[PRNGKey, PyTree, PyTree], PyTree]:
    """Compose conditional updates into one systematic-scan Gibbs step.

    The key is split into one subkey per update; the updates run in the order given, each seeing
    the blocks already redrawn in this sweep.

    Parameters
    ----------
    updates
        Conditional updates with the :class:`Update` signature.

    Returns
    -------
    step
        ``step(rng_key, state, data) -> state``.

    Examples
    --------
    >>> import mlgibbs as mg
    >>> step = mg.compose([mg.update_alpha, mg.update_sigma_alpha])  # doctest: +SKIP
    """
    updates = tuple(updates)

    def step(rng_key: PRNGKey, state: PyTree, data: PyTree) -> PyTree:
        keys = jax.random.split(rng_key, len(updates))
        for key, update in zip(keys, updates):
            state = update(key, state, data)
        return state

    return step

"""Running kernels: ``lax.scan`` over draws, ``vmap`` over chains, thinning and continuation."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mlgibbs.base import GibbsState, SamplingAlgorithm
from mlgibbs.logdensity import log_joint, pointwise_log_likelihood, predict_mean
from mlgibbs.samplers import gibbs

__all__ = ["sample", "sample_chains", "last_state"]


def sample_chains(
    rng_key: jax.Array,
    kernel: SamplingAlgorithm,
    initial_states: Any,
    data: Any,
    *,
    num_draws: int,
    num_warmup: int = 0,
    thin: int = 1,
) -> tuple[Any, Any]:
    """Run one chain per leading entry of ``initial_states``, vectorised with ``vmap``.

    Each chain runs ``num_warmup`` sweeps that are discarded, then ``num_draws * thin`` sweeps of
    which every ``thin``-th is kept, the last kept draw being the final state. Chain ``c`` uses the
    key ``jax.random.split(rng_key, num_chains)[c]`` whatever the number of chains, so a chain run
    alone reproduces the same chain run in a batch.

    Parameters
    ----------
    rng_key
        PRNG key.
    kernel
        A :class:`~mlgibbs.SamplingAlgorithm`.
    initial_states
        A state pytree whose leaves have a leading chain axis.
    data
        The data pytree (shared by the chains).
    num_draws, num_warmup, thin
        Draws kept per chain, discarded sweeps, sweeps per kept draw.

    Returns
    -------
    draws, last_state
        ``draws`` with leaves shaped ``(num_chains, num_draws, ...)``; ``last_state`` with a leading
        chain axis, ready to continue from.
    """
    num_chains = jax.tree.leaves(initial_states)[0].shape[0]
    keys = jax.random.split(rng_key, num_chains)
    run = jax.jit(
        jax.vmap(functools.partial(_run_one_chain, kernel.step, num_draws=num_draws,
                                   num_warmup=num_warmup, thin=thin), in_axes=(0, 0, None))
    )
    return run(keys, initial_states, data)


def _run_one_chain(step, rng_key, state, data, *, num_draws, num_warmup, thin):
    key_warmup, key_draws = jax.random.split(rng_key)

    def one_sweep(state, key):
        return step(key, state, data), None

    if num_warmup > 0:
        state, _ = jax.lax.scan(one_sweep, state, jax.random.split(key_warmup, num_warmup))

    def one_draw(state, key):
        state, _ = jax.lax.scan(one_sweep, state, jax.random.split(key, thin))
        return state, state

    return _swap(jax.lax.scan(one_draw, state, jax.random.split(key_draws, num_draws)))


def _swap(pair):
    last, draws = pair
    return draws, last


def last_state(idata, model=None) -> GibbsState:
    """The final state of every chain of an InferenceData returned by :func:`sample`.

    The posterior holds exactly the Gibbs state, and the last draw kept is the final sweep, so
    ``sample(key, model, initial_state=idata, num_warmup=0)`` continues the chains.
    """
    posterior = idata.posterior
    dtype = model.dtype if model is not None else None

    def get(name):
        if name not in posterior:
            return None
        return jnp.asarray(np.asarray(posterior[name].isel(draw=-1).values), dtype)

    return GibbsState(alpha=get("alpha"), beta=get("beta"), gamma=get("gamma"),
                      sigma_y=get("sigma_y"), sigma_alpha=get("sigma_alpha"))


def sample(
    rng_key: jax.Array,
    model,
    *,
    num_chains: int = 4,
    num_warmup: int = 500,
    num_draws: int = 1000,
    thin: int = 1,
    sampler: str = "gibbs",
    initial_state: Any = None,
    log_likelihood: bool = True,
    posterior_predictive: bool = False,
):
    """Draw from the posterior of ``model`` and return ArviZ InferenceData.

    Built on the functional core: ``kernel = gibbs(model, sampler)``, ``kernel.init`` per chain,
    then :func:`sample_chains` (``lax.scan`` over draws, ``vmap`` over chains).

    Parameters
    ----------
    rng_key
        PRNG key (``jax.random.key`` or ``jax.random.PRNGKey``); the same key gives the same draws.
    model
        A :class:`~mlgibbs.Model`.
    num_chains, num_warmup, num_draws, thin
        Chains run in parallel; discarded sweeps per chain; draws kept per chain; sweeps per draw.
    sampler
        Sampler name (see :data:`mlgibbs.samplers.SAMPLERS`).
    initial_state
        ``None`` (over-dispersed starts from ``kernel.init``), a state with a leading chain axis, or an
        InferenceData returned earlier, to continue its chains (pass ``num_warmup=0``).
    log_likelihood
        Add the pointwise ``log_likelihood`` group (``chain x draw x n`` values) for ``az.loo``.
    posterior_predictive
        Add replicated data ``y_rep ~ N(alpha_j[i] + X_i beta, sigma_y^2)``.

    Returns
    -------
    InferenceData (ArviZ 0.x) or DataTree (ArviZ 1.x)
        Groups ``posterior``, ``sample_stats`` (``lp``: log joint density), ``observed_data``,
        ``log_likelihood``, and ``posterior_predictive`` on request.

    Examples
    --------
    >>> import jax, mlgibbs as mg
    >>> model = mg.Model.from_formula("log_radon ~ floor + log_uranium + (1 | county)",
    ...                               mg.datasets.load_radon())
    >>> idata = mg.sample(jax.random.key(0), model, num_chains=4, num_warmup=500, num_draws=1000)
    """
    from mlgibbs.arviz import to_inference_data

    for name, value, low in (("num_chains", num_chains, 1), ("num_draws", num_draws, 1),
                             ("num_warmup", num_warmup, 0), ("thin", thin, 1)):
        if not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    kernel = gibbs(model, sampler)
    key_init, key_run, key_ppc = jax.random.split(rng_key, 3)
    if initial_state is None:
        init_keys = jax.random.split(key_init, num_chains)
        initial_state = jax.vmap(kernel.init, in_axes=(0, None))(init_keys, model.data)
    else:
        if hasattr(initial_state, "posterior"):
            initial_state = last_state(initial_state, model)
        if isinstance(initial_state, GibbsState) and kernel.from_gibbs_state is not None:
            initial_state = jax.vmap(kernel.from_gibbs_state, in_axes=(0, None))(initial_state, model.data)
    given = jax.tree.leaves(initial_state)[0].shape[0]
    if given != num_chains:
        raise ValueError(f"initial_state holds {given} chains but num_chains={num_chains}")
    initial_state = jax.tree.map(lambda a: jnp.asarray(a, model.dtype), initial_state)

    draws, _ = sample_chains(key_run, kernel, initial_state, model.data,
                             num_draws=num_draws, num_warmup=num_warmup, thin=thin)
    draws = GibbsState(*(getattr(draws, field) for field in GibbsState._fields))
    lp = jax.jit(jax.vmap(jax.vmap(lambda s: log_joint(s, model.data, model.priors))))(draws)

    loglik = ppc = None
    if log_likelihood or posterior_predictive:
        y = jnp.asarray(model.y, model.dtype)
        X = jnp.asarray(model.X, model.dtype)
        group = None if model.group_index is None else jnp.asarray(model.group_index)
        if log_likelihood:
            loglik = jax.lax.map(
                jax.vmap(lambda s: pointwise_log_likelihood(s, y, X, group)), draws)
        if posterior_predictive:
            def replicate(key, s):
                noise = jax.random.normal(key, y.shape, y.dtype)
                return predict_mean(s, X, group) + s.sigma_y * noise

            keys = jax.random.split(key_ppc, (num_chains, num_draws))
            ppc = jax.jit(jax.vmap(jax.vmap(replicate)))(keys, draws)

    return to_inference_data(
        model, draws, sample_stats={"lp": lp}, log_likelihood=loglik, posterior_predictive=ppc,
        attrs={"sampler": sampler, "num_warmup": num_warmup, "thin": thin},
    )

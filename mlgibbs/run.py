"""Running kernels: ``lax.scan`` over draws, ``vmap`` over chains, thinning and continuation."""

from __future__ import annotations

import functools
import warnings
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mlgibbs.base import GibbsState, SamplingAlgorithm
from mlgibbs.logdensity import log_joint, pointwise_log_likelihood, predict_mean
from mlgibbs.samplers import default_sampler, gibbs

__all__ = ["sample", "sample_chains", "chain_runner", "last_state", "MAX_LOG_LIKELIHOOD_VALUES"]

#: Largest pointwise log-likelihood (``n x chains x draws`` values) that :func:`sample` adds by default.
MAX_LOG_LIKELIHOOD_VALUES = 50_000_000


def sample_chains(
    rng_key: jax.Array,
    kernel: SamplingAlgorithm,
    initial_states: Any,
    data: Any,
    *,
    num_draws: int,
    num_warmup: int = 0,
    thin: int = 1,
    record: Callable[[Any], Any] | None = None,
    moments: Callable[[Any], Any] | None = None,
) -> tuple[Any, ...]:
    """Run one chain per leading entry of ``initial_states``, vectorised with ``vmap``.

    Each chain runs ``num_warmup`` sweeps that are discarded, then ``num_draws * thin`` sweeps of
    which every ``thin``-th is kept, the last kept draw being the final state. Chain ``c`` uses the
    key ``jax.random.split(rng_key, num_chains)[c]`` whatever the number of chains, so a chain run
    alone reproduces the same chain run in a batch. Within a chain the key is split into a warmup key
    and a draws key; the warmup key into one key per warmup sweep, the draws key into one key per
    kept draw, and each of those into ``thin`` sweep keys.

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
    record
        ``record(state) -> pytree`` stored at every kept draw (default: the whole state). Keeping
        only what is needed bounds memory, e.g. ``J = 1e5`` groups with ``1e4`` draws.
    moments
        ``moments(state) -> pytree`` whose running mean and variance over the kept draws are
        accumulated in the scan carry (Welford's algorithm) instead of being stored per draw.

    Returns
    -------
    draws, last_state[, (mean, variance)]
        ``draws`` with leaves shaped ``(num_chains, num_draws, ...)``; ``last_state`` with a leading
        chain axis, ready to continue from; with ``moments``, also the per-chain running mean and
        variance (``ddof=0``) of ``moments(state)``.
    """
    num_chains = jax.tree.leaves(initial_states)[0].shape[0]
    keys = jax.random.split(rng_key, num_chains)
    run = chain_runner(kernel, num_draws=num_draws, num_warmup=num_warmup, thin=thin,
                       record=record, moments=moments)
    return run(keys, initial_states, data)


def chain_runner(
    kernel: SamplingAlgorithm,
    *,
    num_draws: int,
    num_warmup: int = 0,
    thin: int = 1,
    record: Callable[[Any], Any] | None = None,
    moments: Callable[[Any], Any] | None = None,
):
    """The jitted, chain-vectorised function behind :func:`sample_chains`.

    ``run(chain_keys, initial_states, data)``, one key per chain, returning what
    :func:`sample_chains` returns. Exposed so that callers can compile ahead of time
    (``run.lower(...).compile()``), as the benchmarks do to report compilation apart from sampling.
    """
    return _chain_runner(kernel, num_draws, num_warmup, thin, record, moments)


@functools.lru_cache(maxsize=64)
def _chain_runner(kernel, num_draws, num_warmup, thin, record, moments):
    one_chain = functools.partial(_run_one_chain, kernel.step, num_draws=num_draws,
                                  num_warmup=num_warmup, thin=thin,
                                  record=record or _identity, moments=moments)
    return jax.jit(jax.vmap(one_chain, in_axes=(0, 0, None)))


def _identity(state):
    return state


@functools.lru_cache(maxsize=64)
def _select(names: tuple[str, ...]):
    """A (cached, hence hashable-stable) function picking fields of a state into a dict."""
    if not names:
        return None

    def select(state):
        return {name: getattr(state, name) for name in names}

    return select


def _run_one_chain(step, rng_key, state, data, *, num_draws, num_warmup, thin, record, moments):
    key_warmup, key_draws = jax.random.split(rng_key)

    def one_sweep(state, key):
        return step(key, state, data), None

    if num_warmup > 0:
        state, _ = jax.lax.scan(one_sweep, state, jax.random.split(key_warmup, num_warmup))

    def one_draw(carry, key):
        state, count, mean, m2 = carry
        state, _ = jax.lax.scan(one_sweep, state, jax.random.split(key, thin))
        if moments is not None:  # Welford's running mean and sum of squared deviations
            count = count + 1
            x = moments(state)
            delta = jax.tree.map(lambda a, m: a - m, x, mean)
            mean = jax.tree.map(lambda m, d: m + d / count, mean, delta)
            m2 = jax.tree.map(lambda s, d, a, m: s + d * (a - m), m2, delta, x, mean)
        return (state, count, mean, m2), record(state)

    if moments is None:
        zeros = None
    else:
        zeros = jax.tree.map(jnp.zeros_like, moments(state))
    count = jnp.zeros((), jax.tree.leaves(state)[0].dtype)
    (last, count, mean, m2), draws = jax.lax.scan(
        one_draw, (state, count, zeros, zeros), jax.random.split(key_draws, num_draws))
    if moments is None:
        return draws, last
    return draws, last, (mean, jax.tree.map(lambda s: s / count, m2))


def last_state(idata, model=None) -> GibbsState:
    """The final state of every chain of an InferenceData returned by :func:`sample`.

    The posterior holds exactly the Gibbs state, and the last draw kept is the final sweep, so
    ``sample(key, model, initial_state=idata, num_warmup=0)`` continues the chains.
    """
    posterior = idata.posterior
    dtype = model.dtype if model is not None else None
    if model is not None:
        from mlgibbs.samplers import structure_of

        s = structure_of(model.data)
        needed = ["sigma_y"] + ["alpha", "sigma_alpha"] * s.has_groups + ["beta"] * s.has_beta \
            + ["gamma"] * s.has_gamma
        missing = [name for name in needed if name not in posterior]
        if missing:
            raise ValueError(f"cannot continue from these draws: the posterior lacks {missing} "
                             "(sampled with var_names?); continue from a run that stores every variable")

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
    sampler: str | None = None,
    initial_state: Any = None,
    var_names: Sequence[str] | None = None,
    log_likelihood: bool | None = None,
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
        Sampler name (see :data:`mlgibbs.samplers.SAMPLERS`): ``"gibbs"``, ``"px"`` or
        ``"collapsed"``. Default ``None``: :func:`mlgibbs.samplers.default_sampler`, the fastest in
        the benchmarks (``"px"``; ``"collapsed"`` under an inverse-gamma prior on ``sigma_alpha^2``).
    initial_state
        ``None`` (over-dispersed starts from ``kernel.init``), a state with a leading chain axis, or an
        InferenceData returned earlier, to continue its chains (pass ``num_warmup=0``).
    var_names
        Variables stored at every draw (default: all of ``alpha``, ``beta``, ``gamma``, ``sigma_y``,
        ``sigma_alpha`` that the model has). For the others only the per-chain posterior mean and
        standard deviation are kept (running moments in the scan), in the group
        ``posterior_moments`` as ``<name>_mean`` and ``<name>_sd``: with ``J = 1e5`` groups and
        ``1e4`` draws, ``var_names=["beta", "gamma", "sigma_y", "sigma_alpha"]`` keeps memory small.
    log_likelihood
        Add the pointwise ``log_likelihood`` group (``chain x draw x n`` values) for ``az.loo``.
        Default ``None``: added when every variable is stored and it holds at most
        :data:`MAX_LOG_LIKELIHOOD_VALUES` values, with a warning when it is left out for size.
    posterior_predictive
        Add replicated data ``y_rep ~ N(alpha_j[i] + X_i beta, sigma_y^2)`` (needs every variable
        stored).

    Returns
    -------
    InferenceData (ArviZ 0.x) or DataTree (ArviZ 1.x)
        Groups ``posterior``, ``sample_stats`` (``lp``: log joint density, when every variable is
        stored), ``observed_data``, ``log_likelihood``, and ``posterior_predictive`` and
        ``posterior_moments`` when asked for.

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
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if sampler is None:
        sampler = default_sampler(model)
    kernel = gibbs(model, sampler)
    key_init, key_run, key_ppc = jax.random.split(rng_key, 3)
    if initial_state is None:
        init_keys = jax.random.split(key_init, num_chains)
        batched_init = model.cached(("init", sampler), lambda: jax.jit(jax.vmap(kernel.init, in_axes=(0, None))))
        initial_state = batched_init(init_keys, model.data)
    else:
        if hasattr(initial_state, "posterior"):
            initial_state = last_state(initial_state, model)
        if isinstance(initial_state, GibbsState) and kernel.from_gibbs_state is not None:
            initial_state = jax.vmap(kernel.from_gibbs_state, in_axes=(0, None))(initial_state, model.data)
    given = jax.tree.leaves(initial_state)[0].shape[0]
    if given != num_chains:
        raise ValueError(f"initial_state holds {given} chains but num_chains={num_chains}")
    initial_state = jax.tree.map(lambda a: jnp.asarray(a, model.dtype), initial_state)

    present = [f for f in GibbsState._fields if getattr(initial_state, f, None) is not None]
    kept = present if var_names is None else list(var_names)
    unknown = [v for v in kept if v not in present]
    if unknown:
        raise ValueError(f"var_names has {unknown}, not variables of this model; expected some of {present}")
    dropped = [v for v in present if v not in kept]
    complete = not dropped
    n_values = model.num_obs * num_chains * num_draws
    if log_likelihood is None:
        log_likelihood = complete and n_values <= MAX_LOG_LIKELIHOOD_VALUES
        if complete and not log_likelihood:
            warnings.warn(f"log_likelihood left out: it would hold {n_values:,} values (n x chains x draws) "
                          f"> {MAX_LOG_LIKELIHOOD_VALUES:,}; pass log_likelihood=True to force it", stacklevel=2)
    if (log_likelihood or posterior_predictive) and not complete:
        raise ValueError(f"log_likelihood and posterior_predictive need every variable stored; "
                         f"var_names leaves out {dropped}")

    result = sample_chains(
        key_run, kernel, initial_state, model.data, num_draws=num_draws, num_warmup=num_warmup, thin=thin,
        record=_select(tuple(kept)), moments=_select(tuple(dropped)),
    )
    draws = GibbsState(**{f: result[0].get(f) for f in GibbsState._fields})
    moments = None
    if dropped:
        mean, var = result[2]
        moments = {f: (mean[f], jnp.sqrt(var[f])) for f in dropped}

    sample_stats = {}
    if complete:
        sample_stats["lp"] = _batched_log_joint(model)(draws, model.data)

    loglik = ppc = None
    if log_likelihood or posterior_predictive:
        y = jnp.asarray(model.y, model.dtype)
        X = jnp.asarray(model.X, model.dtype)
        group = None if model.group_index is None else jnp.asarray(model.group_index)
        if log_likelihood:
            loglik = _batched_log_likelihood(draws, y, X, group)
        if posterior_predictive:
            keys = jax.random.split(key_ppc, (num_chains, num_draws))
            ppc = _batched_replicate(keys, draws, X, group)

    return to_inference_data(
        model, draws, sample_stats=sample_stats, log_likelihood=loglik, posterior_predictive=ppc,
        moments=moments,
        attrs={"sampler": sampler, "num_warmup": num_warmup, "thin": thin},
    )


def _batched_log_joint(model):
    priors = model.priors
    return model.cached("log_joint", lambda: jax.jit(
        jax.vmap(jax.vmap(lambda s, data: log_joint(s, data, priors), in_axes=(0, None)), in_axes=(0, None))))


@jax.jit
def _batched_log_likelihood(draws, y, X, group):
    """Pointwise log likelihood ``(chain, draw, n)``; chains one at a time to bound memory."""
    return jax.lax.map(jax.vmap(lambda s: pointwise_log_likelihood(s, y, X, group)), draws)


@jax.jit
def _batched_replicate(keys, draws, X, group):
    """Posterior predictive ``y_rep ~ N(alpha_j[i] + X_i beta, sigma_y^2)``, ``(chain, draw, n)``."""

    def replicate(key, s):
        mean = predict_mean(s, X, group)
        return mean + s.sigma_y * jax.random.normal(key, mean.shape, mean.dtype)

    return jax.vmap(jax.vmap(replicate))(keys, draws)

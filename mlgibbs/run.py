"""Running kernels: ``lax.scan`` over draws, ``vmap`` over chains, thinning and continuation."""

from __future__ import annotations

import functools
import warnings
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mlgibbs.base import GibbsState, SamplingAlgorithm
from mlgibbs.logdensity import log_joint, pointwise_log_likelihood, predict_mean
from mlgibbs.models import standardize as std_mod
from mlgibbs.models.data import to_device
from mlgibbs._ahead import compile_ahead, sampling_options
from mlgibbs.samplers import chains_runner, default_sampler, gibbs, kernel_data, kernel_data_shape

__all__ = ["sample", "sample_chains", "chain_runner", "last_state", "add_log_likelihood", "as_key",
           "MAX_LOG_LIKELIHOOD_VALUES"]

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
    alone reproduces the same chain run in a batch; its sweep ``i`` (warm-up included, counted from
    0) uses ``jax.random.fold_in(chain_key, i)``.

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
        Draws kept per chain, discarded sweeps, sweeps per kept draw. ``num_warmup`` and ``thin`` are
        run-time values: changing them does not compile again; ``num_draws`` fixes the output shape.
    record
        ``record(state) -> pytree`` stored at every kept draw (default: the whole state). Keeping
        only what is needed bounds memory, e.g. ``J = 1e5`` groups with ``1e4`` draws.
    moments
        ``moments(state) -> pytree`` whose running mean and variance over the kept draws are
        accumulated in the loop carry (Welford's algorithm) instead of being stored per draw.

    Returns
    -------
    draws, last_state[, (mean, variance)]
        ``draws`` with leaves shaped ``(num_chains, num_draws, ...)``; ``last_state`` with a leading
        chain axis, ready to continue from; with ``moments``, also the per-chain running mean and
        variance (``ddof=0``) of ``moments(state)``.
    """
    num_chains = jax.tree.leaves(initial_states)[0].shape[0]
    keys = jax.random.split(rng_key, num_chains)
    run = chain_runner(kernel, num_draws=num_draws, record=record, moments=moments)
    return run(keys, initial_states, data, num_warmup, thin)


def chain_runner(
    kernel: SamplingAlgorithm,
    *,
    num_draws: int,
    num_warmup: int | None = None,
    thin: int | None = None,
    record: Callable[[Any], Any] | None = None,
    moments: Callable[[Any], Any] | None = None,
):
    """The jitted, chain-vectorised function behind :func:`sample_chains`.

    ``run(chain_keys, initial_states, data, num_warmup, thin)``, one key per chain, returning what
    :func:`sample_chains` returns; with ``num_warmup`` and ``thin`` given here they are fixed and
    ``run(chain_keys, initial_states, data)``. Exposed so that callers can compile ahead of time
    (``run.lower(...).compile()``), as the benchmarks do to report compilation apart from sampling.
    """
    run = _chain_runner(kernel, num_draws, record, moments)
    if num_warmup is None and thin is None:
        return run
    return jax.jit(functools.partial(_fixed_lengths, run, num_warmup=num_warmup or 0, thin=thin or 1))


def _fixed_lengths(run, chain_keys, initial_states, data, *, num_warmup, thin):
    return run(chain_keys, initial_states, data, num_warmup, thin)


@functools.lru_cache(maxsize=64)
def _chain_runner(kernel, num_draws, record, moments):
    def run(chain_keys, initial_states, data, num_warmup, thin):
        from mlgibbs.devices import constrain_chains

        one_chain = functools.partial(run_chain, kernel.step, data=data, num_draws=num_draws,
                                      num_warmup=num_warmup, thin=thin, record=record, moments=moments)
        # over the devices, when several (mlgibbs.devices)
        chain_keys, initial_states = constrain_chains((chain_keys, initial_states), chain_keys.shape[0])
        return jax.vmap(one_chain)(chain_keys, initial_states)

    return jax.jit(run)


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


def run_chain(step, rng_key, state, *, data, num_draws, num_warmup, thin, record=None, moments=None,
              first_sweep=0, progress=False):
    """One chain: ``num_warmup + num_draws * thin`` sweeps in one loop, every ``thin``-th after warm-up kept.

    A pure function (``jit``, ``vmap`` over chains). Sweep ``i`` uses ``fold_in(rng_key, first_sweep + i)``
    (``first_sweep``, a run-time value: the sweeps an earlier run of the chain did, so that a continued run
    goes on with the same key's stream instead of repeating it); the
    kept draw ``d`` is the state after sweep ``num_warmup + (d + 1) thin - 1``. ``progress`` (static) reports
    the sweeps done to the host (:func:`mlgibbs.progress.report`). One loop with
    run-time lengths (rather than a scan per phase) traces and compiles the kernel once, and a new
    ``num_warmup`` or ``thin`` does not compile again. Every sweep writes its record into the slot of
    the draw it belongs to (warm-up sweeps into slot 0, overwritten later), so no branch is needed.

    Returns ``(draws, last_state)`` or, with ``moments``, ``(draws, last_state, (mean, variance))``.
    """
    record = record or _identity
    num_warmup = jnp.asarray(num_warmup, jnp.int32)
    thin = jnp.asarray(thin, jnp.int32)
    buffer = jax.tree.map(lambda a: jnp.zeros((num_draws, *jnp.shape(a)), jnp.result_type(a)), record(state))
    if moments is not None:
        zeros = jax.tree.map(jnp.zeros_like, moments(state))
        stats = (jnp.zeros((), jax.tree.leaves(state)[0].dtype), zeros, zeros)
    else:
        stats = None

    first_sweep = jnp.asarray(first_sweep, jnp.int32)
    total = num_warmup + num_draws * thin

    def sweep(i, carry):
        state, buffer, stats = carry
        state = step(jax.random.fold_in(rng_key, first_sweep + i), state, data)
        after = i - num_warmup
        slot = jnp.clip(after // thin, 0, num_draws - 1)
        buffer = jax.tree.map(lambda b, v: jax.lax.dynamic_update_index_in_dim(b, v, slot, 0),
                              buffer, record(state))
        if stats is not None:  # Welford's running mean and sum of squared deviations, at kept draws
            kept = (after >= 0) & (after % thin == thin - 1)
            count, mean, m2 = stats
            new_count = count + kept
            x = moments(state)
            delta = jax.tree.map(lambda a, m: a - m, x, mean)
            new_mean = jax.tree.map(lambda m, d: m + d / jnp.maximum(new_count, 1), mean, delta)
            new_m2 = jax.tree.map(lambda s, d, a, m: s + d * (a - m), m2, delta, x, new_mean)
            pick = functools.partial(jnp.where, kept)
            stats = (new_count, jax.tree.map(pick, new_mean, mean), jax.tree.map(pick, new_m2, m2))
        return state, buffer, stats

    if progress:   # blocks of sweeps, the host told after each: no branch inside the sweep loop
        from mlgibbs.progress import blocks, report

        every, count = blocks(total)

        def block(b, carry):
            carry = jax.lax.fori_loop(b * every, jnp.minimum((b + 1) * every, total), sweep, carry)
            report(jnp.minimum((b + 1) * every, total) - 1, total)
            return carry

        state, buffer, stats = jax.lax.fori_loop(0, count, block, (state, buffer, stats))
    else:
        state, buffer, stats = jax.lax.fori_loop(0, total, sweep, (state, buffer, stats))
    if stats is None:
        return buffer, state
    count, mean, m2 = stats
    return buffer, state, (mean, jax.tree.map(lambda s: s / count, m2))


def _expected_layout(model) -> dict[str, tuple[tuple[str, ...], tuple]]:
    """Variable -> (dims after chain and draw, coordinate values per dim) that ``model`` produces."""
    from mlgibbs.samplers import structure_of

    s = structure_of(model.data)
    layout = {"sigma_y": ((), ())}
    if s.has_groups:
        layout["alpha"] = ((model.group_name,), (tuple(model.group_labels),))
        layout["sigma_alpha"] = ((), ())
    if s.has_beta:
        layout["beta"] = (("predictor",), (tuple(model.predictors),))
    if s.has_gamma:
        layout["gamma"] = (("group_predictor",), (tuple(model.group_predictors),))
    return layout


def _same_labels(stored, expected) -> bool:
    return len(stored) == len(expected) and all(str(a) == str(b) for a, b in zip(stored, expected))


def last_state(idata, model=None) -> GibbsState:
    """The final state of every chain of an InferenceData returned by :func:`sample`.

    The posterior holds the draws in the user's coordinates, and the last draw kept is the final
    sweep, so ``sample(key, model, initial_state=idata, num_warmup=0)`` continues the chains.

    Parameters
    ----------
    idata
        InferenceData (ArviZ 0.x) or DataTree (ArviZ 1.x) with a ``posterior`` group.
    model
        The :class:`~mlgibbs.Model` to continue. When given, the draws are checked against it first:
        the same variables, dimensions, group labels and coefficient names, or a ValueError that says
        what differs (continuing into another model would otherwise fail deep inside JAX, or worse,
        silently reuse numbers under other names).

    Returns
    -------
    GibbsState
        Float64 NumPy arrays with a leading chain axis, in the user's coordinates.
    """
    posterior = idata.posterior
    if model is not None:
        layout = _expected_layout(model)
        missing = [name for name in layout if name not in posterior]
        if missing:
            raise ValueError(f"cannot continue from these draws: the posterior lacks {missing} "
                             "(sampled with var_names, or from another model?); continue from a run of "
                             "this model that stores every variable")
        problems = []
        for name, (dims, labels) in layout.items():
            var = posterior[name]
            have = tuple(d for d in var.dims if d not in ("chain", "draw"))
            if have != dims:
                problems.append(f"{name} has dims {have}, this model {dims}")
                continue
            for dim, want in zip(dims, labels):
                got = tuple(var[dim].values.tolist())
                if not _same_labels(got, want):
                    extra = [str(v) for v in got if str(v) not in {str(w) for w in want}][:3]
                    lack = [str(v) for v in want if str(v) not in {str(g) for g in got}][:3]
                    problems.append(f"{name}'s {dim!r} has {len(got)} entries, this model {len(want)}"
                                    + (f" (only in the draws: {extra})" if extra else "")
                                    + (f" (only in the model: {lack})" if lack else ""))
        extra_vars = [v for v in ("alpha", "beta", "gamma", "sigma_alpha")
                      if v in posterior and v not in layout]
        if extra_vars:
            problems.append(f"the draws have {extra_vars}, which this model does not")
        if problems:
            raise ValueError("initial_state holds draws of another model: " + "; ".join(problems)
                             + f". This model is {model.formula or 'built from arrays'!s}")

    def get(name):
        if name not in posterior:
            return None
        return np.asarray(posterior[name].isel(draw=-1).values, dtype=np.float64)

    return GibbsState(alpha=get("alpha"), beta=get("beta"), gamma=get("gamma"),
                      sigma_y=get("sigma_y"), sigma_alpha=get("sigma_alpha"))


def as_key(rng_key) -> jax.Array:
    """A JAX PRNG key from ``rng_key``: a key (typed or raw ``uint32[2]``), or an int seed.

    An ``int`` (or NumPy integer) is taken as the seed of ``jax.random.key``; anything else is a
    TypeError that says what to pass.
    """
    if isinstance(rng_key, (int, np.integer)) and not isinstance(rng_key, bool):
        return jax.random.key(int(rng_key))
    if isinstance(rng_key, jax.Array) or isinstance(rng_key, np.ndarray):
        if jnp.issubdtype(rng_key.dtype, jax.dtypes.prng_key):
            if rng_key.shape == ():
                return rng_key
        elif rng_key.dtype == jnp.uint32 and rng_key.shape == (2,):
            return rng_key
    raise TypeError(f"rng_key must be a JAX PRNG key (jax.random.key(0)) or an int seed, got {rng_key!r:.80}")


def _initial_kernel_state(model, kernel, initial_state, num_chains):
    """A kernel state with a leading chain axis from what the user passed as ``initial_state``."""
    if hasattr(initial_state, "posterior"):
        initial_state = last_state(initial_state, model)
    elif isinstance(initial_state, GibbsState):
        layout = _expected_layout(model)
        for name in GibbsState._fields:
            value = getattr(initial_state, name)
            if (value is None) != (name not in layout):
                raise ValueError(f"initial_state.{name} is {'None' if value is None else 'given'}, but this "
                                 f"model {'has' if name in layout else 'has no'} {name}")
            if value is not None:
                want = (num_chains, *(len(c) for c in layout[name][1]))
                if np.shape(value) != want and np.shape(value)[1:] == want[1:]:
                    raise ValueError(f"initial_state holds {np.shape(value)[0]} chains but "
                                     f"num_chains={num_chains}")
                if np.shape(value) != want:
                    raise ValueError(f"initial_state.{name} has shape {np.shape(value)}, expected {want} "
                                     "(chains first)")
    else:
        raise TypeError("initial_state must be None, InferenceData from mlgibbs.sample, or a GibbsState of "
                        f"values in the model's coordinates with a leading chain axis; got "
                        f"{type(initial_state).__name__}")
    given = np.shape(initial_state.sigma_y)[0] if np.ndim(initial_state.sigma_y) else 1
    if given != num_chains:
        raise ValueError(f"initial_state holds {given} chains but num_chains={num_chains}")
    state = model.to_kernel(initial_state)
    state = to_device(state, model.dtype)
    if kernel.from_gibbs_state is not None:
        state = jax.vmap(kernel.from_gibbs_state, in_axes=(0, None))(state, model.data)
    return state


def _check_finite(draws: dict, sampler: str, model) -> None:
    """Raise FloatingPointError when any draw is not finite (never hand back NaN)."""
    for name, value in draws.items():
        finite = np.isfinite(value)
        if not finite.all():
            where = np.argwhere(~finite)[0]
            at = f"chain {where[0]}" + (f", draw {where[1]}" if not name.endswith("_mean") and len(where) > 1 else "")
            raise FloatingPointError(
                f"the {sampler!r} sampler produced non-finite values of {name} (first at {at}; "
                f"{int((~finite).sum())} values in all). The model passed every check at "
                "build time, so this is a numerical limit or a bug: please report it with the model. "
                "Meanwhile try float64 (jax.config.update('jax_enable_x64', True)) or "
                "sampler='collapsed'"
            )


def sample(
    rng_key: jax.Array | int,
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
    check_convergence: bool = True,
    progress_bar: bool = False,
):
    """Draw from the posterior of ``model`` and return ArviZ InferenceData.

    Built on the functional core: ``kernel = gibbs(model, sampler)``, ``kernel.init`` per chain,
    then :func:`sample_chains` (``lax.scan`` over draws, ``vmap`` over chains). The kernels run in
    the model's dtype and coordinates (:attr:`Model.data`); the draws are mapped back to the user's
    coordinates in float64 (:meth:`Model.to_user`) and reported in float64.

    Parameters
    ----------
    rng_key
        PRNG key (``jax.random.key`` or ``jax.random.PRNGKey``) or an int seed; the same key gives
        the same draws.
    model
        A :class:`~mlgibbs.Model`.
    num_chains, num_warmup, num_draws, thin
        Chains run in parallel; discarded sweeps per chain; draws kept per chain; sweeps per draw.
    sampler
        Sampler name (see :data:`mlgibbs.samplers.SAMPLERS`): ``"gibbs"``, ``"px"``,
        ``"collapsed"`` or ``"grid"``. Default ``None``: :func:`mlgibbs.samplers.default_sampler`
        (``"grid"``: nearly independent draws; see the README's benchmarks).
        A multilevel model built from a formula with grouping terms has its own names per family
        (:data:`mlgibbs.run_mixed.MIXED_SAMPLERS`): bernoulli and binomial ``"augmented"`` (Polya-Gamma,
        scales drawn with the locations integrated out), ``"augmented-px"`` (Polya-Gamma, parameter-expanded
        scale moves) or ``"iwls"`` (Metropolis-Hastings with IWLS proposals); probit ``"augmented"`` or
        ``"augmented-px"``; default :func:`mlgibbs.run_mixed.default_mixed_sampler`. The sampler run is
        recorded in ``idata.posterior.attrs["sampler"]``.
    initial_state
        ``None`` (over-dispersed starts from ``kernel.init``); an InferenceData returned earlier, to
        continue its chains (pass ``num_warmup=0``; it is checked against ``model`` first); or a
        :class:`~mlgibbs.GibbsState` of values as reported (the user's coordinates) with a leading
        chain axis, e.g. ``mg.last_state(idata)`` or ``model.to_user(kernel_state)``.
    var_names
        Variables stored at every draw (default: all of ``alpha``, ``beta``, ``gamma``, ``sigma_y``,
        ``sigma_alpha`` that the model has). For the others only the per-chain posterior mean and
        standard deviation are kept (running moments in the scan), in the group
        ``posterior_moments`` as ``<name>_mean`` and ``<name>_sd``: with ``J = 1e5`` groups and
        ``1e4`` draws, ``var_names=["beta", "gamma", "sigma_y", "sigma_alpha"]`` keeps memory small.
        For a multilevel model with several terms the names are those of its output: ``beta``,
        ``sigma_y``, ``alpha_<f>``, ``gamma_<f>``, ``sigma_<f>``, ``corr_<f>`` per factor ``f``.
    log_likelihood
        Add the pointwise ``log_likelihood`` group (``chain x draw x n`` values) for ``az.loo``.
        Default ``None``: added when every variable is stored and it holds at most
        :data:`MAX_LOG_LIKELIHOOD_VALUES` values, with a warning when it is left out for size
        (:func:`add_log_likelihood` adds it later).
    posterior_predictive
        Add replicated data ``y_rep ~ N(alpha_j[i] + X_i beta, sigma_y^2)`` (needs every variable
        stored).
    check_convergence
        Warn (:class:`~mlgibbs.diagnostics.ConvergenceWarning`, naming the variables) when the
        rank-normalised split R-hat exceeds 1.01 or the bulk or tail effective sample size is below
        100 per chain (Vehtari et al. 2021), as PyMC does. ``False`` skips the check; the warning
        can also be filtered with ``warnings.filterwarnings("ignore", category=mg.ConvergenceWarning)``.
    progress_bar
        Show a bar of the sweeps done, the draws kept and the sweeps per second (``tqdm``; about 100 host
        calls per run, :mod:`mlgibbs.progress`). Off by default: the program then has no callback.

    Long runs go in parts: ``more = mg.sample(key, model, initial_state=idata, num_warmup=0,
    num_draws=...)`` continues the chains from ``idata``'s last draws with the compiled program of the
    first part (the chains' starts are drawn by a program of their own, :func:`init_program`). With the
    same key the continuation goes on in the key's stream (``idata.posterior.attrs["num_sweeps"]`` records
    the sweeps done), so the parts are one chain's sweeps, never a replay of its random numbers.

    Returns
    -------
    InferenceData (ArviZ 0.x) or DataTree (ArviZ 1.x)
        Groups ``posterior``, ``sample_stats`` (``lp``: log joint density, when every variable is
        stored), ``observed_data``, ``log_likelihood``, and ``posterior_predictive`` and
        ``posterior_moments`` when asked for.

    Raises
    ------
    FloatingPointError
        If a draw is not finite (never returned silently).

    Examples
    --------
    >>> import mlgibbs as mg
    >>> model = mg.Model.from_formula("log_radon ~ floor + log_uranium + (1 | county)",
    ...                               mg.datasets.load_radon())
    >>> idata = mg.sample(0, model, num_chains=4, num_warmup=500, num_draws=1000)
    """
    from mlgibbs._mappings import release_if_needed
    from mlgibbs.arviz import to_inference_data

    rng_key = as_key(rng_key)
    from mlgibbs.models.mixed import MixedModel

    for name, value, low in (("num_chains", num_chains, 1), ("num_draws", num_draws, 1),
                             ("num_warmup", num_warmup, 0), ("thin", thin, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    release_if_needed()   # a long session's programs kept below the OS's cap on mappings (mlgibbs/_mappings.py)
    if isinstance(model, MixedModel):
        from mlgibbs.run_mixed import sample_mixed

        return sample_mixed(rng_key, model, num_chains=num_chains, num_warmup=num_warmup, num_draws=num_draws,
                            thin=thin, initial_state=initial_state, log_likelihood=log_likelihood,
                            posterior_predictive=posterior_predictive, check_convergence=check_convergence,
                            sampler=sampler, var_names=var_names, progress_bar=progress_bar)
    if sampler is None:
        sampler = default_sampler(model)
    kernel = gibbs(model, sampler)
    first_sweep = sweeps_done(initial_state)
    if initial_state is not None:
        initial_state = _initial_kernel_state(model, kernel, initial_state, num_chains)

    s = _structure(model)
    present = [f for f, has in zip(GibbsState._fields, s) if has]
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
                          f"> {MAX_LOG_LIKELIHOOD_VALUES:,}, so az.loo will not find it; pass "
                          "log_likelihood=True to keep it, or add it afterwards with "
                          "mg.add_log_likelihood(idata, model)", stacklevel=2)
    if (log_likelihood or posterior_predictive) and not complete:
        raise ValueError(f"log_likelihood and posterior_predictive need every variable stored; "
                         f"var_names leaves out {dropped}")

    # the user's alpha and gamma depend on beta (the centring of X): record it along with them
    needs_beta = "beta" in present and any(f in kept for f in ("alpha", "beta", "gamma"))
    recorded = tuple(f for f in present if f in kept or (f == "beta" and needs_beta))
    program = sampling_program(
        kernel, num_chains=num_chains, num_draws=num_draws, recorded=recorded, moments=tuple(dropped),
        init=False, log_likelihood=bool(log_likelihood),
        posterior_predictive=bool(posterior_predictive),
        lp_priors=_scale_priors(model) if complete else None, progress=progress_bar,
        chains=None if dropped else chains_runner(model, sampler),
    )
    # the sampling program compiles on a second thread while the grid is tabulated and the starts drawn
    data_shape = kernel_data_shape(model, sampler)
    state_shape = (initial_state if initial_state is not None
                   else jax.eval_shape(init_program(kernel, num_chains), rng_key, data_shape))
    ahead = compile_ahead(program, (rng_key, data_shape, state_shape, _aux(model), num_warmup, thin,
                                    np.int32(first_sweep)), sampling_options())
    data = kernel_data(model, sampler)   # model.data, with what the sampler tabulates once per model
    if initial_state is None:
        initial_state = init_program(kernel, num_chains)(rng_key, data)
    out = run_program(ahead.result(), (rng_key, data, initial_state, _aux(model)), num_warmup=num_warmup,
                      num_draws=num_draws, thin=thin, first_sweep=first_sweep, num_chains=num_chains,
                      progress_bar=progress_bar)

    kernel_draws = GibbsState(**{f: out["draws"].get(f) for f in GibbsState._fields})
    user_draws = model.to_user(kernel_draws)
    draws = {f: getattr(user_draws, f) for f in kept}
    moments = None
    if dropped:
        mean, var = out["moments"]
        offsets = std_mod.user_offset(model.standardization)
        moments = {f: (np.asarray(mean[f], np.float64) + offsets[f], np.sqrt(np.asarray(var[f], np.float64)))
                   for f in dropped}
    _check_finite({**draws, **{f"{f}_mean": m for f, (m, _) in (moments or {}).items()}}, sampler, model)

    sample_stats = {"lp": out["lp"].astype(np.float64)} if complete else {}
    loglik = out["log_likelihood"].astype(np.float64) if log_likelihood else None
    ppc = None
    if posterior_predictive:
        std = model.standardization
        ppc = out["posterior_predictive"].astype(np.float64) * std.y_scale + std.y_shift

    idata = to_inference_data(
        model, GibbsState(**{f: draws.get(f) for f in GibbsState._fields}),
        sample_stats=sample_stats, log_likelihood=loglik, posterior_predictive=ppc,
        moments=moments,
        attrs={"sampler": sampler, "num_warmup": num_warmup, "thin": thin,
               "num_sweeps": first_sweep + num_warmup + num_draws * thin},
    )
    if check_convergence:
        from mlgibbs.diagnostics import warn_if_not_converged

        warn_if_not_converged(idata, stacklevel=3)
    return idata


def run_program(program, args, *, num_warmup, num_draws, thin, first_sweep, num_chains, progress_bar):
    """Run a sampling program (its leading ``args``, then the lengths) to NumPy, under a progress bar when
    asked: :func:`sample`'s and the multilevel sampler's."""
    from mlgibbs.progress import progress_bar as bar

    total = num_warmup + num_draws * thin
    with bar(total, num_warmup=num_warmup, thin=thin, num_chains=num_chains, enabled=progress_bar):
        out = program(*args, num_warmup, thin, np.int32(first_sweep))
        out = jax.tree.map(np.asarray, out)
    return out


class _Aux(NamedTuple):
    """Model arrays a sampling program takes as inputs (never compiled in): the kernel design for
    the pointwise log likelihood and the map back to the user's coordinates for running moments."""

    y: jax.Array
    X: jax.Array
    group: jax.Array | None
    transform: std_mod.Standardization


def _aux(model) -> _Aux:
    def build():
        dtype = model.dtype
        t = model.standardization
        transform = std_mod.Standardization(*to_device(tuple(t), dtype))
        group = None if model.group_index is None else to_device(model.group_index, np.int32)
        return _Aux(*to_device((model.kernel_y, model.kernel_X), dtype), group, transform)

    return model.cached("aux", build)


def _structure(model) -> tuple[bool, ...]:
    """Which of the :class:`GibbsState` fields the model has, in field order."""
    from mlgibbs.samplers import structure_of

    s = structure_of(model.data)
    return (s.has_groups, s.has_beta, s.has_gamma, True, s.has_groups)


def _scale_priors(model):
    """The user's scale priors (what ``lp`` needs besides the data), as a hashable Priors."""
    from mlgibbs.priors import Flat, Priors

    return Priors(beta=Flat(), gamma=Flat(), sigma_y=model.priors.sigma_y, sigma_alpha=model.priors.sigma_alpha)


def sampling_program(kernel, *, num_chains: int, num_draws: int, recorded: tuple[str, ...],
                     moments: tuple[str, ...] = (), init: bool = True, log_likelihood: bool = False,
                     posterior_predictive: bool = False, lp_priors=None, progress: bool = False,
                     chains=None):
    """The compiled program behind :func:`sample`: (init,) warm-up, draws, ``lp``, log likelihood.

    ``program(rng_key, data, initial_state, aux, num_warmup, thin, first_sweep) -> dict``: ``first_sweep``
    the sweeps the chains did before (:func:`run_chain`); with ``init=False`` the chains start from
    ``initial_state`` (:func:`sample` draws fresh starts with :func:`init_program`, so that a first run and
    its continuations share one program); ``progress`` reports the sweeps to :mod:`mlgibbs.progress`. Everything a model
    contributes is an input (the data pytree, its design and its coordinate map), and the lengths
    ``num_warmup`` and ``thin`` are run-time values, so a second model of the same structure, scale
    priors and shapes, or another warm-up length, reuses the compiled program. Cached by that
    configuration. ``chains`` (optional, one object per kernel: :func:`mlgibbs.samplers.chains_runner`) runs
    every chain at once with the draws of :func:`run_chain` scanning ``kernel.step``, faster (the ``"grid"``
    sampler's sweeps in parallel: :func:`~mlgibbs.samplers.grid_chains.run_grid_chains`); it keeps every
    variable it records, so ``moments`` must be empty.
    """
    from mlgibbs.samplers import typed_key

    try:
        key = typed_key(lp_priors)
    except TypeError:
        key = id(lp_priors)
    if chains is not None and moments:
        raise ValueError("a chains runner keeps every variable it records: no running moments")
    return _sampling_program(kernel, num_chains, num_draws, recorded, moments, init, log_likelihood,
                             posterior_predictive, key, lp_priors, progress, chains)


def initial_states(kernel, num_chains: int, key_init, data):
    """The chains' over-dispersed starts (traced): ``kernel.init`` per chain with keys
    ``split(key_init, num_chains)``, sharded over the devices when several."""
    from mlgibbs.devices import constrain_chains

    keys = constrain_chains(jax.random.split(key_init, num_chains), num_chains)
    return jax.vmap(kernel.init, in_axes=(0, None))(keys, data)


@functools.lru_cache(maxsize=64)
def init_program(kernel, num_chains: int):
    """``init(rng_key, data)``: :func:`initial_states` with the key :func:`sample`'s program would use
    (``split(rng_key, 3)[0]``), compiled apart so that a first run and its continuations share one program."""
    def init(rng_key, data):
        return initial_states(kernel, num_chains, jax.random.split(rng_key, 3)[0], data)

    return jax.jit(init, compiler_options=sampling_options())


def sweeps_done(initial_state) -> int:
    """The sweeps behind an InferenceData returned by :func:`sample` (its ``num_sweeps`` attribute; 0 for
    anything else), where its continuation goes on in the key's stream."""
    try:
        return int(initial_state.posterior.attrs.get("num_sweeps", 0))
    except (AttributeError, KeyError, TypeError, ValueError):
        return 0


@functools.lru_cache(maxsize=64)
def _sampling_program(kernel, num_chains, num_draws, recorded, moment_names, init, log_likelihood,
                      posterior_predictive, lp_key, lp_priors, progress=False, chains=None):
    del lp_key  # part of the cache key only
    record = _select(recorded)

    def program(rng_key, data, initial_state, aux, num_warmup, thin, first_sweep=0):
        key_init, key_run, key_ppc = jax.random.split(rng_key, 3)
        if init:
            initial_state = initial_states(kernel, num_chains, key_init, data)
        moments = None
        if moment_names:
            def moments(state):
                user = std_mod.to_user(aux.transform, GibbsState(*(getattr(state, f) for f in GibbsState._fields)),
                                       jnp, offset=False)
                return {name: getattr(user, name) for name in moment_names}

        from mlgibbs.devices import constrain_chains

        chain_keys, initial_state = constrain_chains((jax.random.split(key_run, num_chains), initial_state),
                                                     num_chains)   # over the devices, when several
        if chains is not None:
            out = (chains(chain_keys, initial_state, data, num_draws=num_draws, num_warmup=num_warmup, thin=thin,
                          first_sweep=first_sweep, record=record, progress=progress),)
        else:
            one_chain = functools.partial(run_chain, kernel.step, data=data, num_draws=num_draws,
                                          num_warmup=num_warmup, thin=thin, record=record, moments=moments,
                                          first_sweep=first_sweep, progress=progress)
            out = jax.vmap(one_chain)(chain_keys, initial_state)
        result = {"draws": out[0]}
        if moment_names:
            result["moments"] = out[2]
        draws = GibbsState(**{f: out[0].get(f) for f in GibbsState._fields})
        if lp_priors is not None:
            result["lp"] = jax.vmap(jax.vmap(lambda s: log_joint(s, data, lp_priors)))(draws)
        if log_likelihood:  # chains one at a time to bound memory
            result["log_likelihood"] = jax.lax.map(jax.vmap(
                lambda s: pointwise_log_likelihood(s, aux.y, aux.X, aux.group, aux.transform.y_scale)), draws)
        if posterior_predictive:
            keys = jax.random.split(key_ppc, (num_chains, num_draws))
            result["posterior_predictive"] = jax.vmap(jax.vmap(
                lambda k, s: _replicate(k, s, aux.X, aux.group)))(keys, draws)
        return result

    return jax.jit(program)


def _replicate(key, state, X, group):
    """``y_rep ~ N(alpha_j[i] + X_i beta, sigma_y^2)`` in the kernel's coordinates."""
    mean = predict_mean(state, X, group)
    return mean + state.sigma_y * jax.random.normal(key, mean.shape, mean.dtype)


def _log_likelihood(model, kernel_draws) -> np.ndarray:
    aux = _aux(model)
    return np.asarray(_batched_log_likelihood(kernel_draws, aux.y, aux.X, aux.group, aux.transform.y_scale),
                      np.float64)


def add_log_likelihood(idata, model):
    """Add the pointwise ``log_likelihood`` group to a run of :func:`sample` that left it out.

    For ``az.loo`` / ``az.compare`` on runs where :func:`sample` dropped it for size. It is computed
    from the stored posterior draws one chain at a time (the result itself, ``chain x draw x n``
    values, must fit in memory, as ArviZ needs it whole).

    Returns
    -------
    The same object, with the group added.
    """
    from mlgibbs.arviz import _datasets, add_group, to_inference_data
    from mlgibbs.models.mixed import MixedModel

    if isinstance(model, MixedModel):
        from mlgibbs.run_mixed import mixed_log_likelihood

        return mixed_log_likelihood(idata, model)
    state = last_state(idata, model)  # checks that the draws belong to this model
    del state
    post = idata.posterior
    user = GibbsState(**{f: (np.asarray(post[f].values, np.float64) if f in post else None)
                         for f in GibbsState._fields})
    kernel_draws = to_device(model.to_kernel(user), model.dtype)
    loglik = _log_likelihood(model, kernel_draws)
    full = _datasets(to_inference_data(model, user, log_likelihood=loglik))
    return add_group(idata, "log_likelihood", full["log_likelihood"])


@jax.jit
def _batched_log_likelihood(draws, y, X, group, y_scale):
    """Pointwise log likelihood ``(chain, draw, n)``; chains one at a time to bound memory."""
    return jax.lax.map(jax.vmap(lambda s: pointwise_log_likelihood(s, y, X, group, y_scale)), draws)

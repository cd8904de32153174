"""Running the multilevel (:class:`~mlgibbs.models.mixed.MixedModel`) kernel and naming its output.

Called by :func:`mlgibbs.sample` for a model with varying slopes or several grouping factors. The
draws come out in the user's coordinates (float64) with ArviZ names (see :mod:`mlgibbs.models.mixed`):
``beta``, ``sigma_y``, and per factor ``f`` ``alpha_<f>``, ``gamma_<f>``, ``sigma_<f>``, ``corr_<f>``;
``sample_stats.lp`` is the log joint density of the user's parametrisation
(:func:`mlgibbs.logdensity.mixed_log_joint`, also :func:`posterior_log_joint` for draws from elsewhere).
``var_names`` stores only some variables per draw, and running moments of the others.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mlgibbs.models.data import to_device
from mlgibbs.models.mixed_data import MixedStructure
from mlgibbs.samplers.mixed import MixedPriors, MixedState, _hashable, fitted_values, mixed_kernel

__all__ = ["sample_mixed", "posterior_variables", "mixed_log_likelihood", "to_inference_data_mixed",
           "user_scale_priors", "posterior_log_joint", "variable_names"]


class _FactorNames(NamedTuple):
    """What naming the output needs of a factor (static)."""

    name: str
    blocks: tuple[tuple[int, int], ...]


class _Layout(NamedTuple):
    """The static part of a model that names and maps its output: its structure, factor names and
    blocks, and where the intercept went (:attr:`MixedTransform.intercept`). Hashable (it keys the
    compiled programs), and a stand-in for the model in :func:`posterior_variables`."""

    structure: MixedStructure
    factors: tuple[_FactorNames, ...]
    intercept: tuple | None


class _UserMap(NamedTuple):
    """A stand-in for the model in :meth:`MixedModel.to_user` with a traced transform (inside ``jit``)."""

    transform: Any
    factors: tuple[_FactorNames, ...]
    family: Any = None


class _Keyed:
    """A value (the user's scale priors) hashed by :func:`mlgibbs.samplers.mixed._hashable`, to key a cache."""

    def __init__(self, value):
        self.value = value
        try:
            self.key = _hashable(value)
        except TypeError:  # unhashable parameters (a list): a key of its own (kept alive by the cache)
            self.key = ("id", id(value))

    def __hash__(self):
        return hash(self.key)

    def __eq__(self, other):
        return isinstance(other, _Keyed) and self.key == other.key


def _layout(model) -> _Layout:
    return _Layout(model.structure, tuple(_FactorNames(f.name, tuple(f.blocks)) for f in model.factors),
                   model.transform.intercept)


def user_scale_priors(model) -> MixedPriors:
    """The user's priors on ``sigma_y`` and on every covariance block (``model.priors``), as the
    ``priors`` of :func:`mlgibbs.logdensity.mixed_log_joint`."""
    return MixedPriors(sigma_y=model.priors["r"] if model.family.dispersion else model.priors["sigma_y"],
                       cov=tuple(tuple(model.priors[f.name]) for f in model.factors))


def _aux(model):
    """The model's arrays a program takes as inputs: the kernel's observation rows (log likelihood,
    replicates) and the map to the user's coordinates without the response's centre ``c``
    (``intercept`` left out: it is static), for ``lp`` and running moments."""
    def build():
        W, y, codes = model.kernel_rows
        trials = None if model.trials is None else to_device(model.trials, model.dtype)
        rows = (to_device(W, model.dtype), to_device(y, model.dtype), jax.device_put(np.asarray(codes, np.int32)),
                trials)
        tr = model.transform._replace(c=0.0, intercept=None)
        tr = jax.tree.map(lambda a: to_device(np.asarray(a, np.float64), model.dtype), tr)
        return rows, tr
    return model.cached("aux", build)


def _recorder(recorded):
    """``record(state)`` keeping the fields of ``recorded`` (a :class:`MixedState` of booleans)."""
    def record(state):
        def pick(keep, value):
            return value if keep else None
        return MixedState(beta=pick(recorded.beta, state.beta),
                          gamma=tuple(map(pick, recorded.gamma, state.gamma)),
                          b=tuple(map(pick, recorded.b, state.b)),
                          sigma_y=pick(recorded.sigma_y, state.sigma_y),
                          cov=tuple(map(pick, recorded.cov, state.cov)))
    return record


#: Largest number of row-design values (rows x columns x draws) one step of ``lp`` holds at a time.
_LP_BATCH_VALUES = 1 << 22


def _batched_lp(structure, priors, data, z_scale, draws):
    """:func:`mlgibbs.logdensity.mixed_log_joint` of draws ``(chain, draw, ...)``: chains in turn, draws
    in batches, so that memory stays bounded whatever ``n`` (each draw's residuals are ``R`` values)."""
    from mlgibbs.logdensity import mixed_log_joint

    size = int(np.prod(data.W.shape)) or 1
    num_draws = jax.tree.leaves(draws)[0].shape[1]
    batch = max(1, min(num_draws, _LP_BATCH_VALUES // size))

    def one(state):
        return mixed_log_joint(state, data, structure, priors, z_scale)
    return jax.lax.map(lambda chain: jax.lax.map(one, chain, batch_size=batch), draws)


def posterior_log_joint(model, posterior) -> np.ndarray:
    """``lp`` of every draw of a posterior in the user's coordinates, ``(chain, draw)`` float64.

    The quantity :func:`mlgibbs.sample` reports as ``sample_stats.lp`` for a multilevel model
    (:func:`mlgibbs.logdensity.mixed_log_joint`), for draws from elsewhere: ``posterior`` is the
    ``posterior`` group of a run that stored every variable, or a dict of arrays with the same names
    and layout, such as :func:`mlgibbs.numpyro.mixed_nuts_draws` of a NUTS run (the comparison of the
    two samplers' ``lp`` needs no Jacobian: both are the density of the same parametrisation).
    """
    variables = posterior_variables(model, model.to_user(_unit_state(model)))
    missing = [name for name in variables if name not in posterior]
    if missing:
        raise ValueError(f"lp needs every variable of the model; the posterior lacks {missing} (sampled with "
                         "var_names?)")
    kernel = to_device(model.to_kernel(_user_values(model, posterior)), model.dtype)

    def build():
        priors = user_scale_priors(model)
        structure = model.structure
        return jax.jit(lambda draws, data, z_scale: _batched_lp(structure, priors, data, z_scale, draws))
    lp = model.cached("lp", build)
    return np.asarray(lp(kernel, model.data, _aux(model)[1].z_scale), np.float64)


@functools.lru_cache(maxsize=64)
def _program(kernel, layout, num_chains, num_draws, init, log_likelihood, posterior_predictive,
             recorded=None, moment_names=(), lp_priors=None, progress=False):
    """The compiled program of :func:`sample_mixed`: (init,) warm-up, draws, ``lp``, log likelihood.

    ``program(rng_key, data, initial_state, aux, num_warmup, thin, first_sweep) -> dict`` (``init``,
    ``first_sweep`` and ``progress`` as in :func:`mlgibbs.run.sampling_program`); ``recorded`` (a
    :class:`MixedState` of booleans, or ``None`` for all) picks the state's fields stored per draw,
    ``moment_names`` the output variables whose running mean and variance are kept instead, and
    ``lp_priors`` (:class:`_Keyed` user scale priors, or ``None``) adds ``lp``.
    """
    from mlgibbs.models.mixed import MixedModel
    from mlgibbs.run import run_chain

    structure = layout.structure
    record = None if recorded is None else _recorder(recorded)

    def program(rng_key, data, initial_state, aux, num_warmup, thin, first_sweep=0):
        rows, transform = aux
        key_init, key_run, key_ppc = jax.random.split(rng_key, 3)
        if init:
            from mlgibbs.run import initial_states

            initial_state = initial_states(kernel, num_chains, key_init, data)
        moments = None
        if moment_names:
            tr = transform._replace(intercept=layout.intercept)

            def moments(state):  # the user's values less the constant the response's centre c adds
                from mlgibbs.families import FAMILIES

                user = MixedModel.to_user(_UserMap(tr, layout.factors, FAMILIES[layout.structure.family]), state,
                                          xp=jnp)
                values = posterior_variables(layout, user, xp=jnp)
                return {name: values[name][1] for name in moment_names}
        one_chain = functools.partial(run_chain, kernel.step, data=data, num_draws=num_draws,
                                      num_warmup=num_warmup, thin=thin, record=record, moments=moments,
                                      first_sweep=first_sweep, progress=progress)
        from mlgibbs.devices import constrain_chains

        chain_keys, initial_state = constrain_chains((jax.random.split(key_run, num_chains), initial_state),
                                                     num_chains)   # over the devices, when several
        out = jax.vmap(one_chain)(chain_keys, initial_state)
        draws = out[0]
        result = {"draws": draws}
        if moment_names:
            result["moments"] = out[2]
        if lp_priors is not None:
            result["lp"] = _batched_lp(structure, lp_priors.value, data, transform.z_scale, draws)
        W, y, codes, trials = rows
        if log_likelihood or posterior_predictive:
            def mean(state):
                return fitted_values(structure, W, codes, state.beta, state.b)
        if log_likelihood:
            def loglik(state):
                return observation_log_likelihood(structure.family, y, trials, mean(state), state.sigma_y,
                                                  data.y_scale)
            result["log_likelihood"] = jax.lax.map(jax.vmap(loglik), draws)
        if posterior_predictive:
            keys = jax.random.split(key_ppc, (num_chains, num_draws))

            def replicate(key, state):
                return replicate_outcomes(structure.family, key, mean(state), state.sigma_y, trials)
            result["posterior_predictive"] = jax.vmap(jax.vmap(replicate))(keys, draws)
        return result

    return jax.jit(program)


def observation_log_likelihood(family: str, y, trials, eta, sigma_y, y_scale):
    """``log p(y_i | eta_i)`` of every observation: the Gaussian density in the user's units (``y`` and
    ``eta`` in the kernel's, ``y_scale`` the ratio), or the family's binomial probability."""
    if family == "gaussian":
        z = (y - eta) / sigma_y
        return -0.5 * z**2 - jnp.log(sigma_y * y_scale) - 0.5 * jnp.log(2 * jnp.pi)
    from mlgibbs.families import FAMILIES, log_prob

    return log_prob(FAMILIES[family], y, trials, eta, sigma_y)   # sigma_y: the negative binomial's r


def replicate_outcomes(family: str, rng_key, eta, sigma_y, trials):
    """New outcomes given the linear predictor (kernel units for the Gaussian; counts otherwise)."""
    if family == "gaussian":
        return eta + sigma_y * jax.random.normal(rng_key, eta.shape, eta.dtype)
    from mlgibbs.families import FAMILIES, draw_outcome

    return draw_outcome(FAMILIES[family], rng_key, eta, trials, sigma_y)


def posterior_variables(model, user: dict[str, np.ndarray], xp=np) -> dict[str, tuple[tuple[str, ...], Any]]:
    """ArviZ variables (dims after chain and draw, values) from :meth:`MixedModel.to_user` output.

    ``model`` is read for its ``structure`` and its factors' ``name`` and ``blocks`` only; ``xp=jnp``
    inside ``jit``.
    """
    out = {}
    if model.structure.p:
        out["beta"] = (("predictor",), user["beta"])
    for f, factor in enumerate(model.factors):
        name = factor.name
        coef = f"{name}_coef"
        out[f"alpha_{name}"] = ((name, coef), user[f"alpha_{name}"])
        if model.structure.q[f]:
            out[f"gamma_{name}"] = ((f"{name}_predictor",), user[f"gamma_{name}"])
        cov = user[f"cov_{name}"]
        sd = xp.sqrt(xp.diagonal(cov, axis1=-2, axis2=-1))
        out[f"sigma_{name}"] = ((coef,), sd)
        if any(size > 1 for _, size in factor.blocks):
            corr = cov / (sd[..., :, None] * sd[..., None, :])
            out[f"corr_{name}"] = ((coef, f"{coef}_bis"), corr)
    if model.structure.family == "gaussian":
        out["sigma_y"] = ((), user["sigma_y"])
    if model.structure.family == "negbinomial":
        out["r"] = ((), user["r"])
    return out


def _coords(model) -> dict[str, Any]:
    from mlgibbs.arviz import _labels

    coords = {"predictor": np.asarray(model.predictors)}
    for f, factor in enumerate(model.factors):
        coords[factor.name] = _labels(factor.labels)
        coords[f"{factor.name}_coef"] = np.asarray(factor.coef_names)
        coords[f"{factor.name}_coef_bis"] = np.asarray(factor.coef_names)
        coords[f"{factor.name}_predictor"] = np.asarray(model.group_predictors[f])
    return coords


def to_inference_data_mixed(model, variables, *, log_likelihood=None, posterior_predictive=None, attrs=None,
                            sample_stats=None, moments=None):
    """InferenceData (ArviZ 0.x) or DataTree (1.x) of a multilevel model's draws.

    ``variables``: name -> (dims after chain and draw, values ``(chain, draw, ...)``), as
    :func:`posterior_variables`; ``sample_stats``: name -> ``(chain, draw)`` values (``lp``);
    ``moments``: name -> (dims, per-chain mean, per-chain sd) of variables not stored per draw, in the
    group ``posterior_moments`` as ``<name>_mean`` and ``<name>_sd`` (as for :class:`~mlgibbs.Model`).
    """
    import xarray as xr

    import mlgibbs
    from mlgibbs.arviz import _attribute, make_inference_data, observation_groups, observed_data

    num_chains, num_draws = next(iter(variables.values()))[1].shape[:2]
    base = {"chain": np.arange(num_chains), "draw": np.arange(num_draws)}
    all_attrs = {"inference_library": "mlgibbs", "inference_library_version": mlgibbs.__version__}
    all_attrs.update({k: _attribute(v) for k, v in (attrs or {}).items()})
    coords = _coords(model)

    def used(group):
        names = {d for dims, _ in group.values() for d in dims}
        return {k: v for k, v in coords.items() if k in names}

    posterior = {name: (("chain", "draw", *dims), np.asarray(value)) for name, (dims, value) in variables.items()}
    datasets = {"posterior": xr.Dataset(posterior, coords={**base, **used(posterior)}, attrs=all_attrs)}
    if sample_stats:
        datasets["sample_stats"] = xr.Dataset({k: (("chain", "draw"), np.asarray(v)) for k, v in sample_stats.items()},
                                              coords=base, attrs=all_attrs)
    datasets.update(observation_groups(model, base, attrs=all_attrs, log_likelihood=log_likelihood,
                                       posterior_predictive=posterior_predictive))
    if moments:
        moment_vars = {}
        for name, (dims, mean, sd) in moments.items():
            moment_vars[f"{name}_mean"] = (("chain", *dims), np.asarray(mean))
            moment_vars[f"{name}_sd"] = (("chain", *dims), np.asarray(sd))
        datasets["posterior_moments"] = xr.Dataset(moment_vars, coords={"chain": base["chain"], **used(moment_vars)},
                                                   attrs=all_attrs)
    datasets["observed_data"] = observed_data(model, all_attrs)
    if model.family.counts and model.trials is not None and (model.trials_column or np.any(model.trials != 1)):
        # the trials of a binomial-type family (given as trials=), by obs_id
        name = model.trials_column or "trials"
        datasets["constant_data"] = xr.Dataset({name: (("obs_id",), np.asarray(model.trials, np.float64))},
                                               coords={"obs_id": np.arange(model.num_obs)}, attrs=all_attrs)
    return make_inference_data(datasets)


def _rows(model):
    return _aux(model)[0]


def _unit_state(model) -> MixedState:
    """A state of this model's shapes (zeros, unit scales), for checking layouts."""
    s = model.structure
    return MixedState(beta=np.zeros(s.p), gamma=tuple(np.zeros(q) for q in s.q),
                      b=tuple(np.zeros((len(f.labels), d)) for f, d in zip(model.factors, s.dims)),
                      sigma_y=np.ones(()), cov=tuple(np.eye(d) for d in s.dims))


def _user_values(model, post, draw=None) -> dict:
    """The user's parameters (``to_kernel``'s input) from a posterior group: every draw, or one."""
    def get(name, default=None):
        if name not in post:
            return default
        var = post[name]
        if draw is not None:
            var = var.isel(draw=draw) if hasattr(var, "isel") else np.asarray(var)[:, draw]
        return np.asarray(getattr(var, "values", var), np.float64)

    sigma_y = get("sigma_y", get("r"))   # the negative binomial's r has sigma_y's slot
    if sigma_y is None:  # a family without sigma_y (kept at 1 in the kernel)
        first = model.factors[0].name
        lead = get(f"sigma_{first}").shape[:-1]
        sigma_y = np.ones(lead)
    lead = sigma_y.shape
    user = {"beta": get("beta", np.zeros((*lead, 0))), "sigma_y": sigma_y, "r": sigma_y}
    for factor in model.factors:
        name = factor.name
        user[f"alpha_{name}"] = get(f"alpha_{name}")
        user[f"gamma_{name}"] = get(f"gamma_{name}", np.zeros((*lead, 0)))
        sd = get(f"sigma_{name}")
        d = sd.shape[-1]
        corr = get(f"corr_{name}", np.broadcast_to(np.eye(d), (*sd.shape, d)))
        user[f"cov_{name}"] = corr * sd[..., :, None] * sd[..., None, :]
    return user


def mixed_log_likelihood(idata, model):
    """Add the pointwise ``log_likelihood`` group to a run of a multilevel model (one chain at a time)."""
    from mlgibbs.arviz import add_group, observation_groups

    _check_layout(model, idata.posterior)
    kernel = to_device(model.to_kernel(_user_values(model, idata.posterior)), model.dtype)
    W, y, codes, trials = _rows(model)
    y_scale = model.data.y_scale
    structure = model.structure

    @jax.jit
    def one_chain(states):
        def loglik(state):
            m = fitted_values(structure, W, codes, state.beta, state.b)
            return observation_log_likelihood(structure.family, y, trials, m, state.sigma_y, y_scale)
        return jax.lax.map(loglik, states)

    chains = [np.asarray(one_chain(jax.tree.map(lambda a: a[c], kernel)), np.float64)
              for c in range(np.shape(kernel.sigma_y)[0])]
    loglik = np.stack(chains)
    base = {"chain": np.arange(loglik.shape[0]), "draw": np.arange(loglik.shape[1])}
    group = observation_groups(model, base, attrs=dict(idata.posterior.attrs), log_likelihood=loglik)
    return add_group(idata, "log_likelihood", group["log_likelihood"])


def _check_layout(model, post):
    variables = posterior_variables(model, model.to_user(_unit_state(model)))
    missing = [name for name in variables if name not in post]
    if missing and all(str(v) in variables for v in post.data_vars):
        raise ValueError(f"the posterior lacks {missing} (sampled with var_names, or from another model?); this "
                         "needs a run of this model that stores every variable")
    problems = []
    for name, (dims, value) in variables.items():
        if name not in post:
            problems.append(f"the draws lack {name}")
            continue
        have = tuple(d for d in post[name].dims if d not in ("chain", "draw"))
        if have != dims or tuple(post[name].shape[2:]) != tuple(np.shape(value)):
            problems.append(f"{name} has dims {dict(zip(have, post[name].shape[2:]))}, this model "
                            f"{dict(zip(dims, np.shape(value)))}")
    extra = [str(v) for v in post.data_vars if str(v) not in variables
             and str(v).split("_")[0] in ("alpha", "gamma", "sigma", "corr", "beta")]
    if extra:
        problems.append(f"the draws have {extra}, which this model does not")
    if problems:
        raise ValueError("the draws belong to another model: " + "; ".join(problems)
                         + f". This model is {model.formula or 'built from arrays'}")
    return variables


def _initial_state(model, initial_state, num_chains):
    """A kernel state (chains first) from an earlier run of this model."""
    if not hasattr(initial_state, "posterior"):
        raise TypeError("initial_state must be None or the InferenceData of an earlier mlgibbs.sample run of "
                        f"this model; got {type(initial_state).__name__}")
    try:
        _check_layout(model, initial_state.posterior)
    except ValueError as err:
        message = str(err)
        if message.startswith("the draws belong to another model: "):
            message = "initial_state holds draws of another model: " + message.removeprefix(
                "the draws belong to another model: ")
        else:
            message = "cannot continue from these draws: " + message
        raise ValueError(message) from None
    user = _user_values(model, initial_state.posterior, draw=-1)
    if user["sigma_y"].shape[0] != num_chains:
        raise ValueError(f"initial_state holds {user['sigma_y'].shape[0]} chains but num_chains={num_chains}")
    return to_device(model.to_kernel(user), model.dtype)


def variable_names(model) -> list[str]:
    """The posterior variables of a multilevel model, in the output's order (what ``var_names`` picks from)."""
    return list(posterior_variables(model, model.to_user(_unit_state(model))))


def _needed_fields(model, kept) -> MixedState:
    """Which fields of the kernel's state the user's values of the variables ``kept`` are made of (a
    :class:`MixedState` of booleans): ``beta`` also for the effects and group-level coefficients of the
    factor that holds the intercept (the centring of ``X`` moves into them)."""
    tr = model.transform
    home = tr.intercept[1] if tr.intercept is not None and tr.intercept[0] == "factor" else -1
    names = [f.name for f in model.factors]
    beta = "beta" in kept or (home >= 0 and (f"alpha_{names[home]}" in kept or f"gamma_{names[home]}" in kept))
    return MixedState(beta=bool(beta and model.structure.p),
                      gamma=tuple(f"gamma_{n}" in kept for n in names),
                      b=tuple(f"alpha_{n}" in kept for n in names),
                      sigma_y="sigma_y" in kept,
                      cov=tuple(f"sigma_{n}" in kept or f"corr_{n}" in kept for n in names))


def _fill(model, draws: MixedState, shape) -> MixedState:
    """A state with the fields that were not recorded set to small stand-ins (``to_user`` needs every
    field; the values made from them are discarded): zeros of one group per factor, unit scales."""
    s = model.structure

    def fill(value, stand_in):
        return stand_in if value is None else value
    return MixedState(
        beta=fill(draws.beta, np.zeros((*shape, s.p))),
        gamma=tuple(fill(g, np.zeros((*shape, q))) for g, q in zip(draws.gamma, s.q)),
        b=tuple(fill(b, np.zeros((*shape, 1, d))) for b, d in zip(draws.b, s.dims)),
        sigma_y=fill(draws.sigma_y, np.ones(shape)),
        cov=tuple(fill(c, np.broadcast_to(np.eye(d), (*shape, d, d))) for c, d in zip(draws.cov, s.dims)))


#: The samplers of a multilevel model by family (:func:`default_mixed_sampler` picks one): ``"blocked"`` is the blocked
#: Gibbs sampler of the Gaussian, the Poisson's Metropolis-Hastings kernel and the negative binomial's
#: corrected augmentation; for the augmented families ``"augmented"`` is Polya-Gamma (logit) or
#: Albert-Chib (probit) augmentation with each chain's scales drawn with its locations integrated out,
#: ``"augmented-px"`` the same augmentation with the scales given the locations and parameter-expanded
#: moves (cheaper per sweep; on crossed designs with large groups as good per second), and ``"iwls"``
#: (logit) Metropolis-Hastings with IWLS Gaussian proposals and no augmentation
#: (:mod:`mlgibbs.conditionals.logit`).
MIXED_SAMPLERS = {
    "gaussian": ("blocked",),
    "bernoulli": ("augmented", "augmented-px", "iwls"),
    "binomial": ("augmented", "augmented-px", "iwls"),
    "probit": ("augmented", "augmented-px"),
    "negbinomial": ("blocked",),
    "poisson": ("blocked",),
}


#: ``sampler=None`` takes ``"iwls"`` for a logit family when every grouping factor has at least this many
#: trials per group on average (a model without groups: this many trials in all).
IWLS_TRIALS_PER_GROUP = 40


def default_mixed_sampler(model) -> str:
    """The sampler ``sampler=None`` runs: the family's first of :data:`MIXED_SAMPLERS`, except

    * the logit families when the groups are well informed (at least :data:`IWLS_TRIALS_PER_GROUP` trials
      per group on average in every grouping factor; a model without groups: that many trials): ``"iwls"``;
    * otherwise, the augmented families with crossed factors (more than one chain of nested factors):
      ``"augmented-px"``.

    Measured on the shipped data (``benchmarks/families.py``, 2 CPU cores, 2026-12-03; min ESS per second
    over every scalar): the Polya-Gamma draw costs a pass per trial and its locations' autocorrelation grows
    with the groups' information, while the IWLS proposals approach exact draws as the groups' likelihoods
    approach a Gaussian's. cbpp (56 trials per herd): ``"iwls"`` 7,634, ``"augmented"`` 997,
    ``"augmented-px"`` 1,352; a synthetic ``y ~ x + (1 | g)`` with 100 Bernoulli rows per group (n = 1e5,
    one run): ``"iwls"`` 20x ``"augmented"``; radon-logistic (11 houses per county): ``"augmented"``
    2,496, ``"iwls"`` 1,671, ``"augmented-px"`` 1,012; Contraception (32 women per district, a correlated
    block; 2026-12-04, its covariance drawn with the district effects integrated out): ``"augmented"`` 457,
    ``"augmented-px"`` 130, ``"iwls"`` 64; VerbAgg (crossed; 24 answers per
    subject): ``"augmented-px"`` 230, ``"augmented"`` 167 (its collapsed scale draws cost 50% more per
    sweep there for no gain in ESS), ``"iwls"`` 7.
    """
    family = model.structure.family
    names = MIXED_SAMPLERS[family]
    if "iwls" in names:
        total = float(np.sum(model.trials)) if model.trials is not None else float(model.num_obs)
        per_group = min([total / len(f.labels) for f in model.factors], default=total)
        if per_group >= IWLS_TRIALS_PER_GROUP:
            return "iwls"
    if "augmented-px" in names and len(model.structure.chains) > 1:
        return "augmented-px"
    return names[0]


def mixed_sampler_structure(model, sampler):
    """``(structure, name)``: the kernel's :class:`MixedStructure` for ``sampler`` (a name of
    :data:`MIXED_SAMPLERS` for the model's family; ``None``, ``"gibbs"`` or ``"blocked"``: the family's
    default) and the sampler's name."""
    family = model.structure.family
    names = MIXED_SAMPLERS[family]
    default = default_mixed_sampler(model)
    if sampler in (None, "gibbs", "blocked"):
        sampler = default
    if sampler not in names:
        raise ValueError(f"sampler {sampler!r} is not available for this model (family {family!r}); expected "
                         f"one of {list(names)} or None (the default here, {default!r})")
    if sampler == names[0]:   # the model's own structure (kernels compiled for it are shared)
        return model.structure, sampler
    return model.structure._replace(collapsed_scales=sampler == "augmented", iwls=sampler == "iwls"), sampler


def sample_mixed(rng_key, model, *, num_chains, num_warmup, num_draws, thin, initial_state=None,
                 log_likelihood=None, posterior_predictive=False, check_convergence=True, sampler=None,
                 var_names=None, progress_bar=False):
    """:func:`mlgibbs.sample` for a :class:`~mlgibbs.models.mixed.MixedModel`.

    ``var_names`` keeps only the named posterior variables (``beta``, ``sigma_y``, ``alpha_<f>``,
    ``gamma_<f>``, ``sigma_<f>``, ``corr_<f>``): only the parts of the state they are made of are
    stored per draw; for the others the per-chain running mean and standard deviation are kept (group
    ``posterior_moments``, ``<name>_mean`` and ``<name>_sd``). ``sample_stats.lp``
    (:func:`mlgibbs.logdensity.mixed_log_joint`) is reported when every variable is stored and the
    kernel's rows x chains x draws are at most ``MAX_LOG_LIKELIHOOD_VALUES`` (each draw's ``lp`` is a pass
    over the rows); otherwise :func:`posterior_log_joint` computes it afterwards from ``idata.posterior``.
    """
    from mlgibbs.run import MAX_LOG_LIKELIHOOD_VALUES

    structure, sampler = mixed_sampler_structure(model, sampler)
    present = variable_names(model)
    if isinstance(var_names, str):
        var_names = [var_names]
    kept = present if var_names is None else list(var_names)
    unknown = [v for v in kept if v not in present]
    if unknown:
        raise ValueError(f"var_names has {unknown}, not variables of this model; expected some of {present}")
    if not kept:
        raise ValueError(f"var_names is empty; expected some of {present}")
    dropped = [v for v in present if v not in kept]
    complete = not dropped
    kernel = mixed_kernel(structure, model.kernel_priors)
    from mlgibbs._ahead import compile_ahead
    from mlgibbs.run import init_program, run_program, sweeps_done

    first_sweep = sweeps_done(initial_state)
    if initial_state is not None:
        initial_state = _initial_state(model, initial_state, num_chains)
    n_values = model.num_obs * num_chains * num_draws
    if log_likelihood is None:
        log_likelihood = complete and n_values <= MAX_LOG_LIKELIHOOD_VALUES
        if complete and not log_likelihood:
            warnings.warn(f"log_likelihood left out: it would hold {n_values:,} values (n x chains x draws) > "
                          f"{MAX_LOG_LIKELIHOOD_VALUES:,}; pass log_likelihood=True to keep it", stacklevel=3)
    if (log_likelihood or posterior_predictive) and not complete:
        raise ValueError(f"log_likelihood and posterior_predictive need every variable stored; "
                         f"var_names leaves out {dropped}")
    recorded = None if complete else _needed_fields(model, kept)
    # lp is a pass over the kernel's rows per draw (as costly as a sweep's residuals when cells do not
    # compress, InstEval): reported when that stays within the log likelihood's budget
    want_lp = complete and model.data.W.shape[0] * num_chains * num_draws <= MAX_LOG_LIKELIHOOD_VALUES
    lp_priors = _Keyed(user_scale_priors(model)) if want_lp else None
    # the names and the intercept's place matter to the running moments only: without them a model of
    # the same structure and priors reuses the compiled program
    layout = _layout(model) if dropped else _Layout(model.structure, (), None)
    program = _program(kernel, layout, num_chains, num_draws, False,
                       bool(log_likelihood), bool(posterior_predictive), recorded, tuple(dropped), lp_priors,
                       bool(progress_bar))
    # compiled on a second thread while the starts are drawn (by a program of their own: a continuation
    # reuses the sampling program)
    state_shape = (initial_state if initial_state is not None
                   else jax.eval_shape(init_program(kernel, num_chains), rng_key, model.data))
    ahead = compile_ahead(program, (rng_key, model.data, state_shape, _aux(model), num_warmup, thin,
                                    np.int32(first_sweep)))
    if initial_state is None:
        initial_state = init_program(kernel, num_chains)(rng_key, model.data)
    out = run_program(ahead.result(), (rng_key, model.data, initial_state, _aux(model)), num_warmup=num_warmup,
                      num_draws=num_draws, thin=thin, first_sweep=first_sweep, num_chains=num_chains,
                      progress_bar=progress_bar)
    draws = out["draws"]
    if not complete:
        draws = _fill(model, draws, (num_chains, num_draws))
    user = model.to_user(draws)
    variables = {name: value for name, value in posterior_variables(model, user).items() if name in kept}
    moments = None
    if dropped:
        mean, var = out["moments"]
        # the moments are of the user's values less the response's centre c: to_user is linear in the
        # locations but for it, so the user's values at zero locations are what c adds
        centre = posterior_variables(model, model.to_user(_unit_state(model)))
        moments = {}
        for name in dropped:
            dims = centre[name][0]
            offset = centre[name][1] if name.split("_")[0] in ("beta", "alpha", "gamma") else 0.0
            moments[name] = (dims, np.asarray(mean[name], np.float64) + offset,
                             np.sqrt(np.asarray(var[name], np.float64)))
    checked = {**{name: value for name, (_, value) in variables.items()},
               **{f"{name}_mean": m for name, (_, m, _) in (moments or {}).items()}}
    for name, value in checked.items():
        finite = np.isfinite(value)
        if not finite.all():
            raise FloatingPointError(
                f"the multilevel sampler produced non-finite values of {name} ({int((~finite).sum())} values). "
                "The model passed every check at build time, so this is a numerical limit or a bug: please "
                "report it with the model; meanwhile try float64 (jax.config.update('jax_enable_x64', True))")
    k, c = model.transform.k, model.transform.c
    loglik = out["log_likelihood"].astype(np.float64) if log_likelihood else None
    ppc = out["posterior_predictive"].astype(np.float64) * k + c if posterior_predictive else None
    sample_stats = {"lp": out["lp"].astype(np.float64)} if want_lp else None
    idata = to_inference_data_mixed(model, variables, log_likelihood=loglik, posterior_predictive=ppc,
                                    sample_stats=sample_stats, moments=moments,
                                    attrs={"sampler": sampler, "num_warmup": num_warmup, "thin": thin,
                                           "num_sweeps": first_sweep + num_warmup + num_draws * thin})
    if check_convergence:
        from mlgibbs.diagnostics import warn_if_not_converged

        few = [f"sigma_{f.name}" for f in model.factors if len(f.labels) < 10]
        advice = "Run longer (num_warmup, num_draws; thin= keeps memory the same)"
        if few:
            advice += (f"; the scales of factors with few groups ({', '.join(few)}) mix slowly under a "
                       "uniform prior: a proper one (HalfNormal, HalfCauchy) helps")
        warn_if_not_converged(idata, stacklevel=4, advice=advice)
    return idata

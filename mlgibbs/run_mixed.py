"""Running the multilevel (:class:`~mlgibbs.models.mixed.MixedModel`) kernel and naming its output.

Called by :func:`mlgibbs.sample` for a model with varying slopes or several grouping factors. The
draws come out in the user's coordinates (float64) with ArviZ names (see :mod:`mlgibbs.models.mixed`):
``beta``, ``sigma_y``, and per factor ``f`` ``alpha_<f>``, ``gamma_<f>``, ``sigma_<f>``, ``corr_<f>``.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mlgibbs.models.data import to_device
from mlgibbs.samplers.mixed import MixedState, fitted_values, mixed_kernel

__all__ = ["sample_mixed", "posterior_variables", "mixed_log_likelihood", "to_inference_data_mixed"]


@functools.lru_cache(maxsize=64)
def _program(kernel, structure, num_chains, num_draws, init, log_likelihood, posterior_predictive):
    from mlgibbs.run import run_chain

    def program(rng_key, data, initial_state, rows, num_warmup, thin):
        key_init, key_run, key_ppc = jax.random.split(rng_key, 3)
        if init:
            initial_state = jax.vmap(kernel.init, in_axes=(0, None))(jax.random.split(key_init, num_chains), data)
        one_chain = functools.partial(run_chain, kernel.step, data=data, num_draws=num_draws,
                                      num_warmup=num_warmup, thin=thin)
        draws, last = jax.vmap(one_chain)(jax.random.split(key_run, num_chains), initial_state)
        result = {"draws": draws}
        W, y, codes = rows
        if log_likelihood or posterior_predictive:
            def mean(state):
                return fitted_values(structure, W, codes, state.beta, state.b)
        if log_likelihood:
            def loglik(state):
                m = mean(state)
                z = (y - m) / state.sigma_y
                return -0.5 * z**2 - jnp.log(state.sigma_y * data.y_scale) - 0.5 * jnp.log(2 * jnp.pi)
            result["log_likelihood"] = jax.lax.map(jax.vmap(loglik), draws)
        if posterior_predictive:
            keys = jax.random.split(key_ppc, (num_chains, num_draws))

            def replicate(key, state):
                m = mean(state)
                return m + state.sigma_y * jax.random.normal(key, m.shape, m.dtype)
            result["posterior_predictive"] = jax.vmap(jax.vmap(replicate))(keys, draws)
        return result

    return jax.jit(program)


def posterior_variables(model, user: dict[str, np.ndarray]) -> dict[str, tuple[tuple[str, ...], np.ndarray]]:
    """ArviZ variables (dims after chain and draw, values) from :meth:`MixedModel.to_user` output."""
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
        sd = np.sqrt(np.diagonal(cov, axis1=-2, axis2=-1))
        out[f"sigma_{name}"] = ((coef,), sd)
        if any(size > 1 for _, size in factor.blocks):
            corr = cov / (sd[..., :, None] * sd[..., None, :])
            out[f"corr_{name}"] = ((coef, f"{coef}_bis"), corr)
    out["sigma_y"] = ((), user["sigma_y"])
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


def to_inference_data_mixed(model, variables, *, log_likelihood=None, posterior_predictive=None, attrs=None):
    """InferenceData (ArviZ 0.x) or DataTree (1.x) of a multilevel model's draws."""
    import xarray as xr

    import mlgibbs
    from mlgibbs.arviz import _attribute, make_inference_data, observation_groups, observed_data

    first = next(iter(variables.values()))[1]
    num_chains, num_draws = first.shape[:2]
    base = {"chain": np.arange(num_chains), "draw": np.arange(num_draws)}
    all_attrs = {"inference_library": "mlgibbs", "inference_library_version": mlgibbs.__version__}
    all_attrs.update({k: _attribute(v) for k, v in (attrs or {}).items()})
    coords = _coords(model)
    posterior = {name: (("chain", "draw", *dims), np.asarray(value)) for name, (dims, value) in variables.items()}
    used = {d for dims, _ in posterior.values() for d in dims}
    datasets = {"posterior": xr.Dataset(posterior, coords={**base, **{k: v for k, v in coords.items() if k in used}},
                                        attrs=all_attrs)}
    datasets.update(observation_groups(model, base, attrs=all_attrs, log_likelihood=log_likelihood,
                                       posterior_predictive=posterior_predictive))
    datasets["observed_data"] = observed_data(model, all_attrs)
    return make_inference_data(datasets)


def _rows(model):
    def build():
        W, y, codes = model.kernel_rows
        return (to_device(W, model.dtype), to_device(y, model.dtype), jax.device_put(np.asarray(codes, np.int32)))
    return model.cached("rows", build)


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
        return np.asarray((var if draw is None else var.isel(draw=draw)).values, np.float64)

    sigma_y = get("sigma_y")
    lead = sigma_y.shape
    user = {"beta": get("beta", np.zeros((*lead, 0))), "sigma_y": sigma_y}
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
    W, y, codes = _rows(model)
    y_scale = model.data.y_scale
    structure = model.structure

    @jax.jit
    def one_chain(states):
        def loglik(state):
            m = fitted_values(structure, W, codes, state.beta, state.b)
            z = (y - m) / state.sigma_y
            return -0.5 * z**2 - jnp.log(state.sigma_y * y_scale) - 0.5 * jnp.log(2 * jnp.pi)
        return jax.lax.map(loglik, states)

    chains = [np.asarray(one_chain(jax.tree.map(lambda a: a[c], kernel)), np.float64)
              for c in range(np.shape(kernel.sigma_y)[0])]
    loglik = np.stack(chains)
    base = {"chain": np.arange(loglik.shape[0]), "draw": np.arange(loglik.shape[1])}
    group = observation_groups(model, base, attrs=dict(idata.posterior.attrs), log_likelihood=loglik)
    return add_group(idata, "log_likelihood", group["log_likelihood"])


def _check_layout(model, post):
    variables = posterior_variables(model, model.to_user(_unit_state(model)))
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
        raise ValueError("initial_state holds draws of another model: "
                         + str(err).removeprefix("the draws belong to another model: ")) from None
    user = _user_values(model, initial_state.posterior, draw=-1)
    if user["sigma_y"].shape[0] != num_chains:
        raise ValueError(f"initial_state holds {user['sigma_y'].shape[0]} chains but num_chains={num_chains}")
    return to_device(model.to_kernel(user), model.dtype)


def sample_mixed(rng_key, model, *, num_chains, num_warmup, num_draws, thin, initial_state=None,
                 log_likelihood=None, posterior_predictive=False, check_convergence=True, sampler=None):
    """:func:`mlgibbs.sample` for a :class:`~mlgibbs.models.mixed.MixedModel`."""
    from mlgibbs.run import MAX_LOG_LIKELIHOOD_VALUES

    if sampler not in (None, "gibbs", "blocked"):
        raise ValueError(f"sampler {sampler!r} is not available for this model; its sampler is the blocked "
                         "Gibbs sampler (sampler=None)")
    kernel = mixed_kernel(model.structure, model.kernel_priors)
    if initial_state is not None:
        initial_state = _initial_state(model, initial_state, num_chains)
    n_values = model.num_obs * num_chains * num_draws
    if log_likelihood is None:
        log_likelihood = n_values <= MAX_LOG_LIKELIHOOD_VALUES
        if not log_likelihood:
            warnings.warn(f"log_likelihood left out: it would hold {n_values:,} values (n x chains x draws) > "
                          f"{MAX_LOG_LIKELIHOOD_VALUES:,}; pass log_likelihood=True to keep it", stacklevel=3)
    program = _program(kernel, model.structure, num_chains, num_draws, initial_state is None,
                       bool(log_likelihood), bool(posterior_predictive))
    out = program(rng_key, model.data, initial_state, _rows(model), num_warmup, thin)
    out = jax.tree.map(np.asarray, out)
    user = model.to_user(out["draws"])
    variables = posterior_variables(model, user)
    for name, (_, value) in variables.items():
        finite = np.isfinite(value)
        if not finite.all():
            raise FloatingPointError(
                f"the multilevel sampler produced non-finite values of {name} ({int((~finite).sum())} values). "
                "The model passed every check at build time, so this is a numerical limit or a bug: please "
                "report it with the model; meanwhile try float64 (jax.config.update('jax_enable_x64', True))")
    k, c = model.transform.k, model.transform.c
    loglik = out["log_likelihood"].astype(np.float64) if log_likelihood else None
    ppc = out["posterior_predictive"].astype(np.float64) * k + c if posterior_predictive else None
    idata = to_inference_data_mixed(model, variables, log_likelihood=loglik, posterior_predictive=ppc,
                                    attrs={"sampler": "blocked", "num_warmup": num_warmup, "thin": thin})
    if check_convergence:
        from mlgibbs.diagnostics import warn_if_not_converged

        few = [f"sigma_{f.name}" for f in model.factors if len(f.labels) < 10]
        advice = "Run longer (num_warmup, num_draws; thin= keeps memory the same)"
        if few:
            advice += (f"; the scales of factors with few groups ({', '.join(few)}) mix slowly under a "
                       "uniform prior: a proper one (HalfNormal, HalfCauchy) helps")
        warn_if_not_converged(idata, stacklevel=4, advice=advice)
    return idata

"""The same Bayesian model written independently in NumPyro, for NUTS reference fits.

:func:`numpyro_model` turns a :class:`~mlgibbs.Model` into a NumPyro model function with exactly
the likelihood and priors the Gibbs samplers target,

.. math::

    y_i \\sim \\mathcal N(\\alpha_{j[i]} + X_i\\beta,\\ \\sigma_y^2),\\qquad
    \\alpha_j \\sim \\mathcal N(U_j\\gamma,\\ \\sigma_\\alpha^2),

written from the raw arrays ``model.y``, ``model.X``, ``model.group_index`` and ``U`` (not from the
sufficient statistics the Gibbs updates use), so that agreement between the two is evidence for
both. :func:`run_nuts` runs NumPyro's NUTS on it, and :func:`nuts_inference_data` converts the draws
to InferenceData laid out exactly as :func:`mlgibbs.sample` lays out its own (same variables, dims,
coordinates, an ``lp`` computed by :func:`mlgibbs.log_joint`), so the two can be compared side by side.

NumPyro is an optional dependency (``pip install numpyro`` or the ``test`` extra); it is imported
only when one of these functions is called.

Priors map to NumPyro distributions as follows (sites ``beta``, ``gamma``, ``sigma_y``,
``sigma_alpha``):

=============================  ======================================================================
mlgibbs prior                  NumPyro distribution
=============================  ======================================================================
``Flat()``                     ``ImproperUniform(constraints.real, (), (k,))``
``Normal(loc, scale)``         ``Normal(loc, scale).to_event(1)``; coefficients with ``scale = inf``
                               are flat (``ImproperUniform`` plus a ``factor`` for the finite ones)
``Uniform()``                  ``ImproperUniform(constraints.positive, (), ())``
``InverseGamma(a, b)``         ``sigma = sqrt(v)``, ``v ~ InverseGamma(a, b)``
                               (a ``TransformedDistribution`` with ``PowerTransform(0.5)``)
``HalfNormal(s)``              ``HalfNormal(s)``
``HalfCauchy(s)``              ``HalfCauchy(s)``
``HalfStudentT(df, s)``        ``FoldedDistribution(StudentT(df, 0, s))``
=============================  ======================================================================

References
----------
Hoffman, M. D. and Gelman, A. (2014). The No-U-Turn sampler. *JMLR* 15, 1593-1623.
Papaspiliopoulos, O., Roberts, G. O. and Sköld, M. (2007). A general framework for the
parametrization of hierarchical models. *Statistical Science* 22, 59-73.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from mlgibbs.base import GibbsState
from mlgibbs.priors import (
    Flat,
    HalfCauchy,
    HalfNormal,
    HalfStudentT,
    InverseGamma,
    Normal,
    Uniform,
)

__all__ = [
    "numpyro_model",
    "run_nuts",
    "nuts_inference_data",
    "scale_distribution",
    "NONCENTRED_SITE",
]

#: Name of the standardised group effects ``eta = (alpha - U gamma) / sigma_alpha`` in the
#: non-centred parametrisation.
NONCENTRED_SITE = "eta"

_SITES = ("alpha", "beta", "gamma", "sigma_y", "sigma_alpha", NONCENTRED_SITE)

_SAMPLE_STATS = {  # NumPyro extra field -> ArviZ sample_stats name
    "diverging": "diverging",
    "num_steps": "n_steps",
    "accept_prob": "acceptance_rate",
    "energy": "energy",
    "potential_energy": "potential_energy",
    "adapt_state.step_size": "step_size",
}


def _import_numpyro():
    try:
        import numpyro
        import numpyro.distributions as dist
    except ImportError as err:  # pragma: no cover - exercised through a monkeypatched import
        raise ImportError(
            "mlgibbs.numpyro needs NumPyro, an optional dependency of mlgibbs: "
            "pip install numpyro (or pip install 'mlgibbs[test]')"
        ) from err
    return numpyro, dist


def scale_distribution(prior) -> Any:
    """The NumPyro distribution of a standard deviation under an mlgibbs scale prior.

    Parameters
    ----------
    prior
        :class:`~mlgibbs.priors.Uniform`, :class:`~mlgibbs.priors.InverseGamma` (on the variance),
        :class:`~mlgibbs.priors.HalfNormal`, :class:`~mlgibbs.priors.HalfCauchy` or
        :class:`~mlgibbs.priors.HalfStudentT`.

    Returns
    -------
    numpyro.distributions.Distribution
        A distribution on ``(0, inf)`` whose ``log_prob(sigma)`` equals ``prior.log_prob(sigma)``
        (both are 0 for the improper uniform).

    Examples
    --------
    >>> from mlgibbs.numpyro import scale_distribution
    >>> from mlgibbs.priors import HalfStudentT
    >>> float(scale_distribution(HalfStudentT(3.0, 1.0)).log_prob(0.5))  # doctest: +ELLIPSIS
    -0.46...
    """
    _, dist = _import_numpyro()
    from numpyro.distributions import constraints, transforms

    if isinstance(prior, Uniform):
        return dist.ImproperUniform(constraints.positive, (), ())
    if isinstance(prior, InverseGamma):
        return dist.TransformedDistribution(
            dist.InverseGamma(prior.concentration, prior.rate), transforms.PowerTransform(0.5)
        )
    if isinstance(prior, HalfNormal):
        return dist.HalfNormal(prior.scale)
    if isinstance(prior, HalfCauchy):
        return dist.HalfCauchy(prior.scale)
    if isinstance(prior, HalfStudentT):
        return dist.FoldedDistribution(dist.StudentT(prior.df, 0.0, prior.scale))
    raise TypeError(
        "expected a scale prior (Uniform, InverseGamma, HalfNormal, HalfCauchy, HalfStudentT), "
        f"got {prior!r}"
    )


def _sample_coefficients(name: str, prior, size: int, dtype) -> jax.Array:
    """Sample a coefficient block of ``size`` entries under a Flat or Normal prior."""
    numpyro, dist = _import_numpyro()
    from numpyro.distributions import constraints

    flat = dist.ImproperUniform(constraints.real, (), (size,))
    if isinstance(prior, Flat):
        return numpyro.sample(name, flat)
    if not isinstance(prior, Normal):
        raise TypeError(f"expected a coefficient prior (Flat, Normal) for {name}, got {prior!r}")
    loc = np.broadcast_to(np.asarray(prior.loc, np.float64), (size,))
    scale = np.broadcast_to(np.asarray(prior.scale, np.float64), (size,))
    finite = np.isfinite(scale)
    if finite.all():
        normal = dist.Normal(jnp.asarray(loc, dtype), jnp.asarray(scale, dtype))
        return numpyro.sample(name, normal.to_event(1))
    value = numpyro.sample(name, flat)
    if finite.any():  # flat where scale = inf, normal elsewhere
        idx = np.flatnonzero(finite)
        normal = dist.Normal(jnp.asarray(loc[idx], dtype), jnp.asarray(scale[idx], dtype))
        numpyro.factor(f"{name}_prior", jnp.sum(normal.log_prob(value[idx])))
    return value


def numpyro_model(model, centered: bool = False) -> Callable[[], None]:
    """Write an mlgibbs :class:`~mlgibbs.Model` as a NumPyro model function.

    The data are closed over; the function takes no arguments. Sites: ``beta`` ``(p,)``,
    ``gamma`` ``(q,)``, ``alpha`` ``(J,)``, ``sigma_y``, ``sigma_alpha`` (blocks the model lacks
    are absent) and the observed site named after ``model.response`` (one entry per observation,
    inside a plate named ``obs_id``). Priors are ``model.priors``, mapped as in the module docstring.

    Parameters
    ----------
    model
        A :class:`~mlgibbs.Model`.
    centered
        ``False`` (default): non-centred, ``eta ~ N(0, 1)`` (site ``eta``) and
        ``alpha = U gamma + sigma_alpha * eta`` recorded as a deterministic site, the parametrisation
        under which NUTS explores the radon posterior without divergences. ``True``: ``alpha`` is
        sampled directly, ``alpha ~ N(U gamma, sigma_alpha^2)``; then the log density of the
        NumPyro model at ``(alpha, beta, gamma, sigma_y, sigma_alpha)`` is that of
        :func:`mlgibbs.log_joint`.

    Returns
    -------
    callable
        The NumPyro model, ``model_fn()``.

    Raises
    ------
    ImportError
        If NumPyro is not installed.

    Examples
    --------
    >>> import jax, mlgibbs as mg
    >>> from mlgibbs.numpyro import numpyro_model
    >>> model = mg.Model.from_formula("log_radon ~ floor + log_uranium + (1 | county)",
    ...                               mg.datasets.load_radon())
    >>> model_fn = numpyro_model(model, centered=True)
    """
    numpyro, dist = _import_numpyro()
    if model.response in _SITES:
        raise ValueError(f"the response may not be named {model.response!r}: NumPyro site names "
                         f"{list(_SITES)} are taken by the parameters")
    dtype = model.dtype
    priors = model.priors
    y = jnp.asarray(model.y, dtype)
    X = jnp.asarray(model.X, dtype)
    n, p = X.shape
    has_groups = model.group_index is not None
    if has_groups:
        group = jnp.asarray(model.group_index)
        U = jnp.asarray(model.U, dtype)
        J, q = U.shape

    def model_fn() -> None:
        mean = jnp.zeros((n,), dtype)
        if p > 0:
            beta = _sample_coefficients("beta", priors.beta, p, dtype)
            mean = mean + X @ beta
        if has_groups:
            centre = jnp.zeros((J,), dtype)
            if q > 0:
                gamma = _sample_coefficients("gamma", priors.gamma, q, dtype)
                centre = U @ gamma
            sigma_alpha = numpyro.sample("sigma_alpha", scale_distribution(priors.sigma_alpha))
            if centered:
                alpha = numpyro.sample("alpha", dist.Normal(centre, sigma_alpha).to_event(1))
            else:
                standard = dist.Normal(jnp.zeros((J,), dtype), jnp.ones((J,), dtype)).to_event(1)
                eta = numpyro.sample(NONCENTRED_SITE, standard)
                alpha = numpyro.deterministic("alpha", centre + sigma_alpha * eta)
            mean = mean + alpha[group]
        sigma_y = numpyro.sample("sigma_y", scale_distribution(priors.sigma_y))
        with numpyro.plate("obs_id", n):
            numpyro.sample(model.response, dist.Normal(mean, sigma_y), obs=y)

    return model_fn


def _initial_params(model_fn, model, states: GibbsState, centered: bool) -> dict:
    """Unconstrained NumPyro initial values, one per chain, from Gibbs states ``(chain, ...)``."""
    from numpyro.infer.util import unconstrain_fn

    params = {}
    for name in ("beta", "gamma", "sigma_y", "sigma_alpha"):
        value = getattr(states, name)
        if value is not None:
            params[name] = value
    if states.alpha is not None:
        if centered:
            params["alpha"] = states.alpha
        else:
            centre = 0.0
            if states.gamma is not None:
                centre = states.gamma @ jnp.asarray(model.U, model.dtype).T
            params[NONCENTRED_SITE] = (states.alpha - centre) / states.sigma_alpha[:, None]
    return jax.vmap(lambda prm: unconstrain_fn(model_fn, (), {}, prm))(params)


def run_nuts(
    rng_key: jax.Array,
    model,
    num_chains: int = 4,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    centered: bool = False,
    *,
    initial_state: GibbsState | None = None,
    extra_fields: tuple[str, ...] = tuple(_SAMPLE_STATS),
    progress_bar: bool = False,
    chain_method: str = "vectorized",
    **nuts_kwargs: Any,
):
    """Run NumPyro's NUTS on the model, in one process.

    Parameters
    ----------
    rng_key
        PRNG key.
    model
        A :class:`~mlgibbs.Model`.
    num_chains, num_warmup, num_samples
        Chains, adaptation steps and kept draws per chain.
    centered
        Parametrisation of the group effects (see :func:`numpyro_model`); default non-centred.
    initial_state
        Starting values as a :class:`~mlgibbs.GibbsState` with a leading chain axis, in the user's
        coordinates (as :func:`mlgibbs.sample` reports draws). ``None``
        (default): the same over-dispersed starts :func:`mlgibbs.sample` draws (``kernel.init``),
        which sit near the least-squares fit; NumPyro's own default (uniform on ``(-2, 2)`` in the
        unconstrained space) can start far out under flat priors. Ignored when ``init_strategy``
        is passed in ``nuts_kwargs``.
    extra_fields
        NumPyro state fields to record (see :func:`nuts_inference_data`).
    progress_bar
        Show NumPyro's progress bar.
    chain_method
        NumPyro's ``chain_method``: ``"vectorized"`` (default; one ``vmap``, where every chain waits
        for the longest trajectory of the iteration), ``"sequential"`` (one chain after another,
        often faster on a CPU) or ``"parallel"`` (one device per chain).
    **nuts_kwargs
        Passed to ``numpyro.infer.NUTS`` (``target_accept_prob``, ``max_tree_depth``,
        ``init_strategy``, ...).

    Returns
    -------
    numpyro.infer.MCMC
        The run; :func:`nuts_inference_data` turns it into InferenceData.

    Examples
    --------
    >>> import jax, mlgibbs as mg
    >>> from mlgibbs.numpyro import run_nuts, nuts_inference_data
    >>> model = mg.Model.from_formula("log_radon ~ floor + log_uranium + (1 | county)",
    ...                               mg.datasets.load_radon())
    >>> mcmc = run_nuts(jax.random.key(0), model, num_warmup=500, num_samples=500)  # doctest: +SKIP
    >>> idata = nuts_inference_data(mcmc, model)  # doctest: +SKIP
    """
    _import_numpyro()
    from numpyro.infer import MCMC, NUTS

    from mlgibbs.samplers import gibbs

    model_fn = numpyro_model(model, centered=centered)
    key_init, key_run = jax.random.split(rng_key)
    init_params = None
    if "init_strategy" not in nuts_kwargs:
        if initial_state is None:
            keys = jax.random.split(key_init, num_chains)
            initial_state = model.to_user(jax.vmap(gibbs(model).init, in_axes=(0, None))(keys, model.data))
        initial_state = jax.tree.map(lambda a: jnp.asarray(a, model.dtype), initial_state)
        init_params = _initial_params(model_fn, model, initial_state, centered)
        if num_chains == 1:
            init_params = jax.tree.map(lambda a: a[0], init_params)
    mcmc = MCMC(
        NUTS(model_fn, **nuts_kwargs),
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method=chain_method,
        progress_bar=progress_bar,
    )
    mcmc.run(key_run, init_params=init_params, extra_fields=tuple(extra_fields))
    return mcmc


def nuts_inference_data(mcmc, model, *, log_likelihood: bool = True):
    """InferenceData of a NUTS run, laid out as :func:`mlgibbs.sample`'s.

    The posterior holds ``alpha`` (dim ``model.group_name``, coords ``model.group_labels``),
    ``beta`` (dim ``predictor``), ``gamma`` (dim ``group_predictor``), ``sigma_y`` and
    ``sigma_alpha``; the non-centred ``eta`` is left out. ``sample_stats`` holds ``lp``, the log
    joint density of :func:`mlgibbs.log_joint` (the quantity ``mlgibbs.sample`` records, comparable
    across the two samplers; NumPyro's ``potential_energy`` lives on the unconstrained space and
    includes Jacobians), and the recorded NumPyro fields under ArviZ names (``diverging``,
    ``n_steps``, ``acceptance_rate``, ``energy``, ``potential_energy``, ``step_size``).

    Parameters
    ----------
    mcmc
        A finished ``numpyro.infer.MCMC`` run of :func:`numpyro_model` (e.g. from :func:`run_nuts`).
    model
        The :class:`~mlgibbs.Model` it was built from.
    log_likelihood
        Add the pointwise ``log_likelihood`` group (for ``az.loo``), as :func:`mlgibbs.sample` does.

    Returns
    -------
    InferenceData (ArviZ 0.x) or DataTree (ArviZ 1.x)
        Groups ``posterior``, ``sample_stats``, ``observed_data`` and, on request,
        ``log_likelihood``.
    """
    numpyro, _ = _import_numpyro()
    from mlgibbs.arviz import to_inference_data
    from mlgibbs.logdensity import log_joint, pointwise_log_likelihood

    samples = mcmc.get_samples(group_by_chain=True)

    def get(name):
        return np.asarray(samples[name], np.float64) if name in samples else None

    draws = GibbsState(alpha=get("alpha"), beta=get("beta"), gamma=get("gamma"),
                       sigma_y=get("sigma_y"), sigma_alpha=get("sigma_alpha"))
    kernel_draws = jax.tree.map(lambda a: jnp.asarray(a, model.dtype), model.to_kernel(draws))
    lp = jax.jit(jax.vmap(jax.vmap(lambda s: log_joint(s, model.data, model.priors))))(kernel_draws)
    stats = {"lp": np.asarray(lp, np.float64)}
    extra = mcmc.get_extra_fields(group_by_chain=True)
    for field, name in _SAMPLE_STATS.items():
        if field in extra:
            stats[name] = np.asarray(extra[field])

    loglik = None
    if log_likelihood:
        y = jnp.asarray(model.kernel_y, model.dtype)
        X = jnp.asarray(model.kernel_X, model.dtype)
        group = None if model.group_index is None else jnp.asarray(model.group_index)
        k = model.standardization.y_scale
        loglik = jax.lax.map(jax.vmap(lambda s: pointwise_log_likelihood(s, y, X, group, k)), kernel_draws)
        loglik = np.asarray(loglik, np.float64)

    attrs = {
        "inference_library": "numpyro",
        "inference_library_version": numpyro.__version__,
        "sampler": "nuts",
        "parametrization": "non-centred" if NONCENTRED_SITE in samples else "centred",
        "num_warmup": int(mcmc.num_warmup),
    }
    return to_inference_data(model, draws, sample_stats=stats, log_likelihood=loglik, attrs=attrs)

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

The general multilevel model (:class:`~mlgibbs.models.mixed.MixedModel`: varying slopes, nested and
crossed factors) has its own: :func:`mixed_numpyro_model` (the NumPyro model, non-centred, centred or
hierarchically centred), :func:`run_mixed_nuts` (NUTS through ``numpyro.infer.MCMC``),
:func:`run_mixed_nuts_compiled` (the same chains in one compiled program, much faster to start) and
:func:`mixed_nuts_draws` (the draws under :func:`mlgibbs.sample`'s names); see the comment block above
them for the sites and the parametrisation of covariance matrices.

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

import math
from typing import Any, Callable, NamedTuple

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


# =========================================================================== multilevel models
#
# The general model of :mod:`mlgibbs.models.mixed` (varying slopes, nested and crossed factors),
#
#     y_i ~ N(X_i beta + sum_f Z_{f,i} b_f[g_f(i)], sigma_y^2),   b_f[g] ~ N(e_k U_{f,g} gamma_f, Sigma_f),
#
# written from the raw arrays of a MixedModel in the user's coordinates (model.y, model.X, each
# factor's codes and Z, model.U), independently of the kernel's compressed rows and coordinates.
#
# Sites (``<f>`` is the factor's name, ``<coef>`` a varying coefficient's name):
#
# ``beta`` (p,), ``gamma_<f>`` (q_f,)   Flat / Normal priors per name (``model.priors["beta"]``)
# ``sigma_<f>[<coef>]``                 a one-column block: its standard deviation (scale prior)
# ``L_<f>[<c1>,<c2>,..]``               a correlated block: Cholesky factor of its covariance
# ``a_<f>[<c1>,<c2>,..]``               Huang & Wand's auxiliary variables a_k of that block
# ``z_<f>`` (J_f, d_f)                  non-centred effects, b_f = e_k U gamma_f + z L_f' (default)
# ``alpha_<f>`` (J_f, d_f)              the effects b_f: sampled when centred, else deterministic
# ``mu_<f>`` (J_f, d_f)                 hierarchically centred: b_f plus the parent's intercept
# ``cov_<f>`` (d_f, d_f)                deterministic: the block-diagonal Sigma_f = L_f L_f'
# ``sigma_y``, and the observed site named after the response (plate ``obs_id``).
#
# A correlated block's covariance Sigma = L L' is sampled through its Cholesky factor L (an
# ``ImproperUniform`` on lower-triangular matrices with a positive diagonal) plus a ``factor`` holding
# the inverse-Wishart log density of Sigma and the Jacobian of L -> L L',
# log |d Sigma / d L| = d log 2 + sum_i (d - i) log L_ii (i = 0..d-1), written out here (no NumPyro
# Wishart class needed; it agrees with NumPyro's InverseWishartCholesky where that exists). Huang &
# Wand's prior is its hierarchical form:
# a_k ~ InvGamma(1/2, 1/A_k^2), Sigma | a ~ IW(nu + d - 1, 2 nu diag(1/a)).

__all__ += ["mixed_numpyro_model", "mixed_nuts_draws", "run_mixed_nuts", "mixed_site_names", "MixedNutsRun",
            "run_mixed_nuts_compiled"]


def _block_label(factor, start: int, size: int) -> str:
    return f"{factor.name}[{','.join(factor.coef_names[start:start + size])}]"


def mixed_site_names(model) -> dict[str, list[str]]:
    """The NumPyro sample sites of :func:`mixed_numpyro_model` per kind (see the comment above it).

    Returns a dict with keys ``"sigma"`` (scalar blocks), ``"chol"`` (Cholesky factors of correlated
    blocks), ``"aux"`` (Huang & Wand auxiliaries), ``"effects"`` (per factor the name of its effects
    when non-centred, centred and hierarchically centred: ``(z_<f>, alpha_<f>, mu_<f>)``) and
    ``"coefficients"`` (``beta`` and ``gamma_<f>``).
    """
    from mlgibbs.priors import HuangWand

    out = {"sigma": [], "chol": [], "aux": [], "effects": [], "coefficients": []}
    if model.X.shape[1]:
        out["coefficients"].append("beta")
    for f, factor in enumerate(model.factors):
        if model.U[f].shape[1]:
            out["coefficients"].append(f"gamma_{factor.name}")
        for (start, size), prior in zip(factor.blocks, model.priors[factor.name]):
            label = _block_label(factor, start, size)
            if size == 1:
                out["sigma"].append(f"sigma_{label}")
            else:
                out["chol"].append(f"L_{label}")
                if isinstance(prior, HuangWand):
                    out["aux"].append(f"a_{label}")
        out["effects"].append((f"z_{factor.name}", f"alpha_{factor.name}", f"mu_{factor.name}"))
    return out


def _named_coefficient_prior(priors: dict, names) -> Flat | Normal:
    """One Flat/Normal prior for a block from per-name priors (``scale = inf`` where flat)."""
    names = list(names)
    per = [priors.get(name, Flat()) for name in names]
    if all(isinstance(pr, Flat) for pr in per):
        return Flat()
    loc, scale = [], []
    for name, pr in zip(names, per):
        if isinstance(pr, Flat):
            loc.append(0.0)
            scale.append(math.inf)
        elif isinstance(pr, Normal):
            loc.append(float(np.asarray(pr.loc)))
            scale.append(float(np.asarray(pr.scale)))
        else:
            raise TypeError(f"expected a Flat or Normal prior for fixed effect {name!r}, got {pr!r}")
    return Normal(np.asarray(loc), np.asarray(scale))


def _inverse_wishart_cholesky_log_prob(L, df, psi_chol):
    """Log density of ``L`` (lower triangular, positive diagonal) when ``L L' ~ IW(df, Psi)``,
    ``Psi = psi_chol psi_chol'``: the inverse-Wishart density of ``Sigma = L L'`` plus
    ``log |d Sigma / d L| = d log 2 + sum_i (d - i) log L_ii``."""
    from jax.scipy.linalg import solve_triangular
    from jax.scipy.special import multigammaln

    d = L.shape[-1]
    log_diag = jnp.log(jnp.diagonal(L))
    log_det_sigma = 2.0 * jnp.sum(log_diag)
    log_det_psi = 2.0 * jnp.sum(jnp.log(jnp.diagonal(psi_chol)))
    whitened = solve_triangular(L, psi_chol, lower=True)        # tr(Psi Sigma^-1) = |L^-1 C|_F^2
    log_iw = (0.5 * df * log_det_psi - 0.5 * df * d * math.log(2.0) - multigammaln(0.5 * df, d)
              - 0.5 * (df + d + 1) * log_det_sigma - 0.5 * jnp.sum(whitened**2))
    jacobian = d * math.log(2.0) + jnp.sum(jnp.arange(d, 0, -1, dtype=L.dtype) * log_diag)
    return log_iw + jacobian


def _sample_covariance_cholesky(label: str, prior, d: int, dtype) -> jax.Array:
    """Cholesky factor ``L`` of a correlated block under an InverseWishart or HuangWand prior."""
    numpyro, dist = _import_numpyro()
    from numpyro.distributions import constraints

    from mlgibbs.priors import HuangWand, InverseWishart

    L = numpyro.sample(f"L_{label}", dist.ImproperUniform(constraints.lower_cholesky, (), (d, d)))
    if isinstance(prior, InverseWishart):
        df = float(prior.df)
        psi_chol = jnp.asarray(np.linalg.cholesky(prior.scale_matrix(d)), dtype)
    elif isinstance(prior, HuangWand):
        A = jnp.asarray(prior.scales(d), dtype)
        a = numpyro.sample(f"a_{label}", dist.InverseGamma(jnp.full((d,), 0.5, dtype), 1.0 / A**2).to_event(1))
        df = float(prior.df) + d - 1
        psi_chol = jnp.diag(jnp.sqrt(2.0 * float(prior.df) / a))
    else:
        raise TypeError(f"expected a covariance prior (InverseWishart, HuangWand) for {label}, got {prior!r}")
    numpyro.factor(f"L_{label}_prior", _inverse_wishart_cholesky_log_prob(L, df, psi_chol))
    return L


def _centred_factors(model, centered) -> set[str]:
    names = [f.name for f in model.factors]
    if isinstance(centered, bool):
        return set(names) if centered else set()
    chosen = set(centered)
    unknown = chosen - set(names)
    if unknown:
        raise ValueError(f"centered names unknown factor(s) {sorted(unknown)}; the factors are {names}")
    return chosen


def _parents(model) -> dict[int, int]:
    """Factor -> the factor it is nested in (the previous one of its chain), where both have a
    varying intercept (the pairs hierarchical centring applies to)."""
    out = {}
    for chain in model.structure.chains:
        for parent, child in zip(chain[:-1], chain[1:]):
            if model.structure.intercepts[child] >= 0 and model.structure.intercepts[parent] >= 0:
                out[child] = parent
    return out


def _hierarchical_factors(model, hierarchical, centred: set[str]) -> dict[int, tuple[int, np.ndarray]]:
    """Factor -> (parent factor, parent level of each of its levels) for hierarchical centring."""
    names = [f.name for f in model.factors]
    parents = _parents(model)
    if isinstance(hierarchical, bool):
        chosen = {names[f] for f in parents if names[f] in centred} if hierarchical else set()
    else:
        chosen = set(hierarchical)
        bad = sorted(n for n in chosen if n not in names or names.index(n) not in parents)
        if bad:
            raise ValueError(f"hierarchical names {bad}, which are not factors nested in another factor with "
                             f"both a varying intercept; those are {[names[f] for f in parents]}")
        uncentred = sorted(chosen - centred)
        if uncentred:
            raise ValueError(f"hierarchical centring needs the factor(s) {uncentred} centred too (centered=...)")
    out = {}
    for f in parents:
        if names[f] in chosen:
            g = parents[f]
            level = np.zeros(len(model.factors[f].labels), np.int64)
            level[np.asarray(model.factors[f].codes)] = np.asarray(model.factors[g].codes)
            out[f] = (g, level)
    return out


def mixed_numpyro_model(model, centered=False, hierarchical=False) -> Callable[[], None]:
    """Write a :class:`~mlgibbs.models.mixed.MixedModel` as a NumPyro model function.

    The same posterior as :func:`mlgibbs.sample` targets, in the user's coordinates and from the raw
    data (``model.y``, ``model.X``, each factor's ``codes`` and ``Z``, ``model.U``), with the priors of
    ``model.priors``: fixed effects (``beta``, ``gamma_<f>``) Flat -> ``ImproperUniform`` over the
    reals, Normal -> Normal; scalar blocks and ``sigma_y`` through :func:`scale_distribution`; the
    binomial-type families (:mod:`mlgibbs.families`) with NumPyro's ``Binomial(logits=eta)`` (logit) or a
    factor of the probit log likelihood;
    correlated blocks through their Cholesky factor with the inverse-Wishart density and Jacobian
    (Huang & Wand's prior through its auxiliaries ``a_k``). Site names: see :func:`mixed_site_names`.

    Parameters
    ----------
    model
        A :class:`~mlgibbs.models.mixed.MixedModel`.
    centered
        ``False`` (default): every factor non-centred, ``z_<f> ~ N(0, I)`` and
        ``alpha_<f> = e_k U_f gamma_f + z_<f> L_f'`` deterministic; ``True``: every factor centred,
        ``alpha_<f> ~ N(e_k U_f gamma_f, Sigma_f)`` sampled; or a collection of factor names to centre.
    hierarchical
        Hierarchical centring (Gelfand, Sahu & Carlin 1995) of centred factors nested in another
        factor, both with a varying intercept: instead of ``alpha_<f>``, the site ``mu_<f>`` holds
        the effects plus the parent's intercept on the intercept coordinate,
        ``mu_<f>[g] = alpha_<f>[g] + e_k alpha_<parent>[parent(g), k_parent] ~ N(that shifted mean,
        Sigma_f)``, and ``alpha_<f>`` is deterministic (a shift: Jacobian 1, the same posterior).
        Where the data inform the fine levels well (Pastes' casks, radon's counties) this removes the
        ridge between a parent's effect and the mean of its children. ``True``: every centred nested
        factor; ``False`` (default): none; or a collection of factor names.

    Returns
    -------
    callable
        The NumPyro model, ``model_fn(columns=None, weights=None)``: with ``columns`` (design column name ->
        values, possibly functions of other sites of an enclosing model) the design
        :meth:`~mlgibbs.models.mixed.MixedModel.design_with` those columns replaced; with ``weights``
        (Gaussian) ``y_i ~ N(mu_i, sigma_y^2 / w_i)``.
    """
    numpyro, dist = _import_numpyro()
    dtype = model.dtype
    priors = model.priors
    centred = _centred_factors(model, centered)
    nested = _hierarchical_factors(model, hierarchical, centred)
    sites = mixed_site_names(model)
    taken = {"beta", "sigma_y", "r", "obs_id", *sites["sigma"], *sites["chol"], *sites["aux"],
             *sites["coefficients"]}
    for f in model.factors:
        taken |= {f"z_{f.name}", f"alpha_{f.name}", f"mu_{f.name}", f"cov_{f.name}"}
    if model.response in taken:
        raise ValueError(f"the response may not be named {model.response!r}: it is a NumPyro site name "
                         "of the parameters")
    from mlgibbs.families import log_prob

    family = model.family
    y = jnp.asarray(model.y, dtype)
    trials = None if model.trials is None else jnp.asarray(model.trials, dtype)
    X = jnp.asarray(model.X, dtype)
    n, p = X.shape
    beta_prior = _named_coefficient_prior(priors["beta"], model.predictors)
    spec = []
    order = [f for chain in model.structure.chains for f in chain]  # parents before children
    for f in order:
        factor = model.factors[f]
        k = int(model.structure.intercepts[f])
        U = np.asarray(model.U[f], np.float64)
        if U.shape[1] and k < 0:
            raise ValueError(f"factor {factor.name!r} has group-level predictors but no varying intercept")
        parent = None
        if f in nested:
            g, level = nested[f]
            parent = (g, int(model.structure.intercepts[g]), jnp.asarray(level, jnp.int32))
        spec.append(dict(
            index=f, name=factor.name, factor=factor, k=k, J=len(factor.labels), d=factor.Z.shape[1],
            codes=jnp.asarray(np.asarray(factor.codes), jnp.int32), Z=jnp.asarray(factor.Z, dtype),
            U=jnp.asarray(U, dtype),
            gamma_prior=_named_coefficient_prior(priors["beta"], model.group_predictors[f]),
            blocks=tuple(zip(factor.blocks, priors[factor.name])), centred=factor.name in centred,
            parent=parent))

    def model_fn(columns=None, weights=None) -> None:
        design, Zs = (X, None) if columns is None else model.design_with(columns)
        if weights is not None and not family.gaussian:
            raise ValueError(f"weights are for the Gaussian family; this model's is {family.name!r}")
        mean = jnp.zeros((n,), dtype)
        if p > 0:
            beta = _sample_coefficients("beta", beta_prior, p, dtype)
            mean = mean + design @ beta
        alphas = {}
        for s in spec:
            name, J, d = s["name"], s["J"], s["d"]
            centre = jnp.zeros((J, d), dtype)
            q = s["U"].shape[1]
            if q > 0:
                gamma = _sample_coefficients(f"gamma_{name}", s["gamma_prior"], q, dtype)
                centre = centre.at[:, s["k"]].set(s["U"] @ gamma)
            L = jnp.zeros((d, d), dtype)
            for (start, size), prior in s["blocks"]:
                label = _block_label(s["factor"], start, size)
                if size == 1:
                    sd = numpyro.sample(f"sigma_{label}", scale_distribution(prior))
                    L = L.at[start, start].set(sd)
                else:
                    block = _sample_covariance_cholesky(label, prior, size, dtype)
                    L = L.at[start:start + size, start:start + size].set(block)
            numpyro.deterministic(f"cov_{name}", L @ L.T)
            if s["parent"] is not None:
                g, k_g, level = s["parent"]
                shift = jnp.zeros((J, d), dtype).at[:, s["k"]].set(alphas[g][level, k_g])
                mu = numpyro.sample(f"mu_{name}",
                                    dist.MultivariateNormal(centre + shift, scale_tril=L).to_event(1))
                alpha = numpyro.deterministic(f"alpha_{name}", mu - shift)
            elif s["centred"]:
                alpha = numpyro.sample(f"alpha_{name}",
                                       dist.MultivariateNormal(centre, scale_tril=L).to_event(1))
            else:
                z = numpyro.sample(f"z_{name}", dist.Normal(jnp.zeros((J, d), dtype), 1.0).to_event(2))
                alpha = numpyro.deterministic(f"alpha_{name}", centre + z @ L.T)
            alphas[s["index"]] = alpha
            Z = s["Z"] if Zs is None else Zs[s["index"]]
            mean = mean + jnp.sum(Z * alpha[s["codes"]], axis=1)
        if family.gaussian:
            sigma_y = numpyro.sample("sigma_y", scale_distribution(priors["sigma_y"]))
            scale = sigma_y if weights is None else sigma_y / jnp.sqrt(jnp.asarray(weights, dtype))
            with numpyro.plate("obs_id", n):
                numpyro.sample(model.response, dist.Normal(mean, scale), obs=y)
        elif family.dispersion:  # NB2: mean e^eta, concentration r
            r = numpyro.sample("r", _dispersion_distribution(priors["r"], dist))
            numpyro.factor(model.response, jnp.sum(log_prob(family, y, trials, mean, r)))
        elif family.name == "poisson":
            with numpyro.plate("obs_id", n):
                numpyro.sample(model.response, dist.Poisson(jnp.exp(mean)), obs=y)
        elif family.link == "logit":
            with numpyro.plate("obs_id", n):
                numpyro.sample(model.response, dist.Binomial(total_count=trials, logits=mean), obs=y)
        else:  # probit: the log probabilities through log_ndtr (finite gradients at any eta)
            numpyro.factor(model.response, jnp.sum(log_prob(family, y, trials, mean)))

    return model_fn


def _mixed_constrained_params(model, user: dict, centered=False, hierarchical=False) -> dict:
    """Constrained values of every sample site of :func:`mixed_numpyro_model` from user parameters
    (``beta``, ``sigma_y``, ``alpha_<f>``, ``gamma_<f>``, ``cov_<f>`` as :meth:`MixedModel.to_user`
    returns them, any leading axes). Huang & Wand auxiliaries are set to their conditional mode
    given ``Sigma``."""
    from mlgibbs.priors import HuangWand

    centred = _centred_factors(model, centered)
    nested = _hierarchical_factors(model, hierarchical, centred)
    params = {"sigma_y": np.asarray(user["sigma_y"], np.float64)} if model.family.gaussian else {}
    if model.family.dispersion:
        params["r"] = np.asarray(user["r"], np.float64)
    if model.X.shape[1]:
        params["beta"] = np.asarray(user["beta"], np.float64)
    for f, factor in enumerate(model.factors):
        name = factor.name
        cov = np.asarray(user[f"cov_{name}"], np.float64)
        alpha = np.asarray(user[f"alpha_{name}"], np.float64)
        L = np.zeros_like(cov)
        for (start, size), prior in zip(factor.blocks, model.priors[name]):
            label = _block_label(factor, start, size)
            sl = slice(start, start + size)
            if size == 1:
                sd = np.sqrt(cov[..., start, start])
                params[f"sigma_{label}"] = sd
                L[..., start, start] = sd
                continue
            block = np.linalg.cholesky(cov[..., sl, sl])
            params[f"L_{label}"] = block
            L[..., sl, sl] = block
            if isinstance(prior, HuangWand):
                nu, A = float(prior.df), prior.scales(size)
                precision_diag = np.diagonal(np.linalg.inv(cov[..., sl, sl]), axis1=-2, axis2=-1)
                rate = nu * precision_diag + 1.0 / A**2
                params[f"a_{label}"] = rate / (0.5 * (nu + size) + 1.0)    # mode of InvGamma
        centre = np.zeros_like(alpha)
        if model.U[f].shape[1]:
            gamma = np.asarray(user[f"gamma_{name}"], np.float64)
            params[f"gamma_{name}"] = gamma
            centre[..., model.structure.intercepts[f]] = gamma @ np.asarray(model.U[f], np.float64).T
        if f in nested:
            g, level = nested[f]
            parent = np.asarray(user[f"alpha_{model.factors[g].name}"], np.float64)
            mu = alpha.copy()
            mu[..., model.structure.intercepts[f]] += parent[..., level, model.structure.intercepts[g]]
            params[f"mu_{name}"] = mu
        elif name in centred:
            params[f"alpha_{name}"] = alpha
        else:  # z L' = alpha - centre
            dev = np.swapaxes(alpha - centre, -1, -2)
            params[f"z_{name}"] = np.swapaxes(np.linalg.solve(L, dev), -1, -2)
    return params


class MixedNutsRun(NamedTuple):
    """The draws of :func:`run_mixed_nuts_compiled`, with the two accessors of ``numpyro.infer.MCMC``.

    Attributes
    ----------
    samples
        Site name -> array ``(chain, draw, ...)``: every sample site of :func:`mixed_numpyro_model` and
        its deterministic sites (``alpha_<f>``, ``cov_<f>``), constrained.
    extra_fields
        NumPyro state field -> array ``(chain, draw)``: ``diverging``, ``num_steps``, ``accept_prob``,
        ``energy``, ``potential_energy``, ``adapt_state.step_size``.
    num_warmup
        Adaptation steps per chain (not kept).
    """

    samples: dict
    extra_fields: dict
    num_warmup: int

    def get_samples(self, group_by_chain: bool = False) -> dict:
        if group_by_chain:
            return dict(self.samples)
        return {k: v.reshape(-1, *v.shape[2:]) for k, v in self.samples.items()}

    def get_extra_fields(self, group_by_chain: bool = False) -> dict:
        if group_by_chain:
            return dict(self.extra_fields)
        return {k: v.reshape(-1, *v.shape[2:]) for k, v in self.extra_fields.items()}


def run_mixed_nuts(
    model,
    rng_key: jax.Array,
    num_chains: int = 4,
    num_warmup: int = 1000,
    num_draws: int = 1000,
    centered=False,
    hierarchical=False,
    *,
    initial_values: dict | None = None,
    extra_fields: tuple[str, ...] = tuple(_SAMPLE_STATS),
    progress_bar: bool = False,
    chain_method: str = "vectorized",
    **nuts_kwargs: Any,
):
    """Run NumPyro's NUTS on :func:`mixed_numpyro_model`.

    Parameters
    ----------
    model
        A :class:`~mlgibbs.models.mixed.MixedModel`.
    rng_key
        PRNG key.
    num_chains, num_warmup, num_draws
        Chains, adaptation steps and kept draws per chain.
    centered, hierarchical
        Parametrisation of the effects (see :func:`mixed_numpyro_model`); default non-centred.
    initial_values
        Starting points in the user's coordinates, each with a leading chain axis: ``beta``,
        ``sigma_y`` and per factor ``alpha_<f>``, ``gamma_<f>``, ``cov_<f>`` (as
        :meth:`MixedModel.to_user` returns them). ``None`` (default): the over-dispersed starts of
        :func:`mlgibbs.sample` (the multilevel kernel's ``init``). Ignored when ``init_strategy`` is
        passed in ``nuts_kwargs``.
    extra_fields, progress_bar, chain_method, **nuts_kwargs
        As in :func:`run_nuts`.

    Returns
    -------
    numpyro.infer.MCMC
        The run; :func:`mixed_nuts_draws` of ``mcmc.get_samples(group_by_chain=True)`` gives the
        draws under :func:`mlgibbs.sample`'s names.
    """
    _import_numpyro()
    from numpyro.infer import MCMC, NUTS
    from numpyro.infer.util import unconstrain_fn

    model_fn = mixed_numpyro_model(model, centered=centered, hierarchical=hierarchical)
    key_init, key_run = jax.random.split(rng_key)
    init_params = None
    if "init_strategy" not in nuts_kwargs:
        if initial_values is None:
            from mlgibbs.samplers.mixed import mixed_kernel

            kernel = mixed_kernel(model.structure, model.kernel_priors)
            keys = jax.random.split(key_init, num_chains)
            initial_values = model.to_user(jax.vmap(kernel.init, in_axes=(0, None))(keys, model.data))
        params = _mixed_constrained_params(model, initial_values, centered, hierarchical)
        params = {k: jnp.asarray(v, model.dtype) for k, v in params.items()}
        init_params = jax.vmap(lambda prm: unconstrain_fn(model_fn, (), {}, prm))(params)
        if num_chains == 1:
            init_params = jax.tree.map(lambda a: a[0], init_params)
    mcmc = MCMC(
        NUTS(model_fn, **nuts_kwargs),
        num_warmup=num_warmup,
        num_samples=num_draws,
        num_chains=num_chains,
        chain_method=chain_method,
        progress_bar=progress_bar,
    )
    mcmc.run(key_run, init_params=init_params, extra_fields=tuple(extra_fields))
    return mcmc


def run_mixed_nuts_compiled(
    model,
    rng_key: jax.Array,
    num_chains: int = 4,
    num_warmup: int = 1000,
    num_draws: int = 1000,
    centered=False,
    hierarchical=False,
    *,
    initial_values: dict | None = None,
    chain_method: str = "sequential",
    dense_mass: bool = False,
    target_accept_prob: float = 0.8,
    max_tree_depth: int = 10,
) -> MixedNutsRun:
    """Run NUTS on :func:`mixed_numpyro_model`, all chains in one compiled program.

    The same chains as :func:`run_mixed_nuts` (same model, starts and NUTS settings), faster to start:
    NumPyro's NUTS kernel (``numpyro.infer.hmc.hmc(potential_fn, algo="NUTS")``: the kernel, the
    dual-averaging step size and the windowed mass-matrix adaptation of ``MCMC(NUTS(model))``), with
    the initialisation, warmup and sampling of every chain traced into one ``jax.jit`` program.
    ``numpyro.infer.MCMC`` initialises eagerly, op by op (and ``vmap``s the trajectory loops), which on
    a CPU costs several times the run itself for these models (two cores, Pastes, 4 x 2,000
    iterations, compilation included: about 20 s through ``MCMC``, 5 s here); the chains are the same
    Markov chains (not the same random numbers). :func:`run_mixed_nuts` returns NumPyro's ``MCMC``
    object instead (to continue a run, or for NumPyro's own tools).

    Parameters
    ----------
    model
        A :class:`~mlgibbs.models.mixed.MixedModel`.
    rng_key
        PRNG key.
    num_chains, num_warmup, num_draws
        Chains, adaptation steps and kept draws per chain.
    centered, hierarchical
        Parametrisation of the effects (see :func:`mixed_numpyro_model`); default non-centred.
    initial_values
        Starting points in the user's coordinates, each with a leading chain axis: ``beta``,
        ``sigma_y`` and per factor ``alpha_<f>``, ``gamma_<f>``, ``cov_<f>`` (as
        :meth:`MixedModel.to_user` returns them). ``None`` (default): the over-dispersed starts of
        :func:`mlgibbs.sample` (the multilevel kernel's ``init``).
    chain_method
        ``"sequential"`` (default: one chain after another inside the program, ``lax.map``; fastest to
        compile and, on a CPU, to run) or ``"vectorized"`` (``vmap``: every chain waits for the longest
        trajectory of each iteration).
    dense_mass, target_accept_prob, max_tree_depth
        As for ``numpyro.infer.NUTS`` (``dense_mass`` a bool here).

    Returns
    -------
    MixedNutsRun
        ``run.get_samples(group_by_chain=True)`` and ``run.get_extra_fields(group_by_chain=True)`` as
        for an ``MCMC`` run; :func:`mixed_nuts_draws` of the samples gives the draws under
        :func:`mlgibbs.sample`'s names.
    """
    _import_numpyro()
    from numpyro.infer.hmc import hmc
    from numpyro.infer.util import constrain_fn, potential_energy, unconstrain_fn

    if chain_method not in ("sequential", "vectorized"):
        raise ValueError(f"chain_method must be 'sequential' or 'vectorized', got {chain_method!r}")
    num_warmup, num_draws = int(num_warmup), int(num_draws)
    model_fn = mixed_numpyro_model(model, centered=centered, hierarchical=hierarchical)
    key_init, key_run = jax.random.split(rng_key)
    if initial_values is None:
        from mlgibbs.samplers.mixed import mixed_kernel

        kernel = mixed_kernel(model.structure, model.kernel_priors)
        keys = jax.random.split(key_init, num_chains)
        initial_values = model.to_user(jax.vmap(kernel.init, in_axes=(0, None))(keys, model.data))
    params = _mixed_constrained_params(model, initial_values, centered, hierarchical)
    params = {k: jnp.asarray(v, model.dtype) for k, v in params.items()}
    bad = [k for k, v in params.items() if v.shape[:1] != (num_chains,)]
    if bad:
        raise ValueError(f"initial_values need a leading axis of num_chains = {num_chains}: {bad}")

    init_kernel, sample_kernel = hmc(lambda u: potential_energy(model_fn, (), {}, u), algo="NUTS")

    def fields(state):
        return {"diverging": state.diverging, "num_steps": state.num_steps,
                "accept_prob": state.accept_prob, "energy": state.energy,
                "potential_energy": state.potential_energy,
                "adapt_state.step_size": state.adapt_state.step_size}

    def one_chain(key, start):
        state = init_kernel(unconstrain_fn(model_fn, (), {}, start), num_warmup, dense_mass=bool(dense_mass),
                            target_accept_prob=target_accept_prob, max_tree_depth=max_tree_depth,
                            rng_key=key)
        state = jax.lax.fori_loop(0, num_warmup, lambda i, s: sample_kernel(s), state)

        def step(s, _):
            s = sample_kernel(s)
            return s, (constrain_fn(model_fn, (), {}, s.z, return_deterministic=True), fields(s))

        _, out = jax.lax.scan(step, state, None, length=num_draws)
        return out

    keys = jax.random.split(key_run, num_chains)
    if chain_method == "vectorized":
        program = jax.jit(jax.vmap(one_chain))
    else:
        program = jax.jit(lambda k, p: jax.lax.map(lambda args: one_chain(*args), (k, p)))
    samples, extra = jax.device_get(program(keys, params))
    return MixedNutsRun(samples={k: np.asarray(v) for k, v in samples.items()},
                        extra_fields={k: np.asarray(v) for k, v in extra.items()}, num_warmup=num_warmup)


def mixed_nuts_draws(model, mcmc_samples: dict) -> dict[str, np.ndarray]:
    """The draws of a :func:`mixed_numpyro_model` run under :func:`mlgibbs.sample`'s names.

    Parameters
    ----------
    model
        The :class:`~mlgibbs.models.mixed.MixedModel`.
    mcmc_samples
        ``get_samples(group_by_chain=True)`` of a :func:`run_mixed_nuts` or
        :func:`run_mixed_nuts_compiled` run (or of any ``MCMC`` run of :func:`mixed_numpyro_model`, or
        any dict of the model's sites with the same leading axes).

    Returns
    -------
    dict
        Name -> float64 array ``(chain, draw, ...)`` laid out as the posterior of
        :func:`mlgibbs.sample`: ``beta`` (``predictor``; absent without fixed effects), and per factor
        ``alpha_<f>`` (``(J_f, d_f)``, the effects including the group-level mean on the intercept
        coordinate), ``gamma_<f>`` (only when ``q_f > 0``), ``sigma_<f>`` (``sqrt(diag Sigma_f)``),
        ``corr_<f>`` (``(d_f, d_f)``, only for a factor with a correlated block); ``sigma_y``.
    """
    def get(name):
        return np.asarray(mcmc_samples[name], np.float64)

    out = {}
    if model.X.shape[1]:
        out["beta"] = get("beta")
    for f, factor in enumerate(model.factors):
        name = factor.name
        out[f"alpha_{name}"] = get(f"alpha_{name}")
        if model.U[f].shape[1]:
            out[f"gamma_{name}"] = get(f"gamma_{name}")
        cov = get(f"cov_{name}")
        sd = np.sqrt(np.diagonal(cov, axis1=-2, axis2=-1))
        out[f"sigma_{name}"] = sd
        if any(size > 1 for _, size in factor.blocks):
            out[f"corr_{name}"] = cov / (sd[..., :, None] * sd[..., None, :])
    if model.family.gaussian:
        out["sigma_y"] = get("sigma_y")
    if model.family.dispersion:
        out["r"] = get("r")
    return out


def _dispersion_distribution(prior, dist):
    """The NumPyro distribution of the negative binomial's ``r`` (a :class:`~mlgibbs.priors.Gamma`)."""
    from mlgibbs.priors import Gamma

    if isinstance(prior, Gamma):
        return dist.Gamma(prior.concentration, prior.rate)
    raise TypeError(f"no NumPyro distribution for the prior {prior!r} of r; use mlgibbs.priors.Gamma")


# =========================================================================== composition
from mlgibbs.numpyro_block import MultilevelBlock  # noqa: E402  (it uses the model writer above)

__all__ += ["MultilevelBlock"]

r"""The multilevel block of a larger model, updated by mlgibbs' Gibbs sweeps inside NumPyro or a user's loop.

A NumPyro model often holds a multilevel regression whose design depends on a few other parameters
``phi``: a change point (``max(Days - tau, 0)``), a transformed predictor (``x^lambda``), precision weights
of a scale mixture (a Student-t outcome). Given ``phi`` the rest is exactly the Gaussian multilevel model
of :class:`~mlgibbs.models.mixed.MixedModel`,

.. math::

    y_i \sim \mathcal N\big(X_i(\phi)\beta + \textstyle\sum_f Z_{f,i}(\phi)\, b_f[g_f(i)],\
    \sigma_y^2 / w_i(\phi)\big),\qquad b_f[g] \sim \mathcal N(e_k U_{f,g}\gamma_f,\ \Sigma_f),

so HMC-within-Gibbs (NumPyro's ``HMCGibbs``, or ``Gibbs`` with a ``CustomGibbs`` block) can move ``phi``
by NUTS and hand the block ``theta = (beta, gamma, b, Sigma, sigma_y)`` to mlgibbs: one call of the
``gibbs_fn`` is ``num_sweeps`` sweeps of the model's kernel on the data at the current ``phi``, a Markov
kernel that leaves ``p(theta | phi, y)`` invariant (exact Gaussian blocks, scales drawn given the
locations or collapsed), which is what HMC-within-Gibbs needs for the composition to target
``p(theta, phi | y)``.

:class:`MultilevelBlock` holds

* the block's NumPyro sites: calling the block inside a NumPyro model samples them with the priors the
  kernel targets (:func:`mlgibbs.numpyro.mixed_numpyro_model`, centred: ``alpha_<f>`` are the effects)
  and observes the response; :attr:`MultilevelBlock.sites` lists them for ``gibbs_sites``;
* :meth:`MultilevelBlock.gibbs_fn`, the update NumPyro calls, with ``phi`` entering through user functions
  of the conditioning sites that return the replaced design columns and weights;
* the pure-JAX pieces for a user's own loop (BlackJAX style): :meth:`~MultilevelBlock.data` (the kernel's
  data pytree at given columns), :attr:`~MultilevelBlock.kernel` (``init``, ``step``),
  :meth:`~MultilevelBlock.log_likelihood`, and the maps between the kernel's state and the sites.

The template model (built once on the host from a data frame at some value of ``phi``) fixes the structure,
the priors and the kernel's coordinates; the columns' values are traced. Rows are not compressed into
cells (the pseudo-rows of a cell depend on the design), so a sweep costs the ``n`` observations.

Huang & Wand's covariance prior has auxiliary sites ``a_<label>`` in the NumPyro model; the kernel draws
``Sigma`` with them integrated out, and the update then redraws them from their conditional
``a_k | Sigma ~ InvGamma((nu + d)/2, nu (Sigma^{-1})_kk + 1/A_k^2)``, so the joint of both stays invariant.

References
----------
Gelman, A. and Hill, J. (2007). *Data Analysis Using Regression and Multilevel/Hierarchical Models*, ch. 18.
Huang, A. and Wand, M. P. (2013). Simple marginally noninformative prior distributions for covariance
matrices. *Bayesian Analysis* 8(2), 439-452.
van Dyk, D. A. and Park, T. (2008). Partially collapsed Gibbs samplers. *JASA* 103, 790-796.
"""

from __future__ import annotations

from typing import Callable, Mapping

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from mlgibbs.base import SamplingAlgorithm
from mlgibbs.models.mixed_data import MixedData
from mlgibbs.priors import HuangWand
from mlgibbs.samplers.mixed import MixedState, fitted_values, mixed_kernel

__all__ = ["MultilevelBlock"]

SiteFunction = Callable[[Mapping[str, jax.Array]], Mapping[str, jax.Array]]


def _gaussian_log_density(state: MixedState, data: MixedData, resid: jax.Array) -> jax.Array:
    """``sum_i log N(resid_i | 0, sigma_y^2)`` over the kernel's rows plus the floor no parameter removes, in the
    user's units (the rows are in units of ``data.y_scale``)."""
    n = data.num_obs
    return (-0.5 * (data.rss_floor + jnp.sum(resid**2)) / state.sigma_y**2
            - n * jnp.log(state.sigma_y * data.y_scale) - 0.5 * n * jnp.log(2.0 * jnp.pi))


class MultilevelBlock:
    """The multilevel block of a larger model, for NumPyro's ``HMCGibbs`` / ``Gibbs`` or a user's loop.

    Parameters
    ----------
    model
        A Gaussian :class:`~mlgibbs.models.mixed.MixedModel` (``mg.MixedModel.from_formula``, or
        ``mg.Model.from_formula`` with a varying slope or several factors), built on the data at any value of the
        other parameters where the design has full rank: its structure, priors and coordinates are kept,
        the columns given later replace its design columns of the same names.
    num_sweeps
        Sweeps of the kernel per call of the Gibbs update (1: one sweep between NUTS moves).
    sampler
        The kernel (:data:`mlgibbs.run_mixed.MIXED_SAMPLERS`); default the model's default.

    Examples
    --------
    A change point in sleepstudy's reaction times (the deprivation starts after the baseline days)::

        import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
        from numpyro.infer import MCMC, NUTS, HMCGibbs
        import mlgibbs as mg
        from mlgibbs.numpyro import MultilevelBlock

        df = mg.datasets.load_sleepstudy().assign(after=lambda d: (d.Days - 2.0).clip(lower=0))
        block = MultilevelBlock(mg.Model.from_formula("Reaction ~ after + (1 + after | Subject)", df))
        days = jnp.asarray(df.Days.to_numpy(), jnp.float32)
        after = lambda sites: {"after": jnp.maximum(days - sites["tau"], 0.0)}

        def model():
            tau = numpyro.sample("tau", dist.Uniform(0.0, 8.0))
            block(columns=after({"tau": tau}))

        kernel = HMCGibbs(NUTS(model), gibbs_fn=block.gibbs_fn(columns=after), gibbs_sites=block.sites)
        mcmc = MCMC(kernel, num_warmup=500, num_samples=1000)
        mcmc.run(jax.random.key(0))
    """

    def __init__(self, model, *, num_sweeps: int = 1, sampler: str | None = None):
        from mlgibbs.models.mixed import MixedModel
        from mlgibbs.numpyro import mixed_numpyro_model, mixed_site_names
        from mlgibbs.run_mixed import mixed_sampler_structure

        if not isinstance(model, MixedModel):
            raise TypeError(f"expected a MixedModel, got {type(model).__name__}; build it with "
                            "mg.MixedModel.from_formula(formula, data), which takes a single varying intercept "
                            "too")
        if not model.family.gaussian:
            raise NotImplementedError(f"MultilevelBlock is for the Gaussian family; this model's family is "
                                      f"{model.family.name!r}")
        if int(num_sweeps) < 1:
            raise ValueError(f"num_sweeps must be at least 1, got {num_sweeps}")
        self.model = model
        self.num_sweeps = int(num_sweeps)
        structure, self.sampler = mixed_sampler_structure(model, sampler)
        self.structure = structure
        #: The kernel ``(init, step)`` on :class:`~mlgibbs.models.mixed_data.MixedData` (:meth:`data`).
        self.kernel: SamplingAlgorithm = mixed_kernel(structure, model.kernel_priors)
        self._numpyro_model = mixed_numpyro_model(model, centered=True)
        names = mixed_site_names(model)
        #: The block's NumPyro sample sites (``gibbs_sites``).
        self.sites: tuple[str, ...] = tuple(
            ["sigma_y", *names["coefficients"], *names["sigma"], *names["chol"], *names["aux"],
             *(centred for _, centred, _ in names["effects"])])
        self._blocks = []   # per factor: (name, d, [(start, size, label, prior)])
        from mlgibbs.numpyro import _block_label

        for factor in model.factors:
            blocks = [(start, size, _block_label(factor, start, size), prior)
                      for (start, size), prior in zip(factor.blocks, model.priors[factor.name])]
            self._blocks.append((factor.name, factor.Z.shape[1], blocks))

    # ------------------------------------------------------------------ inside a NumPyro model
    def __call__(self, columns: Mapping[str, ArrayLike] | None = None, weights: ArrayLike | None = None) -> None:
        """Sample the block's sites and observe the response, inside a NumPyro model.

        ``columns``: design column name -> its values (functions of the enclosing model's sites);
        ``weights``: precision weights ``w_i`` (``y_i ~ N(mu_i, sigma_y^2 / w_i)``).
        """
        self._numpyro_model(columns, weights)

    # ------------------------------------------------------------------ pure JAX pieces
    def data(self, columns: Mapping[str, ArrayLike] | None = None, weights: ArrayLike | None = None) -> MixedData:
        """The kernel's data pytree at these design columns and weights
        (:meth:`~mlgibbs.models.mixed.MixedModel.data_for_design`)."""
        return self.model.data_for_design(columns, weights=weights)

    def sweep(self, rng_key: jax.Array, state: MixedState, data: MixedData) -> MixedState:
        """:attr:`num_sweeps` steps of the kernel."""
        keys = jax.random.split(rng_key, self.num_sweeps)
        state, _ = jax.lax.scan(lambda s, k: (self.kernel.step(k, s, data), None), state, keys)
        return state

    def log_likelihood(self, state: MixedState, data: MixedData) -> jax.Array:
        r"""``log p(y | theta, phi)`` of a kernel state on :meth:`data`'s rows, the user's units:
        :math:`-\tfrac12 \sum_i w_i (y_i - \mu_i)^2 / \sigma_y^2 - n \log \sigma_y - \tfrac n2 \log 2\pi`
        (plus :math:`\tfrac12 \sum_i \log w_i` with weights, which is left out)."""
        t_hat = fitted_values(self.structure, data.W, data.codes, state.beta, state.b)
        return _gaussian_log_density(state, data, data.t - t_hat)

    def log_marginal_likelihood(self, state: MixedState, data: MixedData) -> jax.Array:
        r"""``log p(y | phi, scales, ...)`` with the locations of the model's first chain of factors
        (``beta``, ``gamma`` and those factors' effects) integrated out, up to a constant free of ``phi``.

        The target of a partially collapsed move of ``phi`` in a user's loop (van Dyk & Park 2008): a
        Metropolis-Hastings step on ``phi`` with this likelihood, then :attr:`kernel`'s ``step`` (whose first
        block redraws those locations given ``phi`` and the scales), leaves the joint posterior invariant
        and does not condition ``phi`` on the locations, which a change point is strongly coupled to.
        Effects of factors outside the first chain (crossed factors) are conditioned on. The terms left out
        depend on the scales only (the effects' prior normalizers, ``(1/2) sum log w_i``).
        """
        from mlgibbs.conditionals.tree import chain_log_normalizer
        from mlgibbs.samplers.mixed import _chain_inputs, _row_effects, effect_precisions

        s = self.structure
        precisions = effect_precisions(state, data)
        inputs = _chain_inputs(s, 0, state, data, precisions, None, None)
        outside = tuple(f for f in range(s.num_factors) if f not in s.chains[0])
        resid = data.t - _row_effects(s, data, state.b, outside) if outside else data.t
        return chain_log_normalizer(*inputs) + _gaussian_log_density(state, data, resid)

    def to_state(self, sites: Mapping[str, ArrayLike]) -> MixedState:
        """The kernel state of the block's site values (constrained, the user's units)."""
        dtype = self.model.dtype
        values = {"sigma_y": sites["sigma_y"],
                  "beta": sites["beta"] if "beta" in sites else jnp.zeros((0,), dtype)}
        for (name, d, blocks), U in zip(self._blocks, self.model.U):
            cov = jnp.zeros((d, d), dtype)
            for start, size, label, _ in blocks:
                if size == 1:
                    cov = cov.at[start, start].set(jnp.asarray(sites[f"sigma_{label}"], dtype) ** 2)
                else:
                    L = jnp.asarray(sites[f"L_{label}"], dtype)
                    cov = cov.at[start:start + size, start:start + size].set(L @ L.T)
            values[f"cov_{name}"] = cov
            values[f"alpha_{name}"] = sites[f"alpha_{name}"]
            values[f"gamma_{name}"] = sites.get(f"gamma_{name}", jnp.zeros((U.shape[1],), dtype))
        return self.model.to_kernel(values, xp=jnp)

    def to_sites(self, rng_key: jax.Array, state: MixedState) -> dict[str, jax.Array]:
        """The block's site values of a kernel state; Huang & Wand auxiliaries drawn from their conditional
        given ``Sigma`` (module docstring), with ``rng_key``."""
        user = self.model.to_user(state, xp=jnp)
        out = {"sigma_y": user["sigma_y"]}
        if "beta" in self.sites:
            out["beta"] = user["beta"]
        aux = [(name, start, size, label, prior) for name, _, blocks in self._blocks
               for start, size, label, prior in blocks if size > 1 and isinstance(prior, HuangWand)]
        keys = jax.random.split(rng_key, max(len(aux), 1))
        for name, d, blocks in self._blocks:
            cov = user[f"cov_{name}"]
            for start, size, label, prior in blocks:
                sl = slice(start, start + size)
                if size == 1:
                    out[f"sigma_{label}"] = jnp.sqrt(cov[start, start])
                else:
                    out[f"L_{label}"] = jnp.linalg.cholesky(cov[sl, sl])
            out[f"alpha_{name}"] = user[f"alpha_{name}"]
            if f"gamma_{name}" in self.sites:
                out[f"gamma_{name}"] = user[f"gamma_{name}"]
        for key, (name, start, size, label, prior) in zip(keys, aux):
            cov = user[f"cov_{name}"][start:start + size, start:start + size]
            nu = float(prior.df)
            A = jnp.asarray(prior.scales(size), cov.dtype)
            precision_diag = jnp.diagonal(jnp.linalg.inv(cov))
            rate = nu * precision_diag + 1.0 / A**2
            out[f"a_{label}"] = rate / jax.random.gamma(key, 0.5 * (nu + size), (size,), cov.dtype)
        return {site: out[site] for site in self.sites}

    def init_params(self, rng_key: jax.Array, columns: Mapping[str, ArrayLike] | None = None,
                    weights: ArrayLike | None = None) -> dict[str, jax.Array]:
        """Over-dispersed starting values of the block's sites (the kernel's ``init`` on :meth:`data`), for
        ``MCMC.run(..., init_params=...)`` together with the other sites' values."""
        key_init, key_sites = jax.random.split(rng_key)
        return self.to_sites(key_sites, self.kernel.init(key_init, self.data(columns, weights)))

    # ------------------------------------------------------------------ the update NumPyro calls
    def gibbs_fn(self, columns: SiteFunction | None = None,
                 weights: Callable[[Mapping[str, jax.Array]], ArrayLike] | None = None):
        """The Gibbs update of the block for ``HMCGibbs(inner, gibbs_fn=..., gibbs_sites=block.sites)`` or
        ``CustomGibbs(gibbs_fn=...)``: ``gibbs_fn(rng_key, gibbs_sites, hmc_sites)`` runs :attr:`num_sweeps`
        sweeps from the current sites on the data at the conditioning sites and returns the new sites.

        Parameters
        ----------
        columns
            ``columns(hmc_sites)`` -> design column name -> values: the same function of the other sites
            the NumPyro model passes to the block (``None``: the template's design).
        weights
            ``weights(hmc_sites)`` -> precision weights (``None``: 1).
        """

        def update(rng_key, gibbs_sites, hmc_sites):
            key_sweep, key_sites = jax.random.split(rng_key)
            data = self.data(None if columns is None else columns(hmc_sites),
                             None if weights is None else weights(hmc_sites))
            state = self.sweep(key_sweep, self.to_state(gibbs_sites), data)
            return self.to_sites(key_sites, state)

        return update

    def __repr__(self) -> str:
        return (f"MultilevelBlock({self.model.formula or 'from arrays'}, sampler={self.sampler!r}, "
                f"num_sweeps={self.num_sweeps}, sites={list(self.sites)})")

"""mlgibbs: Gibbs samplers for multilevel (hierarchical) regression, in JAX.

The varying-intercept model (Gelman & Hill 2007, ch. 12-13 and 18)::

    y_i     ~ N(alpha_j[i] + X_i beta, sigma_y^2)      i = 1..n
    alpha_j ~ N(U_j gamma, sigma_alpha^2)                j = 1..J

Quick start::

    import jax, mlgibbs as mg
    df = mg.datasets.load_radon()
    model = mg.Model.from_formula("log_radon ~ floor + log_uranium + (1 | county)", df)
    idata = mg.sample(jax.random.key(0), model, num_chains=4, num_warmup=500, num_draws=1000)

The functional core: ``kernel = mg.gibbs(model)`` with pure ``kernel.init(rng_key, data)`` and
``kernel.step(rng_key, state, data)``; the data pytree is ``model.data``.
"""

__version__ = "0.1.0"

from mlgibbs import _compilation_cache

#: Where compiled programs are kept between sessions (``None``: off); see
#: :mod:`mlgibbs._compilation_cache` (``MLGIBBS_COMPILATION_CACHE=0`` turns it off).
COMPILATION_CACHE = _compilation_cache.enable()

from mlgibbs import datasets, priors
from mlgibbs.base import GibbsState, SamplingAlgorithm, Update, compose
from mlgibbs.conditionals import (
    update_alpha,
    update_beta,
    update_gamma,
    update_sigma_alpha,
    update_sigma_y,
)
from mlgibbs.logdensity import log_joint, pointwise_log_likelihood
from mlgibbs.models import GroupData, LinearData, Model, sufficient_statistics
from mlgibbs.models.mixed import MixedModel, Term
from mlgibbs.diagnostics import ConvergenceWarning
from mlgibbs.run import add_log_likelihood, last_state, sample, sample_chains
from mlgibbs.samplers import DEFAULT_SAMPLER, SAMPLERS, default_sampler, gibbs

__all__ = [
    "__version__",
    "COMPILATION_CACHE",
    "datasets",
    "priors",
    "Model",
    "MixedModel",
    "Term",
    "LinearData",
    "GroupData",
    "sufficient_statistics",
    "GibbsState",
    "SamplingAlgorithm",
    "Update",
    "compose",
    "gibbs",
    "SAMPLERS",
    "DEFAULT_SAMPLER",
    "default_sampler",
    "update_alpha",
    "update_beta",
    "update_gamma",
    "update_sigma_y",
    "update_sigma_alpha",
    "sample",
    "sample_chains",
    "last_state",
    "add_log_likelihood",
    "ConvergenceWarning",
    "log_joint",
    "pointwise_log_likelihood",
    "to_inference_data",
    "groups",
    "summary",
    "loo",
    "Loo",
    "compare",
    "save",
    "load",
    "predict",
]


_LAZY = {  # names whose modules import xarray / ArviZ: loaded on first use, not at ``import mlgibbs``
    name: ("mlgibbs.arviz", name)
    for name in ("to_inference_data", "groups", "summary", "loo", "Loo", "compare", "save", "load")
}
_LAZY["predict"] = ("mlgibbs.predict", "predict")


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mlgibbs' has no attribute {name!r}")


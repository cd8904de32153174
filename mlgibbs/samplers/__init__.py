"""Kernels assembled from the conditional updates, chosen by name."""

from __future__ import annotations

from typing import Callable

from mlgibbs.base import SamplingAlgorithm
from mlgibbs.samplers.collapsed import collapsed_kernel
from mlgibbs.samplers.gibbs import Structure, gibbs_kernel, initial_state, structure_of
from mlgibbs.samplers.px import px_kernel

__all__ = ["SAMPLERS", "DEFAULT_SAMPLER", "default_sampler", "gibbs", "gibbs_kernel", "collapsed_kernel", "px_kernel", "Structure", "initial_state", "structure_of"]

#: Kernel factories by name: ``factory(priors, structure) -> SamplingAlgorithm``.
SAMPLERS: dict[str, Callable[..., SamplingAlgorithm]] = {
    "gibbs": gibbs_kernel,
    "px": px_kernel,
    "collapsed": collapsed_kernel,
}


#: The sampler :func:`mlgibbs.sample` uses by default: the best in ``benchmarks/`` (min ESS per second;
#: see the README's table). ``"collapsed"`` stands in where ``"px"`` has no expansion for the prior.
DEFAULT_SAMPLER = "px"


def default_sampler(model) -> str:
    """:data:`DEFAULT_SAMPLER`, or ``"collapsed"`` when the model's prior on ``sigma_alpha`` is
    inverse-gamma (which the parameter-expanded sampler cannot represent)."""
    from mlgibbs.priors import InverseGamma

    if DEFAULT_SAMPLER == "px" and isinstance(model.priors.sigma_alpha, InverseGamma) \
            and model.data.groups is not None:
        return "collapsed"
    return DEFAULT_SAMPLER


def gibbs(model, sampler: str = "gibbs") -> SamplingAlgorithm:
    """The Gibbs kernel of ``model``: a NamedTuple of pure ``init`` and ``step`` functions.

    Parameters
    ----------
    model
        A :class:`~mlgibbs.Model`; its priors and block structure configure the kernel, and its
        data pytree ``model.data`` is what ``init`` and ``step`` take.
    sampler
        Name of the sampler, one of :data:`SAMPLERS`: ``"gibbs"`` (the five-step sampler of
        Gelman & Hill), ``"px"`` (parameter-expanded), ``"collapsed"`` (scales from their marginal,
        locations in one block).

    Returns
    -------
    SamplingAlgorithm
        The same object for repeated calls with the same model and name, so compiled programs
        built on it are reused.
    """
    try:
        factory = SAMPLERS[sampler]
    except KeyError:
        raise ValueError(f"unknown sampler {sampler!r}; expected one of {sorted(SAMPLERS)}") from None
    return model.cached(("kernel", sampler), lambda: factory(model.priors, structure_of(model.data)))

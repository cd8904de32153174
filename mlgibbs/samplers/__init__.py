"""Kernels assembled from the conditional updates, chosen by name."""

from __future__ import annotations

import functools
from typing import Callable

import jax

from mlgibbs.base import SamplingAlgorithm
from mlgibbs.samplers.collapsed import collapsed_kernel
from mlgibbs.samplers.gibbs import Structure, gibbs_kernel, initial_state, structure_of
from mlgibbs.samplers.grid import grid_kernel, scale_grid_builder, with_scale_grid
from mlgibbs.samplers.grid_chains import run_grid_chains
from mlgibbs.samplers.px import px_kernel

__all__ = ["SAMPLERS", "DEFAULT_SAMPLER", "default_sampler", "gibbs", "gibbs_kernel", "collapsed_kernel", "px_kernel",
           "grid_kernel", "with_scale_grid", "chains_runner", "kernel_data", "kernel_data_shape", "Structure",
           "initial_state", "structure_of"]

#: Kernel factories by name: ``factory(priors, structure) -> SamplingAlgorithm``.
SAMPLERS: dict[str, Callable[..., SamplingAlgorithm]] = {
    "gibbs": gibbs_kernel,
    "px": px_kernel,
    "collapsed": collapsed_kernel,
    "grid": grid_kernel,
}


#: The sampler :func:`mlgibbs.sample` uses by default (see the README's benchmark table): ``"grid"`` draws
#: nearly independent samples whatever the shrinkage (radon: min ESS per second 2.8x ``"px"``'s, 3.6x
#: ``"collapsed"``'s); on large data sets with well-informed groups, where every sampler mixes, ``"gibbs"`` and
#: ``"px"`` are up to 2x faster per second and remain a ``sampler=`` away.
DEFAULT_SAMPLER = "grid"


def default_sampler(model) -> str:
    """:data:`DEFAULT_SAMPLER` (``"grid"`` works under every scale prior; without a grouping factor it is
    the two-block sampler of a linear regression)."""
    del model
    return DEFAULT_SAMPLER


def kernel_data(model, sampler: str):
    """The data pytree ``sampler``'s kernel runs on: ``model.data``, with the scales' grid for ``"grid"``
    (:func:`~mlgibbs.samplers.grid.with_scale_grid`, tabulated once per model)."""
    if sampler != "grid":
        return model.data
    return model.cached(("scale_grid",), lambda: with_scale_grid(model.data, model.kernel_priors))


def kernel_data_shape(model, sampler: str):
    """:func:`kernel_data` as far as a compiled program needs it, without tabulating anything: the grid's
    arrays as ``jax.ShapeDtypeStruct`` until it is built (``jax.eval_shape`` of the tabulation, whose trace the
    tabulation then reuses), so that the sampling program compiles while the grid is tabulated."""
    if sampler != "grid" or model.data.groups is None or model.is_cached(("scale_grid",)):
        return kernel_data(model, sampler)
    return model.data._replace(scale_grid=jax.eval_shape(scale_grid_builder(model.kernel_priors), model.data))


def chains_runner(model, sampler: str):
    """What runs ``sampler``'s chains on ``model`` faster than scanning its step, with the same draws, or ``None``:
    for ``"grid"`` with a grouping factor, :func:`~mlgibbs.samplers.grid_chains.run_grid_chains` with the model's
    priors (the sweeps in parallel). One object per kernel (a compiled program keyed on it is reused)."""
    if sampler != "grid" or model.data.groups is None:
        return None
    priors = model.kernel_priors
    try:
        return _cached_runner(typed_key(priors), priors)
    except TypeError:  # priors holding unhashable values (arrays): one per model
        return model.cached(("chains_runner", sampler), lambda: functools.partial(run_grid_chains, priors))


@functools.lru_cache(maxsize=64)
def _cached_runner(key, priors):
    del key
    return functools.partial(run_grid_chains, priors)


def gibbs(model, sampler: str = "gibbs") -> SamplingAlgorithm:
    """The Gibbs kernel of ``model``: a NamedTuple of pure ``init`` and ``step`` functions.

    Parameters
    ----------
    model
        A :class:`~mlgibbs.Model`; its scale priors and block structure configure the kernel, and
        its data pytree ``model.data`` (which carries the coefficient priors) is what ``init`` and
        ``step`` take.
    sampler
        Name of the sampler, one of :data:`SAMPLERS`: ``"gibbs"`` (the five-step sampler of
        Gelman & Hill), ``"px"`` (parameter-expanded), ``"collapsed"`` (scales from their marginal,
        locations in one block), ``"grid"`` (both scales by an independence step from a grid of their
        marginal, then the locations; run it on :func:`kernel_data`, which carries the grid).

    Returns
    -------
    SamplingAlgorithm
        The same object for every model of the same structure and scale priors (and the same
        sampler), so compiled programs built on it are reused by a second model of the same shapes.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; expected one of {sorted(SAMPLERS)}")
    structure = structure_of(model.data)
    priors = model.kernel_priors
    try:
        return _cached_kernel(sampler, structure, typed_key(priors), priors)
    except TypeError:  # priors holding unhashable values (arrays): one kernel per model
        return model.cached(("kernel", sampler), lambda: SAMPLERS[sampler](priors, structure))


def typed_key(value):
    """A hashable key of a (nested) NamedTuple that tells its types apart.

    Prior NamedTuples compare as plain tuples (``HalfNormal(1.0) == HalfCauchy(1.0)``), so a cache
    keyed on them alone would hand one family's kernel to the other.
    """
    if isinstance(value, tuple):
        return (type(value).__qualname__, tuple(typed_key(v) for v in value))
    hash(value)
    return value


@functools.lru_cache(maxsize=128)
def _cached_kernel(sampler: str, structure: Structure, key, priors) -> SamplingAlgorithm:
    del key  # the cache key; ``priors`` itself compares without types
    return SAMPLERS[sampler](priors, structure)

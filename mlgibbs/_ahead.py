"""A sampling program compiled on a second thread while the main thread prepares its inputs.

A first :func:`mlgibbs.sample` call compiles three programs one after another: the ``"grid"`` sampler's
tabulation of the scales (:func:`~mlgibbs.conditionals.scale_grid.build_scale_grid`), the chains' starts,
and the sampling program. The last needs only the *shapes* of the others' results, so it is traced and
lowered on the calling thread (JAX's configuration, ``jax.enable_x64`` included, is the caller's), and its
XLA compilation, which releases the GIL, runs on a worker thread while the caller tabulates and draws the
starts: on two cores a cold first call on radon waits for the longer of the two instead of their sum.

Compiled programs are kept by their program and the shapes and dtypes of their inputs (the 64 most recent),
so a second call with the same shapes neither traces nor compiles.
"""

from __future__ import annotations

import collections
import concurrent.futures
import threading

import jax

__all__ = ["compile_ahead", "clear"]

_MAX_PROGRAMS = 64
_compiled: collections.OrderedDict = collections.OrderedDict()
_lock = threading.Lock()
_pool: concurrent.futures.ThreadPoolExecutor | None = None


def clear() -> None:
    """Forget every compiled program kept (:func:`mlgibbs._mappings.release_if_needed`)."""
    with _lock:
        _compiled.clear()


def _worker() -> concurrent.futures.ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlgibbs-compile")
        return _pool


def _remember(key, compiled) -> None:
    with _lock:
        _compiled[key] = compiled
        _compiled.move_to_end(key)
        while len(_compiled) > _MAX_PROGRAMS:
            _compiled.popitem(last=False)


class Ahead:
    """A program being compiled for some inputs' shapes; :meth:`result` waits for it."""

    def __init__(self, key, compiled=None, future=None):
        self._key, self._compiled, self._future = key, compiled, future

    def result(self):
        """The compiled program: call it with arrays of the shapes given. Unlike a jitted function's, a compiled
        program does not move its inputs to where it wants them (the chain axis split over several devices:
        :mod:`mlgibbs.devices`), so arrays placed otherwise are moved first."""
        if self._compiled is None:
            self._compiled = self._future.result()
            _remember(self._key, self._compiled)
        compiled = self._compiled
        wanted = compiled.input_shardings[0]

        def place(x, sharding):
            return jax.device_put(x, sharding) if isinstance(x, jax.Array) and x.sharding != sharding else x

        def call(*args):
            return compiled(*(jax.tree.map(place, a, s) for a, s in zip(args, wanted)))

        return call


def compile_ahead(program, args) -> Ahead:
    """Start compiling the jitted ``program`` for ``args`` (arrays, ``jax.ShapeDtypeStruct``, Python scalars:
    only shapes, dtypes and weak types matter) and return at once; a program compiled before for the same
    shapes is returned as it is."""
    abstract = jax.eval_shape(lambda *a: a, *args)
    leaves, treedef = jax.tree.flatten(abstract)
    key = (program, treedef, tuple((x.shape, x.dtype, x.weak_type) for x in leaves), jax.config.jax_enable_x64)
    with _lock:
        compiled = _compiled.get(key)
        if compiled is not None:
            _compiled.move_to_end(key)
    if compiled is not None:
        return Ahead(key, compiled=compiled)
    lowered = program.lower(*abstract)         # traced here: the caller's configuration
    future = _worker().submit(lowered.compile)

    def remember(done):
        if done.exception() is None:
            _remember(key, done.result())

    future.add_done_callback(remember)
    return Ahead(key, future=future)

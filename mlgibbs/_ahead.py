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

__all__ = ["compile_ahead", "clear", "sampling_options"]

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


def sampling_options() -> dict | None:
    """XLA options for compiling a sampling program: on CPU, LLVM's optimisation level 1 instead of the default
    (``xla_backend_optimization_level``). Measured on radon (2 cores, JAX 0.10): the ``"grid"`` sampler's program
    compiles in 1.7 s instead of 3.6 s and runs as fast or faster (11 ms instead of 16 ms: the level-2 passes
    only slow its compilation), the scanned step's in 1.5 s instead of 1.9 s at the same speed; level 0 halves
    the compilation again but runs 3-4 times slower. ``None`` (XLA's defaults) on other platforms."""
    return {"xla_backend_optimization_level": 1} if jax.default_backend() == "cpu" else None


def compile_ahead(program, args, compiler_options: dict | None = None) -> Ahead:
    """Start compiling the jitted ``program`` for ``args`` (arrays, ``jax.ShapeDtypeStruct``, Python scalars:
    only shapes, dtypes and weak types matter) with XLA's ``compiler_options`` and return at once; a program
    compiled before for the same shapes and options is returned as it is."""
    abstract = jax.eval_shape(lambda *a: a, *args)
    leaves, treedef = jax.tree.flatten(abstract)
    options = tuple(sorted((compiler_options or {}).items()))
    key = (program, treedef, tuple((x.shape, x.dtype, x.weak_type) for x in leaves), jax.config.jax_enable_x64,
           options)
    with _lock:
        compiled = _compiled.get(key)
        if compiled is not None:
            _compiled.move_to_end(key)
    if compiled is not None:
        return Ahead(key, compiled=compiled)
    lowered = program.lower(*abstract)         # traced here: the caller's configuration
    future = _worker().submit(lowered.compile, dict(options) if options else None)

    def remember(done):
        if done.exception() is None:
            _remember(key, done.result())

    future.add_done_callback(remember)
    return Ahead(key, future=future)

"""Keep a long session's compiled programs below the operating system's limit on memory mappings.

XLA:CPU maps the code and data of every compiled program into the process as separate memory regions
(about 18 for a trivial function, about 600 for one ``mg.sample`` program) and keeps them while JAX's
caches hold the executable. Linux caps the mappings of a process (``vm.max_map_count``, 65,530 by
default); a process that reaches the cap dies inside XLA's next compilation ("Fatal Python error:
Aborted" in ``backend_compile_and_load``), with no Python exception to catch. A loop fitting a hundred
models of different shapes (a simulation study, a bootstrap) gets there, since JAX keeps the programs
of every shape it has compiled.

:func:`release_if_needed` (called by :func:`mlgibbs.sample` before it compiles) counts the process's
mappings and, above :data:`FRACTION` of the cap, clears JAX's compilation caches (``jax.clear_caches``)
and mlgibbs' own, which unmaps the programs no live object still holds; the next call of any of them
compiles it again. Off Linux (no ``/proc``) it does nothing.
"""

from __future__ import annotations

import functools
import gc
import warnings

__all__ = ["mapping_count", "mapping_limit", "release_if_needed", "FRACTION"]

#: Clear the caches when the process holds more than this fraction of ``vm.max_map_count`` mappings.
FRACTION = 0.5


@functools.lru_cache(maxsize=1)
def mapping_limit() -> int | None:
    """``vm.max_map_count`` (Linux), or ``None`` where it cannot be read."""
    try:
        with open("/proc/sys/vm/max_map_count", "rb") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def mapping_count() -> int | None:
    """The number of memory mappings of this process (lines of ``/proc/self/maps``), or ``None``."""
    try:
        with open("/proc/self/maps", "rb") as f:
            return f.read().count(b"\n")
    except OSError:
        return None


def release_if_needed(fraction: float = FRACTION) -> bool:
    """Clear JAX's and mlgibbs' compilation caches if the mappings exceed ``fraction`` of the cap.

    Returns whether it cleared them (and warns then: programs compiled before are compiled again).
    """
    limit = mapping_limit()
    if limit is None:
        return False
    used = mapping_count()
    if used is None or used < fraction * limit:
        return False
    import jax

    from mlgibbs import _ahead, run, run_mixed

    jax.clear_caches()
    _ahead.clear()
    for cache in (run._chain_runner, run._select, run._sampling_program, run.init_program, run_mixed._program):
        cache.cache_clear()
    gc.collect()
    after = mapping_count()
    warnings.warn(f"this process held {used:,} memory mappings of compiled programs, over "
                  f"{fraction:.0%} of the system's limit (vm.max_map_count = {limit:,}), at which XLA aborts "
                  f"the process; mlgibbs cleared JAX's compilation caches ({after:,} mappings now), so "
                  "programs compiled before will be compiled again", RuntimeWarning, stacklevel=3)
    return True

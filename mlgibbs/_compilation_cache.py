"""JAX's persistent compilation cache, turned on for mlgibbs users where it is safe.

Compiling a sampler takes seconds on a laptop CPU; running it, a fraction of one. JAX can keep
compiled programs on disk and load them in a later process (its persistent compilation cache), which
takes a new Python session from compiling to loading. JAX leaves it off by default; importing
mlgibbs turns it on, under these rules:

* never over a choice of the user's: if ``jax_compilation_cache_dir`` is already set (by
  ``JAX_COMPILATION_CACHE_DIR`` or ``jax.config.update``), nothing changes;
* ``MLGIBBS_COMPILATION_CACHE=0`` (or ``off``, ``false``, ``no``) keeps it off; any other value is
  taken as the directory to use;
* the default directory is ``$XDG_CACHE_HOME/mlgibbs`` (``~/.cache/mlgibbs``) with one folder per
  JAX version and machine fingerprint (processor model and instruction-set flags), so that a home
  directory shared between machines never hands a program compiled for one CPU to another (XLA's
  own loader also refuses a mismatched machine; this keeps such entries from being written over
  each other), and a directory that cannot be created or written leaves the cache off;
* entries appear atomically: JAX (0.10, 0.12) writes a cache file in place, so a process killed while
  writing, or a reader racing a writer, leaves or sees a truncated entry, which XLA may fail to load.
  (The aborts inside XLA that this project's CI saw and first blamed on such entries were the process's
  memory mappings reaching ``vm.max_map_count``: :mod:`mlgibbs._mappings`.) :func:`enable` therefore wraps JAX's ``LRUCache.put`` to write
  a temporary file and rename it into place (``os.replace``: atomic on one file system); and the
  folder name carries a generation (:data:`GENERATION`) so that entries written before this fix are
  never read;
* programs that compile in under 0.2 s are not written (JAX's own threshold is 1 s, which would
  leave out most of ours); the threshold is only lowered when the user has left JAX's default.

The cache is content-addressed by JAX (the program, compile options, JAX and XLA versions, devices),
so a stale entry is never loaded for a changed program. It applies to every JAX program the process
compiles after the import, the user's included; it grows without bound (JAX evicts only when the
``filelock`` package is installed and ``jax_compilation_cache_max_size`` is set); delete the folder
to reclaim the space.
"""

from __future__ import annotations

import hashlib
import os
import platform
import uuid
from pathlib import Path

__all__ = ["cache_directory", "enable", "machine_fingerprint"]

#: Environment variable: ``0``/``off`` to keep the cache off, or a directory to use.
ENV = "MLGIBBS_COMPILATION_CACHE"

#: Bumped when entries written by earlier versions must not be read (v2: entries written atomically).
GENERATION = "v2"

#: Programs compiling faster than this (seconds) are not written to the cache.
MIN_COMPILE_SECONDS = 0.2


def machine_fingerprint() -> str:
    """A short hash of the processor model and its instruction-set flags (Linux: /proc/cpuinfo)."""
    parts = [platform.machine(), platform.processor()]
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                key = line.split(":", 1)[0].strip().lower()
                if key in ("model name", "flags", "features", "cpu part", "cpu implementer"):
                    parts.append(line.strip())
                if not line.strip() and len(parts) > 2:  # the first processor is enough
                    break
    except OSError:
        pass
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def cache_directory() -> Path | None:
    """The directory mlgibbs would use, or ``None`` when the cache is switched off by :data:`ENV`."""
    setting = os.environ.get(ENV, "").strip()
    if setting.lower() in ("0", "off", "false", "no"):
        return None
    if setting:
        return Path(setting).expanduser()
    import jax

    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "mlgibbs" / f"jax-{jax.__version__}-{machine_fingerprint()}-{GENERATION}"


def enable() -> Path | None:
    """Turn the persistent cache on under the rules of the module docstring; return its directory."""
    import jax

    if jax.config.jax_compilation_cache_dir is not None:
        return None  # the user's choice
    directory = cache_directory()
    if directory is None:
        return None
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / ".writable"
        probe.touch()
        probe.unlink()
    except OSError:
        return None
    if not _atomic_writes():
        return None   # a JAX whose cache we cannot make crash-safe: leave it off
    jax.config.update("jax_compilation_cache_dir", str(directory))
    if jax.config.jax_persistent_cache_min_compile_time_secs == 1.0:  # JAX's default: lower it
        jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    return directory


def _atomic_writes() -> bool:
    """Make JAX's persistent cache write each entry to a temporary file and rename it into place.

    Returns ``False`` (leave the cache off) when JAX's cache class is not the one this was written for.
    """
    try:
        from jax._src import lru_cache
    except ImportError:
        return False
    cls = getattr(lru_cache, "LRUCache", None)
    suffix = getattr(lru_cache, "_CACHE_SUFFIX", None)
    atime = getattr(lru_cache, "_ATIME_SUFFIX", None)
    if cls is None or suffix is None or not hasattr(cls, "put"):
        return False
    if getattr(cls.put, "_mlgibbs_atomic", False):
        return True
    original = cls.put

    def put(self, key: str, value: bytes) -> None:
        path = getattr(self, "path", None)
        if not key or not isinstance(path, Path):   # remote stores: JAX's own behaviour
            return original(self, key, value)
        final = path / f"{key}{suffix}"
        if final.exists():
            return None
        temporary = f"{key}.partial-{os.getpid()}-{uuid.uuid4().hex}"
        original(self, temporary, value)          # JAX's write (and its eviction), under a name no reader asks for
        written = path / f"{temporary}{suffix}"
        if written.exists():
            os.replace(written, final)
        if atime is not None and (path / f"{temporary}{atime}").exists():
            os.replace(path / f"{temporary}{atime}", path / f"{key}{atime}")
        return None

    put._mlgibbs_atomic = True
    cls.put = put
    return True

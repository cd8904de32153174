"""The persistent compilation cache that ``import mlgibbs`` turns on, and the rules it keeps.

Each case runs ``import mlgibbs`` in a fresh Python process (JAX reads its cache settings once per
process) and reports JAX's settings afterwards:

* by default the cache is on, in a folder named after the JAX version and the machine fingerprint,
  with JAX's 1 s write threshold lowered to 0.2 s;
* ``MLGIBBS_COMPILATION_CACHE=0`` keeps it off; any other value is the folder;
* a folder the user chose for JAX (``JAX_COMPILATION_CACHE_DIR``) and JAX's threshold are left as set;
* a folder that cannot be written leaves the cache off;
* a program compiled in one process is loaded from the cache by the next (JAX's cache hit counter).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPORT = """
import json, jax, mlgibbs
print("REPORT", json.dumps({"dir": jax.config.jax_compilation_cache_dir,
                            "min_time": jax.config.jax_persistent_cache_min_compile_time_secs,
                            "mlgibbs": None if mlgibbs.COMPILATION_CACHE is None else str(mlgibbs.COMPILATION_CACHE)}))
"""


def report(env_updates: dict, code: str = REPORT) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MLGIBBS_COMPILATION_CACHE", "JAX_COMPILATION_CACHE_DIR")}
    env.update(env_updates)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("REPORT "))
    return json.loads(line[len("REPORT "):])


def test_default_folder_is_per_jax_version_and_machine(tmp_path):
    import jax

    from mlgibbs import _compilation_cache

    out = report({"XDG_CACHE_HOME": str(tmp_path)})
    expected = tmp_path / "mlgibbs" / f"jax-{jax.__version__}-{_compilation_cache.machine_fingerprint()}-{_compilation_cache.GENERATION}"
    assert out["dir"] == str(expected) == out["mlgibbs"]
    assert out["min_time"] == pytest.approx(_compilation_cache.MIN_COMPILE_SECONDS)


@pytest.mark.parametrize("value", ["0", "off", "False", "no"])
def test_switched_off(value, tmp_path):
    out = report({"MLGIBBS_COMPILATION_CACHE": value, "XDG_CACHE_HOME": str(tmp_path)})
    assert out["dir"] is None and out["mlgibbs"] is None
    assert out["min_time"] == 1.0  # JAX's default, untouched
    assert not (tmp_path / "mlgibbs").exists()


def test_folder_given_by_the_variable(tmp_path):
    out = report({"MLGIBBS_COMPILATION_CACHE": str(tmp_path / "here")})
    assert out["dir"] == str(tmp_path / "here")


def test_the_users_own_jax_settings_are_kept(tmp_path):
    out = report({"JAX_COMPILATION_CACHE_DIR": str(tmp_path / "mine"),
                  "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "3.5"})
    assert out["dir"] == str(tmp_path / "mine") and out["mlgibbs"] is None
    assert out["min_time"] == 3.5


def test_unwritable_folder_leaves_it_off(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    out = report({"MLGIBBS_COMPILATION_CACHE": str(blocker / "cache")})
    assert out["dir"] is None and out["mlgibbs"] is None


def test_a_second_process_loads_the_program(tmp_path):
    """A program taking over 0.2 s to compile is written by one process and read by the next."""
    code = """
import json, jax, jax.numpy as jnp, mlgibbs
from jax._src import monitoring
hits = []
monitoring.register_event_listener(lambda event, **kw: hits.append(event) if "cache_hits" in event else None)
def f(key, x):
    for k in jax.random.split(key, 12):
        x = x + jax.random.gamma(k, 2.0, (40,))
    return x
jax.jit(jax.vmap(f))(jax.random.split(jax.random.key(0), 4), jnp.zeros((4, 40))).block_until_ready()
print("REPORT", json.dumps({"hits": len(hits)}))
"""
    env = {"MLGIBBS_COMPILATION_CACHE": str(tmp_path)}
    first = report(env, code)
    assert any(tmp_path.iterdir()), "nothing was written to the cache"
    second = report(env, code)
    assert first["hits"] == 0 and second["hits"] >= 1, (first, second)


def test_entries_are_written_atomically(tmp_path):
    """JAX's cache writes through a temporary name and renames it into place: no reader ever sees a
    partial entry (a truncated executable aborts the reading process inside XLA)."""
    from jax._src import lru_cache

    from mlgibbs import _compilation_cache as cc

    assert cc._atomic_writes()
    assert getattr(lru_cache.LRUCache.put, "_mlgibbs_atomic", False)
    cache = lru_cache.LRUCache(str(tmp_path), max_size=-1)     # -1: no eviction (JAX's default)
    seen = []
    real = Path.write_bytes

    def spy(self, data):
        seen.append(self.name)
        return real(self, data)

    Path.write_bytes = spy
    try:
        cache.put("abc", b"x" * 1000)
    finally:
        Path.write_bytes = real
    assert seen and all(".partial-" in name for name in seen)            # never written under the final name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["abc-cache"]
    assert cache.get("abc") == b"x" * 1000
    cache.put("abc", b"other")                                           # an existing entry is kept
    assert cache.get("abc") == b"x" * 1000

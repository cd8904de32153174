"""Test-session housekeeping shared by every module.

XLA:CPU maps each compiled program's code and data into the process as separate memory regions
(about 18 for a trivial program, hundreds for a sampler sweep), and they stay mapped while JAX's
caches hold the executable. One pytest process compiles thousands of programs, so without clearing,
the process reaches Linux's per-process limit on mappings (``vm.max_map_count``, 65,530 by default)
and XLA aborts inside a compilation ("Fatal Python error: Aborted" in ``backend_compile_and_load``),
in whichever test happens to compile next. Clearing JAX's caches after each test module unmaps
them; a module's own fixtures still share their compiled programs.
"""

from __future__ import annotations

import gc

import jax
import pytest


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    yield
    jax.clear_caches()
    gc.collect()

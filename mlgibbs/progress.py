"""A progress bar for long runs: sweeps done, draws kept, sweeps per second.

:func:`mlgibbs.sample` with ``progress_bar=True`` compiles a program whose sweep loop calls the host
(``jax.debug.callback``) after each block of about 1% of its sweeps (:func:`blocks`: an outer loop over
blocks, so the sweep loop itself has no branch) with the index of the sweep just done; the call is made
once per block, not once per chain (the loop index is shared by the vmapped chains).
The host function updates the bar of the run in progress (a ``tqdm`` bar, module-level, so that the
compiled program does not depend on the bar and a second run reuses it). Without ``progress_bar`` the
program has no callback at all: it costs nothing when off.
"""

from __future__ import annotations

import contextlib
import threading

import jax
import jax.numpy as jnp

__all__ = ["progress_bar", "report"]

REPORTS = 100   # host calls per run, about
_lock = threading.Lock()
_bar = None      # the bar of the run in progress
_layout = (0, 1, 1)   # num_warmup, thin, num_chains of that run


def _update(i, total):
    with _lock:
        if _bar is None:
            return
        done = int(i) + 1
        num_warmup, thin, num_chains = _layout
        _bar.set_postfix_str(f"draws {max(0, (done - num_warmup) // thin):,} x {num_chains} chains"
                             + (" (warm-up)" if done <= num_warmup else ""), refresh=False)
        _bar.update(done - _bar.n)


def blocks(total):
    """``(every, count)``: a run of ``total`` sweeps (traced) as ``count`` blocks of ``every`` sweeps (the last
    one shorter), about ``REPORTS`` of them; the sweep loop tells the host after each block."""
    every = jnp.maximum(total // REPORTS, 1)
    return every, (total + every - 1) // every


def report(i, total):
    """Inside a traced program: tell the host that sweep ``i`` (counted from 0) of ``total`` is done."""
    jax.debug.callback(_update, i, total, ordered=False)


@contextlib.contextmanager
def progress_bar(total: int, *, num_warmup: int, thin: int, num_chains: int, description: str = "sampling",
                 enabled: bool = True):
    """The bar of one run (``total`` sweeps), shown while the block runs (nothing when not ``enabled``)."""
    global _bar, _layout
    if not enabled:
        yield None
        return
    from tqdm import tqdm

    bar = tqdm(total=total, desc=description, unit="sweep", dynamic_ncols=True)
    with _lock:
        _bar, _layout = bar, (num_warmup, thin, num_chains)
    try:
        yield bar
    finally:
        with _lock:
            _bar = None
        bar.close()

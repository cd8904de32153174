"""Seconds JAX spends tracing, lowering and compiling inside a timed block (``jax.monitoring`` events).

NumPyro's ``MCMC.run`` compiles its sampling loop again on every call: the loop body is a new Python
closure each time, a new static argument to ``jit``. Measured on radon (JAX 0.10.2, 2 cores): a second
``mcmc.run`` of 1000 + 1000 iterations took 7.3 s, of which 4.7 s were compilation (3.4 s of it
``_fori_collect_loop``'s backend compile), with the persistent compilation cache off, as the benchmarks
run to keep compile times cold. Until 2026-12-04 the benchmarks timed that second run whole and called
it NUTS's sampling time, understating NUTS's speed 2-3x on small problems. The NUTS rows now subtract
what :class:`CompileClock` counts during the timed run (``recompile_s`` in the results files); the
mlgibbs rows count it too (``compile_in_call_s``, near zero: ``mg.sample`` keeps its compiled programs).
"""

from __future__ import annotations

import threading

from jax import monitoring

#: The duration events JAX records for a compilation (jax/_src/dispatch.py): tracing to a jaxpr,
#: lowering to MLIR, the backend compile (or the persistent-cache read that replaces it).
EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
          "/jax/core/compile/jaxpr_to_mlir_module_duration",
          "/jax/core/compile/backend_compile_duration")

_lock = threading.Lock()
_open: list["CompileClock"] = []


def _listen(event: str, duration: float, **labels) -> None:
    if event in EVENTS:
        with _lock:
            for clock in _open:
                clock.seconds += duration
                clock.events.append((event.rsplit("/", 1)[-1], labels.get("fun_name", ""), duration))


monitoring.register_event_duration_secs_listener(_listen)


class CompileClock:
    """``with CompileClock() as clock: ...``; then ``clock.seconds``: compile time inside the block.

    A jit traced inside another's trace is counted in both, so this can overstate; subtracted from
    NUTS's time, an overstatement favours NUTS. (Measured: NumPyro's loop traces in milliseconds; its
    compile time is the backend's.)
    """

    def __init__(self):
        self.seconds = 0.0
        self.events: list[tuple[str, str, float]] = []

    def __enter__(self) -> "CompileClock":
        with _lock:
            _open.append(self)
        return self

    def __exit__(self, *exc) -> None:
        with _lock:
            _open.remove(self)

"""Convergence checks run after sampling: warn when R-hat or ESS say the draws are not usable yet.

:func:`mlgibbs.sample` calls :func:`warn_if_not_converged` on every run (``check_convergence=True``),
as PyMC does: the rank-normalised split R-hat of every scalar (each ``alpha_j`` included) must be at
most :data:`RHAT_MAX`, and its bulk and tail effective sample sizes at least :data:`ESS_PER_CHAIN`
per chain (Vehtari, Gelman, Simpson, Carpenter & Bürkner 2021, "Rank-normalization, folding, and
localization: an improved R-hat", *Bayesian Analysis* 16(2)). R-hat needs two chains: with one, only
the ESS is screened.

The statistics are ArviZ 0.x's defaults (tail ESS from the 5% and 95% quantiles), computed by
:mod:`mlgibbs.convergence`, which vectorises them over the scalars and agrees with ArviZ to rounding:
ArviZ loops over scalars in Python (about 2 ms per scalar and statistic), which would add 20 s to a
one-second run of a model with 10,000 group effects.
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["ConvergenceWarning", "RHAT_MAX", "ESS_PER_CHAIN", "convergence_problems", "warn_if_not_converged"]

#: Largest acceptable rank-normalised split R-hat.
RHAT_MAX = 1.01

#: Smallest acceptable bulk and tail effective sample size, per chain.
ESS_PER_CHAIN = 100


class ConvergenceWarning(UserWarning):
    """The draws of a run do not pass the R-hat / ESS screen of :func:`warn_if_not_converged`."""


def _posterior_arrays(idata) -> dict[str, np.ndarray]:
    """Variable -> draws ``(chain, draw, ...)`` of the posterior group."""
    post = idata.posterior
    return {name: np.asarray(post[name].values) for name in post.data_vars}


def _worst(values: dict[str, np.ndarray], bad, order) -> list[str]:
    """``name (count of size): value`` for the variables with a bad entry, worst first."""
    found = []
    for name, arr in values.items():
        mask = bad(arr)
        if not mask.any():
            continue
        flat = arr[mask]
        finite = flat[~np.isnan(flat)]
        worst = np.nan if finite.size == 0 else (finite.max() if order == "max" else finite.min())
        count = int(mask.sum())
        label = name if arr.size == 1 else f"{name} ({count} of {arr.size})"
        found.append((worst, f"{label}: {worst:.3g}"))
    key = (lambda t: -t[0] if np.isfinite(t[0]) else -np.inf) if order == "max" else (lambda t: t[0])
    found.sort(key=key)
    return [text for _, text in found]


def convergence_problems(idata) -> list[str]:
    """What fails the R-hat / ESS screen, one line per statistic (empty when the draws pass)."""
    from mlgibbs.convergence import diagnostics

    arrays = _posterior_arrays(idata)
    if not arrays:
        return []
    num_chains, num_draws = next(iter(arrays.values())).shape[:2]
    names, sizes, shapes = list(arrays), [], []
    for a in arrays.values():
        shapes.append(a.shape[2:])
        sizes.append(int(np.prod(a.shape[2:], dtype=int)))
    stacked = np.concatenate([a.reshape(num_chains, num_draws, -1) for a in arrays.values()], axis=2)
    stats = diagnostics(stacked)
    edges = np.cumsum([0, *sizes])

    def per_variable(values):
        return {n: values[edges[i]:edges[i + 1]] for i, n in enumerate(names)}

    ess_min = ESS_PER_CHAIN * num_chains
    problems = []
    if num_chains > 1:
        high = _worst(per_variable(stats.rhat), lambda a: ~(a <= RHAT_MAX), "max")
        if high:
            problems.append(f"R-hat above {RHAT_MAX}: " + ", ".join(high))
    for kind, ess in (("bulk", stats.ess_bulk), ("tail", stats.ess_tail)):
        low = _worst(per_variable(ess), lambda a: ~(a >= ess_min), "min")
        if low:
            problems.append(f"{kind} ESS below {ess_min} ({ESS_PER_CHAIN} per chain): " + ", ".join(low))
    return problems


def warn_if_not_converged(idata, stacklevel: int = 2, advice: str | None = None) -> None:
    """Warn with :class:`ConvergenceWarning`, naming the variables, when :func:`convergence_problems` finds any.

    ``advice`` replaces the default suggestion (another sampler of the varying-intercept model).
    """
    problems = convergence_problems(idata)
    if problems:
        if advice is None:
            advice = ("Run longer (num_warmup, num_draws), or use a sampler that mixes better for this model "
                      "(sampler='grid' or 'collapsed')")
        warnings.warn(
            "the draws are not yet usable as a posterior sample: " + "; ".join(problems)
            + f". {advice}; check_convergence=False skips this check",
            ConvergenceWarning, stacklevel=stacklevel,
        )

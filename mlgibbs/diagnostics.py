"""Convergence checks run after sampling: warn when R-hat or ESS say the draws are not usable yet.

:func:`mlgibbs.sample` calls :func:`warn_if_not_converged` on every run (``check_convergence=True``),
as PyMC does: the rank-normalised split R-hat of every scalar (each ``alpha_j`` included) must be at
most :data:`RHAT_MAX`, and its bulk and tail effective sample sizes at least :data:`ESS_PER_CHAIN`
per chain (Vehtari, Gelman, Simpson, Carpenter & Bürkner 2021, "Rank-normalization, folding, and
localization: an improved R-hat", *Bayesian Analysis* 16(2)). The statistics are ArviZ's.
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


def _posterior(idata):
    post = idata.posterior
    return post.to_dataset() if hasattr(post, "to_dataset") else post


def _worst(values: dict[str, np.ndarray], bad, order) -> list[str]:
    """``name[index] (value)`` for the variables with a bad entry, worst first."""
    found = []
    for name, arr in values.items():
        arr = np.asarray(arr)
        mask = bad(arr)
        if not mask.any():
            continue
        flat = arr[mask]
        worst = flat.max() if order == "max" else flat.min()
        count = int(mask.sum())
        label = name if arr.ndim == 0 else f"{name} ({count} of {arr.size})"
        found.append((worst, f"{label}: {worst:.3g}"))
    found.sort(key=lambda t: -t[0] if order == "max" else t[0])
    return [text for _, text in found]


def convergence_problems(idata) -> list[str]:
    """What fails the R-hat / ESS screen, one line per statistic (empty when the draws pass)."""
    import arviz as az

    post = _posterior(idata)
    num_chains = post.sizes["chain"]
    ess_min = ESS_PER_CHAIN * num_chains
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rhat = az.rhat(post)
        bulk = az.ess(post, method="bulk")
        tail = az.ess(post, method="tail")
    problems = []
    high = _worst({k: rhat[k].values for k in rhat.data_vars}, lambda a: ~(a <= RHAT_MAX), "max")
    if high:
        problems.append(f"R-hat above {RHAT_MAX}: " + ", ".join(high))
    for kind, ess in (("bulk", bulk), ("tail", tail)):
        low = _worst({k: ess[k].values for k in ess.data_vars}, lambda a: ~(a >= ess_min), "min")
        if low:
            problems.append(f"{kind} ESS below {ess_min} ({ESS_PER_CHAIN} per chain): " + ", ".join(low))
    return problems


def warn_if_not_converged(idata, stacklevel: int = 2) -> None:
    """Warn with :class:`ConvergenceWarning`, naming the variables, when :func:`convergence_problems` finds any."""
    problems = convergence_problems(idata)
    if problems:
        warnings.warn(
            "the draws are not yet usable as a posterior sample: " + "; ".join(problems)
            + ". Run longer (num_warmup, num_draws), or use a sampler that mixes better for this model "
            "(sampler='collapsed' or 'px'); check_convergence=False skips this check",
            ConvergenceWarning, stacklevel=stacklevel,
        )

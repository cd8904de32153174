"""Checks that the posterior exists and that the chosen float type can represent it.

Raised when the model is built, before anything is compiled, with the reason and a way out. They
are the model-level siblings of the column checks in :mod:`mlgibbs.models.validation`: those refuse
inputs that are malformed (NaN, wrong lengths, rank deficiency), these refuse models whose posterior
is improper, or whose data are resolved more finely than the float type can hold. Every sampler
would otherwise hand back NaN or a silently wrong answer there.

Propriety under improper priors (flat coefficients, ``p(sigma) ∝ 1``) follows Hobert & Casella
(1996, Theorem 1) for the one-way random-effects linear model: with ``p_0`` flat individual-level and
``q_0`` flat group-level coefficients, ``J`` groups and ``n`` observations, the posterior is proper iff

* uniform prior on ``sigma_alpha``: ``J - q_0 >= 2`` (as ``sigma_alpha -> inf`` the likelihood decays
  like ``sigma_alpha^-(J - q_0)``);
* uniform prior on ``sigma_y``: ``n - p_0 - q_0 >= 2``, or ``>= 3`` when ``sigma_alpha``'s prior is
  uniform too (both scales large together);

and, whatever the scale priors, the residual variation must be positive: if ``y`` is fitted exactly
by the group intercepts and predictors with residual degrees of freedom left, the likelihood grows
without bound as ``sigma_y -> 0``, and only a prior that vanishes there (inverse gamma) keeps the
posterior proper.

References
----------
Hobert, J. P. and Casella, G. (1996). The effect of improper priors on Gibbs sampling in hierarchical
linear mixed models. *JASA* 91(436), 1461-1473. Gelman, A. (2006). Prior distributions for variance
parameters in hierarchical models. *Bayesian Analysis* 1(3), 515-534.
"""

from __future__ import annotations

import numpy as np

from mlgibbs.priors import Flat, InverseGamma, Normal, Uniform

__all__ = ["num_flat", "check_proper_posterior", "check_residual_variation", "check_resolution"]

#: A residual sum of squares below this fraction of the total (about float64's rounding of a fit)
#: is an exact fit.
EXACT_FIT = 1e-24

#: Largest acceptable rounding error of a stored statistic, in posterior standard deviations.
MAX_ROUNDING = 0.05


def num_flat(prior, size: int) -> int:
    """How many of ``size`` coefficients a (resolved) coefficient prior leaves flat."""
    if isinstance(prior, Flat):
        return size
    if isinstance(prior, Normal):
        scale = np.broadcast_to(np.asarray(prior.scale, dtype=float), (size,))
        return int(np.sum(~np.isfinite(scale)))
    return 0


def check_proper_posterior(priors, *, n: int, p: int, q: int, num_groups: int | None,
                           group_name: str | None, response: str) -> None:
    """Raise a ValueError when the scale priors leave the posterior improper (module docstring)."""
    p0 = num_flat(priors.beta, p)
    q0 = num_flat(priors.gamma, q) if num_groups is not None else 0
    if num_groups is not None and isinstance(priors.sigma_alpha, Uniform) and num_groups - q0 < 2:
        raise ValueError(
            f"the posterior is improper: {num_groups} groups of {group_name!r} with {q0} flat group-level "
            f"coefficient(s) leave {num_groups - q0} degree(s) of freedom for sigma_alpha, and under the "
            "default uniform prior p(sigma_alpha | y) decays only like 1/sigma_alpha^"
            f"{num_groups - q0}, which does not integrate (at least 2 are needed; Gelman 2006). "
            "Give sigma_alpha a proper prior, e.g. priors={'sigma_alpha': HalfNormal(s)} with s a "
            "plausible spread of the group effects (or HalfCauchy(s)), or a Normal prior on gamma"
        )
    if isinstance(priors.sigma_y, Uniform):
        both = num_groups is not None and isinstance(priors.sigma_alpha, Uniform)
        need = 3 if both else 2
        dof = n - p0 - q0
        if dof < need:
            raise ValueError(
                f"the posterior is improper: {n} observations of {response!r} and {p0 + q0} flat "
                f"coefficients leave {dof} degree(s) of freedom, and under the uniform prior on "
                f"sigma_y{' and sigma_alpha' if both else ''} at least {need} are needed "
                "(Hobert & Casella 1996). Give sigma_y a proper prior, e.g. HalfNormal(s), or the "
                "coefficients Normal priors"
            )


def check_residual_variation(rss: float, total: float, dof: int, prior_sigma_y, *, response: str,
                             group_name: str | None) -> bool:
    """Raise a ValueError when ``y`` has no residual variation and the posterior of ``sigma_y`` is improper.

    ``rss`` is the residual sum of squares of the fixed-effects fit (group intercepts and predictors),
    ``total`` the sum of squares of ``y`` about its mean and ``dof`` the residual degrees of freedom.
    Returns whether the fit is exact (allowed only under an inverse-gamma prior on ``sigma_y``).
    """
    if total == 0.0:
        raise ValueError(
            f"the response {response!r} is constant: there is no variation to model, the residual "
            "standard deviation sigma_y would be 0 and the posterior is improper. Check the response "
            "column (a filter or a join may have left one value)"
        )
    if dof <= 0 or rss > EXACT_FIT * total:
        return False
    if isinstance(prior_sigma_y, InverseGamma):  # vanishes fast enough at 0: proper
        return True
    where = (f"within the groups of {group_name!r}" if group_name is not None else "")
    raise ValueError(
        f"the response {response!r} is fitted exactly by the "
        f"{'group intercepts and ' if group_name is not None else ''}predictors (residual sum of squares "
        f"{rss:.3g} of a total {total:.3g}, with {dof} residual degrees of freedom): sigma_y would be 0, "
        f"where the likelihood is unbounded, so the posterior is improper under a "
        f"{type(prior_sigma_y).__name__} prior on sigma_y. Check the response (is it constant "
        f"{where or 'given the predictors'}, or a copy of a predictor?); an InverseGamma prior on sigma_y "
        "vanishes at 0 and keeps the posterior proper"
    )


def check_resolution(sigma_hat: float, magnitudes: np.ndarray, dtype, *, response: str) -> None:
    """Raise a ValueError when ``dtype`` rounds statistics by more than :data:`MAX_ROUNDING` posterior sds.

    ``magnitudes`` are the sizes of the stored statistics in units of their sampling standard
    deviation times ``1 / sigma_hat`` (e.g. ``|ybar_j| sqrt(n_j)``, ``|b| sqrt(n)``, in the kernel's
    coordinates); a statistic of size ``v`` is stored with an error of about ``eps v``.
    """
    if sigma_hat <= 0 or magnitudes.size == 0:
        return
    eps = float(np.finfo(dtype).eps)
    worst = eps * float(np.max(magnitudes)) / sigma_hat
    if worst > MAX_ROUNDING:
        raise ValueError(
            f"{np.dtype(dtype).name} cannot resolve this posterior: the residual standard deviation of "
            f"{response!r} is {sigma_hat:.3g} (in centred units) while the statistics are stored to a "
            f"relative precision of {eps:.1g}, a rounding error of up to {worst:.2g} posterior standard "
            "deviations. Sample in float64: jax.config.update('jax_enable_x64', True) before building "
            "the model (or JAX_ENABLE_X64=1)"
        )

"""Prior distributions for the coefficient blocks and the scales.

Coefficients (``beta``, ``gamma``)
    :class:`Flat` (improper, the Gelman & Hill default) or independent :class:`Normal` (loc, scale).
    Both are Gaussian in the precision parametrisation (a flat prior has precision 0), so the
    coefficient updates are exact conjugate draws under either.

Scales (``sigma_y``, ``sigma_alpha``), and how the Gibbs sweep draws each one given the sum of
squares ``S`` over ``m`` terms (``m = n`` for ``sigma_y``, ``m = J`` for ``sigma_alpha``):

=========================  =====================================  ===============================
prior                      density                                draw
=========================  =====================================  ===============================
:class:`Uniform`           ``p(sigma) ∝ 1`` on (0, ∞) (G&H)       exact: ``S / chi2(m - 1)``
:class:`InverseGamma`      ``sigma^2 ~ InvGamma(a, b)``           exact: ``InvGamma(a + m/2, b + S/2)``
:class:`HalfStudentT`      ``sigma ~ t+(nu, s)``                  exact, auxiliary variable
:class:`HalfCauchy`        ``sigma ~ Cauchy+(0, s)`` (t, nu = 1)  exact, auxiliary variable
:class:`HalfNormal`        ``sigma ~ N+(0, s)``                   independence Metropolis-Hastings
=========================  =====================================  ===============================

The auxiliary-variable representation (Wand et al. 2011; Makalic & Schmidt 2016) is
``sigma^2 | a ~ InvGamma(nu/2, nu/a)``, ``a ~ InvGamma(1/2, 1/s^2)``, which makes
``sigma ~ t+(nu, s)``; both conditionals are inverse-gamma. Under the half-normal prior the
conditional of ``sigma^2`` is a generalised inverse Gaussian, updated by one independence
Metropolis-Hastings step whose inverse-gamma proposal has the target's mode and keeps its likelihood
factor (:func:`mlgibbs.conditionals.variance.draw_variance_gig`), which leaves it invariant. Any other
object with a ``log_prob(sigma)`` method is updated by one slice-sampling step (Neal 2003).
"""

from __future__ import annotations

import math
from typing import NamedTuple, Union

import jax.numpy as jnp
from jax.scipy.special import gammaln

__all__ = [
    "Flat",
    "Normal",
    "Uniform",
    "InverseGamma",
    "HalfNormal",
    "HalfCauchy",
    "HalfStudentT",
    "Priors",
    "CoefficientPrior",
    "ScalePrior",
]


class Flat(NamedTuple):
    """Improper flat prior on every coefficient of a block (Gaussian with precision 0)."""

    def log_prob(self, x):
        return jnp.zeros(jnp.shape(x)[:-1] if jnp.ndim(x) else (), jnp.result_type(x))

    def as_normal(self) -> "Normal":
        return Normal(0.0, math.inf)


class Normal(NamedTuple):
    """Independent ``Normal(loc, scale)`` on each coefficient of a block.

    ``loc`` and ``scale`` are scalars or arrays broadcastable to the block; ``scale = inf`` makes a
    coefficient flat.
    """

    loc: float = 0.0
    scale: float = 1.0

    def log_prob(self, x):
        loc = jnp.asarray(self.loc, jnp.result_type(x))
        scale = jnp.asarray(self.scale, jnp.result_type(x))
        finite = jnp.isfinite(scale)
        safe = jnp.where(finite, scale, 1.0)
        lp = -0.5 * ((x - loc) / safe) ** 2 - jnp.log(safe) - 0.5 * math.log(2 * math.pi)
        return jnp.sum(jnp.where(finite, lp, 0.0), axis=-1)

    def as_normal(self) -> "Normal":
        return self


class Uniform(NamedTuple):
    """Improper uniform prior on the standard deviation, ``p(sigma) ∝ 1`` (Gelman & Hill's default).

    The conditional of the variance given the sum of squares ``S`` of ``m`` terms is
    ``sigma^2 = S / chi2(m - 1)``; it needs ``m >= 2``.
    """

    def log_prob(self, sigma):
        return jnp.zeros_like(sigma)


class InverseGamma(NamedTuple):
    """``sigma^2 ~ InvGamma(concentration, rate)``, conjugate: ``InvGamma(a + m/2, b + S/2)``."""

    concentration: float = 1.0
    rate: float = 1.0

    def log_prob(self, sigma):
        # density of sigma implied by the inverse-gamma on sigma^2 (Jacobian 2 sigma)
        a, b = self.concentration, self.rate
        var = sigma**2
        return (
            a * jnp.log(b) - gammaln(a) - (a + 1) * jnp.log(var) - b / var + jnp.log(2 * sigma)
        )


class HalfStudentT(NamedTuple):
    """``sigma ~ t+(df, scale)``, half Student-t; drawn exactly through an auxiliary variable."""

    df: float = 3.0
    scale: float = 1.0

    def log_prob(self, sigma):
        nu, s = self.df, self.scale
        return (
            math.log(2.0)
            + gammaln((nu + 1) / 2)
            - gammaln(nu / 2)
            - 0.5 * math.log(nu * math.pi)
            - math.log(s)
            - (nu + 1) / 2 * jnp.log1p((sigma / s) ** 2 / nu)
        )


class HalfCauchy(NamedTuple):
    """``sigma ~ Cauchy+(0, scale)`` (half-t with one degree of freedom; Gelman 2006)."""

    scale: float = 1.0

    def log_prob(self, sigma):
        return HalfStudentT(1.0, self.scale).log_prob(sigma)

    def as_student_t(self) -> HalfStudentT:
        return HalfStudentT(1.0, self.scale)


class HalfNormal(NamedTuple):
    """``sigma ~ N+(0, scale)``; the variance is updated by an independence Metropolis-Hastings step."""

    scale: float = 1.0

    def log_prob(self, sigma):
        s = self.scale
        return 0.5 * math.log(2 / math.pi) - math.log(s) - 0.5 * (sigma / s) ** 2


CoefficientPrior = Union[Flat, Normal]
ScalePrior = Union[Uniform, InverseGamma, HalfNormal, HalfCauchy, HalfStudentT]


class Priors(NamedTuple):
    """Priors of the varying-intercept model, one per block.

    The defaults are Gelman & Hill's: flat on the coefficients, uniform on the standard deviations.
    """

    beta: CoefficientPrior = Flat()
    gamma: CoefficientPrior = Flat()
    sigma_y: ScalePrior = Uniform()
    sigma_alpha: ScalePrior = Uniform()

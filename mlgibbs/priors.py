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

import jax
import jax.numpy as jnp
import numpy as np
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
    "LocationPrior",
    "flat_location_prior",
    "scale_prior",
    "check_prior",
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


class LocationPrior(NamedTuple):
    r"""The joint Gaussian prior of the location vector ``theta = (beta, gamma)`` as a kernel sees it.

    .. math:: \log p(\theta) = -\tfrac12 (\theta - m)' P (\theta - m) + c

    The user's priors are independent per coefficient (:class:`Flat` or :class:`Normal`); a model
    maps them into the coordinates its kernels work in (centred, whitened: see
    :mod:`mlgibbs.models.standardize`), where they become one dense Gaussian in canonical form, with
    precision 0 along flat directions. It lives in the data pytree (``data.location_prior``), so its
    numbers are traced, not compiled in: a model with other prior values reuses compiled programs.

    Attributes
    ----------
    mean
        ``m``, shape ``(d,)`` (``d = p + q``); any value along flat directions.
    precision
        ``P``, shape ``(d, d)``, symmetric positive semi-definite (0 for a flat prior).
    log_normalizer
        ``c``, shape ``()``: the log normalising constant of the proper part in the *user's*
        coordinates (``sum_k -log s_k - log(2 pi)/2`` over coefficients with a Normal prior), so that
        :func:`mlgibbs.log_joint` is the log density of the user's parametrisation.
    """

    mean: jax.Array
    precision: jax.Array
    log_normalizer: jax.Array

    def log_prob(self, theta):
        r = theta - self.mean
        return self.log_normalizer - 0.5 * jnp.einsum("...i,ij,...j->...", r, self.precision, r)


def flat_location_prior(size: int, dtype) -> LocationPrior:
    """A flat prior on ``size`` location coefficients (precision 0)."""
    return LocationPrior(jnp.zeros((size,), dtype), jnp.zeros((size, size), dtype), jnp.zeros((), dtype))


def scale_prior(prior, factor: float):
    """The prior of ``sigma / factor`` when ``sigma`` has prior ``prior`` (``factor > 0``).

    Every scale family here is closed under scaling: ``Uniform`` stays uniform, the scale parameter
    of the half-normal, half-t and half-Cauchy is divided by ``factor``, and the inverse-gamma rate on
    ``sigma^2`` by ``factor^2``. ``factor = 1`` returns ``prior`` itself.
    """
    if factor == 1.0:
        return prior
    if isinstance(prior, Uniform):
        return prior
    if isinstance(prior, InverseGamma):
        return InverseGamma(prior.concentration, prior.rate / factor**2)
    if isinstance(prior, HalfCauchy):
        return HalfCauchy(prior.scale / factor)
    if isinstance(prior, HalfStudentT):
        return HalfStudentT(prior.df, prior.scale / factor)
    if isinstance(prior, HalfNormal):
        return HalfNormal(prior.scale / factor)
    raise TypeError(f"cannot rescale the scale prior {prior!r}; expected one of Uniform, InverseGamma, "
                    "HalfNormal, HalfCauchy, HalfStudentT")


def _positive(value, what: str, allow_inf: bool = False) -> None:
    arr = np.asarray(value, dtype=float)
    ok = (arr > 0) & (np.isfinite(arr) | allow_inf) & ~np.isnan(arr)
    if not np.all(ok):
        raise ValueError(f"{what} must be positive{'' if allow_inf else ' and finite'}, got {value!r}")


def check_prior(prior, block: str) -> None:
    """Raise a ValueError naming ``block`` when a prior's parameters are out of range.

    A non-positive scale, degrees of freedom, shape or rate, or a NaN, would make the prior improper
    or undefined and the draws meaningless; it is refused when the model is built.
    """
    if isinstance(prior, Normal):
        loc = np.asarray(prior.loc, dtype=float)
        if not np.all(np.isfinite(loc)):
            raise ValueError(f"priors[{block!r}]: Normal loc must be finite, got {prior.loc!r}")
        _positive(prior.scale, f"priors[{block!r}]: Normal scale (inf for a flat coefficient)", allow_inf=True)
    elif isinstance(prior, InverseGamma):
        _positive(prior.concentration, f"priors[{block!r}]: InverseGamma concentration")
        _positive(prior.rate, f"priors[{block!r}]: InverseGamma rate")
    elif isinstance(prior, HalfStudentT):
        _positive(prior.df, f"priors[{block!r}]: HalfStudentT df")
        _positive(prior.scale, f"priors[{block!r}]: HalfStudentT scale")
    elif isinstance(prior, (HalfCauchy, HalfNormal)):
        _positive(prior.scale, f"priors[{block!r}]: {type(prior).__name__} scale")


class Priors(NamedTuple):
    """Priors of the varying-intercept model, one per block.

    The defaults are Gelman & Hill's: flat on the coefficients, uniform on the standard deviations.
    """

    beta: CoefficientPrior = Flat()
    gamma: CoefficientPrior = Flat()
    sigma_y: ScalePrior = Uniform()
    sigma_alpha: ScalePrior = Uniform()

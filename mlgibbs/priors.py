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

Covariance matrices (varying intercept and slopes, ``b_g ~ N(mu_g, Sigma)``, ``Sigma`` of size
``d x d``), drawn given the scatter matrix ``S = sum_g (b_g - mu_g)(b_g - mu_g)'`` of ``J`` groups
(:func:`mlgibbs.conditionals.covariance.draw_covariance`):

=========================  =======================================  ================================
prior                      density                                  draw
=========================  =======================================  ================================
:class:`InverseWishart`    ``Sigma ~ IW(nu, Psi)``                  exact: ``IW(nu + J, Psi + S)``
:class:`HuangWand`         ``sqrt(Sigma_kk) ~ t+(nu, A_k)``,        exact, auxiliary variables
                           correlations uniform at ``nu = 2``
=========================  =======================================  ================================

Huang & Wand (2013) write ``Sigma | a ~ IW(nu + d - 1, 2 nu diag(1/a))`` with independent
``a_k ~ InvGamma(1/2, 1/A_k^2)``; given ``Sigma`` the ``a_k`` are inverse-gamma and given ``a`` the
prior is conjugate, the matrix analogue of the half-t representation above.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Union

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln, multigammaln

__all__ = [
    "Flat",
    "Normal",
    "Uniform",
    "InverseGamma",
    "Gamma",
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
    "InverseWishart",
    "HuangWand",
    "CovariancePrior",
    "check_covariance_prior",
    "rescale_covariance_prior",
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


class Gamma(NamedTuple):
    """``x ~ Gamma(concentration, rate)`` (mean ``concentration / rate``): the default prior of the negative
    binomial's dispersion ``r`` is ``Gamma(0.01, 0.01)`` (brms's default for its ``shape``)."""

    concentration: float = 0.01
    rate: float = 0.01

    def log_prob(self, x):
        a, b = self.concentration, self.rate
        return a * math.log(b) - math.lgamma(a) + (a - 1.0) * jnp.log(x) - b * x


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
    elif isinstance(prior, Gamma):
        _positive(prior.concentration, f"priors[{block!r}]: Gamma concentration")
        _positive(prior.rate, f"priors[{block!r}]: Gamma rate")
    elif isinstance(prior, HalfStudentT):
        _positive(prior.df, f"priors[{block!r}]: HalfStudentT df")
        _positive(prior.scale, f"priors[{block!r}]: HalfStudentT scale")
    elif isinstance(prior, (HalfCauchy, HalfNormal)):
        _positive(prior.scale, f"priors[{block!r}]: {type(prior).__name__} scale")
    elif isinstance(prior, InverseWishart):
        _positive(prior.df, f"priors[{block!r}]: InverseWishart df")
        _check_wishart_scale(prior.scale, f"priors[{block!r}]: InverseWishart scale")
    elif isinstance(prior, HuangWand):
        _positive(prior.df, f"priors[{block!r}]: HuangWand df")
        if np.ndim(prior.scale) > 1:
            raise ValueError(f"priors[{block!r}]: HuangWand scale must be a scalar or a vector (one A_k "
                             f"per coefficient), got shape {np.shape(prior.scale)}")
        _positive(prior.scale, f"priors[{block!r}]: HuangWand scale")


class Priors(NamedTuple):
    """Priors of the varying-intercept model, one per block.

    The defaults are Gelman & Hill's: flat on the coefficients, uniform on the standard deviations.
    """

    beta: CoefficientPrior = Flat()
    gamma: CoefficientPrior = Flat()
    sigma_y: ScalePrior = Uniform()
    sigma_alpha: ScalePrior = Uniform()


# ----------------------------------------------------------------------------- covariance matrices
def _as_matrix(scale, d: int, xp=np) -> Any:
    """``scale`` (scalar, length-``d`` vector of a diagonal, or ``(d, d)`` matrix) as a ``(d, d)`` matrix."""
    scale = xp.asarray(scale)
    if scale.ndim == 0:
        return scale * xp.eye(d, dtype=scale.dtype)
    if scale.ndim == 1:
        if scale.shape[0] != d:
            raise ValueError(f"expected a scale vector of length d = {d}, got length {scale.shape[0]}")
        return xp.diag(scale)
    if scale.shape != (d, d):
        raise ValueError(f"expected a ({d}, {d}) scale matrix, got shape {scale.shape}")
    return scale


class InverseWishart(NamedTuple):
    r"""Inverse-Wishart prior :math:`\Sigma \sim \mathrm{IW}(\nu, \Psi)` on a ``d x d`` covariance matrix.

    .. math::

        p(\Sigma) = \frac{|\Psi|^{\nu/2}}{2^{\nu d/2}\, \Gamma_d(\nu/2)}\,
                    |\Sigma|^{-(\nu + d + 1)/2} \exp\!\big(-\tfrac12 \operatorname{tr}(\Psi \Sigma^{-1})\big),
        \qquad \nu > d - 1,

    so that :math:`\Sigma^{-1} \sim \mathrm{Wishart}(\nu, \Psi^{-1})`,
    :math:`E[\Sigma] = \Psi / (\nu - d - 1)` for :math:`\nu > d + 1`, and each variance
    :math:`\Sigma_{kk} \sim \mathrm{InvGamma}((\nu - d + 1)/2,\ \Psi_{kk}/2)`. Conjugate for Gaussian
    deviations: given :math:`J` of them with scatter matrix :math:`S`, :math:`\Sigma \sim \mathrm{IW}(\nu + J, \Psi + S)`.

    Attributes
    ----------
    df
        :math:`\nu`, the degrees of freedom (``> d - 1``; see :func:`check_covariance_prior`).
    scale
        :math:`\Psi`: a positive scalar (``scale * I``), a positive length-``d`` vector (a diagonal
        matrix) or a symmetric positive definite ``(d, d)`` matrix.

    Examples
    --------
    >>> from mlgibbs.priors import InverseWishart
    >>> prior = InverseWishart(df=4.0, scale=[1.0, 0.25])   # Psi = diag(1, 0.25), d = 2
    >>> prior.scale_matrix(2)
    array([[1.  , 0.  ],
           [0.  , 0.25]])
    """

    df: float
    scale: Any = 1.0

    def scale_matrix(self, d: int) -> np.ndarray:
        """:math:`\\Psi` as a ``(d, d)`` NumPy float64 array."""
        return np.array(_as_matrix(np.asarray(self.scale, dtype=float), d), dtype=float)

    def log_prob(self, covariance):
        """Normalised log density at ``covariance`` (shape ``(..., d, d)``, symmetric positive definite)."""
        covariance = jnp.asarray(covariance)
        dtype = jnp.result_type(covariance, float)
        covariance = covariance.astype(dtype)
        d = covariance.shape[-1]
        nu = self.df
        psi = jnp.asarray(_as_matrix(self.scale, d, jnp), dtype)
        chol_psi = jnp.linalg.cholesky(psi)
        chol = jnp.linalg.cholesky(covariance)
        log_det_psi = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol_psi)))
        log_det = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)
        # tr(Psi Sigma^{-1}) = ||L^{-1} C||_F^2 with Sigma = L L', Psi = C C'
        whitened = jax.scipy.linalg.solve_triangular(chol, jnp.broadcast_to(chol_psi, chol.shape), lower=True)
        trace = jnp.sum(whitened**2, axis=(-2, -1))
        return (
            0.5 * nu * log_det_psi
            - 0.5 * nu * d * math.log(2.0)
            - multigammaln(0.5 * nu, d)
            - 0.5 * (nu + d + 1) * log_det
            - 0.5 * trace
        )

    def log_prob_from_precision(self, precision, log_det):
        r""":meth:`log_prob` from :math:`\Sigma^{-1}` (``(..., d, d)``) and :math:`\log|\Sigma|` (``(...)``).

        No factorisation (elementwise operations only): for callers that already have both, such as
        :func:`mlgibbs.logdensity.mixed_log_joint`. :math:`\log|\Psi|` is computed once, in NumPy.
        """
        precision = jnp.asarray(precision)
        dtype = jnp.result_type(precision, float)
        d = precision.shape[-1]
        nu = self.df
        psi = self.scale_matrix(d)
        _, log_det_psi = np.linalg.slogdet(psi)
        trace = jnp.sum(jnp.asarray(psi, dtype) * precision, axis=(-2, -1))   # tr(Psi Sigma^{-1}), Psi symmetric
        constant = 0.5 * nu * float(log_det_psi) - 0.5 * nu * d * math.log(2.0) - _log_multigamma(0.5 * nu, d)
        return constant - 0.5 * (nu + d + 1) * log_det - 0.5 * trace


class HuangWand(NamedTuple):
    r"""Huang & Wand (2013) prior on a ``d x d`` covariance matrix: half-t standard deviations.

    Hierarchically, with independent auxiliary variables :math:`a_1, \dots, a_d`,

    .. math::

        \Sigma \mid a \sim \mathrm{IW}\big(\nu + d - 1,\ 2\nu\, \mathrm{diag}(1/a_1, \dots, 1/a_d)\big),
        \qquad a_k \sim \mathrm{InvGamma}(1/2,\ 1/A_k^2).

    Marginally each standard deviation :math:`\sqrt{\Sigma_{kk}} \sim t^+(\nu, A_k)`, and for
    :math:`\nu = 2` each correlation is uniform on :math:`(-1, 1)`. Integrating out :math:`a`,

    .. math::

        p(\Sigma) \propto |\Sigma|^{-(\nu + 2d)/2}
                  \prod_{k=1}^d \big(\nu (\Sigma^{-1})_{kk} + 1/A_k^2\big)^{-(\nu + d)/2}.

    Attributes
    ----------
    df
        :math:`\nu > 0` (2 for uniform correlations).
    scale
        :math:`A_k > 0`, the scale of each half-t: a scalar (the same for all) or a length-``d`` vector.

    References
    ----------
    Huang, A. and Wand, M. P. (2013). Simple marginally noninformative prior distributions for
    covariance matrices. *Bayesian Analysis* 8(2), 439-452.

    Examples
    --------
    >>> from mlgibbs.priors import HuangWand
    >>> HuangWand(df=2.0, scale=2.5).scales(3)
    array([2.5, 2.5, 2.5])
    """

    df: float = 2.0
    scale: Any = 1.0

    def scales(self, d: int) -> np.ndarray:
        """:math:`(A_1, \\dots, A_d)` as a NumPy float64 array of shape ``(d,)``."""
        scale = np.asarray(self.scale, dtype=float)
        if scale.ndim == 1 and scale.shape[0] != d:
            raise ValueError(f"expected a HuangWand scale vector of length d = {d}, got length {scale.shape[0]}")
        if scale.ndim > 1:
            raise ValueError(f"expected a scalar or vector HuangWand scale, got shape {scale.shape}")
        return np.array(np.broadcast_to(scale, (d,)), dtype=float)

    def log_prob(self, covariance):
        r"""Normalised log density at ``covariance`` (shape ``(..., d, d)``), :math:`a` integrated out.

        With :math:`m = \nu + d - 1` and :math:`s_k = (\Sigma^{-1})_{kk}`:

        .. math::

            \log p(\Sigma) = \sum_k \Big[\tfrac m2 \log(2\nu) - \log A_k - \tfrac12 \log\pi
                + \log\Gamma\big(\tfrac{\nu + d}{2}\big)
                - \tfrac{\nu + d}{2} \log(\nu s_k + A_k^{-2})\Big]
                - \tfrac{m d}{2} \log 2 - \log\Gamma_d(m/2) - \tfrac{\nu + 2d}{2} \log|\Sigma|.
        """
        covariance = jnp.asarray(covariance)
        dtype = jnp.result_type(covariance, float)
        covariance = covariance.astype(dtype)
        d = covariance.shape[-1]
        nu = self.df
        m = nu + d - 1
        inv_sq = jnp.asarray(1.0 / self.scales(d) ** 2, dtype)
        chol = jnp.linalg.cholesky(covariance)
        log_det = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)
        eye = jnp.broadcast_to(jnp.eye(d, dtype=dtype), chol.shape)
        inv_chol = jax.scipy.linalg.solve_triangular(chol, eye, lower=True)
        precision_diag = jnp.sum(inv_chol**2, axis=-2)  # (Sigma^{-1})_kk = ||column k of L^{-1}||^2
        per_k = (
            0.5 * m * jnp.log(2.0 * nu)
            + 0.5 * jnp.log(inv_sq)
            - 0.5 * math.log(math.pi)
            + gammaln(0.5 * (nu + d))
            - 0.5 * (nu + d) * jnp.log(nu * precision_diag + inv_sq)
        )
        return (
            jnp.sum(per_k, axis=-1)
            - 0.5 * m * d * math.log(2.0)
            - multigammaln(0.5 * m, d)
            - 0.5 * (nu + 2 * d) * log_det
        )

    def log_prob_from_precision(self, precision, log_det):
        r""":meth:`log_prob` from :math:`\Sigma^{-1}` (``(..., d, d)``) and :math:`\log|\Sigma|` (``(...)``).

        No factorisation (elementwise operations only): for callers that already have both, such as
        :func:`mlgibbs.logdensity.mixed_log_joint`.
        """
        precision = jnp.asarray(precision)
        dtype = jnp.result_type(precision, float)
        d = precision.shape[-1]
        nu = self.df
        m = nu + d - 1
        inv_sq = 1.0 / self.scales(d) ** 2
        precision_diag = jnp.diagonal(precision, axis1=-2, axis2=-1)
        constant = (float(np.sum(0.5 * m * math.log(2.0 * nu) + 0.5 * np.log(inv_sq) - 0.5 * math.log(math.pi)
                                 + math.lgamma(0.5 * (nu + d))))
                    - 0.5 * m * d * math.log(2.0) - _log_multigamma(0.5 * m, d))
        return (constant
                - 0.5 * (nu + d) * jnp.sum(jnp.log(nu * precision_diag + jnp.asarray(inv_sq, dtype)), axis=-1)
                - 0.5 * (nu + 2 * d) * log_det)


CovariancePrior = Union[InverseWishart, HuangWand]


def _log_multigamma(a: float, d: int) -> float:
    """``log Gamma_d(a)`` in float64 on the host (a constant of the densities above)."""
    return 0.25 * d * (d - 1) * math.log(math.pi) + sum(math.lgamma(a - 0.5 * j) for j in range(d))


def _check_wishart_scale(scale, what: str, d: int | None = None) -> None:
    """A positive scalar, a positive vector, or a symmetric positive definite matrix (of size ``d``)."""
    arr = np.asarray(scale, dtype=float)
    if arr.ndim <= 1:
        _positive(arr, what)
        if d is not None and arr.ndim == 1 and arr.shape[0] != d:
            raise ValueError(f"{what}: expected a vector of length d = {d}, got length {arr.shape[0]}")
        return
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ValueError(f"{what}: expected a scalar, a vector or a square matrix, got shape {arr.shape}")
    if d is not None and arr.shape != (d, d):
        raise ValueError(f"{what}: expected a ({d}, {d}) matrix, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what}: expected finite entries, got {scale!r}")
    if not np.allclose(arr, arr.T, rtol=1e-7, atol=0.0):
        raise ValueError(f"{what}: expected a symmetric matrix, got {scale!r}")
    try:
        np.linalg.cholesky(arr)
    except np.linalg.LinAlgError:
        raise ValueError(f"{what}: expected a positive definite matrix, got eigenvalues "
                         f"{np.linalg.eigvalsh(arr)!r}") from None


def check_covariance_prior(prior, d: int, block: str) -> None:
    """Raise a ValueError naming ``block`` when a covariance prior is improper or does not fit ``d``.

    On top of :func:`check_prior`: the inverse-Wishart needs ``df > d - 1`` (else it is improper), and
    every scale must have ``d`` entries (a vector) or be ``(d, d)`` (a matrix, inverse-Wishart only).
    Any other object raises a TypeError naming ``block``.
    """
    if not isinstance(prior, (InverseWishart, HuangWand)):
        raise TypeError(f"priors[{block!r}]: expected an InverseWishart or HuangWand covariance prior, "
                        f"got {prior!r}")
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
        raise ValueError(f"priors[{block!r}]: expected the dimension d to be a positive integer, got {d!r}")
    check_prior(prior, block)
    name = type(prior).__name__
    if isinstance(prior, InverseWishart):
        if not float(prior.df) > d - 1:
            raise ValueError(f"priors[{block!r}]: InverseWishart df must be > d - 1 = {d - 1} for a "
                             f"{d} x {d} covariance, got {prior.df!r}")
        _check_wishart_scale(prior.scale, f"priors[{block!r}]: {name} scale", d)
    else:
        scale = np.asarray(prior.scale, dtype=float)
        if scale.ndim == 1 and scale.shape[0] != d:
            raise ValueError(f"priors[{block!r}]: {name} scale: expected a vector of length d = {d}, "
                             f"got length {scale.shape[0]}")


def rescale_covariance_prior(prior, factors):
    r"""The prior of :math:`D^{-1} \Sigma D^{-1}`, :math:`D = \mathrm{diag}(f)`, when :math:`\Sigma` has ``prior``.

    Both families are closed under this map, which a model uses when it rescales predictor columns
    (the varying coefficients, and so their covariance, are rescaled with them):

    * :class:`InverseWishart` ``(nu, Psi)`` :math:`\to` ``(nu, D^{-1} Psi D^{-1})`` (a scalar or vector
      scale stays diagonal: :math:`\Psi_{kk} / f_k^2`);
    * :class:`HuangWand` ``(nu, A)`` :math:`\to` ``(nu, A_k / f_k)``: the standard deviations are
      divided by :math:`f_k`, and the auxiliary :math:`a_k` becomes :math:`a_k f_k^2`, again
      :math:`\mathrm{InvGamma}(1/2, (f_k / A_k)^2)`.

    Parameters
    ----------
    prior
        An :class:`InverseWishart` or :class:`HuangWand`.
    factors
        :math:`f`, positive and finite, shape ``(d,)``. All ones returns ``prior`` itself.

    Returns
    -------
    The prior of the same family with rescaled scale (NumPy float64 arrays).
    """
    f = np.asarray(factors, dtype=float)
    if f.ndim != 1:
        raise ValueError(f"expected a vector of factors (shape (d,)), got shape {f.shape}")
    _positive(f, "covariance rescaling factors")
    d = f.shape[0]
    if np.all(f == 1.0):
        return prior
    if isinstance(prior, InverseWishart):
        scale = np.asarray(prior.scale, dtype=float)
        if scale.ndim <= 1:
            return InverseWishart(prior.df, np.broadcast_to(scale, (d,)) / f**2)
        return InverseWishart(prior.df, prior.scale_matrix(d) / np.outer(f, f))
    if isinstance(prior, HuangWand):
        return HuangWand(prior.df, prior.scales(d) / f)
    raise TypeError(f"cannot rescale the covariance prior {prior!r}; expected InverseWishart or HuangWand")

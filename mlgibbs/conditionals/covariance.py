r"""Conditional draw of a covariance matrix given Gaussian deviations, for each covariance prior.

The covariance update of a varying-coefficient term reduces to this: ``J`` deviations
:math:`r_g = b_g - \mu_g \sim N(0, \Sigma)` of dimension ``d``, with scatter matrix
:math:`S = \sum_g r_g r_g'`, give the likelihood

.. math:: |\Sigma|^{-J/2} \exp\!\big(-\tfrac12 \operatorname{tr}(S \Sigma^{-1})\big),

and the prior on :math:`\Sigma` decides the draw (see :mod:`mlgibbs.priors`):

* :class:`~mlgibbs.priors.InverseWishart` ``(nu, Psi)``: :math:`\Sigma \sim \mathrm{IW}(\nu + J, \Psi + S)`, exact;
* :class:`~mlgibbs.priors.HuangWand` ``(nu, A)``: auxiliaries redrawn given :math:`\Sigma`, then
  :math:`\Sigma` given them, both exact (a two-block Gibbs cycle).

Inverse-Wishart draws use the Bartlett decomposition of the Wishart precision (Bartlett 1933;
Smith & Hocking 1972) with an *upper* triangular Bartlett factor, so that the lower Cholesky factor
of :math:`\Sigma` comes out of one triangular solve, and :math:`\Sigma^{-1}` and :math:`\log|\Sigma|`
with it (:class:`Covariance`), without inverting a matrix.

References
----------
Huang, A. and Wand, M. P. (2013). Simple marginally noninformative prior distributions for
covariance matrices. *Bayesian Analysis* 8(2), 439-452.

Smith, W. B. and Hocking, R. R. (1972). Algorithm AS 53: Wishart variate generator. *Journal of the
Royal Statistical Society C* 21(3), 341-345.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular
from jax.typing import ArrayLike

from mlgibbs import random
from mlgibbs.priors import CovariancePrior, HuangWand, InverseWishart

__all__ = [
    "Covariance",
    "covariance_factors",
    "inverse_wishart",
    "inverse_wishart_factors",
    "draw_covariance",
    "draw_covariance_factors",
    "scatter_matrix",
]


class Covariance(NamedTuple):
    r"""A covariance matrix with the factors a Gaussian conditional needs.

    Attributes
    ----------
    matrix
        :math:`\Sigma`, shape ``(d, d)``, exactly symmetric.
    cholesky
        :math:`L`, lower triangular with a positive diagonal, :math:`\Sigma = L L'`.
    precision
        :math:`\Sigma^{-1}`, shape ``(d, d)``, exactly symmetric.
    log_det
        :math:`\log|\Sigma| = 2 \sum_k \log L_{kk}`, shape ``()``.
    """

    matrix: jax.Array
    cholesky: jax.Array
    precision: jax.Array
    log_det: jax.Array


def _symmetrize(a: jax.Array) -> jax.Array:
    return 0.5 * (a + jnp.swapaxes(a, -1, -2))


def _dtype(*values) -> jnp.dtype:
    dtype = jnp.result_type(*values)
    return dtype if jnp.issubdtype(dtype, jnp.floating) else jnp.result_type(float)


def scatter_matrix(deviations: ArrayLike) -> jax.Array:
    r"""The scatter matrix :math:`S = \sum_g r_g r_g' = R'R` of deviations ``R`` of shape ``(J, d)``."""
    deviations = jnp.asarray(deviations)
    return _symmetrize(deviations.T @ deviations)


def covariance_factors(matrix: ArrayLike) -> Covariance:
    r""":class:`Covariance` of a symmetric positive definite ``matrix`` (one Cholesky factorisation).

    :math:`\Sigma^{-1} = L^{-T} L^{-1}`, with :math:`L^{-1}` from a triangular solve. Use it for a
    state's initial covariance; the draws of this module return their factors directly.
    """
    matrix = _symmetrize(jnp.asarray(matrix))
    chol = jnp.linalg.cholesky(matrix)
    inv_chol = solve_triangular(chol, jnp.eye(matrix.shape[-1], dtype=matrix.dtype), lower=True)
    precision = _symmetrize(inv_chol.T @ inv_chol)
    log_det = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol)))
    return Covariance(matrix, chol, precision, log_det)


def inverse_wishart_factors(rng_key: jax.Array, df: ArrayLike, scale: ArrayLike) -> Covariance:
    r"""One exact draw of :math:`\Sigma \sim \mathrm{IW}(\nu, \Psi)`, with its factors.

    Let :math:`\Psi = C C'` (lower Cholesky) and :math:`U` upper triangular with independent entries

    .. math:: U_{kk} = \sqrt{\chi^2_{\nu - d + k}} \ (k = 1, \dots, d), \qquad
              U_{kl} \sim N(0, 1) \ (k < l).

    Then :math:`W = C^{-T} U U' C^{-1} \sim \mathrm{Wishart}(\nu, \Psi^{-1})` (Bartlett's decomposition,
    with the coordinates reversed, which leaves the Wishart law unchanged), and
    :math:`\Sigma = W^{-1} = L L'` with

    .. math:: L = (U^{-1} C')', \qquad \Sigma^{-1} = R R', \quad R = C'^{-1} U, \qquad
              \log|\Sigma| = 2 \sum_k (\log C_{kk} - \log U_{kk}),

    :math:`L` lower triangular: the Cholesky factor of :math:`\Sigma`, from one triangular solve.
    The :math:`d` chi-square variates are exact (:func:`mlgibbs.random.chi2`, ``vmap``-ed over keys).

    Parameters
    ----------
    rng_key
        PRNG key.
    df
        :math:`\nu > d - 1`, a scalar; may be traced (e.g. ``prior_df + count``).
    scale
        :math:`\Psi`, a symmetric positive definite ``(d, d)`` matrix; may be traced. Its floating
        dtype is the dtype of the draw.

    Returns
    -------
    Covariance
        ``matrix`` :math:`\Sigma` (symmetrised), ``cholesky`` :math:`L`, ``precision``
        :math:`\Sigma^{-1}` (symmetrised), ``log_det`` :math:`\log|\Sigma|`.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from mlgibbs.conditionals.covariance import inverse_wishart_factors
    >>> draw = inverse_wishart_factors(jax.random.key(0), 5.0, jnp.eye(2))
    >>> draw.matrix.shape, draw.log_det.shape
    ((2, 2), ())
    """
    scale = jnp.asarray(scale)
    dtype = _dtype(scale)
    scale = scale.astype(dtype)
    if scale.ndim != 2 or scale.shape[0] != scale.shape[1]:
        raise ValueError(f"expected a square (d, d) scale matrix, got shape {scale.shape}")
    d = scale.shape[0]
    key_chi2, key_normal = jax.random.split(rng_key)
    dfs = jnp.asarray(df, dtype) - d + jnp.arange(1, d + 1, dtype=dtype)
    chi2 = jax.vmap(random.chi2, (0, 0, None))(jax.random.split(key_chi2, d), dfs, dtype)
    normal = jax.random.normal(key_normal, (d, d), dtype)
    upper = jnp.triu(normal, 1) + jnp.diag(jnp.sqrt(chi2))
    chol_scale = jnp.linalg.cholesky(_symmetrize(scale))
    chol = solve_triangular(upper, chol_scale.T, lower=False).T  # (U^{-1} C')', lower triangular
    root_precision = solve_triangular(chol_scale.T, upper, lower=False)  # C'^{-1} U, upper triangular
    log_det = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol_scale))) - jnp.sum(jnp.log(chi2))
    return Covariance(
        matrix=_symmetrize(chol @ chol.T),
        cholesky=chol,
        precision=_symmetrize(root_precision @ root_precision.T),
        log_det=log_det,
    )


def inverse_wishart(rng_key: jax.Array, df: ArrayLike, scale: ArrayLike) -> jax.Array:
    r"""One exact draw of :math:`\Sigma \sim \mathrm{IW}(\nu, \Psi)`, density
    :math:`\propto |\Sigma|^{-(\nu + d + 1)/2} \exp(-\operatorname{tr}(\Psi \Sigma^{-1})/2)`.

    The ``matrix`` of :func:`inverse_wishart_factors` (see there for the method): shape ``(d, d)``,
    dtype of ``scale``, exactly symmetric.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from mlgibbs.conditionals.covariance import inverse_wishart
    >>> keys = jax.random.split(jax.random.key(0), 1000)
    >>> draws = jax.vmap(inverse_wishart, (0, None, None))(keys, 6.0, jnp.eye(3))   # mean I / 2
    """
    return inverse_wishart_factors(rng_key, df, scale).matrix


def draw_covariance_factors(
    rng_key: jax.Array, prior: CovariancePrior, scatter: jax.Array, count: ArrayLike, covariance: jax.Array
) -> Covariance:
    r"""Draw :math:`\Sigma` from :math:`p(\Sigma \mid S, J) \propto p(\Sigma)\, |\Sigma|^{-J/2}
    \exp(-\tfrac12 \operatorname{tr}(S \Sigma^{-1}))`, with its factors.

    * :class:`~mlgibbs.priors.InverseWishart` ``(nu, Psi)``: conjugate,
      :math:`\Sigma \sim \mathrm{IW}(\nu + J,\ \Psi + S)` (exact; ``covariance`` is not used).
    * :class:`~mlgibbs.priors.HuangWand` ``(nu, A)``: with the auxiliaries of its hierarchical form,
      :math:`\Sigma \mid a \sim \mathrm{IW}(\nu + d - 1, 2\nu\,\mathrm{diag}(1/a))`,
      :math:`a_k \sim \mathrm{InvGamma}(1/2, 1/A_k^2)`, first

      .. math:: a_k \mid \Sigma \sim \mathrm{InvGamma}\big(\tfrac{\nu + d}{2},\
                \nu\, (\Sigma^{-1})_{kk} + 1/A_k^2\big) \quad \text{independently},

      given the current :math:`\Sigma` (``covariance``), then

      .. math:: \Sigma \mid a, S \sim \mathrm{IW}\big(\nu + d - 1 + J,\ 2\nu\,\mathrm{diag}(1/a) + S\big).

      An exact two-block Gibbs cycle on :math:`(a, \Sigma)`; since :math:`a` is redrawn from its full
      conditional before it is used, it is not kept in the state (as for the half-t scale prior in
      :func:`mlgibbs.conditionals.variance.draw_variance`). The cycle leaves
      :math:`p(\Sigma \mid S, J)` invariant.

    Parameters
    ----------
    rng_key
        PRNG key.
    prior
        The prior on :math:`\Sigma`; its parameters are static Python/NumPy values (compiled in).
        Validate it first with :func:`mlgibbs.priors.check_covariance_prior`.
    scatter
        :math:`S`, shape ``(d, d)``, symmetric positive semi-definite (``0`` for no data); its
        floating dtype is the dtype of the draw.
    count
        :math:`J`, the number of deviations in :math:`S`; may be a traced scalar.
    covariance
        The current :math:`\Sigma`, shape ``(d, d)`` (used by :class:`~mlgibbs.priors.HuangWand`).

    Returns
    -------
    Covariance
        The new :math:`\Sigma` and its factors (see :func:`inverse_wishart_factors`).
    """
    scatter = jnp.asarray(scatter)
    dtype = _dtype(scatter)
    scatter = scatter.astype(dtype)
    if scatter.ndim != 2 or scatter.shape[0] != scatter.shape[1]:
        raise ValueError(f"expected a square (d, d) scatter matrix, got shape {scatter.shape}")
    d = scatter.shape[0]
    count = jnp.asarray(count, dtype)
    if isinstance(prior, InverseWishart):
        psi = jnp.asarray(prior.scale_matrix(d), dtype)
        return inverse_wishart_factors(rng_key, prior.df + count, psi + scatter)
    if isinstance(prior, HuangWand):
        nu = float(prior.df)
        inv_sq = jnp.asarray(1.0 / prior.scales(d) ** 2, dtype)
        key_aux, key_cov = jax.random.split(rng_key)
        precision_diag = jnp.diagonal(covariance_factors(jnp.asarray(covariance, dtype)).precision)
        rate = nu * precision_diag + inv_sq
        gammas = jax.vmap(random.gamma, (0, None, None))(jax.random.split(key_aux, d), 0.5 * (nu + d), dtype)
        aux = rate / gammas  # a_k ~ InvGamma((nu + d)/2, rate_k)
        psi = jnp.diag(2.0 * nu / aux) + scatter
        return inverse_wishart_factors(key_cov, nu + d - 1.0 + count, psi)
    raise TypeError(f"unsupported covariance prior {prior!r}; expected InverseWishart or HuangWand")


def draw_covariance(
    rng_key: jax.Array, prior: CovariancePrior, scatter: jax.Array, count: ArrayLike, covariance: jax.Array
) -> jax.Array:
    r"""Draw :math:`\Sigma` given the scatter matrix :math:`S` of :math:`J` Gaussian deviations.

    The ``matrix`` of :func:`draw_covariance_factors`, which documents the draw for each prior:
    :math:`\mathrm{IW}(\nu + J, \Psi + S)` under :class:`~mlgibbs.priors.InverseWishart`; under
    :class:`~mlgibbs.priors.HuangWand`, auxiliaries
    :math:`a_k \sim \mathrm{InvGamma}((\nu + d)/2, \nu (\Sigma^{-1})_{kk} + 1/A_k^2)` given the
    current :math:`\Sigma`, then :math:`\mathrm{IW}(\nu + d - 1 + J, 2\nu\,\mathrm{diag}(1/a) + S)`.

    Parameters
    ----------
    rng_key
        PRNG key.
    prior
        :class:`~mlgibbs.priors.InverseWishart` or :class:`~mlgibbs.priors.HuangWand` (static).
    scatter
        :math:`S = \sum_g (b_g - \mu_g)(b_g - \mu_g)'`, shape ``(d, d)``.
    count
        :math:`J`; may be traced.
    covariance
        The current :math:`\Sigma`, shape ``(d, d)``.

    Returns
    -------
    jax.Array
        The new :math:`\Sigma`, shape ``(d, d)``, dtype of ``scatter``, exactly symmetric.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from mlgibbs.priors import HuangWand
    >>> from mlgibbs.conditionals.covariance import draw_covariance, scatter_matrix
    >>> deviations = jax.random.normal(jax.random.key(1), (30, 2))   # b_g - mu_g, J = 30
    >>> sigma = draw_covariance(jax.random.key(0), HuangWand(2.0, 1.0), scatter_matrix(deviations),
    ...                         30, jnp.eye(2))
    """
    return draw_covariance_factors(rng_key, prior, scatter, count, covariance).matrix

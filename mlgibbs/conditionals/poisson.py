r"""The Poisson family: Metropolis-Hastings location blocks with the IWLS Gaussian proposal (Gamerman 1997).

For a kernel row ``r`` (a cell of ``m_r`` observations sharing their design row and groups) with counts
summing to ``Y_r``, the likelihood is ``exp(Y_r eta_r - m_r e^{eta_r})`` (times ``1 / prod y_i!``). There is
no conjugate augmentation, but one step of iteratively weighted least squares from the current point
``x`` (linear predictor ``eta``) gives a Gaussian working likelihood

.. math::

    \exp\big(\textstyle\sum_r s_r \eta_r(x') - \tfrac12 w_r \eta_r(x')^2\big), \qquad
    w_r = m_r e^{\eta_r}, \quad s_r = Y_r - w_r + w_r \eta_r,

the second-order expansion of the log likelihood at ``eta`` (:func:`iwls_terms`). Given the scales, the
locations with that working likelihood form the weighted Gaussian regression that the exact blocks of
every other family draw, and the Gaussian drawn from it is a Metropolis-Hastings proposal ``q(x' | x)``
whose normalizer ``Z(x)`` the tree pass computes (:mod:`mlgibbs.conditionals.tree`). It is accepted with
probability

.. math::

    \min\Big(1, \frac{\pi(x')\, q(x \mid x')}{\pi(x)\, q(x' \mid x)}\Big), \qquad
    \log \frac{q(x \mid x')}{q(x' \mid x)} = \big[\ell_{x'}(x) - \log Z(x')\big] - \big[\ell_x(x') - \log Z(x)\big],

with ``ell_x(x') = sum_r (s_r - w_r o_r) a_r(x') - w_r a_r(x')^2 / 2`` the working log likelihood built at
``x``, ``a_r`` the block's part of ``eta_r`` and ``o_r`` the (fixed) rest; the Gaussian prior of the block
is the same on both sides and cancels. Exact whatever the acceptance rate; the rate is high when the block
is small or its data informative, and falls with the block's dimension (measured on grouseticks: one
block of all 185 locations of ``(1 | BROOD) + (1 | LOCATION)`` was accepted 0.3% of the time). So the
blocks are (``mlgibbs.samplers.mixed``):

1. per chain of nested factors, every *subtree* (a coarsest group with the groups nested in it) given
   ``rho = (beta, gamma)`` and the other chains: the subtrees are independent given those, so one pass of
   the tree draws them all and each is accepted or rejected on its own rows (75-80% on grouseticks);
2. ``rho`` given the effects (centred: ``gamma`` enters the effects' priors only), then ``rho`` given the
   effects' deviations from their means (non-centred: the effects move with ``gamma``), each one Gaussian
   proposal and one accept/reject (about 99%). The two parametrizations interweave (Yu & Meng 2011): the
   centred draw mixes when the groups are well informed, the non-centred one when a scale is small.

Precision (float32, the default dtype): every ratio is formed from terms of order one, never as the
difference of two totals over the rows: the likelihood's change from per-row differences
(:func:`log_likelihood_change`), ``rho``'s proposal densities in whitened form; a subtree's normalizers
and working likelihoods are sums over its own rows only.

The scales are then drawn given the locations as in every family (the sums of squares of the effects'
deviations), and the parameter-expanded moves of the scales by a slice step on ``log c`` each
(``mlgibbs.samplers.mixed.poisson_scale_moves``).

References
----------
Gamerman, D. (1997). Sampling from the posterior distribution in generalized linear mixed models.
*Statistics and Computing* 7, 57-68. Yu, Y. & Meng, X.-L. (2011). To center or not to center: that is not
the question. *JCGS* 20, 531-570.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import gammaln

__all__ = ["iwls_terms", "log_likelihood", "working_log_likelihood_rows", "metropolis_accept", "px_log_jacobian",
           "log_likelihood_change", "start"]


def metropolis_accept(rng_key, log_ratio):
    """``log U < log_ratio`` elementwise (``U`` uniform, the shape of ``log_ratio``); ``NaN`` is rejected."""
    return jnp.log(jax.random.uniform(rng_key, jnp.shape(log_ratio), jnp.result_type(log_ratio))) < log_ratio


def px_log_jacobian(u, size: int):
    """``log |dc/du| + s log c`` of a parameter-expanded move ``c = e^u`` of a scale (``size = 0``) or of one
    coordinate of a correlated block of ``size`` (``mlgibbs.samplers.mixed.poisson_scale_moves``)."""
    return (size + 1) * u


def iwls_terms(eta, data):
    """``(w, s)`` per kernel row: ``w_r = m_r e^{eta_r}``, ``s_r = Y_r - w_r + w_r eta_r`` (module docstring)."""
    w = data.trials * jnp.exp(eta)
    return w, data.t - w + w * eta


def log_likelihood(eta, data):
    """``sum_i log Poisson(y_i | e^{eta_r(i)})`` from the kernel's rows (``- sum log y_i!`` from the
    observations' counts ``data.y_obs``, when there)."""
    total = jnp.sum(data.t * eta - data.trials * jnp.exp(eta))
    if data.y_obs is not None:
        total = total - jnp.sum(gammaln(data.y_obs + 1.0))
    return total


def working_log_likelihood_rows(block, w, s, offsets):
    """Per row ``(s_r - w_r o_r) a_r - w_r a_r^2 / 2``: the working likelihood ``(w, s)`` at a block
    contribution ``a`` (``offsets`` the rest of ``eta``, fixed)."""
    return (s - w * offsets) * block - 0.5 * w * block * block


def log_likelihood_change(eta_old, eta_new, data):
    """Per kernel row ``l_r(eta') - l_r(eta) = Y_r d - m_r e^{eta_r} (e^d - 1)``, ``d = eta' - eta``: summed
    from these small terms, the change over many rows keeps its precision in float32 (the difference of
    the two totals would not)."""
    change = eta_new - eta_old
    return data.t * change - data.trials * jnp.exp(eta_old) * jnp.expm1(change)


def start(data):
    """The first IWLS point: ``eta_r = log((Y_r + 1/2) / m_r)`` (the usual start of a GLM fit)."""
    return jnp.log((data.t + 0.5) / data.trials)

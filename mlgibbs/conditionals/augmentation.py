r"""Data augmentation: the binomial-type likelihoods as weighted Gaussian regressions in the locations.

For a kernel row ``r`` (a cell of observations that share their design row and groups) with ``m_r``
trials, ``y_r`` successes and linear predictor ``eta_r``, each update draws augmentation variables from
their full conditional given the locations and returns per row a *weight* ``w_r`` and a *linear term*
``s_r`` such that, given them, the likelihood's dependence on ``eta`` is

.. math::

    \exp\Big(\sum_r s_r \eta_r - \tfrac12 w_r \eta_r^2\Big),

a Gaussian regression with precisions ``w_r`` and working responses ``s_r / w_r`` (so the exact location
blocks of :mod:`mlgibbs.conditionals.tree` draw every location given them).

* **Logit link** (Polson, Scott & Windle 2013): ``e^{eta y} / (1 + e^eta)^m = 2^{-m} e^{kappa eta}
  E[e^{-omega eta^2 / 2}]`` with ``omega ~ PG(m, 0)`` and ``kappa = y - m/2``, so the conditional of
  ``omega_r`` given the locations is ``PG(m_r, eta_r)``: ``w_r = omega_r``, ``s_r = kappa_r``. ``PG(m_r, .)``
  is drawn as the sum of ``m_r`` exact ``PG(1, eta_r)`` draws, one per *lane* (trial).
* **Probit link** (Albert & Chib 1993): trial ``l`` of row ``r`` is a success iff ``z_l > 0`` with
  ``z_l ~ N(eta_r, 1)``; given the locations and the outcomes the ``z_l`` are independent normals truncated
  to ``(0, inf)`` (success) or ``(-inf, 0]`` (failure): ``w_r = m_r``, ``s_r = sum_l z_l``.

Both draws are exact; the truncated normal is drawn by its inverse distribution function away from the
far tail, and by Robert's (1995) exponential accept/reject for a truncation point more than
``TAIL`` standard deviations beyond the mean, so an extreme ``eta`` (a probability of 1e-30) draws
a finite latent (tested).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtr, ndtri

from mlgibbs.conditionals.segment import segment_sum

__all__ = ["polya_gamma_augmentation", "probit_augmentation", "truncated_normal_above", "augment"]

#: Beyond this many standard deviations the truncated normal is drawn by accept/reject.
TAIL = 5.0


def polya_gamma_augmentation(rng_key, eta, y, trials, lane_rows):
    """``(w, s) = (omega, y - m/2)`` with ``omega_r ~ PG(m_r, eta_r)`` (module docstring).

    ``lane_rows`` (``(N,)``, ``N = sum_r m_r``) gives each lane's row; the draw is exact.
    """
    from mlgibbs.polyagamma import polyagamma_one

    lanes = polyagamma_one(rng_key, eta[lane_rows])
    omega = segment_sum(lanes, lane_rows, eta.shape[0])
    return omega, y - 0.5 * trials


def truncated_normal_above(rng_key, a):
    r"""Standard normal draws truncated to ``(a, inf)``, elementwise, exact.

    ``a <= TAIL``: by the inverse distribution function, ``x = -Phi^{-1}(u Phi(-a))`` (``u`` uniform on
    ``(0, 1]``), which never underflows there; ``a > TAIL``: Robert's (1995) accept/reject with the
    proposal ``a + Exponential(lambda)``, ``lambda = (a + sqrt(a^2 + 4)) / 2``, accepted with probability
    ``exp(-(x - lambda)^2 / 2)`` (above 0.98 there), in rounds over the lanes that are still undecided.
    """
    dtype = a.dtype
    key_u, key_tail = jax.random.split(rng_key)
    u = 1.0 - jax.random.uniform(key_u, a.shape, dtype)                    # (0, 1]
    body = -ndtri(u * ndtr(-jnp.minimum(a, TAIL)))
    body = jnp.maximum(body, a)
    tail = a > TAIL
    lam = 0.5 * (a + jnp.sqrt(a * a + 4.0))

    def cond(carry):
        _, _, done = carry
        return ~jnp.all(done)

    def round_(carry):
        i, x, done = carry
        k_e, k_v = jax.random.split(jax.random.fold_in(key_tail, i))
        proposal = a + jax.random.exponential(k_e, a.shape, dtype) / lam
        accept = jax.random.uniform(k_v, a.shape, dtype) <= jnp.exp(-0.5 * (proposal - lam) ** 2)
        take = ~done & accept
        return i + 1, jnp.where(take, proposal, x), done | accept

    _, x_tail, _ = jax.lax.while_loop(cond, round_, (jnp.asarray(0), jnp.zeros_like(a), ~tail))
    return jnp.where(tail, x_tail, body)


def probit_augmentation(rng_key, eta, y, trials, lane_rows, lane_position):
    """``(w, s) = (m, sum_l z_l)`` with the Albert-Chib latents ``z_l`` (module docstring).

    Lane ``l`` is trial number ``lane_position[l]`` of row ``lane_rows[l]``; the first ``y_r`` trials of a
    row are its successes.
    """
    mean = eta[lane_rows]
    success = lane_position < y[lane_rows]
    sign = jnp.where(success, 1.0, -1.0).astype(eta.dtype)
    # success: z = mean + e, e > -mean; failure: z = mean - e, e > mean
    e = truncated_normal_above(rng_key, -sign * mean)
    z = mean + sign * e
    return trials, segment_sum(z, lane_rows, eta.shape[0])


def augment(family, rng_key, eta, data):
    """``(w, s)`` of the family's augmentation for the kernel rows of ``data`` (a ``MixedData``)."""
    if family == "probit":
        return probit_augmentation(rng_key, eta, data.t, data.trials, data.lane_rows, data.lane_position)
    return polya_gamma_augmentation(rng_key, eta, data.t, data.trials, data.lane_rows)

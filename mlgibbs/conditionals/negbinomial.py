r"""The negative binomial family: Polya-Gamma augmentation of ``NB(y | e^eta, r)`` and the draw of ``r``.

For a kernel row ``r`` (a cell of ``m_r`` observations that share their design row and groups) with
counts summing to ``Y_r`` and linear predictor ``eta_r``, the likelihood in ``psi_r = eta_r - log r`` is

.. math::

    \prod_{i \in r} \frac{e^{\psi y_i}}{(1 + e^{\psi})^{y_i + r}}
    = \frac{e^{\psi Y_r}}{(1 + e^{\psi})^{b_r}}, \qquad b_r = Y_r + m_r r,

a logistic likelihood with ``b_r`` "trials" (Polson, Scott & Windle 2013). With ``omega_r ~ PG(b_r,
psi_r)`` it becomes ``exp(kappa_r psi_r - omega_r psi_r^2 / 2)``, ``kappa_r = Y_r - b_r / 2``: in ``eta`` a
Gaussian regression with precision ``w_r = omega_r`` and linear term ``s_r = kappa_r + omega_r log r``, so
the exact location blocks draw every location given the ``omega``.

**Rows with** ``b_r < 1``. The exact Polya-Gamma sampler (:mod:`mlgibbs.polyagamma`) covers ``b >= 1``;
``b_r < 1`` happens only for a cell of zeros (``Y_r = 0``) when ``m_r r < 1``. There the update uses the
*surrogate* likelihood ``(1 + e^psi)^{-1}`` (``b = 1``) and corrects it exactly: a location block is drawn
by the data-augmentation kernel of the surrogate posterior ``pi~`` (``omega ~ pi~(omega | x)``, then
``x' ~ pi~(x | omega)``), which is reversible with respect to ``pi~``, and accepted with probability

.. math::

    \min\Big(1, \frac{\pi(x') / \tilde\pi(x')}{\pi(x) / \tilde\pi(x)}\Big)
    = \min\Big(1, \exp \sum_{r:\, b_r < 1} (1 - b_r)\big[\log(1 + e^{\psi_r'}) - \log(1 + e^{\psi_r})\big]\Big),

a Metropolis-Hastings step that leaves the true posterior ``pi`` invariant. Without such cells the ratio
is 1 and every proposal is taken: the plain Gibbs update.

**The dispersion** ``r`` is drawn given the locations (the ``omega`` integrated out) by one slice-sampling
step (Neal 2003) on ``log r``, with density

.. math::

    p(r)\, r \prod_i \frac{\Gamma(y_i + r)}{\Gamma(r)}\,
    \Big(\frac{r}{r + \mu_i}\Big)^{r} \Big(\frac{1}{r + \mu_i}\Big)^{y_i}.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import gammaln

from mlgibbs.conditionals.segment import segment_sum

__all__ = ["negbinomial_augmentation", "correction_log_ratio", "dispersion_log_density", "draw_dispersion",
           "log_likelihood"]


def _shapes(data, r):
    """``(b, b_true, surrogate)``: the Polya-Gamma shape drawn per row, the true one, and where they differ."""
    b_true = data.t + data.trials * r
    surrogate = b_true < 1.0
    return jnp.where(surrogate, 1.0, b_true), b_true, surrogate


def negbinomial_augmentation(rng_key, eta, data, r):
    """``(w, s) = (omega, kappa + omega log r)`` with ``omega_r ~ PG(b_r, eta_r - log r)`` (module docstring;
    ``b_r`` raised to 1 where it is below).

    With the count lanes of a model's data (``data.lane_rows``: ``max(Y_r - 1, 0)`` lanes per row, built
    with the data) ``PG(b_r) = PG(max(Y_r - 1, 0)) + PG(b_r - max(Y_r - 1, 0))``: the first a sum of ``PG(1)``
    lanes, the second (``1 + m_r r`` or the surrogate's ``max(m_r r, 1)``, at least 1) by the traced-``b``
    sampler, whose cost is its largest ``b``; without lanes (``data_for`` of simulated counts) one traced
    draw of ``PG(b_r)``, which costs the largest count. Both are exact.
    """
    from mlgibbs.polyagamma import polyagamma, polyagamma_lanes

    log_r = jnp.log(r)
    psi = eta - log_r
    b, _, _ = _shapes(data, r)
    if data.lane_rows is None:
        omega = polyagamma(rng_key, b, psi)
    else:
        key_lanes, key_rest = jax.random.split(rng_key)
        static = jnp.maximum(data.t - 1.0, 0.0)
        omega = (polyagamma_lanes(key_lanes, psi, data.lane_rows, psi.shape[0])
                 + polyagamma(key_rest, b - static, psi))
    kappa = data.t - 0.5 * b
    return omega, kappa + omega * log_r


def correction_log_ratio(eta_new, eta_old, data, r):
    """``log [pi(x') / pi~(x')] - log [pi(x) / pi~(x)]`` of the surrogate rows (0 when there are none)."""
    _, b_true, surrogate = _shapes(data, r)
    log_r = jnp.log(r)
    change = jax.nn.softplus(eta_new - log_r) - jax.nn.softplus(eta_old - log_r)
    return jnp.sum(jnp.where(surrogate, (1.0 - b_true) * change, 0.0))


def log_likelihood(eta, data, r, log_r=None):
    """``sum_i log NB(y_i | e^{eta_r(i)}, r)`` over every observation, from the kernel's rows (``eta`` per
    row) and the observations' counts ``data.y_obs``."""
    if log_r is None:
        log_r = jnp.log(r)
    y = data.y_obs
    log_total = jnp.logaddexp(log_r, eta)                        # log(r + mu) per row
    per_obs = jnp.sum(gammaln(y + r) - gammaln(y + 1.0)) - y.shape[0] * gammaln(r)
    per_row = jnp.sum(data.trials * r * (log_r - log_total) + data.t * (eta - log_total))
    return per_obs + per_row


def dispersion_log_density(log_r, eta, data, prior):
    """``log p(log r | locations, y)`` up to a constant (module docstring), ``eta`` per kernel row."""
    r = jnp.exp(log_r)
    return prior.log_prob(r) + log_r + log_likelihood(eta, data, r, log_r)


def draw_dispersion(rng_key, r, eta, data, prior, width=1.0):
    """One slice-sampling step on ``log r`` given the locations (module docstring)."""
    from mlgibbs.conditionals.slice import slice_sample

    log_r = slice_sample(rng_key, jnp.log(r), lambda u: dispersion_log_density(u, eta, data, prior), width)
    return jnp.exp(log_r)

r"""Exact Polya-Gamma draws in pure JAX (jittable, vmappable): ``PG(b, c)`` for integer ``b >= 1``.

The Polya-Gamma distribution (Polson, Scott & Windle 2013) makes the logistic likelihood conditionally
Gaussian: with ``omega ~ PG(b, eta)``, ``e^{eta y} / (1 + e^eta)^b`` is, up to a factor free of ``eta``,
``exp(kappa eta - omega eta^2 / 2)`` with ``kappa = y - b/2``. Its moments:
``E[PG(b, c)] = b tanh(c/2) / (2c)`` (``b/4`` at ``c = 0``).

``PG(1, c) = J*(1, c/2) / 4``, and ``J*(1, z)`` is drawn *exactly* by Devroye's alternating-series
accept/reject method as laid out by Polson, Scott & Windle (2013, section 4; Windle 2013): with the
truncation point ``t = 0.64`` the proposal is a mixture of an exponential on ``(t, inf)`` (rate
``K = pi^2/8 + z^2/2``) and an inverse Gaussian ``IG(1/z, 1)`` truncated to ``(0, t)``, with weights
``p = pi/(2K) e^{-K t}`` and ``q = 2 e^{-z} P_IG(X < t)``; a proposal ``x`` is accepted when a uniform
``V S_0(x)`` falls below the partial sums ``S_n(x) = sum_{k<=n} (-1)^k a_k(x)`` at an odd ``n`` (rejected
when above at an even one), with

.. math::

    a_n(x) = \pi (n + 1/2) \left(\frac{2}{\pi x}\right)^{3/2} e^{-2(n+1/2)^2/x}\ (x \le t), \qquad
    a_n(x) = \pi (n + 1/2)\, e^{-(n+1/2)^2 \pi^2 x / 2}\ (x > t).

The acceptance rate is above 0.9992 for every ``z`` (Devroye), so the loops are short; under ``vmap`` a
``while_loop`` runs until every lane is done. ``PG(b, c)`` for integer ``b`` is the sum of ``b``
independent ``PG(1, c)`` draws (exact; cost linear in ``b``). Non-integer ``b`` (the negative-binomial
family) is not supported yet.

Every random number comes from ``jax.random.fold_in(rng_key, i)`` with a counter, so the same key gives
the same draw, under ``jit`` and ``vmap`` alike.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import log_ndtr

__all__ = ["polyagamma", "polyagamma_mean"]

TRUNCATION = 0.64


def polyagamma_mean(b, c):
    """``E[PG(b, c)] = b tanh(c/2) / (2c)``, ``b/4`` at ``c = 0``."""
    c = jnp.asarray(c)
    small = jnp.abs(c) < 1e-4
    safe = jnp.where(small, 1.0, c)
    return jnp.where(small, b * (0.25 - c**2 / 48.0), b * jnp.tanh(safe / 2.0) / (2.0 * safe))


def polyagamma(rng_key: jax.Array, b, c, dtype=None) -> jax.Array:
    """Draws of ``PG(b, c)``, shape of ``broadcast(b, c)``; ``b`` positive integers (int or float array).

    Exact (module docstring). ``dtype`` defaults to ``c``'s floating type (float32 unless x64 is on).
    """
    c = jnp.asarray(c)
    dtype = jnp.dtype(dtype) if dtype is not None else (c.dtype if jnp.issubdtype(c.dtype, jnp.floating)
                                                         else jnp.result_type(float))
    b = jnp.asarray(b)
    shape = jnp.broadcast_shapes(b.shape, c.shape)
    b = jnp.broadcast_to(b, shape).reshape(-1).astype(jnp.int32)
    c = jnp.broadcast_to(c, shape).reshape(-1).astype(dtype)
    return _draw(rng_key, b, c).reshape(shape)


@jax.jit
def _draw(rng_key, b, c):
    """One compiled program per shape and dtype (not one per primitive, as an eager call would be)."""
    return jax.vmap(_pg_b)(jax.random.split(rng_key, b.shape[0]), b, c)


def _pg_b(key, b, c):
    def body(i, total):
        return total + _pg1(jax.random.fold_in(key, i), c)
    return jax.lax.fori_loop(0, b, body, jnp.zeros((), c.dtype))


def _a(n, x):
    """The ``n``-th coefficient of the alternating series of ``J*(1, 0)``'s density at ``x``."""
    h = n + 0.5
    left = math.pi * h * (2.0 / (math.pi * x)) ** 1.5 * jnp.exp(-2.0 * h * h / x)
    right = math.pi * h * jnp.exp(-h * h * math.pi**2 * x / 2.0)
    return jnp.where(x <= TRUNCATION, left, right)


def _pg1(key, c):
    """One ``PG(1, c)`` draw: ``J*(1, |c|/2) / 4`` by Devroye's method."""
    dtype = c.dtype
    t = jnp.asarray(TRUNCATION, dtype)
    z = jnp.abs(c) / 2.0
    K = math.pi**2 / 8.0 + z * z / 2.0
    log_p = math.log(math.pi / 2.0) - jnp.log(K) - K * t
    # q = 2 e^{-z} P(IG(1/z, 1) < t) = 2 [e^{-z} Phi((tz - 1)/sqrt t) + e^{z} Phi(-(tz + 1)/sqrt t)]
    root_t = jnp.sqrt(t)
    log_q = math.log(2.0) + jnp.logaddexp(-z + log_ndtr((t * z - 1.0) / root_t),
                                          z + log_ndtr(-(t * z + 1.0) / root_t))
    prob_exponential = jax.nn.sigmoid(log_p - log_q)         # p / (p + q)

    def propose(k):
        k_choice, k_exp, k_ig, k_v = jax.random.split(k, 4)
        exponential = t + jax.random.exponential(k_exp, (), dtype) / K
        x = jnp.where(jax.random.uniform(k_choice, (), dtype) < prob_exponential, exponential,
                      _truncated_inverse_gaussian(k_ig, z, t))
        return x, jax.random.uniform(k_v, (), dtype)

    def accept(x, v):
        """The alternating-series test: ``True`` if ``V S_0 < S_n`` at an odd ``n`` before ``> S_n`` at an even one."""
        s = _a(0, x)
        y = v * s

        def cond(carry):
            n, s, decided, _ = carry
            return ~decided

        def step(carry):
            n, s, _, _ = carry
            n = n + 1
            odd = (n % 2) == 1
            s = jnp.where(odd, s - _a(n, x), s + _a(n, x))
            accepted = odd & (y < s)
            rejected = (~odd) & (y > s)
            return n, s, accepted | rejected | (n > 200), accepted

        _, _, _, accepted = jax.lax.while_loop(cond, step, (jnp.asarray(0), s, jnp.asarray(False),
                                                           jnp.asarray(False)))
        return accepted

    def cond(carry):
        i, x, done = carry
        return ~done

    def body(carry):
        i, _, _ = carry
        x, v = propose(jax.random.fold_in(key, i))
        return i + 1, x, accept(x, v)

    _, x, _ = jax.lax.while_loop(cond, body, (jnp.asarray(0), jnp.zeros((), dtype), jnp.asarray(False)))
    return x / 4.0


def _truncated_inverse_gaussian(key, z, t):
    """``IG(mu = 1/z, lambda = 1)`` truncated to ``(0, t)`` (Polson, Scott & Windle 2013, appendix).

    For ``mu > t``: ``X = t / (1 + t E)^2`` with ``E`` exponential conditioned on ``E^2 <= 2 E' / t``,
    accepted with probability ``e^{-z^2 X / 2}``; for ``mu <= t``: Michael-Schucany-Haas inverse Gaussian
    draws until one falls below ``t``. One loop computes both candidates (a ``vmap``-ed branch would run
    both anyway) and keeps the one of its regime.
    """
    dtype = z.dtype
    small_z = z < 1.0 / t
    mu = 1.0 / jnp.maximum(z, 1.0 / t)                 # the MSH branch only runs for mu <= t

    def cond(carry):
        return ~carry[2]

    def body(carry):
        i, _, _ = carry
        k1, k2, k3, k4, k5 = jax.random.split(jax.random.fold_in(key, i), 5)
        e1 = jax.random.exponential(k1, (), dtype)
        e2 = jax.random.exponential(k2, (), dtype)
        x_small = t / (1.0 + t * e1) ** 2
        ok_small = (e1 * e1 <= 2.0 * e2 / t) & (jax.random.uniform(k3, (), dtype) <= jnp.exp(-0.5 * z * z * x_small))
        y = jax.random.normal(k4, (), dtype) ** 2
        x_large = mu + 0.5 * mu * mu * y - 0.5 * mu * jnp.sqrt(4.0 * mu * y + (mu * y) ** 2)
        x_large = jnp.where(jax.random.uniform(k5, (), dtype) > mu / (mu + x_large), mu * mu / x_large, x_large)
        ok_large = x_large < t
        return i + 1, jnp.where(small_z, x_small, x_large), jnp.where(small_z, ok_small, ok_large)

    return jax.lax.while_loop(cond, body, (jnp.asarray(0), jnp.zeros((), dtype), jnp.asarray(False)))[1]

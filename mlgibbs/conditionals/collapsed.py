r"""Collapsed conditionals: the group intercepts integrated out, then the locations as well.

Integrating ``alpha_j ~ N(U_j gamma, sigma_alpha^2)`` out of the model leaves, per group, the group
mean ``ybar_j ~ N(xbar_j beta + U_j gamma, v_j)`` with ``v_j = sigma_y^2 / n_j + sigma_alpha^2``,
plus the within-group least-squares part that depends on ``beta`` and ``sigma_y`` only. With
``theta = (beta, gamma)``, ``G = [xbar, U]`` (one row per group) and weights ``w_j = 1 / v_j``,
``theta | sigma, y`` is Gaussian with

.. math::

    Q = \begin{pmatrix} R_w'R_w/\sigma_y^2 & 0 \\ 0 & 0 \end{pmatrix} + G' W G + P_0,\qquad
    h = \begin{pmatrix} X_w'y_w/\sigma_y^2 \\ 0 \end{pmatrix} + G' W \bar y + P_0 m_0,

and integrating ``theta`` out as well gives the marginal posterior of the two scales,

.. math::

    \log p(\sigma_y, \sigma_\alpha \mid y) = \log p(\sigma_y) + \log p(\sigma_\alpha)
      - \tfrac{n - J}{2}\log\sigma_y^2 + \tfrac12\sum_j \log w_j - \tfrac12\log|Q| - \tfrac12 S(\hat\theta)
      + \text{const},

where ``S(theta_hat)`` is the minimised quadratic, written as a sum of non-negative terms
(``e_w / sigma_y^2 + |R_w (beta_hat - b_w)|^2 / sigma_y^2 + sum_j w_j (ybar_j - G_j theta_hat)^2 +
prior term``) so that no precision is lost to cancellation. Without a grouping factor the same
formulas hold with ``J = 0``. Every evaluation costs ``O(J d^2 + d^3)``, ``d = p + q``.

The two terms of size ``n``, ``-(n - J)/2 log sigma_y^2 - e_w / (2 sigma_y^2)``, are computed relative to a
reference ``s^2 = e_w / (n - J - p)`` fixed by the data (a constant shift of the log density):

.. math::

    -\tfrac{n - J}{2}\,\delta - \tfrac{e_w}{2 s^2}\,\operatorname{expm1}(-\delta),\qquad
    \delta = \log(\sigma_y^2 / s^2) = 2\,\operatorname{log1p}((\sigma_y - s) / s),

each term then as accurate relative to its own (small) size as float arithmetic allows. Written directly,
each is about ``n`` in size, and float32's relative rounding of ``6e-8`` added noise of about ``0.25`` nats
(standard deviation; up to 0.7) to the log density's differences at ``n = 1e7`` (measured; now about 0.01):
enough to spoil a Metropolis-Hastings ratio
(:mod:`~mlgibbs.conditionals.scale_grid`). What remains is the rounding of the sums over the ``J``
groups, about ``J`` times ``1e-7`` nats in float32.
"""

from __future__ import annotations


import jax
import jax.numpy as jnp

from mlgibbs.base import GibbsState
from mlgibbs.conditionals._linalg import draw_gaussian_cholesky, location_prior_blocks
from mlgibbs.conditionals.slice import slice_sample
from mlgibbs.models.data import LinearData
from mlgibbs.priors import Priors

__all__ = [
    "collapsed_system",
    "draw_locations",
    "log_marginal_scales",
    "log_marginal_scales_derivatives",
    "marginal_and_system",
    "update_locations",
    "update_scales_collapsed",
    "update_sigma_alpha_collapsed",
]


def _location_prior(data: LinearData):
    """``(P_0, P_0 m_0)``: the joint prior of ``(beta, gamma)`` carried by ``data``."""
    return location_prior_blocks(data, data.xtx.shape[0])


def collapsed_system(sigma_y, sigma_alpha, data: LinearData, priors: Priors | None = None):
    """Precision ``Q``, linear term ``h`` of ``(beta, gamma) | sigma, y`` and the group weights ``w``.

    ``alpha`` is integrated out (see the module docstring). Returns ``(Q, h, w)``; ``w`` is ``None``
    without a grouping factor.
    """
    p = data.xtx.shape[0]
    inv_var_y = 1.0 / sigma_y**2
    prec0, lin0 = _location_prior(data)
    within_q = data.chol_within.T @ data.chol_within * inv_var_y
    within_h = data.xty_within * inv_var_y
    if data.groups is None:
        return within_q + prec0, within_h + lin0, None
    g = data.groups
    w = 1.0 / (sigma_y**2 / g.counts + sigma_alpha**2)
    G = jnp.concatenate([g.x_mean, g.U], axis=1)
    Q = (G * w[:, None]).T @ G
    Q = Q.at[:p, :p].add(within_q) + prec0
    h = G.T @ (w * g.y_mean) + lin0
    h = h.at[:p].add(within_h)
    return Q, h, w


def log_marginal_scales(sigma_y, sigma_alpha, data: LinearData, priors: Priors) -> jax.Array:
    """``log p(sigma_y, sigma_alpha | y)`` up to a constant, locations and intercepts integrated out.

    ``sigma_alpha`` is ignored (pass anything) for a model without a grouping factor.
    """
    return marginal_and_system(sigma_y, sigma_alpha, data, priors)[0]


def marginal_and_system(sigma_y, sigma_alpha, data: LinearData, priors: Priors):
    """:func:`log_marginal_scales` and the factorised system of ``(beta, gamma) | sigma, y`` it was computed from.

    Returns ``(log_density, chol, h)``: ``chol`` the lower Cholesky factor of ``Q`` and ``h`` the linear term
    (module docstring), so that :func:`draw_locations` draws the locations at these scales without building
    and factorising ``Q`` again; ``chol`` is ``None`` for a model without locations.
    """
    p = data.xtx.shape[0]
    Q, h, w = collapsed_system(sigma_y, sigma_alpha, data, priors)
    d = h.shape[0]
    lp = _scale_terms(sigma_y, sigma_alpha, data, priors)
    quad = 0.0
    chol = None
    if d > 0:
        chol = jnp.linalg.cholesky(Q)
        theta = jax.scipy.linalg.cho_solve((chol, True), h)
        lp = lp - jnp.sum(jnp.log(jnp.diag(chol)))
        prior = data.location_prior
        r = theta - prior.mean
        quad = quad + r @ prior.precision @ r
        if p > 0:
            quad = quad + jnp.sum((data.chol_within @ (theta[:p] - data.beta_within)) ** 2) / sigma_y**2
    else:
        theta = h
    if data.groups is not None:
        g = data.groups
        G = jnp.concatenate([g.x_mean, g.U], axis=1)
        resid = g.y_mean - (G @ theta if d > 0 else 0.0)
        quad = quad + jnp.sum(w * resid**2)
        lp = lp + 0.5 * jnp.sum(jnp.log(w))
    return lp - 0.5 * quad, chol, h


def _scale_terms(sigma_y, sigma_alpha, data: LinearData, priors: Priors):
    """The terms of :func:`log_marginal_scales` that need no linear algebra: the scale priors and the two
    ``n``-sized terms, the latter relative to the data's own ``s^2`` (module docstring): accurate in float32 at
    any ``n``."""
    p = data.xtx.shape[0]
    n = data.num_obs
    J = 0 if data.groups is None else data.groups.counts.shape[0]
    dof = jnp.maximum(n - J - p, 1.0)
    positive = data.rss_within > 0
    s = jnp.sqrt(jnp.where(positive, data.rss_within, 1.0) / dof)
    delta = 2.0 * jnp.log1p((sigma_y - s) / s)                        # log(sigma_y^2 / s^2)
    lp = (priors.sigma_y.log_prob(sigma_y) - 0.5 * (n - J) * delta
          - 0.5 * jnp.where(positive, dof, 0.0) * jnp.expm1(-delta))  # e_w / s^2 = dof where e_w > 0
    if data.groups is not None:
        lp = lp + priors.sigma_alpha.log_prob(sigma_alpha)
    return lp


def log_marginal_scales_derivatives(t: jax.Array, data: LinearData, priors: Priors):
    r"""Gradient and Hessian of :func:`log_marginal_scales` in ``t = (log sigma_y^2, log sigma_alpha^2)``, in
    closed form: ``(gradient, hessian)``, each of the density *without* the Jacobian ``(t_1 + t_2) / 2``
    (constant first derivatives, no second). Needs a grouping factor.

    With ``v_j = e^{t_1} / n_j + e^{t_2} = 1 / w_j``, ``a = e^{-t_1}`` the within-group precision factor,
    ``\hat	heta = Q^{-1} h``, ``e = ar y - G \hat	heta`` and ``r = |R_w(\hateta - b_w)|^2``, the
    linear-algebra part ``B = 	frac12 \sum_j \log w_j - 	frac12 \log|Q| - 	frac12 S`` has (envelope theorem:
    ``\partial S`` is the quadratic's partial derivative at ``\hat	heta``)

    .. math::

        \partial_k B = -	frac12 \sum_j w_j \partial_k v_j - 	frac12 \operatorname{tr}(Q^{-1}\partial_k Q)
                       - 	frac12 (\partial_k a\, r + 	extstyle\sum_j \partial_k w_j e_j^2),

        \partial_k\partial_l B = 	frac12 \sum_j \partial_{kl} \log w_j
            - 	frac12 ig[\operatorname{tr}(Q^{-1}\partial_{kl} Q)
                            - \operatorname{tr}(Q^{-1}\partial_k Q\, Q^{-1}\partial_l Q)ig]
            - 	frac12 ig(\partial_{kl} a\, r + 	extstyle\sum_j \partial_{kl} w_j e_j^2
                            - 2 u_k' Q^{-1} u_lig),

    ``u_k = \partial_k Q \hat	heta - \partial_k h = \partial_k a\, R_w'R_w(\hateta - b_w) - G'(\partial_k w
    \odot e)``, ``\partial_k Q = \partial_k a\, R_w'R_w + G' \operatorname{diag}(\partial_k w) G``. The scale
    priors and the ``n``-sized terms are scalar functions of ``t``, differentiated by JAX. Every term is a sum
    of ``O(J d^2)`` products: the cost of a few evaluations of the density, and a small compiled program (JAX's
    derivatives through the Cholesky factorisation compiled about 1.5 s longer, paid before a first draw).
    """
    g = data.groups
    dtype = t.dtype
    p = data.xtx.shape[0]

    def scalars(t):
        return _scale_terms(jnp.exp(0.5 * t[0]), jnp.exp(0.5 * t[1]), data, priors)

    hessian, gradient = jax.jacfwd(lambda s: (lambda r: (r, r))(jax.grad(scalars)(s)), has_aux=True)(t)

    a = jnp.exp(-t[0])
    c = jnp.exp(t[0]) / g.counts                         # d v_j / d t_1 (= d^2 v_j / d t_1^2)
    b = jnp.broadcast_to(jnp.exp(t[1]), c.shape)         # d v_j / d t_2 (= d^2 v_j / d t_2^2)
    w = 1.0 / (c + b)
    dv = jnp.stack([c, b])                               # (2, J)
    dw = -(w**2) * dv
    d2w = 2.0 * w**3 * dv[:, None] * dv[None] - w**2 * jnp.eye(2, dtype=dtype)[:, :, None] * dv[:, None]
    d2logw = w**2 * dv[:, None] * dv[None] - w * jnp.eye(2, dtype=dtype)[:, :, None] * dv[:, None]
    da = jnp.stack([-a, jnp.zeros_like(a)])
    d2a = jnp.zeros((2, 2), dtype).at[0, 0].set(a)
    gradient = gradient - 0.5 * jnp.sum(w * dv, axis=1)
    hessian = hessian + 0.5 * jnp.sum(d2logw, axis=2)

    G = jnp.concatenate([g.x_mean, g.U], axis=1)
    d = G.shape[1]
    sigma_y, sigma_alpha = jnp.exp(0.5 * t[0]), jnp.exp(0.5 * t[1])
    Q, h, _ = collapsed_system(sigma_y, sigma_alpha, data, priors)
    if d > 0:
        chol = jnp.linalg.cholesky(Q)
        theta = jax.scipy.linalg.cho_solve((chol, True), h)
        e = g.y_mean - G @ theta
        inverse = jax.scipy.linalg.cho_solve((chol, True), jnp.eye(d, dtype=dtype))
        Z = jax.scipy.linalg.solve_triangular(chol, G.T, lower=True)
        leverage = jnp.sum(Z**2, axis=0)                 # G_j Q^{-1} G_j'
        RR = jnp.zeros((d, d), dtype)
        within = jnp.zeros((d,), dtype)
        r = jnp.zeros((), dtype)
        if p > 0:
            resid_w = data.chol_within @ (theta[:p] - data.beta_within)
            RR = RR.at[:p, :p].set(data.chol_within.T @ data.chol_within)
            within = within.at[:p].set(data.chol_within.T @ resid_w)
            r = jnp.sum(resid_w**2)
        trace_RR = jnp.sum(inverse * RR)
        dQ = da[:, None, None] * RR + jnp.einsum("kj,ja,jb->kab", dw, G, G)
        M = jnp.einsum("ab,kbc->kac", inverse, dQ)       # Q^{-1} dQ_k
        u = da[:, None] * within - (dw * e) @ G          # (2, d)
        trace_dQ = da * trace_RR + dw @ leverage
        trace_d2Q = d2a * trace_RR + d2w @ leverage
        trace_MM = jnp.einsum("kab,lba->kl", M, M)
        uQu = u @ inverse @ u.T
    else:
        e = g.y_mean
        r = jnp.zeros((), dtype)
        trace_dQ = jnp.zeros(2, dtype)
        trace_d2Q = trace_MM = uQu = jnp.zeros((2, 2), dtype)
    dS = da * r + dw @ e**2
    d2S = d2a * r + d2w @ e**2 - 2.0 * uQu
    gradient = gradient - 0.5 * trace_dQ - 0.5 * dS
    hessian = hessian - 0.5 * (trace_d2Q - trace_MM) - 0.5 * d2S
    return gradient, hessian


def draw_locations(rng_key: jax.Array, state: GibbsState, chol: jax.Array | None, h: jax.Array,
                   data: LinearData) -> GibbsState:
    """``(beta, gamma) ~ N(Q^{-1} h, Q^{-1})`` from the factor ``chol`` of ``Q`` (:func:`marginal_and_system`):
    :func:`update_locations` for a system already factorised."""
    if chol is None:
        return state
    p = data.xtx.shape[0]
    theta = draw_gaussian_cholesky(rng_key, chol, h)
    beta = theta[:p] if p > 0 else None
    gamma = theta[p:] if (data.groups is not None and theta.shape[0] > p) else None
    return state._replace(beta=beta, gamma=gamma)


def update_locations(rng_key: jax.Array, state: GibbsState, data: LinearData, priors: Priors) -> GibbsState:
    r"""Draw ``(beta, gamma)`` jointly given the scales, with ``alpha`` integrated out.

    .. math::

        (\beta, \gamma) \mid \sigma_y, \sigma_\alpha, y \sim \mathcal N(Q^{-1}h,\ Q^{-1})

    (``Q``, ``h``: module docstring). Follow it with :func:`~mlgibbs.update_alpha`, which draws
    ``alpha | beta, gamma, sigma, y``, so that the pair is an exact draw of all the locations.
    """
    Q, h, _ = collapsed_system(state.sigma_y, state.sigma_alpha, data, priors)
    if h.shape[0] == 0:
        return state
    return draw_locations(rng_key, state, jnp.linalg.cholesky(Q), h, data)


def _width(count) -> jax.Array:
    return 3.0 * jnp.sqrt(2.0 / (count + 1.0)) + 0.1


def update_scales_collapsed(
    rng_key: jax.Array, state: GibbsState, data: LinearData, priors: Priors
) -> GibbsState:
    r"""Draw ``sigma_y`` then ``sigma_alpha`` from the marginal ``p(sigma_y, sigma_alpha | y)``.

    Each is one slice-sampling transition on ``log sigma^2`` (Neal 2003) targeting
    :func:`log_marginal_scales` plus the Jacobian ``log sigma^2 / 2``, with the other scale fixed:
    a Gibbs sampler on the two-dimensional marginal, in which ``alpha``, ``beta`` and ``gamma`` are
    integrated out. The locations must be redrawn given the new scales afterwards
    (:func:`update_locations`, then :func:`~mlgibbs.update_alpha`): a partially collapsed Gibbs
    sampler (van Dyk & Park 2008).
    """
    key_y, key_alpha = jax.random.split(rng_key)
    n = data.num_obs
    sigma_alpha = state.sigma_alpha

    def log_target_y(theta):
        sigma = jnp.exp(0.5 * theta)
        return log_marginal_scales(sigma, sigma_alpha, data, priors) + 0.5 * theta

    theta_y = slice_sample(key_y, jnp.log(state.sigma_y**2), log_target_y, _width(n))
    sigma_y = jnp.exp(0.5 * theta_y)
    if data.groups is None:
        return state._replace(sigma_y=sigma_y)

    J = data.groups.counts.shape[0]

    def log_target_alpha(theta):
        sigma = jnp.exp(0.5 * theta)
        return log_marginal_scales(sigma_y, sigma, data, priors) + 0.5 * theta

    theta_a = slice_sample(key_alpha, jnp.log(sigma_alpha**2), log_target_alpha, _width(J))
    return state._replace(sigma_y=sigma_y, sigma_alpha=jnp.exp(0.5 * theta_a))




def update_sigma_alpha_collapsed(
    rng_key: jax.Array, state: GibbsState, data: LinearData, priors: Priors
) -> GibbsState:
    r"""Draw ``sigma_alpha`` from ``p(sigma_alpha | sigma_y, y)``, locations and intercepts integrated out.

    .. math::

        p(\sigma_\alpha \mid \sigma_y, y) \propto \exp\{\text{log\_marginal\_scales}(\sigma_y, \sigma_\alpha)\}

    One slice-sampling transition on ``log sigma_alpha^2``. ``alpha``, ``beta`` and ``gamma`` must be
    redrawn given the new value before anything conditions on them (:func:`update_locations`, then
    :func:`~mlgibbs.update_alpha`): the pair is then a joint draw of ``(sigma_alpha, locations) | sigma_y, y``.
    """
    J = data.groups.counts.shape[0]
    sigma_y = state.sigma_y

    def log_target(theta):
        return log_marginal_scales(sigma_y, jnp.exp(0.5 * theta), data, priors) + 0.5 * theta

    theta = slice_sample(rng_key, jnp.log(state.sigma_alpha**2), log_target, _width(J))
    return state._replace(sigma_alpha=jnp.exp(0.5 * theta))

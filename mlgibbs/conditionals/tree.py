r"""The location block of a multilevel model drawn exactly, by one pass up and one down a nested chain.

Given the variances, every location parameter of the Gaussian multilevel model is jointly Gaussian.
Write ``rho = (beta, gamma_1, ..., gamma_F)`` for the fixed effects and the group-level coefficients of
every grouping factor, and ``b_f[g]`` (dimension ``d_f``) for the varying coefficients of group ``g`` of
factor ``f``. A *chain* is a sequence of factors ``f_1 ⊃ f_2 ⊃ ... ⊃ f_L`` each nested in the one before
(state ⊃ county): every group of ``f_{i+1}`` lies in one group (its parent) of ``f_i``. Given the effects
of the factors outside the chain (crossed factors), the density of ``(rho, b_{f_1}, ..., b_{f_L})`` is

.. math::

    p \propto p(\rho)\ \prod_{i=1}^{L}\prod_{g} \mathcal N\big(b_{f_i}[g] \mid M_{f_i,g}\gamma_{f_i},
        \Sigma_{f_i}\big)\ \prod_{r} \mathcal N\big(t_r \mid w_r'(\beta, b_{f_1}[\cdot], \ldots,
        b_{f_L}[\cdot]) + o_r,\ \sigma_y^2\big),

where ``M_{f,g} = e_1 U_{f,g}`` puts the group-level mean ``U_{f,g} gamma_f`` on the intercept coordinate,
``o_r`` is the (fixed) contribution of the factors outside the chain, and each row ``r`` touches one
group per level. This is a Gaussian tree (root ``rho``, a group's children are its nested groups), so
it is drawn *exactly* in ``O(sum_i J_i (P + sum_j d_j)^3)``, whatever the number of rows:

* **up**: at the finest level, each group's precision ``Lambda_g`` and linear term ``h_g`` over
  ``(rho, b_{f_1}[anc], ..., b_{f_L}[g])`` (its rows plus its prior); integrating ``b_{f_L}[g]`` out
  leaves a Gaussian message on its context by the Schur complement
  ``Lambda_cc - Lambda_cb Lambda_bb^{-1} Lambda_bc``, ``h_c - Lambda_cb Lambda_bb^{-1} h_b``; messages
  are summed into the parents, whose priors are added, and so on up to ``rho``;
* **root**: ``rho ~ N(Lambda^{-1} h, Lambda^{-1})`` with the messages, ``p(rho)`` and the prior factors of
  the factors outside the chain (their ``b`` fixed) added;
* **down**: ``b_{f_i}[g] | context ~ N(Lambda_bb^{-1}(h_b - Lambda_bc c_g), Lambda_bb^{-1})``, level by
  level, with ``c_g`` the drawn ``rho`` and ancestors.

With one chain (a purely nested model, or one grouping factor) this is a draw of *all* locations from
their joint conditional; with crossed factors each chain is a block, drawn jointly with ``rho`` given
the others (the collapsed Gibbs sampler of Papaspiliopoulos, Roberts & Zanella 2020).

References
----------
Papaspiliopoulos, O., Roberts, G. O. and Zanella, G. (2020). Scalable inference for crossed random
effects models. *Biometrika* 107(1), 25-40. Rue, H. (2001). Fast sampling of Gaussian Markov random
fields. *JRSS B* 63(2), 325-338.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp

__all__ = ["ChainSpec", "ChainData", "draw_chain", "chain_precision", "chain_log_normalizer", "draw_given_root",
           "subtree_log_normalizers"]


class ChainSpec(NamedTuple):
    """Static shape of one chain of nested factors (hashable; configures the draw).

    Attributes
    ----------
    factors
        Factor indices, coarsest first.
    dims
        ``d_f`` of each factor in ``factors``.
    p
        Number of fixed effects ``beta`` (the first ``p`` coordinates of ``rho`` and of ``w_r``).
    gamma_slices
        ``(start, size)`` of every factor's ``gamma_f`` within ``rho`` (all factors, not only the
        chain's).
    intercepts
        Per factor (all factors): the coordinate of ``b_f`` that ``U_f gamma_f`` is the mean of, or -1.
    """

    factors: tuple[int, ...]
    dims: tuple[int, ...]
    p: int
    gamma_slices: tuple[tuple[int, int], ...]
    intercepts: tuple[int, ...]

    @property
    def root_dim(self) -> int:
        return self.p + sum(size for _, size in self.gamma_slices)


class ChainData(NamedTuple):
    """Data of one chain.

    Attributes
    ----------
    gram
        ``sum_r w_r w_r'`` over the rows of each finest group, in the coordinates
        ``(beta, b_{f_1}, ..., b_{f_L})``, shape ``(J_L, D, D)``.
    linear
        ``sum_r w_r t_r`` likewise, shape ``(J_L, D)``.
    parents
        For ``i = 2..L``, the parent (index into level ``i - 1``) of each group of level ``i``.
    """

    gram: jax.Array
    linear: jax.Array
    parents: tuple[jax.Array, ...]


# Batched small-matrix algebra, one (d x d) system per group (also used by mlgibbs.logdensity).
# XLA:CPU runs batched dot_general and LAPACK calls on tiny matrices as a loop of library calls (a
# (4 x 4) @ (4 x 4) per group took ~14 times as long as the same product written elementwise, measured
# with 2,972 groups), and its batched triangular solve under vmap has deadlocked the CPU thread pool
# when two ran at once on two cores; with d at most SMALL the factorizations and products are
# unrolled into elementwise operations that XLA fuses.
SMALL = 8


def _matmul(a, b):
    """Batched ``a @ b`` (``(..., m, k) @ (..., k, n)``); elementwise when ``k`` is small."""
    if a.shape[-1] <= SMALL:
        return jnp.sum(a[..., :, :, None] * b[..., None, :, :], axis=-2)
    return a @ b


def cholesky(K):
    """Lower Cholesky factors of a batch ``(J, d, d)``."""
    d = K.shape[-1]
    if d == 1:
        return jnp.sqrt(K)
    if d > SMALL:
        return jnp.linalg.cholesky(K)
    L = [[None] * d for _ in range(d)]
    for j in range(d):
        diag = K[:, j, j] - sum((L[j][k] ** 2 for k in range(j)), jnp.zeros_like(K[:, j, j]))
        L[j][j] = jnp.sqrt(diag)
        for i in range(j + 1, d):
            off = K[:, i, j] - sum((L[i][k] * L[j][k] for k in range(j)), jnp.zeros_like(K[:, i, j]))
            L[i][j] = off / L[j][j]
    zero = jnp.zeros_like(K[:, 0, 0])
    return jnp.stack([jnp.stack([L[i][j] if j <= i else zero for j in range(d)], axis=-1) for i in range(d)],
                     axis=-2)


def solve_lower(L, B):
    """``L^{-1} B`` for lower-triangular ``L`` ``(J, d, d)``, ``B`` ``(J, d, m)``."""
    d = L.shape[-1]
    if d == 1:
        return B / L
    if d > SMALL:
        return jax.scipy.linalg.solve_triangular(L, B, lower=True)
    rows = []
    for i in range(d):
        acc = B[:, i, :]
        for k in range(i):
            acc = acc - L[:, i, k, None] * rows[k]
        rows.append(acc / L[:, i, i, None])
    return jnp.stack(rows, axis=1)


def _solve_upper_transposed_matrix(L, B):
    """``L^{-T} B`` for lower-triangular ``L`` ``(J, d, d)``, ``B`` ``(J, d, m)``."""
    d = L.shape[-1]
    if d == 1:
        return B / L
    if d > SMALL:
        return jax.scipy.linalg.solve_triangular(jnp.swapaxes(L, 1, 2), B, lower=False)
    rows = [None] * d
    for i in reversed(range(d)):
        acc = B[:, i, :]
        for k in range(i + 1, d):
            acc = acc - L[:, k, i, None] * rows[k]
        rows[i] = acc / L[:, i, i, None]
    return jnp.stack(rows, axis=1)


def _chol_solve(chol, rhs):
    """``K^{-1} rhs`` from the lower Cholesky factor of ``K``."""
    if chol.shape[-1] == 1:  # scalar effects (the common case): a division
        return rhs / chol**2
    return _solve_upper_transposed_matrix(chol, solve_lower(chol, rhs))


def _solve_upper_transposed(chol, z):
    """``L^{-T} z`` for a batch of lower Cholesky factors ``L`` ``(J, d, d)`` and ``z`` ``(J, d)``."""
    return _solve_upper_transposed_matrix(chol, z[:, :, None])[:, :, 0]


def _insert_zeros(x, at: int, count: int, axis: int):
    """``x`` with ``count`` zero slices inserted before index ``at`` along ``axis`` (static shapes)."""
    if not count:
        return x
    shape = list(x.shape)
    shape[axis] = count
    head, tail = jnp.split(x, [at], axis=axis)
    return jnp.concatenate([head, jnp.zeros(shape, x.dtype), tail], axis=axis)


def _mean_map(spec: ChainSpec, factor: int, U, context_dim: int, dtype):
    """``M_g`` ``(J, d, context_dim)``: the prior mean ``M_g c = e_k U_g gamma_f`` as a map of the context,
    or ``None`` when the factor has no group-level predictors."""
    start, q = spec.gamma_slices[factor]
    k = spec.intercepts[factor]
    if not q or k < 0:
        return None
    d = spec.dims[spec.factors.index(factor)]
    J = U.shape[0]
    M = jnp.zeros((J, d, context_dim), dtype)
    return M.at[:, k, start:start + q].set(U.astype(dtype))


def _collapse(precision, linear, d, prior_precision, M):
    r"""Integrate ``b`` (the last ``d`` coordinates) out of ``data(c, b) x N(b | M c, Lambda^{-1})`` per group.

    ``precision``, ``linear`` are the canonical parameters of the *data* part (rows and messages from
    below); the prior enters through ``K = D + Lambda`` (``D`` the data precision of ``b``) and
    ``G = K^{-1} Lambda``, never as ``M' Lambda M - M' Lambda K^{-1} Lambda M``: that difference of two
    numbers of the size of ``Lambda`` cancels catastrophically when a scale is small (a large prior
    precision) in float32. With ``A`` the data blocks, the message on the context is

    .. math::

        A_{cc} - A_{cb} K^{-1} A_{bc} + M'G'DM + A_{cb} G M + (A_{cb} G M)',\qquad
        h_c - A_{cb} K^{-1} h_b + M' G' h_b,

    and ``b | c ~ N(K^{-1} h_b - (K^{-1} A_{bc} - G M) c, K^{-1})``.
    """
    A_cc = precision[:, :-d, :-d]
    A_cb = precision[:, :-d, -d:]
    D = precision[:, -d:, -d:]
    K = D + prior_precision
    chol = cholesky(K)
    A_bc = jnp.swapaxes(A_cb, 1, 2)
    J = precision.shape[0]
    rhs = jnp.concatenate([A_bc, linear[:, -d:, None],
                           jnp.broadcast_to(prior_precision, (J, d, d))], axis=2)
    solved = _chol_solve(chol, rhs)
    C = A_cc.shape[-1]
    X_c, x_h, G = solved[:, :, :C], solved[:, :, C], solved[:, :, C + 1:]
    message = A_cc - _matmul(A_cb, X_c)
    message_linear = linear[:, :-d] - _matmul(A_cb, x_h[:, :, None])[:, :, 0]
    gain = X_c
    if M is not None:
        GM = _matmul(G, M)                                             # (J, d, C)
        cross = _matmul(A_cb, GM)
        message = message + cross + jnp.swapaxes(cross, 1, 2) + _matmul(_matmul(jnp.swapaxes(GM, 1, 2), D), M)
        message_linear = message_linear + _matmul(jnp.swapaxes(GM, 1, 2), linear[:, -d:, None])[:, :, 0]
        gain = X_c - GM
    message = 0.5 * (message + jnp.swapaxes(message, 1, 2))
    # the part of log int exp(-b'Kb/2 + b'h_b) db free of the context (the normalizer's share of the group)
    log_norm = 0.5 * jnp.sum(linear[:, -d:] * x_h, axis=1) - jnp.sum(jnp.log(jnp.diagonal(chol, axis1=1, axis2=2)),
                                                                      axis=1)
    return message, message_linear, (chol, gain, x_h), log_norm


def _up_pass(spec: ChainSpec, chain: ChainData, row_linear, inv_var_y, precisions: Sequence, U: Sequence):
    """The pass up to the coarsest level: its groups' messages on ``rho`` ``(J_1, P, P)``, ``(J_1, P)``, what
    the pass down needs, and each coarsest group's share of the log normalizer (its subtree's)."""
    P = spec.root_dim
    L = len(spec.factors)
    D = chain.gram.shape[-1]
    context_dims = [P + sum(spec.dims[:i]) for i in range(L)]
    # rows, embedded from (beta, b_1..b_L) into (rho, b_1..b_L)
    total = context_dims[-1] + spec.dims[-1]
    assert total == D + P - spec.p
    precision = _insert_zeros(_insert_zeros(inv_var_y * chain.gram, spec.p, P - spec.p, axis=1),
                              spec.p, P - spec.p, axis=2)
    linear = _insert_zeros(inv_var_y * row_linear, spec.p, P - spec.p, axis=1)
    saved = [None] * L
    below = None   # per group of the current level, the log normalizer of the levels below it
    for i in reversed(range(L)):
        f = spec.factors[i]
        M = _mean_map(spec, f, U[f], context_dims[i], precision.dtype)
        message, message_linear, saved[i], level_norm = _collapse(precision, linear, spec.dims[i], precisions[f], M)
        if below is not None:
            level_norm = level_norm + below
        if i == 0:
            return message, message_linear, saved, level_norm
        parents = chain.parents[i - 1]
        J_parent = U[spec.factors[i - 1]].shape[0]
        precision = jax.ops.segment_sum(message, parents, num_segments=J_parent)
        linear = jax.ops.segment_sum(message_linear, parents, num_segments=J_parent)
        below = jax.ops.segment_sum(level_norm, parents, num_segments=J_parent)


def chain_precision(spec: ChainSpec, chain: ChainData, row_linear, inv_var_y, precisions: Sequence,
                    U: Sequence, root_precision, root_linear):
    """The pass up: messages from every level and the root's canonical parameters.

    Parameters
    ----------
    row_linear
        ``sum_r w_r (t_r - o_r)`` per finest group, ``(J_L, D)`` (``chain.linear`` less the offsets).
    inv_var_y
        ``1 / sigma_y^2``.
    precisions
        ``Sigma_f^{-1}`` for every factor (all factors).
    U
        ``U_f`` for every factor.
    root_precision, root_linear
        The canonical parameters of every factor on ``rho`` that is not a message (``p(rho)`` and the
        priors of factors outside the chain).

    Returns
    -------
    (root_precision, root_linear), saved
        ``saved`` holds, per level (coarsest first), what the pass down needs.
    """
    message, message_linear, saved, _ = _up_pass(spec, chain, row_linear, inv_var_y, precisions, U)
    return (root_precision + jnp.sum(message, axis=0), root_linear + jnp.sum(message_linear, axis=0)), saved


def _subtree_log_normalizers(message, message_linear, log_norm, rho):
    """Per coarsest group ``log Z_g(rho) = C_g + m_g' rho - rho' M_g rho / 2`` (its subtree given ``rho``)."""
    if not rho.shape[0]:
        return log_norm
    quadratic = jnp.sum(jnp.sum(message * rho[None, None, :], axis=2) * rho[None, :], axis=1)
    return log_norm + message_linear @ rho - 0.5 * quadratic


def subtree_log_normalizers(spec: ChainSpec, chain: ChainData, row_linear, inv_var_y, precisions, U, rho):
    r"""Given ``rho``, the effects of different coarsest groups (each with its nested groups: a *subtree*)
    are independent; the log normalizer of each subtree's Gaussian (priors' normalizers left out, as in
    :func:`chain_log_normalizer`), ``(J_1,)``."""
    message, message_linear, _, log_norm = _up_pass(spec, chain, row_linear, inv_var_y, precisions, U)
    return _subtree_log_normalizers(message, message_linear, log_norm, rho)


def draw_given_root(rng_key, spec: ChainSpec, chain: ChainData, row_linear, inv_var_y, precisions, U, rho):
    """Draw ``(b_{f_1}, ..., b_{f_L})`` given ``rho`` (every subtree from its conditional), and return the
    subtrees' log normalizers (:func:`subtree_log_normalizers`) from the same pass up."""
    message, message_linear, saved, log_norm = _up_pass(spec, chain, row_linear, inv_var_y, precisions, U)
    dtype = chain.gram.dtype
    sizes = [saved_i[0].shape[0] * d for saved_i, d in zip(saved, spec.dims)]
    normals = jax.random.normal(rng_key, (sum(sizes),), dtype)
    effects = _down_pass(spec, chain, saved, rho, normals)
    return effects, _subtree_log_normalizers(message, message_linear, log_norm, rho)


def _down_pass(spec: ChainSpec, chain: ChainData, saved, rho, normals):
    """Every level's effects given ``rho`` and their ancestors, from standard normals (the pass down)."""
    P = rho.shape[0]
    sizes = [saved_i[0].shape[0] * d for saved_i, d in zip(saved, spec.dims)]
    offsets = [sum(sizes[:i]) for i in range(len(sizes))]
    effects = []
    ancestors = None  # per level, the index of each group's ancestor at every coarser level
    for i, (chol, gain, mean_part) in enumerate(saved):
        J_i = chol.shape[0]
        if i == 0:
            context = jnp.broadcast_to(rho, (J_i, P))
            ancestors = []
        else:
            parents = chain.parents[i - 1]
            ancestors = [a[parents] for a in ancestors] + [parents]
            context = jnp.concatenate([jnp.broadcast_to(rho, (J_i, P))]
                                      + [effects[j][ancestors[j]] for j in range(i)], axis=1)
        # a dot, not an elementwise multiply-and-sum: with the latter the float32 case of
        # tests/test_mixed_exact.py fails (45 standard deviations), although on the same inputs outside
        # vmap the two forms agree to 5e-10; not understood yet (an XLA:CPU rewrite under vmap?)
        mean = mean_part - (gain @ context[:, :, None])[:, :, 0]
        z = normals[offsets[i]:offsets[i] + sizes[i]].reshape(mean.shape)
        noise = _solve_upper_transposed(chol, z)
        effects.append(mean + noise)
    return tuple(effects)


def chain_log_normalizer(spec: ChainSpec, chain: ChainData, row_linear, inv_var_y, precisions, U,
                         root_precision, root_linear):
    r"""``log Z = log \int exp(-x'Qx/2 + x'l) dx + (dim/2) log(2 pi)`` of the chain's Gaussian in canonical form.

    ``x = (rho, b_{f_1}, ..., b_{f_L})``, ``Q`` and ``l`` its precision and linear term as in
    :func:`draw_chain` with the priors' *normalizers* left out (``log Z`` is compared between two sets of
    row statistics under the same priors: a Metropolis-Hastings ratio with a Gaussian proposal). By the pass
    up: each eliminated group adds ``h_b' K^{-1} h_b / 2 - log |L_K|`` (the part free of the context, whose
    dependence the message carries), the root ``|L^{-1} h|^2 / 2 - log |L|``; ``log Z = l'Q^{-1}l/2 -
    log |Q|/2``.
    """
    message, message_linear, _, log_norm = _up_pass(spec, chain, row_linear, inv_var_y, precisions, U)
    log_norm = jnp.sum(log_norm)
    if spec.root_dim:   # elementwise for a small root (no LAPACK call: this runs inside slice loops)
        lam = root_precision + jnp.sum(message, axis=0)
        h = root_linear + jnp.sum(message_linear, axis=0)
        chol = cholesky(lam[None])[0]
        white = solve_lower(chol[None], h[None, :, None])[0, :, 0]
        log_norm = log_norm + 0.5 * jnp.sum(white**2) - jnp.sum(jnp.log(jnp.diagonal(chol)))
    return log_norm


def draw_chain(rng_key, spec: ChainSpec, chain: ChainData, row_linear, inv_var_y, precisions, U,
               root_precision, root_linear):
    """Draw ``(rho, b_{f_1}, ..., b_{f_L})`` from their joint conditional (module docstring).

    Returns
    -------
    rho, effects
        ``rho`` ``(P,)`` and a tuple of ``b_{f_i}`` ``(J_i, d_i)``, coarsest first.
    """
    P = spec.root_dim
    (lam, h), saved = chain_precision(spec, chain, row_linear, inv_var_y, precisions, U, root_precision,
                                      root_linear)
    dtype = chain.gram.dtype
    sizes = [P] + [saved_i[0].shape[0] * d for saved_i, d in zip(saved, spec.dims)]
    normals = jax.random.normal(rng_key, (sum(sizes),), dtype)   # one draw for the whole chain
    if P:
        chol = jnp.linalg.cholesky(lam)
        z = normals[:P]
        w = jax.scipy.linalg.solve_triangular(chol, h, lower=True)
        rho = jax.scipy.linalg.solve_triangular(chol.T, w + z, lower=False)
    else:
        rho = jnp.zeros((0,), dtype)
    return rho, _down_pass(spec, chain, saved, rho, normals[P:])

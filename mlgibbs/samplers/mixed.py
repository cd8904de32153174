r"""Blocked Gibbs sampler for the general Gaussian multilevel model (varying slopes, nested, crossed).

One sweep draws, in turn, from the full conditionals

1. for each chain of nested factors (:mod:`mlgibbs.conditionals.tree`): the fixed effects and every
   group-level coefficient ``rho = (beta, gamma_1, ..., gamma_F)`` jointly with the chain's effects
   ``b_f``, given the effects of the other chains (exact: one pass up and one down the chain). A purely
   nested model has one chain, so all its locations are drawn in one exact block; crossed factors are
   drawn in turn, each jointly with ``rho`` (Papaspiliopoulos, Roberts & Zanella 2020);
2. ``sigma_y^2 | locations``: the residual sum of squares ``S`` over ``n`` terms, by its prior
   (:func:`~mlgibbs.conditionals.variance.draw_variance`: exact, or one Metropolis-Hastings step for
   the half-normal);
3. ``Sigma_f | b_f, gamma_f`` for every factor, block by block: a scale (``d = 1``) from the sum of
   squares of the ``J_f`` deviations ``b_f[g] - e U_f,g gamma_f`` as in 2; a correlated block from its
   scatter matrix by :func:`~mlgibbs.conditionals.covariance.draw_covariance` (inverse-Wishart:
   exact; Huang & Wand: exact two-block Gibbs through its auxiliary variables).

Every draw leaves the posterior invariant; all but the half-normal variance are exact conditional draws.

A binomial-type family (``structure.family``, :mod:`mlgibbs.families`) first draws its augmentation
variables given the locations (Polya-Gamma weights for the logit link, Albert-Chib latent normals for
the probit: :mod:`mlgibbs.conditionals.augmentation`); given them the rows form a Gaussian regression
with row precisions ``w_r`` and working responses ``s_r / w_r``, and 1 and 3 are drawn as above with
those weights (``sigma_y`` is not a parameter: step 2 is skipped, the state keeps ``sigma_y = 1``). The
parameter-expanded scale moves act on that weighted regression too, and before each chain's locations its
scales are drawn with locations integrated out (:func:`collapsed_scale_moves`: a scalar scale by a slice
step on the marginal that the tree's log normalizer gives, a correlated block by slice steps on its
log-Cholesky coordinates with its factor's effects integrated out; then the locations given the new scales,
a blocked Gibbs step on both). A model without grouping factors draws ``beta`` alone (:func:`update_root`). The
negative binomial draws its
weights afresh for each block and keeps its dispersion ``r`` in ``sigma_y``'s slot
(:mod:`mlgibbs.conditionals.negbinomial`); the Poisson replaces step 1 by Metropolis-Hastings blocks with
IWLS Gaussian proposals and the moves by slice steps (:mod:`mlgibbs.conditionals.poisson`), and so do the
logit families with ``structure.iwls`` (``sampler="iwls"``, :mod:`mlgibbs.conditionals.logit`), without
augmentation.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from mlgibbs.base import SamplingAlgorithm
from mlgibbs.conditionals.segment import segment_sum
from mlgibbs.conditionals.tree import ChainData, draw_chain
from mlgibbs.conditionals.variance import draw_variances
from mlgibbs.models.mixed_data import MixedData, MixedStructure

__all__ = ["MixedState", "MixedPriors", "mixed_kernel", "mixed_step", "mixed_init", "update_chain",
           "fitted_values", "deviations"]


class MixedState(NamedTuple):
    """State of the multilevel Gibbs sampler (kernel coordinates).

    Attributes
    ----------
    beta
        Fixed effects, ``(p,)``.
    gamma
        Per factor, its group-level coefficients ``(q_f,)``.
    b
        Per factor, the varying coefficients of its groups ``(J_f, d_f)``.
    sigma_y
        Residual standard deviation, ``()``.
    cov
        Per factor, the block-diagonal covariance ``Sigma_f`` of its varying coefficients ``(d_f, d_f)``,
        in the coordinates of its prior (see :attr:`MixedData.coef_maps`).
    """

    beta: jax.Array
    gamma: tuple[jax.Array, ...]
    b: tuple[jax.Array, ...]
    sigma_y: jax.Array
    cov: tuple[jax.Array, ...]


class MixedPriors(NamedTuple):
    """Scale priors as a kernel sees them (static, hashable).

    Attributes
    ----------
    sigma_y
        Scalar prior on ``sigma_y``.
    cov
        Per factor, one prior per block of :attr:`MixedStructure.cov_blocks`: a scalar prior for a
        block of size 1, a covariance prior (:class:`~mlgibbs.priors.InverseWishart`,
        :class:`~mlgibbs.priors.HuangWand`) for a larger one.
    """

    sigma_y: object
    cov: tuple[tuple[object, ...], ...]


def _row_effects(structure: MixedStructure, data: MixedData, b, factors):
    """``sum_{f in factors} Z_f,r b_f[g_f(r)]`` for every row."""
    slices = structure.column_slices()
    total = jnp.zeros(data.t.shape, data.t.dtype)
    for f in factors:
        start, d = slices[f]
        total = total + jnp.sum(data.W[:, start:start + d] * b[f][data.codes[:, f]], axis=1)
    return total


def fitted_values(structure: MixedStructure, W, codes, beta, b):
    """``X_r beta + sum_f Z_f,r b_f[g_f(r)]`` for rows with design ``W`` and factor levels ``codes``."""
    slices = structure.column_slices()
    total = W[:, :structure.p] @ beta
    for f, (start, d) in enumerate(slices):
        total = total + jnp.sum(W[:, start:start + d] * b[f][codes[:, f]], axis=1)
    return total


def deviations(structure: MixedStructure, U, gamma, b, f: int):
    """``b_f[g] - e U_f,g gamma_f``: the effects less their group-level means, ``(J_f, d_f)``."""
    k = structure.intercepts[f]
    dev = b[f]
    if structure.q[f] and k >= 0:
        dev = dev.at[:, k].add(-(U[f] @ gamma[f]))
    return dev


def _precision(cov):
    d = cov.shape[0]
    chol = jnp.linalg.cholesky(cov)
    return jax.scipy.linalg.cho_solve((chol, True), jnp.eye(d, dtype=cov.dtype))


def effect_precisions(state: MixedState, data: MixedData):
    """``C_f^{-T} Sigma_f^{-1} C_f^{-1}`` per factor: the precision of ``b_f`` in the kernel's coordinates."""
    return [m.T @ _precision(c) @ m for c, m in zip(state.cov, data.coef_maps)]


def _root_prior(structure: MixedStructure, data: MixedData, precisions, b, outside):
    """``p(rho)`` plus the prior factors on ``gamma_f`` of the factors outside a chain (their ``b`` fixed)."""
    lp = data.location_prior
    lam = lp.precision
    h = lp.precision @ lp.mean
    for f in outside:
        start, q = structure.gamma_slices()[f]
        k = structure.intercepts[f]
        if not q or k < 0:
            continue
        U = data.U[f]
        lam_f = precisions[f]
        # -1/2 sum_g (b_g - e_k U_g gamma)' Lam (b_g - e_k U_g gamma): Lam_kk U'U and U'(b Lam[:, k])
        lam = lam.at[start:start + q, start:start + q].add(lam_f[k, k] * (U.T @ U))
        h = h.at[start:start + q].add(U.T @ (b[f] @ lam_f[:, k]))
    return lam, h


def _split_rho(structure: MixedStructure, rho):
    beta = rho[:structure.p]
    gamma = tuple(rho[start:start + q] for start, q in structure.gamma_slices())
    return beta, gamma


def _chain_inputs(structure: MixedStructure, k: int, state: MixedState, data: MixedData, precisions,
                  weights, linear):
    """The arguments of :func:`~mlgibbs.conditionals.tree.draw_chain` for chain ``k`` (its row statistics,
    with the offsets of the factors outside it, and the root prior)."""
    F = structure.num_factors
    chain = structure.chains[k]
    b = list(state.b)
    outside = tuple(f for f in range(F) if f not in chain)
    chain_data: ChainData = data.chains[k]
    cols = jnp.asarray(structure.chain_columns(k), jnp.int32)
    fine = data.codes[:, chain[-1]]
    J = chain_data.gram.shape[0]
    if weights is None:
        row_linear = chain_data.linear
        inv_var_y = 1.0 / state.sigma_y**2
        if outside:
            offsets = _row_effects(structure, data, b, outside)
            row_linear = row_linear - segment_sum(data.W[:, cols] * offsets[:, None], fine, J)
    else:  # the weighted Gaussian regression of the augmented model, its statistics recomputed
        Wc = data.W[:, cols]
        D = Wc.shape[1]
        gram = segment_sum(((Wc * weights[:, None])[:, :, None] * Wc[:, None, :]).reshape(-1, D * D), fine, J)
        chain_data = chain_data._replace(gram=gram.reshape(J, D, D))
        working = linear
        if outside:
            working = working - weights * _row_effects(structure, data, b, outside)
        row_linear = segment_sum(Wc * working[:, None], fine, J)
        inv_var_y = jnp.ones((), data.W.dtype)
    lam, h = _root_prior(structure, data, precisions, b, outside)
    return (structure.chain_spec(k), chain_data, row_linear, inv_var_y, precisions, data.U, lam, h)


def update_chain(structure: MixedStructure, k: int, rng_key, state: MixedState, data: MixedData,
                 precisions=None, weights=None, linear=None) -> MixedState:
    """Redraw ``rho = (beta, gamma)`` and the effects of chain ``k`` from their joint full conditional.

    Given the variances and the effects of the factors outside the chain (the exact block draw of
    :func:`mlgibbs.conditionals.tree.draw_chain`). ``precisions`` are the ``Sigma_f^{-1}`` when the
    caller has them. With ``weights`` and ``linear`` (per kernel row: an augmented binomial-type model,
    :mod:`mlgibbs.conditionals.augmentation`) the rows' likelihood is ``exp(sum_r linear_r eta_r -
    weights_r eta_r^2 / 2)`` instead of the Gaussian's with ``sigma_y``.
    """
    if precisions is None:
        precisions = effect_precisions(state, data)
    rho, effects = draw_chain(rng_key, *_chain_inputs(structure, k, state, data, precisions, weights, linear))
    return _with_chain(structure, k, state, rho, effects)


def update_root(structure: MixedStructure, rng_key, state: MixedState, data: MixedData, weights, linear):
    r"""``beta`` of a model without grouping factors from its weighted Gaussian regression:
    ``N(A^{-1} l, A^{-1})`` with ``A = Lambda_0 + X'WX``, ``l = h_0 + X' s`` (``Lambda_0, h_0`` the prior's
    canonical parameters; ``W`` and ``s`` the rows' weights and linear terms, as in :func:`update_chain`)."""
    X = data.W[:, :structure.p]
    lp = data.location_prior
    lam = lp.precision + jnp.sum((X * weights[:, None])[:, :, None] * X[:, None, :], axis=0)
    h = lp.precision @ lp.mean + jnp.sum(X * linear[:, None], axis=0)
    chol = jnp.linalg.cholesky(lam)
    white = jax.scipy.linalg.solve_triangular(chol, h, lower=True)
    z = jax.random.normal(rng_key, h.shape, h.dtype)
    return state._replace(beta=jax.scipy.linalg.solve_triangular(chol.T, white + z, lower=False))


def _with_chain(structure: MixedStructure, k: int, state: MixedState, rho, effects) -> MixedState:
    b = list(state.b)
    for f, effect in zip(structure.chains[k], effects):
        b[f] = effect
    beta, gamma = _split_rho(structure, rho)
    return state._replace(beta=beta, gamma=gamma, b=tuple(b))


def scale_moves(structure: MixedStructure, priors: MixedPriors, rng_key, state: MixedState,
                data: MixedData, resid=None, dev_rows=None, weights=None) -> MixedState:
    r"""Parameter-expanded group moves: rescale each scalar term's deviations and its scale together.

    For a scalar block ``j`` of factor ``f`` with deviations ``delta_g`` (the effects less their
    group-level means, in the coordinates of the prior) and standard deviation ``sigma``, the move
    ``(delta, sigma) -> (c delta, |c| sigma)`` is drawn from (Liu & Wu 1999; the Jacobian
    ``|c|^{J+1}`` and Haar measure ``dc/|c|`` cancel ``N(c delta | 0, c^2 sigma^2)``'s ``|c|^{-J}``)

    .. math::

        p(c) \propto \exp\Big(-\frac{A c^2 - 2 B c}{2\sigma_y^2}\Big)\ p_\sigma(|c|\sigma),

    with ``v_r`` the rows' contribution of the block, ``A = sum v_r^2``, ``B = sum v_r (t_r - f_r + v_r)``
    (``f_r`` the current fit). Under the uniform and half-normal priors ``c`` is Gaussian (exact draw);
    under the others one independence Metropolis-Hastings step with the Gaussian likelihood factor as
    proposal, accepted with ``p_sigma(|c'| sigma) / p_sigma(sigma)``. It leaves the posterior invariant
    and removes the slow mixing of a scale near zero (Pastes' batches), where the conditional draws of
    ``sigma | delta`` and ``delta | sigma`` move little.

    Each coordinate ``j`` of a *correlated* block (size ``s``, covariance ``Sigma``) moves the same way:
    ``(delta_.j, Sigma) -> (c delta_.j, D Sigma D)`` with ``D = diag(1, .., c, .., 1)``; the map on the
    symmetric ``Sigma`` has Jacobian ``|c|^{s+1}``, so ``p(c)`` is the Gaussian factor above times
    ``p_Sigma(D Sigma D) |c|^s``, drawn by one independence Metropolis-Hastings step with the Gaussian
    factor as proposal, accepted with ``p_Sigma(D Sigma D) |c'|^s / p_Sigma(Sigma)`` (the prior's density,
    Huang-Wand with its auxiliaries integrated out, from ``Sigma^{-1}`` and ``log |Sigma|``).

    The blocks are moved in turn; a move of block ``i`` changes the residuals by ``-(c_i - 1) v_i``, so
    every ``B`` follows from one pass over the rows: ``V'V`` and ``V' (t - f)`` for the matrix ``V`` of
    all blocks' ``v``. ``resid`` (``t - f``) and ``dev_rows`` (per factor, the deviations of each row's
    group, ``(R, d_f)``) are computed when not given.

    An augmented binomial-type model (``weights`` ``w_r`` given, ``sigma_y = 1``) is a Gaussian model with
    row precisions ``w_r`` given its augmentation variables; then ``A = sum w_r v_r^2`` and ``resid`` must
    be the weighted working residual ``s_r - w_r f_r`` (:mod:`mlgibbs.conditionals.augmentation`), so that
    ``B = sum v_r (s_r - w_r f_r) + A``.
    """
    from mlgibbs.priors import HalfNormal, Uniform

    dtype = data.t.dtype
    F = structure.num_factors
    owner, blocks = _move_blocks(structure)
    if not blocks:
        return state
    key_z, key_u = jax.random.split(rng_key)
    normals = jax.random.normal(key_z, (len(blocks),), dtype)      # one draw for every block
    uniforms = jax.random.uniform(key_u, (len(blocks),), dtype)
    devs = [deviations(structure, data.U, state.gamma, state.b, f) @ data.coef_maps[f].T for f in range(F)]
    if resid is None:  # the rows' residuals t - fit at the current locations
        if weights is not None:
            raise ValueError("scale_moves with weights needs the weighted working residuals resid")
        resid = data.t - fitted_values(structure, data.W, data.codes, state.beta, state.b)
    if dev_rows is None:
        dev_rows = [devs[f][data.codes[:, f]] for f in range(F)]
    c_maps = [2.0 * jnp.eye(c.shape[0], dtype=dtype) - c for c in data.coef_maps]  # C = I + e u' = 2I - C^{-1}
    V = jnp.stack([_block_rows(structure, data, c_maps, dev_rows, f, j) for f, j in blocks], axis=1)  # (R, blocks)
    # as fused elementwise reductions: a skinny (blocks x R) @ (R x blocks) product is slow on CPU
    VW = V if weights is None else V * weights[:, None]
    gram = jnp.sum(VW[:, :, None] * V[:, None, :], axis=0)
    cross = jnp.sum(V * resid[:, None], axis=0)
    var_y = state.sigma_y**2 if weights is None else jnp.ones((), dtype)   # augmented: unit-free (NB keeps r there)
    scales = [jnp.ones((d,), dtype) for d in structure.dims]       # c per coordinate of each factor
    moved = []
    block_precision = {}   # (f, start) -> (Sigma^{-1}, log |Sigma|) of a correlated block, at the current moves
    for i, (f, j) in enumerate(blocks):
        A = gram[i, i]
        B = cross[i] + A
        for k, c_k in enumerate(moved):
            B = B - (c_k - 1.0) * gram[i, k]
        sigma = jnp.sqrt(state.cov[f][j, j])
        start, size = owner[(f, j)]
        prior = priors.cov[f][_block_index(structure, f, start)]
        z = normals[i]
        if size > 1:   # a coordinate of a correlated block: Sigma -> D Sigma D, D = diag(1, .., c, .., 1)
            if (f, start) not in block_precision:
                block_precision[(f, start)] = _precision_and_log_det(state.cov[f][start:start + size,
                                                                                  start:start + size])
            precision, log_det = block_precision[(f, start)]
            proposal = B / A + jnp.sqrt(var_y / A) * z
            safe = jnp.where(proposal != 0, proposal, 1.0)
            scale = jnp.ones((size,), dtype).at[j - start].set(1.0 / safe)
            moved_precision = precision * scale[:, None] * scale[None, :]
            moved_log_det = log_det + 2.0 * jnp.log(jnp.abs(safe))
            log_ratio = (prior.log_prob_from_precision(moved_precision, moved_log_det)
                         - prior.log_prob_from_precision(precision, log_det) + size * jnp.log(jnp.abs(safe)))
            accept = (jnp.log(uniforms[i]) < log_ratio) & (proposal != 0)
            c = jnp.where(accept, proposal, 1.0)
            block_precision[(f, start)] = (jnp.where(accept, moved_precision, precision),
                                           jnp.where(accept, moved_log_det, log_det))
        elif isinstance(prior, (Uniform, HalfNormal)):
            precision = A / var_y
            if isinstance(prior, HalfNormal):
                precision = precision + state.cov[f][j, j] / jnp.asarray(prior.scale, dtype) ** 2
            c = (B / var_y) / precision + z / jnp.sqrt(precision)
        else:
            proposal = B / A + jnp.sqrt(var_y / A) * z
            log_ratio = prior.log_prob(jnp.abs(proposal) * sigma) - prior.log_prob(sigma)
            accept = jnp.log(uniforms[i]) < log_ratio
            c = jnp.where(accept & (proposal != 0), proposal, 1.0)
        moved.append(c)
        scales[f] = scales[f].at[j].set(c)
    return _rescaled(structure, state, data, devs, scales, c_maps, sorted({f for f, _ in blocks}))


def _move_blocks(structure: MixedStructure):
    """Every coordinate ``(f, j)`` moved by the parameter-expanded moves (a scalar term, or one coordinate
    of a correlated term), sorted, and the ``(start, size)`` of the block that owns each."""
    owner = {(f, j): (start, size) for f in range(structure.num_factors) for start, size in structure.cov_blocks[f]
             for j in range(start, start + size)}
    return owner, sorted(owner)


def _block_rows(structure: MixedStructure, data: MixedData, c_maps, dev_rows, f: int, j: int):
    """``v_r``: coordinate ``j`` of factor ``f``'s deviations' contribution to each row's linear predictor."""
    start, d = structure.column_slices()[f]
    column = data.W[:, start + j] if d == 1 else data.W[:, start:start + d] @ c_maps[f][:, j]
    return column * dev_rows[f][:, j]


def _rescaled(structure: MixedStructure, state: MixedState, data: MixedData, devs, scales, c_maps, factors):
    """The state with each factor's deviations multiplied by its coordinates' ``c`` and ``Sigma -> D Sigma D``."""
    b, cov = list(state.b), list(state.cov)
    for f in factors:
        new_b = (devs[f] * scales[f]) @ c_maps[f].T
        k = structure.intercepts[f]
        if structure.q[f] and k >= 0:
            new_b = new_b.at[:, k].add(data.U[f] @ state.gamma[f])
        b[f] = new_b
        cov[f] = cov[f] * scales[f][:, None] * scales[f][None, :]     # D Sigma D (signed: correlations too)
    return state._replace(b=tuple(b), cov=tuple(cov))


def iwls_scale_moves(structure: MixedStructure, priors: MixedPriors, rng_key, state: MixedState,
                     data: MixedData, fit, dev_rows) -> MixedState:
    r"""The parameter-expanded moves of :func:`scale_moves` under a likelihood without augmentation (the
    Poisson, or the logit families with ``sampler="iwls"``: :func:`iwls_likelihood`): for each block in
    turn, ``(delta, sigma) -> (c delta, c sigma)`` (``c > 0``) by one slice step on ``u = log c`` with density

    .. math::

        \ell\big(\eta + (e^u - 1) v\big) + \log p_\sigma(e^u \sigma) + u
        \quad \big(\text{a correlated block: } \log p_\Sigma(D \Sigma D) + (s + 1)\, u\big),

    ``v`` the block's contribution to the rows' linear predictor ``eta`` and ``ell`` the log
    likelihood: :func:`scale_moves`'s density of ``c`` (with respect to ``dc``) times the Jacobian
    ``dc/du = e^u``. ``fit`` is ``eta`` at the current locations; ``dev_rows`` as in :func:`scale_moves`.
    """
    from mlgibbs.conditionals.poisson import px_log_jacobian
    from mlgibbs.conditionals.slice import slice_sample

    log_likelihood_change = iwls_likelihood(structure).log_likelihood_change

    dtype = data.t.dtype
    F = structure.num_factors
    owner, blocks = _move_blocks(structure)
    if not blocks:
        return state
    keys = jax.random.split(rng_key, len(blocks))
    devs = [deviations(structure, data.U, state.gamma, state.b, f) @ data.coef_maps[f].T for f in range(F)]
    c_maps = [2.0 * jnp.eye(c.shape[0], dtype=dtype) - c for c in data.coef_maps]
    scales = [jnp.ones((d,), dtype) for d in structure.dims]
    block_precision = {}
    eta = fit
    for i, (f, j) in enumerate(blocks):
        v = _block_rows(structure, data, c_maps, dev_rows, f, j)
        block_start, size = owner[(f, j)]
        prior = priors.cov[f][_block_index(structure, f, block_start)]
        if size > 1:
            if (f, block_start) not in block_precision:
                block_precision[(f, block_start)] = _precision_and_log_det(
                    state.cov[f][block_start:block_start + size, block_start:block_start + size])
            precision, log_det = block_precision[(f, block_start)]
            at = j - block_start

            def moved(u, precision=precision, log_det=log_det, at=at, size=size):
                scale = jnp.ones((size,), dtype).at[at].set(jnp.exp(-u))
                return precision * scale[:, None] * scale[None, :], log_det + 2.0 * u

            def log_density(u, v=v, eta=eta, prior=prior, moved=moved, size=size):
                return (jnp.sum(log_likelihood_change(eta, eta + jnp.expm1(u) * v, data))
                        + prior.log_prob_from_precision(*moved(u)) + px_log_jacobian(u, size))
        else:
            sigma = jnp.sqrt(state.cov[f][j, j])

            def log_density(u, v=v, eta=eta, prior=prior, sigma=sigma):
                return (jnp.sum(log_likelihood_change(eta, eta + jnp.expm1(u) * v, data))
                        + prior.log_prob(jnp.exp(u) * sigma) + px_log_jacobian(u, 0))
        u = slice_sample(keys[i], jnp.zeros((), dtype), log_density, 0.5)
        if size > 1:
            block_precision[(f, block_start)] = moved(u)
        c = jnp.exp(u)
        eta = eta + jnp.expm1(u) * v
        scales[f] = scales[f].at[j].set(c)
    return _rescaled(structure, state, data, devs, scales, c_maps, sorted({f for f, _ in blocks}))


def effects_prior_log_normalizer(log_sigma, num_groups):
    """``-J log sigma``: the log normalizer of ``J`` effects' prior ``N(delta | 0, sigma^2)`` (up to a constant)
    that the tree's log normalizer leaves out (:func:`collapsed_scale_moves`)."""
    return -num_groups * log_sigma


def cholesky_log_jacobian(log_diag):
    r"""``log |d Sigma / d theta|`` (up to a constant) of the log-Cholesky coordinates of a ``d x d`` covariance:
    ``Sigma = L L'``, ``L_ii = exp(theta_ii)``, ``L_ij = theta_ij`` (``i > j``). The map ``L -> L L'`` has Jacobian
    ``2^d prod_i L_ii^{d - i + 1}`` (Muirhead 1982, thm 2.1.9) and ``dL_ii / d theta_ii = L_ii``, so the log
    Jacobian is ``sum_i (d - i + 2) theta_ii`` (``i = 1..d``); for ``d = 1``, ``2 theta`` (``sigma^2 = e^{2u}``)."""
    d = log_diag.shape[-1]
    return jnp.sum(jnp.arange(d + 1, 1, -1, dtype=log_diag.dtype) * log_diag, axis=-1)


def _from_log_cholesky(theta):
    """``(L, Sigma^{-1}, log |Sigma|)`` from log-Cholesky coordinates ``theta`` (``d x d``, lower part used)."""
    log_diag = jnp.diagonal(theta)
    chol = jnp.tril(theta, -1) + jnp.diag(jnp.exp(log_diag))
    return chol, _precision_from_cholesky(chol), 2.0 * jnp.sum(log_diag)


def _factor_group_statistics(structure: MixedStructure, f: int, state: MixedState, data: MixedData, weights,
                             linear):
    r"""Per group ``g`` of factor ``f``, the canonical parameters of its deviations ``delta_g = b_g - mean_g``
    (kernel coordinates) in the rows' weighted likelihood, every other location fixed: ``G_g = sum_r w_r z_r
    z_r'`` and ``h_g = sum_r z_r (s_r - w_r o_r)``, ``o_r`` the row's linear predictor at ``delta_g = 0``;
    and the prior means ``mean_g``. Returns ``(G, h, mean)``."""
    start, d = structure.column_slices()[f]
    Z = data.W[:, start:start + d]
    codes = data.codes[:, f]
    J = data.U[f].shape[0]
    mean = state.b[f] - deviations(structure, data.U, state.gamma, state.b, f)
    offset = (fitted_values(structure, data.W, data.codes, state.beta, state.b)
              - jnp.sum(Z * (state.b[f] - mean)[codes], axis=1))
    gram = segment_sum(((Z * weights[:, None])[:, :, None] * Z[:, None, :]).reshape(-1, d * d), codes, J)
    return gram.reshape(J, d, d), segment_sum(Z * (linear - weights * offset)[:, None], codes, J), mean


def _effects_log_marginal(precision, gram, h):
    r"""``sum_g log int N(delta | 0, P^{-1}) exp(delta' h_g - delta' G_g delta / 2) d delta`` less its
    ``(J/2) log |P|`` (the effects' prior normalizer, added by the caller): ``sum_g h_g' K_g^{-1} h_g / 2 -
    log |L_g|`` with ``K_g = P + G_g = L_g L_g'``."""
    from mlgibbs.conditionals.tree import cholesky, solve_lower

    chol = cholesky(precision[None] + gram)
    white = solve_lower(chol, h[:, :, None])
    return 0.5 * jnp.sum(white**2) - jnp.sum(jnp.log(jnp.diagonal(chol, axis1=1, axis2=2)))


def collapsed_scale_moves(structure: MixedStructure, priors: MixedPriors, k: int, rng_key, state: MixedState,
                          data: MixedData, precisions, weights=None, linear=None):
    r"""Each scale and covariance block of chain ``k``'s factors by slice steps with locations integrated out
    (a *collapsed* draw; the caller redraws the chain's locations next, so the pair is a blocked Gibbs step,
    van Dyk & Park 2008). A scalar block, by one step on ``u = log sigma`` with all the chain's locations
    integrated out:

    .. math::

        \log p(u \mid \cdot) = \log p_\sigma(e^u) + u - J_f u + \log Z_k(e^u),

    ``Z_k`` the log normalizer of the chain's Gaussian (:func:`mlgibbs.conditionals.tree.chain_log_normalizer`,
    rows weighted by ``weights`` with linear terms ``linear``, or the Gaussian rows with ``sigma_y``) and
    ``-J_f u`` the normalizer of the ``J_f`` effects' prior ``N(delta | 0, sigma^2)`` that ``Z_k`` leaves out.
    A correlated block ``Sigma`` (size ``s``) of factor ``f``, by one step on each of its log-Cholesky
    coordinates ``theta`` in turn (``Sigma = L L'``, ``L_ii = e^{theta_ii}``, ``L_ij = theta_ij``) with the
    factor's effects ``b_f`` integrated out given every other location (a group at a time:
    :func:`_factor_group_statistics`, :func:`_effects_log_marginal`, whose per-group Cholesky factors of
    ``s x s`` matrices cost far less than the chain's normalizer inside a slice loop):

    .. math::

        \log p(\theta \mid \cdot) = \log p_\Sigma(\Sigma) + \log\Big|\frac{d\Sigma}{d\theta}\Big|
        - \frac{J_f}{2} \log |\Sigma| + \sum_g \log \int N(\delta \mid 0, \Sigma_f)\,
        \ell_g(\delta)\, d\delta

    (:func:`cholesky_log_jacobian`; the prior's density from ``Sigma^{-1}`` and ``log |Sigma|``, Huang-Wand
    with its auxiliaries integrated out). Given the scale the conditional draw of the deviations moves
    little when ``sigma`` is small and the groups are poorly informed (the augmented Bernoulli's county
    scale on radon, the correlation of Contraception's district intercepts and urban slopes); integrated
    out, ``Sigma`` moves by its marginal. Returns the new state (scales), precisions, and the chain's
    inputs to :func:`~mlgibbs.conditionals.tree.draw_chain` at the new scales (its row statistics computed
    once).
    """
    from mlgibbs.conditionals.slice import slice_sample
    from mlgibbs.conditionals.tree import chain_log_normalizer as tree_log_normalizer

    chain = structure.chains[k]
    scalar = [(f, start) for f in chain for start, size in structure.cov_blocks[f] if size == 1]
    correlated = [f for f in chain if any(size > 1 for _, size in structure.cov_blocks[f])]
    inputs = _chain_inputs(structure, k, state, data, precisions, weights, linear)
    if not (scalar or correlated):
        return state, precisions, inputs
    key_c, key_s = jax.random.split(rng_key) if correlated else (None, rng_key)
    cov = list(state.cov)
    precisions = list(precisions)
    inverse = {f: _precision(cov[f]) for f in chain}   # Sigma_f^{-1}, prior coordinates

    def effect_precision(inner, f):
        m = data.coef_maps[f]
        return inner if m.shape[0] == 1 else jnp.sum(m.T[:, :, None] * (inner @ m)[None, :, :], axis=1)

    def bracket(f):
        # the initial bracket: about the spread of log sigma given J groups (a constant of the model, so the
        # move stays a valid slice step; fewer shrinkage steps than a width of 1 for many groups)
        return min(1.0, 3.0 / math.sqrt(data.U[f].shape[0]))

    # 1. correlated blocks, factor by factor, each factor's effects integrated out given every other location;
    #    the effects are redrawn given the new Sigma_f when a later factor's move conditions on them
    for i, (key_f, f) in enumerate(zip(jax.random.split(key_c, len(correlated)) if correlated else [], correlated)):
        J = jnp.asarray(data.U[f].shape[0], cov[f].dtype)
        gram, h, mean = _factor_group_statistics(structure, f, state, data, weights, linear)
        steps = [(start, size, a, c) for start, size in structure.cov_blocks[f] if size > 1
                 for a in range(size) for c in range(a + 1)]   # one slice step per log-Cholesky coordinate
        keys = jax.random.split(key_f, len(steps) + 1)
        theta = {}
        for key, (start, size, a, c) in zip(keys, steps):
            prior = priors.cov[f][_block_index(structure, f, start)]
            block = slice(start, start + size)
            if start not in theta:
                chol = jnp.linalg.cholesky(cov[f][block, block])
                theta[start] = jnp.tril(chol, -1) + jnp.diag(jnp.log(jnp.diagonal(chol)))
            current = theta[start]

            def log_density(x, f=f, prior=prior, J=J, block=block, current=current, a=a, c=c, gram=gram, h=h):
                moved = current.at[a, c].set(x)
                _, block_precision, log_det = _from_log_cholesky(moved)
                precision = effect_precision(inverse[f].at[block, block].set(block_precision), f)
                return (prior.log_prob_from_precision(block_precision, log_det)
                        + cholesky_log_jacobian(jnp.diagonal(moved))
                        + effects_prior_log_normalizer(0.5 * log_det, J)
                        + _effects_log_marginal(precision, gram, h))

            # an off-diagonal L_ac is on the scale of L_aa (another coordinate, fixed during this step)
            scale = 1.0 if a == c else jnp.exp(current[a, a])
            theta[start] = current.at[a, c].set(slice_sample(key, current[a, c], log_density, bracket(f) * scale))
            chol, block_precision, _ = _from_log_cholesky(theta[start])
            cov[f] = cov[f].at[block, block].set(chol @ chol.T)
            inverse[f] = inverse[f].at[block, block].set(block_precision)
        precisions[f] = effect_precision(inverse[f], f)
        if i < len(correlated) - 1:   # b_f | Sigma_f, others: N(K_g^{-1} h_g, K_g^{-1}) per group
            from mlgibbs.conditionals.tree import _solve_upper_transposed, cholesky, solve_lower

            chol = cholesky(precisions[f][None] + gram)
            white = solve_lower(chol, h[:, :, None])[:, :, 0]
            z = jax.random.normal(keys[-1], white.shape, white.dtype)
            b = list(state.b)
            b[f] = mean + _solve_upper_transposed(chol, white + z)
            state = state._replace(b=tuple(b))
    # 2. scalar blocks, every location of the chain integrated out
    for key, (f, j) in zip(jax.random.split(key_s, len(scalar)) if scalar else [], scalar):
        prior = priors.cov[f][_block_index(structure, f, j)]
        J = jnp.asarray(data.U[f].shape[0], cov[f].dtype)

        def precision_at(u, f=f, j=j):
            # a scalar block of a block-diagonal Sigma: its inverse changes in entry (j, j) only
            return effect_precision(inverse[f].at[j, j].set(jnp.exp(-2.0 * u)), f)

        def log_density(u, f=f, prior=prior, J=J, precision_at=precision_at):
            current = list(precisions)
            current[f] = precision_at(u)
            return (prior.log_prob(jnp.exp(u)) + u + effects_prior_log_normalizer(u, J)
                    + tree_log_normalizer(*inputs[:4], current, *inputs[5:]))

        u = slice_sample(key, 0.5 * jnp.log(cov[f][j, j]), log_density, bracket(f))
        cov[f] = cov[f].at[j, j].set(jnp.exp(2.0 * u))
        precisions[f] = precision_at(u)
        inverse[f] = inverse[f].at[j, j].set(jnp.exp(-2.0 * u))
    inputs = inputs[:4] + (precisions,) + inputs[5:]
    return state._replace(cov=tuple(cov)), precisions, inputs


def _iwls_effects(structure: MixedStructure, k: int, rng_key, state: MixedState, data: MixedData, precisions):
    r"""Chain ``k``'s effects given ``rho`` by Metropolis-Hastings with the IWLS Gaussian proposal
    (:mod:`mlgibbs.conditionals.poisson`), one accept/reject per *subtree* (a coarsest group and the groups
    nested in it: independent given ``rho`` and the other chains)."""
    from mlgibbs.conditionals.poisson import metropolis_accept, working_log_likelihood_rows
    from mlgibbs.conditionals.tree import draw_given_root, subtree_log_normalizers

    likelihood = iwls_likelihood(structure)
    iwls_terms, log_likelihood_change = likelihood.iwls_terms, likelihood.log_likelihood_change

    chain = structure.chains[k]
    key_draw, key_u = jax.random.split(rng_key)
    outside = tuple(f for f in range(structure.num_factors) if f not in chain)
    eta = fitted_values(structure, data.W, data.codes, state.beta, state.b)
    offsets = _row_effects(structure, data, state.b, outside) if outside else jnp.zeros_like(eta)
    rho = jnp.concatenate([state.beta, *state.gamma])
    w, s = iwls_terms(eta, data)
    inputs = _chain_inputs(structure, k, state, data, precisions, w, s)
    effects, log_norm = draw_given_root(key_draw, *inputs[:6], rho)
    b = list(state.b)
    for f, effect in zip(chain, effects):
        b[f] = effect
    proposal = state._replace(b=tuple(b))
    eta_new = fitted_values(structure, data.W, data.codes, proposal.beta, proposal.b)
    w_new, s_new = iwls_terms(eta_new, data)
    log_norm_new = subtree_log_normalizers(*_chain_inputs(structure, k, proposal, data, precisions,
                                                          w_new, s_new)[:6], rho)
    top = data.codes[:, chain[0]]
    J = log_norm.shape[0]
    forward = segment_sum(working_log_likelihood_rows(eta_new - offsets, w, s, offsets), top, J) - log_norm
    backward = segment_sum(working_log_likelihood_rows(eta - offsets, w_new, s_new, offsets), top, J) - log_norm_new
    change = segment_sum(log_likelihood_change(eta, eta_new, data), top, J)
    log_ratio = change + backward - forward
    accept = metropolis_accept(key_u, log_ratio)     # per subtree; NaN rejected
    owner = jnp.arange(J)
    for i, f in enumerate(chain):
        if i:
            owner = owner[data.chains[k].parents[i - 1]]
        keep = accept[owner][:, None]
        b[f] = jnp.where(keep, b[f], state.b[f])
    return state._replace(b=tuple(b))


def _iwls_root(structure: MixedStructure, rng_key, state: MixedState, data: MixedData, precisions,
               centred: bool = True):
    r"""``rho = (beta, gamma)`` by Metropolis-Hastings with the IWLS Gaussian proposal
    (:mod:`mlgibbs.conditionals.poisson`), in one of two parametrizations (Yu & Meng's 2011 interweaving):

    * ``centred``: given every effect ``b``; ``gamma`` enters only the effects' priors. The proposal has
      precision ``A = Lambda_0 + V'WV`` and linear term ``l = h_0 + V'(s - W o)`` with ``V = X`` (the rows'
      dependence on ``beta``), ``Lambda_0, h_0`` the prior of ``rho`` with the effects' priors (on ``gamma``),
      ``o`` the effects' part of ``eta``;
    * non-centred: given the effects' *deviations* ``b - e_k U gamma`` (so ``b`` moves with ``gamma``);
      ``V`` adds, for each ``gamma_f``, the columns ``Z_{f,r,k} U_{f,g(r)}``, and ``Lambda_0, h_0`` are
      ``p(rho)`` alone. This move is the one that mixes when a scale is small (the effects then pinned to
      their means), the centred one when the groups are well informed.

    The ratio as in the module, with the proposal's densities in whitened form (``-|z|^2/2 + log |L|``)
    and the target's change summed from per-row differences and the prior's, so that it keeps its
    precision in float32 over any number of rows. Without fixed effects the centred draw is the exact
    conjugate one (the ratio is 1).
    """
    from mlgibbs.conditionals.poisson import metropolis_accept

    likelihood = iwls_likelihood(structure)
    iwls_terms, log_likelihood_change = likelihood.iwls_terms, likelihood.log_likelihood_change

    p = structure.p
    F = structure.num_factors
    slices = structure.column_slices()
    key_z, key_u = jax.random.split(rng_key)
    rho = jnp.concatenate([state.beta, *state.gamma])
    columns = [data.W[:, :p]]
    if centred:
        lam0, h0 = _root_prior(structure, data, precisions, state.b, tuple(range(F)))
        columns.append(jnp.zeros((data.W.shape[0], rho.shape[0] - p), rho.dtype))
    else:
        lp = data.location_prior
        lam0, h0 = lp.precision, lp.precision @ lp.mean
        for f in range(F):
            k = structure.intercepts[f]
            if structure.q[f]:
                column = data.W[:, slices[f][0] + k] if k >= 0 else jnp.zeros_like(data.W[:, 0])
                columns.append(column[:, None] * data.U[f][data.codes[:, f]])
    V = jnp.concatenate(columns, axis=1)
    eta = fitted_values(structure, data.W, data.codes, state.beta, state.b)
    offsets = eta - V @ rho

    def gaussian(eta):   # the IWLS Gaussian at eta: its Cholesky factor and mean (one Newton step)
        w, s = iwls_terms(eta, data)
        lam = lam0 + jnp.sum((V * w[:, None])[:, :, None] * V[:, None, :], axis=0)
        h = h0 + jnp.sum(V * (s - w * offsets)[:, None], axis=0)
        chol = jnp.linalg.cholesky(lam)
        mean = jax.scipy.linalg.cho_solve((chol, True), h)
        return chol, mean

    # the proposal's densities in whitened form, the target's change from per-row differences: every term
    # is of order one, so float32 keeps the ratio accurate whatever the number of rows
    chol, mean = gaussian(eta)
    z = jax.random.normal(key_z, rho.shape, rho.dtype)
    rho_new = mean + jax.scipy.linalg.solve_triangular(chol.T, z, lower=False)
    step = rho_new - rho
    eta_new = eta + V @ step
    chol_new, mean_new = gaussian(eta_new)
    z_back = chol_new.T @ (rho - mean_new)
    log_q_forward = -0.5 * jnp.sum(z**2) + jnp.sum(jnp.log(jnp.diagonal(chol)))
    log_q_backward = -0.5 * jnp.sum(z_back**2) + jnp.sum(jnp.log(jnp.diagonal(chol_new)))
    prior_change = -0.5 * step @ (lam0 @ (rho_new + rho)) + h0 @ step
    change = jnp.sum(log_likelihood_change(eta, eta_new, data)) + prior_change
    accept = metropolis_accept(key_u, change + log_q_backward - log_q_forward)
    rho_new = jnp.where(accept, rho_new, rho)
    beta, gamma = _split_rho(structure, rho_new)
    b = list(state.b)
    if not centred:  # the effects keep their deviations from the moved means
        for f in range(F):
            k = structure.intercepts[f]
            if structure.q[f] and k >= 0:
                b[f] = b[f].at[:, k].add(data.U[f] @ (gamma[f] - state.gamma[f]))
    return state._replace(beta=beta, gamma=gamma, b=tuple(b))


def uses_iwls(structure: MixedStructure) -> bool:
    """Whether the locations are drawn by Metropolis-Hastings with IWLS proposals: always for the Poisson,
    for the bernoulli and binomial families with ``structure.iwls`` (``sampler="iwls"``)."""
    return structure.family == "poisson" or structure.iwls


def iwls_likelihood(structure: MixedStructure):
    """The module with the family's ``iwls_terms``, ``log_likelihood_change`` and ``start`` for the
    Metropolis-Hastings kernel: :mod:`mlgibbs.conditionals.poisson` or :mod:`mlgibbs.conditionals.logit`."""
    if structure.family == "poisson":
        from mlgibbs.conditionals import poisson as likelihood
    elif structure.family in ("bernoulli", "binomial"):
        from mlgibbs.conditionals import logit as likelihood
    else:
        raise ValueError(f"no IWLS Metropolis-Hastings kernel for family {structure.family!r}")
    return likelihood


def _precision_from_cholesky(chol):
    """``Sigma^{-1} = L^{-T} L^{-1}`` of a small block from its lower Cholesky factor ``L`` (elementwise)."""
    from mlgibbs.conditionals.tree import solve_lower

    inv_chol = solve_lower(chol[None], jnp.eye(chol.shape[0], dtype=chol.dtype)[None])[0]
    return jnp.sum(inv_chol[:, :, None] * inv_chol[:, None, :], axis=0)


def _precision_and_log_det(cov):
    """``(Sigma^{-1}, log |Sigma|)`` of a small block, by the elementwise Cholesky factorisation."""
    from mlgibbs.conditionals.tree import cholesky

    chol = cholesky(cov[None])[0]
    return _precision_from_cholesky(chol), 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol)))


def _block_index(structure: MixedStructure, f: int, start: int) -> int:
    return [s for s, _ in structure.cov_blocks[f]].index(start)


def mixed_step(structure: MixedStructure, priors: MixedPriors, rng_key, state: MixedState, data: MixedData):
    """One sweep (module docstring)."""
    F = structure.num_factors
    gaussian = structure.family == "gaussian"
    negbinomial = structure.family == "negbinomial"
    iwls = uses_iwls(structure)    # the Poisson, or the logit families with sampler="iwls"
    keys = jax.random.split(rng_key, len(structure.chains) + 4)
    precisions = effect_precisions(state, data)
    weights = linear = None
    if iwls:  # each chain's subtrees given rho, then rho, by Metropolis-Hastings with IWLS proposals
        for k in range(len(structure.chains)):
            state = _iwls_effects(structure, k, keys[k], state, data, precisions)
        key_c, key_n = jax.random.split(keys[-4])
        state = _iwls_root(structure, key_c, state, data, precisions, centred=True)
        state = _iwls_root(structure, key_n, state, data, precisions, centred=False)
    elif negbinomial and not structure.chains:  # no grouping factor: beta alone, by the same corrected move
        state = _negbinomial_move(jax.random.fold_in(keys[-4], 1), state, data,
                                  lambda key, st, w, s: update_root(structure, key, st, data, w, s), structure)
    elif negbinomial:  # each chain by its own augmentation, Metropolis-corrected where b < 1
        for k in range(len(structure.chains)):
            state = _negbinomial_move(keys[k], state, data,
                                      lambda key, st, w, s, k=k: update_chain(structure, k, key, st, data,
                                                                              precisions, w, s),
                                      structure)
    elif not gaussian:  # augmentation variables given the locations, then a weighted Gaussian regression
        from mlgibbs.conditionals.augmentation import augment

        eta = fitted_values(structure, data.W, data.codes, state.beta, state.b)
        weights, linear = augment(structure.family, keys[-4], eta, data)
    if not (negbinomial or iwls):
        if not structure.chains:   # no grouping factor (a GLM): beta alone
            state = update_root(structure, jax.random.fold_in(keys[-4], 1), state, data, weights, linear)
        for k in range(len(structure.chains)):
            if weights is not None and structure.collapsed_scales:   # the chain's scales, its locations integrated out
                key_s, key_k = jax.random.split(keys[k])
                state, precisions, inputs = collapsed_scale_moves(structure, priors, k, key_s, state, data,
                                                                  precisions, weights, linear)
                state = _with_chain(structure, k, state, *draw_chain(key_k, *inputs))
            else:
                state = update_chain(structure, k, keys[k], state, data, precisions, weights, linear)
    beta, gamma, b = state.beta, state.gamma, state.b
    devs = [deviations(structure, data.U, gamma, b, f) @ data.coef_maps[f].T for f in range(F)]
    # one gather per factor: each row's group effects and deviations (the fit and the scale moves)
    slices = structure.column_slices()
    fit = data.W[:, :structure.p] @ beta
    dev_rows = []
    for f, (start, d) in enumerate(slices):
        rows = jnp.concatenate([b[f], devs[f]], axis=1)[data.codes[:, f]]
        fit = fit + jnp.sum(data.W[:, start:start + d] * rows[:, :d], axis=1)
        dev_rows.append(rows[:, d:])
    dtype = fit.dtype
    if gaussian:
        resid = data.t - fit
        rss = data.rss_floor + jnp.sum(resid**2)
    elif not (negbinomial or iwls):  # sigma_y stays 1; the scale moves take the weighted working residuals
        resid = linear - weights * fit
    # every scale (sigma_y and each scalar block) in one batched draw per prior family
    scalar = [(f, start) for f in range(F) for start, size in structure.cov_blocks[f] if size == 1]
    head = [rss] if gaussian else []
    sums = [jnp.sum(devs[f][:, j] ** 2) for f, j in scalar]
    counts = [jnp.asarray(devs[f].shape[0], dtype) for f, _ in scalar]
    current = [state.cov[f][j, j] for f, j in scalar]
    chosen = [priors.cov[f][_block_index(structure, f, j)] for f, j in scalar]
    if gaussian:
        sums, counts = [rss] + sums, [data.num_obs] + counts
        current, chosen = [state.sigma_y**2] + current, [priors.sigma_y] + chosen
    variances = state.sigma_y[None] ** 2
    if sums:
        variances = draw_variances(keys[-2], chosen, jnp.stack(sums), jnp.stack(counts), jnp.stack(current))
    var_y = variances[0] if gaussian else state.sigma_y**2
    cov = [jnp.zeros_like(c) for c in state.cov]
    for (f, j), v in zip(scalar, variances[len(head):]):
        cov[f] = cov[f].at[j, j].set(v)
    correlated = [(f, start, size) for f in range(F) for start, size in structure.cov_blocks[f] if size > 1]
    if correlated:
        from mlgibbs.conditionals.covariance import draw_covariance

        cov_keys = jax.random.split(keys[-1], len(correlated))
        for key, (f, start, size) in zip(cov_keys, correlated):
            block = devs[f][:, start:start + size]
            prior = priors.cov[f][_block_index(structure, f, start)]
            value = draw_covariance(key, prior, block.T @ block, jnp.asarray(block.shape[0], dtype),
                                    state.cov[f][start:start + size, start:start + size])
            cov[f] = cov[f].at[start:start + size, start:start + size].set(value)
    cov = tuple(cov)
    if negbinomial:  # the dispersion r lives in the family-scale slot
        state = MixedState(beta=beta, gamma=gamma, b=b, sigma_y=state.sigma_y, cov=cov)
        key_px, key_r = jax.random.split(keys[-3])

        def px(key, st, w, s):
            return scale_moves(structure, priors, key, st, data, s - w * fit, dev_rows, w)

        state = _negbinomial_move(key_px, state, data, px, structure, eta=fit)
        from mlgibbs.conditionals.negbinomial import draw_dispersion

        eta = fitted_values(structure, data.W, data.codes, state.beta, state.b)
        r = draw_dispersion(key_r, state.sigma_y, eta, data, priors.sigma_y)
        return state._replace(sigma_y=r)
    state = MixedState(beta=beta, gamma=gamma, b=b, sigma_y=jnp.sqrt(var_y), cov=cov)
    if iwls:
        return iwls_scale_moves(structure, priors, keys[-3], state, data, fit, dev_rows)
    # locations unchanged since: the residuals and deviations above are current
    return scale_moves(structure, priors, keys[-3], state, data, resid, dev_rows, weights)


def _negbinomial_move(rng_key, state: MixedState, data: MixedData, move, structure: MixedStructure, eta=None):
    """A move of the locations under the negative binomial (:mod:`mlgibbs.conditionals.negbinomial`):
    fresh Polya-Gamma weights at the current locations, ``move(key, state, weights, linear)`` (a kernel
    reversible for the augmented surrogate model), then the Metropolis-Hastings correction for the rows
    with ``b < 1`` (accepted with probability 1 when there are none)."""
    from mlgibbs.conditionals.negbinomial import correction_log_ratio, negbinomial_augmentation

    key_w, key_move, key_u = jax.random.split(rng_key, 3)
    r = state.sigma_y
    if eta is None:
        eta = fitted_values(structure, data.W, data.codes, state.beta, state.b)
    weights, linear = negbinomial_augmentation(key_w, eta, data, r)
    proposal = move(key_move, state, weights, linear)
    eta_new = fitted_values(structure, data.W, data.codes, proposal.beta, proposal.b)
    log_ratio = correction_log_ratio(eta_new, eta, data, r)
    accept = jnp.log(jax.random.uniform(key_u, (), eta.dtype)) < log_ratio
    return jax.tree.map(lambda new, old: jnp.where(accept, new, old), proposal, state)


def mixed_init(structure: MixedStructure, rng_key, data: MixedData) -> MixedState:
    """An over-dispersed start: scales around the response's spread times ``exp(Uniform(-1, 1))``.

    Locations start at zero; the first sweep draws them from their conditional given these scales
    (the chains differ through the scales and that draw). All noise comes from one uniform draw.
    """
    dtype = data.t.dtype
    F = structure.num_factors
    sizes = [1] + [d for d in structure.dims]
    u = jax.random.uniform(rng_key, (sum(sizes),), dtype, -1.0, 1.0)
    n = data.num_obs
    if structure.family == "gaussian":
        spread = jnp.sqrt((data.rss_floor + jnp.sum(data.t**2)) / n)
        spread = jnp.where(spread > 0, spread, 1.0)
        sigma_y = 0.5 * spread * jnp.exp(u[0])
    elif structure.family == "negbinomial":  # the dispersion r in sigma_y's slot, 4 to 27
        # (large: with the locations at zero a small r would fit the counts' spread, and below r = 1 the
        # rows of zeros need the Metropolis-corrected surrogate update, which moves slowly)
        spread = jnp.ones((), dtype)
        sigma_y = 10.0 * jnp.exp(u[0])
    else:  # the link scale; sigma_y is not a parameter (kept at 1)
        spread = jnp.ones((), dtype)
        sigma_y = jnp.ones((), dtype)
    cov, b, gamma = [], [], []
    offset = 1
    for f in range(F):
        d = structure.dims[f]
        sd = 0.5 * spread * jnp.exp(u[offset:offset + d])
        offset += d
        cov.append(jnp.diag(sd**2))
        b.append(jnp.zeros((data.U[f].shape[0], d), dtype))
        gamma.append(jnp.zeros((structure.q[f],), dtype))
    state = MixedState(beta=jnp.zeros((structure.p,), dtype), gamma=tuple(gamma), b=tuple(b),
                       sigma_y=sigma_y, cov=tuple(cov))
    if uses_iwls(structure):
        state = _iwls_start(structure, jax.random.fold_in(rng_key, 1), state, data)
    return state


def _iwls_start(structure: MixedStructure, rng_key, state: MixedState, data: MixedData,
                num_iterations: int = 4) -> MixedState:
    """Locations for the first sweep of the IWLS kernels: a few draws of every chain from the IWLS Gaussian,
    the first built at the family's ``start`` (the usual start of a GLM fit: ``eta_r = log((Y_r + 1/2) /
    m_r)`` for the Poisson, the empirical logit for the logit families), the next at the draw before.

    The Metropolis-Hastings update (:mod:`mlgibbs.conditionals.poisson`) proposes from the IWLS step at the
    current point, which is only close to the conditional near the bulk of the posterior: from ``eta = 0``
    one Newton step on the log link overshoots counts of tens by ``e^{tens}`` and every proposal is
    rejected. The draws (with their noise) give each chain a dispersed start near the conditional mode
    given its initial scales.
    """
    likelihood = iwls_likelihood(structure)
    iwls_terms = likelihood.iwls_terms
    precisions = effect_precisions(state, data)
    blocks = max(1, len(structure.chains))       # without grouping factors: beta alone
    keys = jax.random.split(rng_key, num_iterations * blocks)
    eta = likelihood.start(data)
    for i in range(num_iterations):
        for k in range(blocks):
            if i or k:
                eta = fitted_values(structure, data.W, data.codes, state.beta, state.b)
            w, s = iwls_terms(eta, data)
            key = keys[i * blocks + k]
            state = (update_chain(structure, k, key, state, data, precisions, w, s) if structure.chains
                     else update_root(structure, key, state, data, w, s))
    return state


def mixed_kernel(structure: MixedStructure, priors: MixedPriors) -> SamplingAlgorithm:
    """The kernel ``(init, step)`` of a multilevel model's structure and scale priors.

    The same object for the same structure and priors (compiled programs built on it are reused by a
    second model of the same shapes).
    """
    key = (structure, _hashable(priors))
    if key not in _KERNELS:
        _KERNELS[key] = _build_kernel(structure, priors)
    return _KERNELS[key]


_KERNELS: dict = {}


def _hashable(value):
    """A hashable key of nested NamedTuples / tuples / arrays that tells prior types apart."""
    import numpy as np

    if isinstance(value, tuple):
        return (type(value).__qualname__, tuple(_hashable(v) for v in value))
    if isinstance(value, (np.ndarray, jax.Array)):
        arr = np.asarray(value)
        return ("array", arr.shape, arr.dtype.str, arr.tobytes())
    hash(value)
    return value


def _build_kernel(structure: MixedStructure, priors: MixedPriors) -> SamplingAlgorithm:
    def init(rng_key, data):
        return mixed_init(structure, rng_key, data)

    def step(rng_key, state, data):
        return mixed_step(structure, priors, rng_key, state, data)

    return SamplingAlgorithm(init=init, step=step)

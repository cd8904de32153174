r"""The coordinates kernels work in: centred, whitened, computed once in float64.

A user's design can be far from what floating point likes: a year near 2000 next to its square, two
nearly collinear predictors, a response offset by 1e6. Forming ``X'X`` squares the condition number
and float32 has 24 bits, so the Gaussian draws of the locations fail (NaN) or round away the signal.
The cure is an exact affine change of the location parameters, chosen once when the model is built,
in float64, so that every statistic the kernels use is well scaled and every precision matrix they
factor is close to a multiple of the identity. The draws are mapped back, in float64, on output.

With ``c`` the shift of ``y`` (its mean when the model has an intercept, else 0), ``k`` its scale
(1 unless the spread of ``y`` is outside ``2^{\pm 20}``, then a power of two, exact in floating
point), ``m`` the column means of ``X`` (grouped models with a group-level intercept; else 0), and
upper-triangular ``T_x``, ``T_u`` that whiten the centred ``X`` and ``U``
(``X_c = \sqrt{n}\,Q_x T_x``, ``U = \sqrt{J}\,Q_u T_u`` with orthonormal ``Q``), the kernel coordinates are

.. math::

    s = m'\beta - c,\qquad
    \tilde\beta = T_x(\beta + a_x s)/k,\qquad
    \tilde\gamma = T_u(\gamma + a_u s)/k,\qquad
    \tilde\alpha_j = (\alpha_j + s)/k,\qquad
    \tilde\sigma = \sigma / k,

where ``a_u`` solves ``U a_u = 1`` (the intercept among the group-level predictors) and ``a_x`` solves
``X a_x = 1`` in a model without groups (where ``m = 0``). Then
``y~ = (y - c)/k ~ N(alpha~_j + X~ beta~, sigma_y~^2)`` with ``X~ = sqrt(n) Q_x`` and
``alpha~_j ~ N(U~_j gamma~, sigma_alpha~^2)`` with ``U~ = sqrt(J) Q_u``: the same model, so every
sampler runs unchanged on ``(y~, X~, U~)``. The scales change only by ``k`` (usually 1), the
group effects ``alpha - U gamma`` only by ``k``. The independent priors of the user become one joint
Gaussian prior on ``(beta~, gamma~)`` (:func:`location_prior`).

Without an intercept there is nothing to shift into: ``c = 0`` and ``m = 0`` (scaling and rotation only).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

__all__ = ["Standardization", "standardize", "identity", "to_kernel", "to_user", "location_prior"]

#: ``y`` is rescaled (by a power of two) only when its spread is outside ``[2^-20, 2^20]``.
SCALE_RANGE = 2.0**20


class Standardization(NamedTuple):
    """The affine map between a user's parameters and a kernel's (all arrays float64 NumPy).

    Attributes
    ----------
    y_shift, y_scale
        ``c`` and ``k``.
    x_shift
        ``m``, shape ``(p,)``.
    x_map, x_map_inv
        ``T_x`` and its inverse, ``(p, p)``.
    u_map, u_map_inv
        ``T_u`` and its inverse, ``(q, q)``.
    x_intercept, u_intercept
        ``a_x`` ``(p,)`` and ``a_u`` ``(q,)`` (zeros when there is no intercept to shift into).
    """

    y_shift: float
    y_scale: float
    x_shift: np.ndarray
    x_map: np.ndarray
    x_map_inv: np.ndarray
    u_map: np.ndarray
    u_map_inv: np.ndarray
    x_intercept: np.ndarray
    u_intercept: np.ndarray


def identity(p: int, q: int) -> Standardization:
    """The map that changes nothing (kernel coordinates are the user's)."""
    return Standardization(0.0, 1.0, np.zeros(p), np.eye(p), np.eye(p), np.eye(q), np.eye(q),
                           np.zeros(p), np.zeros(q))


def _intercept_vector(design: np.ndarray) -> np.ndarray | None:
    """``a`` with ``design @ a = 1`` when the constant is in the column space, else ``None``."""
    rows, cols = design.shape
    if cols == 0:
        return None
    a, *_ = np.linalg.lstsq(design, np.ones(rows), rcond=None)
    if np.max(np.abs(design @ a - 1.0)) > 1e-8:
        return None
    return a


def _whiten(design: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(Z, T)`` with ``design = Z T``, ``Z'Z = rows * I``, ``T`` upper triangular, positive diagonal.

    Householder QR of the column-scaled design, in float64: ``Z`` is orthogonal to working precision
    however ill-conditioned ``design`` is (it is backward stable), so the kernels see a perfectly
    conditioned design; ``T`` carries the conditioning, and is only applied to draws, in float64.
    """
    rows, cols = design.shape
    if cols == 0:
        return design.copy(), np.zeros((0, 0))
    norms = np.linalg.norm(design, axis=0)
    q, r = np.linalg.qr(design / norms)
    signs = np.where(np.diag(r) < 0, -1.0, 1.0)
    q, r = q * signs, r * signs[:, None]
    root = math.sqrt(rows)
    return q * root, r * norms / root


def standardize(y: np.ndarray, X: np.ndarray, codes: np.ndarray | None, U: np.ndarray | None,
                *, rescale: bool = True):
    """Kernel-coordinate data and the map back.

    Parameters
    ----------
    y, X
        Response ``(n,)`` and individual-level design ``(n, p)``, float64.
    codes, U
        Group index ``(n,)`` and group-level design ``(J, q)``; ``None`` for a model without groups.
    rescale
        ``False``: the identity map (kernel coordinates are the user's).

    Returns
    -------
    y_k, X_k, U_k, Standardization
        ``U_k`` is ``None`` without groups.
    """
    p = X.shape[1]
    grouped = codes is not None
    q = U.shape[1] if grouped else 0
    if not rescale:
        return y.copy(), X.copy(), (None if U is None else U.copy()), identity(p, q)
    if grouped:
        a_u = _intercept_vector(U)
        a_x = None
    else:
        a_x = _intercept_vector(X)
        a_u = None
    has_intercept = (a_u if grouped else a_x) is not None
    y_shift = float(np.mean(y)) if has_intercept else 0.0
    x_shift = X.mean(axis=0) if (grouped and has_intercept) else np.zeros(p)
    X_k, x_map = _whiten(X - x_shift)
    if grouped:
        U_k, u_map = _whiten(U)
    else:
        U_k, u_map = None, np.zeros((0, 0))
    spread = float(np.sqrt(np.mean((y - y_shift) ** 2)))
    y_scale = 1.0
    if spread > 0 and not (1.0 / SCALE_RANGE <= spread <= SCALE_RANGE):
        y_scale = 2.0 ** round(math.log2(spread))
    y_k = (y - y_shift) / y_scale
    std = Standardization(
        y_shift=y_shift, y_scale=y_scale, x_shift=x_shift,
        x_map=x_map, x_map_inv=np.linalg.inv(x_map) if p else x_map,
        u_map=u_map, u_map_inv=np.linalg.inv(u_map) if q else u_map,
        x_intercept=np.zeros(p) if a_x is None else a_x,
        u_intercept=np.zeros(q) if a_u is None else a_u,
    )
    return y_k, X_k, U_k, std


def _matvec(xp, vec, mat):
    """``vec @ mat.T`` over leading batch axes."""
    return xp.einsum("...j,ij->...i", vec, xp.asarray(mat, dtype=vec.dtype))


def to_kernel(std: Standardization, state, xp=np):
    """Map a state (any leading batch axes) from the user's coordinates to the kernel's.

    ``state`` is a :class:`~mlgibbs.GibbsState` (``None`` fields pass through); ``xp`` is ``numpy``
    (float64, on the host) or ``jax.numpy`` (inside a traced function; the dtype of the state).
    """
    k = std.y_scale
    beta, gamma, alpha = state.beta, state.gamma, state.alpha
    dtype = next((a.dtype for a in state if hasattr(a, "dtype")), np.float64)
    shift = -xp.asarray(std.y_shift, dtype)
    if beta is not None:
        shift = shift + _matvec(xp, beta, std.x_shift[None, :])[..., 0]
    new = {"sigma_y": None if state.sigma_y is None else state.sigma_y / k}
    if beta is not None:
        new["beta"] = _matvec(xp, beta + shift[..., None] * xp.asarray(std.x_intercept, dtype), std.x_map) / k
    if gamma is not None:
        new["gamma"] = _matvec(xp, gamma + shift[..., None] * xp.asarray(std.u_intercept, dtype), std.u_map) / k
    if alpha is not None:
        new["alpha"] = (alpha + shift[..., None]) / k
    if state.sigma_alpha is not None:
        new["sigma_alpha"] = state.sigma_alpha / k
    return state._replace(**new)


def to_user(std: Standardization, state, xp=np, *, offset: bool = True):
    """Map a state (any leading batch axes) from the kernel's coordinates back to the user's.

    With ``offset=False`` the constant part of the map (the shift by ``c``) is left out: what remains
    is linear in the kernel's values, so running means and variances of it can be accumulated in the
    kernel's dtype and the offset added afterwards in float64 (``beta + a_x c``, ``gamma + a_u c``,
    ``alpha + c``).
    """
    k = std.y_scale
    beta0 = None
    c = std.y_shift if offset else 0.0
    if state.beta is not None:
        beta0 = k * _matvec(xp, state.beta, std.x_map_inv)
        shift = _matvec(xp, beta0, std.x_shift[None, :])[..., 0] - c
    else:
        shift = -c
    new = {"sigma_y": None if state.sigma_y is None else k * state.sigma_y}
    dtype = next((a.dtype for a in state if hasattr(a, "dtype")), np.float64)
    shift = xp.asarray(shift, dtype)
    if beta0 is not None:
        new["beta"] = beta0 - shift[..., None] * xp.asarray(std.x_intercept, dtype)
    if state.gamma is not None:
        new["gamma"] = (k * _matvec(xp, state.gamma, std.u_map_inv)
                        - shift[..., None] * xp.asarray(std.u_intercept, dtype))
    if state.alpha is not None:
        new["alpha"] = k * state.alpha - shift[..., None]
    if state.sigma_alpha is not None:
        new["sigma_alpha"] = k * state.sigma_alpha
    return state._replace(**new)


def user_offset(std: Standardization) -> dict[str, Any]:
    """The constant part of :func:`to_user` (what ``offset=False`` leaves out), per variable."""
    c = std.y_shift
    return {"beta": std.x_intercept * c, "gamma": std.u_intercept * c, "alpha": c,
            "sigma_y": 0.0, "sigma_alpha": 0.0}


def location_prior(std: Standardization, mean: np.ndarray, precision: np.ndarray, grouped: bool):
    """The user's Gaussian prior on ``theta = (beta, gamma)`` in kernel coordinates.

    With ``theta~ = A theta + b`` (module docstring), a density ``exp(-(theta - m)' P (theta - m)/2)``
    becomes ``exp(-(theta~ - m~)' P~ (theta~ - m~)/2)`` with ``P~ = A^{-T} P A^{-1}`` and
    ``m~ = A m + b``; flat directions (``P = 0``) stay flat. Computed in float64.

    Parameters
    ----------
    mean, precision
        ``m`` ``(d,)`` (0 along flat coordinates) and diagonal-or-dense ``P`` ``(d, d)``.
    grouped
        Whether ``theta`` holds ``gamma`` after ``beta``.

    Returns
    -------
    mean, precision
        ``m~`` and ``P~`` (float64).
    """
    p = std.x_map.shape[0]
    q = std.u_map.shape[0] if grouped else 0
    k, c = std.y_scale, std.y_shift
    A = np.zeros((p + q, p + q))
    A[:p, :p] = std.x_map @ (np.eye(p) + np.outer(std.x_intercept, std.x_shift))
    b = np.zeros(p + q)
    b[:p] = -c * std.x_map @ std.x_intercept
    if q:
        A[p:, :p] = std.u_map @ np.outer(std.u_intercept, std.x_shift)
        A[p:, p:] = std.u_map
        b[p:] = -c * std.u_map @ std.u_intercept
    A, b = A / k, b / k
    A_inv = np.linalg.inv(A) if p + q else A
    precision_k = A_inv.T @ precision @ A_inv
    precision_k = 0.5 * (precision_k + precision_k.T)
    return A @ mean + b, precision_k

r"""The data pytree of the general multilevel model: compressed rows and per-group statistics.

The model, in the kernel's coordinates (see :class:`mlgibbs.models.mixed.MixedModel`)::

    y_i    ~ N(X_i beta + sum_f Z_f,i b_f[g_f(i)], sigma_y^2)
    b_f[g] ~ N(e_f U_f,g gamma_f, Sigma_f)          f = 1..F grouping factors, g = 1..J_f

Every location parameter is constant within a *cell*, a combination of one level of every factor. The
likelihood of the rows of a cell ``c`` with design ``w_i = (X_i, Z_1,i, ..., Z_F,i)`` (``D`` columns)
depends on the rows only through ``sum w_i w_i'`` and ``sum w_i y_i``; with ``theta_c`` the cell's
locations and ``theta_hat_c`` the cell's least-squares fit,

.. math::

    \sum_{i \in c} (y_i - w_i'\theta_c)^2 = e_c + |R_c \theta_c - t_c|^2,\qquad
    e_c = \sum_{i \in c} (y_i - w_i'\hat\theta_c)^2 \ge 0,

with ``R_c' R_c = sum w_i w_i'`` (``D`` pseudo-rows) and ``t_c = R_c theta_hat_c``. A cell with more
than ``D`` rows is therefore replaced by ``D`` pseudo-rows (computed once in float64), a smaller one
keeps its rows: the kernels see at most ``min(n, D x cells)`` rows, so a Gaussian sweep costs the
number of non-empty cells, not ``n``, and the residual sum of squares is a sum of non-negative terms
(no cancellation in float32).

For the binomial-type families (:mod:`mlgibbs.families`) the rows of a cell that share their design
row are merged into one row with their successes and trials summed (exact: their likelihoods multiply
into one binomial); the augmented sweep then costs the number of trials (lanes) for the augmentation
and the number of rows for the location blocks.
"""

from __future__ import annotations

from typing import NamedTuple

import jax

from mlgibbs.conditionals.tree import ChainData, ChainSpec
from mlgibbs.priors import LocationPrior

__all__ = ["MixedStructure", "MixedData"]


class MixedStructure(NamedTuple):
    """Static shape of a multilevel model (hashable: it keys compiled kernels).

    Attributes
    ----------
    p
        Number of fixed effects ``beta``.
    dims
        ``d_f``: varying coefficients per factor.
    q
        ``q_f``: group-level predictors per factor (``U_f`` columns).
    intercepts
        Per factor, the coordinate of ``b_f`` whose mean is ``U_f gamma_f`` (its intercept), or -1.
    cov_blocks
        Per factor, the ``(start, size)`` blocks of its block-diagonal ``Sigma_f``: size 1 is a scale
        with a scalar prior, a larger block a correlated term with a covariance prior.
    chains
        Chains of nested factors (coarsest first); each is drawn as one exact block.
    family
        The outcome family's name (:mod:`mlgibbs.families`): ``"gaussian"`` or a binomial-type family,
        whose kernel draws augmentation variables (:mod:`mlgibbs.conditionals.augmentation`).
    collapsed_scales
        Augmented binomial-type families: draw each chain's scalar scales with its locations integrated
        out before the locations (:func:`mlgibbs.samplers.mixed.collapsed_scale_moves`).
    iwls
        Bernoulli and binomial: the locations by Metropolis-Hastings with IWLS Gaussian proposals (the
        Poisson's kernel, :mod:`mlgibbs.conditionals.logit`) instead of Polya-Gamma augmentation.
    """

    p: int
    dims: tuple[int, ...]
    q: tuple[int, ...]
    intercepts: tuple[int, ...]
    cov_blocks: tuple[tuple[tuple[int, int], ...], ...]
    chains: tuple[tuple[int, ...], ...]
    family: str = "gaussian"
    collapsed_scales: bool = True
    iwls: bool = False

    @property
    def num_factors(self) -> int:
        return len(self.dims)

    def column_slices(self) -> tuple[tuple[int, int], ...]:
        """``(start, size)`` of each factor's ``Z_f`` columns among the row design's columns."""
        out, start = [], self.p
        for d in self.dims:
            out.append((start, d))
            start += d
        return tuple(out)

    def gamma_slices(self) -> tuple[tuple[int, int], ...]:
        out, start = [], self.p
        for q in self.q:
            out.append((start, q))
            start += q
        return tuple(out)

    def chain_spec(self, k: int) -> ChainSpec:
        chain = self.chains[k]
        return ChainSpec(factors=chain, dims=tuple(self.dims[f] for f in chain), p=self.p,
                         gamma_slices=self.gamma_slices(), intercepts=self.intercepts)

    def chain_columns(self, k: int) -> tuple[int, ...]:
        """Row-design columns of chain ``k``: ``X`` then the chain's ``Z_f``, coarsest first."""
        cols = list(range(self.p))
        slices = self.column_slices()
        for f in self.chains[k]:
            start, d = slices[f]
            cols.extend(range(start, start + d))
        return tuple(cols)


class MixedData(NamedTuple):
    """Data of the multilevel model in the kernel's coordinates (module docstring).

    Attributes
    ----------
    W
        Row design ``(X, Z_1, ..., Z_F)`` of the (compressed) rows, ``(R, D)``.
    t
        Responses of the rows, ``(R,)``.
    codes
        Level of every factor for every row, ``(R, F)`` int32.
    rss_floor
        ``sum_c e_c``: the residual sum of squares that no parameter can remove.
    num_obs
        ``n``, the number of observations (not of rows).
    U
        ``U_f`` per factor, ``(J_f, q_f)`` (``q_f`` may be 0; the shape still gives ``J_f``).
    chains
        :class:`~mlgibbs.conditionals.tree.ChainData` per chain (per-group statistics of its rows).
    location_prior
        The Gaussian prior of ``rho = (beta, gamma_1, ..., gamma_F)`` (flat by default).
    y_scale
        The response's units relative to the user's (1 unless it was rescaled).
    coef_maps
        Per factor, ``C_f^{-1}`` (``(d_f, d_f)``): the kernel's effects ``b_f`` are those of the
        centred slope columns, ``C_f^{-1} (b_f - e U gamma)`` are the deviations in the coordinates of
        the prior on ``Sigma_f``, and the state's ``Sigma_f`` is in those coordinates (so the
        precision of ``b_f`` is ``C_f^{-T} Sigma_f^{-1} C_f^{-1}``). The identity unless the factor
        has a varying intercept and slopes.
    trials, lane_rows, lane_position
        Binomial-type families only (``None`` for the Gaussian): ``t`` holds each row's successes,
        ``trials`` its number of trials ``m_r``; the ``N = sum m_r`` *lanes* are the trials, lane ``l``
        trial number ``lane_position[l]`` of row ``lane_rows[l]`` (int32). The count families keep their
        rows' summed counts in ``t`` and their number of observations in ``trials``.
    y_obs
        The count families only (log link): every observation's count, ``(n,)`` (the negative binomial's
        dispersion draw, the Poisson's ``log y!``).
    """

    W: jax.Array
    t: jax.Array
    codes: jax.Array
    rss_floor: jax.Array
    num_obs: jax.Array
    U: tuple[jax.Array, ...]
    chains: tuple[ChainData, ...]
    location_prior: LocationPrior
    y_scale: jax.Array
    coef_maps: tuple[jax.Array, ...]
    trials: jax.Array | None = None
    lane_rows: jax.Array | None = None
    lane_position: jax.Array | None = None
    y_obs: jax.Array | None = None

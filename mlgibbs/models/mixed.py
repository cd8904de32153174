r"""The general multilevel model: varying slopes, nested and crossed grouping factors, any outcome family.

.. math::

    y_i \sim \mathcal N\Big(X_i\beta + \sum_f Z_{f,i}\, b_f[g_f(i)],\ \sigma_y^2\Big),\qquad
    b_f[g] \sim \mathcal N\big(e_f\, U_{f,g}\gamma_f,\ \Sigma_f\big)

for grouping factors ``f`` (``(1 + x | g)``, ``(1 | a/b)``, ``(1 | a) + (1 | b)``, ...), with ``Z_f``
the factor's varying coefficients (intercept and/or slopes, ``d_f`` columns), ``U_f`` its group-level
predictors and ``e_f`` the unit vector of its intercept: the group-level predictors (the intercept
among them) give the mean of the intercepts; the other varying coefficients are deviations from the
fixed effect of the same column, as in lme4. ``Sigma_f`` is block-diagonal: one block per term, a
scale for a one-column term, a covariance for a correlated term (``(1 + x | g)``); ``(1 + x || g)``
gives two scales.

Where the fixed effects go (the rule, applied to the fixed part of a formula): a column that is
constant within the groups of a factor with a varying intercept becomes a group-level predictor of
the *coarsest* such factor (fewest groups), provided every factor it is constant within belongs to one
chain of nested factors; the intercept of a nested model therefore belongs to its coarsest factor
(state in ``(1 | state/county)``), a county-level predictor (log uranium) to the county factor, a
state-level one to the state factor. A column constant within the groups of *crossed* factors (the
intercept of ``(1 | plate) + (1 | sample)``) stays a fixed effect: drawn jointly with each factor's
effects in turn, it lets the sampler move the overall level between crossed factors, where as a
group-level predictor of one of them it would be pinned by that factor's effects (slow mixing).
Every other column stays a fixed effect in ``X``. Either way the model is the same (lme4's); only the
parametrisation the sampler uses, and the names in the output, differ.

Names in the output (ArviZ): ``beta`` (dim ``predictor``), and per factor ``f`` (its name, e.g.
``Subject`` or ``state:county``): ``alpha_<f>`` (dims ``<f>``, ``<f>_coef``), ``gamma_<f>`` (dim
``<f>_predictor``), ``sigma_<f>`` (dim ``<f>_coef``) and, for correlated terms, ``corr_<f>``
(dims ``<f>_coef``, ``<f>_coef_bis``); ``sigma_y``. A single varying intercept ``(1 | g)`` is the
varying-intercept model of :class:`~mlgibbs.Model`, whose names are ``alpha``, ``gamma`` and
``sigma_alpha``.

Outcome families (``family=``, :mod:`mlgibbs.families`): the Gaussian above, or a binomial-type
likelihood of the same linear predictor (``"bernoulli"``, ``"binomial"`` with ``trials=``: logit link;
``"probit"``); those have no ``sigma_y``, and every model with one is a :class:`MixedModel` (also
``y ~ x + (1 | g)``). The response is then not centred or scaled (the linear predictor is on the link
scale), and the default priors of correlated terms are scaled as for a unit response spread.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from mlgibbs._lazy import pandas as pd
from mlgibbs.conditionals.tree import ChainData
from mlgibbs.families import FAMILIES, Family, check_response, get_family
from mlgibbs.models.data import to_device
from mlgibbs.models.mixed_data import MixedData, MixedStructure
from mlgibbs.models.validation import check_full_rank
from mlgibbs.priors import (
    Flat,
    HalfCauchy,
    HalfNormal,
    HalfStudentT,
    HuangWand,
    InverseGamma,
    InverseWishart,
    LocationPrior,
    Normal,
    Uniform,
    check_covariance_prior,
    check_prior,
    rescale_covariance_prior,
    scale_prior,
)
from mlgibbs.samplers.mixed import MixedPriors

__all__ = ["MixedModel", "Term", "Factor", "MixedTransform", "default_covariance_prior", "DEFAULT_HW_SCALE"]

_SCALAR = (Uniform, InverseGamma, HalfNormal, HalfCauchy, HalfStudentT)
_COVARIANCE = (InverseWishart, HuangWand)

#: The default prior of a correlated term is Huang & Wand's with ``nu = 2`` (uniform correlations,
#: half-t(2) standard deviations) with scale ``A_k`` = this times ``sd(y) / rms(z_k)`` (weakly
#: informative in the data's units, as brms's default half-t(3, 0, 2.5 sd(y))).
DEFAULT_HW_SCALE = 2.5


class Factor(NamedTuple):
    """One grouping factor as the user wrote it: its codes, labels and varying coefficients."""

    name: str
    codes: np.ndarray
    labels: tuple
    Z: np.ndarray
    coef_names: tuple[str, ...]
    blocks: tuple[tuple[int, int], ...]
    terms: tuple[str, ...]
    exprs: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()


class Term(NamedTuple):
    """One grouping term for :meth:`MixedModel.from_arrays` (``mg.Term``).

    Attributes
    ----------
    group
        The group label of every observation, shape ``(n,)``.
    Z
        The term's varying slopes, ``(n, d)`` array or DataFrame (its columns name them), or ``None``.
    name
        The factor's name (output dims); terms with the same name form one factor.
    coef_names
        Names of ``Z``'s columns (default ``<name>_z0``, ...; a DataFrame's column names).
    intercept
        Whether the term has a varying intercept (a column of ones before ``Z``): ``(1 + z | g)``.
    correlated
        ``True``: one covariance for the term's coefficients; ``False``: a scale each (``||``).
    """

    group: Any
    Z: Any = None
    name: str | None = None
    coef_names: Sequence[str] | None = None
    intercept: bool = True
    correlated: bool = True


class MixedTransform(NamedTuple):
    """The affine map between the user's parameters and the kernel's (float64 NumPy).

    ``t = (y - c)/k``, ``X~ = (X - m_x)/s_x``, ``Z~_f = (Z_f - m_z,f) / s_z,f``,
    ``U~_f = (U_f - m_u,f)/s_u,f``; the constant ``s = m_x'beta - c`` goes into the intercept
    (``intercept``: ``("beta", j)`` or ``("factor", f, j_U, k_Z)``, or ``None`` without one). Slope
    columns are centred (``m_z,f``) only in a factor with a varying intercept, which absorbs the
    shift: ``b~_f = (C_f D_f b_f + s e)/k`` with ``D_f = diag(s_z,f)`` and ``C_f`` the identity plus
    ``m_z,f / s_z,f`` in the intercept's row; ``coef_map_inv`` holds ``C_f^{-1}``. Covariances are
    kept in the coordinates of the prior, ``D_f Sigma_f D_f / k^2``.
    """

    c: float
    k: float
    x_mean: np.ndarray
    x_scale: np.ndarray
    u_mean: tuple[np.ndarray, ...]
    u_scale: tuple[np.ndarray, ...]
    z_scale: tuple[np.ndarray, ...]
    intercept: tuple | None
    z_mean: tuple[np.ndarray, ...] = ()
    coef_map_inv: tuple[np.ndarray, ...] = ()


class _Compression(NamedTuple):
    """How the kernel's rows come from the observations (to recompute them for another response)."""

    small_rows: np.ndarray      # observations kept as rows, in row order
    big_rows: np.ndarray        # observations of cells replaced by pseudo-rows
    big_cell: np.ndarray        # cell (0..C_big-1) of each of them
    to_rows: np.ndarray         # (C_big, D, D): t_c = to_rows @ (sum w_i y_i)
    pinv: np.ndarray            # (C_big, D, D): theta_hat_c = pinv @ (sum w_i y_i)


def _segment_sum(values: np.ndarray, segments: np.ndarray, num: int) -> np.ndarray:
    """``out[s] = sum_{i: segments[i] = s} values[i]`` (float64, any trailing shape), by sorting."""
    out = np.zeros((num, *values.shape[1:]), dtype=np.float64)
    if values.shape[0] == 0:
        return out
    order = np.argsort(segments, kind="stable")
    seg = segments[order]
    starts = np.flatnonzero(np.r_[True, seg[1:] != seg[:-1]])
    out[seg[starts]] = np.add.reduceat(values[order], starts, axis=0)
    return out


def _nested(inner: np.ndarray, outer: np.ndarray, j_inner: int, j_outer: int) -> bool:
    """Whether every level of ``inner`` lies within one level of ``outer``."""
    pairs = np.unique(inner.astype(np.int64) * j_outer + outer)
    return pairs.shape[0] == j_inner


def _chains(codes: np.ndarray, sizes: Sequence[int]) -> tuple[tuple[int, ...], ...]:
    """Group factors into chains of nested factors (coarsest first), greedily from coarse to fine."""
    order = sorted(range(len(sizes)), key=lambda f: (sizes[f], f))
    chains: list[list[int]] = []
    for f in order:
        best = None
        for chain in chains:
            last = chain[-1]
            if _nested(codes[:, f], codes[:, last], sizes[f], sizes[last]):
                if best is None or sizes[chains[best][-1]] < sizes[last]:
                    best = chains.index(chain)
        if best is None:
            chains.append([f])
        else:
            chains[best].append(f)
    return tuple(tuple(c) for c in chains)


def _rms(columns: np.ndarray) -> np.ndarray:
    out = np.sqrt(np.mean(columns**2, axis=0)) if columns.shape[0] else np.ones(columns.shape[1])
    return np.where(out > 0, out, 1.0)


def default_covariance_prior(sd_y: float, z_rms: np.ndarray) -> HuangWand:
    """Huang & Wand's prior with ``nu = 2`` and scales ``DEFAULT_HW_SCALE * sd(y) / rms(z)``."""
    return HuangWand(2.0, tuple(float(DEFAULT_HW_SCALE * sd_y / r) for r in z_rms))


@dataclasses.dataclass(frozen=True, eq=False)
class MixedModel:
    """A Gaussian multilevel model with any number of grouping factors (module docstring).

    Build it with :meth:`mlgibbs.Model.from_formula` (which returns this class for every formula that
    is not a single varying intercept) or :meth:`from_arrays`.

    Attributes
    ----------
    data
        :class:`~mlgibbs.models.mixed_data.MixedData` in the kernel's coordinates.
    structure
        :class:`~mlgibbs.models.mixed_data.MixedStructure` (static).
    kernel_priors
        :class:`~mlgibbs.samplers.mixed.MixedPriors` in the kernel's coordinates.
    priors
        The priors as resolved in the user's units: ``beta`` (per fixed-effect name), ``sigma_y``, and
        per factor name the prior of each covariance block.
    y, X, factors, U
        The observations and designs (float64 NumPy, the user's coordinates).
    response, predictors, group_predictors
        Names: the response, ``X``'s columns, and per factor ``U_f``'s columns.
    fixed_names, fixed_owner, fixed_spec
        The fixed-effect columns of the formula, where each went (-1: ``X``; ``f``: ``U_f``), and
        formulaic's spec that evaluates them on new data (:func:`mlgibbs.predict`).
    transform
        :class:`MixedTransform` between the user's parameters and the kernel's.
    family, trials
        The outcome :class:`~mlgibbs.families.Family` and, for the binomial-type families, the number
        of trials of every observation (float64; ``None`` for the Gaussian).
    cell_of_obs
        Binomial-type families: the kernel row each observation was merged into.
    """

    data: MixedData
    structure: MixedStructure
    kernel_priors: MixedPriors
    priors: dict
    y: np.ndarray
    X: np.ndarray
    factors: tuple[Factor, ...]
    U: tuple[np.ndarray, ...]
    response: str
    predictors: tuple[str, ...]
    group_predictors: tuple[tuple[str, ...], ...]
    transform: MixedTransform
    kernel_rows: tuple[np.ndarray, np.ndarray, np.ndarray]
    compression: _Compression
    formula: str | None = None
    dtype: np.dtype = dataclasses.field(default_factory=lambda: np.dtype(np.float32))
    fixed_names: tuple[str, ...] = ()
    fixed_owner: tuple[int, ...] = ()
    fixed_spec: Any = None
    family: Family = FAMILIES["gaussian"]
    trials: np.ndarray | None = None
    cell_of_obs: np.ndarray | None = None
    trials_column: str | None = None
    _cache: dict = dataclasses.field(default_factory=dict, init=False, repr=False, compare=False)

    def cached(self, key, build):
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    # ------------------------------------------------------------------ names and sizes
    @property
    def num_obs(self) -> int:
        return int(self.y.shape[0])

    @property
    def factor_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.factors)

    def __repr__(self) -> str:
        lines = [f"MixedModel({self.formula or 'from arrays'})",
                 f"  {self.num_obs} observations of {self.response!r}",
                 f"  beta: {list(self.predictors)}"]
        for f, factor in enumerate(self.factors):
            lines.append(f"  {factor.name}: {len(factor.labels)} groups, coefficients {list(factor.coef_names)}"
                         f", group-level predictors {list(self.group_predictors[f])}")
        lines.append(f"  chains of nested factors: "
                     f"{[[self.factors[f].name for f in c] for c in self.structure.chains]}")
        return "\n".join(lines)

    # ------------------------------------------------------------------ coordinates
    def to_user(self, state, xp=np) -> dict[str, Any]:
        """Map a kernel state (:class:`~mlgibbs.samplers.mixed.MixedState`, any leading batch axes) to
        the user's parameters: a dict with ``beta``, ``sigma_y`` and per factor ``alpha_<f>``,
        ``gamma_<f>``, ``cov_<f>`` (float64 with ``xp=numpy``)."""
        tr = self.transform
        if xp is np:
            state = jax.tree.map(lambda a: np.asarray(a, np.float64), state)
        k, c = tr.k, tr.c
        beta = k * state.beta / tr.x_scale
        shift = beta @ tr.x_mean - c if tr.intercept is not None else xp.zeros(beta.shape[:-1])
        if tr.intercept is not None and tr.intercept[0] == "beta":
            j = tr.intercept[1]
            beta = _set(xp, beta, j, k * state.beta[..., j] - shift)
        out = {"beta": beta, "sigma_y": k * state.sigma_y}
        if self.family is not None and self.family.dispersion:  # the negative binomial's r: sigma_y's slot
            out["r"] = state.sigma_y
        for f, factor in enumerate(self.factors):
            gamma = k * state.gamma[f] / tr.u_scale[f]
            b = k * state.b[f]
            if tr.intercept is not None and tr.intercept[0] == "factor" and tr.intercept[1] == f:
                _, _, ju, kz = tr.intercept
                rest = gamma @ tr.u_mean[f]
                gamma = _set(xp, gamma, ju, k * state.gamma[f][..., ju] - rest - shift)
                b = _set(xp, b, kz, b[..., kz] - shift[..., None])
            zs = tr.z_scale[f]
            if b.shape[-1] == 1:  # a product by a 1 x 1 matrix: elementwise (NumPy's matmul is slow on huge batches)
                b = b * (xp.asarray(tr.coef_map_inv[f])[0, 0] / zs)
            else:
                b = (b @ xp.asarray(tr.coef_map_inv[f]).T) / zs
            cov = k**2 * state.cov[f] / (zs[:, None] * zs[None, :])
            out[f"alpha_{factor.name}"] = b
            out[f"gamma_{factor.name}"] = gamma
            out[f"cov_{factor.name}"] = cov
        return out

    def to_kernel(self, values: Mapping[str, Any], xp=np):
        """The inverse of :meth:`to_user`: a kernel state from the user's parameters (float64 NumPy by
        default; ``xp=jax.numpy`` for a pure JAX function of traced values in the model's dtype)."""
        from mlgibbs.samplers.mixed import MixedState

        tr = self.transform
        if xp is np:
            v = {name: np.asarray(a, np.float64) for name, a in values.items()}
        else:
            v = {name: jnp.asarray(a, self.dtype) for name, a in values.items()}
        k, c = tr.k, tr.c
        beta_u = v["beta"]
        shift = beta_u @ tr.x_mean - c if tr.intercept is not None else xp.zeros(beta_u.shape[:-1])
        beta = beta_u * tr.x_scale / k
        if tr.intercept is not None and tr.intercept[0] == "beta":
            j = tr.intercept[1]
            beta = _set(xp, beta, j, (beta_u[..., j] + shift) / k)
        gammas, bs, covs = [], [], []
        for f, factor in enumerate(self.factors):
            g_u = v[f"gamma_{factor.name}"]
            b_u = v[f"alpha_{factor.name}"]
            gamma = g_u * tr.u_scale[f] / k
            b = (b_u * tr.z_scale[f]) @ np.linalg.inv(tr.coef_map_inv[f]).T / k
            if tr.intercept is not None and tr.intercept[0] == "factor" and tr.intercept[1] == f:
                _, _, ju, kz = tr.intercept
                gamma = _set(xp, gamma, ju, (g_u[..., ju] + g_u @ tr.u_mean[f] + shift) / k)
                b = _set(xp, b, kz, b[..., kz] + shift[..., None] / k)
            zs = tr.z_scale[f]
            covs.append(v[f"cov_{factor.name}"] * (zs[:, None] * zs[None, :]) / k**2)
            gammas.append(gamma)
            bs.append(b)
        sigma_y = v["r"] if self.family.dispersion else v["sigma_y"] / k
        if xp is not np:
            gammas, bs, covs = ([jnp.asarray(a, self.dtype) for a in part] for part in (gammas, bs, covs))
            beta, sigma_y = jnp.asarray(beta, self.dtype), jnp.asarray(sigma_y, self.dtype)
        return MixedState(beta=beta, gamma=tuple(gammas), b=tuple(bs), sigma_y=sigma_y, cov=tuple(covs))

    def design_columns(self) -> dict[str, list[tuple[int, int]]]:
        """Where each design column of the observations goes: name -> ``[(f, j), ...]`` with ``f = -1``
        for column ``j`` of ``X`` (a fixed effect) and ``f >= 0`` for column ``j`` of factor ``f``'s
        ``Z`` (a varying coefficient). Group-level predictors (``U``) are not listed."""
        where: dict[str, list[tuple[int, int]]] = {}
        for j, name in enumerate(self.predictors):
            where.setdefault(name, []).append((-1, j))
        for f, factor in enumerate(self.factors):
            for j, name in enumerate(factor.coef_names):
                where.setdefault(name, []).append((f, j))
        return where

    def design_with(self, columns: Mapping[str, ArrayLike] | None = None) -> tuple[jax.Array, list[jax.Array]]:
        """``(X, [Z_f])`` of the observations (the user's units, JAX arrays in the model's dtype) with the
        named design columns replaced (see :meth:`design_columns`), checked by name and length."""
        dtype, n = self.dtype, self.num_obs
        where = self.design_columns()
        X = jnp.asarray(self.X, dtype)
        Zs = [jnp.asarray(factor.Z, dtype) for factor in self.factors]
        for name, values in dict(columns or {}).items():
            if name == "Intercept" or name not in where:
                group_level = [self.factors[f].name for nm, f in zip(self.fixed_names, self.fixed_owner)
                               if nm == name and f >= 0]
                why = ("the intercept's column is 1" if name == "Intercept"
                       else f"it is a group-level predictor of {group_level[0]!r} (constant within its groups)"
                       if group_level else f"expected one of {sorted(n_ for n_ in where if n_ != 'Intercept')}")
                raise ValueError(f"cannot replace design column {name!r}: {why}")
            values = jnp.asarray(values, dtype)
            if values.shape != (n,):
                raise ValueError(f"design column {name!r} has shape {values.shape}; expected ({n},), one "
                                 "value per observation")
            for f, j in where[name]:
                if f < 0:
                    X = X.at[:, j].set(values)
                else:
                    Zs[f] = Zs[f].at[:, j].set(values)
        return X, Zs

    def data_for_design(self, columns: Mapping[str, ArrayLike] | None = None, *, y: ArrayLike | None = None,
                        weights: ArrayLike | None = None) -> MixedData:
        r"""This model's data pytree with some design columns (and the response) replaced, as a pure JAX
        function of them: the Gibbs update of a model whose design depends on other parameters (a change
        point, a transformed predictor: :class:`mlgibbs.numpyro.MultilevelBlock`).

        The kernel's coordinates stay this model's (the same centring and scaling constants, an affine map
        of the linear predictor that is exact for any column values), so a kernel state means the same
        parameters under this data and under :attr:`data`, and :meth:`to_user` / :meth:`to_kernel` apply.
        The structure (which columns are fixed effects, varying coefficients, group-level predictors) is
        this model's; group-level predictors cannot be replaced. With ``weights`` ``w_i > 0`` the
        likelihood is ``y_i ~ N(mu_i, sigma_y^2 / w_i)`` (the rows of the design and the response scaled
        by ``sqrt(w_i)``; a Student-t outcome is this with ``w_i ~ Gamma(nu/2, nu/2)``).

        Rows are not compressed (a cell's pseudo-rows depend on the design): a sweep on this data costs
        the ``n`` observations, not the cells. Gaussian family only.

        Parameters
        ----------
        columns
            Design column name (as in :meth:`design_columns`: a fixed effect, a varying coefficient or
            both) -> its ``n`` values in the user's units.
        y
            Another response (the user's units), default this model's.
        weights
            Per-observation precision weights, default 1.
        """
        if not self.family.gaussian:
            raise NotImplementedError(f"data_for_design is for the Gaussian family; this model's family is "
                                      f"{self.family.name!r}")
        tr, s, dtype = self.transform, self.structure, self.dtype
        X, Zs = self.design_with(columns)
        X_k = (X - jnp.asarray(tr.x_mean, dtype)) / jnp.asarray(tr.x_scale, dtype)
        Z_k = [(Z - jnp.asarray(tr.z_mean[f], dtype)) / jnp.asarray(tr.z_scale[f], dtype)
               for f, Z in enumerate(Zs)]
        W = jnp.concatenate([X_k, *Z_k], axis=1)
        t = (jnp.asarray(self.kernel_rows[1], dtype) if y is None
             else (jnp.asarray(y, dtype) - tr.c) / tr.k)
        if weights is not None:
            root = jnp.sqrt(jnp.asarray(weights, dtype))
            W, t = W * root[:, None], t * root
        codes = jnp.asarray(self.kernel_rows[2], jnp.int32)
        chains = []
        for k_, chain in enumerate(s.chains):
            cols = jnp.asarray(s.chain_columns(k_), jnp.int32)
            fine = codes[:, chain[-1]]
            Wc = W[:, cols]
            size = self.data.chains[k_].gram.shape[0]
            gram = jax.ops.segment_sum(Wc[:, :, None] * Wc[:, None, :], fine, num_segments=size)
            linear = jax.ops.segment_sum(Wc * t[:, None], fine, num_segments=size)
            chains.append(self.data.chains[k_]._replace(gram=gram, linear=linear))
        return self.data._replace(W=W, t=t, codes=codes, rss_floor=jnp.zeros((), dtype), chains=tuple(chains))

    def data_for(self, y) -> MixedData:
        """This model's data pytree with another response ``y`` (user's units), as a pure JAX function
        (``jit`` / ``vmap`` over simulated data sets: the Geweke and SBC tests)."""
        tr, comp, s = self.transform, self.compression, self.structure
        dtype = self.dtype
        if not self.family.gaussian:  # successes summed into the kernel rows; trials and lanes unchanged
            t = jax.ops.segment_sum(jnp.asarray(y, dtype), jnp.asarray(self.cell_of_obs),
                                    num_segments=self.data.t.shape[0])
            if self.family.link == "log":  # counts (the negative binomial's lanes follow them: traced draw)
                return self.data._replace(t=t, y_obs=jnp.asarray(y, dtype), lane_rows=None)
            return self.data._replace(t=t)
        W_obs = jnp.asarray(self.kernel_rows[0], dtype)
        y_k = (jnp.asarray(y, dtype) - tr.c) / tr.k
        parts = [y_k[comp.small_rows]]
        floor = jnp.zeros((), dtype)
        if comp.big_rows.size:
            Wb = W_obs[comp.big_rows]
            yb = y_k[comp.big_rows]
            C = comp.to_rows.shape[0]
            wy = jax.ops.segment_sum(Wb * yb[:, None], comp.big_cell, num_segments=C)
            parts.append((jnp.asarray(comp.to_rows, dtype) @ wy[:, :, None]).reshape(-1))
            theta = (jnp.asarray(comp.pinv, dtype) @ wy[:, :, None])[:, :, 0]
            floor = jnp.sum((yb - jnp.sum(Wb * theta[comp.big_cell], axis=1)) ** 2)
        t = jnp.concatenate(parts)
        data = self.data
        chains = []
        for k, chain in enumerate(s.chains):
            cols = jnp.asarray(s.chain_columns(k), jnp.int32)
            fine = data.codes[:, chain[-1]]
            linear = jax.ops.segment_sum(data.W[:, cols] * t[:, None], fine,
                                         num_segments=data.chains[k].gram.shape[0])
            chains.append(data.chains[k]._replace(linear=linear))
        return data._replace(t=t, rss_floor=floor, chains=tuple(chains))

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_arrays(cls, y, X=None, terms: Sequence["Term"] = (), *, priors=None, intercept: bool = True,
                    response: str = "y", predictors: Sequence[str] | None = None, dtype=None, family=None,
                    trials=None) -> "MixedModel":
        """Build from arrays: a response, fixed-effect columns and one :class:`Term` per grouping term.

        The same model and rules as :meth:`from_formula`: ``X`` (with an ``Intercept`` column first
        when ``intercept``) holds every fixed effect; a column constant within the groups of a term's
        factor with a varying intercept becomes a group-level predictor of the coarsest such factor
        (so a county-level predictor is passed as a column of ``X`` repeated over the county's rows).
        Terms with the same ``name`` form one factor (``(1 | g) + (0 + x | g)``).

        Examples
        --------
        >>> import numpy as np, mlgibbs as mg
        >>> rng = np.random.default_rng(0)
        >>> g = rng.integers(0, 10, 200); x = rng.normal(size=200)
        >>> y = x + rng.normal(size=10)[g] + rng.normal(size=200)
        >>> model = mg.Model.from_arrays(y, x[:, None], terms=[mg.Term(g, x[:, None], name="g", coef_names=["x"])],
        ...                              predictors=["x"])
        >>> model.factors[0].coef_names
        ('Intercept', 'x')
        """
        from mlgibbs.models.model import _matrix
        from mlgibbs.models.validation import as_float_column, encode_groups

        y = as_float_column(y, response)
        n = y.shape[0]
        X, names = _matrix(X, n, predictors, "x", "X")
        if intercept:
            X = np.column_stack([np.ones(n), X])
            names = ["Intercept", *names]
        check_full_rank(X, names, "the fixed-effect design X")
        if not terms and get_family(family).gaussian:
            raise ValueError("terms is empty: give at least one mg.Term (or use mg.Model.from_arrays with "
                             "group= for a varying intercept)")
        by_name: dict[str, list] = {}
        for k, term in enumerate(terms):
            if not isinstance(term, Term):
                raise TypeError(f"terms[{k}] must be an mg.Term, got {type(term).__name__}")
            by_name.setdefault(term.name or f"group{k}", []).append(term)
        factors = []
        for name, group_terms in by_name.items():
            codes, labels = encode_groups(group_terms[0].group, name, n)
            for other in group_terms[1:]:
                again, _ = encode_groups(other.group, name, n, labels)
                if not np.array_equal(again, codes):
                    raise ValueError(f"two terms named {name!r} have different groupings; give them different names")
            columns, coef_names, blocks = [], [], []
            for term in group_terms:
                Z, znames = _matrix(term.Z, n, term.coef_names, f"{name}_z", f"Z of term {name!r}")
                if term.intercept:
                    Z = np.column_stack([np.ones(n), Z])
                    znames = ["Intercept", *znames]
                if Z.shape[1] == 0:
                    raise ValueError(f"term {name!r} has no varying coefficient (intercept=False and no Z)")
                clash = [z for z in znames if z in coef_names]
                if clash:
                    raise ValueError(f"the varying coefficient(s) {clash} of {name!r} appear in two terms")
                start = len(coef_names)
                if term.correlated and Z.shape[1] > 1:
                    blocks.append((start, Z.shape[1]))
                else:
                    blocks.extend((start + j, 1) for j in range(Z.shape[1]))
                columns.append(Z)
                coef_names.extend(znames)
            Z = np.column_stack(columns)
            check_full_rank(Z, coef_names, f"the varying coefficients of {name!r}")
            factors.append(Factor(name, codes, labels, Z, tuple(coef_names), tuple(blocks),
                                  tuple(f"term {name}" for _ in group_terms), (), ()))
        return cls._build(y, response, X, names, factors, priors, dtype, family=family, trials=trials)

    @classmethod
    def from_formula(cls, formula: str, data, priors=None, *, dtype=None, family=None,
                     trials=None) -> "MixedModel":
        """Build from an lme4-style formula (see :meth:`mlgibbs.Model.from_formula`)."""
        from mlgibbs.models.formula import fixed_design
        from mlgibbs.models.terms import (check_implicit_nesting, factor_codes, factor_name,
                                          parse_mixed_formula, term_design)

        if not isinstance(data, pd.DataFrame):
            raise TypeError(f"data must be a pandas DataFrame, got {type(data).__name__}")
        parsed = parse_mixed_formula(formula)
        y, response, design, names, spec = fixed_design(parsed.response_and_fixed, data, return_spec=True)
        check_full_rank(design, names, "the fixed-effect design")
        check_implicit_nesting(data, [term.factor for term in parsed.terms])
        by_factor: dict[tuple, list] = {}
        for term in parsed.terms:
            by_factor.setdefault(tuple(term.factor), []).append(term)
        factors = []
        for key, terms in by_factor.items():
            name = factor_name(key)
            codes, labels = factor_codes(data, key, name=name)
            columns, coef_names, blocks, texts = [], [], [], []
            for term in terms:
                Z, znames = term_design(term.expr, data, term_text=term.text)
                for zn in znames:
                    if zn in coef_names:
                        raise ValueError(f"the varying coefficient {zn!r} of factor {name!r} appears in two "
                                         f"terms ({term.text}); give each coefficient once")
                start = len(coef_names)
                if term.correlated and Z.shape[1] > 1:
                    blocks.append((start, Z.shape[1]))
                else:
                    blocks.extend((start + j, 1) for j in range(Z.shape[1]))
                columns.append(Z)
                coef_names.extend(znames)
                texts.append(term.text)
            Z = np.column_stack(columns)
            check_full_rank(Z, coef_names, f"the varying coefficients of {name!r} ({' + '.join(texts)})")
            factors.append(Factor(name, codes, labels, Z, tuple(coef_names), tuple(blocks), tuple(texts),
                                  tuple(t.expr for t in terms), tuple(key)))
        model = cls._build(y, response, design, names, factors, priors, dtype, formula=formula, family=family,
                           trials=trials, frame=data)
        return dataclasses.replace(model, fixed_spec=spec, trials_column=trials if isinstance(trials, str) else None)

    @classmethod
    def _build(cls, y, response, design, names, factors, priors, dtype, *, formula=None, family=None, trials=None,
               frame=None) -> "MixedModel":
        from mlgibbs.models.model import _resolve_dtype

        dtype = _resolve_dtype(dtype)
        family = get_family(family)
        y, trials = check_response(family, y, trials, response, frame)
        n = y.shape[0]
        names = list(names)
        F = len(factors)
        reserved = {"chain", "draw", "predictor", "obs_id", "beta", "sigma_y"}
        for factor in factors:
            if factor.name in reserved:
                raise ValueError(f"the grouping factor is called {factor.name!r}, which is a name of the ArviZ "
                                 "output; rename the column")
        sizes = [len(f.labels) for f in factors]
        codes = (np.column_stack([f.codes for f in factors]).astype(np.int64) if factors
                 else np.zeros((n, 0), np.int64))
        intercept_coord = [f.coef_names.index("Intercept") if "Intercept" in f.coef_names else -1
                           for f in factors]
        # fixed columns constant within the groups of a factor with a varying intercept -> U of the coarsest,
        # unless they are constant within factors of two chains (crossed): then they stay fixed effects
        by_size = sorted([f for f in range(F) if intercept_coord[f] >= 0], key=lambda f: (sizes[f], f))
        chain_of = {f: k for k, chain in enumerate(_chains(codes, sizes)) for f in chain}
        counts = [np.bincount(codes[:, f], minlength=sizes[f]) for f in range(F)]
        owner, constant_in = [], [[] for _ in range(F)]
        for j in range(design.shape[1]):
            col = design[:, j]
            homes = []
            for f in by_size:
                mean = _segment_sum(col[:, None], codes[:, f], sizes[f])[:, 0] / counts[f]
                if np.all(np.abs(col - mean[codes[:, f]]) <= 1e-12 * (1 + np.abs(col))):
                    homes.append(f)
            one_chain = len({chain_of[f] for f in homes}) == 1
            owner.append(homes[0] if homes and one_chain else -1)
            if owner[-1] < 0:
                for f in homes:
                    constant_in[f].append(names[j])
        x_cols = [j for j in range(design.shape[1]) if owner[j] < 0]
        X = design[:, x_cols]
        x_names = [names[j] for j in x_cols]
        first_row = [_first_rows(codes[:, f], sizes[f]) for f in range(F)]
        U = [design[first_row[f]][:, [j for j in range(design.shape[1]) if owner[j] == f]] for f in range(F)]
        u_names = [[names[j] for j in range(design.shape[1]) if owner[j] == f] for f in range(F)]
        for f in range(F):
            if U[f].shape[1] >= sizes[f]:
                raise ValueError(f"{U[f].shape[1]} group-level predictors for {sizes[f]} groups of "
                                 f"{factors[f].name!r}; need fewer predictors than groups")

        # ---------------------------------------------------------------- coordinates
        if "Intercept" in x_names:
            intercept = ("beta", x_names.index("Intercept"))
        else:
            intercept = next((("factor", f, u_names[f].index("Intercept"), intercept_coord[f])
                              for f in range(F) if "Intercept" in u_names[f]), None)
        c = float(np.mean(y)) if intercept is not None and family.gaussian else 0.0
        # the scale of the linear predictor: the response's spread, or 1 on the link scale of the others
        spread = float(np.sqrt(np.mean((y - c) ** 2))) if family.gaussian else 1.0
        if spread == 0.0:
            raise ValueError(f"the response {response!r} is constant: there is no variation to model, the "
                             "residual standard deviation sigma_y would be 0 and the posterior is improper")
        k = 1.0
        if not (2.0**-20 <= spread <= 2.0**20):
            k = 2.0 ** round(math.log2(spread))
        is_one = [n_ == "Intercept" for n_ in x_names]
        x_mean = np.where(is_one, 0.0, X.mean(axis=0)) if intercept is not None else np.zeros(X.shape[1])
        x_scale = np.where(is_one, 1.0, _rms(X - x_mean))
        u_mean, u_scale = [], []
        for f in range(F):
            ones = np.array([n_ == "Intercept" for n_ in u_names[f]], dtype=bool)
            centre = ones.any()
            mean = np.where(ones, 0.0, U[f].mean(axis=0)) if centre else np.zeros(U[f].shape[1])
            u_mean.append(mean)
            u_scale.append(np.where(ones, 1.0, _rms(U[f] - mean)))
        z_mean, z_scale, maps = [], [], []
        for f in range(F):
            kz = intercept_coord[f]
            ones = np.arange(factors[f].Z.shape[1]) == kz
            mean = np.where(ones, 0.0, factors[f].Z.mean(axis=0)) if kz >= 0 else np.zeros(len(ones))
            scale = np.where(ones, 1.0, _rms(factors[f].Z - mean))
            inv = np.eye(len(ones))
            if kz >= 0:
                inv[kz] -= mean / scale
            z_mean.append(mean)
            z_scale.append(scale)
            maps.append(inv)
        tr = MixedTransform(c, k, x_mean, x_scale, tuple(u_mean), tuple(u_scale), tuple(z_scale), intercept,
                            tuple(z_mean), tuple(maps))
        y_k = (y - c) / k
        X_k = (X - x_mean) / x_scale
        U_k = [(U[f] - u_mean[f]) / u_scale[f] for f in range(F)]
        Z_k = [(factors[f].Z - z_mean[f]) / z_scale[f] for f in range(F)]
        W_obs = np.column_stack([X_k, *Z_k])

        structure = MixedStructure(
            p=X.shape[1], dims=tuple(f.Z.shape[1] for f in factors), q=tuple(u.shape[1] for u in U),
            intercepts=tuple(intercept_coord), cov_blocks=tuple(f.blocks for f in factors),
            chains=_chains(codes, sizes), family=family.name)

        # ---------------------------------------------------------------- priors
        resolved, kernel_priors = _resolve_priors(priors, factors, x_names, u_names, constant_in, tr, spread,
                                                  sizes, intercept_coord, U, n, response, family)
        if not family.gaussian:   # separation along the flat coefficients: an improper posterior
            from mlgibbs.families import check_separation
            from mlgibbs.models.checks import num_flat

            flat = [j for j, name in enumerate(names) if num_flat(resolved["beta"][name], 1)]
            check_separation(family, design[:, flat], [names[j] for j in flat], y, trials, response)
        loc_prior = _location_prior(resolved["beta"], x_names, u_names, tr, cls, factors)

        # ---------------------------------------------------------------- rows and chains
        glm = {}
        cell_of_obs = None
        if family.gaussian:
            rows, comp = _compress(W_obs, y_k, codes)
            W_rows, t_rows, codes_rows, floor = rows
        else:
            W_rows, t_rows, codes_rows, glm, cell_of_obs = _merge_trials(W_obs, y, trials, codes)
            if family.link == "log":  # counts: the observations' counts; no trial lanes
                glm["y_obs"] = y
                glm["lane_rows"] = glm["lane_position"] = None
            if family.dispersion:  # max(Y - 1, 0) PG(1) lanes per row
                glm["lane_rows"] = np.repeat(np.arange(t_rows.shape[0]),
                                             np.maximum(np.rint(t_rows) - 1, 0).astype(np.int64)).astype(np.int32)
            floor = 0.0
            comp = _Compression(*(np.zeros(0, np.int32),) * 3, np.zeros((0, 0, 0)), np.zeros((0, 0, 0)))
        chains = []
        for ci, chain in enumerate(structure.chains):
            cols = list(structure.chain_columns(ci))
            fine = codes_rows[:, chain[-1]]
            Wc = W_rows[:, cols]
            gram = _segment_sum(Wc[:, :, None] * Wc[:, None, :], fine, sizes[chain[-1]])
            linear = _segment_sum(Wc * t_rows[:, None], fine, sizes[chain[-1]])
            parents = tuple(codes[first_row[chain[i]], chain[i - 1]] for i in range(1, len(chain)))
            chains.append(ChainData(gram=gram, linear=linear, parents=tuple(p.astype(np.int32) for p in parents)))
        data = MixedData(
            W=W_rows, t=t_rows, codes=codes_rows.astype(np.int32), rss_floor=np.asarray(floor),
            num_obs=np.asarray(float(n)), U=tuple(U_k), chains=tuple(chains), location_prior=loc_prior,
            y_scale=np.asarray(k), coef_maps=tuple(maps), **glm)
        data = _to_device(data, dtype)
        return cls(
            data=data, structure=structure, kernel_priors=kernel_priors, priors=resolved, y=y, X=X,
            factors=tuple(factors), U=tuple(U), response=response, predictors=tuple(x_names),
            group_predictors=tuple(tuple(u) for u in u_names), transform=tr,
            kernel_rows=(W_obs, y_k, codes.astype(np.int32)), compression=comp, formula=formula, dtype=dtype,
            fixed_names=tuple(names), fixed_owner=tuple(owner), family=family, trials=trials,
            cell_of_obs=cell_of_obs)


def _set(xp, array, index, value):
    if xp is np:
        array = np.array(array, copy=True)
        array[..., index] = value
        return array
    return array.at[..., index].set(value)


def _first_rows(codes: np.ndarray, size: int) -> np.ndarray:
    first = np.zeros(size, dtype=np.int64)
    first[codes[::-1]] = np.arange(codes.shape[0])[::-1]
    return first


def _to_device(data: MixedData, dtype) -> MixedData:
    ints = {"codes", "lane_rows", "lane_position"}
    out = {}
    for name, value in data._asdict().items():
        if value is None:
            out[name] = None
        elif name in ints:
            out[name] = jax.device_put(np.asarray(value, np.int32))
        elif name == "chains":
            out[name] = tuple(ChainData(gram=to_device(ch.gram, dtype), linear=to_device(ch.linear, dtype),
                                        parents=tuple(jax.device_put(np.asarray(p, np.int32))
                                                      for p in ch.parents)) for ch in value)
        else:
            out[name] = to_device(value, dtype)
    return MixedData(**out)


def _merge_trials(W: np.ndarray, y: np.ndarray, trials: np.ndarray, codes: np.ndarray):
    """Kernel rows of a binomial-type family: observations with the same design row and groups merged,
    successes and trials summed. Returns ``(W, successes, codes, lanes, cell_of_obs)``, ``lanes`` the
    :class:`MixedData` fields ``trials``, ``lane_rows``, ``lane_position``."""
    keys = np.column_stack([W, codes.astype(np.float64)])
    _, first, cell = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    cell = cell.reshape(-1)
    R = first.shape[0]
    successes = _segment_sum(y[:, None], cell, R)[:, 0]
    m = np.rint(_segment_sum(trials[:, None], cell, R)[:, 0]).astype(np.int64)
    lane_rows = np.repeat(np.arange(R), m)
    starts = np.concatenate([[0], np.cumsum(m)[:-1]])
    lane_position = np.arange(lane_rows.shape[0]) - starts[lane_rows]
    lanes = {"trials": m.astype(np.float64), "lane_rows": lane_rows.astype(np.int32),
             "lane_position": lane_position.astype(np.int32)}
    return W[first], successes, codes[first], lanes, cell.astype(np.int32)


def _compress(W: np.ndarray, y: np.ndarray, codes: np.ndarray):
    """Rows of the kernel: small cells keep their observations, larger ones ``D`` pseudo-rows
    (:mod:`mlgibbs.models.mixed_data`). Returns ``(W, t, codes, floor)`` and the map from ``y``."""
    n, D = W.shape
    _, cell, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    cell = cell.reshape(-1)
    big_cell_mask = counts > D
    is_big = big_cell_mask[cell]
    small_rows = np.flatnonzero(~is_big)
    big_rows = np.flatnonzero(is_big)
    big_ids = np.flatnonzero(big_cell_mask)
    remap = -np.ones(counts.shape[0], dtype=np.int64)
    remap[big_ids] = np.arange(big_ids.size)
    big_cell = remap[cell[big_rows]]
    C = big_ids.size
    W_parts, t_parts, code_parts = [W[small_rows]], [y[small_rows]], [codes[small_rows]]
    floor = 0.0
    to_rows = np.zeros((C, D, D))
    pinv = np.zeros((C, D, D))
    if C:
        Wb, yb = W[big_rows], y[big_rows]
        gram = _segment_sum(Wb[:, :, None] * Wb[:, None, :], big_cell, C)
        wy = _segment_sum(Wb * yb[:, None], big_cell, C)
        lam, vec = np.linalg.eigh(gram)
        keep = lam > D * np.finfo(float).eps * lam[:, -1:]
        root = np.where(keep, np.sqrt(np.where(keep, lam, 1.0)), 0.0)
        inv_root = np.where(keep, 1.0 / np.where(keep, root, 1.0), 0.0)
        R = root[:, :, None] * np.swapaxes(vec, 1, 2)                  # rows sqrt(lam_j) v_j'
        to_rows = inv_root[:, :, None] * np.swapaxes(vec, 1, 2)        # t = diag(1/sqrt lam) V' W'y
        pinv = vec @ (inv_root[:, :, None] ** 2 * np.swapaxes(vec, 1, 2))
        theta = (pinv @ wy[:, :, None])[:, :, 0]
        floor = float(np.sum((yb - np.sum(Wb * theta[big_cell], axis=1)) ** 2))
        t_big = (to_rows @ wy[:, :, None])[:, :, 0]
        first = _first_rows(big_cell, C)
        W_parts.append(R.reshape(C * D, D))
        t_parts.append(t_big.reshape(C * D))
        code_parts.append(np.repeat(codes[big_rows][first], D, axis=0))
    rows = (np.concatenate(W_parts), np.concatenate(t_parts), np.concatenate(code_parts), floor)
    return rows, _Compression(small_rows.astype(np.int32), big_rows.astype(np.int32),
                              big_cell.astype(np.int32), to_rows, pinv)


def _resolve_priors(priors, factors, x_names, u_names, constant_in, tr, spread, sizes, intercept_coord, U, n,
                    response, family=None):
    """User priors (dict) -> (resolved in user units, :class:`MixedPriors` in kernel units), checked."""
    from mlgibbs.models.checks import num_flat

    priors = dict(priors or {})
    names = {f.name for f in factors}
    gaussian = family is None or family.gaussian
    dispersion = family is not None and family.dispersion
    allowed = ({"beta", "sigma_y"} if gaussian else {"beta", "r"} if dispersion else {"beta"}) | names
    unknown = [k for k in priors if k not in allowed]
    if "sigma_y" in unknown and not gaussian:
        raise ValueError(f"priors['sigma_y']: family {family.name!r} has no residual scale sigma_y"
                         + ("; its dispersion is 'r'" if dispersion else ""))
    if unknown:
        raise ValueError(f"unknown prior key(s) {unknown}; expected 'beta', "
                         f"{repr('r') if dispersion else repr('sigma_y') if gaussian else ''} or a grouping "
                         f"factor's name: {sorted(names)}")
    fixed_names = list(x_names) + [n_ for u in u_names for n_ in u]
    beta = priors.get("beta", Flat())
    if isinstance(beta, Mapping):
        bad = [k for k in beta if k not in fixed_names]
        if bad:
            raise ValueError(f"priors['beta'] names unknown fixed effect(s) {bad}; the fixed effects are "
                             f"{fixed_names}")
        for k_, v in beta.items():
            if not isinstance(v, (Flat, Normal)):
                raise TypeError(f"priors['beta'][{k_!r}] must be Flat() or Normal(loc, scale), got {v!r}")
            check_prior(v, f"beta[{k_}]")
    elif isinstance(beta, (Flat, Normal)):
        check_prior(beta, "beta")
        beta = {k_: beta for k_ in fixed_names}
    else:
        raise TypeError(f"priors['beta'] must be Flat(), Normal(loc, scale) or a dict by fixed-effect name, "
                        f"got {beta!r}")
    sigma_y = priors.get("sigma_y", Uniform())
    if not isinstance(sigma_y, _SCALAR) and not hasattr(sigma_y, "log_prob"):
        raise TypeError(f"priors['sigma_y'] must be a scale prior (Uniform, HalfNormal, ...), got {sigma_y!r}")
    check_prior(sigma_y, "sigma_y")
    resolved = {"beta": beta, "sigma_y": sigma_y}
    kernel_cov = []
    for f, factor in enumerate(factors):
        spec = priors.get(factor.name)
        zs = tr.z_scale[f]
        rms = _rms(factor.Z)
        per_block, kernel_blocks = [], []
        for start, size in factor.blocks:
            block_name = f"{factor.name}" + (f"[{factor.coef_names[start]}]" if size == 1 else "")
            if size == 1:
                prior = spec.get("sigma", Uniform()) if isinstance(spec, Mapping) else spec
                if prior is None:
                    prior = Uniform()
                if isinstance(prior, _COVARIANCE):
                    raise TypeError(f"priors[{factor.name!r}] is a covariance prior, but term "
                                    f"{factor.coef_names[start]!r} of {factor.name!r} is a single scale: give a "
                                    "scale prior (Uniform, HalfNormal, HalfCauchy, ...) or a dict "
                                    "{'sigma': ..., 'covariance': ...}")
                check_prior(prior, block_name)
                kernel = scale_prior(prior, tr.k / zs[start])
            else:
                prior = spec.get("covariance") if isinstance(spec, Mapping) else spec
                if prior is None:
                    prior = default_covariance_prior(spread, rms[start:start + size])
                if not isinstance(prior, _COVARIANCE):
                    raise TypeError(f"priors[{factor.name!r}]: the correlated term of {factor.name!r} "
                                    f"({', '.join(factor.coef_names[start:start + size])}) needs a covariance "
                                    f"prior, InverseWishart(df, scale) or HuangWand(df, scale); got {prior!r}")
                check_covariance_prior(prior, size, block_name)
                kernel = rescale_covariance_prior(prior, tr.k / zs[start:start + size])
            # propriety under a uniform scale: J - (flat coefficients of columns constant within the factor's
            # groups: its gamma, and fixed effects shared with crossed factors, such as the intercept) >= 2
            if isinstance(prior, Uniform):
                flat_q = 0
                if start == intercept_coord[f]:
                    flat_q = sum(1 for nm in list(u_names[f]) + list(constant_in[f])
                                 if num_flat(beta.get(nm, Flat()), 1))
                if sizes[f] - flat_q < 2:
                    raise ValueError(
                        f"the posterior is improper: {sizes[f]} groups of {factor.name!r} with {flat_q} flat "
                        f"group-level coefficient(s) leave {sizes[f] - flat_q} degree(s) of freedom for the "
                        f"scale of {factor.coef_names[start]!r}, and under the default uniform prior its "
                        "posterior does not integrate (at least 2 are needed; Gelman 2006). Give it a proper "
                        f"prior, e.g. priors={{{factor.name!r}: HalfNormal(s)}}")
            per_block.append(prior)
            kernel_blocks.append(kernel)
        resolved[factor.name] = tuple(per_block)
        kernel_cov.append(tuple(kernel_blocks))
    flat = sum(num_flat(v, 1) for v in beta.values()) + sum(1 for n_ in fixed_names if n_ not in beta)
    r_prior = None
    if dispersion:
        from mlgibbs.priors import Gamma

        r_prior = priors.get("r", Gamma(0.01, 0.01))
        if not hasattr(r_prior, "log_prob"):
            raise TypeError(f"priors['r'] must have a log_prob(r) method (e.g. Gamma(a, b)), got {r_prior!r}")
        check_prior(r_prior, "r")
        resolved["r"] = r_prior
    if not gaussian:
        resolved["sigma_y"] = None
    elif isinstance(sigma_y, Uniform) and n - flat < 2:
        raise ValueError(f"the posterior is improper: {n} observations of {response!r} and {flat} flat "
                         "coefficients leave fewer than 2 degrees of freedom under the uniform prior on sigma_y;"
                         " give sigma_y a proper prior, e.g. HalfNormal(s)")
    kernel_priors = MixedPriors(sigma_y=r_prior if dispersion else scale_prior(sigma_y, tr.k),
                                cov=tuple(kernel_cov))
    return resolved, kernel_priors


def _location_prior(beta_priors: dict, x_names, u_names, tr: MixedTransform, cls, factors) -> LocationPrior:
    """The user's independent Normal/Flat priors on the fixed effects as a joint Gaussian on the
    kernel's ``rho = (beta, gamma_1, ..., gamma_F)``."""
    names = list(x_names) + [n_ for u in u_names for n_ in u]
    P = len(names)
    loc = np.zeros(P)
    prec = np.zeros(P)
    log_norm = 0.0
    for i, name in enumerate(names):
        prior = beta_priors.get(name, Flat())
        normal = prior.as_normal()
        scale = float(np.asarray(normal.scale))
        if np.isfinite(scale):
            loc[i] = float(np.asarray(normal.loc))
            prec[i] = 1.0 / scale**2
            log_norm += -math.log(scale) - 0.5 * math.log(2 * math.pi)
    if not np.any(prec > 0):
        return LocationPrior(np.zeros(P), np.zeros((P, P)), np.asarray(0.0))
    # rho_k = A rho_u + a0, read off the map on the fixed effects alone
    def forward(rho_u):
        p = len(x_names)
        beta_u = rho_u[:p]
        shift = beta_u @ tr.x_mean - tr.c if tr.intercept is not None else 0.0
        beta = beta_u * tr.x_scale / tr.k
        if tr.intercept is not None and tr.intercept[0] == "beta":
            beta[tr.intercept[1]] = (beta_u[tr.intercept[1]] + shift) / tr.k
        out, start = [beta], p
        for f, u in enumerate(u_names):
            g_u = rho_u[start:start + len(u)]
            g = g_u * tr.u_scale[f] / tr.k
            if tr.intercept is not None and tr.intercept[0] == "factor" and tr.intercept[1] == f:
                ju = tr.intercept[2]
                g[ju] = (g_u[ju] + g_u @ tr.u_mean[f] + shift) / tr.k
            out.append(g)
            start += len(u)
        return np.concatenate(out)

    a0 = forward(np.zeros(P))
    A = np.column_stack([forward(np.eye(P)[i]) - a0 for i in range(P)])
    A_inv = np.linalg.inv(A)
    precision = A_inv.T @ np.diag(prec) @ A_inv
    return LocationPrior(A @ loc + a0, 0.5 * (precision + precision.T), np.asarray(log_norm))

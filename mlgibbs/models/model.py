"""The :class:`Model`: validated data, its sufficient-statistic pytree, priors and names."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from mlgibbs._lazy import pandas as pd

from mlgibbs.base import GibbsState
from mlgibbs.families import get_family
from mlgibbs.models import standardize as std_mod
from mlgibbs.models.checks import check_proper_posterior, check_residual_variation, check_resolution
from mlgibbs.models.data import LinearData, sufficient_statistics, to_device
from mlgibbs.models.formula import fixed_design, parse_formula
from mlgibbs.models.validation import (
    as_float_column,
    check_full_rank,
    encode_groups,
    within_group_constant,
)
from mlgibbs.priors import Flat, LocationPrior, Normal, Priors, check_prior, scale_prior

__all__ = ["Model", "resolve_priors"]

_BLOCKS = ("beta", "gamma", "sigma_y", "sigma_alpha")


def _coefficient_prior(spec, names: Sequence[str], block: str):
    if isinstance(spec, (Flat, Normal)):
        return spec
    if isinstance(spec, Mapping):
        unknown = [k for k in spec if k not in names]
        if unknown:
            raise ValueError(
                f"priors[{block!r}] names unknown coefficient(s) {unknown}; the {block} coefficients "
                f"are {list(names)}"
            )
        loc = np.zeros(len(names))
        scale = np.full(len(names), math.inf)
        for k, prior in spec.items():
            normal = _coefficient_prior(prior, names, block).as_normal()
            loc[names.index(k)], scale[names.index(k)] = normal.loc, normal.scale
        return Normal(loc, scale)
    raise TypeError(f"priors[{block!r}] must be Flat(), Normal(loc, scale) or a dict by coefficient name, "
                    f"got {spec!r}")


def resolve_priors(priors, predictors: Sequence[str] = (), group_predictors: Sequence[str] = ()) -> Priors:
    """Turn ``None``, a :class:`~mlgibbs.priors.Priors` or a dict into :class:`~mlgibbs.priors.Priors`.

    A dict may give any of ``beta``, ``gamma``, ``sigma_y``, ``sigma_alpha``; a coefficient block may
    be a dict from coefficient name to prior (unnamed coefficients stay flat).
    """
    if priors is None:
        return Priors()
    if isinstance(priors, Priors):
        priors = priors._asdict()
    if not isinstance(priors, Mapping):
        raise TypeError(f"priors must be a dict or mlgibbs.priors.Priors, got {type(priors).__name__}")
    unknown = [k for k in priors if k not in _BLOCKS]
    if unknown:
        raise ValueError(f"unknown prior block(s) {unknown}; expected some of {list(_BLOCKS)}")
    merged = Priors()._asdict()
    merged.update(priors)
    merged["beta"] = _coefficient_prior(merged["beta"], list(predictors), "beta")
    merged["gamma"] = _coefficient_prior(merged["gamma"], list(group_predictors), "gamma")
    for block, prior in merged.items():
        check_prior(prior, block)
    return Priors(**merged)


def _resolve_dtype(dtype) -> np.dtype:
    default = np.dtype(jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)  # no device work
    if dtype is None:
        return np.dtype(default)
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    if dtype == np.float64 and default != np.float64:
        raise ValueError("dtype float64 needs 64-bit JAX: jax.config.update('jax_enable_x64', True) "
                         "or the JAX_ENABLE_X64=1 environment variable")
    return dtype


@dataclasses.dataclass(frozen=True, eq=False)
class Model:
    """A varying-intercept linear model bound to its data.

    .. math::

        y_i \\sim \\mathcal N(\\alpha_{j[i]} + X_i\\beta,\\ \\sigma_y^2),\\qquad
        \\alpha_j \\sim \\mathcal N(U_j\\gamma,\\ \\sigma_\\alpha^2)

    or, without a grouping factor, ``y ~ N(X beta, sigma_y^2)``. Build it with
    :meth:`from_formula` or :meth:`from_arrays`; every input is checked there.

    Attributes
    ----------
    data
        The :class:`~mlgibbs.LinearData` pytree (sufficient statistics) that kernels take, in the
        kernel's coordinates (centred and whitened; see :mod:`mlgibbs.models.standardize` and
        :meth:`to_user`), with the coefficient priors mapped into them (``data.location_prior``).
    priors
        :class:`~mlgibbs.priors.Priors` as the user gave them (the user's coordinates).
    kernel_priors
        The scale priors as the kernels see them (the user's, divided by the response's scale
        ``k``; the same objects when ``k = 1``, which is the rule).
    y, X, U, group_index
        The raw observations and designs (float64 NumPy, the user's coordinates).
    kernel_y, kernel_X
        ``y`` and ``X`` in the kernel's coordinates (float64), for the pointwise log likelihood and
        posterior predictive draws.
    standardization
        The :class:`~mlgibbs.models.standardize.Standardization` between the two.
    response, predictors, group_name, group_labels, group_predictors
        Names used for ArviZ dims and coordinates.
    formula
        The formula, when built from one.
    fixed_spec
        formulaic's spec of the fixed part's right-hand side (evaluates it on new data for
        :func:`mlgibbs.predict`), when built from a formula.
    dtype
        The floating dtype of ``data`` and of the draws (float32 unless 64-bit JAX is enabled).
    """

    data: LinearData
    priors: Priors
    y: np.ndarray
    X: np.ndarray
    group_index: np.ndarray | None
    response: str
    predictors: tuple[str, ...]
    group_name: str | None
    group_labels: tuple[Any, ...] | None
    group_predictors: tuple[str, ...]
    formula: str | None = None
    dtype: np.dtype = dataclasses.field(default_factory=lambda: np.dtype(np.float32))
    U: np.ndarray | None = None
    kernel_y: np.ndarray | None = None
    kernel_X: np.ndarray | None = None
    standardization: std_mod.Standardization | None = None
    kernel_priors: Priors | None = None
    fixed_spec: Any = None
    _cache: dict = dataclasses.field(default_factory=dict, init=False, repr=False, compare=False)

    def cached(self, key, build):
        """``build()`` once per ``key`` for this model (kernels and jitted functions are reused, so a
        second :func:`~mlgibbs.sample` call on the same model does not compile again)."""
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def is_cached(self, key) -> bool:
        """Whether :meth:`cached` has built ``key`` for this model."""
        return key in self._cache

    @property
    def num_obs(self) -> int:
        return int(self.y.shape[0])

    @property
    def num_groups(self) -> int:
        return 0 if self.group_labels is None else len(self.group_labels)

    @property
    def group_counts(self) -> np.ndarray | None:
        if self.group_index is None:
            return None
        return np.bincount(self.group_index, minlength=self.num_groups)

    # ------------------------------------------------------------------ coordinates
    def to_user(self, state, xp=np):
        """Map a kernel state (or draws with leading batch axes) to the user's coordinates.

        With ``xp=numpy`` (default) the map is computed in float64 on the host, which is how
        :func:`~mlgibbs.sample` reports draws; ``xp=jax.numpy`` keeps it a pure JAX function in the
        state's dtype (inside a user's own traced code). ``None`` fields pass through.
        """
        if xp is np:
            state = jax.tree.map(lambda a: np.asarray(a, np.float64), state)
        return std_mod.to_user(self.standardization, GibbsState(*state[:5]), xp)

    def to_kernel(self, state, xp=np):
        """Map a state in the user's coordinates (``alpha``, ``beta``, ... as reported) to the kernel's.

        The inverse of :meth:`to_user`; the result is float64 NumPy with ``xp=numpy`` (cast it to
        ``model.dtype`` before handing it to a kernel), or stays in JAX with ``xp=jax.numpy``.
        """
        if xp is np:
            state = jax.tree.map(lambda a: np.asarray(a, np.float64), state)
        return std_mod.to_kernel(self.standardization, GibbsState(*state[:5]), xp)

    def data_for(self, y) -> LinearData:
        """The data pytree of this model with another response ``y`` (the user's units), in JAX.

        A pure JAX function of ``y`` (same designs, groups, priors and coordinates), so it can be
        ``jit``-ed and ``vmap``-ed over simulated data sets, as the Geweke and SBC tests do.
        """
        s = self.standardization
        y = (jnp.asarray(y, self.dtype) - s.y_shift) / s.y_scale
        X = jnp.asarray(self.kernel_X, self.dtype)
        if self.group_index is None:
            return sufficient_statistics(y, X, location_prior=self.data.location_prior, y_scale=s.y_scale)
        return sufficient_statistics(y, X, jnp.asarray(self.group_index), self.data.groups.U,
                                     self.num_groups, location_prior=self.data.location_prior,
                                     y_scale=s.y_scale)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_formula(
        cls,
        formula: str,
        data: pd.DataFrame,
        priors: Mapping | Priors | None = None,
        *,
        dtype=None,
        standardize: bool = True,
        family: str | None = None,
        trials=None,
    ) -> "Model":
        """Build a model from an lme4-style formula.

        The fixed part is parsed by formulaic (``C(...)``, interactions, ``0 +``). With a group term
        ``(1 | g)``, every fixed-effect column that is constant within the groups of ``g`` (the
        intercept, group-level predictors such as county uranium) becomes a column of ``U``
        (coefficients ``gamma``); the others form ``X`` (coefficients ``beta``). Without a group term
        all columns form ``X``: ``y ~ floor`` is complete pooling, ``y ~ 0 + C(county) + floor`` the
        indicator-variable model.

        Parameters
        ----------
        formula
            For example ``"log_radon ~ floor + log_uranium + (1 | county)"``.
        data
            A pandas DataFrame holding every column the formula names.
        priors
            ``None`` (flat coefficients, uniform scales: Gelman & Hill's default), a
            :class:`~mlgibbs.priors.Priors`, or a dict with keys among ``beta``, ``gamma``,
            ``sigma_y``, ``sigma_alpha``.
        dtype
            ``float32`` or ``float64``; default JAX's default float. The kernels and their states
            use it; draws are reported in float64 (:func:`~mlgibbs.sample`).
        standardize
            ``True`` (default): the kernels work in centred, whitened coordinates computed in
            float64 (:mod:`mlgibbs.models.standardize`), which keeps every draw exact in float32 for
            offset responses, uncentred and nearly collinear predictors; draws are mapped back on
            output. ``False``: the kernels see the user's coordinates unchanged (``model.data`` holds
            the raw statistics; for tests and for users who compose kernels by hand).
        family
            The outcome family (:mod:`mlgibbs.families`): ``"gaussian"`` (default), ``"bernoulli"``
            (0/1 response, logit link), ``"binomial"`` (successes of ``trials``, logit link),
            ``"probit"`` (0/1 response, or successes of ``trials``, probit link), ``"negbinomial"``
            (counts, NB2 with dispersion ``r``, log link) or ``"poisson"`` (counts, log link). Any family but the
            Gaussian builds a :class:`~mlgibbs.models.mixed.MixedModel` (names ``alpha_<g>``,
            ``sigma_<g>``, ... also for ``(1 | g)``); without a grouping term it is a plain GLM
            (``beta`` only).
        trials
            Binomial-type families: the column holding each row's number of trials, or one integer.

        Examples
        --------
        >>> import mlgibbs as mg
        >>> df = mg.datasets.load_radon()
        >>> model = mg.Model.from_formula("log_radon ~ floor + log_uranium + (1 | county)", df)
        >>> model.predictors, model.group_predictors
        (('floor',), ('Intercept', 'log_uranium'))
        """
        if not isinstance(data, pd.DataFrame):
            raise TypeError(f"data must be a pandas DataFrame, got {type(data).__name__}")
        glm = not get_family(family).gaussian
        if glm or _is_general(formula):
            from mlgibbs.models.mixed import MixedModel

            if not standardize:
                raise ValueError("standardize=False is only available for the Gaussian varying-intercept model")
            return MixedModel.from_formula(formula, data, priors, dtype=dtype, family=family, trials=trials)
        if trials is not None:
            raise ValueError("trials= is for the binomial-type families ('binomial', 'probit'), not 'gaussian'")
        parsed = parse_formula(formula)
        y, response, design, names, spec = fixed_design(parsed.fixed, data, return_spec=True)
        if not parsed.group_terms:
            model = cls._build(y, design, names, None, None, None, (), priors, dtype,
                               response=response, group_name=None, formula=formula, standardize=standardize)
            return dataclasses.replace(model, fixed_spec=spec)
        group_name = parsed.group_terms[0].group
        if group_name not in data.columns:
            raise ValueError(f"grouping column {group_name!r} is not in the data frame")
        codes, labels = encode_groups(data[group_name], group_name, len(y))
        constant = within_group_constant(design, codes, len(labels))
        X = design[:, ~constant]
        first_row = np.zeros(len(labels), dtype=np.int64)
        first_row[codes[::-1]] = np.arange(len(codes))[::-1]
        U = design[first_row][:, constant]
        x_names = [n for n, c in zip(names, constant) if not c]
        u_names = [n for n, c in zip(names, constant) if c]
        model = cls._build(y, X, x_names, codes, labels, U, u_names, priors, dtype,
                           response=response, group_name=group_name, formula=formula,
                           standardize=standardize)
        return dataclasses.replace(model, fixed_spec=spec)

    @classmethod
    def from_arrays(
        cls,
        y,
        X=None,
        group=None,
        U=None,
        *,
        priors: Mapping | Priors | None = None,
        intercept: bool = True,
        response: str = "y",
        predictors: Sequence[str] | None = None,
        group_name: str = "group",
        group_labels: Sequence | None = None,
        group_predictors: Sequence[str] | None = None,
        dtype=None,
        standardize: bool = True,
        terms=None,
        family: str | None = None,
        trials=None,
    ) -> "Model":
        """Build a model from arrays.

        With ``terms`` (a list of :class:`mlgibbs.Term`, one per grouping term: varying slopes,
        nested or crossed factors), the general multilevel model of
        :meth:`mlgibbs.models.mixed.MixedModel.from_arrays` instead; then ``X`` holds every fixed effect
        and ``group``/``U``/``group_*`` must not be given.

        Parameters
        ----------
        y
            Responses, shape ``(n,)``.
        X
            Individual-level predictors, shape ``(n, p)``, or a DataFrame (its columns name them);
            ``None`` for none. With ``group`` given, every column must vary within groups.
        group
            Group label of each observation, shape ``(n,)``; ``None`` for no grouping factor (then
            ``X`` should hold the intercept column, and ``U`` must be ``None``).
        U
            Group-level predictors, shape ``(J, q)``, row ``j`` for group ``group_labels[j]``; a
            DataFrame's index gives the labels and its columns the names.
        intercept
            With a grouping factor: prepend an ``Intercept`` column to ``U``.
        response, predictors, group_name, group_labels, group_predictors
            Names for the output (default ``y``, ``x0..``, ``group``, sorted labels, ``u0..``).
            Without ``group_labels`` and with ``U`` given, labels are ``U``'s index or ``0..J-1``.
        priors, dtype, standardize, family
            As in :meth:`from_formula`.
        trials
            Binomial-type families: the number of trials of each observation, ``(n,)``, or one integer.
        """
        glm = not get_family(family).gaussian
        if glm and terms is None and group is None:   # a GLM without grouping factors
            if U is not None or group_labels is not None or group_predictors is not None:
                raise ValueError("U=, group_labels= and group_predictors= need group=")
            terms = []
        if glm and terms is None:  # a varying intercept as a Term; U's columns repeated over the rows
            from mlgibbs.models.mixed import Term

            n_obs = np.shape(y)[0]
            X_obs, x_names = _matrix(X, n_obs, predictors, "x", "X")
            if U is not None and group_labels is None:
                group_labels = list(U.index) if isinstance(U, pd.DataFrame) else list(range(np.shape(U)[0]))
            codes, labels = encode_groups(group, group_name, n_obs, group_labels)
            U_m, u_names = _matrix(U, len(labels), group_predictors, "u", "U")
            X = np.column_stack([X_obs, U_m[codes]])
            predictors = [*x_names, *u_names]
            terms = [Term(np.asarray(labels, dtype=object)[codes], name=group_name)]
            group = U = group_labels = group_predictors = None
        if terms is not None:
            from mlgibbs.models.mixed import MixedModel

            if group is not None or U is not None or group_labels is not None or group_predictors is not None:
                raise ValueError("with terms=, pass every grouping factor as an mg.Term (not group=/U=)")
            if not standardize:
                raise ValueError("standardize=False is only available for the Gaussian varying-intercept model")
            return MixedModel.from_arrays(y, X, terms, priors=priors, intercept=intercept, response=response,
                                          predictors=predictors, dtype=dtype, family=family, trials=trials)
        if trials is not None:
            raise ValueError("trials= is for the binomial-type families ('binomial', 'probit'), not 'gaussian'")
        y = as_float_column(y, response)
        n = y.shape[0]
        X, x_names = _matrix(X, n, predictors, "x", "X")
        if group is None:
            if U is not None:
                raise ValueError("U (group-level predictors) was given without a grouping factor `group`")
            return cls._build(y, X, x_names, None, None, None, (), priors, dtype,
                              response=response, group_name=None, formula=None, standardize=standardize)
        if U is not None and group_labels is None:
            group_labels = list(U.index) if isinstance(U, pd.DataFrame) else list(range(np.shape(U)[0]))
        codes, labels = encode_groups(group, group_name, n, group_labels)
        U, u_names = _matrix(U, len(labels), group_predictors, "u", "U")
        if intercept:
            U = np.column_stack([np.ones(len(labels)), U])
            u_names = ["Intercept", *u_names]
        constant = within_group_constant(X, codes, len(labels))
        if constant.any():
            col = x_names[int(np.argmax(constant))]
            raise ValueError(
                f"predictor {col!r} in X does not vary within the groups of {group_name!r}; it is a "
                "group-level predictor: pass it as a column of U"
            )
        return cls._build(y, X, x_names, codes, labels, U, u_names, priors, dtype,
                          response=response, group_name=group_name, formula=None,
                          standardize=standardize)

    @classmethod
    def _build(cls, y, X, x_names, codes, labels, U, u_names, priors, dtype, *,
               response, group_name, formula, standardize: bool = True) -> "Model":
        dtype = _resolve_dtype(dtype)
        if group_name in ("chain", "draw", "predictor", "group_predictor", "obs_id"):
            raise ValueError(f"the grouping factor is called {group_name!r}, which is a dimension name of "
                             "the ArviZ output; rename the column (or pass another group_name)")
        n = y.shape[0]
        if n < 2:
            raise ValueError(f"{response!r} has {n} observation(s); at least 2 are needed")
        if codes is None:
            if X.shape[1] == 0:
                raise ValueError("the model has no predictors; use 'y ~ 1' for an intercept-only model")
            check_full_rank(X, x_names, "the design matrix X")
        else:
            counts = np.bincount(codes, minlength=len(labels))
            Xw = X - (np.stack([np.bincount(codes, weights=X[:, k], minlength=len(labels))
                                for k in range(X.shape[1])], axis=1) / counts[:, None])[codes] \
                if X.shape[1] else X
            check_full_rank(Xw, x_names, f"the individual-level predictors (within groups of {group_name!r})")
            check_full_rank(U, u_names, f"the group-level predictors U (one row per {group_name!r})")
            if U.shape[1] >= len(labels):
                raise ValueError(
                    f"{U.shape[1]} group-level predictors for {len(labels)} groups of {group_name!r}; "
                    "need fewer predictors than groups"
                )
        resolved = resolve_priors(priors, x_names, u_names)
        grouped = codes is not None
        num_groups = len(labels) if grouped else None
        p, q = X.shape[1], (U.shape[1] if grouped else 0)
        check_proper_posterior(resolved, n=n, p=p, q=q, num_groups=num_groups,
                               group_name=group_name, response=response)
        y_k, X_k, U_k, transform = std_mod.standardize(y, X, codes, U, rescale=standardize)
        stats = sufficient_statistics(y_k, X_k, codes, U_k, num_groups, xp=np)
        dof = n - p - (num_groups or 0)
        total = float(np.sum((y - y.mean()) ** 2)) / transform.y_scale**2
        exact = check_residual_variation(float(stats.rss_within), total, dof, resolved.sigma_y,
                                         response=response, group_name=group_name)
        sigma_hat = math.sqrt(float(stats.rss_within) / dof) if dof > 0 and not exact else 0.0
        magnitudes = [np.abs(stats.beta_within) * math.sqrt(n)]
        if grouped:
            magnitudes.append(np.abs(stats.groups.y_mean) * np.sqrt(stats.groups.counts))
        check_resolution(sigma_hat, np.concatenate(magnitudes), dtype, response=response)
        mean, precision, log_normalizer = _coefficient_prior_arrays(resolved, p, q if grouped else 0)
        k_mean, k_precision = std_mod.location_prior(transform, mean, precision, grouped)
        stats = stats._replace(
            location_prior=LocationPrior(k_mean, k_precision, np.asarray(log_normalizer)),
            y_scale=np.asarray(transform.y_scale),
        )
        data = to_device(stats, dtype)
        kernel_priors = resolved._replace(
            beta=Flat(), gamma=Flat(),
            sigma_y=scale_prior(resolved.sigma_y, transform.y_scale),
            sigma_alpha=scale_prior(resolved.sigma_alpha, transform.y_scale),
        )
        return cls(
            data=data,
            priors=resolved,
            y=y,
            X=X,
            group_index=codes,
            response=response,
            predictors=tuple(x_names),
            group_name=group_name,
            group_labels=labels,
            group_predictors=tuple(u_names),
            formula=formula,
            dtype=dtype,
            U=U,
            kernel_y=y_k,
            kernel_X=X_k,
            standardization=transform,
            kernel_priors=kernel_priors,
        )

    def __repr__(self) -> str:
        lines = [f"Model({self.formula or 'from arrays'!s})",
                 f"  {self.num_obs} observations of {self.response!r}",
                 f"  beta:  {list(self.predictors)}"]
        if self.group_name is not None:
            lines += [f"  alpha: {self.num_groups} groups of {self.group_name!r}",
                      f"  gamma: {list(self.group_predictors)}"]
        lines.append(f"  priors: {self.priors}")
        return "\n".join(lines)


def _is_general(formula) -> bool:
    """Whether ``formula`` needs the general multilevel model (anything but at most one ``(1 | g)``)."""
    if not isinstance(formula, str) or "|" not in formula:
        return False
    from mlgibbs.models.terms import parse_mixed_formula

    terms = parse_mixed_formula(formula).terms
    if len(terms) != 1:
        return True
    term = terms[0]
    return len(term.factor) != 1 or term.expr.replace(" ", "") not in ("1", "1+0", "0+1")


def _coefficient_prior_arrays(priors: Priors, p: int, q: int):
    """Mean, (diagonal) precision and log normaliser of the independent priors on ``(beta, gamma)``."""
    locs, scales = [], []
    for prior, size in ((priors.beta, p), (priors.gamma, q)):
        normal = prior.as_normal()
        locs.append(np.broadcast_to(np.asarray(normal.loc, dtype=float), (size,)))
        scales.append(np.broadcast_to(np.asarray(normal.scale, dtype=float), (size,)))
    loc, scale = np.concatenate(locs), np.concatenate(scales)
    proper = np.isfinite(scale)
    precision = np.diag(np.where(proper, 1.0 / np.where(proper, scale, 1.0) ** 2, 0.0))
    mean = np.where(proper, loc, 0.0)
    log_normalizer = float(np.sum(-np.log(scale[proper]) - 0.5 * math.log(2 * math.pi)))
    return mean, precision, log_normalizer


def _matrix(values, rows: int, names, prefix: str, arg: str) -> tuple[np.ndarray, list[str]]:
    """A float64 ``(rows, k)`` matrix with column names, each column checked."""
    if values is None:
        return np.zeros((rows, 0)), []
    if isinstance(values, pd.DataFrame):
        cols = [as_float_column(values[c], str(c), rows) for c in values.columns]
        names = [str(c) for c in values.columns] if names is None else list(names)
        mat = np.column_stack(cols) if cols else np.zeros((rows, 0))
    else:
        arr = np.asarray(values)
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2:
            raise ValueError(f"{arg} must be a 2-D array, got shape {arr.shape}")
        if arr.shape[0] != rows:
            raise ValueError(f"{arg} has {arr.shape[0]} rows, expected {rows}")
        names = [f"{prefix}{k}" for k in range(arr.shape[1])] if names is None else list(names)
        if len(names) != arr.shape[1]:
            raise ValueError(f"{len(names)} names given for the {arr.shape[1]} columns of {arg}")
        cols = [as_float_column(arr[:, k], names[k], rows) for k in range(arr.shape[1])]
        mat = np.column_stack(cols) if cols else np.zeros((rows, 0))
    if len(names) != mat.shape[1]:
        raise ValueError(f"{len(names)} names given for the {mat.shape[1]} columns of {arg}")
    return mat, names

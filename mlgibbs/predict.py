r"""Posterior predictions for new rows: expected values and new observations, known and new groups.

For each posterior draw ``s`` and each new row ``i`` with fixed-effect columns ``X_i``, varying
coefficients ``Z_{f,i}`` and group ``g = g_f(i)`` of every factor ``f``:

.. math::

    \mu_i^{(s)} = X_i\beta^{(s)} + \sum_f Z_{f,i}\, b_f^{(s)}[g],\qquad
    \tilde y_i^{(s)} \sim \mathcal N\big(\mu_i^{(s)}, \sigma_y^{(s)2}\big),

where ``b_f[g]`` is the posterior draw of a group seen in the data, and for a *new level* a draw from
the fitted population distribution, ``b_f[g] ~ N(e U_{f,g} gamma_f, Sigma_f)`` with ``U_{f,g}`` the
new group's group-level predictors read from its rows (one draw per new level and posterior draw,
shared by the rows of that level): lme4's ``allow.new.levels`` and brms's
``sample_new_levels = "gaussian"``. ``new_levels="error"`` refuses new levels instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlgibbs._lazy import pandas as pd

__all__ = ["predict"]


def _posterior(idata, name):
    post = idata.posterior
    if name not in post:
        raise ValueError(f"the posterior lacks {name!r}: predict needs every variable of the model "
                         "(sample without var_names)")
    return np.asarray(post[name].values, np.float64)


def _level_codes(values, labels, name, new_levels, what):
    """Codes of ``values`` among the fitted ``labels`` (-1 - k for the k-th new level) and the new labels."""
    lookup = {str(label): j for j, label in enumerate(labels)}
    keys = [str(v) for v in values]
    codes = np.fromiter((lookup.get(k, -1) for k in keys), dtype=np.int64, count=len(keys))
    unknown = codes < 0
    new = []
    if unknown.any():
        if new_levels == "error":
            shown = sorted({keys[i] for i in np.flatnonzero(unknown)})[:5]
            raise ValueError(f"{what} has level(s) of {name!r} the model was not fitted with: "
                             f"{', '.join(shown)}; pass new_levels='sample' to draw their effects from "
                             "the fitted population distribution")
        new = list(dict.fromkeys(keys[i] for i in np.flatnonzero(unknown)))
        index = {k: j for j, k in enumerate(new)}
        codes[unknown] = [-1 - index[keys[i]] for i in np.flatnonzero(unknown)]
    return codes, new


def _factor_values(data, columns, what):
    """The labels of a (possibly interaction) factor on new rows, as :func:`mlgibbs.models.terms.factor_codes` writes them."""
    from mlgibbs.models.terms import _require_columns, _require_complete

    _require_columns(data, columns, f"a grouping factor, in {what}")
    for c in columns:
        _require_complete(data, c, what)
    if len(columns) == 1:
        return data[columns[0]].tolist()
    parts = [data[c].astype(str).to_numpy() for c in columns]
    return [":".join(p) for p in zip(*parts)]


def _new_trials(model, newdata, trials) -> np.ndarray:
    """The trials of the new rows (positive integers), from ``trials=`` or the model's trials column."""
    from mlgibbs.models.terms import _require_columns, _require_complete

    if trials is None:
        column = getattr(model, "trials_column", None)
        trials = column if column is not None and column in newdata.columns else 1
    if isinstance(trials, str):
        _require_columns(newdata, [trials], "the trials column, in newdata")
        _require_complete(newdata, trials, "newdata")
        values = newdata[trials].to_numpy(np.float64)
    else:
        values = np.broadcast_to(np.asarray(trials, np.float64), (len(newdata),))
    if np.any(values < 1) or np.any(values != np.round(values)):
        raise ValueError(f"trials must be positive integers; got {values[(values < 1) | (values != np.round(values))][:5]}")
    return values.astype(np.int64)


class _Spec:
    """What predict needs of a model, for both model classes."""

    def __init__(self, model):
        from mlgibbs.models.mixed import MixedModel

        self.response = model.response
        if isinstance(model, MixedModel):
            self.fixed_names = list(model.fixed_names)
            self.owner = list(model.fixed_owner)
            self.factors = []
            for f, factor in enumerate(model.factors):
                self.factors.append(dict(
                    name=factor.name, columns=list(factor.columns), labels=list(factor.labels),
                    exprs=list(factor.exprs), texts=list(factor.terms), coef_names=list(factor.coef_names),
                    intercept=model.structure.intercepts[f], u_names=list(model.group_predictors[f]),
                    alpha=f"alpha_{factor.name}", gamma=f"gamma_{factor.name}", sigma=f"sigma_{factor.name}",
                    corr=f"corr_{factor.name}"))
            self.predictors = list(model.predictors)
        else:
            self.predictors = list(model.predictors)
            u_names = list(model.group_predictors)
            self.fixed_names = None  # read from the spec
            self.u_names = u_names
            self.factors = []
            if model.group_name is not None:
                self.factors.append(dict(
                    name=model.group_name, columns=[model.group_name], labels=list(model.group_labels),
                    exprs=["1"], texts=[f"(1 | {model.group_name})"], coef_names=["Intercept"], intercept=0,
                    u_names=u_names, alpha="alpha", gamma="gamma", sigma="sigma_alpha", corr=None))
        self.spec = model.fixed_spec


def predict(idata, model, newdata, *, new_levels: str = "sample", rng_key: Any = 0,
            observations: bool = True, trials=None):
    """Posterior draws of the expected value and of new observations for the rows of ``newdata``.

    Parameters
    ----------
    idata
        The output of :func:`mlgibbs.sample` for ``model`` (every variable stored).
    model
        The :class:`~mlgibbs.Model` (or multilevel model) built from a formula.
    newdata
        A pandas DataFrame with every column the formula's right-hand side and grouping factors use
        (the response is not needed). Its index labels the predictions.
    new_levels
        ``"sample"`` (default): a group not seen in the data gets effects drawn from the fitted
        population distribution (module docstring); ``"error"``: a ValueError naming the factor.
    rng_key
        Seed (int) or NumPy Generator for the new levels' effects and the new observations.
    observations
        Also draw new observations (``False``: only the expected values).
    trials
        Binomial-type families: the number of trials of each new row (a column name of ``newdata`` or an
        integer); default the model's trials column when ``newdata`` has it, else 1.

    Returns
    -------
    InferenceData (ArviZ 0.x) or DataTree (1.x)
        Group ``predictions`` with ``mu`` (the expected value) and, with ``observations``, the
        response's name (new observations), each ``(chain, draw, obs_id)`` with ``obs_id`` the index
        of ``newdata``. For the Poisson and the negative binomial ``mu`` is the mean count ``e^eta``, and
        new counts are drawn with it (and the posterior's ``r``). For a binomial-type family ``mu`` is the probability of a success (the inverse
        link of the linear predictor), ``eta`` the linear predictor, and the new observations are counts
        of successes out of ``trials``.

    Examples
    --------
    >>> import mlgibbs as mg
    >>> df = mg.datasets.load_sleepstudy()
    >>> model = mg.Model.from_formula("Reaction ~ Days + (1 + Days | Subject)", df)
    >>> idata = mg.sample(0, model)                                         # doctest: +SKIP
    >>> new = pd.DataFrame({"Days": [0, 9], "Subject": [308, "new"]})
    >>> mg.predict(idata, model, new).predictions["mu"]                     # doctest: +SKIP
    """
    import xarray as xr

    from mlgibbs.arviz import make_inference_data
    from mlgibbs.models.formula import new_fixed_design
    from mlgibbs.models.terms import term_design

    if new_levels not in ("sample", "error"):
        raise ValueError(f"new_levels must be 'sample' or 'error', got {new_levels!r}")
    if not isinstance(newdata, pd.DataFrame):
        raise TypeError(f"newdata must be a pandas DataFrame, got {type(newdata).__name__}")
    spec = _Spec(model)
    if spec.spec is None:
        raise ValueError("predict needs a model built with Model.from_formula (its formula evaluates the "
                         "new rows)")
    rng = rng_key if isinstance(rng_key, np.random.Generator) else np.random.default_rng(rng_key)
    m = len(newdata)
    names = [str(c) for c in spec.spec.column_names] if hasattr(spec.spec, "column_names") else None
    design = new_fixed_design(spec.spec, newdata, names, what="newdata")
    names = list(names)
    if spec.fixed_names is not None:
        owner = spec.owner
    else:  # the varying-intercept model: X columns are its predictors, the rest its group predictors
        owner = [-1 if n in spec.predictors else 0 for n in names]
    X = design[:, [j for j, o in enumerate(owner) if o < 0]]
    beta = _posterior(idata, "beta") if X.shape[1] else None
    family = getattr(model, "family", None)
    gaussian = family is None or family.gaussian
    if gaussian:
        sigma_y = _posterior(idata, "sigma_y")
        C, S = sigma_y.shape
    else:
        C, S = _posterior(idata, spec.factors[0]["sigma"] if spec.factors else "beta").shape[:2]
    mu = np.zeros((C, S, m)) if beta is None else beta @ X.T
    for f, factor in enumerate(spec.factors):
        values = _factor_values(newdata, factor["columns"], "newdata")
        codes, new = _level_codes(values, factor["labels"], factor["name"], new_levels, "newdata")
        Z = np.column_stack([term_design(e, newdata, term_text=t)[0] for e, t in zip(factor["exprs"],
                                                                                   factor["texts"])])
        alpha = _posterior(idata, factor["alpha"])
        if alpha.ndim == 3:
            alpha = alpha[..., None]
        d = alpha.shape[-1]
        known = codes >= 0
        b_rows = np.zeros((C, S, m, d))
        b_rows[:, :, known] = alpha[:, :, codes[known]]
        if new:
            sd = _posterior(idata, factor["sigma"])
            sd = sd.reshape(C, S, d)
            if factor["corr"] is not None and factor["corr"] in idata.posterior:
                corr = _posterior(idata, factor["corr"])
            else:
                corr = np.broadcast_to(np.eye(d), (C, S, d, d))
            cov = corr * sd[..., :, None] * sd[..., None, :]
            chol = np.linalg.cholesky(cov)
            draws = np.einsum("csij,cskj->cski", chol, rng.normal(size=(C, S, len(new), d)))
            k = factor["intercept"]
            u_cols = [j for j, o in enumerate(owner) if o == f]
            if u_cols and k >= 0:
                gamma = _posterior(idata, factor["gamma"])
                rows_new = np.flatnonzero(~known)
                first = {}
                for i in rows_new:
                    first.setdefault(-1 - codes[i], i)
                U_new = design[[first[j] for j in range(len(new))]][:, u_cols]
                draws[..., k] += gamma @ U_new.T
            b_rows[:, :, ~known] = draws[:, :, -1 - codes[~known]]
        mu = mu + np.einsum("csid,id->csi", b_rows, Z)
    obs = {"obs_id": np.asarray(newdata.index)}
    base = {"chain": np.arange(C), "draw": np.arange(S)}
    dims = ("chain", "draw", "obs_id")
    if gaussian:
        variables = {"mu": (dims, mu)}
        if observations:
            variables[spec.response] = (dims, mu + sigma_y[..., None] * rng.normal(size=mu.shape))
    elif family.link == "log":  # counts: mean e^eta; new counts Poisson, the negative binomial's by the
        mean = np.exp(mu)       # gamma mixture of Poissons with each draw's r
        variables = {"mu": (dims, mean), "eta": (dims, mu)}
        if observations:
            rate = mean
            if family.dispersion:
                r = _posterior(idata, "r")[..., None]
                rate = rng.gamma(np.broadcast_to(r, mean.shape), mean / r)
            variables[spec.response] = (dims, rng.poisson(rate).astype(np.float64))
    else:
        from scipy.special import expit, ndtr

        prob = expit(mu) if family.link == "logit" else ndtr(mu)
        variables = {"mu": (dims, prob), "eta": (dims, mu)}
        if observations:
            counts = _new_trials(model, newdata, trials)
            variables[spec.response] = (dims, rng.binomial(counts, prob).astype(np.float64))
    return make_inference_data({"predictions": xr.Dataset(variables, coords={**base, **obs},
                                                          attrs={"inference_library": "mlgibbs"})})

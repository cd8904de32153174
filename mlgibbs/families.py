r"""Outcome families of the multilevel model: the likelihood of ``y`` given the linear predictor ``eta``.

Every model of :class:`~mlgibbs.models.mixed.MixedModel` has the linear predictor

.. math::

    \eta_i = X_i \beta + \sum_f Z_{f,i}\, b_f[g_f(i)],

and a family says how ``y_i`` depends on it:

============  ========  ==========================================================  ===============================
family        link      likelihood                                                  augmentation (kernel)
============  ========  ==========================================================  ===============================
gaussian      identity  ``N(y_i | eta_i, sigma_y^2)``                               none (conjugate)
bernoulli     logit     ``Bernoulli(y_i | logistic(eta_i))``, ``y`` in {0, 1}        Polya-Gamma ``PG(1, eta_i)``
binomial      logit     ``Binomial(y_i | n_i, logistic(eta_i))`` (``trials=``)        Polya-Gamma ``PG(n_i, eta_i)``
probit        probit    ``Binomial(y_i | n_i, Phi(eta_i))`` (``n_i = 1`` default)       Albert & Chib latent normals
negbinomial   log       ``NB(y_i | mu_i = e^{eta_i}, r)``, ``Var = mu + mu^2 / r``        Polya-Gamma ``PG(y_i + r, eta_i -
                                                                                        log r)``; ``r`` by slice sampling
poisson       log       ``Poisson(y_i | e^{eta_i})``                                 none: Metropolis-Hastings with the
                                                                                        IWLS Gaussian proposal
============  ========  ==========================================================  ===============================

The Poisson has no conjugate augmentation; its location blocks are drawn by Metropolis-Hastings with
the Gaussian of one iteratively-weighted-least-squares step as proposal (Gamerman 1997), exact
(:mod:`mlgibbs.conditionals.poisson`).

The negative binomial is NB2 with dispersion (shape) ``r`` (brms's ``shape``, lme4's ``theta``, NumPyro's
``concentration``): ``p(y) = Gamma(y + r) / (Gamma(r) y!) (r / (r + mu))^r (mu / (r + mu))^y``. As a function
of ``psi = eta - log r`` it is ``e^{psi y} / (1 + e^psi)^{y + r}``, a logistic likelihood with ``y + r``
"trials" (Polson, Scott & Windle 2013, section 3.2). Its default prior is ``r ~ Gamma(0.01, 0.01)``
(brms's); ``priors={"r": ...}`` takes any object with ``log_prob(r)``.

Given the augmentation variables every non-Gaussian family is a weighted Gaussian regression in the
locations (:mod:`mlgibbs.conditionals.augmentation`), so the same exact location blocks draw them. The
families other than ``gaussian`` have no ``sigma_y``.

The response is checked at build time: a Bernoulli response must hold only 0 and 1 (or booleans),
binomial successes must be integers in ``[0, n_i]``, trials positive integers; every error names the
column.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln, log_ndtr, ndtr

__all__ = ["Family", "FAMILIES", "get_family", "check_response", "check_separation", "log_prob",
           "negbinomial_log_prob", "inverse_link", "draw_outcome"]


class Family(NamedTuple):
    """An outcome family (static, hashable): its ``name`` and ``link``, and whether it has trials."""

    name: str
    link: str
    counts: bool   # binomial-type responses: successes out of trials

    @property
    def gaussian(self) -> bool:
        return self.name == "gaussian"

    @property
    def dispersion(self) -> bool:
        """Whether the family has a dispersion parameter ``r`` (the negative binomial)."""
        return self.name == "negbinomial"


FAMILIES = {
    "gaussian": Family("gaussian", "identity", False),
    "bernoulli": Family("bernoulli", "logit", True),
    "binomial": Family("binomial", "logit", True),
    "probit": Family("probit", "probit", True),
    "negbinomial": Family("negbinomial", "log", False),
    "poisson": Family("poisson", "log", False),
}


def get_family(family) -> Family:
    """The :class:`Family` of a name (``"gaussian"``, ``"bernoulli"``, ``"binomial"``, ``"probit"``,
    ``"negbinomial"``, ``"poisson"``)."""
    if isinstance(family, Family):
        return family
    if family is None:
        return FAMILIES["gaussian"]
    if not isinstance(family, str) or family.lower() not in FAMILIES:
        extra = ""
        if isinstance(family, str) and family.lower() in ("logistic", "logit"):
            extra = " (use 'bernoulli' or 'binomial' for the logit link)"
        elif isinstance(family, str) and family.lower() in ("negative_binomial", "negativebinomial", "nb", "nb2"):
            extra = " (the negative binomial is 'negbinomial')"
        raise ValueError(f"family={family!r} is not available{extra}; expected one of {sorted(FAMILIES)}")
    return FAMILIES[family.lower()]


def check_response(family: Family, y: np.ndarray, trials, response: str, data=None):
    """Check and return ``(y, trials)`` as float64 arrays for ``family``.

    ``trials``: ``None`` (Bernoulli: 1 each), an integer, a column name of ``data`` or an array.
    Raises ``ValueError`` naming ``response`` or the trials column.
    """
    y = np.asarray(y, dtype=np.float64)
    n = y.shape[0]
    if family.gaussian or not family.counts:
        if trials is not None:
            raise ValueError(f"trials= is for the binomial-type families ('binomial', 'probit'), not "
                             f"{family.name!r}")
        if family.gaussian:
            return y, None
        bad = ~np.isfinite(y) | (y < 0) | (y != np.round(y))
        if bad.any():
            rows = np.flatnonzero(bad)[:5].tolist()
            raise ValueError(f"the response {response!r} of family {family.name!r} must hold non-negative integer "
                             f"counts; rows {rows} hold {y[bad][:5].tolist()}")
        if np.all(y == 0):
            raise ValueError(f"the response {response!r} is all zeros: the likelihood keeps growing as the "
                             "intercept goes to -infinity, so under a flat prior the posterior is improper")
        return y, np.ones(n)
    name = "trials"
    if trials is None:
        if family.name == "binomial":
            raise ValueError("family='binomial' needs trials=: the column holding the number of trials of each "
                             "row (or one integer for every row)")
        m = np.ones(n)
    elif isinstance(trials, str):
        if data is None or trials not in getattr(data, "columns", ()):
            raise ValueError(f"trials column {trials!r} is not in the data frame")
        name = trials
        column = data[trials]
        if column.isna().any():
            raise ValueError(f"trials column {trials!r} has {int(column.isna().sum())} missing value(s); nothing is "
                             "dropped silently")
        m = np.asarray(column, dtype=np.float64)
    else:
        m = np.broadcast_to(np.asarray(trials, dtype=np.float64), (n,)).copy()
    if family.name == "bernoulli" and np.any(m != 1):
        raise ValueError("family='bernoulli' has one trial per row; use family='binomial' with trials=")
    if m.shape != (n,):
        raise ValueError(f"{name} has {m.shape[0] if m.ndim else 1} values for {n} rows of {response!r}")
    bad = ~np.isfinite(m) | (m < 1) | (m != np.round(m))
    if bad.any():
        rows = np.flatnonzero(bad)[:5].tolist()
        raise ValueError(f"{name} must hold positive integers; rows {rows} hold {m[bad][:5].tolist()}")
    bad = ~np.isfinite(y) | (y < 0) | (y != np.round(y))
    if bad.any():
        rows = np.flatnonzero(bad)[:5].tolist()
        what = "0 or 1" if family.name in ("bernoulli",) or (trials is None) else "integer counts of successes"
        raise ValueError(f"the response {response!r} of family {family.name!r} must hold {what}; rows {rows} hold "
                         f"{y[bad][:5].tolist()}")
    over = y > m
    if over.any():
        rows = np.flatnonzero(over)[:5].tolist()
        what = ("0 or 1: a Bernoulli response" if trials is None
                else f"counts of successes at most {name}")
        raise ValueError(f"the response {response!r} must hold {what}; rows {rows} hold {y[over][:5].tolist()}"
                         + (f" > {name} {m[over][:5].tolist()}" if trials is not None else ""))
    if np.all(y == 0) or np.all(y == m):
        raise ValueError(f"the response {response!r} is {'all failures' if np.all(y == 0) else 'all successes'}: "
                         "the likelihood keeps growing as the intercept goes to "
                         f"{'-' if np.all(y == 0) else '+'}infinity, so under a flat prior the posterior is improper")
    return y, m


def inverse_link(family: Family, eta):
    """The mean of one trial: ``logistic(eta)``, ``Phi(eta)``, ``exp(eta)`` or ``eta`` (Gaussian)."""
    if family.link == "logit":
        return jax.nn.sigmoid(eta)
    if family.link == "probit":
        return ndtr(eta)
    if family.link == "log":
        return jnp.exp(eta)
    return eta


def negbinomial_log_prob(y, eta, r):
    """``log NB(y | mu = e^eta, r)`` (NB2), stable for large ``eta`` and ``r``."""
    log_total = jnp.logaddexp(jnp.log(r), eta)                       # log(r + mu)
    return (gammaln(y + r) - gammaln(r) - gammaln(y + 1.0)
            + r * (jnp.log(r) - log_total) + y * (eta - log_total))


def log_prob(family: Family, y, trials, eta, dispersion=None):
    """Pointwise ``log p(y_i | eta_i)`` of a non-Gaussian family (with the binomial coefficient or ``y!``);
    ``dispersion`` is the negative binomial's ``r``."""
    if family.name == "negbinomial":
        return negbinomial_log_prob(y, eta, dispersion)
    if family.name == "poisson":
        return y * eta - jnp.exp(eta) - gammaln(y + 1.0)
    if family.link == "logit":
        log_p, log_q = jax.nn.log_sigmoid(eta), jax.nn.log_sigmoid(-eta)
    elif family.link == "probit":
        log_p, log_q = log_ndtr(eta), log_ndtr(-eta)
    else:
        raise ValueError(f"log_prob is for the binomial-type families, not {family.name!r}")
    choose = gammaln(trials + 1.0) - gammaln(y + 1.0) - gammaln(trials - y + 1.0)
    return choose + y * log_p + (trials - y) * log_q


def draw_outcome(family: Family, rng_key, eta, trials, dispersion=None):
    """New outcomes ``y ~ Binomial(trials, inverse_link(eta))`` (float, the shape of ``eta``); the negative
    binomial's as a gamma mixture of Poissons, ``y ~ Poisson(lambda)``, ``lambda ~ Gamma(r, rate r / mu)``; the
    Poisson's ``y ~ Poisson(e^eta)``."""
    if family.name == "negbinomial":
        key_g, key_p = jax.random.split(rng_key)
        r = jnp.asarray(dispersion, eta.dtype)
        lam = jax.random.gamma(key_g, jnp.broadcast_to(r, eta.shape), dtype=eta.dtype) * jnp.exp(eta) / r
        return jax.random.poisson(key_p, lam, eta.shape).astype(eta.dtype)
    if family.name == "poisson":
        return jax.random.poisson(rng_key, jnp.exp(eta), eta.shape).astype(eta.dtype)
    prob = inverse_link(family, eta)
    trials = jnp.broadcast_to(jnp.asarray(trials, eta.dtype), eta.shape)
    return jax.random.binomial(rng_key, trials, prob).astype(eta.dtype)



def check_separation(family: Family, design: np.ndarray, names, y: np.ndarray, trials, response: str) -> None:
    r"""Raise a ``ValueError`` when the data are (quasi-)completely *separated* along the flat coefficients.

    ``design`` holds the columns of the coefficients with a flat prior (``names``), one row per observation.
    A direction ``v`` of those coefficients along which the likelihood never decreases makes their
    posterior improper under the flat prior, whatever the group effects (the likelihood, integrated over
    them, is then non-decreasing in ``t`` along ``beta + t v`` and bounded away from 0): for the
    binomial-type families ``x_i v >= 0`` where every trial succeeded, ``<= 0`` where every trial failed,
    ``= 0`` elsewhere (Albert & Anderson 1984); for counts (log link) ``x_i v <= 0`` where the count is 0 and
    ``= 0`` elsewhere (a coefficient that can go to minus infinity on the zeros). Detected as Konis (2007)
    does, by the linear program ``max sum_i s_i x_i v`` under those constraints and ``|v_j| <= 1``
    (``s_i = +1`` / ``-1`` on the rows with an inequality): a positive optimum is a direction of
    separation (the maximum likelihood estimate does not exist either: glm's "fitted probabilities
    numerically 0 or 1"). The rows are merged first (the program has one constraint per distinct row).
    """
    from scipy.optimize import linprog

    if family.gaussian or design.shape[1] == 0:
        return
    y = np.asarray(y, np.float64)
    if family.link == "log":
        sign = np.where(y == 0, -1.0, 0.0)
    else:
        m = np.ones_like(y) if trials is None else np.asarray(trials, np.float64)
        sign = np.where(y == 0, -1.0, np.where(y == m, 1.0, 0.0))
    rows, index = np.unique(np.column_stack([design, sign]), axis=0, return_inverse=True)
    X, s = rows[:, :-1], rows[:, -1]
    scale = np.max(np.abs(X), axis=0)
    scale[scale == 0] = 1.0
    X = X / scale
    strict = s != 0
    c = -np.sum(s[strict, None] * X[strict], axis=0)
    result = linprog(c, A_ub=-(s[strict, None] * X[strict]) if strict.any() else None,
                     b_ub=np.zeros(int(strict.sum())) if strict.any() else None,
                     A_eq=X[~strict] if (~strict).any() else None,
                     b_eq=np.zeros(int((~strict).sum())) if (~strict).any() else None,
                     bounds=[(-1.0, 1.0)] * X.shape[1], method="highs")
    if result.status != 0 or -result.fun <= 1e-7 * max(1.0, float(np.abs(c).sum())):
        return
    v = result.x
    involved = [str(names[j]) for j in np.flatnonzero(np.abs(v) > 1e-6)]
    moved = np.abs(X @ v) > 1e-9
    ys = sorted({float(value) for value in y[moved[index.reshape(-1)]]})[:5]
    what = ("the counts are 0 wherever the combination is non-zero" if family.link == "log"
            else "every trial succeeds on one side of 0 and fails on the other")
    raise ValueError(
        f"the data are separated: along a combination of the coefficients {involved} (flat priors) the "
        f"likelihood of {response!r} never decreases ({what}; responses there: {ys}), so these coefficients "
        "go to +-infinity and under flat priors the posterior is improper (the maximum likelihood estimate "
        "does not exist either). Give them a proper prior, e.g. priors={'beta': mg.priors.Normal(0, 2.5)}, "
        "or remove the predictor that separates the data")

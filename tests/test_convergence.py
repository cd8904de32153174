"""mlgibbs.convergence against ArviZ's own R-hat and bulk / tail ESS, scalar by scalar.

Runs on ArviZ 0.x and 1.x. Tolerances, and why:

* R-hat, ``RTOL_SAME = 1e-12``: the ranks, the normal scores (the same ``ndtri`` of the same
  doubles) and the chain means and variances (``np.mean``/``np.var`` arithmetic) are ArviZ's; in
  practice the values are bit for bit equal.
* ESS, ``RTOL_ESS = 1e-10``: the Geyer rules are ArviZ's, but the autocovariances are exact lag sums
  (or an FFT with the power spectra summed over chains) where ArviZ takes one FFT per chain; the
  rounding differs by about 1e-14 relative.
* float32 draws: we compute in float64, so the reference is ArviZ on the same draws cast to float64
  (tolerances above). Against ArviZ on the float32 draws themselves, R-hat needs ``RTOL_FLOAT32_FOLD
  = 1e-4``: ArviZ takes the median and folds ``|x - median|`` in float32, and the rounding reorders a
  few nearly equal folded draws (observed: up to 7e-6). With SciPy >= 1.18 (the ArviZ 1.x stack)
  ``rankdata`` returns float32 ranks for float32 draws, so ArviZ's normal scores carry float32
  rounding (about 1e-7): bulk ESS and R-hat then need ``RTOL_FLOAT32_RANKS = 1e-5`` (observed 2e-7).
* ArviZ 1.x's tail ESS defaults to ``prob=0.89`` (quantiles 0.11 and 0.89); the reference passes
  ``prob=(0.05, 0.95)``, ArviZ 0.x's default and ours. ArviZ 1.x takes quantiles with
  ``np.quantile`` rather than ``mquantiles``; the two differ in the last bit, which matters only when
  tied draws sit at the quantile (``test_tail_quantile_is_mquantiles``) or with infinite draws.
"""

from __future__ import annotations

import logging
import warnings

import arviz as az
import numpy as np
import pytest
import scipy
import scipy.stats
import xarray as xr
from numpy.testing import assert_allclose, assert_array_equal
from scipy.stats.mstats import mquantiles

from mlgibbs.convergence import Diagnostics, diagnostics, ess_bulk, ess_tail, rhat

ARVIZ_1 = int(az.__version__.split(".")[0]) >= 1
RANKS_IN_FLOAT32 = scipy.stats.rankdata(np.zeros(2, np.float32)).dtype == np.float32

RTOL_SAME = 1e-12
RTOL_ESS = 1e-10
RTOL_FLOAT32_FOLD = 1e-4
RTOL_FLOAT32_RANKS = 1e-5

logging.getLogger("arviz").setLevel(logging.ERROR)  # "Shape validation failed" for the short cases


def arviz_reference(draws: np.ndarray) -> Diagnostics:
    """``az.rhat``, ``az.ess(method="bulk")`` and ``az.ess(method="tail")`` (0.05, 0.95) per scalar."""
    dataset = xr.Dataset({"x": (("chain", "draw", "k"), draws)})
    tail_kwargs = {"prob": (0.05, 0.95)} if ARVIZ_1 else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Diagnostics(
            az.rhat(dataset)["x"].values,
            az.ess(dataset, method="bulk")["x"].values,
            az.ess(dataset, method="tail", **tail_kwargs)["x"].values,
        )


def ar1(rng, rho: float, shape: tuple[int, int, int]) -> np.ndarray:
    """Stationary AR(1) chains with unit innovations, (chain, draw, K)."""
    noise = rng.normal(size=shape)
    out = np.empty(shape)
    out[:, 0] = noise[:, 0] / np.sqrt(1 - rho**2)
    for i in range(1, shape[1]):
        out[:, i] = rho * out[:, i - 1] + noise[:, i]
    return out


def metropolis_like(rng, shape: tuple[int, int, int]) -> np.ndarray:
    """Random-walk chains that repeat each value for a random run (rejected proposals)."""
    steps = rng.normal(scale=0.5, size=shape) * (rng.random(shape) < 0.3)
    return np.cumsum(steps, axis=1) * 0.3 + rng.normal(size=shape[2])


def _cases() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(20240611)
    eps = np.finfo(float).eps
    with_constant = rng.normal(size=(4, 300, 3))
    with_constant[:, :, 1] = 2.5
    stuck = rng.normal(size=(4, 400, 2))
    stuck[3] = 0.3  # one chain constant
    return {
        "iid normal": rng.normal(size=(4, 1000, 6)),
        "AR(1) 0.5": ar1(rng, 0.5, (4, 1000, 4)),
        "AR(1) 0.9": ar1(rng, 0.9, (4, 1000, 4)),
        "AR(1) 0.99": ar1(rng, 0.99, (4, 1000, 4)),  # Geyer runs past the direct lags: FFT
        "AR(1) -0.7": ar1(rng, -0.7, (4, 1000, 3)),  # antithetic: the 1 / log10(S) floor on tau
        "shifted means": rng.normal(size=(4, 500, 4)) + np.array([0.0, 0.0, 0.5, 3.0])[:, None, None],
        "Cauchy": rng.standard_cauchy(size=(4, 500, 4)),
        "Poisson integers": rng.poisson(2.0, size=(4, 500, 4)).astype(float),
        "Bernoulli 3%": (rng.random(size=(4, 400, 4)) < 0.03).astype(float),
        "Metropolis runs": metropolis_like(rng, (4, 500, 4)),
        "constant column": with_constant,
        "constant within chains": np.repeat(np.arange(4.0)[:, None, None] * 0.1, 100, axis=1) + np.zeros(2),
        "one chain stuck": stuck,
        "signed zeros": rng.choice([-1.0, -0.0, 0.0, 1.0], size=(4, 200, 3)),
        "ulps apart": 1.0 + rng.integers(0, 50, size=(4, 300, 3)) * eps,  # near-equal sort keys
        "large offset": rng.normal(size=(4, 200, 3)) * 1e-3 + 1e6,
        "odd draws": rng.normal(size=(3, 501, 4)),
        "one chain": ar1(rng, 0.5, (1, 400, 3)),
        "4 draws": rng.normal(size=(4, 4, 4)),
        "5 draws": rng.normal(size=(4, 5, 4)),
        "2 draws": rng.normal(size=(4, 2, 2)),  # ArviZ wants 4 draws: all NaN
        "2 chains x 6 draws": rng.normal(size=(2, 6, 3)),
        "10 draws": rng.normal(size=(3, 10, 40)),  # Geyer stops at its lag limit, often P_1 > 0 > rho_2
    }


CASES = _cases()


def assert_matches(result: Diagnostics, reference: Diagnostics, rtol_rhat: float = RTOL_SAME,
                   rtol_bulk: float = RTOL_ESS, rtol_tail: float = RTOL_ESS) -> None:
    assert_allclose(result.rhat, reference.rhat, rtol=rtol_rhat, atol=0, equal_nan=True)
    assert_allclose(result.ess_bulk, reference.ess_bulk, rtol=rtol_bulk, atol=0, equal_nan=True)
    assert_allclose(result.ess_tail, reference.ess_tail, rtol=rtol_tail, atol=0, equal_nan=True)


@pytest.mark.parametrize("name", list(CASES))
def test_matches_arviz(name):
    draws = CASES[name]
    result = diagnostics(draws)
    assert_matches(result, arviz_reference(draws))
    separate = Diagnostics(rhat(draws), ess_bulk(draws), ess_tail(draws))
    for together, alone in zip(result, separate):
        assert_array_equal(together, alone)


def test_cases_cover_what_they_claim():
    """The battery reaches the regimes it is meant to: R-hat far above 1, NaN rules, ESS = S."""
    assert np.all(diagnostics(CASES["shifted means"]).rhat > 1.4)
    constant = diagnostics(CASES["constant column"])
    assert np.isnan(constant.rhat[1]) and constant.ess_bulk[1] == constant.ess_tail[1] == 4 * 300
    assert np.all(np.isnan(diagnostics(CASES["one chain"]).rhat))
    assert np.all(np.isfinite(diagnostics(CASES["one chain"]).ess_bulk))
    assert all(np.all(np.isnan(v)) for v in diagnostics(CASES["2 draws"]))
    floor = 4 * 1000 * np.log10(4 * 1000)  # S / tau with tau at its floor 1 / log10(S)
    assert_allclose(diagnostics(CASES["AR(1) -0.7"]).ess_bulk, floor, rtol=1e-12)


@pytest.mark.parametrize("name", ["AR(1) 0.5", "Metropolis runs", "Poisson integers", "odd draws"])
def test_float32_draws(name):
    draws = CASES[name].astype(np.float32)
    result = diagnostics(draws)
    # computed in float64: exactly ArviZ on the same values in float64
    assert_matches(result, arviz_reference(draws.astype(np.float64)))
    # ArviZ on the float32 array folds in float32; with SciPy >= 1.18 it also ranks in float32
    ranks = RTOL_FLOAT32_RANKS if RANKS_IN_FLOAT32 else RTOL_ESS
    assert_matches(result, arviz_reference(draws), rtol_rhat=RTOL_FLOAT32_FOLD, rtol_bulk=ranks)


def test_integer_draws_are_their_float64_values():
    draws = CASES["Poisson integers"].astype(np.int64)
    for together, as_float in zip(diagnostics(draws), diagnostics(draws.astype(np.float64))):
        assert_array_equal(together, as_float)


def test_non_finite_draws():
    rng = np.random.default_rng(7)
    draws = rng.normal(size=(4, 51, 5))
    draws[1, 7, 0] = np.nan  # one NaN: this scalar's statistics are NaN
    draws[2, 25, 1] = np.nan  # NaN in the middle draw, which the split drops: still NaN (ArviZ)
    draws[0, 3, 2] = np.inf  # one infinite draw: finite statistics
    draws[:, :30, 3] = np.inf  # the median is infinite: |inf - inf| is NaN, tail R-hat NaN
    draws[:2, :, 4], draws[2:, :, 4] = -np.inf, np.inf
    result = diagnostics(draws)
    reference = arviz_reference(draws)
    for statistic in result:
        assert np.isnan(statistic[:2]).all() and np.isfinite(statistic[2:]).all()
    if ARVIZ_1:  # np.quantile's a + (b - a) g is NaN at infinities where mquantiles is not
        reference = reference._replace(ess_tail=result.ess_tail)
    assert_matches(result, reference)


def _draw_tied_at_quantile(count: int, prob: float) -> float:
    """A value ``a`` for which ``mquantiles``' ``(1 - g) a + g a`` rounds below ``a``."""
    aleph = count * prob + (1.0 - prob)
    gamma = aleph - np.floor(aleph)
    for tied in np.arange(1, 1000) * 0.01 + 1.0:
        if (1.0 - gamma) * tied + gamma * tied < tied:
            return float(tied)
    raise AssertionError("no such value")


def test_tail_quantile_is_mquantiles():
    """ArviZ 0.x's tail quantile is ``(1 - g) x_k + g x_(k+1)`` (``mquantiles``): when both order
    statistics are one tied draw it can round below the draw, which then leaves the indicator."""
    rng = np.random.default_rng(11)
    num_chains, num_draws = 4, 100
    tied = _draw_tied_at_quantile(num_chains * num_draws, 0.05)
    # 19 draws below the tied value, in one run of chain 0 (a sticky lower tail), 40 tied draws
    # spread at random, the rest above: order statistics 20 and 21 are the tied value
    others = np.concatenate([np.full(40, tied), tied + 1.0 + rng.random(num_chains * num_draws - 59)])
    draws = np.insert(rng.permutation(others), 30, tied - 1.0 - rng.random(19))
    draws = draws.reshape(num_chains, num_draws, 1)
    quantiles = mquantiles(draws.ravel(), [0.05, 0.95], alphap=1, betap=1)
    assert quantiles[0] < tied  # the case this test is about

    def ess_of_indicators(limits):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return min(float(az.ess((draws[:, :, 0] <= q).astype(float), method="mean"))
                       for q in limits)

    expected = ess_of_indicators(quantiles)
    exact = ess_of_indicators(np.quantile(draws.ravel(), [0.05, 0.95]))
    assert not np.isclose(expected, exact, rtol=1e-3)  # the two rules give different answers here
    assert_allclose(ess_tail(draws), [expected], rtol=RTOL_ESS)
    reference = arviz_reference(draws).ess_tail
    assert_allclose(reference, [exact if ARVIZ_1 else expected], rtol=RTOL_ESS)


def test_threads_do_not_change_the_result():
    rng = np.random.default_rng(3)
    draws = ar1(rng, 0.7, (4, 200, 700))  # several blocks, a short last one
    draws[:, :, 5] = 1.0
    draws[2, 9, 6] = np.nan
    one = diagnostics(draws, num_threads=1)
    for threads in (2, 3):
        for together, alone in zip(diagnostics(draws, num_threads=threads), one):
            assert_array_equal(together, alone)


def test_ten_thousand_scalars():
    """K = 1e4 group effects (timing is reported, not asserted): every block agrees with ArviZ."""
    rng = np.random.default_rng(2026)
    num_scalars = 10_000
    draws = rng.standard_normal((4, 1000, num_scalars), dtype=np.float32)
    draws[:, 1:] += 0.6 * draws[:, :-1]  # some autocorrelation
    draws[:, :, 17] += np.array([0.0, 0.0, 0.0, 2.0], np.float32)[:, None]
    draws[:, :, 4242] = 1.5
    draws[3, 500, 9999] = np.nan
    result = diagnostics(draws)
    for statistic in result:
        assert statistic.shape == (num_scalars,) and statistic.dtype == np.float64
    assert np.flatnonzero(np.isnan(result.ess_bulk)).tolist() == [9999]
    assert np.flatnonzero(np.isnan(result.rhat)).tolist() == [4242, 9999]
    assert result.ess_bulk[4242] == result.ess_tail[4242] == 4000
    assert result.rhat[17] > 1.1
    ordinary = np.delete(np.arange(num_scalars), [17, 4242, 9999])
    assert np.all(np.abs(result.rhat[ordinary] - 1) < 0.02)
    picked = np.concatenate([[0, 17, 4242, 9999, num_scalars - 2], rng.choice(ordinary, 10)])
    reference = arviz_reference(draws[:, :, picked].astype(np.float64))
    assert_matches(Diagnostics(*(statistic[picked] for statistic in result)), reference)


def test_rejects_other_shapes():
    with pytest.raises(ValueError, match=r"expected draws of shape \(chain, draw, K\)"):
        rhat(np.zeros((4, 100)))

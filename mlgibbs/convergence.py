r"""Rank-normalised split R-hat and bulk / tail ESS, vectorised over the scalars of a posterior.

The statistics are ArviZ's defaults (Vehtari, Gelman, Simpson, Carpenter & Bürkner 2021), computed
for all ``K`` scalars of a ``(chain, draw, K)`` array at once instead of one scalar at a time: ArviZ
0.x and 1.x spend about 2 ms per scalar and statistic in a Python loop, 22 s for 10,000 group effects.

Split chains and rank normalisation
-----------------------------------
Each of the :math:`C` chains of :math:`N` draws is cut into its first and last :math:`n = \lfloor N/2
\rfloor` draws (the middle draw of an odd :math:`N` is dropped), giving :math:`M = 2C` chains
:math:`\theta_{mi}` and :math:`S = Mn` draws. Rank normalisation replaces each draw by

.. math:: z_{mi} = \Phi^{-1}\!\left(\frac{r_{mi} - 3/8}{S + 1/4}\right),

where :math:`r_{mi}` is the rank of :math:`\theta_{mi}` among all :math:`S` draws, ties given their
average rank (Blom 1958).

R-hat
-----
For chains :math:`x_{mi}` with means :math:`\bar x_m` and variances :math:`s_m^2` (divisor
:math:`n - 1`), :math:`B = n \operatorname{var}_m(\bar x_m)` (divisor :math:`M - 1`),
:math:`W = \frac1M \sum_m s_m^2` and

.. math:: \hat R(x) = \sqrt{\frac{B / W + n - 1}{n}}.

The rank-normalised split R-hat is :math:`\max(\hat R(z), \hat R(z^{\mathrm{fold}}))`, with
:math:`z^{\mathrm{fold}}` the rank normalisation of the folded draws :math:`|\theta_{mi} -
\operatorname{median}(\theta)|`.

Effective sample size
---------------------
With :math:`\hat\gamma_t` the autocovariance at lag :math:`t` averaged over the chains (divisor
:math:`n`), :math:`\hat V = \frac{n-1}{n} \bar W + \operatorname{var}_m(\bar x_m)` where
:math:`\bar W = \frac{n}{n-1}\hat\gamma_0`, and :math:`\hat\rho_t = 1 - (\bar W - \hat\gamma_t) /
\hat V`, Geyer's (1992) initial positive sequence sums the pairs :math:`P_k = \hat\rho_{2k} +
\hat\rho_{2k+1}` up to the first :math:`P_k \le 0`; the initial monotone sequence replaces them by
their running minimum; then

.. math:: \hat\tau = -1 + 2 \sum_{k < k^*} \min_{j \le k} P_j + \hat\rho_{2k^*},
   \qquad \mathrm{ESS} = \frac{S}{\max(\hat\tau, 1 / \log_{10} S)}.

The bulk ESS is that of :math:`z`; the tail ESS is the smaller of those of the indicators
:math:`\theta_{mi} \le q_{0.05}` and :math:`\theta_{mi} \le q_{0.95}`, with :math:`q_p` the type-7
sample quantile of all :math:`CN` draws.

Agreement with ArviZ
--------------------
Every rule of ArviZ 0.x (``arviz.stats.diagnostics``) is kept: NaN for a scalar with a NaN draw (the
middle draw of an odd :math:`N` included), for fewer than 4 draws, and (R-hat) for one chain; ESS
:math:`S` when the transformed draws are constant (range below ``np.finfo(float).resolution``);
R-hat as its formula gives for constant draws (NaN for a constant scalar); the stopping, storing and
monotone rules of its Geyer loop and the :math:`1/\log_{10} S` floor on :math:`\hat\tau`;
``max``/``min`` with Python's NaN semantics; the quantile arithmetic of
``scipy.stats.mstats.mquantiles``. For float64 draws the ranks, the scores :math:`z` and R-hat
are bit for bit ArviZ's. The autocovariances are exact sums over the first lags (ArviZ: an FFT per chain), by FFT
only for the scalars whose Geyer sequence runs longer, so the ESS agrees to rounding (about
:math:`10^{-14}` relative).

ArviZ 1.x (``arviz_stats``) computes the same statistics but for three details: its tail ESS
defaults to ``prob=0.89`` (the 0.11 and 0.89 quantiles; ``prob=(0.05, 0.95)`` gives the statistic
here); its quantiles come from :func:`numpy.quantile` (``a + (b - a) g``) rather than
``mquantiles`` (``(1 - g) a + g b``), which can differ in the last bit and so move a tied draw across
:math:`q_p` (ArviZ 0.x can leave a draw tied at :math:`q_{0.05}` out of its own indicator); and
with SciPy >= 1.18 ``rankdata`` keeps float32 draws' ranks in float32, so its scores carry float32
rounding. Here everything is computed in float64, float32 draws too (ArviZ 0.x and 1.x fold float32
draws in float32, which moves R-hat by up to about 1e-5).

Computation
-----------
The scalars are processed in blocks of about ``_BLOCK_DRAWS`` draws, with work arrays allocated once
per call. Each block's rows are ranked by one SIMD sort of 64-bit integer keys (the order-preserving
bit pattern of the value, its low bits replaced by the position; the rare values equal in all but
those bits are put in order exactly), ties get their average rank from the runs of equal sorted
values, and the scores come from a table of :math:`\Phi^{-1}` at the :math:`2S - 1` possible average
ranks. The indicators' lag sums are counts on bit-packed chains. Blocks run on a few threads.
For 4 chains x 1000 draws x 10,000 scalars the three statistics take about 1.3 s on one core of a
2-core AMD EPYC, 0.9-1 s on both (ArviZ: about 10 s for R-hat, 6 s and 4 s for the two ESS).

References
----------
Vehtari, Gelman, Simpson, Carpenter & Bürkner (2021). Rank-normalization, folding, and localization:
an improved R-hat for assessing convergence of MCMC. *Bayesian Analysis* 16(2), 667-718.
Geyer (1992). Practical Markov chain Monte Carlo. *Statistical Science* 7(4), 473-483.
Blom (1958). *Statistical Estimates and Transformed Beta-Variables*. Wiley.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import ndtri

__all__ = ["Diagnostics", "diagnostics", "ess_bulk", "ess_tail", "rhat"]

#: Offset of Blom's normal scores, as ArviZ's ``_backtransform_ranks``.
_BLOM = 3 / 8

#: Tail probabilities of the tail ESS, as ArviZ 0.x's default.
_TAIL_PROBS = (0.05, 0.95)

#: Scalars are processed in blocks of about this many draws (a few MB per float64 work array).
_BLOCK_DRAWS = 1 << 17

#: Numbers of lags summed directly, in turn, for the scalars whose Geyer sequence is still running;
#: ``None``: all lags by FFT.
_LAG_STAGES = (4, 8, 16, 32, None)

#: The same for indicators, whose lag sums are counts on packed bits (cheap per lag).
_BIT_LAG_STAGES = (16, 64, None)

#: Most threads used by default (one block of scalars per thread at a time).
_MAX_THREADS = 4


class Diagnostics(NamedTuple):
    """Convergence statistics of each scalar.

    Attributes
    ----------
    rhat : np.ndarray
        Rank-normalised split R-hat, shape ``(K,)``.
    ess_bulk : np.ndarray
        Bulk effective sample size, shape ``(K,)``.
    ess_tail : np.ndarray
        Tail effective sample size (0.05 and 0.95 quantiles), shape ``(K,)``.
    """

    rhat: np.ndarray
    ess_bulk: np.ndarray
    ess_tail: np.ndarray


# ---------------------------------------------------------------------------------------------
# building blocks, on a block of R scalars: split chains (R, M, n), rows of all S = M n draws (R, S)


class _Work(NamedTuple):
    """Work arrays for a block of R scalars, allocated once per call and reused block after block
    (fresh arrays of this size cost a page fault per 4 KiB, as much as the arithmetic)."""

    split: np.ndarray  # (R, M, n) float64: the split chains
    keys: np.ndarray  # (R, S) uint64: sort keys; between sorts, spare rows for _ess_classic
    order: np.ndarray  # (R, S) int64: flat indices sorting each row
    sorted_scores: np.ndarray  # (R, S) float64: the scores of ranks 1, ..., S on each row
    scores: np.ndarray  # (R, S) float64: normal scores z in the original order
    centred: np.ndarray  # (R, S) float64: chains minus their means; the folded draws
    scratch: np.ndarray  # (R, S) float64: squares; XOR of neighbouring keys
    mask: np.ndarray  # (R, S) bool: NaN flags, near-equal neighbours, indicators

    @classmethod
    def allocate(cls, rows: int, num_split: int, half: int, scores: np.ndarray) -> "_Work":
        size = num_split * half
        return cls(np.empty((rows, num_split, half)), np.empty((rows, size), np.uint64),
                   np.empty((rows, size), np.int64), np.tile(scores[0::2], (rows, 1)),
                   np.empty((rows, size)), np.empty((rows, size)), np.empty((rows, size)),
                   np.empty((rows, size), bool))

    def head(self, rows: int) -> "_Work":
        """The work arrays of the first ``rows`` scalars (the last, shorter block)."""
        return _Work(*(array[:rows] for array in self))


def _fill_split(work: _Work, draws: np.ndarray, columns: slice) -> np.ndarray:
    """Copy the split chains of ``draws[:, :, columns]`` into ``work.split`` in float64.

    The first ``N // 2`` draws of each chain, then the last ``N // 2`` (ArviZ's ``_split_chains``:
    chains ``1a, ..., Ca, 1b, ..., Cb``; the middle draw of an odd ``N`` is left out).
    Returns which scalars have a NaN draw (the middle one included).
    """
    num_chains, num_draws = draws.shape[:2]
    half = num_draws // 2
    np.copyto(work.split[:, :num_chains], np.moveaxis(draws[:, :half, columns], 2, 0))
    np.copyto(work.split[:, num_chains:], np.moveaxis(draws[:, num_draws - half:, columns], 2, 0))
    isnan = np.isnan(work.split.reshape(work.mask.shape), out=work.mask)
    has_nan = isnan.any(axis=1)
    if num_draws % 2:
        has_nan |= np.isnan(draws[:, half, columns]).any(axis=0)
    work.split[has_nan] = 0.0
    np.add(work.split, 0.0, out=work.split)  # -0.0 -> +0.0: equal values need equal sort keys
    return has_nan


def _normal_scores(size: int) -> np.ndarray:
    r"""Blom scores :math:`\Phi^{-1}((r - 3/8) / (S + 1/4))` of the average ranks
    :math:`r = 1, 1.5, 2, \ldots, S`, indexed by :math:`2r - 2`.

    The arithmetic is ArviZ's ``_backtransform_ranks`` and ``scipy.stats.norm.ppf`` (= ``ndtri``).
    """
    rank = np.arange(2 * size - 1) * 0.5 + 1.0
    return ndtri((rank - _BLOM) / (size - 2 * _BLOM + 1))


def _sort_keys(values: np.ndarray, keys: np.ndarray, nonnegative: bool) -> int:
    r"""Sorted order-preserving integer keys of each row of a (R, S) float64 array, into ``keys``.

    The key of :math:`x` is its IEEE bit pattern with the sign bit flipped (:math:`x \ge 0`) or all
    bits flipped (:math:`x < 0`), so that unsigned order is numeric order (``-0.0`` must have been
    made ``+0.0``); its lowest ``bits`` bits are replaced by the position in the row, so that one
    SIMD sort of plain integers gives the permutation. Values that agree in all but those lowest
    bits stay in position order; :func:`_sort_order` checks them. Returns ``bits``.
    """
    size = values.shape[1]
    bits = max(1, (size - 1).bit_length())
    high = ~np.uint64((1 << bits) - 1)
    if nonnegative:
        np.bitwise_and(values.view(np.uint64), high, out=keys)
    else:
        np.right_shift(values.view(np.int64), 63, out=keys.view(np.int64))
        keys |= np.uint64(1 << 63)
        keys ^= values.view(np.uint64)
        keys &= high
    keys |= np.arange(size, dtype=np.uint64)
    keys.sort(axis=-1)
    return bits


def _sort_order(values: np.ndarray, work: _Work, nonnegative: bool = False):
    """Flat indices sorting each row of a (R, S) float64 array, into ``work.order``, and its ties.

    Returns the pairs ``(row, j)``, row-major, with ``sorted[row, j] == sorted[row, j + 1]`` where
    ``sorted = values.ravel()[work.order]``. Uses ``work.keys``, ``work.scratch`` and ``work.mask``.
    """
    rows, size = values.shape
    flat = values.reshape(-1)
    bits = _sort_keys(values, work.keys, nonnegative)
    low = np.uint64((1 << bits) - 1)
    order = work.order
    np.bitwise_and(work.keys, low, out=order.view(np.uint64))
    order += np.arange(0, rows * size, size)[:, None]
    xor = np.bitwise_xor(work.keys[:, 1:], work.keys[:, :-1], out=work.scratch.view(np.uint64)[:, :-1])
    near = np.less_equal(xor, low, out=work.mask[:, :-1])  # equal but for the position bits
    candidates = np.flatnonzero(near.any(axis=1))
    if not candidates.size:
        return candidates, candidates
    if 4 * candidates.size > rows:
        tie_row, tie_pos = np.nonzero(near)
    else:
        tie_row, tie_pos = np.nonzero(near[candidates])
        tie_row = candidates[tie_row]
    before = flat[order[tie_row, tie_pos]]
    after = flat[order[tie_row, tie_pos + 1]]
    equal = before == after
    if equal.all():
        return tie_row, tie_pos
    # Distinct values within 2**bits units in the last place (e.g. the two draws either side of
    # the median, folded). A lone pair is put in order by a swap; longer runs of near-equal
    # values, rare, by sorting their rows exactly.
    chained = (tie_row[1:] == tie_row[:-1]) & (tie_pos[1:] == tie_pos[:-1] + 1)
    joined = np.zeros(tie_row.size, dtype=bool)
    joined[1:] |= chained
    joined[:-1] |= chained
    lone = ~equal & ~joined
    swap = lone & (before > after)
    swap_row, swap_pos = tie_row[swap], tie_pos[swap]
    order[swap_row, swap_pos], order[swap_row, swap_pos + 1] = (
        order[swap_row, swap_pos + 1], order[swap_row, swap_pos])
    tie_row, tie_pos, equal = tie_row[~lone], tie_pos[~lone], equal[~lone]
    if not equal.all():
        redo = np.unique(tie_row[~equal])
        order[redo] = np.argsort(values[redo], axis=-1) + redo[:, None] * size
        exact = flat[order[redo]]
        more_row, more_pos = np.nonzero(exact[:, 1:] == exact[:, :-1])
        keep = ~np.isin(tie_row, redo)
        tie_row = np.concatenate([tie_row[keep], redo[more_row]])
        tie_pos = np.concatenate([tie_pos[keep], more_pos])
        row_major = np.lexsort((tie_pos, tie_row))
        tie_row, tie_pos = tie_row[row_major], tie_pos[row_major]
    return tie_row, tie_pos


def _tie_runs(tie_row: np.ndarray, tie_pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each tied pair (row-major), ``first + last`` sorted position of its run of ties, and ``last``.

    ``first + last`` is :math:`2r - 2` for the average rank :math:`r` (``scipy.stats.rankdata``)
    that the run shares.
    """
    new_run = np.ones(tie_row.size, dtype=bool)
    new_run[1:] = (tie_row[1:] != tie_row[:-1]) | (tie_pos[1:] != tie_pos[:-1] + 1)
    run = np.cumsum(new_run) - 1
    first = tie_pos[new_run]
    last = tie_pos[np.append(new_run[1:], True)] + 1
    return (first + last)[run], last[run]


def _z_scale(values: np.ndarray, scores: np.ndarray, work: _Work, nonnegative: bool = False):
    """Rank-normalise each row of a (R, S) float64 array over all its entries (ArviZ's ``_z_scale``).

    The scores, in the original order, go to ``work.scores``; ``work.order`` sorts the rows.
    Returns each row's range of scores (``max - min``, ArviZ's test for constant draws in ``_ess``).
    """
    rows, size = values.shape
    tie_row, tie_pos = _sort_order(values, work, nonnegative)
    z, order = work.scores.reshape(-1), work.order
    z[order] = work.sorted_scores
    low = np.zeros(rows, dtype=np.int64)
    high = np.full(rows, 2 * size - 2)
    if tie_row.size:
        index, last = _tie_runs(tie_row, tie_pos)
        z[order[tie_row, tie_pos]] = scores[index]
        z[order[tie_row, tie_pos + 1]] = scores[index]
        at_start = tie_pos == 0
        low[tie_row[at_start]] = index[at_start]
        at_end = last == size - 1
        high[tie_row[at_end]] = index[at_end]
    return scores[high] - scores[low]


def _chain_moments(chains: np.ndarray, centred: np.ndarray, square: np.ndarray):
    """Means and variances (divisor ``n - 1``) of (R, M, n) chains; ``chains - means`` into ``centred``.

    The arithmetic of ``np.mean`` and ``np.var(ddof=1)`` (ArviZ's), without their temporaries.
    """
    n = chains.shape[-1]
    mean = np.add.reduce(chains, axis=-1) / n
    np.subtract(chains, mean[..., None], out=centred)
    np.multiply(centred, centred, out=square)
    return mean, np.add.reduce(square, axis=-1) / (n - 1)


def _rhat_classic(chain_mean: np.ndarray, chain_var: np.ndarray, n: int) -> np.ndarray:
    r""":math:`\sqrt{(B/W + n - 1)/n}` from the (R, M) chain means and variances (ArviZ's ``_rhat``)."""
    between = n * np.var(chain_mean, axis=-1, ddof=1)
    within = np.mean(chain_var, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt((between / within + n - 1) / n)


def _next_regular(target: int) -> int:
    r"""Smallest :math:`2^a 3^b 5^c \ge` ``target``, the FFT length of ArviZ's ``autocov``
    (``scipy.fftpack.next_fast_len``)."""
    best = 1 << max(target - 1, 0).bit_length()
    power5 = 1
    while power5 < best:
        power35 = power5
        while power35 < best:
            value = power35
            while value < target:
                value *= 2
            best = min(best, value)
            power35 *= 3
        power5 *= 5
    return best


def _lag_sums(centred: np.ndarray, lags: range) -> np.ndarray:
    r""":math:`\sum_m \sum_i y_{m,i}\, y_{m,i+t}` for each lag :math:`t` in ``lags``, of (R, M, n)
    centred chains: (R, len(lags))."""
    n = centred.shape[-1]
    out = np.empty((centred.shape[0], len(lags)))
    for column, lag in enumerate(lags):
        out[:, column] = np.einsum("rmi,rmi->r", centred[..., : n - lag], centred[..., lag:])
    return out


def _lag_sums_fft(centred: np.ndarray) -> np.ndarray:
    """All ``n`` lags of :func:`_lag_sums` by FFT, zero-padded as ArviZ's ``autocov``; the power
    spectra are summed over chains before the inverse transform."""
    n = centred.shape[-1]
    size = _next_regular(2 * n)
    spectrum = np.fft.rfft(centred, n=size, axis=-1)
    parts = spectrum.view(np.float64)
    power = np.einsum("rmf,rmf->rf", parts, parts)
    power = power[:, 0::2] + power[:, 1::2]
    return np.fft.irfft(power, n=size, axis=-1)[:, :n]


def _geyer_tau(rho: np.ndarray, max_pair: int) -> tuple[np.ndarray, np.ndarray]:
    r"""Integrated autocorrelation time from the first lags of the autocorrelations.

    ``rho`` (R, 2A) holds :math:`\hat\rho_0 = 1, \hat\rho_1, \ldots, \hat\rho_{2A-1}`. ArviZ's loop
    reads the pairs :math:`P_k = \hat\rho_{2k} + \hat\rho_{2k+1}`, :math:`k = 1, 2, \ldots`, while the
    previous pair is positive and :math:`k \le` ``max_pair``; :math:`k^*` is the last pair it reads
    (0 if :math:`P_0 \le 0`). Pairs :math:`k < k^*` enter as their running minimum (its monotone
    loop), and :math:`\hat\rho_{2k^*}` when :math:`P_{k^*} \ge 0` or :math:`\hat\rho_{2k^*} > 0`:

    .. math:: \hat\tau = -1 + 2 \sum_{k < k^*} \min_{j \le k} P_j + \hat\rho_{2k^*}.

    Returns :math:`\hat\tau` and whether :math:`k^*` is settled by these lags (if not, the row
    needs more lags).
    """
    available = rho.shape[1] // 2
    last_pair = min(max_pair, available - 1)
    pairs = rho[:, 0 : 2 * last_pair + 1 : 2] + rho[:, 1 : 2 * last_pair + 2 : 2]
    stop = ~(pairs > 0)
    stopped = stop.any(axis=1)
    k_star = np.where(stopped, np.argmax(stop, axis=1), last_pair)
    settled = stopped | (max_pair < available)
    monotone = np.minimum.accumulate(pairs, axis=1)
    monotone[np.arange(last_pair + 1) >= k_star[:, None]] = 0.0
    row = np.arange(rho.shape[0])
    rho_even = rho[row, 2 * k_star]
    tail = np.where((pairs[row, k_star] >= 0) | (rho_even > 0), rho_even, 0.0)
    head = monotone.sum(axis=1)
    return -1.0 + 2.0 * head + tail, settled


class _LagSums(NamedTuple):
    r"""How to get :math:`\sum_m \sum_i y_{m,i}\, y_{m,i+t}` for some rows of a block.

    ``direct(rows, lags)`` gives them for a few lags, (len(rows), len(lags)); ``fft(rows)`` for all
    ``n`` lags, (len(rows), n). ``stages``: the numbers of lags to try in turn for the rows whose
    Geyer sequence is still running, ``None`` for all lags.
    """

    direct: Callable[[np.ndarray, range], np.ndarray]
    fft: Callable[[np.ndarray], np.ndarray]
    stages: tuple


def _centred_lag_sums(centred: np.ndarray, spare: np.ndarray) -> _LagSums:
    """:class:`_LagSums` of (R, M, n) centred chains; row subsets are copied into ``spare``."""

    def rows_of(todo: np.ndarray) -> np.ndarray:
        if todo.size == centred.shape[0]:
            return centred
        return np.take(centred, todo, axis=0, out=spare[: todo.size], mode="clip")

    return _LagSums(lambda todo, lags: _lag_sums(rows_of(todo), lags),
                    lambda todo: _lag_sums_fft(rows_of(todo)), _LAG_STAGES)


def _pack_bits(below: np.ndarray) -> np.ndarray:
    """(R, M, n) bool -> (R, M, W) little-endian 64-bit words, draw ``i`` in bit ``i % 64`` of word
    ``i // 64``, followed by zero words (``W = 2 ceil(n / 64)``, room for shifts)."""
    words = -(-below.shape[-1] // 64)
    packed = np.zeros(below.shape[:-1] + (16 * words,), np.uint8)
    packed[..., : -(-below.shape[-1] // 8)] = np.packbits(below, axis=-1, bitorder="little")
    return packed.view(np.dtype("<u8"))


def _popcount(words: np.ndarray) -> np.ndarray:
    """Number of set bits of each 64-bit word."""
    if hasattr(np, "bitwise_count"):  # NumPy >= 2.0
        return np.bitwise_count(words)
    table = np.array([bin(byte).count("1") for byte in range(256)], np.uint8)
    return table[words.view(np.uint8)].reshape(words.shape + (8,)).sum(axis=-1, dtype=np.uint8)


def _indicator_lag_sums(below: np.ndarray, chain_mean: np.ndarray, spare: np.ndarray) -> _LagSums:
    r""":class:`_LagSums` of the centred indicators :math:`y_{m,i} = b_{m,i} - \mu_m` of (R, M, n)
    booleans :math:`b` with chain means :math:`\mu_m`, from exact counts on packed bits:

    .. math:: \sum_{i < n - t} y_{m,i}\, y_{m,i+t} = c_{m,t} - \mu_m (A_{m,t} + B_{m,t})
              + (n - t) \mu_m^2,

    with :math:`c_{m,t}` the number of :math:`i` with :math:`b_{m,i} = b_{m,i+t} = 1`,
    :math:`A_{m,t} = \sum_{i < n-t} b_{m,i}` and :math:`B_{m,t} = \sum_{i \ge t} b_{m,i}`. All lags
    at once go by FFT of the centred indicators, made in ``spare`` (R, M, n) float64.
    """
    n = below.shape[-1]
    words = _pack_bits(below)
    used = words.shape[-1] // 2
    total = np.count_nonzero(below, axis=-1)
    first_lags = min(n, max(stage for stage in _BIT_LAG_STAGES if stage is not None))
    ones_first = np.zeros(below.shape[:-1] + (first_lags + 1,), np.int64)
    ones_last = np.zeros_like(ones_first)
    np.cumsum(below[..., :first_lags], axis=-1, out=ones_first[..., 1:])
    np.cumsum(below[..., ::-1][..., :first_lags], axis=-1, out=ones_last[..., 1:])

    def direct(todo: np.ndarray, lags: range) -> np.ndarray:
        lag = np.asarray(lags)
        shift = (lag % 64).astype(np.uint64)[:, None]
        start = np.minimum((lag // 64)[:, None] + np.arange(used), 2 * used - 2)
        chains = words[todo]
        later = (chains[..., start] >> shift) | np.where(
            shift == 0, np.uint64(0), chains[..., start + 1] << (np.uint64(64) - shift))
        both = _popcount(chains[..., None, :used] & later).sum(axis=-1, dtype=np.int64)  # (r, M, L)
        mean = chain_mean[todo][..., None]
        edges = 2 * total[todo][..., None] - ones_first[todo][..., lag] - ones_last[todo][..., lag]
        return (both - mean * edges + (n - lag) * mean * mean).sum(axis=1)

    def fft(todo: np.ndarray) -> np.ndarray:
        centred = np.subtract(below[todo], chain_mean[todo][..., None], out=spare[: todo.size])
        return _lag_sums_fft(centred)

    return _LagSums(direct, fft, _BIT_LAG_STAGES)


def _ess_classic(lag_sums: _LagSums, chain_mean: np.ndarray, spread: np.ndarray, n: int) -> np.ndarray:
    r"""ESS of (R, M, n) chains (ArviZ's ``_ess``), from their lag sums, means and ``max - min``
    (below ``np.finfo(float).resolution``: constant, ESS :math:`S`).

    .. math:: \hat\gamma_t = \frac{1}{Mn} \sum_m \sum_i y_{m,i}\, y_{m,i+t}, \quad
              \bar W = \frac{n}{n-1} \hat\gamma_0, \quad
              \hat V = \frac{n-1}{n} \bar W + \operatorname{var}_m(\bar x_m), \quad
              \hat\rho_t = 1 - \frac{\bar W - \hat\gamma_t}{\hat V},

    with :math:`y` the centred chains. The lags of ``lag_sums.stages`` are added in turn for the rows
    whose Geyer sequence is still running; rows still running after them get all lags by FFT.
    """
    rows, num_chains = chain_mean.shape
    size = num_chains * n
    between = np.var(chain_mean, axis=-1, ddof=1)
    max_pair = max((n - 3) // 2, 0)
    num_lags = 2 * max_pair + 2
    tau = np.empty(rows)
    todo = np.arange(rows)
    sums = np.zeros((rows, 0))
    for stage in lag_sums.stages:
        if stage is None:
            sums = lag_sums.fft(todo)[:, :num_lags]
        else:
            more = range(sums.shape[1], min(stage, num_lags))
            sums = np.concatenate([sums, lag_sums.direct(todo, more)], axis=1)
        acov = sums / n / num_chains
        mean_var = acov[:, 0] * n / (n - 1.0)
        var_plus = mean_var * (n - 1.0) / n + between[todo]
        with np.errstate(divide="ignore", invalid="ignore"):
            rho = 1.0 - (mean_var[:, None] - acov) / var_plus[:, None]
        rho[:, 0] = 1.0
        tau_part, settled = _geyer_tau(rho, max_pair)
        tau[todo[settled]] = np.where(np.isnan(rho[settled, 1]), np.nan, tau_part[settled])
        todo, sums = todo[~settled], sums[~settled]
        if not todo.size:
            break
    ess = size / np.maximum(tau, 1 / np.log10(size))
    return np.where(spread < np.finfo(float).resolution, float(size), ess)


def _mquantile_weights(count: int, prob: float) -> tuple[int, np.ndarray]:
    r"""Order statistic ``k`` and weight ``gamma`` of the type-7 quantile
    :math:`(1 - \gamma) x_{(k)} + \gamma x_{(k+1)}` (1-based) of ``count`` draws, with the arithmetic
    of ``scipy.stats.mstats.mquantiles(alphap=1, betap=1)`` (ArviZ 0.x's ``_quantile``)."""
    p = np.atleast_1d(np.asarray(prob))
    m = 1.0 + p * (1.0 - 1.0 - 1.0)
    aleph = count * p + m
    k = np.floor(aleph.clip(1, count - 1)).astype(int)
    gamma = (aleph - k).clip(0, 1)
    return int(k[0]), gamma


def _tail_quantiles(rows: np.ndarray, order: np.ndarray | None, middle: np.ndarray | None):
    """Type-7 quantiles (``_TAIL_PROBS``) of all draws of each scalar: the split draws ``rows``
    (R, S), sorted by the flat indices ``order`` when given, and the middle draws ``middle`` (R, C)
    of odd ``N``."""
    count = rows.shape[1] + (0 if middle is None else middle.shape[1])
    weights = [_mquantile_weights(count, prob) for prob in _TAIL_PROBS]
    wanted = sorted({j for k, _ in weights for j in (k - 1, k)})
    if order is not None and middle is None:
        picked = rows.reshape(-1)[order[:, wanted]]
    else:
        every = rows if middle is None else np.concatenate([rows, middle], axis=1)
        picked = np.sort(every, axis=-1)[:, wanted]
    pick = dict(zip(wanted, picked.T))
    with np.errstate(invalid="ignore"):
        return [(1.0 - gamma) * pick[k - 1] + gamma * pick[k] for k, gamma in weights]


def _tail_ess(split: np.ndarray, quantiles: list[np.ndarray], work: _Work) -> np.ndarray:
    """Tail ESS of (R, M, n) split chains: the smaller ESS of the indicators ``split <= q`` for the
    two ``quantiles`` (ArviZ's ``_ess_tail``). Uses ``work.mask`` and ``work.keys``."""
    rows_count, num_split, n = split.shape
    below = work.mask.reshape(split.shape)
    spare = work.keys.view(np.float64).reshape(split.shape)
    ess = []
    for quantile in quantiles:
        np.less_equal(split, quantile[:, None, None], out=below)
        count = np.count_nonzero(below, axis=-1)
        chain_mean = count / n  # exactly ArviZ's mean of the 0/1 draws
        constant = (count.sum(axis=-1) % (num_split * n)) == 0
        lag_sums = _indicator_lag_sums(below, chain_mean, spare)
        ess.append(_ess_classic(lag_sums, chain_mean, np.where(constant, 0.0, 1.0), n))
    low, high = ess
    return np.where(high < low, high, low)  # Python's min(low, high), as ArviZ


def _folded_rhat(rows: np.ndarray, median: np.ndarray, scores: np.ndarray, work: _Work) -> np.ndarray:
    r"""R-hat of the rank-normalised folded draws :math:`|\theta - \operatorname{median}|` of the
    (R, S) split draws ``rows``. Overwrites ``work`` (but ``split`` and ``mask``)."""
    shape = work.split.shape
    bad_fold = ~np.isfinite(median)  # |inf - inf| is NaN: ArviZ's tail R-hat is NaN
    folded = np.subtract(rows, np.where(bad_fold, 0.0, median)[:, None], out=work.centred)
    np.abs(folded, out=folded)
    _z_scale(folded, scores, work, nonnegative=True)
    fold_mean, fold_var = _chain_moments(work.scores.reshape(shape), work.centred.reshape(shape),
                                         work.scratch.reshape(shape))
    return np.where(bad_fold, np.nan, _rhat_classic(fold_mean, fold_var, shape[-1]))


def _block_statistics(work: _Work, scores: np.ndarray, middle: np.ndarray | None,
                      want: frozenset) -> dict[str, np.ndarray]:
    """The statistics in ``want`` of a block whose split chains are in ``work.split`` (NaN-free;
    ``scores``: :func:`_normal_scores`; ``middle``: the middle draws (R, C) of an odd number of
    draws, else None)."""
    split = work.split
    shape = split.shape
    rows = split.reshape(shape[0], -1)
    out = {}
    order = None
    if want & {"rhat", "ess_bulk"}:
        spread = _z_scale(rows, scores, work)
        order = work.order
        chain_mean, chain_var = _chain_moments(work.scores.reshape(shape), work.centred.reshape(shape),
                                               work.scratch.reshape(shape))
        if "ess_bulk" in want:
            spare = work.keys.view(np.float64).reshape(shape)
            lag_sums = _centred_lag_sums(work.centred.reshape(shape), spare)
            out["ess_bulk"] = _ess_classic(lag_sums, chain_mean, spread, shape[-1])
        if "rhat" in want:
            bulk = _rhat_classic(chain_mean, chain_var, shape[-1])
            centre = rows.reshape(-1)[order[:, rows.shape[1] // 2 - 1 : rows.shape[1] // 2 + 1]]
            with np.errstate(invalid="ignore"):
                median = (centre[:, 0] + centre[:, 1]) / 2  # np.median's arithmetic
    if "ess_tail" in want:  # before the folded draws are sorted into work.order
        out["ess_tail"] = _tail_ess(split, _tail_quantiles(rows, order, middle), work)
    if "rhat" in want:
        tail = _folded_rhat(rows, median, scores, work)
        out["rhat"] = np.where(tail > bulk, tail, bulk)  # Python's max(bulk, tail), as ArviZ
    return out


def _default_threads() -> int:
    """The CPUs this process may run on, at most ``_MAX_THREADS``."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        available = os.cpu_count() or 1
    return max(1, min(available, _MAX_THREADS))


def _statistics(draws: ArrayLike, want: frozenset, num_threads: int | None) -> dict[str, np.ndarray]:
    """Validate ``draws`` (chain, draw, K), apply ArviZ's NaN rules and compute block by block.

    Blocks of scalars are independent; ``num_threads`` threads (NumPy releases the GIL in its sorts,
    ufuncs and einsum) each take a contiguous run of blocks, with their own work arrays.
    """
    draws = np.asarray(draws)
    if draws.ndim != 3:
        raise ValueError(f"expected draws of shape (chain, draw, K), got shape {draws.shape}")
    num_chains, num_draws, num_scalars = draws.shape
    out = {name: np.full(num_scalars, np.nan) for name in want}
    if num_chains < 2:
        want = want - {"rhat"}
    if num_draws < 4 or num_chains < 1 or num_scalars == 0 or not want:
        return out
    half = num_draws // 2
    block = min(num_scalars, max(1, _BLOCK_DRAWS // (num_chains * num_draws)))
    starts = range(0, num_scalars, block)
    scores = _normal_scores(2 * num_chains * half)

    def run(first: int, last: int) -> None:
        work = _Work.allocate(block, 2 * num_chains, half, scores)
        for start in starts[first:last]:
            columns = slice(start, min(start + block, num_scalars))
            part = work.head(columns.stop - start)
            has_nan = _fill_split(part, draws, columns)
            middle = None
            if num_draws % 2:
                middle = np.where(has_nan[:, None], 0.0, draws[:, half, columns].T.astype(np.float64))
            for name, values in _block_statistics(part, scores, middle, want).items():
                out[name][columns] = np.where(has_nan, np.nan, values)

    num_threads = min(_default_threads() if num_threads is None else num_threads, len(starts))
    if num_threads <= 1:
        run(0, len(starts))
        return out
    bounds = np.linspace(0, len(starts), num_threads + 1).astype(int)
    with ThreadPoolExecutor(num_threads) as pool:
        for done in [pool.submit(run, bounds[i], bounds[i + 1]) for i in range(num_threads)]:
            done.result()
    return out


# ---------------------------------------------------------------------------------------------
# public API


def rhat(draws: ArrayLike, *, num_threads: int | None = None) -> np.ndarray:
    r"""Rank-normalised split R-hat of each scalar, as ``arviz.rhat`` (its default ``method="rank"``).

    .. math:: \hat R = \max\bigl(\hat R(z), \hat R(z^{\mathrm{fold}})\bigr), \qquad
              \hat R(x) = \sqrt{\frac{B / W + n - 1}{n}},

    with :math:`z` the rank-normalised split chains and :math:`z^{\mathrm{fold}}` those of
    :math:`|\theta - \operatorname{median}\theta|` (see the module docstring).

    Parameters
    ----------
    draws : array_like
        Draws of shape ``(chain, draw, K)``, float32 or float64 (computed in float64).
    num_threads : int, optional
        Threads over blocks of scalars; default: the CPUs available, at most 4. The result does
        not depend on it.

    Returns
    -------
    np.ndarray
        Shape ``(K,)``, float64. NaN for a scalar with a NaN draw, for fewer than 2 chains or
        4 draws, and for a constant scalar (:math:`0/0`), as ArviZ.

    Examples
    --------
    >>> import numpy as np
    >>> from mlgibbs.convergence import rhat
    >>> draws = np.random.default_rng(0).normal(size=(4, 1000, 3))
    >>> bool(np.all(rhat(draws) < 1.01))
    True

    References
    ----------
    Vehtari, Gelman, Simpson, Carpenter & Bürkner (2021), *Bayesian Analysis* 16(2), 667-718.
    """
    return _statistics(draws, frozenset({"rhat"}), num_threads)["rhat"]


def ess_bulk(draws: ArrayLike, *, num_threads: int | None = None) -> np.ndarray:
    r"""Bulk effective sample size of each scalar, as ``arviz.ess(..., method="bulk")``.

    .. math:: \mathrm{ESS} = \frac{S}{\max(\hat\tau, 1/\log_{10} S)}, \qquad
              \hat\tau = -1 + 2 \sum_{k < k^*} \min_{j \le k} P_j + \hat\rho_{2k^*},

    for the rank-normalised split chains :math:`z` (:math:`S` draws), with Geyer's initial positive
    and monotone sequences over the pairs :math:`P_k = \hat\rho_{2k} + \hat\rho_{2k+1}`.

    Parameters
    ----------
    draws : array_like
        Draws of shape ``(chain, draw, K)``, float32 or float64 (computed in float64).
    num_threads : int, optional
        Threads over blocks of scalars; default: the CPUs available, at most 4. The result does
        not depend on it.

    Returns
    -------
    np.ndarray
        Shape ``(K,)``, float64. :math:`S` for a constant scalar; NaN for a scalar with a NaN draw
        or fewer than 4 draws, as ArviZ.

    Examples
    --------
    >>> import numpy as np
    >>> from mlgibbs.convergence import ess_bulk
    >>> draws = np.random.default_rng(0).normal(size=(4, 1000, 3))
    >>> bool(np.all(ess_bulk(draws) > 3000))
    True
    """
    return _statistics(draws, frozenset({"ess_bulk"}), num_threads)["ess_bulk"]


def ess_tail(draws: ArrayLike, *, num_threads: int | None = None) -> np.ndarray:
    r"""Tail effective sample size of each scalar, as ArviZ 0.x's ``arviz.ess(..., method="tail")``.

    .. math:: \mathrm{ESS}_{\mathrm{tail}} = \min\bigl(\mathrm{ESS}(\theta \le q_{0.05}),
              \mathrm{ESS}(\theta \le q_{0.95})\bigr),

    the ESS (as :func:`ess_bulk`, without ranks) of the split-chain indicators, with :math:`q_p`
    the type-7 quantile of all draws. ArviZ 1.x defaults to ``prob=0.89`` (quantiles 0.11, 0.89);
    this is its ``prob=(0.05, 0.95)``.

    Parameters
    ----------
    draws : array_like
        Draws of shape ``(chain, draw, K)``, float32 or float64 (computed in float64).
    num_threads : int, optional
        Threads over blocks of scalars; default: the CPUs available, at most 4. The result does
        not depend on it.

    Returns
    -------
    np.ndarray
        Shape ``(K,)``, float64. NaN for a scalar with a NaN draw or fewer than 4 draws, as ArviZ.

    Examples
    --------
    >>> import numpy as np
    >>> from mlgibbs.convergence import ess_tail
    >>> draws = np.random.default_rng(0).normal(size=(4, 1000, 3))
    >>> bool(np.all(ess_tail(draws) > 1000))
    True
    """
    return _statistics(draws, frozenset({"ess_tail"}), num_threads)["ess_tail"]


def diagnostics(draws: ArrayLike, *, num_threads: int | None = None) -> Diagnostics:
    """R-hat, bulk ESS and tail ESS of each scalar together, sharing the sort of the draws.

    Equal to ``Diagnostics(rhat(draws), ess_bulk(draws), ess_tail(draws))``, in about half their
    time: the draws are sorted once, the folded draws once.

    Parameters
    ----------
    draws : array_like
        Draws of shape ``(chain, draw, K)``, float32 or float64 (computed in float64).
    num_threads : int, optional
        Threads over blocks of scalars; default: the CPUs available, at most 4. The result does
        not depend on it.

    Returns
    -------
    Diagnostics
        Three arrays of shape ``(K,)``.

    Examples
    --------
    >>> import numpy as np
    >>> from mlgibbs.convergence import diagnostics
    >>> result = diagnostics(np.random.default_rng(0).normal(size=(4, 1000, 3)))
    >>> result.rhat.shape, result.ess_bulk.shape, result.ess_tail.shape
    ((3,), (3,), (3,))
    """
    out = _statistics(draws, frozenset({"rhat", "ess_bulk", "ess_tail"}), num_threads)
    return Diagnostics(out["rhat"], out["ess_bulk"], out["ess_tail"])

"""Tests of :class:`mlgibbs.numpyro.MultilevelBlock`: mlgibbs' sweeps as the Gibbs block of a larger model.

What is tested
--------------
1. **The pieces, exactly** (float64): the kernel's data at replaced design columns
   (:meth:`MixedModel.data_for_design`, rows not compressed) gives the same sweep as the model's compressed
   data when the columns are the model's own (sleep study; Penicillin's crossed factors), to rounding;
   :meth:`~MultilevelBlock.to_state` inverts :meth:`~MultilevelBlock.to_sites`; the Huang & Wand auxiliaries
   ``to_sites`` draws have the conditional mean of ``1/a_k``, ``(nu + d) / (2 rate_k)`` (|z| < 4 over 4,000
   draws); :meth:`~MultilevelBlock.log_marginal_likelihood` differs between change points exactly as a dense
   computation of the Gaussian marginal (every location integrated out, 38 x 38) does, with and without
   precision weights; :meth:`~MultilevelBlock.log_likelihood` is SciPy's Gaussian log likelihood of the user's
   parameters on the raw rows.
2. **Errors** name the column or the argument: an unknown column, a group-level predictor, the intercept, a
   wrong length, a non-Gaussian family, a model without a varying slope.
3. **Agreement with NUTS** on sleepstudy with a change point, ``Reaction ~ after + (1 + after | Subject)``,
   ``after = max(Days - tau, 0)``, ``tau ~ Uniform(0, 8)``: plain NUTS on the whole NumPyro model
   (non-centred effects: an independent parametrisation and code path) against (a) NumPyro's
   ``HMCGibbs`` with NUTS on ``tau`` and the block's ``gibbs_fn`` for the rest and (b) a BlackJAX-style
   loop of the user's own Metropolis-Hastings step on ``tau`` (the block's collapsed likelihood, locations
   integrated out) and ``kernel.step``. Compared: ``tau``, ``beta[after]``, the mean intercept,
   ``sigma_y``, both standard deviations and the correlation of the subjects' effects: mean, sd, 10% and 90%
   quantiles, ``z = (a - b) / sqrt(mcse_a^2 + mcse_b^2)`` with ArviZ's ESS-based MCSEs, Bonferroni over the
   56 comparisons at a family-wise 1% (``|z| < 3.75``), after R-hat < 1.01 and bulk and tail ESS >= 400
   (``HMCGibbs``: >= 150, its ``tau`` mixes slowly, see below) in every compared quantity.
   The same update also runs as a ``CustomGibbs`` block of NumPyro's newer ``Gibbs`` (a smoke test: finite
   draws of the right shapes).
4. **Power**: the same loop whose sweeps use the design at ``tau = 2`` whatever ``tau`` is (a Gibbs block
   that ignores the conditioning site) must be rejected by the comparison.

``HMCGibbs`` conditions ``tau`` on every location (NUTS moves it given the subjects' lines), and a change
point is tightly coupled to them: its bulk ESS is about 2% of the draws (4 chains x 12,000 here), against
about 15% for the loop's collapsed move. The loop is the recommended composition for such a parameter
(notebooks/composition.ipynb).
"""

from __future__ import annotations

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr
from scipy import stats

import mlgibbs as mg

numpyro = pytest.importorskip("numpyro")
import numpyro.distributions as dist  # noqa: E402
from numpyro.infer import MCMC, NUTS, HMCGibbs  # noqa: E402

from mlgibbs.numpyro import MultilevelBlock, mixed_numpyro_model  # noqa: E402

FAMILYWISE_ALPHA = 0.01
NUM_COMPARISONS = 2 * 7 * 4     # two samplers against NUTS, 7 quantities, 4 statistics
THRESHOLD = float(stats.norm.ppf(1.0 - FAMILYWISE_ALPHA / (2 * NUM_COMPARISONS)))
MAX_RHAT = 1.01


def _frame():
    return mg.datasets.load_sleepstudy().assign(after=lambda d: (d.Days - 2.0).clip(lower=0))


def _template(dtype=None):
    return mg.Model.from_formula("Reaction ~ after + (1 + after | Subject)", _frame(), dtype=dtype)


def _leaves_close(a, b, tol):
    return max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
               if x.size) < tol


# ------------------------------------------------------------------ 1. the pieces
@pytest.mark.parametrize("case", ["sleepstudy", "penicillin"])
def test_uncompressed_data_gives_the_same_sweep(case):
    with jax.enable_x64(True):
        if case == "sleepstudy":
            model, columns = _template("float64"), {"after": _frame().after.to_numpy()}
        else:
            model = mg.Model.from_formula("diameter ~ 1 + (1 | plate) + (1 | sample)",
                                          mg.datasets.load_penicillin(), dtype="float64")
            columns = {}
        block = MultilevelBlock(model)
        data = block.data(columns)
        assert data.W.shape[0] == model.num_obs
        assert case != "sleepstudy" or model.data.W.shape[0] < model.num_obs     # its cells are compressed
        state = block.kernel.init(jax.random.key(0), model.data)
        for i in range(5):
            key = jax.random.key(i + 1)
            compressed = block.kernel.step(key, state, model.data)
            assert _leaves_close(compressed, block.kernel.step(key, state, data), 1e-8)
            state = compressed


def test_sites_round_trip_and_auxiliaries():
    with jax.enable_x64(True):
        block = MultilevelBlock(_template("float64"))
        assert set(block.sites) == {"sigma_y", "beta", "gamma_Subject", "L_Subject[Intercept,after]",
                                    "a_Subject[Intercept,after]", "alpha_Subject"}
        state = block.kernel.init(jax.random.key(0), block.data())
        sites = block.to_sites(jax.random.key(1), state)
        assert set(sites) == set(block.sites)
        assert _leaves_close(block.to_state(sites), state, 1e-9)
        # a_k | Sigma ~ InvGamma((nu + d)/2, nu (Sigma^-1)_kk + 1/A_k^2): E[1/a_k] = shape / rate
        draws = jax.vmap(lambda k: block.to_sites(k, state)["a_Subject[Intercept,after]"])(
            jax.random.split(jax.random.key(2), 4000))
        prior = block.model.priors["Subject"][0]
        cov = block.model.to_user(state)["cov_Subject"]
        rate = float(prior.df) * np.diagonal(np.linalg.inv(cov)) + 1.0 / prior.scales(2) ** 2
        shape = 0.5 * (float(prior.df) + 2)
        inv = 1.0 / np.asarray(draws)
        z = (inv.mean(axis=0) - shape / rate) / (np.sqrt(shape) / rate / np.sqrt(inv.shape[0]))
        assert np.all(np.abs(z) < 4.0), z


def _dense_log_marginal(model, user, tau, weights=None):
    """log p(y | tau, Sigma, sigma_y) up to a constant: every location (beta, gamma, b) integrated out under
    its flat / Gaussian prior, by a dense (2 + 2J)-dimensional Gaussian integral."""
    days = _frame().Days.to_numpy().astype(float)
    after = np.maximum(days - tau, 0.0)
    y, codes = model.y, np.asarray(model.factors[0].codes)
    n, J = y.shape[0], len(model.factors[0].labels)
    W = np.zeros((n, 2 + 2 * J))
    W[:, 0] = after                                   # beta[after]; column 1 is gamma (no rows)
    W[np.arange(n), 2 + 2 * codes] = 1.0
    W[np.arange(n), 3 + 2 * codes] = after
    var_y = user["sigma_y"] ** 2
    P = np.linalg.inv(user["cov_Subject"])
    w = np.ones(n) if weights is None else np.asarray(weights, np.float64)
    Q, lin = (W.T * w) @ W / var_y, (W.T * w) @ y / var_y
    e = np.array([1.0, 0.0])
    for j in range(J):     # (b_j - e gamma)' P (b_j - e gamma)
        idx = [2 + 2 * j, 3 + 2 * j]
        Q[np.ix_(idx, idx)] += P
        Q[np.ix_(idx, [1])] -= (P @ e)[:, None]
        Q[np.ix_([1], idx)] -= (P @ e)[None, :]
        Q[1, 1] += e @ P @ e
    return 0.5 * lin @ np.linalg.solve(Q, lin) - 0.5 * np.linalg.slogdet(Q)[1] - 0.5 * (w * y) @ y / var_y


def test_log_marginal_likelihood_matches_a_dense_computation():
    with jax.enable_x64(True):
        block = MultilevelBlock(_template("float64"))
        days = jnp.asarray(_frame().Days.to_numpy(), jnp.float64)
        state = block.kernel.init(jax.random.key(0), block.data())
        for i in range(10):
            state = block.kernel.step(jax.random.key(i + 1), state, block.data())
        user = block.model.to_user(state)
        taus = [0.3, 1.5, 2.7, 4.0, 6.5]
        ours = np.array([float(block.log_marginal_likelihood(state, block.data({"after": jnp.maximum(days - t, 0)})))
                         for t in taus])
        dense = np.array([_dense_log_marginal(block.model, user, t) for t in taus])
        assert np.ptp(ours) > 10.0                    # the change point matters
        np.testing.assert_allclose(ours - ours[0], dense - dense[0], atol=1e-7)
        # precision weights (a scale mixture): y_i ~ N(mu_i, sigma_y^2 / w_i)
        w = np.random.default_rng(0).gamma(2.0, 0.5, size=days.shape[0])
        ours = np.array([float(block.log_marginal_likelihood(
            state, block.data({"after": jnp.maximum(days - t, 0)}, weights=w))) for t in taus])
        dense = np.array([_dense_log_marginal(block.model, user, t, w) for t in taus])
        np.testing.assert_allclose(ours - ours[0], dense - dense[0], atol=1e-7)


# ------------------------------------------------------------------ 2. errors
def test_errors_name_the_column_or_argument():
    model = _template()
    block = MultilevelBlock(model)
    with pytest.raises(ValueError, match="'afterr'.*expected one of \\['after'\\]"):
        block.data({"afterr": np.zeros(180)})
    with pytest.raises(ValueError, match="'Intercept'.*intercept"):
        block.data({"Intercept": np.ones(180)})
    with pytest.raises(ValueError, match="'after' has shape \\(179,\\); expected \\(180,\\)"):
        block.data({"after": np.zeros(179)})
    df = _frame().assign(u=lambda d: d.Subject.astype(int) % 3)
    model_u = mg.Model.from_formula("Reaction ~ after + u + (1 + after | Subject)", df)
    with pytest.raises(ValueError, match="'u'.*group-level predictor of 'Subject'"):
        MultilevelBlock(model_u).data({"u": np.zeros(180)})
    with pytest.raises(ValueError, match="num_sweeps"):
        MultilevelBlock(model, num_sweeps=0)
    seed = mg.Model.from_formula("log_radon ~ floor + (1 | county)", mg.datasets.load_radon())
    with pytest.raises(TypeError, match="expected a MixedModel, got Model; build it with mg.MixedModel"):
        MultilevelBlock(seed)
    assert "sigma_county[Intercept]" in MultilevelBlock(
        mg.MixedModel.from_formula("log_radon ~ floor + (1 | county)", mg.datasets.load_radon())).sites
    contraception = mg.Model.from_formula("use ~ urban + (1 + urban | district)",
                                          mg.datasets.load_contraception(), family="bernoulli")
    with pytest.raises(NotImplementedError, match="Gaussian family.*'bernoulli'"):
        MultilevelBlock(contraception)


# ------------------------------------------------------------------ 3. agreement with NUTS
TAU_MAX = 8.0


def _after(days):
    return lambda sites: {"after": jnp.maximum(days - sites["tau"], 0.0)}


def _quantities(tau, user) -> xr.Dataset:
    cov = np.asarray(user["cov_Subject"], np.float64)
    sd = np.sqrt(np.diagonal(cov, axis1=-2, axis2=-1))
    out = {"tau": tau, "beta_after": user["beta"][..., 0], "intercept": user["gamma_Subject"][..., 0],
           "sigma_y": user["sigma_y"], "sd_intercept": sd[..., 0], "sd_after": sd[..., 1],
           "corr": cov[..., 0, 1] / (sd[..., 0] * sd[..., 1])}
    return xr.Dataset({k: (("chain", "draw"), np.asarray(v, np.float64)) for k, v in out.items()})


def _user_from_sites(samples):
    L = np.asarray(samples["L_Subject[Intercept,after]"], np.float64)
    return {"beta": samples["beta"], "gamma_Subject": samples["gamma_Subject"], "sigma_y": samples["sigma_y"],
            "cov_Subject": L @ np.swapaxes(L, -1, -2)}


@pytest.fixture(scope="module")
def setup():
    model = _template()
    block = MultilevelBlock(model)
    days = jnp.asarray(_frame().Days.to_numpy(), model.dtype)
    return model, block, days


@pytest.fixture(scope="module")
def nuts_reference(setup):
    model, _, days = setup
    whole = mixed_numpyro_model(model, centered=False)
    after = _after(days)

    def numpyro_model():
        tau = numpyro.sample("tau", dist.Uniform(0.0, TAU_MAX))
        whole(after({"tau": tau}))

    mcmc = MCMC(NUTS(numpyro_model), num_warmup=1000, num_samples=1500, num_chains=4,
                chain_method="vectorized", progress_bar=False)
    mcmc.run(jax.random.key(101), extra_fields=("diverging",))
    samples = mcmc.get_samples(group_by_chain=True)
    assert float(np.mean(mcmc.get_extra_fields()["diverging"])) < 0.01
    user = {k: samples[k] for k in ("beta", "gamma_Subject", "sigma_y", "cov_Subject")}
    return _quantities(samples["tau"], user)


def _loop_sampler(block, days, *, num_chains, num_steps, burn, wrong_design=False):
    """A BlackJAX-style loop: the user's Metropolis-Hastings step on tau (locations integrated out), then
    the block's kernel step. ``wrong_design``: the sweeps use the design at tau = 2 whatever tau is (the
    template's: a block that ignores the conditioning site; the power case)."""
    def data_at(tau):
        return block.data({"after": jnp.maximum(days - tau, 0.0)})

    def step(carry, key):
        state, tau = carry
        key_prop, key_acc, key_sweep = jax.random.split(key, 3)
        prop = tau + 0.7 * jax.random.normal(key_prop, (), days.dtype)
        inside = (prop > 0.0) & (prop < TAU_MAX)
        log_ratio = (block.log_marginal_likelihood(state, data_at(jnp.clip(prop, 0.0, TAU_MAX)))
                     - block.log_marginal_likelihood(state, data_at(tau)))
        tau = jnp.where(inside & (jnp.log(jax.random.uniform(key_acc, (), days.dtype)) < log_ratio), prop, tau)
        state = block.kernel.step(key_sweep, state, data_at(jnp.asarray(2.0, days.dtype) if wrong_design else tau))
        return (state, tau), (tau, state)

    def run(key):
        key_tau, key_init, key_steps = jax.random.split(key, 3)
        tau = jax.random.uniform(key_tau, (), days.dtype, 0.5, 4.0)
        state = block.kernel.init(key_init, data_at(tau))
        _, (taus, states) = jax.lax.scan(step, (state, tau), jax.random.split(key_steps, num_steps))
        return jax.tree.map(lambda a: a[burn:], (taus, states))

    taus, states = jax.jit(jax.vmap(run))(jax.random.split(jax.random.key(7), num_chains))
    return _quantities(taus, block.model.to_user(states))


def _estimates(draws: xr.Dataset) -> dict:
    """Statistic -> quantity -> (estimate, MCSE), ArviZ's ESS-based MCSEs (both ArviZ lines)."""
    flat = {k: draws[k].values.reshape(-1) for k in draws.data_vars}
    mcse = {"mean": az.mcse(draws, method="mean"), "sd": az.mcse(draws, method="sd")}
    estimate = {"mean": lambda a: a.mean(), "sd": lambda a: a.std(ddof=1)}
    for prob in (0.1, 0.9):
        mcse[f"q{prob:g}"] = az.mcse(draws, method="quantile", prob=prob)
        estimate[f"q{prob:g}"] = lambda a, prob=prob: np.quantile(a, prob)
    return {stat: {k: (float(estimate[stat](flat[k])), float(mcse[stat][k])) for k in flat} for stat in mcse}


def _compare(label, draws, reference, min_ess):
    rhat, bulk, tail = az.rhat(draws), az.ess(draws, method="bulk"), az.ess(draws, method="tail")
    problems = [f"{k}: R-hat {float(rhat[k]):.4f}, bulk ESS {float(bulk[k]):.0f}, tail ESS {float(tail[k]):.0f}"
                for k in draws.data_vars
                if not (float(rhat[k]) < MAX_RHAT and float(bulk[k]) >= min_ess and float(tail[k]) >= min_ess)]
    assert not problems, f"{label}: not converged enough to compare: " + "; ".join(problems)
    ours, theirs = _estimates(draws), _estimates(reference)
    failures, worst = [], (0.0, "")
    for stat in ours:
        for k, (ea, sa) in ours[stat].items():
            eb, sb = theirs[stat][k]
            z = (ea - eb) / np.sqrt(sa**2 + sb**2)
            if abs(z) > worst[0]:
                worst = (abs(z), f"{stat} of {k}")
            if not abs(z) < THRESHOLD:
                failures.append(f"{stat} of {k}: {ea:.4g} (mcse {sa:.2g}) vs NUTS {eb:.4g} (mcse {sb:.2g}), "
                                f"z = {z:.2f}")
    print(f"\n{label}: max |z| {worst[0]:.2f} ({worst[1]}), threshold {THRESHOLD:.2f}; min bulk ESS "
          f"{min(float(bulk[k]) for k in draws.data_vars):.0f} of {draws.sizes['chain'] * draws.sizes['draw']}")
    return failures


def test_user_loop_agrees_with_nuts(setup, nuts_reference):
    _, block, days = setup
    draws = _loop_sampler(block, days, num_chains=4, num_steps=3500, burn=500)
    failures = _compare("loop", draws, nuts_reference, min_ess=400)
    assert not failures, "the loop against NUTS:\n" + "\n".join(failures)


def test_hmcgibbs_agrees_with_nuts(setup, nuts_reference):
    model, block, days = setup
    after = _after(days)

    def numpyro_model():
        tau = numpyro.sample("tau", dist.Uniform(0.0, TAU_MAX))
        block(columns=after({"tau": tau}))

    kernel = HMCGibbs(NUTS(numpyro_model), gibbs_fn=block.gibbs_fn(columns=after), gibbs_sites=list(block.sites))
    mcmc = MCMC(kernel, num_warmup=1000, num_samples=12000, num_chains=4, chain_method=jax.vmap,
                progress_bar=False)
    mcmc.run(jax.random.key(3))
    samples = mcmc.get_samples(group_by_chain=True)
    draws = _quantities(samples["tau"], _user_from_sites(samples))
    failures = _compare("HMCGibbs", draws, nuts_reference, min_ess=150)
    assert not failures, "HMCGibbs against NUTS:\n" + "\n".join(failures)


# ------------------------------------------------------------------ 4. power
def test_a_block_ignoring_the_change_point_is_rejected(setup, nuts_reference):
    _, block, days = setup
    draws = _loop_sampler(block, days, num_chains=4, num_steps=3500, burn=500, wrong_design=True)
    failures = _compare("loop with the starting design", draws, nuts_reference, min_ess=100)
    assert failures, "a Gibbs block that ignores the change point was not detected"


@pytest.mark.skipif(not hasattr(numpyro.infer, "CustomGibbs"), reason="NumPyro without Gibbs / CustomGibbs")
def test_gibbs_fn_as_a_custom_gibbs_block(setup):
    """NumPyro's newer composite ``Gibbs([(CustomGibbs(gibbs_fn), sites), (NUTS, None)])`` takes the same update:
    it runs, every site is finite, and the block's sites keep their shapes."""
    from numpyro.infer import CustomGibbs, Gibbs

    model, block, days = setup
    after = _after(days)

    def numpyro_model():
        tau = numpyro.sample("tau", dist.Uniform(0.0, TAU_MAX))
        block(columns=after({"tau": tau}))

    kernel = Gibbs([(CustomGibbs(block.gibbs_fn(columns=after)), list(block.sites)),
                    (NUTS(numpyro_model, find_heuristic_step_size=False), None)])
    mcmc = MCMC(kernel, num_warmup=50, num_samples=50, progress_bar=False)
    mcmc.run(jax.random.key(0))
    samples = mcmc.get_samples()
    assert samples["alpha_Subject"].shape == (50, 18, 2) and samples["tau"].shape == (50,)
    assert all(np.all(np.isfinite(np.asarray(v))) for v in samples.values())
    assert 0.0 < float(samples["tau"].min()) and float(samples["tau"].max()) < TAU_MAX


def test_log_likelihood_matches_scipy():
    """``log_likelihood`` of a kernel state on the data at a change point: the Gaussian log likelihood of the
    user's parameters from the raw rows (SciPy), with and without weights (whose ``sum log w_i / 2`` is left out)."""
    with jax.enable_x64(True):
        block = MultilevelBlock(_template("float64"))
        frame = _frame()
        after = np.maximum(frame.Days.to_numpy() - 1.3, 0.0)
        state = block.kernel.init(jax.random.key(0), block.data())
        user = block.model.to_user(state)
        codes = np.asarray(block.model.factors[0].codes)
        alpha = user["alpha_Subject"]
        mu = user["beta"][0] * after + alpha[codes, 0] + alpha[codes, 1] * after
        w = np.random.default_rng(1).gamma(2.0, 0.5, size=after.shape[0])
        for weights in (None, w):
            scale = user["sigma_y"] / np.sqrt(np.ones_like(w) if weights is None else weights)
            expected = stats.norm.logpdf(block.model.y, mu, scale).sum()
            if weights is not None:
                expected -= 0.5 * np.log(weights).sum()
            ours = float(block.log_likelihood(state, block.data({"after": after}, weights=weights)))
            np.testing.assert_allclose(ours, expected, rtol=1e-10)

"""The runner: :func:`mlgibbs.sample` and :func:`mlgibbs.sample_chains`.

What is tested
--------------
* Determinism: the same key gives bit-identical draws in two calls; ``jax.random.PRNGKey(0)`` and
  ``jax.random.key(0)`` (the same key bits) give the same draws; different keys give different draws.
* dtypes: a float32 model samples in float32 (its data pytree and kernel states) and a float64
  model (built and sampled under ``jax.enable_x64(True)``) in float64; both report the draws in
  float64, mapped back from the kernel's coordinates in float64; the float32 and float64 posterior
  means of the radon model agree within Monte Carlo error.
* An int seed is accepted as ``jax.random.key(seed)``; anything else is a TypeError that says what
  to pass.
* Thinning keeps ``num_draws`` draws, each ``thin`` sweeps after the previous one, the last being
  the final state; ``num_chains=1`` works.
* Continuation from an InferenceData starts from its last draw, and is refused (ValueError) when
  the stored draws lack a block of the model.
* ``vmap`` over chains equals a Python loop of single chains with the documented chain keys
  ``jax.random.split(rng_key, num_chains)[c]``; a second :func:`~mlgibbs.sample_chains` call with the
  same configuration does not retrace the kernel.

Key derivation
--------------
Several tests reproduce draws sweep by sweep with ``kernel.step``; they pin the key derivation of
``mlgibbs/run.py``, which makes runs and their continuations reproducible::

    key_init, key_run, key_ppc = split(rng_key, 3)                  # sample()
    chain_keys = split(key_run, num_chains); init_keys = split(key_init, num_chains)
    sweep i of chain c (warm-up included, from 0) uses fold_in(chain_keys[c], i)
    kept draw d is the state after sweep num_warmup + (d + 1) * thin - 1

The kernels run in the model's coordinates (``model.data``); the stored draws are their image in the
user's (``model.to_user``), so a reproduction maps a stored draw in (``model.to_kernel``), steps, and
maps back. A continuation therefore checks that every continued draw is the kernel step, with these
keys, of the previous one, starting from the last stored draw.

Tolerances
----------
Reproductions with the same keys differ only by float32 rounding between differently compiled
programs (a ``vmap``-ed loop vs. one jitted step) and by the float32 rounding of a stored draw mapped
into the kernel's coordinates; the relative error of a sweep is a small multiple of eps = 1.2e-7 and
the Gibbs map does not amplify it over the few sweeps compared, so ``RTOL = 1e-5`` (about 100 eps)
with ``ATOL = 1e-5`` for entries near zero.

The float32-vs-float64 comparison is statistical: two independent runs (different keys) of
4 x 950 draws (thinned by 5, after 250 burn-in sweeps); for each of 8 scalar summaries the difference of the posterior means is divided by
``sqrt(mcse_32^2 + mcse_64^2)`` (ESS-based Monte Carlo standard errors from ArviZ) and compared with
the Bonferroni threshold ``z = Phi^{-1}(1 - 0.001 / (2 * 8)) = 3.84``: a false alarm rate of 0.1 %
for the whole family when both runs target the same posterior.
"""

from __future__ import annotations

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import mlgibbs as mg
from mlgibbs.arviz import groups

RTOL = 1e-5
ATOL = 1e-5
FIELDS = ("alpha", "beta", "gamma", "sigma_y", "sigma_alpha")
FORMULA = "log_radon ~ floor + log_uranium + (1 | county)"
# thin=5: the five-step sampler mixes slowly for sigma_alpha on radon (ESS about 70 from 4 x 1000
# consecutive sweeps, about 400 with thin=5); the sweeps are cheap, compilation dominates the cost.
# No warmup inside these runs (it would double the compiled code); the Monte Carlo comparison drops
# the first BURN_IN draws itself. Warmup is exercised by the thinning and vmap tests.
SETTINGS = dict(num_chains=4, num_warmup=0, num_draws=1000, thin=5, log_likelihood=False)
BURN_IN = 50
FAMILY_ALPHA = 1e-3


@pytest.fixture(scope="module")
def radon():
    return mg.datasets.load_radon()


@pytest.fixture(scope="module")
def model(radon):
    return mg.Model.from_formula(FORMULA, radon)


@pytest.fixture(scope="module")
def kernel(model):
    return mg.gibbs(model)


@pytest.fixture(scope="module")
def jit_step(kernel):
    return jax.jit(kernel.step)


@pytest.fixture(scope="module")
def run_a(model):
    return mg.sample(jax.random.key(0), model, **SETTINGS)


@pytest.fixture(scope="module")
def run_64(radon):
    with jax.enable_x64(True):
        model64 = mg.Model.from_formula(FORMULA, radon, dtype=np.float64)
        assert all(leaf.dtype == jnp.float64 for leaf in jax.tree.leaves(model64.data))
        return mg.sample(jax.random.key(7), model64, **SETTINGS)


def draw_of(idata, chain, draw) -> mg.GibbsState:
    """One stored draw (the user's coordinates, float64 NumPy)."""
    p = idata.posterior
    return mg.GibbsState(*(np.asarray(p[f].values[chain, draw]) for f in FIELDS))


def to_kernel(model, state):
    return jax.tree.map(lambda a: jnp.asarray(a, model.dtype), model.to_kernel(state))


def assert_state_close(actual, desired, err_msg=""):
    for field in FIELDS:
        np.testing.assert_allclose(np.asarray(getattr(actual, field)), np.asarray(getattr(desired, field)),
                                   rtol=RTOL, atol=ATOL, err_msg=f"{err_msg} {field}")


# --------------------------------------------------------------------------- determinism
def test_same_key_gives_bit_identical_draws(model, run_a):
    again = mg.sample(jax.random.key(0), model, **SETTINGS)
    for name in FIELDS:
        np.testing.assert_array_equal(again.posterior[name].values, run_a.posterior[name].values,
                                      err_msg=name)
    np.testing.assert_array_equal(again.sample_stats["lp"].values, run_a.sample_stats["lp"].values)


def test_raw_and_typed_keys_are_both_accepted(model, run_a):
    """``PRNGKey(0)`` (raw uint32) and ``key(0)`` (typed) hold the same bits: the same draws."""
    raw = mg.sample(jax.random.PRNGKey(0), model, **SETTINGS)
    for name in FIELDS:
        np.testing.assert_array_equal(raw.posterior[name].values, run_a.posterior[name].values,
                                      err_msg=name)


def test_different_keys_give_different_draws(model, run_a):
    other = mg.sample(jax.random.key(1), model, **SETTINGS)
    for name in FIELDS:
        a, b = run_a.posterior[name].values, other.posterior[name].values
        assert a.shape == b.shape
        # continuous draws from two independent streams never coincide
        assert np.mean(a == b) < 1e-3, name


def test_int_seed(model, run_a):
    """An int is the seed of ``jax.random.key``: the same draws as ``key(0)``."""
    seeded = mg.sample(0, model, **SETTINGS)
    for name in FIELDS:
        np.testing.assert_array_equal(seeded.posterior[name].values, run_a.posterior[name].values)


@pytest.mark.parametrize("bad", [1.5, "0", None, True])
def test_bad_key_says_what_to_pass(model, bad):
    with pytest.raises(TypeError, match=r"jax.random.key\(0\).*or an int seed"):
        mg.sample(bad, model, num_draws=2, num_warmup=0)


# --------------------------------------------------------------------------- dtypes
def test_float32_model_samples_in_float32_and_reports_float64(model, run_a):
    assert model.dtype == np.float32
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(model.data))
    state = mg.gibbs(model).init(jax.random.key(0), model.data)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(state))
    for name in FIELDS:
        assert run_a.posterior[name].dtype == np.float64, name
    assert run_a.sample_stats["lp"].dtype == np.float64
    assert run_a.posterior["alpha"].shape == (4, 1000, 85)


def test_log_likelihood_can_be_left_out(run_a):
    assert "posterior" in groups(run_a)
    assert "log_likelihood" not in groups(run_a)
    assert "posterior_predictive" not in groups(run_a)


def test_float64_model_gives_float64(run_64):
    for name in FIELDS:
        assert run_64.posterior[name].dtype == np.float64, name
    assert run_64.sample_stats["lp"].dtype == np.float64
    assert run_64.observed_data["log_radon"].dtype == np.float64
    assert run_64.posterior["alpha"].shape == (4, 1000, 85)


def _summaries(idata):
    """8 scalar summaries: beta, gamma (2), the two scales and three counties' alpha."""
    post = idata.posterior
    counties = ["AITKIN", "HENNEPIN", "LAC QUI PARLE"]      # 4, 105 and 2 houses
    out = {
        "beta[floor]": post["beta"].sel(predictor="floor"),
        "gamma[Intercept]": post["gamma"].sel(group_predictor="Intercept"),
        "gamma[log_uranium]": post["gamma"].sel(group_predictor="log_uranium"),
        "sigma_y": post["sigma_y"],
        "sigma_alpha": post["sigma_alpha"],
    }
    out.update({f"alpha[{c}]": post["alpha"].sel(county=c) for c in counties})
    return {k: v.values[:, BURN_IN:].astype(np.float64) for k, v in out.items()}


def test_float32_and_float64_posteriors_agree(run_a, run_64):
    s32, s64 = _summaries(run_a), _summaries(run_64)
    z_crit = stats.norm.ppf(1 - FAMILY_ALPHA / (2 * len(s32)))
    failures = []
    for name in s32:
        mean32, mean64 = s32[name].mean(), s64[name].mean()
        mcse32 = float(az.mcse(s32[name], method="mean"))
        mcse64 = float(az.mcse(s64[name], method="mean"))
        ess = min(float(az.ess(s32[name])), float(az.ess(s64[name])))
        assert ess > 100, f"{name}: ESS {ess:.0f} too small for a reliable Monte Carlo error"
        z = (mean32 - mean64) / np.hypot(mcse32, mcse64)
        if abs(z) > z_crit:
            failures.append(f"{name}: float32 {mean32:.5f} vs float64 {mean64:.5f}, z = {z:.2f}")
    assert not failures, f"|z| > {z_crit:.2f}: " + "; ".join(failures)


# --------------------------------------------------------------------------- thinning, one chain
def test_thinning_and_single_chain(model, jit_step):
    """A one-chain thinned run: each kept draw is ``thin`` kernel steps after the previous one."""
    key = jax.random.key(3)
    num_draws, thin = 5, 3
    idata = mg.sample(key, model, num_chains=1, num_warmup=0, num_draws=num_draws, thin=thin,
                      log_likelihood=False, sampler="gibbs", check_convergence=False)
    assert idata.posterior.sizes["chain"] == 1
    assert idata.posterior.sizes["draw"] == num_draws
    assert idata.posterior["alpha"].shape == (1, num_draws, 85)
    np.testing.assert_array_equal(idata.posterior["draw"].values, np.arange(num_draws))

    _, key_run, _ = jax.random.split(key, 3)
    chain_key = jax.random.split(key_run, 1)[0]
    state = to_kernel(model, draw_of(idata, 0, 0))
    for d in range(1, num_draws):
        for i in range(d * thin, (d + 1) * thin):
            state = jit_step(jax.random.fold_in(chain_key, i), state, model.data)
        assert_state_close(draw_of(idata, 0, d), model.to_user(state), err_msg=f"draw {d}")
    # the last draw is the final state, which last_state returns
    assert_state_close(jax.tree.map(lambda a: a[0], mg.last_state(idata)), model.to_user(state))


# --------------------------------------------------------------------------- continuation
def test_last_state_is_the_last_draw(model, run_a):
    last = mg.last_state(run_a, model)
    assert type(last) is mg.GibbsState
    for field in FIELDS:
        np.testing.assert_array_equal(np.asarray(getattr(last, field)),
                                      run_a.posterior[field].values[:, -1])
        assert getattr(last, field).dtype == np.float64


def test_continuation_starts_from_the_last_draw(model, jit_step, run_a):
    key = jax.random.key(5)
    num_draws = 3
    more = mg.sample(key, model, initial_state=run_a, num_chains=4, num_warmup=0,
                     num_draws=num_draws, log_likelihood=False, sampler="gibbs", check_convergence=False)
    assert more.posterior["alpha"].shape == (4, num_draws, 85)
    # the continuation goes on in the key's stream: its sweep d is sweep num_sweeps + d of the chain
    done = run_a.posterior.attrs["num_sweeps"]
    assert done == run_a.posterior.attrs["num_warmup"] + run_a.posterior.sizes["draw"] * run_a.posterior.attrs["thin"]
    assert more.posterior.attrs["num_sweeps"] == done + num_draws
    _, key_run, _ = jax.random.split(key, 3)
    for c, chain_key in enumerate(jax.random.split(key_run, 4)):
        state = to_kernel(model, draw_of(run_a, c, -1))
        for d in range(num_draws):
            state = jit_step(jax.random.fold_in(chain_key, done + d), state, model.data)
            assert_state_close(draw_of(more, c, d), model.to_user(state), err_msg=f"chain {c} draw {d}")


def test_continuation_needs_every_block(model, run_a):
    """Draws stored without some blocks (``var_names``) cannot seed a continuation: a ValueError
    naming the missing blocks, before anything is compiled."""
    post = run_a.posterior
    partial = mg.to_inference_data(model, mg.GibbsState(alpha=None, beta=post["beta"].values, gamma=None,
                                                        sigma_y=post["sigma_y"].values, sigma_alpha=None))
    with pytest.raises(ValueError, match="alpha"):
        mg.sample(jax.random.key(0), model, initial_state=partial, num_warmup=0, num_draws=2)


# --------------------------------------------------------------------------- vmap over chains
def test_chain_keys_do_not_depend_on_the_number_of_chains():
    """The contract "chain c uses split(rng_key, num_chains)[c] whatever the number of chains"
    needs the first keys of a split not to depend on its length (partitionable threefry)."""
    key = jax.random.key(42)
    four = jax.random.key_data(jax.random.split(key, 4))
    for n in (1, 2, 3):
        np.testing.assert_array_equal(jax.random.key_data(jax.random.split(key, n)), four[:n])


def test_vmap_over_chains_equals_loop_of_single_chains(kernel, jit_step, model, run_a):
    key = jax.random.key(6)
    num_chains, num_warmup, num_draws, thin = 4, 3, 4, 2
    traces = []

    def counted_step(rng_key, state, data):
        traces.append(1)                      # runs at trace time only
        return kernel.step(rng_key, state, data)

    counted = mg.SamplingAlgorithm(kernel.init, counted_step)
    initial = to_kernel(model, mg.GibbsState(*(run_a.posterior[f].values[:, 0] for f in FIELDS)))
    draws, last = mg.sample_chains(key, counted, initial, model.data, num_draws=num_draws,
                                   num_warmup=num_warmup, thin=thin)
    # a second run of the same configuration reuses the compiled program
    num_traces = len(traces)
    other, _ = mg.sample_chains(jax.random.key(60), counted, last, model.data, num_draws=num_draws,
                                num_warmup=num_warmup, thin=thin)
    assert len(traces) == num_traces, "sample_chains retraced the kernel for an identical configuration"
    assert not np.array_equal(np.asarray(other.sigma_y), np.asarray(draws.sigma_y))
    assert draws.alpha.shape == (num_chains, num_draws, 85) and draws.sigma_y.shape == (num_chains, num_draws)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(draws))
    for field in FIELDS:      # the last kept draw is the final state, exactly
        np.testing.assert_array_equal(np.asarray(getattr(draws, field))[:, -1],
                                      np.asarray(getattr(last, field)))
    for c in range(num_chains):
        chain_key = jax.random.split(key, num_chains)[c]
        state = jax.tree.map(lambda a: a[c], initial)
        i = 0
        for _ in range(num_warmup):
            state = jit_step(jax.random.fold_in(chain_key, i), state, model.data)
            i += 1
        for d in range(num_draws):
            for _ in range(thin):
                state = jit_step(jax.random.fold_in(chain_key, i), state, model.data)
                i += 1
            assert_state_close(jax.tree.map(lambda a: a[c, d], draws), state, err_msg=f"chain {c} draw {d}")
        assert_state_close(jax.tree.map(lambda a: a[c], last), state, err_msg=f"chain {c} last")


@pytest.mark.slow
def test_vmap_over_chains_equals_loop_float64(radon):
    """The same in float64, where the agreement must be tight (1e-12 relative)."""
    key = jax.random.key(8)
    with jax.enable_x64(True):
        model64 = mg.Model.from_formula(FORMULA, radon, dtype=np.float64)
        kernel = mg.gibbs(model64)
        step = jax.jit(kernel.step)
        initial = jax.vmap(kernel.init, in_axes=(0, None))(jax.random.split(jax.random.key(9), 3),
                                                            model64.data)
        draws, _ = mg.sample_chains(key, kernel, initial, model64.data, num_draws=5, num_warmup=2)
        assert draws.alpha.dtype == jnp.float64
        for c in range(3):
            state = jax.tree.map(lambda a: a[c], initial)
            chain_key = jax.random.split(key, 3)[c]
            for i in range(2):
                state = step(jax.random.fold_in(chain_key, i), state, model64.data)
            for d in range(5):
                state = step(jax.random.fold_in(chain_key, 2 + d), state, model64.data)
                for field in FIELDS:
                    np.testing.assert_allclose(np.asarray(getattr(draws, field))[c, d],
                                               np.asarray(getattr(state, field)), rtol=1e-12, atol=1e-14)

"""The functional core: kernels, states and updates as pure, composable JAX functions.

What is tested
--------------
* ``mg.gibbs(model)`` is a :class:`~mlgibbs.SamplingAlgorithm` NamedTuple with pure ``init`` and
  ``step``; the state is a :class:`~mlgibbs.GibbsState` NamedTuple pytree whose fields are all
  documented, with ``None`` for the blocks a model does not have.
* ``jax.jit(kernel.step)`` equals the un-jitted step; the step runs inside a user's own
  ``lax.scan``; ``jax.vmap`` works over whole data sets (stacked ``model.data`` pytrees, and
  :func:`mlgibbs.sufficient_statistics` over simulated responses).
* A jitted function calling ``step`` is traced once, whatever the key, state or data values
  (the same shapes and dtypes): no retracing from weak types or Python-side state.
* The five updates are public, each redraws only its own field, and :func:`mlgibbs.compose`
  equals applying them in turn with the split keys (and equals ``kernel.step``).

Tolerances
----------
No sampling error is involved: the same key gives the same random numbers, so the results
differ only by float32 rounding between differently compiled programs (eager op-by-op dispatch,
one fused jit, a ``scan`` body, a ``vmap``-ed batch). One sweep is a few hundred floating-point
operations on well-conditioned quantities (the ``p x p`` and ``q x q`` precision matrices of the
radon model have condition numbers below 1e3), so the relative error of each output is a small
multiple of float32's eps = 1.2e-7; ``RTOL = 1e-5`` leaves a margin of about 100 eps, and an
absolute ``ATOL = 1e-6`` covers entries near zero. Results computed by the same program
(eager vs. eager) must be bit-identical.
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mlgibbs as mg
from mlgibbs.priors import Normal, Uniform

RTOL = 1e-5
ATOL = 1e-6
NUM_COUNTIES = 85
FIELDS = ("alpha", "beta", "gamma", "sigma_y", "sigma_alpha")


@pytest.fixture(scope="module")
def radon():
    return mg.datasets.load_radon()


@pytest.fixture(scope="module")
def model(radon):
    return mg.Model.from_formula("log_radon ~ floor + log_uranium + (1 | county)", radon)


@pytest.fixture(scope="module")
def kernel(model):
    return mg.gibbs(model)


@pytest.fixture(scope="module")
def jit_step(kernel):
    return jax.jit(kernel.step)


@pytest.fixture(scope="module")
def init_state(kernel, model):
    return jax.jit(kernel.init)(jax.random.key(0), model.data)


@pytest.fixture(scope="module")
def state(jit_step, init_state, model):
    """A state after one jitted sweep from ``init`` (so all blocks are draws of the sampler)."""
    return jit_step(jax.random.key(1), init_state, model.data)


def assert_states_close(actual, desired, rtol=RTOL, atol=ATOL):
    assert type(actual) is type(desired)
    for field in FIELDS:
        a, d = getattr(actual, field), getattr(desired, field)
        assert (a is None) == (d is None), field
        if a is not None:
            np.testing.assert_allclose(np.asarray(a), np.asarray(d), rtol=rtol, atol=atol, err_msg=field)


def assert_states_equal(actual, desired):
    for field in FIELDS:
        a, d = getattr(actual, field), getattr(desired, field)
        assert (a is None) == (d is None), field
        if a is not None:
            np.testing.assert_array_equal(np.asarray(a), np.asarray(d), err_msg=field)


# --------------------------------------------------------------------------- kernel and state types
def test_kernel_is_a_namedtuple_of_pure_functions(kernel):
    assert isinstance(kernel, mg.SamplingAlgorithm)
    assert isinstance(kernel, tuple) and hasattr(type(kernel), "_fields")
    assert type(kernel)._fields[:2] == ("init", "step")
    init, step = kernel[:2]
    assert init is kernel.init and step is kernel.step
    assert list(inspect.signature(kernel.init).parameters) == ["rng_key", "data"]
    assert list(inspect.signature(kernel.step).parameters) == ["rng_key", "state", "data"]


def test_state_is_a_documented_namedtuple_pytree(state):
    assert type(state) is mg.GibbsState
    assert mg.GibbsState._fields == FIELDS
    doc = inspect.getdoc(mg.GibbsState)
    attributes = doc.split("Attributes")[1]
    for field in FIELDS:
        assert f"\n{field}\n" in attributes, f"GibbsState.{field} is not documented"
    shapes = {f: np.shape(getattr(state, f)) for f in FIELDS}
    assert shapes == {"alpha": (NUM_COUNTIES,), "beta": (1,), "gamma": (2,), "sigma_y": (),
                      "sigma_alpha": ()}
    assert all(getattr(state, f).dtype == jnp.float32 for f in FIELDS)
    leaves, treedef = jax.tree.flatten(state)
    assert len(leaves) == 5
    rebuilt = jax.tree.unflatten(treedef, leaves)
    assert type(rebuilt) is mg.GibbsState
    assert_states_equal(rebuilt, state)


def test_pooled_state_has_none_blocks():
    """Blocks a model lacks are ``None`` (empty pytree nodes) and the step runs under jit."""
    rng = np.random.default_rng(0)
    X = np.column_stack([np.ones(40), rng.normal(size=40)])
    pooled = mg.Model.from_arrays(X @ [1.0, 2.0] + rng.normal(size=40), X, predictors=["Intercept", "x"])
    kernel = mg.gibbs(pooled)
    state = jax.jit(kernel.init)(jax.random.key(0), pooled.data)
    new = jax.jit(kernel.step)(jax.random.key(1), state, pooled.data)
    for s in (state, new):
        assert s.alpha is None and s.gamma is None and s.sigma_alpha is None
        assert s.beta.shape == (2,) and s.sigma_y.shape == ()
        assert len(jax.tree.leaves(s)) == 2


# --------------------------------------------------------------------------- jit, scan, vmap
def test_jit_equals_eager(kernel, jit_step, state, model):
    key = jax.random.key(2)
    eager = kernel.step(key, state, model.data)
    jitted = jit_step(key, state, model.data)
    assert_states_close(jitted, eager)
    # the step really moved every block (so the comparison is not vacuous)
    for field in FIELDS:
        assert not np.array_equal(np.asarray(getattr(eager, field)), np.asarray(getattr(state, field)))


def test_step_inside_user_scan(kernel, jit_step, state, model):
    keys = jax.random.split(jax.random.key(3), 8)

    @jax.jit
    def run(state, keys, data):
        def body(s, key):
            s = kernel.step(key, s, data)
            return s, (s.sigma_y, s.alpha)
        return jax.lax.scan(body, state, keys)

    final, (sigma_y, alpha) = run(state, keys, model.data)
    assert sigma_y.shape == (8,) and alpha.shape == (8, NUM_COUNTIES)

    loop = state
    trace = []
    for key in keys:
        loop = jit_step(key, loop, model.data)
        trace.append(loop.sigma_y)
    assert_states_close(final, loop)
    np.testing.assert_allclose(sigma_y, np.asarray(trace), rtol=RTOL)


def _simulated_model(model, seed):
    """A data set with the shapes of ``model`` (same X, groups, U) and simulated responses."""
    rng = np.random.default_rng(seed)
    U = np.asarray(model.U, dtype=np.float64)
    alpha = U @ np.array([1.5, 0.7]) + 0.3 * rng.normal(size=model.num_groups)
    y = alpha[model.group_index] - 0.6 * model.X[:, 0] + 0.8 * rng.normal(size=model.num_obs)
    return y, mg.Model.from_arrays(y, model.X, model.group_index, U[:, 1:], predictors=["floor"],
                                   group_name="county", group_predictors=["log_uranium"])


def test_vmap_over_data_sets(kernel, jit_step, state, model):
    _, other = _simulated_model(model, seed=1)
    assert jax.tree.map(jnp.shape, other.data) == jax.tree.map(jnp.shape, model.data)
    stacked = jax.tree.map(lambda a, b: jnp.stack([a, b]), model.data, other.data)
    step_keys = jax.random.split(jax.random.key(5), 2)

    states = jax.tree.map(lambda a: jnp.stack([a, a]), state)
    stepped = jax.jit(jax.vmap(kernel.step))(step_keys, states, stacked)
    assert stepped.alpha.shape == (2, NUM_COUNTIES) and stepped.sigma_y.shape == (2,)

    for i, data in enumerate((model.data, other.data)):
        one = jax.tree.map(lambda a: a[i], states)
        assert_states_close(jax.tree.map(lambda a: a[i], stepped), jit_step(step_keys[i], one, data))
    # the two data sets really give different conditionals
    assert not np.allclose(stepped.sigma_y[0], stepped.sigma_y[1])


def test_vmap_sufficient_statistics_over_simulated_responses(model):
    """``model.data_for(y)`` (pure JAX) vmaps over simulated responses and agrees with the float64
    statistics of the same responses in the model's coordinates."""
    ys = np.stack([_simulated_model(model, seed)[0] for seed in (2, 3, 4)])
    batched = jax.jit(jax.vmap(model.data_for))(jnp.asarray(ys, jnp.float32))
    assert batched.rss_within.shape == (3,)
    assert batched.groups.y_mean.shape == (3, NUM_COUNTIES)
    for i, y in enumerate(ys):
        single = jax.jit(model.data_for)(jnp.asarray(y, jnp.float32))
        for a, b in zip(jax.tree.leaves(jax.tree.map(lambda a: a[i], batched)), jax.tree.leaves(single)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=RTOL, atol=ATOL)
    # and the float64 statistics of the same response in the same coordinates agree
    s = model.standardization
    reference = mg.sufficient_statistics((ys[2] - s.y_shift) / s.y_scale, model.kernel_X, model.group_index,
                                         np.asarray(model.data.groups.U, np.float64), NUM_COUNTIES,
                                         location_prior=model.data.location_prior, y_scale=s.y_scale, xp=np)
    for a, b in zip(jax.tree.leaves(jax.tree.map(lambda a: a[2], batched)), jax.tree.leaves(reference)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------- compile counts
def test_jitted_step_traces_once(kernel, model, init_state, state):
    traces = []

    @jax.jit
    def sweep(key, state, data):
        traces.append(1)                      # runs at trace time only
        return kernel.step(key, state, data)

    _, other = _simulated_model(model, seed=5)
    s = sweep(jax.random.key(7), init_state, model.data)      # a state straight from init
    for i in range(4):
        s = sweep(jax.random.key(8 + i), s, model.data)        # states fed back
    s = sweep(jax.random.key(20), state, other.data)           # other data, same shapes
    jax.block_until_ready(s)
    assert len(traces) == 1


# --------------------------------------------------------------------------- the five updates
UPDATES = {
    "alpha": mg.update_alpha,
    "beta": mg.update_beta,
    "gamma": mg.update_gamma,
    "sigma_y": mg.update_sigma_y,
    "sigma_alpha": mg.update_sigma_alpha,
}


def test_updates_are_public():
    for field, update in UPDATES.items():
        assert f"update_{field}" in mg.__all__
        assert getattr(mg, f"update_{field}") is update
        assert list(inspect.signature(update).parameters)[:3] == ["rng_key", "state", "data"]


@pytest.mark.parametrize("field", FIELDS)
def test_update_changes_only_its_own_field(field, state, model):
    new = UPDATES[field](jax.random.key(9), state, model.data)
    assert type(new) is mg.GibbsState
    changed = np.asarray(getattr(new, field))
    assert changed.shape == np.shape(getattr(state, field))
    assert np.all(changed != np.asarray(getattr(state, field)))
    for other in FIELDS:
        if other != field:
            assert getattr(new, other) is getattr(state, other), other


def test_updates_accept_priors(state, model):
    # prior precision 1e4 against a data precision of about 2e2 for the floor effect (-0.66, se
    # 0.07): the conditional has mean about -0.013 and sd below 0.01, so |beta| < 0.1 (> 8 sd)
    new = mg.update_beta(jax.random.key(10), state, model.data, prior=Normal(0.0, 0.01))
    assert abs(float(new.beta[0])) < 0.1
    new = mg.update_sigma_y(jax.random.key(10), state, model.data, prior=Uniform())
    assert float(new.sigma_y) > 0


def test_compose_equals_updates_in_turn(state, model):
    order = [mg.update_alpha, mg.update_beta, mg.update_gamma, mg.update_sigma_y, mg.update_sigma_alpha]
    key = jax.random.key(11)
    composed = mg.compose(order)(key, state, model.data)
    manual = state
    for k, update in zip(jax.random.split(key, len(order)), order):
        manual = update(k, manual, model.data)
    assert_states_equal(composed, manual)


def test_kernel_step_is_the_composed_sweep(kernel, state, model):
    """With the default priors the Gibbs step is ``compose`` of the five public updates."""
    order = [mg.update_alpha, mg.update_beta, mg.update_gamma, mg.update_sigma_y, mg.update_sigma_alpha]
    key = jax.random.key(12)
    assert_states_equal(kernel.step(key, state, model.data), mg.compose(order)(key, state, model.data))


def test_compose_order_matters(state, model):
    key = jax.random.key(13)
    forward = mg.compose([mg.update_alpha, mg.update_sigma_alpha])(key, state, model.data)
    backward = mg.compose([mg.update_sigma_alpha, mg.update_alpha])(key, state, model.data)
    assert not np.allclose(forward.alpha, backward.alpha)

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from serl_launcher.networks.mlp import MLP, EnsembleDense, EnsembleLayerNorm, EnsembleMLP, layer_norm


def _random(key, shape, scale=1.0, offset=0.0):
    return jax.random.normal(jax.random.PRNGKey(key), shape) * scale + offset


def _assert_close(actual, expected, rtol=1e-5, atol=1e-6):
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=rtol, atol=atol)


@pytest.mark.parametrize("shape", [(7, 32), (3, 5, 32)])
def test_layer_norm_matches_flax_values_and_gradients(shape):
    x = _random(0, shape, scale=3.0, offset=1.5)
    params = {"scale": _random(1, shape[-1:], 0.5, 1.0), "bias": _random(2, shape[-1:], 0.1)}
    cotangent = _random(3, shape)

    def value_and_pullback(module):
        out, pullback = jax.vjp(lambda p, x: module.apply({"params": p}, x), params, x)
        return out, pullback(cotangent)

    ours = jax.vjp(lambda p, x: layer_norm(x, p["scale"], p["bias"], 1e-6), params, x)
    ours = (ours[0], ours[1](cotangent))
    _assert_close(ours, value_and_pullback(nn.LayerNorm()), rtol=1e-5, atol=1e-5)


def test_ensemble_layer_norm_is_a_per_member_layer_norm():
    members, x = 3, _random(0, (3, 6, 16), offset=-2.0)
    params = {"scale": _random(1, (members, 16), 0.5, 1.0), "bias": _random(2, (members, 16), 0.1)}
    cotangent = _random(3, x.shape)

    def per_member(p, x):
        return jnp.stack([nn.LayerNorm().apply({"params": jax.tree.map(lambda v: v[i], p)}, x[i])
                          for i in range(members)])

    ensemble = jax.vjp(lambda p, x: EnsembleLayerNorm(members).apply({"params": p}, x), params, x)
    reference = jax.vjp(per_member, params, x)
    _assert_close(ensemble[0], reference[0])
    _assert_close(ensemble[1](cotangent), reference[1](cotangent), rtol=1e-5, atol=1e-5)


def test_ensemble_dense_shared_and_per_member_inputs():
    layer = EnsembleDense(members=4, features=8)
    shared = _random(0, (5, 3))
    params = layer.init(jax.random.PRNGKey(1), shared)["params"]
    expected = jnp.stack([shared @ params["kernel"][i] + params["bias"][i] for i in range(4)])
    _assert_close(layer.apply({"params": params}, shared), expected)
    per_member = jnp.broadcast_to(shared, (4, 5, 3))
    _assert_close(layer.apply({"params": params}, per_member), expected)


def test_parameter_names_match_flax_layer_norm():
    """Checkpoints and published parameters keep nn.LayerNorm's layout."""
    mlp = MLP((8, 8), activate_final=True, use_layer_norm=True)
    params = mlp.init(jax.random.PRNGKey(0), jnp.zeros((1, 3)))["params"]
    assert set(params) == {"Dense_0", "LayerNorm_0", "Dense_1", "LayerNorm_1"}
    assert {k: v.shape for k, v in params["LayerNorm_0"].items()} == {"scale": (8,), "bias": (8,)}
    ensemble = EnsembleMLP(3, (8, 8), activate_final=True, use_layer_norm=True)
    params = ensemble.init(jax.random.PRNGKey(0), jnp.zeros((1, 3)))["params"]
    assert {k: v.shape for k, v in params["EnsembleLayerNorm_0"].items()} == {"scale": (3, 8), "bias": (3, 8)}

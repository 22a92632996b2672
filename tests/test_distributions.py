import jax
import jax.numpy as jnp
import numpy as np
from scipy import integrate, stats

from serl_launcher.networks.distributions import TanhNormal


def _reference_log_prob(actions, mean, std):
    """log N(atanh a; mean, std) - log(1 - a^2), summed over action dimensions (textbook formula)."""
    u = np.arctanh(actions)
    return np.sum(stats.norm.logpdf(u, mean, std) - np.log(1 - actions**2), axis=-1)


def test_sample_and_log_prob_match_change_of_variables():
    mean = jnp.array([[0.3, -1.2, 0.0], [2.0, 0.5, -0.4]])
    std = jnp.array([[0.5, 1.0, 0.2], [0.3, 2.0, 1.5]])
    actions, log_prob = TanhNormal(mean, std).sample_and_log_prob(jax.random.PRNGKey(0))
    assert actions.shape == (2, 3) and log_prob.shape == (2,)
    assert np.all(np.abs(actions) < 1)
    np.testing.assert_allclose(log_prob, _reference_log_prob(np.asarray(actions, np.float64), mean, std), rtol=1e-4)
    np.testing.assert_allclose(TanhNormal(mean, std).log_prob(actions), log_prob, rtol=1e-3)


def test_density_integrates_to_one_and_mode_is_tanh_mean():
    dist = TanhNormal(jnp.array([0.7]), jnp.array([0.6]))
    total, _ = integrate.quad(lambda a: float(jnp.exp(dist.log_prob(jnp.array([a])))), -1 + 1e-9, 1 - 1e-9, limit=200)
    assert abs(total - 1.0) < 1e-3
    np.testing.assert_allclose(dist.mode(), np.tanh(0.7), rtol=1e-6)


def test_samples_follow_the_squashed_gaussian():
    mean, std = jnp.full((20000, 1), 0.4), jnp.full((20000, 1), 0.8)
    samples = np.asarray(TanhNormal(mean, std).sample(jax.random.PRNGKey(3)))[:, 0]
    pre_squash = np.arctanh(np.clip(samples, -1 + 1e-7, 1 - 1e-7))
    assert abs(pre_squash.mean() - 0.4) < 0.03 and abs(pre_squash.std() - 0.8) < 0.03


def test_log_prob_is_stable_for_saturated_actions():
    _, log_prob = TanhNormal(jnp.array([[30.0]]), jnp.array([[1e-3]])).sample_and_log_prob(jax.random.PRNGKey(0))
    assert np.isfinite(log_prob).all()

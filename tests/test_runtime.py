"""The learner and actor loops in one process (threads, real sockets on loopback), with small networks.

Metrics are read from the rows the loops hand to progress_fn, never from log text.
"""
import threading
import time

import gymnasium as gym
import jax
import numpy as np
import pytest

import franka_sim  # noqa: F401  (registers PandaPickCube-v0)
from serl_launcher.data.demo_mixing import MixedSampler
from serl_launcher.data.replay_buffer import ReplayBuffer
from serl_launcher.data.rlds import read_rlds_dataset
from serl_launcher.runtime import ActorConfig, LearnerConfig, run_actor, run_learner
from serl_launcher.runtime.actor import ActorLoop
from serl_launcher.runtime.data_stores import LearnerDataStore
from serl_launcher.runtime.protocol import THROTTLE_SLACK_STEPS, LearnerStatus, parse_stats
from serl_launcher.transport import QueuedDataStore
from serl_launcher.utils.checkpoints import load_agent
from serl_launcher.utils.launcher import make_env, make_sac_agent, make_trainer_config
from tests.helpers import free_ports

DEMOS = "demos/pick_cube_20_scripted"
ENV = "PandaPickCube-v0"


def _agent(env):
    return make_sac_agent(0, env.observation_space.sample(), env.action_space.sample(), hidden_dims=(16, 16),
                          critic_ensemble_size=2, critic_subsample_size=None)


class Rows:
    """A progress_fn that keeps every row (thread-safe)."""

    def __init__(self):
        self.rows, self._lock = [], threading.Lock()

    def __call__(self, env_steps, metrics):
        with self._lock:
            self.rows.append((env_steps, dict(metrics)))

    def having(self, key):
        with self._lock:
            return [(steps, row) for steps, row in self.rows if key in row]


def _train(tmp_path, learner_config, actor_config, actor_env=None, learner_keys=None, actor_keys=None):
    """Run a learner (thread) and an actor (this thread), then stop the learner; returns both results and rows."""
    env = make_env(ENV, seed=0)
    port, broadcast = free_ports(2)
    trainer_config = make_trainer_config(port, broadcast, bind_address="127.0.0.1", **(learner_keys or {}))
    actor_trainer_config = make_trainer_config(port, broadcast, bind_address="127.0.0.1", **(actor_keys or {}))
    learner_rows, actor_rows, results = Rows(), Rows(), {}

    stop = threading.Event()

    def learner():
        results["learner"] = run_learner(learner_config, _agent(env), env.observation_space, env.action_space,
                                         trainer_config, progress_fn=learner_rows, stop=stop)

    thread = threading.Thread(target=learner)
    thread.start()
    actor_env = actor_env or make_env(ENV, seed=1)
    results["actor"] = run_actor(actor_config, _agent(env), actor_env, actor_trainer_config, "127.0.0.1",
                                 eval_env=make_env(ENV, seed=2), progress_fn=actor_rows)
    stop.set()
    thread.join(timeout=120)
    assert not thread.is_alive(), "the learner did not stop"
    return results, learner_rows, actor_rows


@pytest.mark.slow
def test_learner_and_actor_train_throttle_report_and_checkpoint(tmp_path):
    learner_config = LearnerConfig(batch_size=16, utd_ratio=2, max_steps=10_000, training_starts=100, target_utd=1.0,
                                   demos_path=DEMOS, demo_ratio=0.5, log_rlds_path=str(tmp_path / "received"),
                                   checkpoint_dir=str(tmp_path / "checkpoints"), checkpoint_period=50, log_period=5)
    actor_config = ActorConfig(max_steps=1000, random_steps=50, eval_period=200, eval_episodes=2)
    results, learner_rows, actor_rows = _train(tmp_path, learner_config, actor_config)
    learner_result, actor_result = results["learner"], results["actor"]

    assert learner_result.nonfinite_updates == 0 and learner_result.env_steps == 1000
    assert actor_result.transport["dropped"] == 0 and actor_result.policy_updates >= 2

    # The UTD throttle: actors never ran ahead of target_utd (plus slack), so ~900 updates of 2 critic steps.
    rows = learner_rows.having("learner/step")
    steps = [row["learner/step"] for _, row in rows]
    assert steps[:-1] == list(range(5, 5 * len(rows) - 4, 5)) and steps[-1] == learner_result.learner_step
    assert learner_result.learner_step * 2 >= 1000 - 100 - THROTTLE_SLACK_STEPS
    for env_steps, row in rows:
        critic_steps = row["learner/step"] * 2
        assert env_steps <= 100 + critic_steps / 1.0 + THROTTLE_SLACK_STEPS, (env_steps, critic_steps)
    assert [steps for steps, _ in rows] == sorted(steps for steps, _ in rows)

    # Every evaluation the actor made reached the learner's sink, indexed by the actor's env steps.
    actor_evals = [(steps, row["eval/return"]) for steps, row in actor_rows.having("eval/return")]
    learner_evals = [(steps, row["eval/return"]) for steps, row in learner_rows.having("eval/return")]
    assert len(actor_evals) == 5 and learner_evals == actor_evals
    assert [steps for steps, _ in actor_evals] == [200, 400, 600, 800, 1000]
    episodes = learner_rows.having("episode/return")
    assert episodes and all(row["episode/length"] == 100 for _, row in episodes)
    assert "episode/success" in episodes[0][1]

    # The checkpoint rebuilds the agent alone, and it acts exactly as the learner's final agent.
    loaded = load_agent(str(tmp_path / "checkpoints"))
    observations = np.random.default_rng(0).normal(size=(8, *make_env(ENV).observation_space.shape)).astype(np.float32)
    np.testing.assert_array_equal(loaded.sample_actions(observations, argmax=True),
                                  learner_result.agent.sample_actions(observations, argmax=True))

    logged = list(read_rlds_dataset(str(tmp_path / "received")))
    assert sum(len(episode["reward"]) - 1 for episode in logged) == 1000


@pytest.mark.slow
def test_a_resumed_learner_continues_its_step_count(tmp_path):
    config = LearnerConfig(batch_size=16, utd_ratio=2, max_steps=10_000, training_starts=50, log_period=5,
                           target_utd=0.5, checkpoint_dir=str(tmp_path / "checkpoints"))
    actor_config = ActorConfig(max_steps=200, random_steps=50, eval_period=0)
    first, _, _ = _train(tmp_path, config, actor_config)
    assert first["learner"].env_steps == 200 and first["learner"].learner_step > 0
    second, rows, _ = _train(tmp_path, config, actor_config)
    steps = [row["learner/step"] for _, row in rows.having("learner/step")]
    assert steps and steps[0] == (first["learner"].learner_step // 5 + 1) * 5  # continues, not from 0
    assert steps[-1] == second["learner"].learner_step
    assert second["learner"].env_steps == 400  # env steps continue from the checkpoint


def test_stop_ends_a_waiting_learner_at_once_without_a_checkpoint(tmp_path):
    env = make_env(ENV)
    stop = threading.Event()
    config = LearnerConfig(training_starts=100, checkpoint_dir=str(tmp_path / "ck"))
    threading.Timer(0.5, stop.set).start()
    start = time.monotonic()
    result = run_learner(config, _agent(env), env.observation_space, env.action_space,
                         make_trainer_config(*free_ports(2), bind_address="127.0.0.1"), stop=stop)
    assert time.monotonic() - start < 15 and result.learner_step == 0
    assert not list((tmp_path / "ck").iterdir())  # nothing trained, nothing saved


def test_mixed_sampler_puts_demo_ratio_of_every_minibatch_from_demos():
    space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    action = gym.spaces.Box(-1, 1, (1,), np.float32)

    def filled(reward, n):
        buffer = ReplayBuffer(space, action, n, seed=0)
        buffer.insert_stacked({"observations": np.zeros((n, 1)), "next_observations": np.zeros((n, 1)),
                               "actions": np.zeros((n, 1)), "rewards": np.full(n, reward), "masks": np.ones(n),
                               "dones": np.zeros(n, bool)})
        return buffer

    sampler = MixedSampler(filled(0.0, 50), filled(1.0, 20), demo_ratio=0.25, minibatches=8, seed=0)
    batch = sampler.sample(8 * 32)
    per_minibatch = batch["rewards"].reshape(8, 32).sum(axis=1)
    np.testing.assert_array_equal(per_minibatch, np.full(8, 8.0))  # 25% of 32, in every minibatch
    assert not np.array_equal(batch["rewards"][:32], np.sort(batch["rewards"][:32]))  # shuffled inside


def test_learner_status_throttles_only_with_a_target_and_parses_serl_stats():
    status = LearnerStatus(target_utd=2.0, training_starts=100)
    status.env_steps = 100 + THROTTLE_SLACK_STEPS
    assert status.handle_request("learner-status", {}) == {"budget": 0, "wait": True, "throttled": True,
                                                           "learner_step": 0, "env_steps": 200}
    status.critic_steps = 20
    assert not status.should_wait()
    assert status.handle_request("learner-status", {"pending": 4})["budget"] == 10 - 4  # 20 / 2 minus unsent
    with pytest.raises(ValueError, match="pending"):
        status.handle_request("learner-status", {"pending": -1})
    assert not LearnerStatus(target_utd=0.0, training_starts=0).should_wait()
    assert parse_stats({"eval": {"return": 1, "success": 0.5}, "timer": {"step": 0.01}}) == {
        "eval/return": 1.0, "eval/success": 0.5, "timer/step": 0.01}
    for bad in ({"x": float("nan")}, {"x": "text"}, {i: 1 for i in range(1)}, {f"k{i}": 1 for i in range(65)}, [1]):
        with pytest.raises(ValueError):
            parse_stats(bad)
    for _ in range(1005):
        status.handle_request("send-stats", {"x": 1})
    assert len(status.pop_stats()) == 1000 and status.dropped_stats == 5  # bounded whatever actors send


def test_intervened_transitions_also_go_to_the_demo_buffer():
    env = make_env(ENV)
    online = ReplayBuffer(env.observation_space, env.action_space, 100)
    demos = ReplayBuffer(env.observation_space, env.action_space, 100)
    store = LearnerDataStore(online, demos)
    n, obs_shape = 6, env.observation_space.shape
    columns = {"observations": np.zeros((n, *obs_shape), np.float32),
               "next_observations": np.zeros((n, *obs_shape), np.float32),
               "actions": np.zeros((n, 4), np.float32), "rewards": np.arange(n, dtype=np.float32),
               "masks": np.ones(n, np.float32), "dones": np.zeros(n, bool),
               "intervened": np.array([0, 1, 0, 0, 1, 0], bool)}
    store.insert_stacked(columns)
    assert len(online) == 6 and len(demos) == 2
    assert set(demos.sample(50)["rewards"].tolist()) == {1.0, 4.0}


class _InterveningEnv(gym.Wrapper):
    """Every third step a (pretend) operator takes over with a fixed action, as a SpaceMouse wrapper does."""

    def step(self, action):
        observation, reward, terminated, truncated, info = self.env.step(action)
        self._count = getattr(self, "_count", 0) + 1
        if self._count % 3 == 0:
            info = {**info, "intervene_action": np.full(4, 0.25, np.float32), "intervened": True}
        return observation, reward, terminated, truncated, info


class _OfflineLink:
    """Stands in for ActorLink: always allowed to act, stats kept in a list."""

    def __init__(self):
        self.allowed, self.fatal, self.stats = threading.Event(), None, []
        self.allowed.set()

    def queue_stats(self, row):
        self.stats.append(row)

    def take_step(self):
        pass

    def unsent(self):
        return 0


def test_the_actor_stores_the_executed_action_and_flags_interventions():
    env = make_env(ENV, seed=0)
    holder = type("Holder", (), {"agent": _agent(env), "updates": 0})()
    store, link = QueuedDataStore(100), _OfflineLink()
    loop = ActorLoop(ActorConfig(max_steps=9, random_steps=100, eval_period=0), holder, _InterveningEnv(env), env,
                      store, link, lambda *_: None, threading.Event())
    loop.run()
    rows = store.get_latest_data(-1)
    assert len(rows) == 9
    flagged = [i for i, row in enumerate(rows) if row["intervened"]]
    assert flagged == [2, 5, 8]
    for i, row in enumerate(rows):
        assert np.array_equal(row["actions"], np.full(4, 0.25)) == (i in flagged)


@pytest.mark.slow
def test_the_pixel_agent_trains_on_the_vision_env_end_to_end(tmp_path):
    """DrQ on PandaPickCubeVision-v0 (32x32 cameras, tiny networks): image buffer, augmentation, eval."""
    from serl_launcher.utils.launcher import make_drq_agent

    def vision_env(seed):
        return make_env("PandaPickCubeVision-v0", seed=seed, image_size=32)

    env = vision_env(0)

    def agent():
        return make_drq_agent(0, env.observation_space.sample(), env.action_space.sample(), hidden_dims=(16, 16),
                              critic_ensemble_size=2, critic_subsample_size=None)

    port, broadcast = free_ports(2)
    trainer_config = make_trainer_config(port, broadcast, bind_address="127.0.0.1")
    rows, stop, results = Rows(), threading.Event(), {}
    config = LearnerConfig(batch_size=8, utd_ratio=2, training_starts=50, target_utd=0.5, log_period=2,
                           replay_buffer_capacity=1000)
    thread = threading.Thread(target=lambda: results.update(learner=run_learner(
        config, agent(), env.observation_space, env.action_space, trainer_config, progress_fn=rows, stop=stop)))
    thread.start()
    actor = run_actor(ActorConfig(max_steps=200, random_steps=20, eval_period=200, eval_episodes=1), agent(),
                      vision_env(1), trainer_config, "127.0.0.1", eval_env=vision_env(2))
    stop.set()
    thread.join(timeout=120)
    assert actor.env_steps == 200 and actor.transport["dropped"] == 0
    learner = results["learner"]
    assert learner.env_steps == 200 and learner.learner_step >= 10 and learner.nonfinite_updates == 0
    assert [steps for steps, _ in rows.having("eval/return")] == [200]
    losses = [row["learner/critic_loss"] for _, row in rows.having("learner/critic_loss")]
    assert losses and all(np.isfinite(losses))


def test_every_nth_evaluation_is_filmed(tmp_path):
    env = make_env(ENV, seed=0)
    eval_env = make_env(ENV, seed=1, render_mode="rgb_array", render_size=64)
    holder = type("Holder", (), {"agent": _agent(env), "updates": 1})()
    config = ActorConfig(max_steps=400, random_steps=0, eval_period=100, eval_episodes=1, video_period=2,
                         video_dir=str(tmp_path / "videos"))
    rows = Rows()
    ActorLoop(config, holder, env, eval_env, QueuedDataStore(500), _OfflineLink(), rows, threading.Event()).run()
    assert [steps for steps, _ in rows.having("eval/return")] == [100, 200, 300, 400]
    videos = sorted(p.name for p in (tmp_path / "videos").iterdir())
    assert videos == ["eval_000000200.mp4", "eval_000000400.mp4"]
    import imageio.v2 as imageio

    frames = imageio.mimread(str(tmp_path / "videos" / videos[0]), memtest=False)
    assert len(frames) == 100 and frames[0].shape == (64, 64, 3)


def test_learner_and_actor_train_over_curve_keys(tmp_path):
    """The example's key flags map onto the transport: an authorised actor trains over an encrypted link."""
    from serl_launcher.transport import keys

    directory = tmp_path / "keys"
    for name in ("learner", "actor1"):
        keys.generate(str(directory), name)
    (directory / "authorized").mkdir()
    (directory / "authorized" / "actor1.key").write_bytes((directory / "actor1.key").read_bytes())
    learner_keys = {"server_secret_key": str(directory / "learner.key_secret"),
                    "authorized_keys_dir": str(directory / "authorized")}
    actor_keys = {"server_public_key": str(directory / "learner.key"),
                  "client_secret_key": str(directory / "actor1.key_secret")}
    config = LearnerConfig(batch_size=16, utd_ratio=2, training_starts=50, log_period=5, target_utd=0.5)
    # 250 steps: beyond the learner's first budget (50 + slack 100), so the actor needs its updates.
    results, rows, _ = _train(tmp_path, config, ActorConfig(max_steps=250, random_steps=50, eval_period=0),
                              learner_keys=learner_keys, actor_keys=actor_keys)
    assert results["learner"].env_steps == 250 and results["learner"].learner_step >= 25
    assert rows.having("learner/step")


def test_the_learner_says_loudly_when_actors_ignore_its_throttle(caplog):
    """An actor that never asks (a hand-made client) floods a throttling learner: a warning, not silence."""
    env = make_env(ENV)
    port, broadcast = free_ports(2)
    trainer_config = make_trainer_config(port, broadcast, bind_address="127.0.0.1")
    stop, rows = threading.Event(), Rows()
    config = LearnerConfig(batch_size=16, utd_ratio=2, training_starts=100, target_utd=4.0, log_period=1)
    thread = threading.Thread(target=run_learner, args=(config, _agent(env), env.observation_space,
                                                       env.action_space, trainer_config, rows, stop))
    thread.start()
    from serl_launcher.transport import TrainerClient

    store = QueuedDataStore(5000)
    client = TrainerClient("actor_env", "127.0.0.1", trainer_config, store, wait_for_server=True)
    observation, _ = env.reset(seed=0)
    try:
        for _ in range(3000):  # as fast as it can, never asking "learner-status"
            action = env.action_space.sample()
            next_observation, reward, terminated, truncated, _ = env.step(action)
            store.insert({"observations": observation, "actions": action, "next_observations": next_observation,
                          "rewards": reward, "masks": 1.0 - terminated, "dones": terminated or truncated})
            observation = env.reset()[0] if terminated or truncated else next_observation
            if len(store) % 100 == 0:
                client.update()
        client.update()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any("far below --target_utd" in r.message for r in caplog.records):
            time.sleep(0.2)
    finally:
        client.stop()
        stop.set()
        thread.join(timeout=60)
    assert any("far below --target_utd 4" in record.message for record in caplog.records)


def test_synchronous_mode_keeps_the_utd_and_logs_a_line_per_episode():
    from serl_launcher.runtime.sync import run_sync

    env = make_env(ENV, seed=0)
    rows = Rows()
    learner = LearnerConfig(batch_size=16, utd_ratio=2, training_starts=100, target_utd=1.0, log_period=10)
    result = run_sync(learner, ActorConfig(max_steps=400, random_steps=50, eval_period=200, eval_episodes=1),
                      _agent(env), env, make_env(ENV, seed=1), progress_fn=rows)
    assert result.env_steps == 400
    assert result.learner_step == (400 - 100 + 1) // 2 + 1  # 1 critic step per env step, 2 per update
    assert [steps for steps, _ in rows.having("eval/return")] == [200, 400]
    episodes = rows.having("episode/return")
    assert len(episodes) == 4 and all("learner/critic_loss" in row for _, row in episodes[1:])
    for steps, row in rows.having("learner/utd"):  # 1 critic step per env step since training started
        critic_steps = round(row["learner/utd"] * steps)
        assert steps - 99 <= critic_steps <= steps - 99 + 2, (steps, critic_steps)


def test_pretraining_runs_on_the_demos_before_any_actor_data(tmp_path):
    env = make_env(ENV)
    agent, rows, stop = _agent(env), Rows(), threading.Event()
    config = LearnerConfig(batch_size=16, utd_ratio=2, training_starts=100, demos_path=DEMOS, demo_ratio=0.5,
                           pretrain_steps=20, log_period=10)
    threading.Timer(5.0, stop.set).start()  # no actor ever comes
    result = run_learner(config, agent, env.observation_space, env.action_space,
                         make_trainer_config(*free_ports(2), bind_address="127.0.0.1"), progress_fn=rows, stop=stop)
    pretraining = rows.having("learner/pretraining")
    assert [row["learner/step"] for _, row in pretraining] == [10, 20] and all(s == 0 for s, _ in pretraining)
    assert result.learner_step == 20 and result.env_steps == 0
    moved = jax.tree.leaves(jax.tree.map(lambda a, b: bool(np.any(a != b)), result.agent.state.params["actor"],
                                         agent.state.params["actor"]))
    assert any(moved)

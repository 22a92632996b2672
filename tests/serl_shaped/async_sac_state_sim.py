#!/usr/bin/env python3
"""A script in the shape of SERL's examples/async_sac_state_sim (written here, not copied), ported
to this library the way the README says: imports changed, nothing else.

It uses SERL's public names and call patterns: make_sac_agent / make_replay_buffer /
make_trainer_config / make_wandb_logger, TrainerServer / TrainerClient / QueuedDataStore, an
iterator made with get_iterator(sample_args=...) before any data arrived, agent.state.params
published whole and swapped into the actor's agent, sample_actions(..., deterministic=False),
evaluate(policy_fn=...), Timer, nested {"eval": {...}} / {"timer": {...}} stats, and
client.request returning None while the learner is away.
"""
import time

import gymnasium as gym
import jax
import numpy as np
import tqdm
from absl import app, flags

import franka_sim  # noqa: F401
from serl_launcher.agents.continuous.sac import SACAgent
from serl_launcher.common.evaluation import evaluate
from serl_launcher.transport import QueuedDataStore, TrainerClient, TrainerServer
from serl_launcher.utils.launcher import make_replay_buffer, make_sac_agent, make_trainer_config, make_wandb_logger
from serl_launcher.utils.timer_utils import Timer

FLAGS = flags.FLAGS
# Roles and addresses.
flags.DEFINE_bool("learner", False, "Run the learning process.")
flags.DEFINE_bool("actor", False, "Run the acting process.")
flags.DEFINE_string("ip", "localhost", "Where the learner listens (actor side).")
flags.DEFINE_integer("port_number", 5488, "The learner's request port.")
flags.DEFINE_integer("broadcast_port", 5489, "The learner's params port.")
# The task and the agent (small: this script runs inside the test suite).
flags.DEFINE_string("env", "PandaPickCube-v0", "Gymnasium id to train on.")
flags.DEFINE_integer("seed", 42, "Seeds the env, the agent and the sampling key.")
flags.DEFINE_integer("batch_size", 16, "Transitions per critic minibatch.")
flags.DEFINE_integer("utd_ratio", 2, "Critic minibatches per update_high_utd call.")
flags.DEFINE_integer("replay_buffer_capacity", 10000, "Transitions the learner keeps.")
SCHEDULE = {  # flag: (default, help), SERL's names with this test's small values
    "max_steps": (300, "Env steps (actor) or updates (learner)."),
    "max_traj_length": (100, "Episode step cap."),
    "random_steps": (50, "Actor: uniform random actions before this step."),
    "training_starts": (100, "Learner: transitions to collect before updating."),
    "steps_per_update": (30, "Actor: env steps between data_store flushes."),
    "log_period": (10, "Learner: updates between log rows."),
    "eval_period": (150, "Actor: env steps between evaluations."),
    "eval_n_trajs": (2, "Actor: episodes per evaluation."),
}
for _name, (_default, _help) in SCHEDULE.items():
    flags.DEFINE_integer(_name, _default, _help)
# Logging.
flags.DEFINE_string("exp_name", None, "wandb run name.")
flags.DEFINE_bool("debug", True, "No wandb (the test's default).")


def actor(agent: SACAgent, data_store, env, sampling_rng):
    client = TrainerClient("actor_env", FLAGS.ip, make_trainer_config(FLAGS.port_number, FLAGS.broadcast_port),
                           data_store, wait_for_server=True)

    def update_params(params):
        nonlocal agent
        agent = agent.replace(state=agent.state.replace(params=params))

    client.recv_network_callback(update_params)
    eval_env = gym.wrappers.FlattenObservation(gym.make(FLAGS.env))
    obs, _ = env.reset()
    timer = Timer()
    for step in tqdm.tqdm(range(FLAGS.max_steps), dynamic_ncols=True):
        timer.tick("total")
        with timer.context("sample_actions"):
            sampling_rng, key = jax.random.split(sampling_rng)
            policy_actions = agent.sample_actions(observations=jax.device_put(obs), seed=key, deterministic=False)
            explore = step < FLAGS.random_steps
            actions = env.action_space.sample() if explore else np.asarray(jax.device_get(policy_actions))
        with timer.context("step_env"):
            next_obs, reward, done, truncated, info = env.step(actions)
            data_store.insert(dict(observations=obs, actions=actions, next_observations=next_obs,
                                   rewards=np.asarray(reward, np.float32), masks=1.0 - done, dones=done or truncated))
            obs = next_obs
            if done or truncated:
                obs, _ = env.reset()
        if step % FLAGS.steps_per_update == 0:
            client.update()
        if step % FLAGS.eval_period == 0:
            with timer.context("eval"):
                evaluate_info = evaluate(policy_fn=lambda o: np.asarray(agent.sample_actions(o, argmax=True)),
                                         env=eval_env, num_episodes=FLAGS.eval_n_trajs)
            client.request("send-stats", {"eval": evaluate_info})  # None while the learner is away
        timer.tock("total")
        if step % FLAGS.log_period == 0:
            client.request("send-stats", {"timer": timer.get_average_times()})
    client.update()
    client.stop()


def learner(agent: SACAgent, replay_buffer, replay_iterator, wandb_logger=None):
    update_steps = 0

    def stats_callback(type: str, payload: dict) -> dict:
        assert type == "send-stats", f"Invalid request type: {type}"
        if wandb_logger is not None:
            wandb_logger.log(payload, step=update_steps)
        return {}

    server = TrainerServer(make_trainer_config(FLAGS.port_number, FLAGS.broadcast_port),
                           request_callback=stats_callback)
    server.register_data_store("actor_env", replay_buffer)
    server.start(threaded=True)
    pbar = tqdm.tqdm(total=FLAGS.training_starts, initial=len(replay_buffer), desc="Filling up replay buffer")
    while len(replay_buffer) < FLAGS.training_starts:
        pbar.update(len(replay_buffer) - pbar.n)
        time.sleep(0.1)
    pbar.close()
    server.publish_network(agent.state.params)
    timer = Timer()
    for update_steps in tqdm.tqdm(range(FLAGS.max_steps), dynamic_ncols=True, desc="learner"):
        with timer.context("sample_replay_buffer"):
            batch = next(replay_iterator)
        with timer.context("train"):
            agent, update_info = jax.block_until_ready(agent.update_high_utd(batch, utd_ratio=FLAGS.utd_ratio))
        server.publish_network(agent.state.params)
        if wandb_logger and update_steps % FLAGS.log_period == 0:  # nested dicts, as SERL's logger takes them
            wandb_logger.log({**update_info, "timer": timer.get_average_times()}, step=update_steps)
    server.stop()


def main(_):
    rng = jax.random.PRNGKey(FLAGS.seed)
    env = gym.wrappers.FlattenObservation(gym.make(FLAGS.env))
    rng, sampling_rng = jax.random.split(rng)
    agent: SACAgent = make_sac_agent(seed=FLAGS.seed, sample_obs=env.observation_space.sample(),
                                     sample_action=env.action_space.sample())
    if FLAGS.learner:
        replay_buffer = make_replay_buffer(env, capacity=FLAGS.replay_buffer_capacity, type="replay_buffer")
        replay_iterator = replay_buffer.get_iterator(sample_args={"batch_size": FLAGS.batch_size * FLAGS.utd_ratio})
        wandb_logger = make_wandb_logger(project="serl_dev", description=FLAGS.exp_name or FLAGS.env, debug=FLAGS.debug)
        learner(agent, replay_buffer, replay_iterator=replay_iterator, wandb_logger=wandb_logger)
    elif FLAGS.actor:
        data_store = QueuedDataStore(2000)
        actor(agent, data_store, env, sampling_rng)
    else:
        raise NotImplementedError("Must be either a learner or an actor")


if __name__ == "__main__":
    app.run(main)

#!/usr/bin/env python3
"""Asynchronous SAC on a simulated task: one script, two roles.

    learner:  python async_sac_state_sim.py --learner [--checkpoint_path runs/pick_cube]
    actor:    python async_sac_state_sim.py --actor --ip LEARNER_HOST

The actor steps the environment with the newest policy it has and streams transitions to the
learner; the learner samples its replay buffer, runs `update_high_utd` and publishes the policy
back. Start them in either order, on one machine or two (`launch.sh` starts both here).
"""
import logging as python_logging
import signal
import threading
import time

import jax
import numpy as np
import tqdm
from absl import app, flags, logging

from serl_launcher.common.wandb import WandBLogger
from serl_launcher.data.prefetch import PrefetchIterator
from serl_launcher.data.replay_buffer import ReplayBuffer
from serl_launcher.transport import QueuedDataStore, TrainerClient, TrainerServer, TransportError
from serl_launcher.utils.checkpoints import AgentCheckpointer
from serl_launcher.utils.evaluation import evaluate
from serl_launcher.utils.launcher import make_env, make_sac_agent, make_trainer_config

FLAGS = flags.FLAGS
flags.DEFINE_string("env", "PandaPickCube-v0", "Gymnasium environment id (Box or Dict observations, Box actions).")
flags.DEFINE_bool("learner", False, "Run the learner.")
flags.DEFINE_bool("actor", False, "Run an actor.")
flags.DEFINE_string("ip", "localhost", "The learner's address (actor).")
flags.DEFINE_integer("port_number", 5488, "Learner's request port; params are published on --broadcast_port.")
flags.DEFINE_integer("broadcast_port", 5489, "Learner's params port.")
flags.DEFINE_integer("seed", 42, "Random seed.")
flags.DEFINE_string("exp_name", None, "Experiment name (wandb run name).")
flags.DEFINE_bool("debug", False, "Debug run: wandb off.")
flags.DEFINE_bool("render", False, "Show the actor's environment in a MuJoCo window (needs a display).")

flags.DEFINE_integer("batch_size", 256, "Critic minibatch size.")
flags.DEFINE_integer("critic_actor_ratio", 8, "Critic steps per actor step (UTD): each update samples batch_size x this.")
flags.DEFINE_integer("max_steps", 1_000_000, "Learner: update steps. Actor: environment steps.")
flags.DEFINE_integer("replay_buffer_capacity", 1_000_000, "Replay buffer capacity.")
flags.DEFINE_integer("random_steps", 300, "Actor: uniformly random actions for this many first steps.")
flags.DEFINE_integer("training_starts", 300, "Learner: transitions to receive before the first update.")
flags.DEFINE_integer("steps_per_update", 30, "Actor: send queued transitions every this many steps.")
flags.DEFINE_float("target_utd", 0.0,
                   "Critic gradient steps per environment step the learner must keep up with: actors pause while "
                   "the learner lags behind (0: never pause). On a small machine an unthrottled simulated actor "
                   "floods the buffer with data the learner never learns from.")
flags.DEFINE_integer("publish_period", 1, "Learner: publish the policy every this many updates.")
flags.DEFINE_integer("log_period", 10, "Learner: log every this many updates.")
flags.DEFINE_integer("eval_period", 2000, "Actor: evaluate the deterministic policy every this many steps (0: never).")
flags.DEFINE_integer("eval_n_trajs", 5, "Actor: episodes per evaluation.")
flags.DEFINE_integer("checkpoint_period", 0, "Learner: checkpoint every this many updates (0: only at the end).")
flags.DEFINE_string("checkpoint_path", None, "Learner: checkpoint directory; an existing one is resumed.")
flags.DEFINE_string("log_rlds_path", None, "Learner: write every received episode to this RLDS dataset directory.")
flags.DEFINE_string("preload_rlds_path", None, "Learner: RLDS demonstrations to load before training.")
flags.DEFINE_float("demo_ratio", 0.0,
                   "Learner: with --preload_rlds_path, fraction of every batch drawn from a separate demo buffer "
                   "(RLPD-style, e.g. 0.5); 0 puts demos in the main buffer.")
flags.DEFINE_list("hidden_dims", ["256", "256"], "Hidden layer sizes of actor and critic.")
flags.DEFINE_integer("critic_ensemble_size", 10, "Critic ensemble size.")
flags.DEFINE_integer("critic_subsample_size", 2, "Critics the target takes the min over (0: all).")

STORE_NAME = "actor_env"


def make_agent(env):
    return make_sac_agent(
        FLAGS.seed, env.observation_space.sample(), env.action_space.sample(),
        critic_ensemble_size=FLAGS.critic_ensemble_size,
        critic_subsample_size=FLAGS.critic_subsample_size or None,
        hidden_dims=tuple(int(d) for d in FLAGS.hidden_dims))


# ---------------------------------------------------------------------------------------- learner
class LearnerStatus:
    """What actors ask the learner about, updated by the training loop, read by the server thread."""

    def __init__(self, buffer: ReplayBuffer, preloaded: int):
        self.buffer = buffer
        self.preloaded = preloaded
        self.learner_step = 0
        self.critic_steps = 0  # counted from this process's start: the UTD throttle concerns new data
        self.actor_stats = []
        self._lock = threading.Lock()

    def env_steps(self) -> int:
        """Transitions received from actors since this learner started."""
        return self.buffer.latest_data_id() + 1 - self.preloaded

    def should_wait(self) -> bool:
        if FLAGS.target_utd <= 0:
            return False
        allowed = FLAGS.training_starts + self.critic_steps / FLAGS.target_utd + 2 * FLAGS.steps_per_update
        return self.env_steps() >= allowed

    def handle_request(self, request_type: str, payload):
        if request_type == "send-stats":
            if not isinstance(payload, dict):
                raise ValueError("send-stats payload must be a dict of numbers")
            with self._lock:
                self.actor_stats.append({str(k): float(v) for k, v in payload.items()})
            return {"ok": True}
        if request_type == "learner-status":
            return {"wait": self.should_wait(), "learner_step": self.learner_step, "env_steps": self.env_steps()}
        raise ValueError(f"unknown request type {request_type!r}")

    def pop_actor_stats(self) -> list:
        with self._lock:
            stats, self.actor_stats = self.actor_stats, []
        return stats


class RLDSLog:
    """--log_rlds_path: every received episode into one RLDS dataset, one episode recorder per actor session."""

    def __init__(self, path: str):
        from serl_launcher.data.rlds import EpisodeRecorder, RLDSWriter

        self._writer = RLDSWriter(path, name="serl_rlds_dataset")
        self._new_recorder = lambda: EpisodeRecorder(self._writer)
        self._recorders = {}

    def add_rows(self, store_name: str, rows, client: str) -> None:
        recorder = self._recorders.setdefault(client, self._new_recorder())
        for i in range(len(rows["rewards"])):
            recorder.add(jax.tree.map(lambda x: x[i], rows))

    def close(self) -> None:
        for recorder in self._recorders.values():
            recorder.flush()
        self._writer.close()


def load_demos(path: str) -> dict:
    """Every transition of an RLDS dataset, stacked column-wise."""
    from serl_launcher.data.rlds import episodes_to_transitions, read_rlds_dataset

    transitions = list(episodes_to_transitions(read_rlds_dataset(path)))
    if not transitions:
        raise ValueError(f"{path}: no transitions in the dataset")
    logging.info("loaded %d demonstration transitions from %s", len(transitions), path)
    return jax.tree.map(lambda *rows: np.stack(rows), *transitions)


def make_sampler(buffer: ReplayBuffer, demos, batch_size: int):
    """Batches from the online buffer, or a fixed fraction from demos shuffled into each batch."""
    if demos is None:
        return lambda: buffer.sample(batch_size)
    n_demo = int(round(batch_size * FLAGS.demo_ratio))
    rng = np.random.default_rng(FLAGS.seed)

    def sample():
        mixed = jax.tree.map(lambda a, b: np.concatenate([a, b]), demos.sample(n_demo), buffer.sample(batch_size - n_demo))
        order = rng.permutation(batch_size)  # every critic minibatch gets its share of demos
        return jax.tree.map(lambda x: x[order], mixed)

    return sample


def wait_for_transitions(status: LearnerStatus, needed: int) -> None:
    logging.info("waiting for %d transitions from actors (start one with --actor --ip <this host>)", needed)
    with tqdm.tqdm(total=needed, desc="waiting for actors", unit="transition", dynamic_ncols=True) as bar:
        while status.env_steps() < needed:
            bar.update(min(status.env_steps(), needed) - bar.n)
            time.sleep(0.2)
        bar.update(needed - bar.n)


def format_metrics(metrics: dict) -> str:
    return "  ".join(f"{key} {value:.4g}" for key, value in metrics.items())


def run_learner(env) -> None:
    agent = make_agent(env)
    buffer = ReplayBuffer(env.observation_space, env.action_space, capacity=FLAGS.replay_buffer_capacity, seed=FLAGS.seed)
    logging.info("replay buffer: capacity %d, %.0f MB", buffer.capacity, buffer.nbytes / 1e6)
    demos = None
    if FLAGS.preload_rlds_path:
        demo_transitions = load_demos(FLAGS.preload_rlds_path)
        if FLAGS.demo_ratio > 0:  # a buffer of their own, sampled at a fixed fraction of every batch
            demos = ReplayBuffer(env.observation_space, env.action_space, len(demo_transitions["rewards"]), FLAGS.seed + 1)
            demos.batch_insert(demo_transitions)
        else:
            buffer.batch_insert(demo_transitions)
    status = LearnerStatus(buffer, preloaded=len(buffer))

    checkpointer = AgentCheckpointer(FLAGS.checkpoint_path) if FLAGS.checkpoint_path else None
    if checkpointer is not None and checkpointer.latest_step() is not None:
        agent, metadata = checkpointer.restore(agent)
        status.learner_step = int(metadata.get("learner_step", checkpointer.latest_step()))
        logging.info("resumed from %s at learner step %d", checkpointer.directory, status.learner_step)

    rlds_log = RLDSLog(FLAGS.log_rlds_path) if FLAGS.log_rlds_path else None

    server = TrainerServer(make_trainer_config(FLAGS.port_number, FLAGS.broadcast_port),
                           data_callback=rlds_log.add_rows if rlds_log else None,
                           request_callback=status.handle_request)
    server.register_data_store(STORE_NAME, buffer)
    server.start(threaded=True)
    logger = WandBLogger("serl_jax", FLAGS.exp_name or f"{FLAGS.env}_sac", config=FLAGS.flag_values_dict(),
                         debug=FLAGS.debug)
    batches = None
    try:
        server.publish_network(agent.state.params["actor"])  # actors act with it while the buffer fills
        wait_for_transitions(status, FLAGS.training_starts)
        batches = PrefetchIterator(make_sampler(buffer, demos, FLAGS.batch_size * FLAGS.critic_actor_ratio))
        train(agent, status, server, logger, batches, checkpointer)
    finally:
        if batches is not None:
            batches.close()
        server.stop()
        if rlds_log is not None:
            rlds_log.close()
        logger.finish()


def train(agent, status: LearnerStatus, server, logger, batches, checkpointer) -> None:
    """The learner loop: sample -> update_high_utd -> publish -> log; checkpoints, and a final one on exit."""
    logging.info("training: %d updates of %d x %d transitions", FLAGS.max_steps, FLAGS.critic_actor_ratio, FLAGS.batch_size)
    last_time, last_step, last_env_steps = time.time(), status.learner_step, status.env_steps()
    try:
        while status.learner_step < FLAGS.max_steps:
            agent, info = agent.update_high_utd(next(batches), utd_ratio=FLAGS.critic_actor_ratio)
            status.learner_step += 1
            status.critic_steps += FLAGS.critic_actor_ratio
            step = status.learner_step
            if step % FLAGS.publish_period == 0:
                server.publish_network(agent.state.params["actor"])
            if step % FLAGS.log_period == 0:
                now, env_steps = time.time(), status.env_steps()
                metrics = {key: float(value) for key, value in jax.device_get(info).items()}
                metrics.update({
                    "env_steps": env_steps,
                    "updates_per_s": (step - last_step) / (now - last_time),
                    "utd": status.critic_steps / max(1, env_steps),
                    "replay_buffer_size": len(status.buffer),
                })
                for stats in status.pop_actor_stats():
                    logger.log(stats, step=step)
                    metrics.update({k: v for k, v in stats.items() if k.startswith("eval/")})
                logger.log(metrics, step=step)
                logging.info("step %d  %s", step, format_metrics(metrics))
                last_time, last_step = now, step
            if checkpointer is not None and FLAGS.checkpoint_period and step % FLAGS.checkpoint_period == 0:
                checkpointer.save(step, agent, {"learner_step": step})
    except KeyboardInterrupt:
        logging.info("interrupted at learner step %d", status.learner_step)
    if checkpointer is not None:
        checkpointer.save(status.learner_step, agent, {"learner_step": status.learner_step})
        logging.info("saved checkpoint %d in %s", status.learner_step, checkpointer.directory)


# ------------------------------------------------------------------------------------------ actor
class PolicyHolder:
    """The actor's newest policy parameters, swapped in by the transport's subscriber thread."""

    def __init__(self, agent):
        self.agent = agent
        self.updates = 0

    def set_actor_params(self, params) -> None:
        params = jax.device_put(params)
        self.agent = self.agent.replace(state=self.agent.state.replace(params={**self.agent.state.params, "actor": params}))
        self.updates += 1


def wait_for_learner(client: TrainerClient) -> None:
    """Pause while the learner reports it lags behind --target_utd; a learner that stops answering ends the pause."""
    while True:
        try:
            if not client.request("learner-status", {})["wait"]:
                return
        except TransportError as error:
            logging.debug("learner-status failed (%s); acting on", error)
            return
        time.sleep(0.02)


def send_stats(client: TrainerClient, stats: dict) -> None:
    try:
        client.request("send-stats", stats)
    except TransportError as error:
        logging.warning("could not send stats to the learner: %s", error)


def run_actor(env) -> None:
    holder = PolicyHolder(make_agent(env))
    eval_env = make_env(FLAGS.env, seed=FLAGS.seed + 1000)
    data_store = QueuedDataStore(2000)
    logging.info("connecting to the learner at %s:%d (waiting until it answers)", FLAGS.ip, FLAGS.port_number)
    client = TrainerClient(STORE_NAME, FLAGS.ip, make_trainer_config(FLAGS.port_number, FLAGS.broadcast_port),
                           data_store, wait_for_server=True, raise_on_timeout=True)  # requests below catch it
    client.recv_network_callback(holder.set_actor_params)
    logging.info("connected; acting")

    key = jax.random.PRNGKey(FLAGS.seed)
    observation, _ = env.reset(seed=FLAGS.seed)
    episode_return, episode_length, episode_success = 0.0, 0, False
    try:
        for step in tqdm.trange(FLAGS.max_steps, desc="actor", unit="step", dynamic_ncols=True, mininterval=5):
            if step < FLAGS.random_steps or holder.updates == 0:
                action = env.action_space.sample()
            else:
                key, sample_key = jax.random.split(key)
                action = np.asarray(holder.agent.sample_actions(observation, seed=sample_key))
            next_observation, reward, terminated, truncated, info = env.step(action)
            data_store.insert({"observations": observation, "actions": action, "next_observations": next_observation,
                               "rewards": float(reward), "masks": 1.0 - float(terminated),
                               "dones": bool(terminated or truncated)})
            observation = next_observation
            episode_return += float(reward)
            episode_length += 1
            episode_success = episode_success or bool(info.get("success", False))
            if terminated or truncated:
                send_stats(client, {"episode/return": episode_return, "episode/length": episode_length,
                                    "episode/success": float(episode_success), "actor/env_steps": step + 1})
                observation, _ = env.reset()
                episode_return, episode_length, episode_success = 0.0, 0, False
            if (step + 1) % FLAGS.steps_per_update == 0:
                client.update()
                wait_for_learner(client)
            if FLAGS.eval_period and (step + 1) % FLAGS.eval_period == 0:
                agent = holder.agent
                results = evaluate(lambda obs: np.asarray(agent.sample_actions(obs, argmax=True)),
                                   eval_env, FLAGS.eval_n_trajs)
                logging.info("eval at env step %d: return %.2f  success %.2f", step + 1, results["return"],
                             results["success_rate"])
                send_stats(client, {"eval/return": results["return"], "eval/success_rate": results["success_rate"],
                                    "eval/env_steps": step + 1})
    except KeyboardInterrupt:
        logging.info("actor interrupted")
    finally:
        client.update()
        logging.info("actor transport stats: %s", client.stats())
        client.stop()


def main(_):
    if FLAGS.learner == FLAGS.actor:
        raise app.UsageError("pass exactly one of --learner or --actor")
    # A clean stop (launch.sh, kill) behaves like Ctrl-C: the learner saves a final checkpoint.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    python_logging.getLogger("jax").setLevel(python_logging.WARNING)  # backend-probing chatter
    render_mode = "human" if FLAGS.render and FLAGS.actor else None
    env = make_env(FLAGS.env, seed=FLAGS.seed, **({"render_mode": render_mode} if render_mode else {}))
    if FLAGS.learner:
        run_learner(env)
    else:
        run_actor(env)


if __name__ == "__main__":
    app.run(main)

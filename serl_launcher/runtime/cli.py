"""The command line every example shares: SERL's flags -> runtime configs, run directories, sinks, signals.

An example script defines its env and agent flags, then calls

    cli.main(make_env=..., make_agent=...)

and is run as `--learner` or `--actor --ip HOST`, in two terminals or on two machines.
Each learner run gets its own directory, runs/<exp_name>/<date_time>/ (checkpoints/,
metrics.jsonl, actor_metrics.jsonl, wandb/); `--resume` continues the newest run of the
experiment, `--checkpoint_path DIR` continues (or starts) exactly DIR.
"""
import datetime
import glob
import logging
import os
import signal
import sys
import threading
from typing import Callable, Optional

from absl import app, flags
from absl import logging as absl_logging

from serl_launcher.runtime import actor, learner
from serl_launcher.runtime.config import ActorConfig, LearnerConfig
from serl_launcher.runtime.metrics import ConsoleSink, Fanout, JsonlSink, WandbSink
from serl_launcher.utils.checkpoints import CheckpointError
from serl_launcher.utils.launcher import make_trainer_config

FLAGS = flags.FLAGS
logger = logging.getLogger(__name__)


def define_flags(exp_name: str) -> None:
    """The runtime's flags (SERL's names where SERL has one); `exp_name` is the example's default."""
    flags.DEFINE_bool("learner", False, "Run the learner.")
    flags.DEFINE_bool("actor", False, "Run an actor.")
    flags.DEFINE_bool("sync", False, "Learner and actor in this one process, updating after every env step "
                      "(--target_utd critic steps per env step), as papers train.")
    flags.DEFINE_string("ip", "localhost", "Actor: the learner's address.")
    flags.DEFINE_integer("port_number", 5488, "Learner's request port (params go out on --broadcast_port).")
    flags.DEFINE_integer("broadcast_port", 5489, "Learner's params port.")
    flags.DEFINE_string("bind_address", "0.0.0.0", "Learner: interface to listen on (127.0.0.1: this machine only).")
    flags.DEFINE_string("server_secret_key", None, "Learner: CURVE secret key file (see docs/transport.md).")
    flags.DEFINE_string("authorized_keys_dir", None, "Learner: directory of the actors' CURVE public keys.")
    flags.DEFINE_string("server_public_key", None, "Actor: the learner's CURVE public key file.")
    flags.DEFINE_string("client_secret_key", None, "Actor: its own CURVE secret key file.")
    flags.DEFINE_integer("seed", 42, "Random seed.")
    flags.DEFINE_string("exp_name", exp_name, "Experiment name: runs/<exp_name>/... and the wandb run name.")
    flags.DEFINE_string("run_dir", None, "Where this run writes (default: runs/<exp_name>/<date_time>).")
    flags.DEFINE_bool("resume", False, "Learner: continue the newest run of --exp_name that has checkpoints.")
    flags.DEFINE_string("checkpoint_path", None, "Learner: checkpoint directory (default <run_dir>/checkpoints); "
                        "an existing checkpoint there is resumed.")
    flags.DEFINE_integer("checkpoint_period", 1000, "Learner: checkpoint every this many updates (0: only at the end).")
    flags.DEFINE_integer("max_checkpoints", 10, "Learner: checkpoints to keep (0: all).")
    flags.DEFINE_bool("debug", False, "Debug run: no wandb.")
    flags.DEFINE_string("wandb_project", "serl_jax", "wandb project.")
    flags.DEFINE_string("wandb_entity", None, "wandb entity (team or user; default: yours).")
    flags.DEFINE_string("wandb_group", None, "wandb group, e.g. to gather seeds.")
    flags.DEFINE_bool("render", False, "Actor: show the environment in a window (needs a display).")

    defaults = LearnerConfig()
    flags.DEFINE_integer("batch_size", defaults.batch_size, "Critic minibatch size.")
    flags.DEFINE_integer("critic_actor_ratio", defaults.utd_ratio,
                         "Critic steps per actor step (UTD): each update samples batch_size x this.")
    flags.DEFINE_integer("max_steps", 1_000_000, "Learner: updates. Actor: environment steps.")
    flags.DEFINE_integer("replay_buffer_capacity", None, _doc(LearnerConfig, "replay_buffer_capacity"))
    flags.DEFINE_integer("training_starts", defaults.training_starts, "Learner: transitions before the first update.")
    flags.DEFINE_float("target_utd", defaults.target_utd, _doc(LearnerConfig, "target_utd"))
    flags.DEFINE_string("preload_rlds_path", None, "Learner: RLDS demonstrations to load before training.")
    flags.DEFINE_float("demo_ratio", defaults.demo_ratio, _doc(LearnerConfig, "demo_ratio"))
    flags.DEFINE_string("log_rlds_path", None, "Learner: write every received episode to this RLDS dataset directory.")
    flags.DEFINE_integer("log_period", defaults.log_period, "Learner: a metrics row every this many updates.")
    flags.DEFINE_float("publish_period", defaults.publish_period_s, "Learner: " + _doc(LearnerConfig, "publish_period_s"))
    flags.DEFINE_float("console_period", 10.0, "Seconds between progress lines on the console (evals always print).")
    flags.DEFINE_bool("console_episodes", False, "A console line per episode (losses, batch reward, real UTD); "
                      "default with --sync.")
    flags.DEFINE_integer("pretrain_steps", 0, "Learner: updates on the demos alone before accepting actor data.")
    actor_defaults = ActorConfig()
    flags.DEFINE_integer("random_steps", actor_defaults.random_steps, "Actor: random actions for this many first steps.")
    flags.DEFINE_integer("eval_period", actor_defaults.eval_period,
                         "Actor: evaluate at the first episode end after every this many steps (0: never).")
    flags.DEFINE_integer("eval_n_trajs", actor_defaults.eval_episodes, "Actor: episodes per evaluation.")
    flags.DEFINE_integer("save_video", 0, "Actor: film every this many evaluations into <run_dir>/videos (0: never).")
    flags.DEFINE_integer("video_size", None, "Video frame size (envs that take render_size; franka_sim: 480).")
    flags.DEFINE_string("video_camera", None, "Camera to film (envs that take render_camera; franka_sim: overview).")


def _doc(config_class, field: str) -> str:
    """A field's docstring from the config's source, so flags and configs say the same thing."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(config_class))
    body = tree.body[0].body
    for node, following in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and node.target.id == field and isinstance(following, ast.Expr):
            return " ".join(following.value.value.split())
    return field


def learner_config(checkpoint_dir: str) -> LearnerConfig:
    return LearnerConfig(
        batch_size=FLAGS.batch_size, utd_ratio=FLAGS.critic_actor_ratio, max_steps=FLAGS.max_steps,
        training_starts=FLAGS.training_starts, replay_buffer_capacity=FLAGS.replay_buffer_capacity,
        target_utd=FLAGS.target_utd, demos_path=FLAGS.preload_rlds_path, demo_ratio=FLAGS.demo_ratio,
        log_rlds_path=FLAGS.log_rlds_path, checkpoint_dir=checkpoint_dir, checkpoint_period=FLAGS.checkpoint_period,
        max_checkpoints=FLAGS.max_checkpoints or None, log_period=FLAGS.log_period, seed=FLAGS.seed,
        pretrain_steps=FLAGS.pretrain_steps, publish_period_s=FLAGS.publish_period)


def actor_config(directory: str) -> ActorConfig:
    return ActorConfig(max_steps=FLAGS.max_steps, random_steps=FLAGS.random_steps, eval_period=FLAGS.eval_period,
                       eval_episodes=FLAGS.eval_n_trajs, video_period=FLAGS.save_video,
                       video_dir=os.path.join(directory, "videos"), seed=FLAGS.seed)


def video_kwargs() -> dict:
    """Env kwargs that make the evaluation env render frames for --save_video."""
    if not FLAGS.save_video:
        return {}
    kwargs = {"render_mode": "rgb_array"}
    if FLAGS.video_size:
        kwargs["render_size"] = FLAGS.video_size
    if FLAGS.video_camera:
        kwargs["render_camera"] = FLAGS.video_camera
    return kwargs


def trainer_config(role: str, observation_space, action_space, agent):
    """The transport config; both sides must build it alike (keys are local: only the paths differ).

    Its compatibility entry (spaces and agent description) makes the learner refuse, at the
    handshake, an actor built for another env or other networks, naming what differs.
    """
    compatibility = {"observation_space": repr(observation_space), "action_space": repr(action_space),
                     "agent": agent.describe()}
    return make_trainer_config(
        FLAGS.port_number, FLAGS.broadcast_port, bind_address=FLAGS.bind_address, compatibility=compatibility,
        server_secret_key=FLAGS.server_secret_key if role == "learner" else None,
        authorized_keys_dir=FLAGS.authorized_keys_dir if role == "learner" else None,
        server_public_key=FLAGS.server_public_key if role == "actor" else None,
        client_secret_key=FLAGS.client_secret_key if role == "actor" else None)


def run_dir() -> str:
    """This run's directory: --run_dir, else (with --resume) the newest run of the experiment, else a new one."""
    if FLAGS.run_dir:
        return FLAGS.run_dir
    experiment = os.path.join("runs", FLAGS.exp_name)
    if FLAGS.resume and (FLAGS.learner or FLAGS.sync):
        previous = sorted(glob.glob(os.path.join(experiment, "*", "checkpoints", "*")))
        if not previous:
            raise CheckpointError(f"--resume: no run of {FLAGS.exp_name!r} with checkpoints under {experiment}/")
        return os.path.dirname(os.path.dirname(previous[-1]))
    return os.path.join(experiment, datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S"))


def progress_sinks(directory: str, role: str, config: dict) -> Fanout:
    sinks = [ConsoleSink(FLAGS.console_period, episode_lines=FLAGS.console_episodes or FLAGS.sync),
             JsonlSink(os.path.join(directory, "metrics.jsonl" if role == "learner" else "actor_metrics.jsonl"))]
    if role == "learner" and not FLAGS.debug:
        sinks.append(WandbSink(FLAGS.wandb_project, FLAGS.exp_name, config, directory,
                               entity=FLAGS.wandb_entity, group=FLAGS.wandb_group))
    return Fanout(sinks)


def own_flags(module_names: tuple) -> dict:
    """The values of the flags this program defines (not absl's help/verbosity/pdb...): the wandb config."""
    return {flag.name: flag.value for name in module_names for flag in FLAGS.get_flags_for_module(name)}


def stop_on_signals() -> threading.Event:
    """Ctrl-C / SIGTERM set the returned event: the loops finish the current step, the learner saves
    its final checkpoint (a checkpoint being written is never interrupted). A second signal exits at once."""
    stop = threading.Event()

    def handle(signum, frame):
        if stop.is_set():
            logger.warning("second stop signal: exiting now, without a final checkpoint")
            os._exit(130)
        logger.info("stopping (finishing the current step%s); press Ctrl-C again to abort",
                    ", then saving a checkpoint" if FLAGS.learner else "")
        stop.set()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    return stop


def main(make_env: Callable, make_agent: Callable, make_spaces: Optional[Callable] = None,
         flag_modules: tuple = ("__main__",), separate_eval_env: bool = True) -> None:
    """Run the learner or an actor from the flags.

    make_env(render: bool, **env_kwargs) -> env (env_kwargs: rendering options for videos); make_agent(sample_observation, sample_action) -> agent;
    make_spaces() -> (observation_space, action_space) for a learner that cannot build the env
    (a real robot's); default: read them from make_env().
    separate_eval_env: evaluate on a second env (simulators); False evaluates on the training env
    between episodes (a robot: there is one arm, and it serves one connection).
    """
    if FLAGS.learner + FLAGS.actor + FLAGS.sync != 1:
        raise app.UsageError("pass exactly one of --learner, --actor or --sync")
    logging.getLogger("jax").setLevel(logging.WARNING)  # backend-probing chatter
    absl_logging.use_absl_handler()
    stop = stop_on_signals()
    try:
        if FLAGS.learner:
            _learner(make_env, make_agent, make_spaces, stop, flag_modules)
        elif FLAGS.sync:
            _sync(make_env, make_agent, stop, flag_modules, separate_eval_env)
        else:
            _actor(make_env, make_agent, stop, separate_eval_env)
    except (CheckpointError, OSError, ValueError) as error:
        if not _is_user_error(error) or os.environ.get("SERL_DEBUG"):
            raise
        print(f"error: {error}\n(SERL_DEBUG=1 shows the traceback)", file=sys.stderr)
        sys.exit(1)


def _is_user_error(error: Exception) -> bool:
    """Errors whose message says what to fix (bad flags, paths, checkpoints); others keep their traceback."""
    return isinstance(error, CheckpointError) or type(error) in (OSError, ValueError, FileNotFoundError)


def _learner(make_env, make_agent, make_spaces, stop, flag_modules) -> None:
    if FLAGS.bind_address not in ("127.0.0.1", "localhost", "::1") and not FLAGS.server_secret_key:
        logger.warning("*** the learner listens on %s WITHOUT encryption or authentication: anyone who can reach "
                       "ports %d/%d can send it data. On a shared network use CURVE keys (--server_secret_key, "
                       "--authorized_keys_dir; docs/transport.md) or --bind_address 127.0.0.1. ***",
                       FLAGS.bind_address, FLAGS.port_number, FLAGS.broadcast_port)
    directory = run_dir()
    checkpoint_dir = FLAGS.checkpoint_path or os.path.join(directory, "checkpoints")
    if make_spaces is not None:
        observation_space, action_space = make_spaces()
    else:
        env = make_env(render=False)
        observation_space, action_space = env.observation_space, env.action_space
        env.close()
    agent = make_agent(observation_space.sample(), action_space.sample())
    os.makedirs(directory, exist_ok=True)
    logger.info("run directory %s (checkpoints in %s)", os.path.abspath(directory), os.path.abspath(checkpoint_dir))
    sinks = progress_sinks(directory, "learner", own_flags(flag_modules + (__name__,)))
    try:
        result = learner.run_learner(learner_config(checkpoint_dir), agent, observation_space, action_space,
                                     trainer_config("learner", observation_space, action_space, agent),
                                     progress_fn=sinks, stop=stop,
                                     checkpoint_metadata={"env": getattr(FLAGS, "env", None)})
    finally:
        sinks.close()
    logger.info("learner stopped at update %d, %d env steps", result.learner_step, result.env_steps)


def _actor(make_env, make_agent, stop, separate_eval_env: bool) -> None:
    if FLAGS.render and sys.platform.startswith("linux") and not (
            os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise app.UsageError("--render needs a display (DISPLAY and WAYLAND_DISPLAY are unset on this machine)")
    env = make_env(render=FLAGS.render)
    eval_env = make_env(render=False, **video_kwargs()) if separate_eval_env else env
    agent = make_agent(env.observation_space.sample(), env.action_space.sample())
    directory = FLAGS.run_dir or os.path.join("runs", FLAGS.exp_name, "actor")
    sinks = progress_sinks(directory, "actor", {})
    try:
        config = trainer_config("actor", env.observation_space, env.action_space, agent)
        result = actor.run_actor(actor_config(directory), agent, env, config, FLAGS.ip, eval_env=eval_env,
                                 progress_fn=sinks, stop=stop)
    finally:
        sinks.close()
        env.close()
        if eval_env is not env:
            eval_env.close()
    logger.info("actor stopped after %d env steps: %s", result.env_steps, result.transport)


def _sync(make_env, make_agent, stop, flag_modules, separate_eval_env: bool) -> None:
    from serl_launcher.runtime.sync import run_sync

    env = make_env(render=FLAGS.render)
    eval_env = make_env(render=False, **video_kwargs()) if separate_eval_env else env
    agent = make_agent(env.observation_space.sample(), env.action_space.sample())
    directory = run_dir()
    os.makedirs(directory, exist_ok=True)
    logger.info("run directory %s (synchronous: learner and actor in this process)", os.path.abspath(directory))
    sinks = progress_sinks(directory, "learner", own_flags(flag_modules + (__name__,)))
    try:
        result = run_sync(learner_config(None), actor_config(directory), agent, env, eval_env, progress_fn=sinks,
                          stop=stop)
    finally:
        sinks.close()
        env.close()
        if eval_env is not env:
            eval_env.close()
    logger.info("stopped after %d env steps, %d updates", result.env_steps, result.learner_step)

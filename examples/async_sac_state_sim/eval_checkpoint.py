#!/usr/bin/env python3
"""Run a trained policy: load a checkpoint (the agent rebuilds from it alone) and evaluate it, with a video.

    python eval_checkpoint.py --checkpoint_path runs/pick_cube/<run>/checkpoints --eval_episodes 20 \
        --video_path runs/pick_cube/<run>/eval.mp4

The environment defaults to the one the learner trained on (saved with the checkpoint).
"""
import json
import os

from absl import app, flags

from franka_sim import headless  # noqa: F401  (MUJOCO_GL=egl when there is no display; before mujoco loads)
from serl_launcher.common.evaluation import evaluate
from serl_launcher.common.observations import ObservationSpec
from serl_launcher.utils.checkpoints import AgentCheckpointer, CheckpointError, load_agent
from serl_launcher.utils.launcher import make_env
from serl_launcher.utils.video import VideoRecorder

FLAGS = flags.FLAGS
flags.DEFINE_string("checkpoint_path", None, "Checkpoint directory (a run's checkpoints/).", required=True)
flags.DEFINE_integer("checkpoint_step", None, "Checkpoint step to load (default: the newest).")
flags.DEFINE_string("env", None, "Gymnasium id (default: the env the checkpoint was trained on).")
flags.DEFINE_string("env_kwargs", "{}", "JSON keyword arguments for the env, as training passed them, e.g. "
                    "'{\"block_offset\": false}' for a PandaPickCube-v0 policy trained on SERL's observation.")
flags.DEFINE_integer("eval_episodes", 10, "Episodes to run.")
flags.DEFINE_integer("seed", 0, "Seed of the first episode (episode i uses seed + i).")
flags.DEFINE_string("video_path", None, "Write the episodes as a video (.mp4 or .gif).")
flags.DEFINE_integer("video_size", 480, "Video frame size in pixels (square).")
flags.DEFINE_string("video_camera", "overview", "Camera of the scene to film (franka_sim: overview, front, wrist).")


def main(_):
    try:
        agent = load_agent(FLAGS.checkpoint_path, FLAGS.checkpoint_step)
        metadata = AgentCheckpointer(FLAGS.checkpoint_path, max_to_keep=None).metadata(FLAGS.checkpoint_step)
    except CheckpointError as error:
        raise app.UsageError(str(error))
    env_id = FLAGS.env or metadata.get("env")
    if not env_id:
        raise app.UsageError("the checkpoint does not say which env it was trained on: pass --env")
    video = {"render_mode": "rgb_array", "render_camera": FLAGS.video_camera,
             "render_size": FLAGS.video_size} if FLAGS.video_path else {}
    try:
        env_kwargs = json.loads(FLAGS.env_kwargs)
    except json.JSONDecodeError as error:
        raise app.UsageError(f"--env_kwargs is not JSON: {error}")
    env = make_env(env_id, seed=FLAGS.seed, **env_kwargs, **video)
    env_spec = ObservationSpec.of(env.observation_space.sample())
    if env_spec != agent.observation_spec:
        raise app.UsageError(
            f"the checkpoint's policy observes {agent.observation_spec.to_json()}, but {env_id} with env kwargs "
            f"{env_kwargs} gives {env_spec.to_json()}: build the env as training did (--env_kwargs; "
            "PandaPickCube-v0 policies trained on SERL's 10-float observation need '{\"block_offset\": false}')")
    print(f"loaded {FLAGS.checkpoint_path} (learner step {metadata.get('learner_step', '?')}, "
          f"{metadata.get('env_steps', '?')} env steps); evaluating on {env_id}")
    recorder = VideoRecorder(FLAGS.video_path, fps=env.metadata.get("render_fps", 25)) if FLAGS.video_path else None
    results = evaluate(lambda obs: agent.sample_actions(obs, argmax=True), env, FLAGS.eval_episodes, seed=FLAGS.seed,
                       on_frame=recorder.add_frame if recorder else None)
    success = f", success rate {results['success_rate']:.2f}" if "success_rate" in results else ""
    print(f"{env_id}: {results['episodes']} episodes, mean return {results['return']:.2f}{success}, "
          f"mean length {results['episode_length']:.1f}")
    if recorder:
        recorder.close()
        print(f"video: {os.path.abspath(FLAGS.video_path)} ({recorder.frames} frames)")
    env.close()


if __name__ == "__main__":
    app.run(main)

#!/usr/bin/env python3
"""Deploy a trained policy: load a learner checkpoint and run the deterministic policy.

    python eval_checkpoint.py --checkpoint_path ../../runs/pick_cube/checkpoints --eval_episodes 20 \
        [--video_path pick_cube.gif]

Takes the same environment and network flags as async_sac_state_sim.py (they must match training).
"""
import os

import imageio.v2 as imageio
import numpy as np
from absl import app, flags

import async_sac_state_sim as training
from serl_launcher.utils.checkpoints import AgentCheckpointer
from serl_launcher.utils.evaluation import evaluate
from serl_launcher.utils.launcher import make_env

FLAGS = flags.FLAGS
flags.DEFINE_integer("eval_episodes", 10, "Episodes to run.")
flags.DEFINE_integer("checkpoint_step", None, "Checkpoint step to load (default: the newest).")
flags.DEFINE_string("video_path", None, "Write the episodes as an animated GIF or MP4 here (rendered off-screen).")


def main(_):
    if not FLAGS.checkpoint_path:
        raise app.UsageError("--checkpoint_path is required")
    if not os.path.isdir(FLAGS.checkpoint_path):
        raise app.UsageError(f"--checkpoint_path {FLAGS.checkpoint_path} does not exist")
    env = make_env(FLAGS.env, seed=FLAGS.seed, **({"render_mode": "rgb_array"} if FLAGS.video_path else {}))
    agent, metadata = AgentCheckpointer(FLAGS.checkpoint_path).restore(training.make_agent(env), FLAGS.checkpoint_step)
    print(f"loaded {FLAGS.checkpoint_path} (learner step {metadata.get('learner_step', '?')})")

    frames = []
    results = evaluate(lambda obs: np.asarray(agent.sample_actions(obs, argmax=True)), env, FLAGS.eval_episodes,
                       seed=FLAGS.seed, on_frame=(lambda e: frames.append(e.render())) if FLAGS.video_path else None)
    print(f"{FLAGS.env}: {results['episodes']} episodes, mean return {results['return']:.2f}, "
          f"success rate {results['success_rate']:.2f}, mean length {results['episode_length']:.1f}")
    if FLAGS.video_path:
        imageio.mimsave(FLAGS.video_path, frames, fps=25)
        print(f"video: {FLAGS.video_path} ({len(frames)} frames)")


if __name__ == "__main__":
    app.run(main)

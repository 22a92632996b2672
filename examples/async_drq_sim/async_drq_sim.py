#!/usr/bin/env python3
"""Asynchronous DrQ (SAC from camera images) on a simulated task: one script, two roles.

    learner:  python async_drq_sim.py --learner [--preload_rlds_path DIR --demo_ratio 0.5]
    actor:    python async_drq_sim.py --actor --ip LEARNER_HOST

Same runtime as examples/async_sac_state_sim (the loops live in serl_launcher.runtime); the agent
encodes each camera with a conv net (--encoder_type) and augments batches with random shifts. The
classic pixel benchmarks run here too, e.g.
    python async_drq_sim.py --sync --env classic_envs:dmc/cheetah-run-v0 --encoder_type sac_ae --reconstruction
"""
from absl import app, flags

from franka_sim import headless  # noqa: F401  (MUJOCO_GL=egl when there is no display; before mujoco loads)
import classic_envs  # noqa: F401  (registers dmc/*-v0, VisualPendulum-v0, CarRacingPixels-v0)
from serl_launcher.runtime import cli
from serl_launcher.utils.launcher import make_drq_agent, make_env

FLAGS = flags.FLAGS
flags.DEFINE_string("env", "franka_sim:PandaPickCubeVision-v0", "Gymnasium id with camera (uint8) observations.")
flags.DEFINE_integer("image_size", None, "Camera resolution, for envs that take image_size (default: the env's).")
flags.DEFINE_enum("encoder_type", "small", ["small", "resnet", "resnet-pretrained", "sac_ae"],
                  "Image encoder per camera (sac_ae: SAC-AE's conv net, the policy with its own projection).")
flags.DEFINE_bool("reconstruction", False, "SAC-AE: train a decoder of the camera's images with the critic "
                  "(needs --encoder_type sac_ae and a single camera).")
flags.DEFINE_integer("augmentation_pad", 4, "DrQ's random shifts of up to this many pixels (0: none).")
flags.DEFINE_integer("latent_dim", None, "Encoder features per camera (default: 256; SAC-AE's paper: 50).")
flags.DEFINE_string("pretrained_weights", None, "ResNet-10 backbone weights (msgpack) for resnet-pretrained.")
flags.DEFINE_list("image_keys", [], "Cameras to encode, e.g. front,wrist (default: every image in the observation).")
flags.DEFINE_list("hidden_dims", ["256", "256"], "Hidden layer sizes of actor and critic.")
flags.DEFINE_integer("critic_ensemble_size", 10, "Critic ensemble size (REDQ).")
flags.DEFINE_integer("critic_subsample_size", 2, "Critics the target takes the min over (0: all).")
flags.DEFINE_float("discount", 0.96, "Discount factor.")
cli.define_flags(exp_name="pick_cube_vision")
flags.FLAGS.set_default("critic_actor_ratio", 4)


def env_factory(render: bool, **env_kwargs):
    if FLAGS.image_size:
        env_kwargs["image_size"] = FLAGS.image_size
    return make_env(FLAGS.env, seed=FLAGS.seed, **env_kwargs, **({"render_mode": "human"} if render else {}))


def agent_factory(sample_observation, sample_action):
    return make_drq_agent(FLAGS.seed, sample_observation, sample_action, image_keys=tuple(FLAGS.image_keys),
                          encoder_type=FLAGS.encoder_type, pretrained_weights=FLAGS.pretrained_weights,
                          discount=FLAGS.discount, critic_ensemble_size=FLAGS.critic_ensemble_size,
                          critic_subsample_size=FLAGS.critic_subsample_size or None,
                          hidden_dims=tuple(int(d) for d in FLAGS.hidden_dims), latent_dim=FLAGS.latent_dim,
                          reconstruction=FLAGS.reconstruction, augmentation_pad=FLAGS.augmentation_pad)


def main(_):
    cli.main(env_factory, agent_factory)


if __name__ == "__main__":
    app.run(main)

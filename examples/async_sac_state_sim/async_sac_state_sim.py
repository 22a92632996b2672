#!/usr/bin/env python3
"""Asynchronous SAC on a simulated task from state observations: one script, two roles.

    learner:  python async_sac_state_sim.py --learner [--preload_rlds_path demos/pick_cube_20_scripted --demo_ratio 0.5]
    actor:    python async_sac_state_sim.py --actor --ip LEARNER_HOST

The actor steps the environment with the newest policy and streams transitions to the learner; the
learner trains SAC (`update_high_utd`) and publishes the policy back. Start them in either order, on
one machine or two (`launch.sh` starts both here). The loops live in serl_launcher.runtime; this
script is configuration: the env, the agent, and the flags (`--help` lists them all).
"""
from absl import app, flags

from franka_sim import headless  # noqa: F401  (MUJOCO_GL=egl when there is no display; before mujoco loads)
from serl_launcher.runtime import cli
from serl_launcher.utils.launcher import make_env, make_sac_agent

FLAGS = flags.FLAGS
flags.DEFINE_string("env", "franka_sim:PandaPickCube-v0",
                    "Gymnasium id (module:Id imports the module that registers it): Box or Dict state observations, "
                    "Box actions.")
flags.DEFINE_list("hidden_dims", ["256", "256"], "Hidden layer sizes of actor and critic.")
# Ensemble 2 (plain SAC's twin critics) rather than SERL's REDQ 10: 3x the updates per second on a 2-core
# CPU, and from scratch it reached 90% success within 25k env steps (README, Benchmarks).
# SERL's REDQ: --critic_ensemble_size 10 --critic_subsample_size 2.
flags.DEFINE_integer("critic_ensemble_size", 2, "Critic ensemble size.")
flags.DEFINE_integer("critic_subsample_size", 0, "Critics the target takes the min over (0: all).")
flags.DEFINE_float("discount", 0.99, "Discount factor.")
flags.DEFINE_enum("reward_type", None, ["shaped", "staged"],
                  "franka_sim pick-cube reward (franka_sim/pick_cube.py); default: the env's own.")
flags.DEFINE_bool("block_offset", None,
                  "franka_sim pick-cube: observe cube minus TCP (franka_sim/pick_cube.py; --noblock_offset: SERL's "
                  "observation); default: the env's own (on).")
cli.define_flags(exp_name="pick_cube")


def env_factory(render: bool, **env_kwargs):
    if FLAGS.reward_type:
        env_kwargs["reward_type"] = FLAGS.reward_type
    if FLAGS.block_offset is not None:
        env_kwargs["block_offset"] = FLAGS.block_offset
    return make_env(FLAGS.env, seed=FLAGS.seed, **env_kwargs, **({"render_mode": "human"} if render else {}))


def agent_factory(sample_observation, sample_action):
    return make_sac_agent(FLAGS.seed, sample_observation, sample_action, discount=FLAGS.discount,
                          critic_ensemble_size=FLAGS.critic_ensemble_size,
                          critic_subsample_size=FLAGS.critic_subsample_size or None,
                          hidden_dims=tuple(int(d) for d in FLAGS.hidden_dims))


def main(_):
    cli.main(env_factory, agent_factory)


if __name__ == "__main__":
    app.run(main)

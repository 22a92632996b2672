#!/usr/bin/env python3
"""Asynchronous SAC on the real Franka arm (or franky-sim): the state example's runtime, a robot env.

    learner (any machine):      python async_sac_franka.py --learner
    actor (the robot's RT PC):  python async_sac_franka.py --actor --ip LEARNER_HOST --robot_ip 172.16.0.2

The learner never connects to the arm: it builds the agent from the env's spaces alone. The actor
evaluates on the same arm between episodes (there is one arm). A robot cannot pause for the learner:
--target_utd stays 0. `train_on_franky_sim.sh` runs all of it against a simulated arm on this machine.
Other tasks: give --env a registered franka_env id and adapt `spaces_factory` (docs/robot.md).
"""
from absl import app, flags

from serl_launcher.runtime import cli
from serl_launcher.utils.launcher import agent_spaces, make_env, make_sac_agent

FLAGS = flags.FLAGS
flags.DEFINE_string("env", "franka_env:FrankaReach-v0", "A franka_env task id.")
flags.DEFINE_string("robot_ip", None, "Actor: the arm's (or franky-sim's) address.")
flags.DEFINE_bool("realtime_ignore", False, "Actor: connect without a real-time kernel (simulators only).")
flags.DEFINE_list("hidden_dims", ["256", "256"], "Hidden layer sizes of actor and critic.")
flags.DEFINE_integer("critic_ensemble_size", 10, "Critic ensemble size (REDQ).")
flags.DEFINE_integer("critic_subsample_size", 2, "Critics the target takes the min over (0: all).")
flags.DEFINE_float("discount", 0.97, "Discount factor (reaching: a short horizon).")
cli.define_flags(exp_name="franka_reach")
FLAGS.set_default("eval_period", 3000)
FLAGS.set_default("eval_n_trajs", 3)
FLAGS.set_default("random_steps", 1000)
FLAGS.set_default("training_starts", 1000)


def env_factory(render: bool, **env_kwargs):
    if not FLAGS.robot_ip:
        raise app.UsageError("--robot_ip is required for the actor")
    return make_env(FLAGS.env, robot_ip=FLAGS.robot_ip, realtime_ignore=FLAGS.realtime_ignore, **env_kwargs)


def spaces_factory():
    from franka_env.envs import reach_spaces

    if FLAGS.env.split(":")[-1] != "FrankaReach-v0":
        raise app.UsageError(f"this example's learner knows FrankaReach-v0's spaces; for {FLAGS.env}, "
                             "return its FrankaEnv.spaces(task, ...) from spaces_factory")
    return agent_spaces(*reach_spaces())


def agent_factory(sample_observation, sample_action):
    return make_sac_agent(FLAGS.seed, sample_observation, sample_action, discount=FLAGS.discount,
                          critic_ensemble_size=FLAGS.critic_ensemble_size,
                          critic_subsample_size=FLAGS.critic_subsample_size or None,
                          hidden_dims=tuple(int(d) for d in FLAGS.hidden_dims))


def main(_):
    cli.main(env_factory, agent_factory, make_spaces=spaces_factory, separate_eval_env=False)


if __name__ == "__main__":
    app.run(main)

"""One install for the whole toolkit: the `serl_launcher` library, the `franka_sim` environments and
`franka_env`, the real Franka robot (its hardware libraries are the `robot` extra).

Versions are pinned to a set tested together on a 2-core CPU machine (Python 3.11).
"""
from setuptools import find_packages, setup

CORE = [
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "flax==0.12.8",
    "optax==0.2.8",
    "numpy==2.4.6",
    "orbax-checkpoint==0.12.8",
    "gymnasium[mujoco]==1.4.0",
    "mujoco==3.17.0",
    "imageio==2.38.1",
    "imageio-ffmpeg==0.8.1",
    "pillow==13.0.0",
    "absl-py==2.5.1",
    "pyzmq==27.3.0",
    "msgpack==1.2.4",
    "tqdm==4.70.1",
    "wandb==0.31.0",
    "tfrecord==1.14.6",
    "crc32c==2.9.post0",
]

EXTRAS = {
    "dev": ["pytest==9.2.0", "pytest-timeout==2.4.0", "matplotlib==3.11.2", "scipy==1.17.1"],
    # TensorFlow Datasets: only for the RLDS compatibility tests; our reader/writer never needs it.
    "rlds": ["tensorflow-cpu==2.21.0", "tensorflow-datasets==4.9.10"],
    "envs": ["dm-control==1.0.50", "gymnasium[box2d]==1.4.0"],
    # A real Franka arm (franky-control: libfranka inside the wheel) and the SpaceMouse (pyspacemouse also
    # needs the hidapi C library at run time: apt-get install libhidapi-dev).
    "robot": ["franky-control==2.0.0", "websockets==17.4", "pyspacemouse==2.1.0", "scipy==1.17.1"],
    # The robot tests: franky against franky-sim, a MuJoCo FR3 serving the libfranka protocol on loopback
    # (it needs pinocchio, `pin`, and its compiled dependencies, pinned as tested), and pyspacemouse, which
    # installs without hidapi and is tested for its errors without a device.
    "robot-test": ["franky-control==2.0.0", "websockets==17.4", "franky-sim==1.0.4", "pin==4.1.0", "coal==3.0.3",
                   "eigenpy==3.13.0", "pyspacemouse==2.1.0", "scipy==1.17.1"],
}

setup(
    name="serl-jax",
    version="0.1.0",
    description="Sample-efficient robot reinforcement learning in JAX: asynchronous SAC learner/actor, "
    "ZeroMQ transport, MuJoCo Franka environments and the real Franka robot.",
    python_requires=">=3.10",
    packages=find_packages(include=["serl_launcher*", "franka_sim*", "franka_env*", "classic_envs*"]),
    package_data={"franka_sim": ["assets/*.xml"]},
    install_requires=CORE,
    extras_require=EXTRAS,
)

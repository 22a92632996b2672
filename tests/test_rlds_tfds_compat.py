"""RLDS compatibility with real TensorFlow Datasets, both ways.

TensorFlow runs in a child process: tfrecord's copy of the tf.train.Example protos and TensorFlow's
cannot be loaded in one process (protobuf rejects the duplicate), and that keeps TensorFlow out of
the rest of the suite. Episodes travel between the processes as .npz files. The tests are skipped,
with the reason in pytest's summary, only where tensorflow_datasets is not installed; the `rlds`
extra (which `make test` installs) provides it.
"""
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

from serl_launcher.data.rlds import episodes_to_transitions, read_rlds_dataset, write_rlds_dataset

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("tensorflow_datasets") is None,
    reason="tensorflow_datasets not installed: RLDS/TFDS compatibility NOT checked (pip install -e '.[rlds]')",
)

# Runs with TensorFlow: `python -c _CHILD MODE DIRECTORY NPZ`.
#   read: load DIRECTORY with tfds.builder_from_directory and save its episodes to NPZ.
#   sequential: write NPZ's episodes to DIRECTORY with rlds_base.build_info + SequentialWriter.
#   build: write them with a GeneratorBasedBuilder (the `tfds build` layout of Open X-Embodiment),
#          storing observation/state zlib-encoded.
_CHILD = r'''
import os
import sys
import numpy as np
import tensorflow_datasets as tfds

mode, directory, npz_path = sys.argv[1:4]


def flat(tree, prefix=""):
    out = {}
    for key, value in tree.items():
        path = f"{prefix}/{key}" if prefix else key
        out.update(flat(value, path) if isinstance(value, dict) else {path: value})
    return out


def nest(flat_dict):
    tree = {}
    for path, value in flat_dict.items():
        *parents, leaf = path.split("/")
        node = tree
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return tree


def load_episodes():
    data, episodes = np.load(npz_path), {}
    for key in data.files:
        index, path = key.split("/", 1)
        episodes.setdefault(int(index), {})[path] = data[key]
    return [nest(episodes[i]) for i in sorted(episodes)]


def to_tfds_episode(episode):
    metadata = episode.pop("episode_metadata")
    steps = flat(episode)
    num_steps = len(steps["is_first"])
    return {"steps": [nest({p: v[t] for p, v in steps.items()}) for t in range(num_steps)], **metadata}


def step_features(episode, state_encoding="none"):
    obs, T = episode["observation"], tfds.features.Tensor
    return dict(
        observation=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=obs["image"].shape[1:]),
            "wrist": tfds.features.Image(shape=obs["wrist"].shape[1:]),
            "state": T(shape=obs["state"].shape[1:], dtype=np.float32, encoding=state_encoding),
        }),
        action=T(shape=episode["action"].shape[1:], dtype=np.float32),
        reward=tfds.features.Scalar(dtype=np.float32),
        discount=tfds.features.Scalar(dtype=np.float32),
    )


if mode == "read":
    builder = tfds.builder_from_directory(directory)
    out = {"num_examples": np.array(builder.info.splits["train"].num_examples)}
    for i, episode in enumerate(tfds.as_numpy(builder.as_dataset(split="train"))):
        steps = [flat(step) for step in episode.pop("steps")]
        out.update({f"{i}/{p}": np.stack([s[p] for s in steps]) for p in steps[0]})
        out.update({f"{i}/episode_metadata/{p}": v for p, v in flat(episode).items()})
    np.savez(npz_path, **out)
elif mode == "sequential":
    episodes = load_episodes()
    features = step_features(episodes[0])
    config = tfds.rlds.rlds_base.DatasetConfig(
        name="compat_robot",
        observation_info=features["observation"],
        action_info=features["action"],
        reward_info=features["reward"],
        discount_info=features["discount"],
        step_metadata_info={"language_instruction": tfds.features.Text()},
        episode_metadata_info={"episode_id": np.int32},
    )
    identity = tfds.core.DatasetIdentity(
        name="compat_robot", version=tfds.core.Version("1.0.0"), data_dir=directory, module_name="")
    info = tfds.rlds.rlds_base.build_info(config, identity)
    info.set_file_format("tfrecord")
    os.makedirs(directory)  # SequentialWriter does not create it
    writer = tfds.core.SequentialWriter(info, max_examples_per_shard=2)
    writer.initialize_splits(["train"])
    writer.add_examples({"train": [to_tfds_episode(e) for e in episodes]})
    writer.close_all()
elif mode == "build":
    episodes = load_episodes()

    class CompatRobot(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            steps = dict(step_features(episodes[0], state_encoding="zlib"),
                         is_first=np.bool_, is_last=np.bool_, is_terminal=np.bool_,
                         language_instruction=tfds.features.Text())
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "steps": tfds.features.Dataset(steps), "episode_id": np.int32}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            for i, episode in enumerate(episodes):
                yield i, to_tfds_episode(episode)

    CompatRobot(data_dir=directory).download_and_prepare()
'''


def _run_tfds(mode, directory, npz):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    result = subprocess.run([sys.executable, "-c", _CHILD, mode, str(directory), str(npz)],
                            capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, f"TFDS child ({mode}) failed:\n{result.stderr[-4000:]}"


def _flat(tree, prefix=""):
    out = {}
    for key, value in tree.items():
        path = f"{prefix}/{key}" if prefix else key
        out.update(_flat(value, path) if isinstance(value, dict) else {path: value})
    return out


def _nest(flat_dict):
    tree = {}
    for path, value in flat_dict.items():
        *parents, leaf = path.split("/")
        node = tree
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return tree


def _make_episodes(seed=0, lengths=(4, 1, 6, 3, 2)):
    """Episodes with every kind of field: RGB and 1-channel images, float state, text, episode metadata;
    the even ones terminate, the odd ones are truncated."""
    rng = np.random.default_rng(seed)
    episodes = []
    for i, n in enumerate(lengths):
        last = np.arange(n) == n - 1
        episodes.append({
            "observation": {
                "image": rng.integers(0, 256, (n, 10, 8, 3), dtype=np.uint8),
                "wrist": rng.integers(0, 256, (n, 6, 4, 1), dtype=np.uint8),
                "state": rng.normal(size=(n, 5)).astype(np.float32),
            },
            "action": rng.normal(size=(n, 3)).astype(np.float32),
            "reward": rng.normal(size=n).astype(np.float32),
            "discount": rng.uniform(size=n).astype(np.float32),
            "is_first": np.arange(n) == 0,
            "is_last": last,
            "is_terminal": last & (i % 2 == 0),
            "language_instruction": np.array([f"task {i} step {t}".encode() for t in range(n)]),
            "episode_metadata": {"episode_id": np.int32(i)},
        })
    return episodes


def _save(episodes, npz):
    np.savez(npz, **{f"{i}/{p}": v for i, e in enumerate(episodes) for p, v in _flat(e).items()})


def _assert_same(expected, actual, where):
    expected, actual = _flat(expected), _flat(actual)
    assert sorted(actual) == sorted(expected), where
    for path, want in expected.items():
        got = np.asarray(actual[path])
        if want.dtype.kind == "S":
            got = got.astype(bytes)
        assert got.shape == want.shape, f"{where} {path}: shape {got.shape} != {want.shape}"
        assert got.dtype == want.dtype, f"{where} {path}: dtype {got.dtype} != {want.dtype}"
        np.testing.assert_array_equal(got, want, err_msg=f"{where} {path}")


def _by_id(episodes):
    return {int(e["episode_metadata"]["episode_id"]): e for e in episodes}


def test_tfds_loads_dataset_written_by_our_writer(tmp_path):
    episodes = _make_episodes()
    write_rlds_dataset(tmp_path / "ours", episodes, name="serl_compat", episodes_per_shard=2)
    _run_tfds("read", tmp_path / "ours", tmp_path / "read.npz")

    data = np.load(tmp_path / "read.npz")
    assert int(data["num_examples"]) == len(episodes)
    loaded = {}
    for key in data.files:
        if key != "num_examples":
            index, path = key.split("/", 1)
            loaded.setdefault(index, {})[path] = data[key]
    loaded = _by_id([_nest(e) for e in loaded.values()])  # TFDS interleaves shards: match by id
    assert sorted(loaded) == list(range(len(episodes)))
    for i, episode in enumerate(episodes):
        _assert_same(episode, loaded[i], f"episode {i} as TFDS read it:")


def test_our_reader_loads_dataset_written_by_tfds_sequential_writer(tmp_path):
    episodes = _make_episodes(seed=1)
    _save(episodes, tmp_path / "episodes.npz")
    _run_tfds("sequential", tmp_path / "tfds", tmp_path / "episodes.npz")

    shards = sorted(f for f in os.listdir(tmp_path / "tfds") if ".tfrecord-" in f)
    assert shards == ["compat_robot-train.tfrecord-00000", "compat_robot-train.tfrecord-00001",
                      "compat_robot-train.tfrecord-00002"]
    loaded = list(read_rlds_dataset(str(tmp_path / "tfds")))
    assert len(loaded) == len(episodes)
    for i, (episode, got) in enumerate(zip(episodes, loaded)):
        _assert_same(episode, got, f"episode {i} as we read it:")
    # Preloading a replay buffer keeps every transition: N steps -> N - 1 transitions.
    assert len(list(episodes_to_transitions(loaded))) == sum(len(e["is_first"]) - 1 for e in episodes)


def test_our_reader_loads_tfds_build_layout(tmp_path):
    episodes = _make_episodes(seed=2)
    _save(episodes, tmp_path / "episodes.npz")
    _run_tfds("build", tmp_path / "built", tmp_path / "episodes.npz")

    directory = tmp_path / "built" / "compat_robot" / "1.0.0"
    assert "compat_robot-train.tfrecord-00000-of-00001" in os.listdir(directory)
    loaded = _by_id(read_rlds_dataset(str(directory)))  # `tfds build` shuffles: match by id
    for i, episode in enumerate(episodes):
        _assert_same(episode, loaded[i], f"episode {i} as we read it:")

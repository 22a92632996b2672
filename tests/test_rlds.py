"""RLDS reading and writing without TensorFlow: round trips, SAC transitions, and bad datasets.

Compatibility with TensorFlow Datasets itself is in test_rlds_tfds_compat.py.
"""
import io
import json
import os
import struct
import subprocess
import sys
import tracemalloc
import zlib

import numpy as np
import pytest
from PIL import Image
from tfrecord import example_pb2

from serl_launcher.data.rlds import (
    ACTION_EVERY_STEP,
    EpisodeRecorder,
    RLDSError,
    RLDSWriter,
    episode_to_transitions,
    episodes_to_transitions,
    read_rlds_dataset,
    transitions_to_episode,
    write_rlds_dataset,
)
from serl_launcher.data.rlds.records import masked_crc, read_records


def _flat(tree, prefix=""):
    out = {}
    for key, value in tree.items():
        path = f"{prefix}/{key}" if prefix else key
        out.update(_flat(value, path) if isinstance(value, dict) else {path: value})
    return out


def _assert_same(expected, actual):
    expected, actual = _flat(expected), _flat(actual)
    assert sorted(actual) == sorted(expected)
    for path, want in expected.items():
        got = np.asarray(actual[path])
        want = np.asarray(want)
        if want.dtype.kind == "S":
            got = got.astype(bytes)
        assert (got.shape, got.dtype) == (want.shape, want.dtype), path
        np.testing.assert_array_equal(got, want, err_msg=path)


def _episode(rng, n, terminal, episode_id=0):
    """An episode with a two-level dict observation, RGB and 1-channel images, ints, text and metadata."""
    last = np.arange(n) == n - 1
    return {
        "observation": {
            "pixels": {
                "front": rng.integers(0, 256, (n, 12, 10, 3), dtype=np.uint8),
                "wrist": rng.integers(0, 256, (n, 8, 6, 1), dtype=np.uint8),
            },
            "state": rng.normal(size=(n, 7)).astype(np.float32),
        },
        "action": rng.normal(size=(n, 4)).astype(np.float32),
        "reward": rng.normal(size=n).astype(np.float32),
        "discount": np.where(last & terminal, 0.0, 1.0).astype(np.float32),
        "is_first": np.arange(n) == 0,
        "is_last": last,
        "is_terminal": last & terminal,
        "grasp_id": rng.integers(-5, 5, size=(n, 2)).astype(np.int32),
        "language_instruction": np.array([b"pick the cube"] * n),
        "episode_metadata": {"episode_id": np.int64(episode_id), "operator": {"name": np.array(b"sim")}},
    }


def _transitions(rng, num, terminal):
    """SAC transitions of one episode, as SERL's actor sends them: masks 0 only on termination."""
    obs = [{"state": rng.normal(size=5).astype(np.float32), "pixels": rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)}
           for _ in range(num + 1)]
    return [
        {
            "observations": obs[t],
            "actions": rng.normal(size=3).astype(np.float32),
            "next_observations": obs[t + 1],
            "rewards": np.float32(rng.normal()),
            "masks": np.float32(0.0 if terminal and t == num - 1 else 1.0),
            "dones": t == num - 1,
        }
        for t in range(num)
    ]


def _assert_transitions_equal(expected, actual):
    assert len(actual) == len(expected)
    for t, (want, got) in enumerate(zip(expected, actual)):
        for key in ("observations", "next_observations", "actions", "rewards"):
            _assert_same({key: want[key]}, {key: got[key]})
        assert float(got["masks"]) == float(want["masks"]), t
        assert bool(got["dones"]) == bool(want["dones"]), t


def test_round_trip_keeps_values_shapes_dtypes_and_boundaries(tmp_path):
    rng = np.random.default_rng(0)
    episodes = [_episode(rng, n, terminal, i) for i, (n, terminal) in enumerate([(5, True), (1, False), (3, False),
                                                                                 (4, True), (2, True)])]
    assert write_rlds_dataset(str(tmp_path), episodes, name="round_trip", episodes_per_shard=2) == 5

    loaded = list(read_rlds_dataset(str(tmp_path)))
    assert len(loaded) == len(episodes)
    for episode, got in zip(episodes, loaded):
        _assert_same(episode, got)
    info = json.loads((tmp_path / "dataset_info.json").read_text())
    assert info["splits"][0]["shardLengths"] == ["2", "2", "1"]
    assert sorted(f for f in os.listdir(tmp_path) if ".tfrecord-" in f) == [
        f"round_trip-train.tfrecord-0000{i}" for i in range(3)]


def test_writer_takes_a_list_of_steps_like_stacked_arrays(tmp_path):
    episode = _episode(np.random.default_rng(1), 4, terminal=True)
    metadata = episode.pop("episode_metadata")
    steps = [{key: _index(value, t) for key, value in episode.items()} for t in range(4)]
    with RLDSWriter(str(tmp_path / "steps"), name="steps") as writer:
        writer.add_episode(steps)
    (got,) = read_rlds_dataset(str(tmp_path / "steps"))
    _assert_same(episode, got)
    assert "episode_metadata" not in got and metadata


def _index(tree, t):
    return {k: _index(v, t) for k, v in tree.items()} if isinstance(tree, dict) else tree[t]


def test_python_and_float64_numbers_are_stored_as_float32(tmp_path):
    steps = [{"observation": np.array([0.1, 2.0]), "action": 1, "reward": 0.5, "discount": 1.0,
              "is_first": t == 0, "is_last": t == 1, "is_terminal": False} for t in range(2)]
    write_rlds_dataset(str(tmp_path), [steps])
    (got,) = read_rlds_dataset(str(tmp_path))
    assert got["observation"].dtype == np.float32 and got["reward"].dtype == np.float32
    np.testing.assert_array_equal(got["observation"], np.float32([[0.1, 2.0], [0.1, 2.0]]))
    assert got["action"].dtype == np.int64 and got["is_first"].dtype == bool


def test_transitions_round_trip_through_the_dataset_exactly(tmp_path):
    rng = np.random.default_rng(2)
    episodes = [_transitions(rng, n, terminal) for n, terminal in [(6, True), (4, False), (1, True), (1, False)]]
    recorder = EpisodeRecorder(RLDSWriter(str(tmp_path), name="transitions", episodes_per_shard=3))
    for transition in (tr for episode in episodes for tr in episode):
        recorder.add(transition)
    recorder.close()

    loaded = list(read_rlds_dataset(str(tmp_path)))
    assert [len(e["is_first"]) for e in loaded] == [7, 5, 2, 2]  # N transitions -> N + 1 steps
    assert [bool(e["is_terminal"][-1]) for e in loaded] == [True, False, True, False]
    assert all(e["is_last"][-1] and not e["is_last"][:-1].any() and not e["is_terminal"][:-1].any() for e in loaded)
    _assert_transitions_equal([tr for episode in episodes for tr in episode], list(episodes_to_transitions(loaded)))


def test_first_transition_of_each_episode_is_kept():
    transitions = _transitions(np.random.default_rng(3), 3, terminal=False)
    back = episode_to_transitions(transitions_to_episode(transitions))
    assert len(back["masks"]) == 3
    np.testing.assert_array_equal(back["observations"]["state"][0], transitions[0]["observations"]["state"])
    np.testing.assert_array_equal(back["actions"][0], transitions[0]["actions"])


def test_recorder_splits_where_transitions_stop_chaining_and_keeps_the_unfinished_episode(tmp_path):
    rng = np.random.default_rng(4)
    first, second = _transitions(rng, 3, terminal=False), _transitions(rng, 2, terminal=True)
    first[-1]["dones"] = False  # lost the end of the first episode: the second one does not continue it
    unfinished = _transitions(rng, 2, terminal=False)
    unfinished[-1]["dones"] = False
    recorder = EpisodeRecorder(RLDSWriter(str(tmp_path), name="recorder"))
    for transition in first + second + unfinished:
        recorder.add(transition)
    recorder.close()

    loaded = list(read_rlds_dataset(str(tmp_path)))
    assert [len(e["is_first"]) for e in loaded] == [4, 3, 3]
    assert [bool(e["is_terminal"][-1]) for e in loaded] == [False, True, False]
    assert len(list(episodes_to_transitions(loaded))) == 7


def test_action_every_step_convention():
    """Every step has a real action; a terminal last step still makes a transition, a truncated one cannot."""
    states = np.arange(4, dtype=np.float32)[:, None]
    episode = {"observation": {"state": states}, "action": np.arange(4, dtype=np.float32)[:, None] + 10,
               "reward": np.float32([1, 2, 3, 4]), "is_first": np.arange(4) == 0, "is_last": np.arange(4) == 3,
               "is_terminal": np.arange(4) == 3}

    terminal = episode_to_transitions(episode, convention=ACTION_EVERY_STEP)
    np.testing.assert_array_equal(terminal["observations"]["state"][:, 0], [0, 1, 2, 3])
    np.testing.assert_array_equal(terminal["next_observations"]["state"][:3, 0], [1, 2, 3])
    np.testing.assert_array_equal(terminal["actions"][:, 0], [10, 11, 12, 13])
    np.testing.assert_array_equal(terminal["rewards"], [1, 2, 3, 4])
    np.testing.assert_array_equal(terminal["masks"], [1, 1, 1, 0])
    np.testing.assert_array_equal(terminal["dones"], [False, False, False, True])

    truncated = episode_to_transitions(dict(episode, is_terminal=np.zeros(4, bool)), convention=ACTION_EVERY_STEP)
    np.testing.assert_array_equal(truncated["next_observations"]["state"][:, 0], [1, 2, 3])
    np.testing.assert_array_equal(truncated["masks"], [1, 1, 1])
    np.testing.assert_array_equal(truncated["dones"], [False, False, True])

    final_observation = episode_to_transitions(episode)  # the same steps read as RLDS's own layout
    np.testing.assert_array_equal(final_observation["masks"], [1, 1, 0])
    np.testing.assert_array_equal(final_observation["actions"][:, 0], [10, 11, 12])


def test_transitions_to_episode_rejects_transitions_of_several_episodes():
    rng = np.random.default_rng(5)
    unfinished = _transitions(rng, 1, False)
    unfinished[0]["dones"] = False
    with pytest.raises(RLDSError, match="transition 0's next_observations differ"):
        transitions_to_episode(unfinished + _transitions(rng, 2, False))
    with pytest.raises(RLDSError, match="transition 1 ends the episode"):
        transitions_to_episode(_transitions(rng, 2, True) + _transitions(rng, 1, True))
    with pytest.raises(RLDSError, match="no transitions"):
        transitions_to_episode([])


def test_reads_the_tfds_build_shard_names(tmp_path):
    """`tfds build` names shards NAME-SPLIT.tfrecord-00000-of-00002, also TFDS's default without a template."""
    rng = np.random.default_rng(6)
    episodes = [_episode(rng, 2, True, i) for i in range(3)]
    write_rlds_dataset(str(tmp_path), episodes, name="built", episodes_per_shard=2)
    for i in range(2):
        os.rename(tmp_path / f"built-train.tfrecord-0000{i}", tmp_path / f"built-train.tfrecord-0000{i}-of-00002")
    info = json.loads((tmp_path / "dataset_info.json").read_text())
    del info["splits"][0]["filepathTemplate"]
    (tmp_path / "dataset_info.json").write_text(json.dumps(info))
    assert [int(e["episode_metadata"]["episode_id"]) for e in read_rlds_dataset(str(tmp_path))] == [0, 1, 2]


@pytest.fixture
def dataset(tmp_path):
    rng = np.random.default_rng(7)
    write_rlds_dataset(str(tmp_path), [_episode(rng, 3, True, i) for i in range(3)], name="bad", episodes_per_shard=2)
    return tmp_path


def _edit_json(path, edit):
    content = json.loads(path.read_text())
    edit(content)
    path.write_text(json.dumps(content))


def _observation_features(features):
    steps = features["featuresDict"]["features"]["steps"]["sequence"]["feature"]
    return steps["featuresDict"]["features"]["observation"]["featuresDict"]["features"]


def _state_feature(features):
    return _observation_features(features)["state"]["tensor"]


def _make_state_a_bounding_box(features):
    box = {"pythonClassName": "tensorflow_datasets.core.features.bounding_boxes.BBoxFeature", "bbox": {}}
    _observation_features(features)["state"] = box


BAD_DATASETS = {
    "no dataset_info.json": (lambda d: os.remove(d / "dataset_info.json"), "dataset_info.json: missing"),
    "no features.json": (lambda d: os.remove(d / "features.json"), "features.json: missing"),
    "broken features.json": (lambda d: (d / "features.json").write_text("{"), "features.json: unreadable JSON"),
    "malformed feature": (lambda d: _edit_json(d / "features.json", lambda f: _state_feature(f).clear()),
                          "features.json: malformed"),
    "unsupported feature": (lambda d: _edit_json(d / "features.json", _make_state_a_bounding_box),
                            "features.json: feature 'observation/state' has unsupported type tensorflow_datasets"),
    "missing shard": (lambda d: os.remove(d / "bad-train.tfrecord-00001"), "bad-train.tfrecord-00001: shard listed"),
    "wrong split": (lambda d: _edit_json(d / "dataset_info.json", lambda i: i["splits"][0].update(name="test")),
                    "dataset_info.json: no split 'train'"),
    "wrong episode count": (
        lambda d: _edit_json(d / "dataset_info.json", lambda i: i["splits"][0].update(shardLengths=["3", "1"])),
        "bad-train.tfrecord-00000: holds 2 episodes, but dataset_info.json lists 3"),
    "wrong shape": (
        lambda d: _edit_json(d / "features.json", lambda f: _state_feature(f)["shape"].update(dimensions=["6"])),
        "bad-train.tfrecord-00000, episode 0: steps/observation/state has 21 values for per-step shape (6,), "
        "but steps/is_first has 3 steps"),
    "wrong dtype": (
        lambda d: _edit_json(d / "features.json", lambda f: _state_feature(f).update(dtype="int32")),
        "bad-train.tfrecord-00000, episode 0: steps/observation/state is a float_list"),
    "truncated shard": (lambda d: _truncate(d / "bad-train.tfrecord-00000"), "bad-train.tfrecord-00000: truncated"),
}


def _truncate(path):
    with open(path, "r+b") as file:
        file.truncate(os.path.getsize(path) - 100)


@pytest.mark.parametrize("damage", sorted(BAD_DATASETS))
def test_bad_dataset_fails_with_an_error_naming_the_file(dataset, damage):
    corrupt, message = BAD_DATASETS[damage]
    corrupt(dataset)
    with pytest.raises(RLDSError) as error:
        list(read_rlds_dataset(str(dataset)))
    assert f"{dataset}/{message}" in str(error.value)


def test_metadata_problems_surface_before_iteration(dataset):
    os.remove(dataset / "bad-train.tfrecord-00001")
    with pytest.raises(RLDSError, match="bad-train.tfrecord-00001"):
        read_rlds_dataset(str(dataset))  # no iteration needed
    with pytest.raises(RLDSError, match="not a directory"):
        read_rlds_dataset(str(dataset / "nowhere"))


def test_writer_rejects_episodes_that_do_not_fit(tmp_path):
    rng = np.random.default_rng(8)
    writer = RLDSWriter(str(tmp_path), name="strict")
    writer.add_episode(_episode(rng, 3, True))

    wide = _episode(rng, 3, True)
    wide["observation"]["state"] = np.zeros((3, 8), np.float32)
    with pytest.raises(RLDSError, match=r"episode 1: steps/observation/state: shape \(8,\) per step"):
        writer.add_episode(wide)
    extra = dict(_episode(rng, 3, True), extra=np.zeros(3))
    with pytest.raises(RLDSError, match="episode 1: step fields .* differ"):
        writer.add_episode(extra)
    late_start = _episode(rng, 3, True)
    late_start["is_first"] = np.array([False, True, False])
    with pytest.raises(RLDSError, match="must mark the first / last step only"):
        writer.add_episode(late_start)
    no_action = _episode(rng, 3, True)
    del no_action["action"]
    with pytest.raises(RLDSError, match=r"misses step fields \['action'\]"):
        writer.add_episode(no_action)
    float_ids = _episode(rng, 3, True)
    float_ids["grasp_id"] = np.zeros((3, 2), np.float32)
    with pytest.raises(RLDSError, match="grasp_id: dtype float32 does not fit the dataset's int32"):
        writer.add_episode(float_ids)
    writer.close()

    assert len(list(read_rlds_dataset(str(tmp_path)))) == 1  # the rejected episodes left no trace
    with pytest.raises(RLDSError, match="already holds a dataset"):
        RLDSWriter(str(tmp_path), name="strict")
    with pytest.raises(RLDSError, match="snake_case"):
        RLDSWriter(str(tmp_path / "other"), name="Bad-Name")


def test_a_rejected_first_episode_does_not_fix_the_features(tmp_path):
    rng = np.random.default_rng(10)
    bad = _episode(rng, 2, True)
    bad["language_instruction"] = np.array([b"pick", 3], dtype=object)
    writer = RLDSWriter(str(tmp_path), name="first")
    with pytest.raises(RLDSError, match="episode 0: steps/language_instruction: expected text"):
        writer.add_episode(bad)
    good = _episode(rng, 2, True)
    del good["language_instruction"]
    writer.add_episode(good)
    writer.close()
    (got,) = read_rlds_dataset(str(tmp_path))
    _assert_same(good, got)


def test_closed_shards_stay_readable_while_the_writer_runs(tmp_path):
    """A learner that dies mid-run leaves every closed shard readable."""
    rng = np.random.default_rng(9)
    writer = RLDSWriter(str(tmp_path), name="live", episodes_per_shard=2)
    for i in range(3):
        writer.add_episode(_episode(rng, 2, False, i))
    assert [int(e["episode_metadata"]["episode_id"]) for e in read_rlds_dataset(str(tmp_path))] == [0, 1]
    writer.close()
    assert len(list(read_rlds_dataset(str(tmp_path)))) == 3


def test_reading_and_writing_do_not_need_tensorflow(tmp_path):
    """In a process where importing TensorFlow (Datasets) fails, a dataset is still written and read."""
    code = (
        "import sys; sys.modules.update(tensorflow=None, tensorflow_datasets=None)\n"
        "import numpy as np\n"
        "from serl_launcher.data.rlds import read_rlds_dataset, write_rlds_dataset\n"
        "n = 3\n"
        "flags = dict(is_first=np.arange(n) == 0, is_last=np.arange(n) == n - 1, is_terminal=np.zeros(n, bool))\n"
        "episode = dict(observation=np.zeros((n, 4, 4, 3), np.uint8), action=np.ones((n, 2)), reward=np.ones(n),\n"
        "               discount=np.ones(n), **flags)\n"
        f"write_rlds_dataset({str(tmp_path)!r}, [episode])\n"
        f"(back,) = read_rlds_dataset({str(tmp_path)!r})\n"
        "assert back['observation'].shape == (n, 4, 4, 3), back\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


# --- hostile files (issue #11): bounded memory, checked CRCs, only PNG in PNG fields, RLDSError naming the file ---


def _frame(data: bytes) -> bytes:
    """One TFRecord record around data, with correct CRCs."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc(length)) + data + struct.pack("<I", masked_crc(data))


def _rewrite_shard(shard, edit):
    """Apply edit(example) to every tf.train.Example of a shard and write it back with valid CRCs."""
    records = []
    for data in read_records(str(shard), 1 << 30):
        example = example_pb2.Example.FromString(data)
        edit(example)
        records.append(_frame(example.SerializeToString()))
    shard.write_bytes(b"".join(records))


def _set_bytes(example, key, index, value):
    example.features.feature[key].bytes_list.value[index] = value


def _png_header(width: int, height: int) -> bytes:
    """A PNG declaring width x height RGB pixels and holding none: PIL reads its size without decoding."""
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def _read_with_peak(dataset, **limits):
    """(RLDSError message, peak bytes Python allocated) of reading the dataset."""
    tracemalloc.start()
    try:
        with pytest.raises(RLDSError) as error:
            list(read_rlds_dataset(str(dataset), **limits))
        return str(error.value), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_record_longer_than_its_file_allocates_nothing(tmp_path, dataset):
    shard = dataset / "bad-train.tfrecord-00000"
    length = struct.pack("<Q", 300_000_000)  # 16 bytes declaring a 300 MB record: the old reader allocated ~487 MB
    shard.write_bytes(length + struct.pack("<I", masked_crc(length)) + b"\0" * 4)
    message, peak = _read_with_peak(dataset)
    assert message.startswith(f"{shard}: truncated: record 0 declares 300000000 bytes") and peak < 1 << 20
    length = struct.pack("<Q", 2**62)
    shard.write_bytes(length + struct.pack("<I", masked_crc(length)))
    assert _read_with_peak(dataset)[0].startswith(f"{shard}: truncated: record 0 declares {2**62} bytes")


def test_records_over_max_record_bytes_or_max_episode_bytes_are_refused(dataset):
    shard = dataset / "bad-train.tfrecord-00000"
    message, _ = _read_with_peak(dataset, max_record_bytes=1000)
    assert message.startswith(f"{shard}: record 0 of ") and "over max_record_bytes=1000" in message
    message, _ = _read_with_peak(dataset, max_episode_bytes=1000)
    assert message.startswith(f"{shard}, episode 0: 3 steps of the declared shapes take") and "1000" in message


@pytest.mark.parametrize("where", ["length crc", "data", "data crc"])
def test_flipped_bits_are_detected_by_the_crcs(dataset, where):
    """The old reader checked no CRC: a reward changed inside a record read back silently."""
    shard = dataset / "bad-train.tfrecord-00000"
    content = bytearray(shard.read_bytes())
    offset = {"length crc": 9, "data": 12 + 200, "data crc": 12 + struct.unpack_from("<Q", content)[0] + 1}[where]
    content[offset] ^= 0x04
    shard.write_bytes(bytes(content))
    message, _ = _read_with_peak(dataset)
    assert message.startswith(f"{shard}: corrupt record 0"), message


def test_a_record_that_is_not_an_example_names_the_file(dataset):
    shard = dataset / "bad-train.tfrecord-00000"
    shard.write_bytes(_frame(b"\xff" * 64))
    assert _read_with_peak(dataset)[0].startswith(f"{shard}, episode 0: DecodeError")


def _make_state_zlib(dataset, bomb: bool):
    """features.json: observation/state zlib-encoded (as `tfds build` may store it); the shard to match."""
    _edit_json(dataset / "features.json", lambda f: _state_feature(f).update(encoding="zlib"))

    def edit(example):
        feature = example.features.feature["steps/observation/state"]
        rows = np.asarray(feature.float_list.value, np.float32).reshape(-1, 7)
        feature.ClearField("float_list")
        feature.bytes_list.value.extend(zlib.compress(row.tobytes()) for row in rows)
        if bomb:  # ~100 KB inflating to 100 MB: the old reader inflated it all
            compressor = zlib.compressobj(9)
            blob = b"".join(compressor.compress(b"\0" * (1 << 20)) for _ in range(100)) + compressor.flush()
            feature.bytes_list.value[1] = blob

    for shard in ("bad-train.tfrecord-00000", "bad-train.tfrecord-00001"):
        _rewrite_shard(dataset / shard, edit)


def test_zlib_tensors_are_read_and_inflated_only_up_to_their_declared_size(tmp_path):
    rng = np.random.default_rng(11)
    episodes = [_episode(rng, 3, True, i) for i in range(3)]
    for bomb in (False, True):
        dataset = tmp_path / f"bomb_{bomb}"
        write_rlds_dataset(str(dataset), episodes, name="bad", episodes_per_shard=2)
        _make_state_zlib(dataset, bomb)
        if not bomb:
            for episode, got in zip(episodes, read_rlds_dataset(str(dataset))):
                _assert_same(episode, got)
            continue
        message, peak = _read_with_peak(dataset)
        assert message.startswith(f"{dataset}/bad-train.tfrecord-00000, episode 0: steps/observation/state: "
                                  "zlib data does not inflate to the declared 28 bytes"), message
        assert peak < 8 << 20, f"{peak / 2**20:.0f} MiB"


_NOT_PNG = {
    "bmp": lambda: _image_bytes("BMP"),
    "tiff": lambda: _image_bytes("TIFF"),
    "eps": lambda: b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 12\nshowpage\n",  # was handed to Ghostscript
    "garbage": lambda: b"\x89PNG\r\n\x1a\n" + b"\0" * 40,
}


def _image_bytes(pil_format):
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((12, 10, 3), np.uint8)).save(buffer, format=pil_format)
    return buffer.getvalue()


@pytest.mark.parametrize("kind", sorted(_NOT_PNG))
def test_png_fields_decode_png_only(dataset, kind):
    shard = dataset / "bad-train.tfrecord-00000"
    _rewrite_shard(shard, lambda e: _set_bytes(e, "steps/observation/pixels/front", 1, _NOT_PNG[kind]()))
    message, _ = _read_with_peak(dataset)
    expected = "undecodable png image" if kind == "garbage" else "not a png image"
    assert message.startswith(f"{shard}, episode 0: steps/observation/pixels/front: {expected}"), message


def test_image_size_is_checked_before_its_pixels_are_decoded(dataset):
    shard = dataset / "bad-train.tfrecord-00000"
    _rewrite_shard(shard, lambda e: _set_bytes(e, "steps/observation/pixels/front", 0, _png_header(4000, 4000)))
    message, peak = _read_with_peak(dataset)
    assert "image of 4000x4000 pixels, but the dataset's features say (12, 10, 3)" in message
    assert message.startswith(f"{shard}, episode 0") and peak < 4 << 20  # 48 MB if decoded


def test_dynamic_size_images_are_capped_without_pil_bomb_errors(dataset):
    """A 196-megapixel PNG raised PIL's DecompressionBombError from the old reader."""
    def dynamic(features):
        _observation_features(features)["pixels"]["featuresDict"]["features"]["front"]["image"]["shape"] = {
            "dimensions": ["-1", "-1", "3"]}
    _edit_json(dataset / "features.json", dynamic)
    assert len(list(read_rlds_dataset(str(dataset)))) == 3  # images of any size still decode
    shard = dataset / "bad-train.tfrecord-00000"
    original = shard.read_bytes()
    for side, expected in [(8000, "image of 8000x8000 pixels, over 33554432"), (14_000, "DecompressionBombError")]:
        shard.write_bytes(original)
        _rewrite_shard(shard, lambda e: _set_bytes(e, "steps/observation/pixels/front", 0, _png_header(side, side)))
        message, peak = _read_with_peak(dataset)
        assert message.startswith(f"{shard}, episode 0: steps/observation/pixels/front: ") and peak < 4 << 20
        assert expected in message, message


@pytest.mark.parametrize(
    "dims, message",
    [
        (["4294967296", "4294967296"], "over 2147483648 bytes per step"),  # wrapped to 0 in int64: ValueError
        (["-5"], "dynamic shape (-5,)"),
        (["1000000", "1000000"], "over 2147483648 bytes per step"),
    ],
)
def test_shapes_that_cannot_be_held_are_refused_naming_features_json(dataset, dims, message):
    _edit_json(dataset / "features.json", lambda f: _state_feature(f)["shape"].update(dimensions=dims))
    with pytest.raises(RLDSError) as error:
        read_rlds_dataset(str(dataset))
    assert str(error.value).startswith(f"{dataset}/features.json: feature 'observation/state'") and message in str(
        error.value)


def test_zero_size_fields_round_trip_and_values_for_them_are_an_error_naming_the_file(tmp_path, dataset):
    episode = _episode(np.random.default_rng(12), 3, False)
    episode["observation"]["empty"] = np.zeros((3, 0), np.float32)
    write_rlds_dataset(str(tmp_path / "empty"), [episode])
    (got,) = read_rlds_dataset(str(tmp_path / "empty"))
    assert got["observation"]["empty"].shape == (3, 0)

    _edit_json(dataset / "features.json", lambda f: _state_feature(f)["shape"].update(dimensions=["0"]))
    message, _ = _read_with_peak(dataset)  # the old reader raised a bare ValueError (cannot reshape)
    assert message.startswith(f"{dataset}/bad-train.tfrecord-00000, episode 0: steps/observation/state has 21 "
                              "values for per-step shape (0,)"), message

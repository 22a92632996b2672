import threading

import gymnasium as gym
import numpy as np
import pytest

from serl_launcher.data.replay_buffer import ReplayBuffer
from serl_launcher.data.validation import InvalidTransitions

OBS = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
ACT = gym.spaces.Box(-1, 1, (2,), np.float32)


def _transitions(start, n, obs_dim=3):
    ids = np.arange(start, start + n, dtype=np.float32)
    return {
        "observations": np.repeat(ids[:, None], obs_dim, axis=1),
        "next_observations": np.repeat(ids[:, None] + 0.5, obs_dim, axis=1),
        "actions": np.repeat(np.cos(ids)[:, None], 2, axis=1),
        "rewards": ids,
        "masks": np.ones(n, np.float32),
        "dones": np.zeros(n, bool),
    }


def test_insert_sample_shapes_and_dtypes():
    buffer = ReplayBuffer(OBS, ACT, capacity=10, seed=0)
    row = {k: v[0] for k, v in _transitions(0, 1).items()}
    buffer.insert(row)
    batch = buffer.sample(4)
    assert len(buffer) == 1
    assert batch["observations"].shape == (4, 3) and batch["observations"].dtype == np.float32
    assert batch["actions"].shape == (4, 2) and batch["dones"].dtype == bool
    np.testing.assert_array_equal(batch["rewards"], np.zeros(4))


def test_wrap_around_keeps_the_newest_rows():
    buffer = ReplayBuffer(OBS, ACT, capacity=5, seed=0)
    buffer.insert_stacked(_transitions(0, 4))
    buffer.insert_stacked(_transitions(4, 3))  # wraps: ids 2..6 remain
    assert len(buffer) == 5 and buffer.latest_data_id() == 6
    assert set(buffer.sample(200)["rewards"].tolist()) == {2.0, 3.0, 4.0, 5.0, 6.0}
    buffer.insert_stacked(_transitions(100, 12))  # larger than capacity: the last 5 survive
    assert set(buffer.sample(200)["rewards"].tolist()) == {107.0, 108.0, 109.0, 110.0, 111.0}


def test_rows_stay_consistent_across_keys():
    buffer = ReplayBuffer(OBS, ACT, capacity=7, seed=1)
    for start in range(0, 30, 3):
        buffer.insert_stacked(_transitions(start, 3))
    batch = buffer.sample(100)
    np.testing.assert_array_equal(batch["observations"][:, 0], batch["rewards"])
    np.testing.assert_array_equal(batch["next_observations"][:, 0], batch["rewards"] + 0.5)


def test_dict_observations():
    space = gym.spaces.Dict({"state": gym.spaces.Dict({"pos": gym.spaces.Box(-1, 1, (3,)), "grip": gym.spaces.Box(0, 1, (1,))}),
                             "image": gym.spaces.Box(0, 255, (8, 8, 3), np.uint8)})
    buffer = ReplayBuffer(space, ACT, capacity=4)
    obs = {"state": {"pos": np.ones(3, np.float32), "grip": np.zeros(1, np.float32)}, "image": np.full((8, 8, 3), 7, np.uint8)}
    buffer.insert({"observations": obs, "next_observations": obs, "actions": np.zeros(2, np.float32),
                   "rewards": 1.0, "masks": 1.0, "dones": False})
    batch = buffer.sample(2)
    assert batch["observations"]["image"].dtype == np.uint8 and batch["observations"]["image"].shape == (2, 8, 8, 3)
    assert batch["next_observations"]["state"]["pos"].shape == (2, 3)


def test_bad_transitions_are_rejected_with_clear_errors():
    buffer = ReplayBuffer(OBS, ACT, capacity=4)
    good = _transitions(0, 2)
    with pytest.raises(InvalidTransitions, match="keys"):
        buffer.insert_stacked({k: v for k, v in good.items() if k != "masks"})
    with pytest.raises(InvalidTransitions, match=r"observations: got shape \(2, 4\), expected \(2, 3\)"):
        buffer.insert_stacked({**good, "observations": np.zeros((2, 4), np.float32)})
    with pytest.raises(ValueError, match="empty"):
        buffer.sample(1)
    assert len(buffer) == 0


def test_concurrent_insert_and_sample():
    buffer = ReplayBuffer(OBS, ACT, capacity=500, seed=0)
    buffer.insert_stacked(_transitions(0, 10))
    errors = []

    def writer():
        for start in range(10, 5010, 10):
            buffer.insert_stacked(_transitions(start, 10))

    def reader():
        try:
            for _ in range(500):
                batch = buffer.sample(64)
                np.testing.assert_array_equal(batch["observations"][:, 2], batch["rewards"])
        except AssertionError as error:
            errors.append(error)

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(buffer) == 500 and buffer.latest_data_id() == 5009


def test_prefetch_iterator_yields_device_batches_and_reraises():
    buffer = ReplayBuffer(OBS, ACT, capacity=50, seed=0)
    buffer.insert_stacked(_transitions(0, 50))
    iterator = buffer.get_iterator(batch_size=8)
    batch = next(iterator)
    assert batch["observations"].shape == (8, 3) and hasattr(batch["observations"], "devices")
    iterator.close()
    # SERL makes its iterator before any data arrived: sampling waits for the first transition.
    late = ReplayBuffer(OBS, ACT, capacity=5)
    iterator = late.get_iterator(sample_args={"batch_size": 2})
    threading.Timer(0.3, lambda: late.insert_stacked(_transitions(7, 1))).start()
    np.testing.assert_array_equal(next(iterator)["rewards"], [7.0, 7.0])
    iterator.close()
    with pytest.raises(StopIteration):
        next(iterator)


def test_memory_of_a_million_pick_cube_transitions():
    buffer = ReplayBuffer(gym.spaces.Box(-1, 1, (10,), np.float32), gym.spaces.Box(-1, 1, (4,), np.float32))
    assert buffer.capacity == 1_000_000 and buffer.nbytes < 150e6


def test_batch_insert_takes_a_list_of_transitions_as_agentlace_does():
    buffer = ReplayBuffer(OBS, ACT, capacity=10)
    stacked = _transitions(3, 4)
    buffer.batch_insert([{k: v[i] for k, v in stacked.items()} for i in range(4)])
    assert len(buffer) == 4 and set(buffer.sample(100)["rewards"].tolist()) == {3.0, 4.0, 5.0, 6.0}


@pytest.mark.parametrize("field, value, message", [
    ("rewards", np.nan, r"rewards: 1 of 4 rows not finite \(NaN or inf.*\(rows 2\)"),
    ("observations", np.inf, r"observations: 1 of 4 rows not finite"),
    ("next_observations", np.nan, r"next_observations: 1 of 4 rows not finite"),
    ("actions", 1.5, r"actions: 1 of 4 rows outside the action space \[-1, 1\]"),
    ("masks", 7.0, r"masks: 1 of 4 rows not 0 or 1"),
    ("dones", 0.5, r"dones: 1 of 4 rows not a boolean"),
])
def test_poisoned_values_are_refused_and_nothing_is_stored(field, value, message):
    buffer = ReplayBuffer(OBS, ACT, capacity=10)
    bad = _transitions(0, 4)
    bad[field] = bad[field].astype(np.float64)
    bad[field][2] = value
    with pytest.raises(InvalidTransitions, match=message):
        buffer.insert_stacked(bad)
    assert len(buffer) == 0 and buffer.latest_data_id() == -1


@pytest.mark.parametrize("dtype", [np.complex64, np.uint64, object])
def test_values_that_are_not_real_numbers_are_refused(dtype):
    buffer = ReplayBuffer(OBS, ACT, capacity=10)
    bad = _transitions(0, 4)
    bad["rewards"] = bad["rewards"].astype(dtype)
    with pytest.raises(InvalidTransitions, match="rewards: dtype"):
        buffer.insert_stacked(bad)


def test_image_observations_keep_uint8_and_refuse_out_of_range_values():
    space = gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (4, 4, 3), np.uint8)})
    buffer = ReplayBuffer(space, ACT, capacity=4)
    row = {"observations": {"image": np.full((1, 4, 4, 3), 9, np.int64)}, "actions": np.zeros((1, 2), np.float32),
           "next_observations": {"image": np.full((1, 4, 4, 3), 300, np.int64)}, "rewards": np.zeros(1),
           "masks": np.ones(1), "dones": np.zeros(1, bool)}
    with pytest.raises(InvalidTransitions, match=r"next_observations/image: 1 of 1 rows out of range for uint8"):
        buffer.insert_stacked(row)
    row["next_observations"]["image"][:] = 255
    buffer.insert_stacked(row)
    assert buffer.sample(1)["observations"]["image"].dtype == np.uint8


def test_a_gather_never_blocks_inserts_for_its_whole_duration_and_never_tears_rows():
    """Inserts run while samples gather; rows overwritten mid-gather are re-read under the lock."""
    big = gym.spaces.Box(-np.inf, np.inf, (2048,), np.float32)
    buffer = ReplayBuffer(big, ACT, capacity=64, seed=0)
    buffer.insert_stacked(_transitions(0, 64, obs_dim=2048))
    stop, torn = threading.Event(), []

    def writer():
        start = 64
        while not stop.is_set():
            buffer.insert_stacked(_transitions(start, 8, obs_dim=2048))
            start += 8

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(300):
            batch = buffer.sample(64)
            torn.append(int(np.sum(batch["observations"][:, -1] != batch["rewards"])))
    finally:
        stop.set()
        thread.join()
    assert sum(torn) == 0

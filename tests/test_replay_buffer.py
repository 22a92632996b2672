import threading

import gymnasium as gym
import numpy as np
import pytest

from serl_launcher.data.replay_buffer import ReplayBuffer

OBS = gym.spaces.Box(-1, 1, (3,), np.float32)
ACT = gym.spaces.Box(-1, 1, (2,), np.float32)


def _transitions(start, n, obs_dim=3):
    ids = np.arange(start, start + n, dtype=np.float32)
    return {
        "observations": np.repeat(ids[:, None], obs_dim, axis=1),
        "next_observations": np.repeat(ids[:, None] + 0.5, obs_dim, axis=1),
        "actions": np.repeat(ids[:, None], 2, axis=1),
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
    buffer.batch_insert(_transitions(0, 4))
    buffer.batch_insert(_transitions(4, 3))  # wraps: ids 2..6 remain
    assert len(buffer) == 5 and buffer.latest_data_id() == 6
    assert set(buffer.sample(200)["rewards"].tolist()) == {2.0, 3.0, 4.0, 5.0, 6.0}
    buffer.batch_insert(_transitions(100, 12))  # larger than capacity: the last 5 survive
    assert set(buffer.sample(200)["rewards"].tolist()) == {107.0, 108.0, 109.0, 110.0, 111.0}


def test_rows_stay_consistent_across_keys():
    buffer = ReplayBuffer(OBS, ACT, capacity=7, seed=1)
    for start in range(0, 30, 3):
        buffer.batch_insert(_transitions(start, 3))
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
    with pytest.raises(ValueError, match="keys"):
        buffer.batch_insert({k: v for k, v in good.items() if k != "masks"})
    with pytest.raises(ValueError, match=r"\['observations'\].*shape"):
        buffer.batch_insert({**good, "observations": np.zeros((2, 4), np.float32)})
    with pytest.raises(ValueError, match="empty"):
        buffer.sample(1)
    assert len(buffer) == 0


def test_concurrent_insert_and_sample():
    buffer = ReplayBuffer(OBS, ACT, capacity=500, seed=0)
    buffer.batch_insert(_transitions(0, 10))
    errors = []

    def writer():
        for start in range(10, 5010, 10):
            buffer.batch_insert(_transitions(start, 10))

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
    buffer.batch_insert(_transitions(0, 50))
    iterator = buffer.get_iterator(batch_size=8)
    batch = next(iterator)
    assert batch["observations"].shape == (8, 3) and hasattr(batch["observations"], "devices")
    iterator.close()
    empty = ReplayBuffer(OBS, ACT, capacity=5).get_iterator(batch_size=2)
    with pytest.raises(ValueError, match="empty"):
        next(empty)
    empty.close()


def test_memory_of_a_million_pick_cube_transitions():
    buffer = ReplayBuffer(gym.spaces.Box(-1, 1, (10,), np.float32), gym.spaces.Box(-1, 1, (4,), np.float32))
    assert buffer.capacity == 1_000_000 and buffer.nbytes < 150e6

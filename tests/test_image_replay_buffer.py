"""Frames stored once: next observations rebuilt from the following transition's frame, exactly."""
import threading

import gymnasium as gym
import numpy as np
import pytest

from serl_launcher.data.image_replay_buffer import ImageReplayBuffer
from serl_launcher.data.validation import InvalidTransitions

IMAGE = gym.spaces.Box(0, 255, (6, 6, 3), np.uint8)
SPACE = gym.spaces.Dict({"state": gym.spaces.Box(-np.inf, np.inf, (2,), np.float32),
                         "images": gym.spaces.Dict({"front": IMAGE, "wrist": IMAGE})})
ACTION = gym.spaces.Box(-1, 1, (1,), np.float32)


def _observation(step: int, episode: int):
    """Pixels encode (episode, step) so that any mix-up shows."""
    return {"state": np.array([episode, step], np.float32),
            "images": {"front": np.full((6, 6, 3), (episode * 37 + step) % 256, np.uint8),
                       "wrist": np.full((6, 6, 3), (episode * 11 + 3 * step) % 256, np.uint8)}}


def _episode(episode: int, length: int) -> list:
    return [{"observations": _observation(t, episode), "next_observations": _observation(t + 1, episode),
             "actions": np.zeros(1, np.float32), "rewards": float(1000 * episode + t), "masks": float(t + 1 < length),
             "dones": t + 1 == length} for t in range(length)]


def _check(batch):
    """Every sampled row's images are exactly those of its (episode, step), for obs and next obs."""
    for i, reward in enumerate(batch["rewards"]):
        episode, step = divmod(int(reward), 1000)
        for field, t in (("observations", step), ("next_observations", step + 1)):
            expected = _observation(t, episode)
            np.testing.assert_array_equal(batch[field]["images"]["front"][i], expected["images"]["front"])
            np.testing.assert_array_equal(batch[field]["images"]["wrist"][i], expected["images"]["wrist"])
            np.testing.assert_array_equal(batch[field]["state"][i], expected["state"])


def test_next_observations_are_rebuilt_across_episode_ends_and_wrap_around():
    buffer = ImageReplayBuffer(SPACE, ACTION, capacity=40, seed=0)
    for episode in range(12):  # 12 episodes of 7 steps: the 40-transition ring wraps twice
        buffer.batch_insert(_episode(episode, 7))
    assert len(buffer) == 40 and buffer.latest_data_id() == 83
    batch = buffer.sample(500)
    _check(batch)
    assert set((batch["rewards"] // 1000).astype(int)) == set(range(6, 12))  # only the newest 40 rows


def test_each_frame_is_stored_once_per_step_plus_one_per_episode_start():
    buffer = ImageReplayBuffer(SPACE, ACTION, capacity=1000)
    for episode in range(10):
        buffer.batch_insert(_episode(episode, 20))
    assert buffer._frames_written == 10 * (20 + 1)
    frame_bytes = sum(frames.nbytes for frames in buffer._frames.values())
    naive_image_bytes = 2 * 1000 * 2 * IMAGE.shape[0] * IMAGE.shape[1] * IMAGE.shape[2]  # obs + next obs, 2 cameras
    assert frame_bytes < 0.6 * naive_image_bytes  # images no longer stored twice


def test_interleaved_actors_and_batches_split_anywhere_stay_correct():
    buffer = ImageReplayBuffer(SPACE, ACTION, capacity=500, seed=1)
    a, b = _episode(1, 30), _episode(2, 30)
    for start in range(0, 30, 4):  # two actors' batches alternate, as on the learner's server thread
        buffer.batch_insert(a[start:start + 4])
        buffer.batch_insert(b[start:start + 4])
    _check(buffer.sample(300))


def test_bad_images_are_refused_like_any_transition():
    buffer = ImageReplayBuffer(SPACE, ACTION, capacity=10)
    bad = _episode(0, 2)
    bad[1]["next_observations"]["images"]["front"] = np.zeros((5, 6, 3), np.uint8)
    with pytest.raises(InvalidTransitions, match=r"next_observations/images/front: got shape .*\(5, 6, 3\)"):
        buffer.batch_insert(bad)
    assert len(buffer) == 0 and buffer._frames_written == 0


def test_samples_never_return_frames_overwritten_while_gathering():
    buffer = ImageReplayBuffer(SPACE, ACTION, capacity=30, seed=2, frame_capacity=40)
    buffer.batch_insert(_episode(0, 30))
    stop, errors = threading.Event(), []

    def writer():
        episode = 1
        while not stop.is_set():
            buffer.batch_insert(_episode(episode % 200, 5))  # short episodes: frames turn over fast
            episode += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(200):
            try:
                _check(buffer.sample(32))
            except AssertionError as error:
                errors.append(error)
    finally:
        stop.set()
        thread.join()
    assert not errors, errors[0]


def test_default_capacity_for_two_128px_cameras_fits_next_to_the_learner():
    from serl_launcher.runtime.learner import IMAGE_BUFFER_CAPACITY

    camera = gym.spaces.Box(0, 255, (128, 128, 3), np.uint8)
    space = gym.spaces.Dict({"state": gym.spaces.Box(-np.inf, np.inf, (7,), np.float32),
                             "images": gym.spaces.Dict({"front": camera, "wrist": camera})})
    buffer = ImageReplayBuffer(space, gym.spaces.Box(-1, 1, (4,), np.float32), IMAGE_BUFFER_CAPACITY)
    per_transition = buffer.nbytes / buffer.capacity
    assert 98_304 < per_transition < 110_000  # ~ one frame of two cameras, not two
    assert buffer.nbytes < 6e9  # of the 24 GB of the development machine

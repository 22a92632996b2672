"""examples/record_demo.py playing classic_envs' CarRacing: the key map, the held-key teleop fed
through pygame's event queue, and a short recording driven by posted key events that the pixel
learner loads. Headless: SDL's dummy video driver stands in for the game's window."""
import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # before pygame opens the game's window

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import pygame  # noqa: E402
import pytest  # noqa: E402

from serl_launcher.data.rlds import read_rlds_dataset  # noqa: E402
from tests.helpers import import_example  # noqa: E402

rd = import_example("record_demo")
car = import_example("record_demo_car_racing")
CAR = "classic_envs:CarRacingPixels-v0"
DOWN, UP = pygame.KEYDOWN, pygame.KEYUP  # event types; the keys keep pygame's K_ names


def _post(*events) -> None:
    for kind, key in events:
        pygame.event.post(pygame.event.Event(kind, key=key))


@pytest.mark.parametrize("keys, action", [
    ((), [0, 0, 0]),
    ((pygame.K_LEFT,), [-1, 0, 0]),
    ((pygame.K_RIGHT,), [1, 0, 0]),
    ((pygame.K_UP,), [0, 1, 0]),
    ((pygame.K_DOWN,), [0, 0, 0.8]),
    ((pygame.K_SPACE,), [0, 0, 0.8]),
    ((pygame.K_LEFT, pygame.K_RIGHT), [0, 0, 0]),  # both sides cancel out
    ((pygame.K_UP, pygame.K_RIGHT, pygame.K_SPACE), [1, 1, 0.8]),
    ((pygame.K_a, pygame.K_w), [0, 0, 0]),  # no WASD driving
])
def test_car_action(keys, action):
    result = car.car_action(set(keys))
    np.testing.assert_allclose(result, action, atol=1e-7)
    assert result.dtype == np.float32


def test_rescale_is_the_inverse_of_make_envs_rescale_action():
    env = rd.make_env(CAR)  # no reset: no window
    assert isinstance(env, gym.wrappers.RescaleAction)
    for raw in ([0, 0, 0], [-1, 1, 0.8], [1, 0.5, 0]):
        agent = car.rescale(np.array(raw, np.float32), env.unwrapped.action_space, env.action_space)
        assert env.action_space.contains(agent)
        np.testing.assert_allclose(env.action(agent), raw, atol=1e-6)  # what the car receives
    env.close()


@pytest.fixture
def keyboard():
    env = rd.make_env(CAR)
    with car.CarRacingKeyboard(env) as teleop:
        pygame.event.clear()
        yield teleop
    env.close()
    pygame.display.quit()


def _act(teleop, *events):
    _post(*events)
    return teleop.act(None)


def test_held_keys_act_until_released(keyboard):
    gas, idle = [0, 1, -1], [0, -1, -1]  # in the learner's [-1, 1]: no gas or brake is -1
    np.testing.assert_allclose(_act(keyboard, (DOWN, pygame.K_UP)).action, gas)
    np.testing.assert_allclose(_act(keyboard).action, gas)  # still held: no new event
    np.testing.assert_allclose(_act(keyboard, (DOWN, pygame.K_SPACE)).action, [0, 1, 0.6])
    np.testing.assert_allclose(_act(keyboard, (UP, pygame.K_UP), (UP, pygame.K_SPACE)).action, idle)
    tap = _act(keyboard, (DOWN, pygame.K_LEFT), (UP, pygame.K_LEFT))  # pressed and released within one step
    np.testing.assert_allclose(tap.action, [-1, -1, -1])
    np.testing.assert_allclose(_act(keyboard).action, idle)


def test_escape_gives_up_the_attempt_q_and_the_window_quit(keyboard):
    assert _act(keyboard, (DOWN, pygame.K_ESCAPE))[1:] == (True, False)
    assert _act(keyboard)[1:] == (False, False)
    assert _act(keyboard, (DOWN, pygame.K_q))[1:] == (False, True)
    pygame.event.post(pygame.event.Event(pygame.QUIT))
    assert keyboard.act(None).quit


def test_no_display_is_a_clear_error(monkeypatch):
    """Without a display pygame falls back to an invisible window, and nobody could play."""
    monkeypatch.delenv("SDL_VIDEODRIVER")
    monkeypatch.setattr(pygame.display, "get_driver", lambda: "offscreen")
    env = rd.make_env(CAR)
    with pytest.raises(rd.DemoError, match="no display"):
        car.CarRacingKeyboard(env).__enter__()
    env.close()
    pygame.display.quit()


def test_the_game_is_played_with_the_keyboard_at_its_own_rate(tmp_path):
    for teleop in ("scripted", "spacemouse"):
        with pytest.raises(rd.DemoError, match="--teleop keyboard"):
            rd.record_demos(CAR, teleop, str(tmp_path / teleop), successes_needed=1)
    with pytest.raises(rd.DemoError, match="--hz"):
        rd.record_demos(CAR, "keyboard", str(tmp_path / "hz"), successes_needed=1, hz=5.0)
    assert not list(tmp_path.iterdir())


# A player reduced to a script: each step's key events (3-step episodes), posted just before the step.
SCRIPT = [
    [(DOWN, pygame.K_UP)], [(DOWN, pygame.K_LEFT)], [(UP, pygame.K_UP), (UP, pygame.K_LEFT), (DOWN, pygame.K_SPACE)],
    [(DOWN, pygame.K_RIGHT)], [(DOWN, pygame.K_ESCAPE)],  # attempt 1: given up, not kept
    [(UP, pygame.K_RIGHT), (UP, pygame.K_SPACE)], [(DOWN, pygame.K_DOWN)], [(UP, pygame.K_DOWN)],
    [(DOWN, pygame.K_q)],  # attempt 3: quits before its first step
]
KEPT_ACTIONS = [[[0, 1, -1], [-1, 1, -1], [0, -1, 0.6]], [[0, -1, -1], [0, -1, 0.6], [0, -1, -1]]]


class _Player(car.CarRacingKeyboard):
    def __init__(self, env, script):
        super().__init__(env)
        self._script = iter(script)

    def act(self, obs):
        _post(*next(self._script))
        return super().act(obs)


def test_posted_keys_record_every_finished_episode_for_the_pixel_learner(tmp_path, monkeypatch):
    monkeypatch.setattr(car, "CarRacingKeyboard", lambda env: _Player(env, SCRIPT))  # what make_teleop builds
    out = tmp_path / "car"
    summary = rd.record_demos(CAR, "keyboard", str(out), successes_needed=5, seed=0,
                              env_kwargs={"max_episode_steps": 3})
    assert summary == rd.Summary(successes=2, attempts=3, transitions=6, stopped_by_operator=True)

    episodes = list(read_rlds_dataset(str(out)))
    assert len(episodes) == 2
    for episode, actions in zip(episodes, KEPT_ACTIONS):
        pixels = episode["observation"]["pixels"]
        assert pixels.shape == (4, 4, 96, 96, 3) and pixels.dtype == np.uint8  # 3 transitions + the final frames
        np.testing.assert_array_equal(pixels[1:, :-1], pixels[:-1, 1:])  # each step's stack shifts by one frame
        assert pixels.std() > 1
        assert episode["action"].dtype == np.float32
        np.testing.assert_allclose(episode["action"], actions + [[0, 0, 0]], atol=1e-6)
        assert episode["is_last"][-1] and not episode["is_terminal"].any()  # the time limit truncated it
        assert episode["episode_metadata"]["env_id"] == CAR.encode()
        assert episode["episode_metadata"]["teleop"] == b"keyboard"
    assert [e["episode_metadata"]["attempt"] for e in episodes] == [0, 2]

    # The pixel learner's --preload_rlds_path (--pretrain_steps samples the demo buffer) takes them as they are.
    from serl_launcher.runtime.config import LearnerConfig
    from serl_launcher.runtime.learner import make_buffers
    from serl_launcher.utils.launcher import make_env

    env = make_env(CAR)
    _, demos = make_buffers(LearnerConfig(demos_path=str(out), demo_ratio=0.5, replay_buffer_capacity=100,
                                          demo_buffer_capacity=10), env.observation_space, env.action_space)
    assert len(demos) == 6
    batch = demos.sample(8)
    assert batch["observations"]["pixels"].shape == batch["next_observations"]["pixels"].shape == (8, 4, 96, 96, 3)
    recorded = np.concatenate(KEPT_ACTIONS)
    assert all(np.isclose(recorded, action, atol=1e-6).all(axis=1).any() for action in batch["actions"])
    env.close()

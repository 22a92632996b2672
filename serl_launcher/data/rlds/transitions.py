"""SAC transitions <-> RLDS episodes, keeping every transition and terminal vs. truncated ends.

SERL's replay buffers hold transitions {observations, actions, rewards, next_observations, masks,
dones}: masks is 0 only when the environment terminated (no bootstrapping from next_observations),
dones is 1 at every episode end, time-limit truncation included. RLDS holds steps, in one of two
layouts found in the wild:

- FINAL_OBSERVATION (RLDS's own convention, and what `transitions_to_episode` writes): N transitions
  are N + 1 steps. Step t holds o_t, the action a_t taken from it and the reward r_t it earned; the
  extra last step holds the final observation with a zero action and reward, is_last=True, and
  is_terminal=True only if the episode terminated, not if it was truncated.
- ACTION_EVERY_STEP: every step holds a real action and the next observation is the next step's.
  The last step's action makes a transition only if that step is terminal (its next observation
  then never matters, so the step's own observation stands in); otherwise it is dropped.
"""
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np

from serl_launcher.data.rlds.errors import RLDSError

FINAL_OBSERVATION = "final_observation"
ACTION_EVERY_STEP = "action_every_step"
_NEEDED = ("observation", "action", "reward", "is_terminal")


def transitions_to_episode(transitions: Sequence[Mapping]) -> dict:
    """One episode's transitions, in order, -> an RLDS episode (dict of stacked arrays) in the
    FINAL_OBSERVATION layout. The transitions must chain (each next_observations equals the next
    observations) and only the last may end the episode; if it does not, the episode is stored as
    truncated."""
    if not transitions:
        raise RLDSError("no transitions to make an episode of")
    for t, (current, following) in enumerate(zip(transitions, transitions[1:])):
        if _ends(current):
            raise RLDSError(f"transition {t} ends the episode (dones or masks == 0) but is not the last one")
        if not _equal(current["next_observations"], following["observations"]):
            raise RLDSError(f"transition {t}'s next_observations differ from transition {t + 1}'s observations")
    n = len(transitions)
    terminal = float(transitions[-1]["masks"]) == 0.0
    actions = np.stack([np.asarray(tr["actions"]) for tr in transitions])
    last = np.arange(n + 1) == n
    return {
        "observation": _stack([tr["observations"] for tr in transitions] + [transitions[-1]["next_observations"]]),
        "action": np.concatenate([actions, np.zeros_like(actions[:1])]),
        "reward": np.array([tr["rewards"] for tr in transitions] + [0.0], dtype=np.float32),
        "discount": np.array([tr["masks"] for tr in transitions] + [not terminal], dtype=np.float32),
        "is_first": np.arange(n + 1) == 0,
        "is_last": last,
        "is_terminal": last & terminal,
    }


def episode_to_transitions(episode: Mapping, convention: str = FINAL_OBSERVATION) -> dict:
    """One RLDS episode -> its transitions as a dict of arrays stacked over transitions.

    masks = 1 - is_terminal of the step the transition lands in (FINAL_OBSERVATION) or of its own
    step (ACTION_EVERY_STEP); dones marks the episode's last transition, terminal or truncated.
    """
    missing = [key for key in _NEEDED if key not in episode]
    if missing:
        raise RLDSError(f"episode misses step fields {missing}")
    terminal = np.asarray(episode["is_terminal"], dtype=bool)
    n = len(terminal)
    if convention == FINAL_OBSERVATION:
        index = np.arange(max(n - 1, 0))
        following = index + 1
        ends_here = terminal[following]
    elif convention == ACTION_EVERY_STEP:
        index = np.arange(n if n and terminal[-1] else max(n - 1, 0))
        following = np.minimum(index + 1, n - 1)
        ends_here = terminal[index]
    else:
        raise ValueError(f"convention must be {FINAL_OBSERVATION!r} or {ACTION_EVERY_STEP!r}, got {convention!r}")
    return {
        "observations": _take(episode["observation"], index),
        "actions": np.asarray(episode["action"])[index],
        "rewards": np.asarray(episode["reward"], dtype=np.float32)[index],
        "next_observations": _take(episode["observation"], following),
        "masks": (~ends_here).astype(np.float32),
        "dones": np.arange(len(index)) == len(index) - 1,
    }


def episodes_to_transitions(episodes: Iterable[Mapping], convention: str = FINAL_OBSERVATION) -> Iterator[dict]:
    """Every transition of every episode, one dict at a time (e.g. to preload a replay buffer)."""
    for episode in episodes:
        stacked = episode_to_transitions(episode, convention)
        for i in range(len(stacked["masks"])):
            yield _take(stacked, i)


def stack_transitions(episodes: Iterable[Mapping], convention: str = FINAL_OBSERVATION) -> dict:
    """Every transition of every episode, stacked column-wise (e.g. to preload a replay buffer at once)."""
    stacked = [episode_to_transitions(episode, convention) for episode in episodes]
    stacked = [columns for columns in stacked if len(columns["masks"])]
    if not stacked:
        raise RLDSError("the dataset holds no transitions")
    return _concatenate(stacked)


class EpisodeRecorder:
    """Groups a stream of SAC transitions into RLDS episodes and hands them to a writer.

    A transition that ends an episode (dones, or masks == 0) writes it out. A transition that does
    not continue the pending episode (its observations differ from the last next_observations, as
    after lost transitions or an actor restart) first writes the pending one out as truncated, and
    so do `flush()` and `close()`, which then closes the writer (recorders sharing a writer: flush each,
    close the writer once).
    """

    def __init__(self, writer):
        self._writer = writer
        self._pending = []

    def add(self, transition: Mapping) -> None:
        if self._pending and not _equal(self._pending[-1]["next_observations"], transition["observations"]):
            self.flush()
        self._pending.append(transition)
        if _ends(transition):
            self.flush()

    def close(self) -> None:
        self.flush()
        self._writer.close()

    def flush(self) -> None:
        """Write the pending transitions out as an episode (truncated unless the last one ended it)."""
        if self._pending:
            self._writer.add_episode(transitions_to_episode(self._pending))
            self._pending = []


def _ends(transition: Mapping) -> bool:
    return bool(transition["dones"]) or float(transition["masks"]) == 0.0


def _equal(a, b) -> bool:
    if isinstance(a, Mapping) or isinstance(b, Mapping):
        return isinstance(a, Mapping) and isinstance(b, Mapping) and a.keys() == b.keys() and all(
            _equal(a[key], b[key]) for key in a
        )
    return np.array_equal(np.asarray(a), np.asarray(b))


def _stack(trees: list):
    if isinstance(trees[0], Mapping):
        return {key: _stack([tree[key] for tree in trees]) for key in trees[0]}
    return np.stack([np.asarray(tree) for tree in trees])


def _concatenate(trees: list):
    if isinstance(trees[0], Mapping):
        return {key: _concatenate([tree[key] for tree in trees]) for key in trees[0]}
    return np.concatenate([np.asarray(tree) for tree in trees])


def _take(tree, index):
    if isinstance(tree, Mapping):
        return {key: _take(value, index) for key, value in tree.items()}
    return np.asarray(tree)[index]

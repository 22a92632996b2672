"""The learner's and the actor's settings: one typed, documented dataclass each (no global flags)."""
import dataclasses
from typing import Optional


@dataclasses.dataclass
class LearnerConfig:
    batch_size: int = 256
    """Critic minibatch size; each update samples batch_size x utd_ratio transitions."""
    utd_ratio: int = 8
    """Critic gradient steps per update (SERL's critic_actor_ratio); then one actor + temperature step."""
    max_steps: int = 1_000_000
    """Updates to run, counted across resumes."""
    training_starts: int = 300
    """Transitions to receive from actors before the first update."""
    replay_buffer_capacity: Optional[int] = None
    """Transitions kept (None: 1M for state observations, 50k with camera images: ~5 GB for two
    128x128 RGB cameras, each frame stored once)."""
    target_utd: float = 0.0
    """Critic steps per env step to keep up with: actors pause while the learner lags (0: never).
    On a small machine an unthrottled simulated actor floods the buffer with data the learner never
    learns from; a real robot cannot pause (use 0)."""
    demos_path: Optional[str] = None
    """RLDS dataset of demonstrations to load before training."""
    demo_ratio: float = 0.0
    """Fraction of every batch drawn from a separate demo buffer (RLPD-style, e.g. 0.5); 0 puts the
    demos in the main buffer. Transitions an actor flags as intervened also join the demo buffer."""
    pretrain_steps: int = 0
    """Updates on the demos alone before accepting actor data (pretraining from recorded play)."""
    demo_buffer_capacity: int = 100_000
    """Room in the demo buffer for interventions beyond the preloaded demos."""
    log_rlds_path: Optional[str] = None
    """Write every received episode to this RLDS dataset directory."""
    checkpoint_dir: Optional[str] = None
    """Save checkpoints here; an existing checkpoint in it is resumed (agent, step counts)."""
    checkpoint_period: int = 0
    """Checkpoint every this many updates (0: only at the end)."""
    max_checkpoints: Optional[int] = 10
    """Checkpoints kept (the newest; None: all)."""
    log_period: int = 10
    """Emit a learner metrics row every this many updates."""
    publish_period_s: float = 0.2
    """Publish the policy at most this often (and after the first update): actors act on params at
    most this old, and a fast learner does not spend its CPU encoding params nobody uses yet."""
    seed: int = 42


@dataclasses.dataclass
class ActorConfig:
    max_steps: int = 1_000_000
    """Environment steps to take."""
    random_steps: int = 300
    """Uniformly random actions for this many first steps (and until the first policy arrives)."""
    queue_size: int = 2000
    """Transitions held while the learner is unreachable; the oldest are dropped beyond it."""
    send_period_s: float = 0.1
    """The background sender delivers queued transitions this often (the control loop never waits on it)."""
    eval_period: int = 2000
    """Evaluate the deterministic policy at the first episode end after every this many steps (0: never)."""
    eval_episodes: int = 5
    video_period: int = 0
    """Film every this many evaluations (0: never) into video_dir; the eval env must render rgb_array."""
    video_dir: Optional[str] = None
    seed: int = 42

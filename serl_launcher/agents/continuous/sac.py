"""Soft Actor-Critic with a critic ensemble (REDQ-style target subsampling) and high update-to-data steps.

SERL's public API (`create_states`, `update`, `update_high_utd`, `sample_actions`, `state.params`),
with every hyper-parameter in one serialisable `SACConfig` that checkpoints carry, so
`load_agent(path)` rebuilds the agent without the training flags.

Written for speed without changing the math: the target evaluates only the `critic_subsample_size`
members it uses (SERL evaluates all, then discards most); the temperature step reuses the actor
step's entropy estimate instead of sampling the policy again; on CPU the actor loss evaluates the
critic in row chunks with a hand-written gradient (`actor_loss_gradient="chunked"`).

Subclasses (the pixel agent) change what a batch looks like before the losses (`augment_batch`)
and what builds the networks (`encoder` in the config); the losses and the update are shared.
"""
import dataclasses
import functools
from functools import partial
from typing import Any, FrozenSet, Optional, Union

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from serl_launcher.common import config_io
from serl_launcher.common.observations import ObservationSpec
from serl_launcher.common.optimizers import make_optimizer
from serl_launcher.networks.actor_critic import ENCODER, EnsembleCritic, Policy, Temperature, select_members
from serl_launcher.networks.encoders import EncoderConfig, make_encoder
from serl_launcher.networks.mlp import MLP

ALL_NETWORKS = frozenset({"actor", "critic", "temperature"})
ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu, "gelu": nn.gelu, "swish": nn.swish, "elu": nn.elu,
               "leaky_relu": nn.leaky_relu}
ACTOR_LOSS_GRADIENTS = ("auto", "autodiff", "chunked")
Params = Any


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    """An MLP trunk: Dense -> LayerNorm (optional) -> activation per hidden layer."""

    hidden_dims: tuple[int, ...] = (256, 256)
    activations: str = "tanh"
    use_layer_norm: bool = True

    def __post_init__(self):
        if self.activations not in ACTIVATIONS:
            raise ValueError(f"activations {self.activations!r} is not one of {sorted(ACTIVATIONS)}")
        if not self.hidden_dims or not all(isinstance(d, int) and d > 0 for d in self.hidden_dims):
            raise ValueError(f"hidden_dims must be positive ints, got {self.hidden_dims!r}")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """Adam, its learning rate ramped linearly from 0 over `warmup_steps` gradient steps."""

    learning_rate: float = 3e-4
    warmup_steps: int = 0


@dataclasses.dataclass(frozen=True)
class SACConfig:
    """Every hyper-parameter of a SAC agent; saved with each checkpoint. Defaults: SERL's state-based SAC."""

    policy_network: NetworkConfig = NetworkConfig()
    critic_network: NetworkConfig = NetworkConfig()
    critic_ensemble_size: int = 10
    """Q-functions in the critic ensemble (REDQ: 10)."""
    critic_subsample_size: Optional[int] = 2
    """The target is the min over this many randomly chosen members (None: all of them)."""
    discount: float = 0.99
    soft_target_update_rate: float = 0.005
    """tau of the target critic's Polyak averaging, per critic step."""
    target_entropy: Optional[float] = None
    """Entropy the temperature steers the policy towards (None: -action_dim / 2)."""
    backup_entropy: bool = False
    """Subtract the next action's entropy term in the critic's target (SERL: off)."""
    temperature_init: float = 1e-2
    std_min: float = 1e-5
    std_max: float = 5.0
    actor_optimizer: OptimizerConfig = OptimizerConfig(3e-4, 2000)
    critic_optimizer: OptimizerConfig = OptimizerConfig(3e-4, 2000)
    temperature_optimizer: OptimizerConfig = OptimizerConfig(3e-4, 0)
    actor_loss_gradient: str = "auto"
    """How the actor loss gets dQ/da: "autodiff"; "chunked" (critic in row chunks, a hand-written
    gradient: ~1.5x faster updates on CPU, where the unchunked scratch memory page-faults);
    "auto": chunked on CPU, autodiff on accelerators."""
    encoder: EncoderConfig = EncoderConfig()
    """How observations become features (state vectors by default)."""

    def make_decoder(self, spec: ObservationSpec):
        """An image decoder trained with the critic (SAC-AE); None: plain SAC has none."""
        del spec
        return None

    def __post_init__(self):
        if self.critic_subsample_size is not None and not 0 < self.critic_subsample_size <= self.critic_ensemble_size:
            raise ValueError(f"critic_subsample_size {self.critic_subsample_size} must be in "
                             f"[1, critic_ensemble_size={self.critic_ensemble_size}] or None")
        if self.actor_loss_gradient not in ACTOR_LOSS_GRADIENTS:
            raise ValueError(f"actor_loss_gradient {self.actor_loss_gradient!r} is not one of {ACTOR_LOSS_GRADIENTS}")
        if not 0 <= self.discount <= 1:
            raise ValueError(f"discount must be in [0, 1], got {self.discount}")


@dataclasses.dataclass(frozen=True)
class SACNetworks:
    """The modules and optimisers a config builds (static under jit; derived, never saved)."""

    actor_def: Policy
    critic_def: EnsembleCritic
    target_critic_def: EnsembleCritic  # the critic with only the members the target uses
    temperature_def: Temperature
    actor_tx: optax.GradientTransformation
    critic_tx: optax.GradientTransformation
    temperature_tx: optax.GradientTransformation
    target_entropy: float
    chunked_actor_loss: bool
    unroll_critic_steps: bool = False  # see _build_networks
    decoder_def: Optional[nn.Module] = None  # trained with the critic's encoder (SAC-AE)
    decoder_tx: Optional[optax.GradientTransformation] = None


class SACTrainState(flax.struct.PyTreeNode):
    params: dict  # {"actor": ..., "critic": ..., "temperature": ...}
    target_params: dict  # {"critic": ...}: a slow-moving copy of the critic
    opt_states: dict  # one optax state per network
    rng: jax.Array
    step: jax.Array  # gradient steps taken (each critic minibatch of a high-UTD update counts)


class SACAgent(flax.struct.PyTreeNode):
    config_class = SACConfig  # what `config` is and checkpoints rebuild (the pixel agent: DrQConfig)

    state: SACTrainState
    config: SACConfig = flax.struct.field(pytree_node=False)
    observation_spec: ObservationSpec = flax.struct.field(pytree_node=False)
    action_dim: int = flax.struct.field(pytree_node=False)

    @property
    def networks(self) -> SACNetworks:
        return _build_networks(self.config, self.observation_spec, self.action_dim)

    # ------------------------------------------------------------------ acting
    def sample_actions(self, observations, *, seed: Optional[jax.Array] = None, argmax: bool = False,
                       deterministic: Optional[bool] = None) -> jax.Array:
        """Actions for one observation or a batch: a policy sample, or its mode with `argmax=True`.

        `deterministic=True` is a synonym of `argmax=True` (SERL's actors pass `deterministic=False`).
        """
        argmax = argmax or bool(deterministic)
        if not argmax and seed is None:
            raise ValueError("sample_actions needs seed=<PRNGKey> unless argmax=True")
        return _sample_actions(self.networks.actor_def, self.state.params["actor"], observations, seed, argmax)

    def policy_params(self) -> Params:
        """What `sample_actions` needs: the parameters the learner publishes to actors."""
        return self.state.params["actor"]

    def with_policy_params(self, actor_params: Params) -> "SACAgent":
        """This agent acting with `actor_params` (e.g. received from the learner)."""
        return self.replace(state=self.state.replace(params={**self.state.params, "actor": actor_params}))

    def temperature(self) -> jax.Array:
        """The current entropy coefficient alpha."""
        return self.networks.temperature_def.apply({"params": self.state.params["temperature"]})

    # ---------------------------------------------------------------- learning
    def augment_batch(self, batch, rng: jax.Array):
        """Hook for subclasses (the pixel agent's random shifts); SAC trains on batches as they are."""
        del rng
        return batch

    @partial(jax.jit, static_argnames=("networks_to_update",))
    def update(self, batch, *, networks_to_update: FrozenSet[str] = ALL_NETWORKS):
        """One gradient step on `networks_to_update`; all losses use the parameters before the step.

        A step whose loss is not finite is skipped (info["nonfinite_update"] = 1): the parameters stay.
        """
        new_agent, info = _update(self, self.augment_batch(batch, self._augment_key()), networks_to_update)
        return _keep_if_finite(self, new_agent, info)

    @partial(jax.jit, static_argnames=("utd_ratio",))
    def update_high_utd(self, batch, *, utd_ratio: int = 8):
        """`utd_ratio` critic steps on consecutive minibatches of `batch`, then one actor + temperature step on all of it.

        A call whose losses are not all finite is skipped as a whole (info["nonfinite_update"] = 1).
        """
        batch_size = batch["rewards"].shape[0]
        if batch_size % utd_ratio:
            raise ValueError(f"batch size {batch_size} is not divisible by utd_ratio {utd_ratio}")
        batch = self.augment_batch(batch, self._augment_key())
        minibatches = jax.tree.map(lambda x: x.reshape((utd_ratio, batch_size // utd_ratio) + x.shape[1:]), batch)

        def critic_step(agent, minibatch):
            return _update(agent, minibatch, frozenset({"critic"}))

        unroll = utd_ratio if self.networks.unroll_critic_steps else 1
        new_agent, critic_infos = jax.lax.scan(critic_step, self, minibatches, unroll=unroll)
        new_agent, actor_infos = _update(new_agent, batch, frozenset({"actor", "temperature"}))
        return _keep_if_finite(self, new_agent, {**jax.tree.map(jnp.mean, critic_infos), **actor_infos})

    def _augment_key(self) -> jax.Array:
        """A key for `augment_batch` that leaves the losses' random stream as it is."""
        return jax.random.fold_in(self.state.rng, 0x5EED)

    # ------------------------------------------------------------ construction
    @classmethod
    def create(cls, rng: Union[jax.Array, int], observations, actions, config: Optional[SACConfig] = None,
               load_pretrained: bool = True) -> "SACAgent":
        """Build an agent from ONE sample observation and action (no batch axis) and its config.

        load_pretrained: read the encoder's pretrained weights file, if the config names one (not
        needed when a checkpoint's weights will replace them).
        """
        config = cls.config_class() if config is None else config
        if type(config) is not cls.config_class:
            raise TypeError(f"{cls.__name__} takes a {cls.config_class.__name__}, got {type(config).__name__}")
        rng = jax.random.PRNGKey(rng) if isinstance(rng, int) else rng
        spec = ObservationSpec.of(observations)
        action_dim = int(np.shape(actions)[-1])
        nets = _build_networks(config, spec, action_dim)
        observations = spec.zeros()
        sample_actions = jnp.zeros((1, action_dim), jnp.float32)
        batched = jax.tree.map(lambda x: x[None], observations)
        rng, actor_key, critic_key, temperature_key = jax.random.split(rng, 4)
        params = {
            "actor": nets.actor_def.init(actor_key, batched)["params"],
            "critic": nets.critic_def.init(critic_key, batched, sample_actions)["params"],
            "temperature": nets.temperature_def.init(temperature_key)["params"],
        }
        if load_pretrained and config.encoder.pretrained_weights:
            from serl_launcher.vision.pretrained import insert_backbone, load_backbone

            params["critic"] = {**params["critic"], ENCODER: insert_backbone(
                params["critic"][ENCODER], load_backbone(config.encoder.pretrained_weights),
                config.encoder.pretrained_weights)}
        params = _share_critic_encoder(params, config)
        txs = {"actor": nets.actor_tx, "critic": nets.critic_tx, "temperature": nets.temperature_tx}
        if nets.decoder_def is not None:
            rng, decoder_key = jax.random.split(rng)
            features = nets.critic_def.apply({"params": params["critic"]}, batched, method="encode")
            params["decoder"] = nets.decoder_def.init(decoder_key, features)["params"]
            txs["decoder"] = nets.decoder_tx
        state = SACTrainState(
            params=params,
            target_params={"critic": params["critic"]},
            opt_states={name: tx.init(params[name]) for name, tx in txs.items()},
            rng=rng,
            step=jnp.zeros((), jnp.int32),
        )
        return cls(state=state, config=config, observation_spec=spec, action_dim=action_dim)

    @classmethod
    def create_states(
        cls,
        rng: jax.Array,
        observations,
        actions,
        critic_network_kwargs: Optional[dict] = None,
        policy_network_kwargs: Optional[dict] = None,
        policy_kwargs: Optional[dict] = None,
        critic_ensemble_size: int = 2,
        critic_subsample_size: Optional[int] = None,
        temperature_init: float = 1.0,
        actor_optimizer_kwargs: Optional[dict] = None,
        critic_optimizer_kwargs: Optional[dict] = None,
        temperature_optimizer_kwargs: Optional[dict] = None,
        discount: float = 0.95,
        soft_target_update_rate: float = 0.005,
        target_entropy: Optional[float] = None,
        backup_entropy: bool = False,
        actor_loss_gradient: str = "auto",
    ) -> "SACAgent":
        """SERL's constructor for state observations (its keyword arguments and defaults)."""
        return cls.create(rng, observations, actions, SACConfig(**sac_config_kwargs(
            critic_network_kwargs, policy_network_kwargs, policy_kwargs, actor_optimizer_kwargs,
            critic_optimizer_kwargs, temperature_optimizer_kwargs),
            critic_ensemble_size=critic_ensemble_size, critic_subsample_size=critic_subsample_size,
            temperature_init=temperature_init, discount=discount, soft_target_update_rate=soft_target_update_rate,
            target_entropy=target_entropy, backup_entropy=backup_entropy, actor_loss_gradient=actor_loss_gradient))

    # ------------------------------------------------------------ saving
    def describe(self) -> dict:
        """What rebuilds this agent's networks (JSON): saved with every checkpoint."""
        return {"agent": type(self).__name__, "config": config_io.to_json(self.config),
                "observation_spec": self.observation_spec.to_json(), "action_dim": self.action_dim}

    @classmethod
    def from_description(cls, description: dict, seed: int = 0) -> "SACAgent":
        """A freshly initialised agent with the networks `describe()` recorded (load weights into it)."""
        config = config_io.from_json(cls.config_class, description["config"])
        spec = ObservationSpec.from_json(description["observation_spec"])
        return cls.create(jax.random.PRNGKey(seed), spec.zeros(), np.zeros(int(description["action_dim"]), np.float32),
                          config, load_pretrained=False)

    @classmethod
    def load(cls, path: str, step: Optional[int] = None) -> "SACAgent":
        """The agent saved in a checkpoint directory (newest step by default), built from its saved config."""
        from serl_launcher.utils.checkpoints import load_agent

        agent = load_agent(path, step)
        if not isinstance(agent, cls):
            raise TypeError(f"{path} holds a {type(agent).__name__}, not a {cls.__name__}")
        return agent


def sac_config_kwargs(critic_network_kwargs=None, policy_network_kwargs=None, policy_kwargs=None,
                      actor_optimizer_kwargs=None, critic_optimizer_kwargs=None,
                      temperature_optimizer_kwargs=None) -> dict:
    """SERL's keyword dictionaries as SACConfig fields (networks, policy std range, optimisers)."""
    policy_kwargs = dict(policy_kwargs or {})
    if not policy_kwargs.pop("tanh_squash_distribution", True):
        raise ValueError("only tanh_squash_distribution=True is supported")
    if policy_kwargs.pop("std_parameterization", "exp") != "exp":
        raise ValueError("only std_parameterization='exp' is supported")
    std = {key: float(policy_kwargs.pop(key)) for key in ("std_min", "std_max") if key in policy_kwargs}
    if policy_kwargs:
        raise ValueError(f"unsupported policy_kwargs {sorted(policy_kwargs)}")
    warmup = {"learning_rate": 3e-4, "warmup_steps": 2000}
    return {
        "critic_network": _network_config(critic_network_kwargs),
        "policy_network": _network_config(policy_network_kwargs),
        "actor_optimizer": OptimizerConfig(**(actor_optimizer_kwargs or warmup)),
        "critic_optimizer": OptimizerConfig(**(critic_optimizer_kwargs or warmup)),
        "temperature_optimizer": OptimizerConfig(**(temperature_optimizer_kwargs or {"learning_rate": 3e-4})),
        **std,
    }


def _network_config(kwargs: Optional[dict]) -> NetworkConfig:
    kwargs = dict(kwargs or {})
    kwargs.pop("activate_final", None)  # SERL sets it; the trunks here always end with an activation
    activations = kwargs.pop("activations", "tanh")
    if callable(activations):
        names = {fn: name for name, fn in ACTIVATIONS.items()}
        if activations not in names:
            raise ValueError(f"activation {activations} is not one of {sorted(ACTIVATIONS)} (it must be saved by name)")
        activations = names[activations]
    hidden_dims = tuple(int(d) for d in kwargs.pop("hidden_dims", (256, 256)))
    use_layer_norm = bool(kwargs.pop("use_layer_norm", False))
    if kwargs:
        raise ValueError(f"unsupported network kwargs {sorted(kwargs)}")
    return NetworkConfig(hidden_dims, activations, use_layer_norm)


# ---------------------------------------------------------------------- networks
@functools.lru_cache(maxsize=None)
def _build_networks(config: SACConfig, spec: ObservationSpec, action_dim: int) -> SACNetworks:
    policy_mlp = MLP(config.policy_network.hidden_dims, ACTIVATIONS[config.policy_network.activations],
                     activate_final=True, use_layer_norm=config.policy_network.use_layer_norm)
    # The policy acts on a copy of the critic's encoder with its gradient stopped (DrQ), or, for SAC-AE,
    # on the critic's convolutions (detached inside the encoder) and a projection of its own.
    actor_def = Policy(make_encoder(config.encoder, spec, for_policy=True), policy_mlp, action_dim, config.std_min,
                       config.std_max, stop_encoder_gradient=_encoder_has_params(config) and not _own_projection(config))
    critic_def = EnsembleCritic(make_encoder(config.encoder, spec), config.critic_ensemble_size,
                                config.critic_network.hidden_dims, ACTIVATIONS[config.critic_network.activations],
                                config.critic_network.use_layer_norm)
    decoder = config.make_decoder(spec)
    gradient = config.actor_loss_gradient
    if gradient == "auto":
        gradient = "chunked" if jax.default_backend() == "cpu" else "autodiff"
    return SACNetworks(
        actor_def=actor_def,
        critic_def=critic_def,
        target_critic_def=critic_def.clone(members=config.critic_subsample_size or config.critic_ensemble_size),
        temperature_def=Temperature(config.temperature_init),
        actor_tx=make_optimizer(**dataclasses.asdict(config.actor_optimizer)),
        critic_tx=make_optimizer(**dataclasses.asdict(config.critic_optimizer)),
        temperature_tx=make_optimizer(**dataclasses.asdict(config.temperature_optimizer)),
        target_entropy=-action_dim / 2 if config.target_entropy is None else config.target_entropy,
        chunked_actor_loss=gradient == "chunked",
        # XLA:CPU compiles the convolution gradients inside a rolled lax.scan to a slow generic path
        # (the pixel agent's update was ~13x slower rolled at batch 256, benchmarks/pixel_learner_profile.py);
        # unrolled, they take the fast one. State agents have no convolutions: they keep the compact loop.
        unroll_critic_steps=config.encoder.kind != "state" and jax.default_backend() == "cpu",
        decoder_def=decoder,
        decoder_tx=None if decoder is None else optax.adamw(config.decoder_learning_rate,
                                                            weight_decay=config.decoder_weight_decay),
    )


def _encoder_has_params(config: SACConfig) -> bool:
    return config.encoder.kind != "state"


def _own_projection(config: SACConfig) -> bool:
    """SAC-AE: the policy shares only the encoder's convolutions and trains a projection of its own."""
    return config.encoder.kind == "sac_ae"


def _share_critic_encoder(params: dict, config: SACConfig) -> dict:
    """The policy acts on the critic's encoder (trained by the critic loss only, as in DrQ); SAC-AE's
    policy takes only its convolutions ("trunk_*"), keeping its own projection."""
    if ENCODER not in params["critic"]:
        return params
    shared = params["critic"][ENCODER]
    if _own_projection(config):
        actor_encoder = params["actor"][ENCODER]
        shared = {camera: {**actor_encoder[camera], **{k: v for k, v in tree.items() if k.startswith("trunk_")}}
                  if camera.startswith("image_") else actor_encoder[camera] for camera, tree in shared.items()}
    return {**params, "actor": {**params["actor"], ENCODER: shared}}


@partial(jax.jit, static_argnums=(0, 4))
def _sample_actions(actor_def, actor_params, observations, seed, argmax):
    dist = actor_def.apply({"params": actor_params}, observations)
    return dist.mode() if argmax else dist.sample(seed)


# ---------------------------------------------------------------------- losses
def _critic_loss(critic_params, agent: SACAgent, batch, rng):
    cfg, nets, state = agent.config, agent.networks, agent.state
    next_action_key, subsample_key = jax.random.split(rng)
    next_dist = nets.actor_def.apply({"params": state.params["actor"]}, batch["next_observations"])
    next_actions, next_log_probs = next_dist.sample_and_log_prob(next_action_key)
    target_params = state.target_params["critic"]
    if cfg.critic_subsample_size is not None:  # REDQ: min over a random subset, without replacement
        members = jax.random.choice(subsample_key, cfg.critic_ensemble_size, (cfg.critic_subsample_size,),
                                    replace=False)
        target_params = select_members(target_params, members)
    next_q = nets.target_critic_def.apply({"params": target_params}, batch["next_observations"], next_actions).min(0)
    target_q = batch["rewards"] + cfg.discount * batch["masks"] * next_q
    if cfg.backup_entropy:
        temperature = nets.temperature_def.apply({"params": state.params["temperature"]})
        target_q = target_q - cfg.discount * batch["masks"] * temperature * next_log_probs
    target_q = jax.lax.stop_gradient(target_q)

    predicted_qs = nets.critic_def.apply({"params": critic_params}, batch["observations"], batch["actions"])
    loss = jnp.mean(jnp.sum((predicted_qs - target_q[None]) ** 2, axis=0))
    return loss, {"critic_loss": loss, "predicted_qs": predicted_qs.mean(), "target_qs": target_q.mean(),
                  "batch_reward": jnp.mean(batch["rewards"])}


def _critic_and_reconstruction_loss(critic_params, decoder_params, agent: SACAgent, batch, rng):
    critic_key, reconstruction_key = jax.random.split(rng)
    loss, info = _critic_loss(critic_params, agent, batch, critic_key)
    reconstruction, reconstruction_info = agent.reconstruction_loss(critic_params, decoder_params, batch,
                                                                    reconstruction_key)
    return loss + reconstruction, {**info, **reconstruction_info}


def _actor_loss(actor_params, agent: SACAgent, batch, rng):
    nets, state = agent.networks, agent.state
    actions, log_probs = nets.actor_def.apply({"params": actor_params}, batch["observations"]).sample_and_log_prob(rng)
    # The critic is not trained by this loss: neither its parameters nor its features get gradients.
    critic_params = jax.lax.stop_gradient(state.params["critic"])
    features = jax.lax.stop_gradient(
        nets.critic_def.apply({"params": critic_params}, batch["observations"], method="encode"))
    heads = {name: tree for name, tree in critic_params.items() if name != ENCODER}
    if nets.chunked_actor_loss:
        q = _mean_q_for_actor(nets.critic_def, heads, features, actions)
    else:
        q = nets.critic_def.apply({"params": heads}, features, actions, method="q_values").mean(axis=0)
    temperature = nets.temperature_def.apply({"params": state.params["temperature"]})
    loss = -jnp.mean(q - temperature * log_probs)
    return loss, log_probs


# The chunked actor loss evaluates the critic on row chunks of the batch, each chunk as independent
# groups of members (XLA runs independent ops concurrently). Sizes in member-rows, i.e. members x
# rows of one (members, rows, hidden) activation: chunks of ~1280 (~1.3 MB at hidden 256), groups of
# ~640. Measured on 2 cores: ensemble 10 -> 128 rows in 2 groups, ensemble 2 -> 512 rows in 1 group.
_ACTOR_LOSS_CHUNK_MEMBER_ROWS = 1280
_ACTOR_LOSS_GROUP_MEMBER_ROWS = 640


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _mean_q_for_actor(critic_def: EnsembleCritic, head_params, features, actions) -> jax.Array:
    """The ensemble's mean Q per row from encoded observations; the gradient flows to `actions` only.

    Callers stop the gradient of `head_params` and `features` explicitly: this VJP returns none for
    them. Differentiated, it computes Q and dQ/da together chunk by chunk under `lax.map`: the same
    arithmetic as autodiff of the whole batch, but the critic's activations for the whole batch,
    (members, batch, hidden) per layer, are never alive at once. On CPU the compiled update then
    needs ~25 MB of scratch memory instead of ~200 MB; XLA allocates it afresh every call, and glibc
    serves allocations above 32 MB with fresh pages that fault in on first touch: without chunking,
    calls took ~1.4x as long.
    """
    return critic_def.apply({"params": head_params}, features, actions, method="q_values").mean(axis=0)


def _mean_q_and_action_grad(critic_def, head_params, features, actions):
    members = critic_def.members
    chunk_rows = _floor_power_of_two(max(1, _ACTOR_LOSS_CHUNK_MEMBER_ROWS // members))
    groups = min(members, max(1, members * chunk_rows // _ACTOR_LOSS_GROUP_MEMBER_ROWS))
    mean_q = _grouped_mean_q(critic_def, head_params, groups)

    def chunk_q_and_grad(chunk):
        q, pullback = jax.vjp(lambda a: mean_q(chunk[0], a), chunk[1])
        return q, pullback(jnp.ones_like(q))[0]

    return _map_row_chunks(chunk_q_and_grad, chunk_rows, (features, actions))


def _mean_q_for_actor_bwd(critic_def, dq_da, g):
    return None, None, g[:, None] * dq_da


_mean_q_for_actor.defvjp(_mean_q_and_action_grad, _mean_q_for_actor_bwd)


def _grouped_mean_q(critic_def: EnsembleCritic, head_params, groups: int):
    """(features, actions) -> mean Q over members, evaluated as `groups` independent sub-ensembles.

    The groups' parameters are sliced here, once, rather than in every iteration of a loop that uses them.
    """
    bounds = [critic_def.members * i // groups for i in range(groups + 1)]
    parts = [(critic_def.clone(members=hi - lo), select_members(head_params, slice(lo, hi)))
             for lo, hi in zip(bounds[:-1], bounds[1:])]

    def mean_q(features, actions):
        return sum(d.apply({"params": p}, features, actions, method="q_values").sum(axis=0)
                   for d, p in parts) / critic_def.members

    return mean_q


def _floor_power_of_two(n: int) -> int:
    return 1 << (n.bit_length() - 1)


def _map_row_chunks(fn, chunk_size: int, arrays: tuple):
    """`fn` applied to consecutive row chunks of `arrays` under `lax.map`, outputs concatenated.

    The last chunk is zero-padded to full size; the padding rows' outputs are dropped.
    """
    rows = arrays[0].shape[0]
    chunk_size = min(chunk_size, rows)
    chunks = -(-rows // chunk_size)
    pad = chunks * chunk_size - rows

    def split(x):
        x = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1))
        return x.reshape((chunks, chunk_size) + x.shape[1:])

    outputs = jax.lax.map(fn, tuple(split(x) for x in arrays))
    return jax.tree.map(lambda y: y.reshape((chunks * chunk_size,) + y.shape[2:])[:rows], outputs)


# ---------------------------------------------------------------------- update
def _apply_gradients(tx, params, opt_state, grads):
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def _update(agent: SACAgent, batch, networks_to_update: FrozenSet[str]):
    unknown = networks_to_update - ALL_NETWORKS
    if unknown:
        raise ValueError(f"unknown networks {sorted(unknown)}; choose from {sorted(ALL_NETWORKS)}")
    cfg, nets, state = agent.config, agent.networks, agent.state
    rng, critic_key, actor_key = jax.random.split(state.rng, 3)
    params, opt_states, target_params = dict(state.params), dict(state.opt_states), dict(state.target_params)
    info = {}

    if "critic" in networks_to_update:
        if nets.decoder_def is None:
            grads, critic_info = jax.grad(_critic_loss, has_aux=True)(state.params["critic"], agent, batch, critic_key)
        else:  # SAC-AE: the encoder also learns to reconstruct the images, the decoder with it
            (grads, decoder_grads), critic_info = jax.grad(_critic_and_reconstruction_loss, argnums=(0, 1),
                                                           has_aux=True)(
                state.params["critic"], state.params["decoder"], agent, batch, critic_key)
            params["decoder"], opt_states["decoder"] = _apply_gradients(
                nets.decoder_tx, state.params["decoder"], state.opt_states["decoder"], decoder_grads)
        params["critic"], opt_states["critic"] = _apply_gradients(
            nets.critic_tx, state.params["critic"], state.opt_states["critic"], grads)
        target_params["critic"] = optax.incremental_update(params["critic"], state.target_params["critic"],
                                                           cfg.soft_target_update_rate)
        info.update(critic_info)

    if networks_to_update & {"actor", "temperature"}:
        actor_params = _share_critic_encoder(params, cfg)["actor"]  # the encoder the critic steps just trained
        (actor_loss, log_probs), grads = jax.value_and_grad(_actor_loss, has_aux=True)(
            actor_params, agent, batch, actor_key)
        entropy = -jnp.mean(log_probs)
        info.update(actor_loss=actor_loss, entropy=entropy,
                    temperature=nets.temperature_def.apply({"params": state.params["temperature"]}))
        if "actor" in networks_to_update:
            params["actor"], opt_states["actor"] = _apply_gradients(
                nets.actor_tx, actor_params, state.opt_states["actor"], grads)
        if "temperature" in networks_to_update:
            temperature_loss, grads = jax.value_and_grad(
                lambda p: nets.temperature_def.apply({"params": p}, jax.lax.stop_gradient(entropy), nets.target_entropy)
            )(state.params["temperature"])
            params["temperature"], opt_states["temperature"] = _apply_gradients(
                nets.temperature_tx, state.params["temperature"], state.opt_states["temperature"], grads)
            info["temperature_loss"] = temperature_loss

    new_state = state.replace(params=params, target_params=target_params, opt_states=opt_states,
                              rng=rng, step=state.step + 1)
    return agent.replace(state=new_state), info


def _keep_if_finite(old: SACAgent, new: SACAgent, info: dict):
    """`new` if every loss in `info` is finite, else `old` with a fresh rng: one bad batch cannot make
    every parameter NaN. info["nonfinite_update"] says which happened (the learner counts and logs it)."""
    losses = [value for key, value in info.items() if key.endswith("_loss")]
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in losses]))
    kept = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new.state, old.state)
    kept = kept.replace(rng=new.state.rng)
    return new.replace(state=kept), {**info, "nonfinite_update": 1.0 - finite.astype(jnp.float32)}

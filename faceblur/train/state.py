"""The train state every stage builds on, and the bridge from NNX modules to pure functions.

The networks are Flax NNX modules, but the train steps are pure functions of a pytree:
that is what `jax.jit` shards over a mesh, what orbax checkpoints, and what makes a resumed
run bit-identical to an uninterrupted one. `Network` keeps a module's static graph (and the
shapes of its parameters) and rebuilds the module from parameters inside the traced step.
Each stage's state is a typed `TrainState` with one field per network, named as in the
paper (`cyclegan.CycleGANState`, `srn.SRNState`).

With `config.ema_decay > 0` the state also carries an exponential moving average of the
networks used at inference (`optax.ema` without bias correction, started at the initial
parameters, as flax's and timm's model EMAs are). It is part of the checkpointed pytree, so a
resumed run continues it bit for bit; 0 (the default, for fidelity to the references) leaves
the field empty and the state as before.
"""

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct
from jax.sharding import Mesh

from faceblur.errors import ConfigError
from faceblur.ops import compilation
from faceblur.train import partitioning


@dataclasses.dataclass(frozen=True)
class Network:
  """A module's graph definition: `apply(params, ...)` calls the module with those params.

  `abstract_params` (shapes and dtypes, no arrays) is what inference restores into, so that
  loading a trained network needs neither its initialisers nor its optimiser.
  """

  graphdef: nnx.GraphDef
  abstract_params: nnx.State = dataclasses.field(compare=False, repr=False)

  def apply(self, params: nnx.State, *args, **kwargs):
    return nnx.merge(self.graphdef, params)(*args, **kwargs)


class TrainState(struct.PyTreeNode):
  """Everything that changes during training, as one checkpointable pytree.

  A stage subclasses it with one field per network, holding that network's parameters and
  named in `NETWORKS` as in the stage's `make_networks`, plus its optimiser states and
  whatever else must survive a restart (the CycleGAN image pools). The shared loop sees only
  `step`, `rng` and `params`; inference restores only the `NETWORKS` fields.
  """

  NETWORKS: ClassVar[tuple[str, ...]] = ()
  # The networks whose weights the EMA tracks (those inference uses); all by default.
  EMA_NETWORKS: ClassVar[tuple[str, ...] | None] = None

  step: jax.Array
  rng: jax.Array
  # optax.EmaState(count, ema={name: params}) of the `ema_networks()`, or None (EMA off).
  ema: Any = struct.field(default=None, kw_only=True)

  @property
  def params(self) -> dict[str, nnx.State]:
    """Each network's parameters, by network name."""
    return {name: getattr(self, name) for name in self.NETWORKS}

  @classmethod
  def ema_networks(cls) -> tuple[str, ...]:
    return cls.NETWORKS if cls.EMA_NETWORKS is None else cls.EMA_NETWORKS

  @property
  def ema_params(self) -> dict[str, nnx.State] | None:
    """The EMA weights by network name (the `ema_networks()`), or None without EMA."""
    return None if self.ema is None else dict(self.ema.ema)


def ema_decay(config) -> float:
  """`config.ema_decay`, checked: 0 turns the EMA off, else a decay in (0, 1)."""
  decay = float(config.get("ema_decay", 0.0))
  if not 0.0 <= decay < 1.0:
    raise ConfigError(f"ema_decay={decay} must be in [0, 1) (0 = no EMA of the weights)")
  return decay


def _ema_transform(decay: float) -> optax.GradientTransformation:
  """ema <- decay * ema + (1 - decay) * params after each step (applied to the parameters)."""
  return optax.ema(decay, debias=False)


def start_ema(state: TrainState, decay: float) -> TrainState:
  """`state` with its EMA started at its parameters (a stage's init, under `jit`); unchanged
  when `decay` is 0."""
  if not decay:
    return state
  tracked = {name: getattr(state, name) for name in state.ema_networks()}
  return state.replace(ema=optax.EmaState(count=jnp.zeros([], jnp.int32), ema=tracked))


def update_ema(state: TrainState, decay: float) -> TrainState:
  """`state` with its EMA moved towards its (just updated) parameters, the end of a step."""
  if not decay:
    return state
  tracked = {name: getattr(state, name) for name in state.ema_networks()}
  _, ema = _ema_transform(decay).update(tracked, state.ema)
  return state.replace(ema=ema)


def compute_dtype(config) -> jnp.dtype:
  """Activations' dtype: bfloat16 under `mixed_precision`; params and losses stay float32."""
  return jnp.bfloat16 if config.get("mixed_precision", False) else jnp.float32


def split_params(module: nnx.Module) -> tuple[nnx.GraphDef, nnx.State]:
  """Splits a module into graph and parameters; our networks hold nothing but `nnx.Param`."""
  graphdef, params, rest = nnx.split(module, nnx.Param, ...)
  if jax.tree.leaves(rest):
    raise ValueError(f"{type(module).__name__} holds non-parameter state; TrainState expects none")
  return graphdef, params


def network_of(make_module: Callable[[nnx.Rngs], nnx.Module]) -> Network:
  """The graph of a module, found by abstract evaluation so no weights are allocated."""
  graphdef, abstract_params = jax.eval_shape(lambda: split_params(make_module(nnx.Rngs(0))))
  return Network(graphdef, abstract_params)


def create_train_state(
    init_fn: Callable[[jax.Array], TrainState], seed: int, mesh: Mesh) -> TrainState:
  """Initialises the state inside `jit`, placed replicated on the mesh.

  Initialising under `jit` compiles all initialisers at once (creating NNX modules eagerly
  compiles each one separately, seconds for SRN) and works across hosts, where every
  process must produce the same replicated arrays. It runs once, so it compiles unoptimised.
  """
  return compilation.jit(lambda key: _strongly_typed(init_fn(key)), run_once=True,
                         out_shardings=partitioning.replicated(mesh))(jax.random.PRNGKey(seed))


def _strongly_typed(tree):
  """`tree` without JAX's weak types. A parameter computed from Python scalars is weakly typed
  and the state a train step returns is not, so the step would see new input types on its
  second call and compile a second time."""
  return jax.tree.map(lambda leaf: jax.lax.convert_element_type(leaf, leaf.dtype)
                      if jnp.issubdtype(leaf.dtype, jnp.number) else leaf, tree)


def init_params(make_module: Callable[[nnx.Rngs], nnx.Module], key: jax.Array) -> nnx.State:
  return split_params(make_module(nnx.Rngs(key)))[1]


def count_params(params: nnx.State) -> int:
  return sum(int(jnp.size(leaf)) for leaf in jax.tree.leaves(params))


def write_parameter_overview(writer, params: dict[str, nnx.State]) -> None:
  """clu's table of every parameter to the log file; the totals per network to the console."""
  from clu import parameter_overview as overview  # noqa: PLC0415

  pure = {name: nnx.to_pure_dict(state) for name, state in params.items()}
  writer.write_text(overview.get_parameter_overview(jax.device_get(pure), include_stats=False),
                    console=False)
  totals = ", ".join(f"{name} {count_params(state):,}" for name, state in params.items())
  writer.write_text(f"Parameters: {totals}")


def apply_gradients(
    tx: optax.GradientTransformation, params: nnx.State, opt_state: Any, grads: nnx.State
) -> tuple[nnx.State, Any]:
  updates, opt_state = tx.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state

"""The train state every stage shares, and the bridge from NNX modules to pure functions.

The networks are Flax NNX modules, but the train steps are pure functions of a pytree:
that is what `jax.jit` shards over a mesh, what orbax checkpoints, and what makes a resumed
run bit-identical to an uninterrupted one. `Network` keeps a module's static graph and
rebuilds the module from parameters inside the traced step.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct
from jax.sharding import Mesh

from faceblur.train import partitioning


@dataclasses.dataclass(frozen=True)
class Network:
  """A module's graph definition: `apply(params, ...)` calls the module with those params."""

  graphdef: nnx.GraphDef

  def apply(self, params: nnx.State, *args, **kwargs):
    return nnx.merge(self.graphdef, params)(*args, **kwargs)


class TrainState(struct.PyTreeNode):
  """Everything that changes during training, as one checkpointable pytree.

  `params` and `opt_states` are keyed by network / optimiser name (one of each for SRN; two
  generators and two discriminators with two optimisers for CycleGAN). `extras` holds
  stage-specific state that must survive a restart, such as the CycleGAN image pools.
  """

  step: jax.Array
  params: dict[str, nnx.State]
  opt_states: dict[str, Any]
  rng: jax.Array
  extras: dict[str, Any] = struct.field(default_factory=dict)


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
  graphdef, _ = jax.eval_shape(lambda: split_params(make_module(nnx.Rngs(0))))
  return Network(graphdef)


def create_train_state(
    init_fn: Callable[[jax.Array], TrainState], seed: int, mesh: Mesh) -> TrainState:
  """Initialises the state inside `jit`, placed replicated on the mesh.

  Initialising under `jit` compiles all initialisers at once (creating NNX modules eagerly
  compiles each one separately, seconds for SRN) and works across hosts, where every
  process must produce the same replicated arrays.
  """
  return jax.jit(init_fn, out_shardings=partitioning.replicated(mesh))(jax.random.PRNGKey(seed))


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

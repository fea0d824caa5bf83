"""The train state every stage builds on, and the bridge from NNX modules to pure functions.

The networks are Flax NNX modules, but the train steps are pure functions of a pytree:
that is what `jax.jit` shards over a mesh, what orbax checkpoints, and what makes a resumed
run bit-identical to an uninterrupted one. `Network` keeps a module's static graph (and the
shapes of its parameters) and rebuilds the module from parameters inside the traced step.
Each stage's state is a typed `TrainState` with one field per network, named as in the
paper (`cyclegan.CycleGANState`, `srn.SRNState`).
"""

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct
from jax.sharding import Mesh

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

  step: jax.Array
  rng: jax.Array

  @property
  def params(self) -> dict[str, nnx.State]:
    """Each network's parameters, by network name."""
    return {name: getattr(self, name) for name in self.NETWORKS}


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

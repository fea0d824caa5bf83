"""Each stage learns, checkpoints, and resumes exactly where an uninterrupted run would be."""

import errno
import io
import re
from unittest import mock

import jax
import numpy as np
import pytest
from helpers import cyclegan_config, fresh_cyclegan, random_images, srn_config
from PIL import Image

from configs import cyclegan as cyclegan_variants
from faceblur import metrics
from faceblur.data import factory
from faceblur.data import input_pipeline as data_pipeline
from faceblur.errors import StorageError
from faceblur.train import cyclegan, loop, partitioning, srn
from faceblur.train import state as state_lib
from faceblur.train.checkpointing import Checkpointer
from faceblur.train.trained import load_trained


def _fixed_batch(dataset, keys):
  batch = next(data_pipeline.iterate(dataset, start_step=0))
  return {key: batch[name] for key, name in keys.items()}


def _losses_on_fixed_batch(train_step, state, batch, mesh, metric, num_steps):
  step = jax.jit(train_step)
  values = []
  sharded = partitioning.shard_batch(batch, mesh)
  for _ in range(num_steps):
    state, metrics = step(state, sharded)
    values.append(float(metrics[metric]))
  return values


def test_cyclegan_step_reduces_cycle_loss_on_a_fixed_batch():
  config = cyclegan_config(100)
  # The reference generator: the demo's residual one starts as the identity, so its first
  # cycle and identity terms are 0 and the comparison below would check nothing.
  config.model.residual = False
  config.optimizer.learning_rate = 1e-3
  mesh = partitioning.make_mesh(1)
  tx = cyclegan.STAGE.make_optimizer(config, 100)
  state = state_lib.create_train_state(cyclegan.init_fn(config, tx), 0, mesh)
  sharp_source, blurred_source = cyclegan.sources(config)
  transform = data_pipeline.cyclegan_transform(config.data.load_size, config.data.crop_size)
  sharp = _fixed_batch(data_pipeline.make_dataset(sharp_source, batch_size=2,
                                                  transform=transform, seed=0), {"sharp": "image"})
  blurred = _fixed_batch(data_pipeline.make_dataset(blurred_source, batch_size=2,
                                                    transform=transform, seed=1),
                         {"blurred": "image"})
  networks = cyclegan.make_networks(config)
  step = cyclegan.make_train_step(config, networks, tx)
  first_metrics = jax.jit(step)(state, partitioning.shard_batch(sharp | blurred, mesh))[1]
  values = _losses_on_fixed_batch(step, state, sharp | blurred, mesh, "generator/cycle", 16)
  assert all(np.isfinite(values))
  assert np.mean(values[-3:]) < 0.8 * np.mean(values[:3]), values

  # The first step's L1 terms, recomputed in numpy on the [-1, 1] scale as the official code
  # (its images are normalised with mean 0.5 and std 0.5 before the losses).
  def apply(name, images):
    return np.asarray(networks[name].apply(state.params[name], images), np.float64)

  def l1(a, b):
    return np.abs((2 * a - 1) - (2 * np.asarray(b, np.float64) - 1)).mean()

  g, f = "g", "f"
  x, y = sharp["sharp"], blurred["blurred"]
  cycle = l1(apply(f, apply(g, x)), x) + l1(apply(g, apply(f, y)), y)
  identity = l1(apply(g, y), y) + l1(apply(f, x), x)
  np.testing.assert_allclose(first_metrics["generator/cycle"], cycle, rtol=1e-4)
  np.testing.assert_allclose(first_metrics["generator/identity"], identity, rtol=1e-4)
  total = (first_metrics["generator/adversarial"]
           + config.loss.cycle_weight * (cycle + config.loss.identity_weight * identity))
  np.testing.assert_allclose(first_metrics["generator/total"], total, rtol=1e-4)


@pytest.mark.parametrize("mixed_precision", [False, True])
def test_srn_step_reduces_multiscale_loss_on_a_fixed_batch(mixed_precision):
  config = srn_config(100)
  config.mixed_precision = mixed_precision
  config.optimizer.learning_rate = 1e-3
  mesh = partitioning.make_mesh(1)
  tx = srn.STAGE.make_optimizer(config, 100)
  state = state_lib.create_train_state(srn.init_fn(config, tx), 0, mesh)
  source = factory.make_paired_source(config.data.train)
  dataset = data_pipeline.make_dataset(
      source, batch_size=2, seed=0,
      transform=data_pipeline.paired_transform(config.data.crop_size, train=True))
  batch = _fixed_batch(dataset, {"blurred": "blurred", "sharp": "sharp"})
  step = srn.make_train_step(config, srn.make_networks(config), tx)
  # The convolutions of the lowered step (forward and backward) run in bfloat16 under mixed
  # precision and in float32 otherwise (measured: 621 of 621): mixed_precision is not ignored.
  text = jax.jit(step).lower(state, partitioning.shard_batch(batch, mesh)).as_text()
  dtypes = [re.search(r": \(tensor<[^>]*x(\w+)>, tensor<[^>]*x(\w+)>\)", line).groups()
            for line in text.splitlines() if "stablehlo.convolution" in line]
  assert set(dtypes) == ({("bf16", "bf16")} if mixed_precision else {("f32", "f32")}), dtypes
  values = _losses_on_fixed_batch(step, state, batch, mesh, "loss", 12)
  assert np.mean(values[-3:]) < 0.5 * np.mean(values[:3]), values


def _params(state):
  return jax.tree.leaves(jax.device_get(state.params))


@pytest.mark.parametrize("stage, make_config", [("cyclegan", cyclegan_config),
                                                ("srn", srn_config)])
def test_interrupted_run_resumes_to_the_same_bits(tmp_path, stage, make_config):
  """Stopped after 2 of 4 steps and resumed, a run ends with exactly the parameters of an
  uninterrupted one (so the same seed gives the same bits); another seed differs."""
  module = {"cyclegan": cyclegan, "srn": srn}[stage]
  straight = module.train_and_evaluate(make_config(4), tmp_path / "straight")

  interrupted = make_config(4)
  interrupted.stop_after_steps = 2
  first = module.train_and_evaluate(interrupted, tmp_path / "resumed")
  assert int(first.step) == 2
  assert Checkpointer(tmp_path / "resumed" / "checkpoints").latest_step() == 2
  resumed = module.train_and_evaluate(make_config(4), tmp_path / "resumed")

  assert int(resumed.step) == 4
  assert Checkpointer(tmp_path / "straight" / "checkpoints").latest_step() == 4
  for expected, actual in zip(_params(straight), _params(resumed), strict=True):
    np.testing.assert_array_equal(actual, expected)
  assert (tmp_path / "resumed" / "log.txt").read_text().count("Resuming from") == 1

  other_seed = make_config(2)
  other_seed.seed = 1
  other = module.train_and_evaluate(other_seed, tmp_path / "other")
  assert not all(np.array_equal(a, b)
                 for a, b in zip(_params(first), _params(other), strict=True))


def _files(folder):
  """Every file below `folder`: (size, mtime in ns, bytes), by relative path."""
  return {path.relative_to(folder): (path.stat().st_size, path.stat().st_mtime_ns,
                                     path.read_bytes())
          for path in sorted(folder.rglob("*")) if path.is_file()}


def test_training_run_is_a_no_op_once_finished(tmp_path):
  config = srn_config(2)
  done = srn.train_and_evaluate(config, tmp_path)
  log = (tmp_path / "log.txt").read_text()
  checkpoints = _files(tmp_path / "checkpoints")
  assert {path.parts[0] for path in checkpoints} == {"2"}
  again = srn.train_and_evaluate(config, tmp_path)
  assert int(again.step) == 2
  for expected, actual in zip(_params(done), _params(again), strict=True):
    np.testing.assert_array_equal(actual, expected)
  # No step ran: the log says so and logs no step, and no checkpoint file was rewritten.
  new_lines = (tmp_path / "log.txt").read_text()[len(log):].splitlines()
  assert f"Resuming from {tmp_path / 'checkpoints'}/2" in new_lines
  assert "Already trained for 2 >= 2 steps." in new_lines
  assert not [line for line in new_lines if line.startswith("step ")], new_lines
  assert _files(tmp_path / "checkpoints") == checkpoints


def test_nonfinite_loss_stops_with_one_line_naming_step_and_checkpoint(tmp_path):
  srn.train_and_evaluate(srn_config(2), tmp_path)  # a good checkpoint at step 2
  config = srn_config(6)
  config.optimizer.learning_rate = 1e30  # step 3 is finite, its update makes step 4 NaN
  config.checkpoint_every_steps = 2
  config.log_every_steps = 1
  with pytest.raises(loop.NonFiniteLossError) as raised:
    srn.train_and_evaluate(config, tmp_path)
  assert str(raised.value) == (
      f"loss became nan by step 4; last good checkpoint: {tmp_path / 'checkpoints'}/2 "
      "(lower the learning rate, or set --config.on_nonfinite=skip)")
  # Step 4, where the checkpoint was due, is never saved; step 3 was not due.
  checkpointer = Checkpointer(tmp_path / "checkpoints")
  assert checkpointer.latest_step() == 2
  assert sorted(path.name for path in (tmp_path / "checkpoints").iterdir()) == ["2"]


def test_synthesis_resumes_without_duplicating_or_losing_pairs(tmp_path):
  from configs import demo
  from faceblur.train import synthesize

  cyclegan.train_and_evaluate(cyclegan_config(2), tmp_path / "cyclegan")
  config = demo.get_config("tiny").synthesize
  config.cyclegan_workdir = str(tmp_path / "cyclegan")
  config.source.count = 20
  output = synthesize.synthesize(config, tmp_path)
  first = {path.relative_to(output): path.read_bytes() for path in output.rglob("*.png")}
  assert len(first) == 40  # 20 pairs, blurred + sharp
  assert len(list((output / "test" / "blurred").glob("*.png"))) == 4
  # Each pair is (G(sharp), sharp) for its own source image, up to the PNGs' 8-bit rounding.
  trained = load_trained(tmp_path / "cyclegan", "cyclegan")
  source = factory.make_source(config.source)
  sharp = np.stack([synthesize.prepare_sharp(source[i]["image"], config.image_size)
                    for i in range(20)])
  blurred = np.asarray(trained.networks["g"].apply(trained.params["g"], sharp), np.float32)
  # The demo's residual G starts as the identity; after 2 steps it moves pixels by 2.5/255 on
  # average, more than the 1/255 bound below at many pixels.
  assert np.mean(np.abs(blurred - sharp) > 2 / 255) > 0.3
  for index in range(20):
    (blurred_path, sharp_path), = [
        paths for split in ("train", "test")
        if (paths := synthesize.pair_paths(output, split, index))[0].exists()]
    saved_sharp = np.asarray(Image.open(sharp_path), np.float32) / 255
    saved_blurred = np.asarray(Image.open(blurred_path), np.float32) / 255
    assert np.abs(saved_sharp - sharp[index]).max() <= 0.5 / 255 + 1e-6, index
    assert np.abs(saved_blurred - blurred[index]).max() <= 1 / 255, index

  # An interruption: some pairs lost their blurred half (written last), one is half-written.
  removed = sorted((output / "train" / "blurred").glob("*.png"))[:5]
  for path in removed:
    path.unlink()
  (output / "train" / "blurred" / f".{removed[0].name}.x.tmp").write_bytes(b"partial")
  (output / synthesize.DONE_FILE).unlink()
  synthesize.synthesize(config, tmp_path)
  second = {path.relative_to(output): path.read_bytes() for path in output.rglob("*.png")}
  assert second.keys() == first.keys()
  for name, data in first.items():
    # Re-synthesised pairs are the same pixels (generator and crops are deterministic).
    assert np.array_equal(np.asarray(Image.open(output / name)),
                          np.asarray(Image.open(io.BytesIO(data))))
  assert synthesize.is_complete(output)

  # The disk fills up in a writer thread mid-run: one line naming the folder, no summary
  # file; a re-run on a freed disk completes every pair exactly once.
  for path in sorted((output / "train" / "blurred").glob("*.png"))[:8]:
    path.unlink()
  (output / synthesize.DONE_FILE).unlink()
  writes = []

  def save_until_full(path, image):
    writes.append(path)
    if len(writes) > 5:
      raise OSError(errno.ENOSPC, "No space left on device", str(path))
    return real_save(path, image)

  real_save = synthesize.save_image
  with mock.patch.object(synthesize, "save_image", save_until_full):
    with pytest.raises(StorageError,
                       match=r"train/blurred: cannot write pairs \(No space left on device\)"):
      synthesize.synthesize(config, tmp_path)
  assert not synthesize.is_complete(output)
  synthesize.synthesize(config, tmp_path)
  third = {path.relative_to(output): path.read_bytes() for path in output.rglob("*.png")}
  assert third.keys() == first.keys() and synthesize.is_complete(output)


def test_srn_evaluates_held_out_pairs_while_training(identity_srn):
  """Guards the SRN's held-out evaluation (issue 26, break 7): it runs on a generated test set
  (kernel blur needs no path), and the identity network's restored images score exactly what
  their blurred inputs score."""
  log = (identity_srn / "log.txt").read_text()
  scores = dict(re.findall(r"eval/(\w+/\w+)=([-\d.e]+)", log))
  assert set(scores) == {"psnr/blurred", "psnr/restored", "ssim/blurred", "ssim/restored"}
  assert 15 < float(scores["psnr/blurred"]) < 40
  assert scores["psnr/restored"] == scores["psnr/blurred"]
  assert scores["ssim/restored"] == scores["ssim/blurred"]
  assert not factory.is_set(factory.source_spec("folder"))  # no path: no evaluation
  assert factory.is_set(factory.source_spec("paired_folder", path="pairs/test"))


def test_srn_evaluation_batches_by_shape_and_scores_as_image_by_image():
  """The held-out evaluation restores images of one shape together, in batches of at most
  `EVAL_BATCH`; its means are those of restoring and scoring each image alone."""
  config = srn_config()
  config.eval_crop_size = 0  # whole images: two shapes here
  config.eval_num_images = srn.EVAL_BATCH + 5
  rng = np.random.default_rng(0)
  shapes = [(24, 24, 3)] * (srn.EVAL_BATCH + 2) + [(28, 32, 3)] * 3
  records = [{"blurred": rng.integers(0, 256, shape, np.uint8),
              "sharp": rng.integers(0, 256, shape, np.uint8), "name": str(i)}
             for i, shape in enumerate(shapes)]
  network = srn.make_networks(config)[srn.NETWORK]
  params = state_lib.init_params(lambda rngs: srn.module_factory(config)(rngs=rngs),
                                 jax.random.key(0))
  logged = {}
  writer = mock.Mock(write_scalars=lambda step, scalars: logged.update(scalars))
  srn._evaluator(config, network, records, writer)(1, mock.Mock(deblurrer=params))
  restore = srn.make_restore_fn(network)
  expected = {"psnr/blurred": [], "psnr/restored": [], "ssim/blurred": [], "ssim/restored": []}
  for record in records:
    blurred = (record["blurred"] / np.float32(255))[None]
    sharp = (record["sharp"] / np.float32(255))[None]
    for name, images in (("blurred", blurred), ("restored", restore(params, blurred))):
      expected[f"psnr/{name}"].append(float(metrics.psnr(images, sharp)[0]))
      expected[f"ssim/{name}"].append(float(metrics.ssim(images, sharp)[0]))
  assert set(logged) == {f"eval/{name}" for name in expected}
  for name, values in expected.items():
    assert logged[f"eval/{name}"] == pytest.approx(np.mean(values), abs=1e-4)


def test_the_train_step_compiles_once_though_a_parameter_starts_from_python_scalars():
  """Guards `create_train_state`'s strong types: `kernel_blur`'s kernel bias is computed from
  Python numbers, so it starts weakly typed; the step's returned state is not, and the second
  step compiled the whole CycleGAN step again (18 s on the 2-core CPU)."""
  config = cyclegan_config(4)
  cyclegan_variants.apply_variant(config, "kernel_blur")
  mesh, tx, state = fresh_cyclegan(config)
  assert not any(leaf.weak_type for leaf in jax.tree.leaves(state))
  step = cyclegan.STAGE.jit_train_step(config, cyclegan.make_networks(config), tx, mesh)
  batch = partitioning.shard_batch(random_images(config), mesh)
  for _ in range(2):
    state, _ = step(state, batch)
  assert step._cache_size() == 1


def test_a_forward_cycle_of_weight_zero_is_watched_without_its_backward_pass():
  """`kernel_blur`'s sharp -> blurred -> sharp cycle has weight 0 and is logged only: its
  gradient is not computed (fewer convolutions), and training follows the same course as with
  a negligible weight."""
  config = cyclegan_config(4)
  cyclegan_variants.apply_variant(config, "kernel_blur_plain")
  assert config.loss.forward_cycle_weight == 0.0
  mesh, tx, state = fresh_cyclegan(config)
  networks = cyclegan.make_networks(config)
  batch = partitioning.shard_batch(random_images(config), mesh)
  convolutions, logged = {}, {}
  for weight in (0.0, 1e-9):
    config.loss.forward_cycle_weight = weight
    step = jax.jit(cyclegan.make_train_step(config, networks, tx))
    convolutions[weight] = step.lower(state, batch).as_text().count("stablehlo.convolution")
    trained = state
    for _ in range(3):
      trained, step_metrics = step(trained, batch)
    logged[weight] = {name: float(value) for name, value in step_metrics.items()}
  assert convolutions[0.0] < 0.8 * convolutions[1e-9]
  assert logged[0.0]["generator/cycle_forward"] > 0
  assert logged[0.0] == pytest.approx(logged[1e-9], rel=1e-5)

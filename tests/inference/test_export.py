"""The export job's StableHLO deblurrer runs with jax alone and restores as the Deblurrer does."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from helpers import run_main, srn_config

from faceblur.errors import ConfigError
from faceblur.inference import Deblurrer
from faceblur.inference.export import STABLEHLO_FILE, _check_exportable
from faceblur.train import release, srn
from faceblur.train.trained import TrainedModel

# Under symbolic shapes jax.image.resize computes its weights at run time, one ulp from the
# constants of a fixed shape; through the network that is up to ~5e-5 (measured 4.5e-5).
TOLERANCE = 1e-4
SIZES = [(1, 32, 48), (1, 40, 40), (1, 57, 33), (2, 21, 30)]

_CHILD = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    exported = jax.export.deserialize(open(sys.argv[1], "rb").read())
    images = np.load(sys.argv[2])
    np.savez(sys.argv[3], **{name: np.asarray(exported.call(images[name])) for name in images})
    print(json.dumps({"faceblur_imported": any(m.startswith("faceblur") for m in sys.modules),
                      "platforms": list(exported.platforms)}))
""")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  """A tiny SRN trained 2 steps with EMA, exported by the job with its EMA weights."""
  root = tmp_path_factory.mktemp("export")
  config = srn_config(2)
  config.ema_decay = 0.5
  srn.train_and_evaluate(config, root / "srn")
  result = run_main("--config=configs/export.py", f"--config.checkpoint={root / 'srn'}",
                    f"--config.output={root / 'release'}", "--config.use_ema=True")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "Released the srn stage at step 2 (EMA weights, deblurrer.stablehlo" in result.stdout
  return root


def test_stablehlo_deblurrer_runs_without_faceblur_and_matches_the_deblurrer(exported):
  released = exported / "release"
  metadata = release.read_metadata(released)
  assert metadata["default_weights"] == "ema" and metadata["files"] == [STABLEHLO_FILE]
  rng = np.random.default_rng(0)
  images = {f"{n}x{h}x{w}": rng.random((n, h, w, 3), dtype=np.float32) for n, h, w in SIZES}
  np.savez(exported / "images.npz", **images)
  env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
  child = subprocess.run(
      [sys.executable, "-c", _CHILD, str(released / STABLEHLO_FILE), str(exported / "images.npz"),
       str(exported / "restored.npz")], cwd=exported, env=env, capture_output=True, text=True,
      timeout=600)
  assert child.returncode == 0, child.stderr[-3000:]
  report = json.loads(child.stdout.strip().splitlines()[-1])
  assert report == {"faceblur_imported": False, "platforms": ["cpu", "cuda"]}

  deblurrer = Deblurrer(released)  # the release's default: its EMA weights, as exported
  assert deblurrer.weights == "ema"
  restored = np.load(exported / "restored.npz")
  for name, batch in images.items():
    assert restored[name].shape == batch.shape
    for image, output in zip(batch, restored[name], strict=True):
      expected = deblurrer(image)
      np.testing.assert_allclose(output, expected, atol=TOLERANCE, rtol=0, err_msg=name)
    # The network did something: the output is not the input.
    assert np.abs(restored[name] - batch).max() > 10 * TOLERANCE


def test_srn_whose_coarsest_scale_does_not_divide_is_refused_in_one_line():
  config = srn_config()
  config.model.num_scales = 4
  trained = TrainedModel(config=config, networks={}, params={}, step=0)
  with pytest.raises(ConfigError, match="cannot export an SRN with num_scales=4 and scale_ratio"
                                        "=0.5 to StableHLO"):
    _check_exportable(trained)

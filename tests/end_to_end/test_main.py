"""The entry point: the demo pipeline end to end, and one-line errors for bad input."""

import json

import pytest
from helpers import assert_one_line_error, run_main


def test_unknown_config_key_fails_at_parsing_naming_the_key():
  result = run_main("--config=configs/srn.py", "--config.optimizer.learning_rat=1",
                    "--workdir=/tmp/unused")
  assert_one_line_error(result, "learning_rat")


def test_missing_data_folder_names_the_folder(tmp_path):
  missing = tmp_path / "no_such_faces"
  result = run_main("--config=configs/cyclegan.py", f"--workdir={tmp_path / 'run'}",
                    f"--config.data.sharp.path={missing}",
                    f"--config.data.blurred.path={missing}")
  assert_one_line_error(result, str(missing))


def test_missing_checkpoint_names_it(tmp_path):
  image = tmp_path / "in.png"
  image.write_bytes(b"not really")
  result = run_main("--config=configs/deblur.py", f"--config.checkpoint={tmp_path / 'nope'}",
                    f"--config.input={image}", f"--config.output={tmp_path / 'out.png'}")
  assert_one_line_error(result, "nope")


@pytest.mark.slow
def test_demo_pipeline_runs_end_to_end_and_resumes(tmp_path):
  workdir = tmp_path / "demo"
  result = run_main("--config=configs/demo.py:tiny", f"--workdir={workdir}")
  assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
  report = json.loads((workdir / "evaluation" / "report.json").read_text())
  synthesized = report["test_sets"]["synthesized"]
  assert synthesized["num_images"] > 0
  assert set(synthesized["quality"]) >= {"blurred", "ours", "srn_kernel", "cyclegan"}
  for method in synthesized["quality"].values():
    assert 0 < method["psnr"] < 100 and 0 < method["ssim"] <= 1
  assert (workdir / "evaluation" / "figure_synthesized.png").exists()
  # The camera-blurred held-out people: every method's quality and detection, and the
  # realism of the synthesised and the kernel blur measured against the camera's.
  camera = report["test_sets"]["camera_blurred"]
  assert set(camera["quality"]) == set(synthesized["quality"])
  assert set(camera["detection"]) == {"ground_truth", *synthesized["quality"]}
  assert (workdir / "evaluation" / "figure_camera_blurred.png").exists()
  assert {"synthesized", "kernel_blurred", "camera_blurred"} <= set(report["blur_realism"])
  assert "Table 1" in result.stdout and "Table 2" in result.stdout
  train_pairs = list((workdir / "pairs" / "train" / "blurred").glob("*.png"))
  test_pairs = list((workdir / "pairs" / "test" / "blurred").glob("*.png"))
  assert len(train_pairs) + len(test_pairs) == 40 and len(test_pairs) == 8

  again = run_main("--config=configs/demo.py:tiny", f"--workdir={workdir}",
                   "--config.stages=('cyclegan','synthesize','srn')")
  assert again.returncode == 0, again.stderr[-3000:]
  assert "Already trained" in again.stdout and "already complete" in again.stdout

"""report.md's tables put each number in its own cell: a snapshot on a hand-made report.

Guards the layout that a swapped column would break silently (Table 1's PSNR and SSIM, the
realism table's MMD^2, p-value, classifier accuracy, precision and recall), since every
figure is plausible in every cell."""

from faceblur.evaluate import report

REPORT = {
    "methods": {"blurred": "Blurred input", "ours": "Ours"},
    "test_sets": {
        "camera": {"quality": {"blurred": {"psnr": 29.541, "ssim": 0.89531},
                               "ours": {"psnr": 29.7512, "ssim": 0.90144}}},
        "kernel": {"quality": {"blurred": {"psnr": 32.4449, "ssim": 0.93492},
                               "ours": {"psnr": 32.701, "ssim": 0.93881}}},
    },
    "blur_realism": {
        "camera": {"mmd2": -0.00191, "p_value": 0.6871, "bandwidth": 1.0,
                   "classifier_accuracy": 0.481},
        "synthesized": {"mmd2": 0.02181, "p_value": 0.00498, "bandwidth": 1.0,
                        "classifier_accuracy": 0.7512, "precision": 0.812, "recall": 0.934},
    },
}


def test_table1_snapshot():
  assert report.table1(REPORT) == "\n".join([
      "| Method | camera PSNR / SSIM | kernel PSNR / SSIM |",
      "|---|---|---|",
      "| Blurred input | 29.54 / 0.8953 | 32.44 / 0.9349 |",
      "| Ours | 29.75 / 0.9014 | 32.70 / 0.9388 |",
  ])


def test_realism_table_snapshot():
  assert report.realism_table(REPORT).splitlines()[2:] == [
      "| camera | -0.0019 | 0.687 | 0.48 | - | - |",  # a report from before precision
      "| synthesized | 0.0218 | 0.005 | 0.75 | 0.81 | 0.93 |",
  ]
  assert report.realism_table({"blur_realism": None}) is None

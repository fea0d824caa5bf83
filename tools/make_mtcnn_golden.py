"""Golden MTCNN detections from the `mtcnn` 1.0.0 package itself, for tests/detectors.

Run once, in a throw-away environment that has TensorFlow (faceblur never depends on it):

  python3 -m venv /tmp/tfvenv
  /tmp/tfvenv/bin/pip install tensorflow-cpu mtcnn==1.0.0 scikit-image matplotlib
  /tmp/tfvenv/bin/python tools/make_mtcnn_golden.py

It writes tests/fixtures/golden_mtcnn.json: for each test image (real faces that packages
ship, sharp and blurred, whole and cropped), the package's boxes (float, x0 y0 x1 y1), scores
and landmarks, with the thresholds faceblur uses (P/R/O-Net 0.6/0.7/0.7, min face 20 px).
The images are rebuilt in the test from the same packages, so only numbers are stored.
"""

import json
import pathlib

import numpy as np
import tensorflow as tf
from golden_mtcnn_images import IMAGES  # tools/, next to this script
from mtcnn import MTCNN

OUT = pathlib.Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "golden_mtcnn.json"


def main() -> None:
  detector = MTCNN(device="CPU:0")
  golden = {"package": "mtcnn 1.0.0", "tensorflow": tf.__version__,
            "thresholds": [0.6, 0.7, 0.7], "min_face_size": 20, "images": {}}
  for name, make in IMAGES.items():
    image = make()
    found = detector.detect_faces(
        image, box_format="xyxy", output_type="numpy", threshold_pnet=0.6, threshold_rnet=0.7,
        threshold_onet=0.7, min_face_size=20)
    found = np.asarray(found, np.float64).reshape(-1, found.shape[-1] if found.size else 16)
    # numpy output: batch index, x0, y0, x1, y1, score, the 5 landmarks' x, then their y
    golden["images"][name] = {
        "shape": list(image.shape),
        "boxes": found[:, 1:5].tolist(), "scores": found[:, 5].tolist(),
        "landmarks": np.stack([found[:, 6:11], found[:, 11:16]], axis=-1).tolist()}
    print(name, image.shape, np.round(found[:, 1:6], 2).tolist())
  OUT.write_text(json.dumps(golden, indent=1))
  print("wrote", OUT)


if __name__ == "__main__":
  main()

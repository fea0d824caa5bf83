"""The `deblur` job: restores one image or a folder of them with a trained SRN.

A face model restores each face in place by default (`faceblur.inference.faces`, with a
`<output>.json` sidecar per image); `--config.regions=whole` restores the whole image in tiles.
Outputs keep the input's file name and format; a folder keeps its sub-folders. A file that
cannot be read is skipped with one warning and counted; a disk that cannot be written stops
at the first image, in one line.
"""

import pathlib

import ml_collections
from tqdm import tqdm

from faceblur.console import warn
from faceblur.data import image_io
from faceblur.errors import ConfigError, FaceblurError, ImageReadError, StorageError
from faceblur.inference.faces import JobFaces
from faceblur.inference.restorer import Deblurrer
from faceblur.storage import check_writable, os_reason


def _output_path(input_path: pathlib.Path, input_root: pathlib.Path, output: pathlib.Path,
                 single: bool) -> pathlib.Path:
  if single:
    return output if output.suffix else output / input_path.name
  return output / input_path.relative_to(input_root)


def deblur_job(config: ml_collections.ConfigDict, workdir: pathlib.Path | None = None) -> int:
  """Restores `config.input` (a file or folder) into `config.output`; returns the failures.

  `workdir`, which every job is given, is not used: the outputs go where the config says.
  """
  del workdir
  if not config.input:
    raise ConfigError("set --config.input to an image or a folder")
  if not config.output:
    raise ConfigError("set --config.output to a file or a folder")
  source, output = pathlib.Path(config.input), pathlib.Path(config.output)
  if not source.exists():
    raise ConfigError(f"{source}: no such file or folder")
  single = source.is_file()
  paths = [source] if single else image_io.list_images(source)
  deblurrer = Deblurrer(config.checkpoint, tile_size=config.tile_size,
                        tile_megapixels=config.tile_megapixels,
                        tile_overlap=config.tile_overlap,
                        use_ema=config.get("use_ema", False) or None)
  faces = JobFaces(config, deblurrer, source, single)
  check_writable(output.parent if single and output.suffix else output, "output folder")
  failures = 0
  for path in tqdm(paths, desc="deblur", unit="image", disable=single):
    try:
      restored, faces_done = faces.restore(path, image_io.load_image(path))
    except ImageReadError as error:
      failures += 1
      warn(f"skipped {error}")
      continue
    output_path = _output_path(path, source, output, single)
    try:
      image_io.save_image(output_path, restored)
      faces.write(path, output_path, faces_done, image_io.save_image)
    except OSError as error:  # a full or read-only disk fails every later image too
      raise StorageError(f"{output_path}: cannot write ({os_reason(error)})") from None
  print(f"Restored {len(paths) - failures} of {len(paths)} images into {output}"
        f"{faces.summary()}", flush=True)
  if failures:
    raise FaceblurError(f"{failures} of {len(paths)} images could not be read (see warnings)")
  return failures

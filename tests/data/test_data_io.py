"""Image files in every mode decode to HxWx3 uint8 RGB; bad files fail with one line naming them."""

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from faceblur import images
from faceblur.data import image_io
from faceblur.errors import DataError, ImageReadError


def _pixels(height=6, width=8, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _write_png_rgb16(path, image16: np.ndarray) -> None:
  """A 16-bit RGB PNG, written by hand: PIL can read but not write this mode."""
  height, width, _ = image16.shape

  def chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

  rows = b"".join(b"\x00" + image16[row].astype(">u2").tobytes() for row in range(height))
  header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
  path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                   + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def test_grayscale_is_replicated_to_rgb(tmp_path):
  grey = _pixels()[..., 0]
  Image.fromarray(grey, mode="L").save(tmp_path / "grey.png")
  image = image_io.load_image(tmp_path / "grey.png")
  assert image.shape == (6, 8, 3) and image.dtype == np.uint8
  np.testing.assert_array_equal(image, np.repeat(grey[..., None], 3, axis=-1))


def test_rgba_is_composited_on_white(tmp_path):
  rgba = np.zeros((2, 2, 4), np.uint8)
  rgba[0, 0] = (10, 20, 30, 255)   # opaque: its colour
  rgba[0, 1] = (10, 20, 30, 0)     # transparent: white
  rgba[1, 0] = (0, 0, 0, 128)      # half: half-way to white
  Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
  image = image_io.load_image(tmp_path / "rgba.png")
  np.testing.assert_array_equal(image[0, 0], (10, 20, 30))
  np.testing.assert_array_equal(image[0, 1], (255, 255, 255))
  assert np.all(np.abs(image[1, 0].astype(int) - 127) <= 1)


def test_palette_with_and_without_transparency(tmp_path):
  rgb = _pixels()
  Image.fromarray(rgb).quantize(8).save(tmp_path / "palette.png")
  image = image_io.load_image(tmp_path / "palette.png")
  np.testing.assert_array_equal(image, np.asarray(Image.open(tmp_path / "palette.png")
                                                  .convert("RGB")))
  palette = Image.new("P", (2, 1))
  palette.putpalette([200, 0, 0, 0, 0, 200])
  palette.putpixel((1, 0), 1)
  palette.save(tmp_path / "transparent.png", transparency=1)
  image = image_io.load_image(tmp_path / "transparent.png")
  np.testing.assert_array_equal(image[0], [[200, 0, 0], [255, 255, 255]])


def test_16_bit_png_is_scaled_to_8_bit(tmp_path):
  grey16 = (np.arange(6 * 8).reshape(6, 8) * 1000).astype(np.uint16)
  Image.fromarray(grey16).save(tmp_path / "grey16.png")
  image = image_io.load_image(tmp_path / "grey16.png")
  np.testing.assert_array_equal(image[..., 0], np.round(grey16 / 257).astype(np.uint8))
  rgb16 = _pixels().astype(np.uint16) * 257
  _write_png_rgb16(tmp_path / "rgb16.png", rgb16)
  np.testing.assert_array_equal(image_io.load_image(tmp_path / "rgb16.png"), rgb16 // 257)


def test_cmyk_jpeg_becomes_rgb(tmp_path):
  Image.new("CMYK", (8, 6), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
  image = image_io.load_image(tmp_path / "cmyk.jpg")
  assert image.shape == (6, 8, 3)
  red, green, blue = image[3, 4].astype(int)
  assert red > 200 and green < 60 and blue < 60  # no cyan, full magenta + yellow = red


def test_exif_orientation_is_applied(tmp_path):
  stored = np.zeros((10, 20, 3), np.uint8)
  stored[0, 0] = 255  # top-left as stored
  exif = Image.Exif()
  exif[0x0112] = 6    # "rotate 90 clockwise to display"
  Image.fromarray(stored).save(tmp_path / "rotated.jpg", exif=exif, quality=100)
  image = image_io.load_image(tmp_path / "rotated.jpg")
  assert image.shape == (20, 10, 3)
  assert image[0, -1].mean() > 128  # stored top-left is now top-right


@pytest.mark.parametrize("kind", ["truncated_png", "truncated_jpeg", "text", "missing",
                                  "folder", "empty"])
def test_bad_files_raise_one_line_naming_the_file(tmp_path, kind):
  path = tmp_path / f"bad_{kind}.png"
  if kind.startswith("truncated"):
    fmt = "PNG" if kind.endswith("png") else "JPEG"
    Image.fromarray(_pixels(64, 64)).save(path, format=fmt)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
  elif kind == "text":
    path.write_text("not an image\nat all\n")
  elif kind == "folder":
    path.mkdir()
  elif kind == "empty":
    path.write_bytes(b"")
  with pytest.raises(ImageReadError) as caught:
    image_io.load_image(path)
  message = str(caught.value)
  assert str(path) in message and "\n" not in message


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".webp", ".jpg"])
def test_save_load_round_trip(tmp_path, suffix):
  lossy = suffix in (".jpg", ".webp")
  if lossy:  # a smooth image: lossy codecs keep it close
    rows, cols = np.mgrid[0:16, 0:12]
    image = np.stack([rows * 12, cols * 16, 128 + 0 * rows], axis=-1).astype(np.uint8)
  else:
    image = _pixels(16, 12)
  path = tmp_path / "deep" / "folder" / f"image{suffix}"
  image_io.save_image(path, image)
  loaded = image_io.load_image(path)
  assert loaded.shape == image.shape and loaded.dtype == np.uint8
  if lossy:
    assert np.abs(loaded.astype(int) - image).mean() < 4
  else:
    np.testing.assert_array_equal(loaded, image)


def test_save_takes_float_images_clipped(tmp_path):
  image = np.array([[[-0.5, 0.5, 1.5]]], np.float32)
  image_io.save_image(tmp_path / "f.png", image)
  np.testing.assert_array_equal(image_io.load_image(tmp_path / "f.png"), [[[0, 128, 255]]])


def test_save_is_atomic(tmp_path, monkeypatch):
  path = tmp_path / "image.png"
  image_io.save_image(path, _pixels())
  assert [p.name for p in tmp_path.iterdir()] == ["image.png"]  # no temporary left

  def broken_save(self, fp, *args, **kwargs):
    fp.write(b"half")
    raise OSError("disk full")

  monkeypatch.setattr(Image.Image, "save", broken_save)
  with pytest.raises(OSError, match="disk full"):
    image_io.save_image(path, np.zeros((6, 8, 3), np.uint8))
  monkeypatch.undo()
  assert [p.name for p in tmp_path.iterdir()] == ["image.png"]
  np.testing.assert_array_equal(image_io.load_image(path), _pixels())  # old file intact


def test_save_rejects_unknown_suffix(tmp_path):
  with pytest.raises(DataError, match="image.xyz"):
    image_io.save_image(tmp_path / "image.xyz", _pixels())


def test_float_uint8_conversions():
  image = _pixels()
  as_float = images.to_float(image)
  assert as_float.dtype == np.float32 and 0 <= as_float.min() and as_float.max() <= 1
  np.testing.assert_array_equal(images.to_uint8(as_float), image)
  np.testing.assert_array_equal(images.to_uint8(np.array([-1, 0.5 / 255, 2.0])), [0, 0, 255])


def test_as_rgb_takes_any_one_image():
  rgb = _pixels()
  expected = images.to_float(rgb)
  for given in (rgb, expected, Image.fromarray(rgb), np.concatenate([rgb, rgb[..., :1]], -1)):
    converted = images.as_rgb(given)
    assert converted.dtype == np.float32
    np.testing.assert_array_equal(converted, expected)
  grey = _pixels()[..., 0]
  for given in (grey, grey[..., None], Image.fromarray(grey)):
    np.testing.assert_array_equal(images.as_rgb(given), np.repeat(
        images.to_float(grey)[..., None], 3, axis=-1))
  with pytest.raises(ValueError, match="got shape"):
    images.as_rgb(np.zeros((4, 4, 2)))


def test_list_images_is_recursive_sorted_and_by_extension(tmp_path):
  for name in ["b/z.PNG", "a.jpg", "b/c/y.JpEg", "d.webp", "e.bmp"]:
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    image_io.save_image(tmp_path / name.lower(), _pixels())
    (tmp_path / name.lower()).rename(tmp_path / name)
  (tmp_path / "notes.txt").write_text("x")
  (tmp_path / "._a.jpg").write_bytes(b"AppleDouble")  # macOS metadata, not an image
  (tmp_path / ".hidden").mkdir()
  image_io.save_image(tmp_path / ".hidden" / "h.png", _pixels())
  found = [p.relative_to(tmp_path).as_posix() for p in image_io.list_images(tmp_path)]
  assert found == ["a.jpg", "b/c/y.JpEg", "b/z.PNG", "d.webp", "e.bmp"]


def test_list_images_errors_name_the_folder(tmp_path):
  with pytest.raises(DataError, match="no such folder") as caught:
    image_io.list_images(tmp_path / "missing")
  assert str(tmp_path / "missing") in str(caught.value)
  (tmp_path / "empty").mkdir()
  (tmp_path / "empty" / "readme.txt").write_text("x")
  with pytest.raises(DataError, match=r"empty: no images \(\.jpg, \.jpeg, \.png"):
    image_io.list_images(tmp_path / "empty")


def test_tiff_in_8_and_16_bits_grey_and_rgb(tmp_path):
  import tifffile

  rgb = _pixels()
  Image.fromarray(rgb).save(tmp_path / "rgb8.tif")
  Image.fromarray(rgb[..., 1]).save(tmp_path / "grey8.tiff")
  Image.fromarray(rgb[..., 2].astype(np.uint16) * 257).save(tmp_path / "grey16.tif")
  tifffile.imwrite(tmp_path / "rgb16.tif", rgb.astype(np.uint16) * 257, photometric="rgb")
  assert Image.open(tmp_path / "grey16.tif").mode == "I;16"
  np.testing.assert_array_equal(image_io.load_image(tmp_path / "rgb8.tif"), rgb)
  np.testing.assert_array_equal(image_io.load_image(tmp_path / "rgb16.tif"), rgb)
  for name, channel in (("grey8.tiff", 1), ("grey16.tif", 2)):
    np.testing.assert_array_equal(image_io.load_image(tmp_path / name),
                                  np.repeat(rgb[..., channel:channel + 1], 3, axis=-1))


def test_float_tiff_is_scaled_with_one_warning_naming_it(tmp_path, caplog):
  import tifffile

  unit = _pixels()[..., 0].astype(np.float32) / 255  # [0, 1]: read as 0..255
  Image.fromarray(unit).save(tmp_path / "unit.tif")
  assert Image.open(tmp_path / "unit.tif").mode == "F"
  wide = np.linspace(-1.0, 3.0, 6 * 8 * 3, dtype=np.float32).reshape(6, 8, 3)
  tifffile.imwrite(tmp_path / "wide.tif", wide, photometric="rgb")  # PIL cannot read it
  with caplog.at_level("WARNING"):
    grey = image_io.load_image(tmp_path / "unit.tif")
    stretched = image_io.load_image(tmp_path / "wide.tif")
    image_io.load_image(tmp_path / "wide.tif")  # read again (a second epoch): no new line
  np.testing.assert_array_equal(grey[..., 0], _pixels()[..., 0])
  np.testing.assert_array_equal(stretched, np.round((wide + 1.0) * (255 / 4)).astype(np.uint8))
  assert caplog.messages == [f"{tmp_path / 'unit.tif'}: floating-point samples; read [0, 1] as "
                             "0..255",
                             f"{tmp_path / 'wide.tif'}: floating-point samples; stretched its "
                             "range [-1, 3] to 0..255"]


def test_gif_gives_its_first_frame(tmp_path):
  frames = [Image.fromarray(np.full((6, 8, 3), value, np.uint8)) for value in (40, 200)]
  frames[0].save(tmp_path / "animated.gif", save_all=True, append_images=frames[1:])
  assert Image.open(tmp_path / "animated.gif").n_frames == 2
  image = image_io.load_image(tmp_path / "animated.gif")
  assert image.shape == (6, 8, 3) and np.all(image == 40)


def test_list_images_names_the_image_files_it_cannot_read_in_one_warning(tmp_path, caplog):
  for name in ["a.tif", "b.TIFF", "c.gif", "d.png"]:
    image_io.save_image(tmp_path / name.lower(), _pixels())
    (tmp_path / name.lower()).rename(tmp_path / name)
  for name in ["phone.heic", "raw/camera.CR2", "layers.psd", "notes.txt", "d.png.json"]:
    (tmp_path / name).parent.mkdir(exist_ok=True)
    (tmp_path / name).write_bytes(b"not decoded")
  with caplog.at_level("WARNING"):
    found = [path.name for path in image_io.list_images(tmp_path)]
  assert found == ["a.tif", "b.TIFF", "c.gif", "d.png"]
  assert len(caplog.messages) == 1, caplog.messages
  assert caplog.messages[0].startswith(
      f"{tmp_path}: left out 3 files in image formats faceblur does not read (layers.psd, "
      "phone.heic, raw/camera.CR2); convert them to one of .jpg"), caplog.messages[0]

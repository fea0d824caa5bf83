"""Data: image files, sources, camera-shake blur, augmentation and the grain pipeline.

  image_io        decode/encode image files (HxWx3 uint8 RGB on disk <-> arrays)
  sources         random-access sources: ImageFolder, PairedFolder, CelebA (tfds), SkipBadRecords
  demo            the built-in demo faces (scikit-image) and kernel-blurred pairs
  blur_kernels    random camera-shake PSFs (Boracchi & Foi 2012) and blurring
  augment         per-example numpy crops, flips, resizes
  camera_blur     a simulated dim-light phone camera: the demo's real-blur domain
  input_pipeline  grain datasets: sharded, shuffled, batched, resumable by step
  tfds_pairs      paired folders packed as array_record tensorflow-datasets, and read back
  factory         sources from config specs, by kind

Submodules are imported on use: configs import `factory`, which must stay light.
"""

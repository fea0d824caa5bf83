"""Data: image files, sources, camera-shake blur, augmentation and the grain pipeline.

  image_io      decode/encode image files (HxWx3 uint8 RGB on disk <-> arrays)
  sources       random-access sources: ImageFolder, PairedFolder, CelebA (tfds), TfdsPairs
  demo          the built-in demo faces (scikit-image) and kernel-blurred pairs
  blur_kernels  random camera-shake PSFs (Boracchi & Foi 2012) and blurring
  augment       per-example numpy crops, flips, resizes
  pipeline      grain datasets: sharded, shuffled, batched, resumable by step
  tfds_pairs    packs a paired folder into an array_record tensorflow-datasets dataset
  factory       sources from config specs

Submodules are imported on use: configs import `factory`, which must stay light.
"""

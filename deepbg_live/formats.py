"""The file types deepbg-live reads as images: one set, for the runtime, training and benchmarks."""

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})

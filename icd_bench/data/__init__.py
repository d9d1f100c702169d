"""Dataset plugins. Each is registered in `icd_bench.registry.DATASETS` and follows `Dataset`."""

from icd_bench.data import coco, folder, piebench, prompts  # noqa: F401  (register the built-in datasets)
from icd_bench.data.base import Dataset, load_rgb_image

__all__ = ["Dataset", "load_rgb_image"]

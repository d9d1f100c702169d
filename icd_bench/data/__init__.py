"""Dataset plugins. Each is registered in `icd_bench.registry.DATASETS` and follows `Dataset`."""

from icd_bench.data import folder  # noqa: F401  (registers "folder")
from icd_bench.data.base import Dataset, load_rgb_image

__all__ = ["Dataset", "load_rgb_image"]

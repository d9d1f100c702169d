"""icd-bench: a benchmark and evaluation harness for fast text-guided image editing, built around
invertible Consistency Distillation (iCD)."""

__version__ = "0.1.0"

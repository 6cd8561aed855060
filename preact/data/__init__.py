"""Input pipelines for CIFAR-10/100, ImageNet (TFDS) and scikit-learn's digits.

`make_pipeline(config)` is the entry point; see preact.data.pipeline for the config fields.
"""

from preact.data.pipeline import DataError, InputPipeline, make_pipeline

__all__ = ["DataError", "InputPipeline", "make_pipeline"]

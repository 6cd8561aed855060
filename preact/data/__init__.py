"""Input pipelines for CIFAR-10/100, ImageNet (TFDS) and scikit-learn's digits.

`make_pipeline(config)` is the entry point; see preact.data.pipeline for the config fields.
"""

# The built-in datasets, each one module holding its reader and its registry entry: imported
# here so that the registry (preact.data.datasets) is complete wherever preact.data is.
from preact.data import cifar, digits, imagenet, mnist  # noqa: F401
from preact.data.pipeline import DataError, InputPipeline, make_pipeline

__all__ = ["DataError", "InputPipeline", "make_pipeline"]

"""Former name of :mod:`preact.experiment` (and :mod:`preact.data.datasets` for the dataset
facts), kept so that forks and scripts importing it keep working. New code imports those."""

from preact.data.datasets import DatasetInfo, dataset_info
from preact.experiment import BN_AXIS_NAME, bn_axis_name, build_model, validate

__all__ = ["BN_AXIS_NAME", "DatasetInfo", "bn_axis_name", "build_model", "dataset_info", "validate"]

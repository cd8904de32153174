"""Real data sets shipped with :mod:`mlgibbs`."""

from mlgibbs.datasets.radon import load_radon

__all__ = ["load_radon"]

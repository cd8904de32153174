"""Model front ends: formulas and arrays to a validated data pytree plus priors."""

from mlgibbs.models.data import GroupData, LinearData, sufficient_statistics
from mlgibbs.models.formula import parse_formula
from mlgibbs.models.model import Model, resolve_priors

__all__ = ["Model", "LinearData", "GroupData", "sufficient_statistics", "parse_formula", "resolve_priors"]

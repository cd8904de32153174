"""Real data sets shipped with :mod:`mlgibbs`."""

from mlgibbs.datasets.lme4 import (
    load_cbpp,
    load_contraception,
    load_dyestuff,
    load_grouseticks,
    load_insteval,
    load_pastes,
    load_penicillin,
    load_sleepstudy,
    load_verbagg,
)
from mlgibbs.datasets.radon import load_radon

__all__ = [
    "load_cbpp",
    "load_contraception",
    "load_dyestuff",
    "load_grouseticks",
    "load_insteval",
    "load_pastes",
    "load_penicillin",
    "load_radon",
    "load_sleepstudy",
    "load_verbagg",
]

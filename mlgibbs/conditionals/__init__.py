"""Full conditionals of the varying-intercept linear model, one pure update per block."""

from mlgibbs.conditionals.alpha import alpha_conditional, update_alpha
from mlgibbs.conditionals.beta import beta_conditional, update_beta
from mlgibbs.conditionals.gamma import gamma_conditional, update_gamma
from mlgibbs.conditionals.sigma_alpha import group_sum_of_squares, update_sigma_alpha
from mlgibbs.conditionals.sigma_y import residual_sum_of_squares, update_sigma_y
from mlgibbs.conditionals.slice import slice_sample
from mlgibbs.conditionals.variance import draw_variance

__all__ = [
    "update_alpha",
    "update_beta",
    "update_gamma",
    "update_sigma_y",
    "update_sigma_alpha",
    "alpha_conditional",
    "beta_conditional",
    "gamma_conditional",
    "residual_sum_of_squares",
    "group_sum_of_squares",
    "draw_variance",
    "slice_sample",
]

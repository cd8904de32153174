"""Command line: ``python -m mlgibbs COMMAND``.

Commands
--------
radon
    Fit the four Minnesota radon models of Gelman & Hill (2007, ch. 12-13) and print the multilevel
    posterior summary and a LOO comparison; then the nested all-states model (houses in counties in
    states) and how the variation splits between states, counties and houses; between the two, the
    logistic model of houses above the EPA action level (4 pCi/L); write ``radon_shrinkage.png``,
    ``radon_logistic.png``, ``radon_nested_shrinkage.png`` and six CSV files.
    See :mod:`mlgibbs.radon_job`.
"""

from __future__ import annotations

import argparse
import os
import sys


def _count(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m mlgibbs``."""
    parser = argparse.ArgumentParser(
        prog="python -m mlgibbs",
        description="mlgibbs: Gibbs samplers for multilevel regression in JAX. Choose a command.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    radon = commands.add_parser(
        "radon",
        help="fit the Minnesota radon models of Gelman & Hill (2007) and report",
        description=(
            "Fit four models of log radon in 919 Minnesota houses (85 counties) with mlgibbs.sample "
            "under Gelman & Hill's default priors (flat coefficients, uniform scales): complete "
            "pooling, no pooling, county indicators and the multilevel model "
            "log_radon ~ floor + log_uranium + (1 | county). Prints the multilevel posterior summary "
            "with R-hat and ESS and a PSIS-LOO comparison; then the nested model of every state, "
            "log_radon ~ floor + log_uranium + (1 | state/fips) (houses in counties in states), with the "
            "share of variance between states, counties and houses; between the two, the logistic model "
            "I(activity > 4) ~ floor + log_uranium + (1 | county) of houses above the EPA action level. "
            "Writes radon_shrinkage.png, radon_logistic.png, radon_nested_shrinkage.png, "
            "radon_multilevel_summary.csv, radon_loo_compare.csv, radon_logistic_summary.csv, "
            "radon_logistic_counties.csv, radon_nested_summary.csv and radon_nested_estimates.csv to --out."
        ),
    )
    radon.add_argument("--out", default=".", help="output folder, created if missing (default: .)")
    radon.add_argument("--num-chains", type=_count(1), default=4, help="chains (default: 4)")
    radon.add_argument("--num-warmup", type=_count(0), default=500,
                       help="warm-up sweeps discarded per chain (default: 500)")
    radon.add_argument("--num-draws", type=_count(1), default=1000,
                       help="draws kept per chain (default: 1000)")
    radon.add_argument("--sampler", default="gibbs", choices=["gibbs", "px", "collapsed"],
                       help="Gibbs sampler (default: gibbs, the five-step sampler of G&H ch. 18; "
                            "px and collapsed mix much faster, see the README's benchmarks)")
    radon.add_argument("--thin", type=_count(1), default=None,
                       help="sweeps per kept draw for the multilevel model, whose sigma_alpha mixes "
                            "slowly under plain Gibbs (default: 10 for gibbs, 1 for px and collapsed)")
    radon.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``python -m mlgibbs`` with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    if args.command == "radon":
        os.environ.setdefault("MPLBACKEND", "Agg")  # never open a window
        from mlgibbs import radon_job

        radon_job.run(args.out, num_chains=args.num_chains, num_warmup=args.num_warmup,
                      num_draws=args.num_draws, seed=args.seed,
                      sampler=args.sampler,
                      thin=(radon_job.DEFAULT_THIN if args.sampler == "gibbs" else 1)
                      if args.thin is None else args.thin)
        return 0
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover - argparse rejects first
    return 2


if __name__ == "__main__":
    sys.exit(main())

"""Command line: ``python -m minires check``."""
import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m minires", description="minires command line")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="gradient-check every op and print a table")
    check.add_argument("--seed", type=int, default=0, help="seed for the random inputs (default 0)")
    args = parser.parse_args(argv)

    if args.command == "check":
        from minires.check import run_checks

        return 0 if run_checks(seed=args.seed) else 1
    return 2


if __name__ == "__main__":
    sys.exit(main())

"""Command line: ``python -m minires {train,evaluate,prune,transfer,check,gradflow,compare,doctor}``.

With no arguments, ``python -m minires train`` trains the small MNIST ResNet on the
bundled MNIST sample, offline.

A mistake (a bad flag, a missing or broken file, an unusable device) is one line
``error: ...`` and exit status 2; a run whose loss diverges exits with 1. Set
``MINIRES_DEBUG=1`` to get the full traceback instead.
"""
import argparse
import os
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m minires", description="minires command line")
    commands = parser.add_subparsers(dest="command", required=True)

    from minires.experiments.command import add_gradflow_arguments
    from minires.experiments.compare import add_compare_arguments
    from minires.experiments.transfer import add_transfer_arguments
    from minires.prune.command import add_prune_arguments
    from minires.training.evaluate_command import add_evaluate_arguments
    from minires.training.train_command import add_train_arguments

    add_train_arguments(commands.add_parser("train", help="train a model (default: MNIST ResNet on the bundled sample)"))
    add_evaluate_arguments(commands.add_parser("evaluate", help="accuracy and per-class table of a checkpoint"))
    check = commands.add_parser("check", help="gradient-check every op and print a table")
    check.add_argument("--seed", type=int, default=0, help="seed for the random inputs (default 0)")
    add_gradflow_arguments(commands.add_parser(
        "gradflow", help="gradient-flow experiments: norms, degradation, identity, lesion, shortcuts"))
    add_compare_arguments(commands.add_parser(
        "compare", help="train several models with one recipe: parameters, MACs, step time, memory, accuracy"))
    add_prune_arguments(commands.add_parser(
        "prune", help="prune a trained model (magnitude or network slimming), fine-tune it, measure it"))
    add_transfer_arguments(commands.add_parser(
        "transfer", help="pretrain on some classes, fine-tune on others with 10%% of their images, vs from scratch"))
    commands.add_parser("doctor", help="what minires sees here (NumPy, BLAS, CuPy, GPUs) and whether our kernels compile")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)

    try:
        if args.command == "check":
            from minires.check import run_checks

            return 0 if run_checks(seed=args.seed) else 1
        if args.command == "train":
            from minires.training import train_command

            return train_command.run(args, argv)
        if args.command == "doctor":
            from minires.doctor import run_doctor

            return run_doctor()
        if args.command == "gradflow":
            from minires.experiments import command as gradflow_command

            return gradflow_command.run(args)
        if args.command == "prune":
            from minires.prune import command as prune_command

            return prune_command.run(args)
        if args.command == "transfer":
            from minires.experiments import transfer

            return transfer.run(args)
        if args.command == "compare":
            from minires.experiments import compare

            return compare.run(args)
        from minires.training import evaluate_command

        return evaluate_command.run(args)
    except (ValueError, OSError, RuntimeError) as err:
        # Bad input, and a run that diverged, get one clear line, not a traceback.
        if os.environ.get("MINIRES_DEBUG"):
            raise
        from minires.distributed import launcher_rank

        if launcher_rank() == 0:  # one of several processes that all fail alike (a bad flag): rank 0 says it
            print(f"error: {err}", file=sys.stderr)
        from minires.training.training_run import TrainingDiverged

        return 1 if isinstance(err, TrainingDiverged) else 2
    except KeyboardInterrupt:
        if os.environ.get("MINIRES_DEBUG"):
            raise
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""Command line: `python -m jitad demo` and `python -m jitad modes`."""
import argparse
import sys


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m jitad",
        description="jitad: automatic differentiation of plain NumPy code, compiled with Numba.")
    commands = parser.add_subparsers(dest="command", metavar="command")
    demo = commands.add_parser(
        "demo", help="run the lecture examples: AD result, closed form and their difference",
        description="Run the lecture examples and print each AD result beside its closed form and the "
                    "largest absolute difference. Exits with status 1 if any example disagrees.")
    demo.add_argument("--backend", choices=("numba", "reference"),
                      help="executor to use (default: jitad.config.backend)")
    commands.add_parser(
        "modes", add_help=False,
        help="time forward, reverse and mixed mode on Jacobians "
             "(`python -m jitad modes --help` for its options)")
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["modes"]:  # its options belong to the script, which parses them itself
        from . import modes_script
        return modes_script.main(argv[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        import jitad
        from . import demo
        if args.backend:
            jitad.config.backend = args.backend
        if hasattr(sys.stdout, "reconfigure"):
            sys.stdout.reconfigure(errors="replace")
        return demo.main()
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Command line: `python -m jitad demo`, `modes`, `profile-compile`, `coverage` and `cuda-check`."""
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
    demo.add_argument("--compile", choices=("background", "eager", "off"),
                      help="when kernels compile (default: jitad.config.compile, from $JITAD_COMPILE): in a "
                           "worker process while the NumPy executor answers, before the first result, or never")
    profile = commands.add_parser(
        "profile-compile", help="run a script compiling eagerly in a fresh cache and print where compile time goes",
        description="Run SCRIPT (as __main__, with its own arguments) with jitad.config.compile = 'eager' in a "
                    "fresh, empty disk cache, then print per compiled transform and in total the time spent in "
                    "jitad's phases (trace, AD transform, passes, fusion, codegen) and Numba's (IR passes, "
                    "inlining, type inference, lowering, LLVM), with graph and kernel sizes.")
    profile.add_argument("--cache", metavar="DIR",
                         help="use this disk cache instead of a fresh temporary one (a warm cache shows loads)")
    profile.add_argument("--keep-cache", action="store_true",
                         help="keep the fresh cache (its generated kernel sources) instead of removing it")
    profile.add_argument("--passes", type=int, default=5, metavar="N",
                         help="list the N slowest Numba compiler passes per transform (default 5; 0: none)")
    profile.add_argument("script", help="the Python script to run")
    profile.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the script")
    coverage = commands.add_parser(
        "coverage", help="print the table of NumPy/SciPy functions jitad differentiates (from its registry)",
        description="Print the Markdown table of every NumPy and SciPy function jitad runs and differentiates on "
                    "traced values, grouped by module, generated from its registry.")
    coverage.add_argument("--write", action="store_true",
                          help="write the table into README.md between its coverage markers")
    commands.add_parser(
        "cuda-check", add_help=False,
        help="run the primitive table and the benchmark programs on the cuda target (a GPU, else Numba's "
             "simulator) against the reference, with timings (`python -m jitad cuda-check --help`)")
    commands.add_parser(
        "modes", add_help=False,
        help="time forward, reverse and mixed mode on Jacobians "
             "(`python -m jitad modes --help` for its options)")
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["modes"]:  # its options belong to the script, which parses them itself
        from jitad.tools import modes
        return modes.main(argv[1:])
    if argv[:1] == ["cuda-check"]:
        from jitad.tools import cuda_check
        return cuda_check.main(argv[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        import jitad
        from jitad.tools import demo
        if args.backend:
            jitad.config.backend = args.backend
        if args.compile:
            jitad.config.compile = args.compile
        if hasattr(sys.stdout, "reconfigure"):
            sys.stdout.reconfigure(errors="replace")
        return demo.main()
    if args.command == "profile-compile":
        from jitad import profiling
        return profiling.run_script(args.script, args.args, cache=args.cache, passes=args.passes,
                                    keep=args.keep_cache)
    if args.command == "coverage":
        from jitad.tools import coverage
        return coverage.main(write=args.write)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())

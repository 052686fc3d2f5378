"""Forward vs reverse vs mixed vs auto Jacobians, timed side by side (the lecture's figure).

    python examples/jacobian_modes.py --quick --out /tmp/modes

Same as `python -m jitad modes`; see jitad/tools/modes.py for the options.
"""
import sys

from jitad.tools.modes import main

if __name__ == "__main__":
    sys.exit(main())

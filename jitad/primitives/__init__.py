"""All primitives. Each one is declared once, with all its rules, in one of these modules."""
from jitad.primitives.core import REGISTRY, Kind, Primitive  # noqa: F401
from jitad.primitives.structural import *  # noqa: F401,F403
from jitad.primitives.elementwise import *  # noqa: F401,F403
from jitad.primitives.linalg import *  # noqa: F401,F403
from jitad.primitives.special import *  # noqa: F401,F403
from jitad.primitives.ode import *  # noqa: F401,F403
from jitad.primitives.control import *  # noqa: F401,F403

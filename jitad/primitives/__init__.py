"""All primitives. Each one is declared once, with all its rules, in one of these modules."""
from .core import REGISTRY, Primitive, unbroadcast  # noqa: F401
from .elementwise import *  # noqa: F401,F403
from .structural import *  # noqa: F401,F403
from .linalg import *  # noqa: F401,F403
from .special import *  # noqa: F401,F403

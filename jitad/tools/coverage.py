"""The table of NumPy and SciPy functions jitad runs on traced values, generated from its registries.

`python -m jitad coverage` prints it; README.md holds the same table between the markers
`<!-- coverage:start -->` and `<!-- coverage:end -->` (`python -m jitad coverage --write` updates it,
and tests/test_numpy_extra.py fails when the two differ). Functions whose builder only raises a
teaching error (np.nonzero, np.allclose, ...) are left out: they do not run on traced values.

    >>> from jitad.tools import coverage
    >>> rows = coverage.rows()
    >>> "numpy" in rows and "sum" in rows["numpy"]
    True
"""
import pathlib
import re

import numpy as np

from jitad import frontend  # noqa: F401  (imports every builder module, so the registries are full)
from jitad.frontend import linalg_ops, numpy_ops, scipy_ops

START, END = "<!-- coverage:start -->", "<!-- coverage:end -->"
_NUMPY_NAMESPACES = ("numpy", "numpy.linalg", "numpy.fft")


def _raises_only(builder):
    """Builders that exist only to raise a clear error (a value-dependent shape, a Python bool)."""
    return getattr(builder, "raises_only", False)


def _public_name(obj):
    """(namespace, name) of a NumPy callable as users spell it, e.g. ("numpy.linalg", "inv")."""
    name = getattr(obj, "__name__", None)
    for namespace in _NUMPY_NAMESPACES:
        module = np
        for part in namespace.split(".")[1:]:
            module = getattr(module, part)
        if name is not None and getattr(module, name, None) is obj:
            return namespace, name
    return None


def rows():
    """{namespace: sorted names} of every function jitad runs (and differentiates) on traced values."""
    table = {}

    def add(namespace, name):
        table.setdefault(namespace, set()).add(name)

    for registry in (numpy_ops.FUNCTIONS, numpy_ops.UFUNCS):
        for fun, builder in registry.items():
            where = _public_name(fun)
            if where is not None and not _raises_only(builder):
                add(*where)
    for name in scipy_ops.SPECIAL_UFUNCS:
        add("scipy.special", name)
    for (module, name), builder in linalg_ops.SCIPY_FUNCTIONS.items():
        public = ".".join(p for p in module.split(".") if not p.startswith("_"))
        if (public == "scipy.stats" and "." in name) or _raises_only(builder):
            continue  # the distributions' methods are listed from scipy_ops' tables below
        if name.endswith(".__getitem__"):  # numpy's AxisConcatenator: the np.r_ and np.c_ objects
            add("numpy", "r_"), add("numpy", "c_")
        else:
            add(public, name)
    for dist in scipy_ops.CONTINUOUS:
        for method in ("logpdf", "pdf") + (tuple(scipy_ops.NORM_METHODS) + ("ppf", "isf") if dist == "norm" else ()) \
                + (tuple(scipy_ops.CUMULATIVE) if dist in scipy_ops.CDFS else ()) \
                + (("ppf", "isf") if dist in scipy_ops.QUANTILES else ()):
            add("scipy.stats", f"{dist}.{method}")
    for dist in scipy_ops.DISCRETE:
        for method in ("logpmf", "pmf") + (tuple(scipy_ops.CUMULATIVE) if dist in scipy_ops.DISCRETE_TAILS else ()):
            add("scipy.stats", f"{dist}.{method}")
    for dist in ("multivariate_normal", "dirichlet"):
        for method in ("logpdf", "pdf"):
            add("scipy.stats", f"{dist}.{method}")
    for method in ("logpmf", "pmf"):
        add("scipy.stats", f"multinomial.{method}")
    order = {name: k for k, name in enumerate(_NUMPY_NAMESPACES)}
    return {ns: sorted(table[ns]) for ns in sorted(table, key=lambda ns: (order.get(ns, len(order)), ns))}


def count():
    return sum(len(names) for names in rows().values())


def table():
    """The Markdown table: one row per module, its count and its functions."""
    lines = [f"{count()} NumPy and SciPy functions run on traced values, differentiable wherever they have a "
             "derivative (integer, boolean and sorting outputs carry none); any other function raises "
             "`UnsupportedOperationError`, and `jitad.custom_vjp` is the way out.", "",
             "| module | count | functions |", "|---|---|---|"]
    for namespace, names in rows().items():
        lines.append(f"| `{namespace}` | {len(names)} | {', '.join(f'`{n}`' for n in names)} |")
    return "\n".join(lines) + "\n"


def readme_path():
    return pathlib.Path(__file__).resolve().parents[2] / "README.md"


def readme_section(text):
    """The text between the coverage markers of README.md's text, or None without markers."""
    match = re.search(re.escape(START) + r"\n(.*?)" + re.escape(END), text, flags=re.S)
    return None if match is None else match.group(1)


def write_readme(path=None):
    """Replace the README's coverage section with the generated table; returns whether it changed."""
    path = pathlib.Path(path or readme_path())
    text = path.read_text()
    if readme_section(text) is None:
        raise ValueError(f"{path} has no {START} ... {END} section")
    new = re.sub(re.escape(START) + r"\n.*?" + re.escape(END), lambda _: f"{START}\n{table()}{END}", text, flags=re.S)
    if new != text:
        path.write_text(new)
    return new != text


def main(write=False):
    if write:
        print("README.md updated" if write_readme() else "README.md already up to date")
    else:
        print(table(), end="")
    return 0

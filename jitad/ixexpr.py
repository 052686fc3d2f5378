"""Index expressions for generated code: integer arithmetic that composes correctly.

An `Ix` is the source text of an integer expression (a loop index, a size read from an
array, a literal, or arithmetic on those). It is a `str`, so it can be joined and
formatted into code, but `+ - * // %` on it build a new expression that carries its
precedence and puts parentheses where Python needs them: composing index maps
(a slice of a diagonal embedding of a reshape...) never pastes text ambiguously.
"""
import re

_ATOM = re.compile(r"^[A-Za-z_][\w.]*(\[[^\[\]]*\])*$")
_INT = re.compile(r"^-?\d+$")

# precedence levels: larger binds tighter
_ADD, _MUL, _UNARY, _ATOMIC = 1, 2, 3, 4
_LEVEL = {"+": _ADD, "-": _ADD, "*": _MUL, "//": _MUL, "%": _MUL}


def _wrapped(text):
    """Whether `text` is one parenthesised group: "(a + b)" but not "(a) + (b)"."""
    if not (text.startswith("(") and text.endswith(")")):
        return False
    depth = 0
    for k, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0 and k < len(text) - 1:
            return False
    return True


class Ix(str):
    """Code of an integer index expression; arithmetic on it is parenthesised by precedence."""

    prec = _ATOMIC

    @staticmethod
    def of(value):
        """An index expression from an int, an `Ix`, or a code string (wrapped if not atomic)."""
        if isinstance(value, Ix):
            return value
        if isinstance(value, int):
            return _Literal(value)
        text = str(value).strip()
        if _INT.match(text):
            return _Literal(int(text))
        if _ATOM.match(text) or _wrapped(text):
            return Ix(text)
        return Ix(f"({text})")

    @property
    def literal(self):
        return None

    def _binary(self, op, other, swap=False):
        a, b = (Ix.of(other), self) if swap else (self, Ix.of(other))
        if a.literal is not None and b.literal is not None:
            x, y = a.literal, b.literal
            if op == "+":
                return _Literal(x + y)
            if op == "-":
                return _Literal(x - y)
            if op == "*":
                return _Literal(x * y)
            if op == "//" and y:
                return _Literal(x // y)
            if op == "%" and y:
                return _Literal(x % y)
        if op in "+-" and b.literal == 0:
            return a
        if op == "+" and a.literal == 0:
            return b
        if op in ("*", "//") and b.literal == 1:
            return a
        if op == "*" and a.literal == 1:
            return b
        if op == "*" and 0 in (a.literal, b.literal):
            return _Literal(0)
        level = _LEVEL[op]
        left = a if a.prec >= level else f"({a})"
        right = b if b.prec > level else f"({b})"
        return _Compound(f"{left} {op} {right}", level)

    def __add__(self, other):
        return self._binary("+", other)

    def __radd__(self, other):
        return self._binary("+", other, swap=True)

    def __sub__(self, other):
        return self._binary("-", other)

    def __rsub__(self, other):
        return self._binary("-", other, swap=True)

    def __mul__(self, other):
        return self._binary("*", other)

    def __rmul__(self, other):
        return self._binary("*", other, swap=True)

    def __floordiv__(self, other):
        return self._binary("//", other)

    def __rfloordiv__(self, other):
        return self._binary("//", other, swap=True)

    def __mod__(self, other):
        return self._binary("%", other)

    def __rmod__(self, other):
        return self._binary("%", other, swap=True)


class _Literal(Ix):
    def __new__(cls, value):
        self = super().__new__(cls, str(int(value)))
        self.value = int(value)
        return self

    @property
    def prec(self):
        return _UNARY if self.value < 0 else _ATOMIC

    @property
    def literal(self):
        return self.value


class _Compound(Ix):
    def __new__(cls, text, level):
        self = super().__new__(cls, text)
        self.level = level
        return self

    @property
    def prec(self):
        return self.level


def index_tuple(codes):
    """A tuple of `Ix` from ints, code strings or `Ix`."""
    return tuple(Ix.of(c) for c in codes)


__all__ = ["Ix", "index_tuple"]

"""R-style model formulas for moderators: R's ``model.matrix``, as metafor names it.

:func:`model_matrix` turns a one-sided formula such as ``"~ ablat * alloc"`` and a
data frame into the design matrix R's ``model.matrix`` builds, with the column names
R prints (``intrcpt``, as metafor renames the intercept, ``ablat:allocrandom``,
``factor(type)p``, ``I(weeks - 10)``), R's term labels and ``assign`` groups, and
what it takes to code new rows in the same way (for predictions).

The work is split in three:

- the Wilkinson-formula algebra (``+ - * / : ^``, parentheses, ``0``/``1``/``-1``
  for the intercept) is formulaic's parser, run on a skeleton of the formula in
  which every variable expression stands as a placeholder name;
- each variable expression (``ablat``, ``I(year - 1950)``,
  ``relevel(factor(g), ref = "b")``) is read by a small parser of R's expression
  syntax, with R's operator precedence, evaluated on the data with R's semantics
  and named by R's ``deparse``;
- the coding of the terms (R's ordering of terms, treatment contrasts or
  indicators for each factor in each term, column order) follows R's ``terms`` and
  ``model.matrix`` (Chambers & Hastie, 1992, p. 38), written here.

Redundant columns are kept, as ``model.matrix`` keeps them;
:func:`redundant_columns` finds the ones R's ``lm`` (and so metafor) would drop.
"""

from __future__ import annotations

import math
import re
import unicodedata
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

import attrs
import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import special as spc

from alliance_meta.exceptions import (
    InvalidStudyError,
    ModelSpecificationError,
    NumericTextWarning,
)
from alliance_meta.results.base import freeze_arrays

__all__ = [
    "FormulaDesign",
    "VariableCoding",
    "formula_names",
    "model_matrix",
    "r_collation_key",
    "r_number_string",
    "redundant_columns",
]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]
ObjArray = npt.NDArray[np.object_]

#: metafor's name of the intercept column (R's ``model.matrix`` calls it "(Intercept)").
INTERCEPT = "intrcpt"


# ===========================================================================
# R's text forms: numbers (as.character / deparse) and string collation (sort)
# ===========================================================================


def r_number_string(x: float, *, integer: bool = False) -> str:
    """The text R gives a number: ``as.character(x)``, and ``deparse`` of a constant.

    Parameters
    ----------
    x : float
        The number.
    integer : bool
        Whether it is an R integer (printed in full: ``as.character(100000L)`` is
        ``"100000"``, while the double ``1e5`` gives ``"1e+05"``).

    Returns
    -------
    str

    Notes
    -----
    R rounds to 15 significant digits, drops trailing zeros, and writes the number
    in fixed notation unless scientific notation is shorter (R's ``formatReal``
    with ``scipen = 0``): ``0.1 + 0.2`` gives ``"0.3"``, ``1e-4`` gives ``"1e-04"``,
    ``123456`` gives ``"123456"``.  These are the labels of the levels of
    ``factor(x)`` for a numeric ``x``.
    """
    if integer:
        return str(int(x))
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Inf" if x > 0 else "-Inf"
    if x == 0:
        return "0"
    mantissa, _, exponent = f"{x:.14e}".partition("e")
    e10 = int(exponent)
    digits = mantissa.lstrip("-").replace(".", "").rstrip("0") or "0"
    nsig = len(digits)
    neg = 1 if x < 0 else 0
    if e10 >= 0:
        rgt = max(0, nsig - e10 - 1)
        fixed_width = neg + e10 + 1 + (rgt + 1 if rgt else 0)
    else:
        rgt = nsig - e10 - 1
        fixed_width = neg + 2 + rgt
    sci_width = neg + (nsig + 1 if nsig > 1 else 1) + (5 if abs(e10) >= 100 else 4)
    if fixed_width <= sci_width:
        return f"{x:.{rgt}f}"
    mant = digits[0] + ("." + digits[1:] if nsig > 1 else "")
    return f"{'-' if neg else ''}{mant}e{'-' if e10 < 0 else '+'}{abs(e10):02d}"


#: ASCII punctuation and symbols in the order of ICU's root collation (as R 4.2.2
#: with ICU sorts them): they come after white space and before digits and letters.
_PUNCT_ORDER = "_-,;:!?.'\"()[]{}@*/\\&#%`^+<=>|~$"
_PUNCT_RANK = {c: i for i, c in enumerate(_PUNCT_ORDER)}

#: letters that the Unicode collation expands or marks without a canonical
#: decomposition: (base letters, tertiary weight of a lower-case letter); each also
#: carries a secondary mark after its first base letter (so ``"AE" < "æ"``)
_SPECIAL_LETTERS: dict[str, tuple[str, int]] = {
    "ß": ("ss", 1), "æ": ("ae", 0), "Æ": ("AE", 0), "œ": ("oe", 0), "Œ": ("OE", 0),
    "ø": ("o", 0), "Ø": ("O", 0), "đ": ("d", 0), "Đ": ("D", 0), "ł": ("l", 0),
    "Ł": ("L", 0),
}  # fmt: skip
_SPECIAL_MARK = 500

#: secondary weights of the common combining accents, in the order of the Unicode
#: Collation Algorithm's default table (acute < grave < breve < circumflex < caron
#: < ring < diaeresis < double acute < tilde < dot above < cedilla < ogonek <
#: macron); other marks follow by code point
_ACCENT_ORDER = (0x301, 0x300, 0x306, 0x302, 0x30C, 0x30A, 0x308, 0x30B, 0x303, 0x307,
                 0x327, 0x328, 0x304)  # fmt: skip
_ACCENT_WEIGHT = {m: i + 1 for i, m in enumerate(_ACCENT_ORDER)}


def _primary(ch: str) -> tuple[int, int]:
    if ch.isspace():
        return (0, ord(ch))
    if ch in _PUNCT_RANK:
        return (1, _PUNCT_RANK[ch])
    if ch.isdigit():
        return (2, unicodedata.digit(ch, 0))
    if ch.isalpha():
        return (3, ord(ch.lower()))
    return (1, 1000 + ord(ch))


def r_collation_key(s: str) -> tuple[Any, ...]:
    """Sort key giving the order of R's ``sort()`` and ``factor()`` levels for strings.

    Parameters
    ----------
    s : str

    Returns
    -------
    tuple
        Compare keys with ``<``; equal keys only for equal strings.

    Notes
    -----
    R sorts character vectors with the collation of the locale.  R 4.2 built with
    ICU (as on Debian and Ubuntu) uses ICU's root collation in a ``C.UTF-8`` locale
    (``icuGetCollate()`` is ``"root"``), and ICU's English tailoring, which orders
    Latin text alike, in ``en_US.UTF-8``: it is *not* the code-point order of
    Python's ``sorted`` (``"b" < "C"`` in R, ``"C" < "b"`` in Python).  This key is
    the three-level comparison of the Unicode Collation Algorithm as ICU's root
    applies it: first the base characters, case and accents ignored (white space
    < punctuation and symbols < digits < letters; punctuation is not ignored,
    control and format characters are); then the accents; then the case, lower
    before upper, with compatibility forms (``ﬁ``, ``²``) in between.  So
    ``"a" < "A" < "ä" < "b" < "B"`` and ``"a1" < "A1" < "a10" < "a2"``.  Letters of
    other scripts compare by code point after the Latin ones; ``ß``, ``æ``, ``œ``,
    ``ø``, ``đ`` and ``ł`` are expanded and marked as ICU does.  The order of the
    rarer accents and symbols is approximate.  R in the plain ``C`` locale (and R
    without ICU on some systems) sorts by code point instead; this key follows ICU.
    """
    prim: list[tuple[int, int]] = []
    sec: list[int] = []
    ter: list[int] = []
    for ch in s:
        if ch in _SPECIAL_LETTERS:
            base, tert = _SPECIAL_LETTERS[ch]
            for i, b in enumerate(base):
                prim.append(_primary(b))
                sec.append(0)
                ter.append(2 if b.isupper() else tert)
                if i == 0:
                    sec.append(_SPECIAL_MARK)
                    ter.append(0)
            continue
        decomposed = unicodedata.normalize("NFKD", ch)
        compat = decomposed != unicodedata.normalize("NFD", ch)
        for c in decomposed:
            if unicodedata.combining(c):
                sec.append(_ACCENT_WEIGHT.get(ord(c), 100 + ord(c)))
                ter.append(0)
            elif not c.isspace() and unicodedata.category(c) in ("Cc", "Cf"):
                continue  # ignorable
            else:
                prim.append(_primary(c))
                sec.append(0)
                ter.append(2 if c.isupper() else (1 if compat else 0))
    return (tuple(prim), tuple(sec), tuple(ter), s)


def _sorted_levels(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(sorted(set(values), key=r_collation_key))


# ===========================================================================
# R expressions: lexer, parser (R's precedence) and deparser
# ===========================================================================

_RESERVED = frozenset(
    "if else repeat while function for next break TRUE FALSE NULL Inf NaN NA "
    "NA_integer_ NA_real_ NA_character_ in".split()
)


#: reserved words that are constants (deparsed as they are)
_CONSTANTS = frozenset({"TRUE", "FALSE", "NULL", "NA", "Inf", "NaN"})


def _is_syntactic(name: str) -> bool:
    """R's syntactic names (``make.names``): no backticks needed."""
    if not name or name in _RESERVED:
        return False
    first = name[0]
    if not (first.isalpha() or first == "."):
        return False
    if first == "." and len(name) > 1 and name[1].isdigit():
        return False
    return all(c.isalnum() or c in "._" for c in name)


def _quote_name(name: str) -> str:
    if _is_syntactic(name):
        return name
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


@dataclass(frozen=True)
class _Tok:
    kind: Literal["num", "str", "name", "op", "(", ")", ",", "eof"]
    text: str
    start: int
    end: int
    value: Any = None


_OPERATORS = (
    "<<-", "->>", "%/%", "%%", "<=", ">=", "==", "!=", "&&", "||", "<-", "->", "::", "|>",
    "+", "-", "*", "/", "^", "<", ">", "!", "&", "|", "~", "?", ":", "=", "$", "@",
    "[", "]", "{", "}",
)  # fmt: skip

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", '"': '"', "'": "'",
            "`": "`", "a": "\a", "b": "\b", "f": "\f", "v": "\v"}  # fmt: skip


def _error_at(text: str, pos: int, message: str) -> ModelSpecificationError:
    return ModelSpecificationError(f"{message} at position {pos} of {text!r}")


def _lex(text: str) -> list[_Tok]:
    """Tokens of an R expression (numbers, strings, names, operators)."""
    toks: list[_Tok] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        start = i
        if c.isdigit() or (c == "." and i + 1 < n and text[i + 1].isdigit()):
            if text.startswith(("0x", "0X"), i):
                j = i + 2
                while j < n and text[j] in "0123456789abcdefABCDEF":
                    j += 1
                value: float = float(int(text[i + 2 : j], 16))
            else:
                j = i
                while j < n and (text[j].isdigit() or text[j] == "."):
                    j += 1
                if j < n and text[j] in "eE":
                    k = j + 1
                    if k < n and text[k] in "+-":
                        k += 1
                    if k < n and text[k].isdigit():
                        j = k
                        while j < n and text[j].isdigit():
                            j += 1
                try:
                    value = float(text[i:j])
                except ValueError:
                    raise _error_at(text, i, "malformed number") from None
            is_int = j < n and text[j] == "L"
            if is_int:
                if value != int(value):
                    raise _error_at(text, i, "an integer constant must be a whole number")
                j += 1
            toks.append(_Tok("num", text[start:j], start, j, (value, is_int)))
            i = j
            continue
        if c in "\"'`":
            j = i + 1
            chars: list[str] = []
            while j < n and text[j] != c:
                if text[j] == "\\" and j + 1 < n:
                    esc = text[j + 1]
                    if esc not in _ESCAPES:
                        raise _error_at(text, j, f"unsupported escape '\\{esc}'")
                    chars.append(_ESCAPES[esc])
                    j += 2
                else:
                    chars.append(text[j])
                    j += 1
            if j >= n:
                raise _error_at(text, i, f"unterminated {c}")
            kind: Literal["name", "str"] = "name" if c == "`" else "str"
            toks.append(_Tok(kind, text[start : j + 1], start, j + 1, "".join(chars)))
            i = j + 1
            continue
        if c.isalpha() or c == ".":
            j = i
            while j < n and (text[j].isalnum() or text[j] in "._"):
                j += 1
            toks.append(_Tok("name", text[i:j], i, j, text[i:j]))
            i = j
            continue
        if c in "(),":
            toks.append(_Tok(c, c, i, i + 1))  # type: ignore[arg-type]
            i += 1
            continue
        if c == "%":
            j = text.find("%", i + 1)
            if j < 0:
                raise _error_at(text, i, "unterminated %operator%")
            toks.append(_Tok("op", text[i : j + 1], i, j + 1))
            i = j + 1
            continue
        for op in _OPERATORS:
            if text.startswith(op, i):
                toks.append(_Tok("op", op, i, i + len(op)))
                i += len(op)
                break
        else:
            raise _error_at(text, i, f"unexpected character {c!r}")
    toks.append(_Tok("eof", "", n, n))
    return toks


# --- the syntax tree --------------------------------------------------------


@dataclass(frozen=True)
class _Num:
    value: float
    integer: bool


@dataclass(frozen=True)
class _Str:
    value: str


@dataclass(frozen=True)
class _Name:
    name: str


@dataclass(frozen=True)
class _Call:
    fn: str
    args: tuple[tuple[str | None, _Node], ...]


@dataclass(frozen=True)
class _Unary:
    op: str
    operand: _Node


@dataclass(frozen=True)
class _Binary:
    op: str
    left: _Node
    right: _Node


@dataclass(frozen=True)
class _Paren:
    inner: _Node


_Node: TypeAlias = "_Num | _Str | _Name | _Call | _Unary | _Binary | _Paren"

#: binary operators: (left binding power, right binding power), R's ?Syntax order
_BINARY_BP: dict[str, tuple[int, int]] = {
    "||": (10, 11), "|": (10, 11), "&&": (12, 13), "&": (12, 13),
    "==": (16, 17), "!=": (16, 17), "<": (16, 17), ">": (16, 17), "<=": (16, 17),
    ">=": (16, 17), "+": (18, 19), "-": (18, 19), "*": (20, 21), "/": (20, 21),
    ":": (24, 25), "^": (29, 28),
}  # fmt: skip
_SPECIAL_BP = (22, 23)  # %%, %/%, %in% and every %op%
_NOT_BP = 14  # unary !: looser than comparisons (``!x == y`` is ``!(x == y)``)
_UNARY_MINUS_BP = 26  # unary + and -: tighter than ':', looser than '^'

#: deparsed without spaces around the operator (R's PP_BINARY2)
_TIGHT_OPS = frozenset({"/", "^", ":", "%%", "%/%"})


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _lex(text)
        self.i = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def next(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, kind: str) -> _Tok:
        tok = self.next()
        if tok.kind != kind:
            raise _error_at(self.text, tok.start, f"expected {kind!r}, found {tok.text!r}")
        return tok

    def parse(self) -> _Node:
        node = self.expr(0)
        tok = self.peek()
        if tok.kind != "eof":
            raise _error_at(self.text, tok.start, f"unexpected {tok.text!r}")
        return node

    def expr(self, min_bp: int) -> _Node:
        left = self.prefix()
        while True:
            tok = self.peek()
            if tok.kind != "op":
                return left
            op = tok.text
            if op.startswith("%"):
                lbp, rbp = _SPECIAL_BP
            elif op in _BINARY_BP:
                lbp, rbp = _BINARY_BP[op]
            else:
                raise _error_at(self.text, tok.start, f"the operator {op!r} is not supported")
            if lbp < min_bp:
                return left
            self.next()
            right = self.expr(rbp)
            left = _Binary(op, left, right)

    def prefix(self) -> _Node:
        tok = self.next()
        if tok.kind == "num":
            value, is_int = tok.value
            return _Num(float(value), bool(is_int))
        if tok.kind == "str":
            return _Str(str(tok.value))
        if tok.kind == "name":
            if self.peek().kind == "(":
                return self.call(str(tok.value))
            return _Name(str(tok.value))
        if tok.kind == "(":
            inner = self.expr(0)
            self.expect(")")
            return _Paren(inner)
        if tok.kind == "op" and tok.text in ("-", "+"):
            return _Unary(tok.text, self.expr(_UNARY_MINUS_BP))
        if tok.kind == "op" and tok.text == "!":
            return _Unary("!", self.expr(_NOT_BP))
        what = "end of text" if tok.kind == "eof" else repr(tok.text)
        raise _error_at(self.text, tok.start, f"unexpected {what}")

    def call(self, fn: str) -> _Call:
        self.expect("(")
        args: list[tuple[str | None, _Node]] = []
        if self.peek().kind == ")":
            self.next()
            return _Call(fn, ())
        while True:
            name: str | None = None
            tok = self.peek()
            after = self.toks[self.i + 1]
            if tok.kind in ("name", "str") and after.kind == "op" and after.text == "=":
                name = str(tok.value)
                self.i += 2
            args.append((name, self.expr(0)))
            tok = self.next()
            if tok.kind == ")":
                return _Call(fn, tuple(args))
            if tok.kind != ",":
                raise _error_at(self.text, tok.start, f"expected ',' or ')', found {tok.text!r}")


def _parse_expression(text: str) -> _Node:
    return _Parser(text).parse()


def _deparse_string(s: str) -> str:
    out = []
    for c in s:
        if c == "\\":
            out.append("\\\\")
        elif c == '"':
            out.append('\\"')
        elif c == "\n":
            out.append("\\n")
        elif c == "\t":
            out.append("\\t")
        elif c == "\r":
            out.append("\\r")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def _deparse(node: _Node) -> str:
    """R's ``deparse(expr, backtick = TRUE)`` of a parsed expression."""
    if isinstance(node, _Num):
        if node.integer:
            return f"{int(node.value)}L"
        return r_number_string(node.value)
    if isinstance(node, _Str):
        return _deparse_string(node.value)
    if isinstance(node, _Name):
        return node.name if node.name in _CONSTANTS else _quote_name(node.name)
    if isinstance(node, _Paren):
        return "(" + _deparse(node.inner) + ")"
    if isinstance(node, _Unary):
        return node.op + _deparse(node.operand)
    if isinstance(node, _Binary):
        sep = node.op if node.op in _TIGHT_OPS else f" {node.op} "
        return _deparse(node.left) + sep + _deparse(node.right)
    args = ", ".join(
        (f"{_quote_name(name)} = " if name is not None else "") + _deparse(arg)
        for name, arg in node.args
    )
    return f"{_quote_name(node.fn)}({args})"


# ===========================================================================
# Values with R's types, and the evaluation of variable expressions
# ===========================================================================


@dataclass(frozen=True)
class _NumV:
    values: FloatArray
    integer: bool = False


@dataclass(frozen=True)
class _LglV:
    values: BoolArray


@dataclass(frozen=True)
class _ChrV:
    values: ObjArray


@dataclass(frozen=True)
class _FacV:
    codes: IntArray  # 0-based; -1 is NA
    levels: tuple[str, ...]


_Value: TypeAlias = "_NumV | _LglV | _ChrV | _FacV"


def _type_name(v: _Value) -> str:
    return {_NumV: "numeric", _LglV: "logical", _ChrV: "character", _FacV: "factor"}[type(v)]


def _labels(v: _Value) -> ObjArray:
    """``as.character(v)``."""
    if isinstance(v, _ChrV):
        return v.values
    if isinstance(v, _FacV):
        lv = np.array((*v.levels, None), dtype=object)
        out: ObjArray = lv[v.codes]
        return out
    if isinstance(v, _LglV):
        return np.where(v.values, "TRUE", "FALSE").astype(object)
    return np.array([r_number_string(float(x), integer=v.integer) for x in v.values],
                    dtype=object)


def _as_number(v: _Value, what: str) -> _NumV:
    if isinstance(v, _NumV):
        return v
    if isinstance(v, _LglV):
        return _NumV(v.values.astype(np.float64), integer=True)
    raise ModelSpecificationError(
        f"{what}: a {_type_name(v)} value where R needs a number (R: 'non-numeric argument')"
    )


def _as_logical(v: _Value, what: str) -> BoolArray:
    if isinstance(v, _LglV):
        return v.values
    if isinstance(v, _NumV):
        out: BoolArray = v.values != 0
        return out
    raise ModelSpecificationError(
        f"{what}: a {_type_name(v)} value where R needs TRUE/FALSE"
    )


@dataclass
class _Columns:
    """The data, converted column by column (on first use) to R values."""

    k: int
    rows: tuple[str, ...]
    get: Callable[[str], _Value | None]
    cache: dict[str, _Value | None] = field(default_factory=dict)

    def column(self, name: str) -> _Value | None:
        if name not in self.cache:
            self.cache[name] = self.get(name)
        return self.cache[name]


@dataclass
class _Evaluator:
    data: _Columns
    text: str
    #: per ``scale()`` call (by its deparse): the centre and scale of the fit data
    state: dict[str, tuple[float, float]]
    fitting: bool

    def error(self, message: str) -> ModelSpecificationError:
        return ModelSpecificationError(f"{self.text}: {message}")

    def size_check(self, *vals: _Value) -> None:
        sizes = {_size(v) for v in vals} - {1}
        if len(sizes) > 1:
            raise self.error(f"arguments of lengths {sorted(sizes)} (R recycles; not supported)")

    def eval(self, node: _Node) -> _Value:
        if isinstance(node, _Num):
            return _NumV(np.array([node.value]), node.integer)
        if isinstance(node, _Str):
            return _ChrV(np.array([node.value], dtype=object))
        if isinstance(node, _Name):
            return self.name(node.name)
        if isinstance(node, _Paren):
            return self.eval(node.inner)
        if isinstance(node, _Unary):
            return self.unary(node)
        if isinstance(node, _Binary):
            return self.binary(node)
        return self.call(node)

    def name(self, name: str) -> _Value:
        if name in ("TRUE", "FALSE"):  # reserved words: never a column
            return _LglV(np.array([name == "TRUE"]))
        col = self.data.column(name)
        if col is not None:
            return col
        constants: dict[str, _Value] = {
            "T": _LglV(np.array([True])), "F": _LglV(np.array([False])),
            "pi": _NumV(np.array([math.pi])),
        }  # fmt: skip
        if name in constants:
            return constants[name]
        raise InvalidStudyError(
            f"the formula uses {name!r}, which is not a column of the data", field=name
        )

    def unary(self, node: _Unary) -> _Value:
        v = self.eval(node.operand)
        if node.op == "!":
            return _LglV(~_as_logical(v, self.text))
        num = _as_number(v, self.text)
        return _NumV(-num.values if node.op == "-" else num.values, num.integer)

    def binary(self, node: _Binary) -> _Value:
        op = node.op
        if op in ("&&", "||"):
            raise self.error(f"'{op}' needs single values in R >= 4.2; use '{op[0]}'")
        if op == ":":
            raise self.error("':' inside an expression (R's sequence or factor crossing) "
                             "is not supported; write the interaction in the formula")
        a, b = self.eval(node.left), self.eval(node.right)
        if op == "%in%":  # the table has any length
            return self.match(a, b)
        self.size_check(a, b)
        if op in ("&", "|"):
            la, lb = _as_logical(a, self.text), _as_logical(b, self.text)
            return _LglV(la & lb if op == "&" else la | lb)
        if op in ("==", "!=", "<", ">", "<=", ">="):
            return self.compare(op, a, b)
        if op.startswith("%") and op not in ("%%", "%/%"):
            raise self.error(f"the operator {op} is not supported")
        x, y = _as_number(a, self.text), _as_number(b, self.text)
        both_int = x.integer and y.integer
        with np.errstate(all="ignore"):
            if op == "+":
                return _NumV(x.values + y.values, both_int)
            if op == "-":
                return _NumV(x.values - y.values, both_int)
            if op == "*":
                return _NumV(x.values * y.values, both_int)
            if op == "/":
                return _NumV(x.values / y.values)
            if op == "^":
                return _NumV(np.power(x.values, y.values))
            if op == "%%":
                return _NumV(np.mod(x.values, y.values), both_int)
            return _NumV(np.floor(x.values / y.values), both_int)  # %/%

    def compare(self, op: str, a: _Value, b: _Value) -> _LglV:
        if isinstance(a, _NumV | _LglV) and isinstance(b, _NumV | _LglV):
            x: Any = _as_number(a, self.text).values
            y: Any = _as_number(b, self.text).values
        else:
            if op not in ("==", "!=") and (isinstance(a, _FacV) or isinstance(b, _FacV)):
                raise self.error(f"'{op}' is not meaningful for factors (R gives NA)")
            la, lb = _labels(a), _labels(b)
            if op in ("==", "!="):
                x, y = la, lb
            else:
                x = _object_array([r_collation_key(s) for s in la])
                y = _object_array([r_collation_key(s) for s in lb])
        ops: dict[str, Callable[[Any, Any], Any]] = {
            "==": np.equal, "!=": np.not_equal, "<": np.less, ">": np.greater,
            "<=": np.less_equal, ">=": np.greater_equal,
        }  # fmt: skip
        return _LglV(np.asarray(ops[op](x, y), dtype=bool))

    def match(self, a: _Value, b: _Value) -> _LglV:
        if isinstance(a, _NumV | _LglV) and isinstance(b, _NumV | _LglV):
            table = set(_as_number(b, self.text).values.tolist())
            vals = _as_number(a, self.text).values.tolist()
        else:
            table = set(_labels(b).tolist())
            vals = _labels(a).tolist()
        return _LglV(np.array([v in table for v in vals], dtype=bool))

    # --- functions -----------------------------------------------------------

    def args(
        self, node: _Call, names: Sequence[str], required: int
    ) -> dict[str, _Node]:
        """R's argument matching (exact names, then positions)."""
        out: dict[str, _Node] = {}
        positional: list[_Node] = []
        for name, arg in node.args:
            if name is None:
                positional.append(arg)
            elif name in names and name not in out:
                out[name] = arg
            else:
                raise self.error(f"{node.fn}(): unsupported argument {name!r}")
        free = [n for n in names if n not in out]
        if len(positional) > len(free):
            raise self.error(f"{node.fn}(): too many arguments")
        out.update(zip(free, positional, strict=False))
        missing = [n for n in names[:required] if n not in out]
        if missing:
            raise self.error(f"{node.fn}(): argument {missing[0]!r} is missing")
        return out

    def single(self, node: _Node, what: str) -> _Value:
        v = self.eval(node)
        if _size(v) != 1:
            raise self.error(f"{what} must be a single value")
        return v

    def flag(self, node: _Node | None, default: bool, what: str) -> bool:
        if node is None:
            return default
        v = self.single(node, what)
        if not isinstance(v, _LglV) or v.values.size != 1:
            raise self.error(f"{what} must be TRUE or FALSE")
        return bool(v.values[0])

    def call(self, node: _Call) -> _Value:
        fn = node.fn
        if fn in _MATH:
            a = self.args(node, ("x",), 1)
            x = _as_number(self.eval(a["x"]), self.text)
            with np.errstate(all="ignore"):
                out = _MATH[fn](x.values)
            return _NumV(np.asarray(out, dtype=np.float64), x.integer and fn in _INT_KEEPING)
        if fn == "I":
            return self.eval(self.args(node, ("x",), 1)["x"])
        if fn == "log":
            a = self.args(node, ("x", "base"), 1)
            x = _as_number(self.eval(a["x"]), self.text)
            with np.errstate(all="ignore"):
                out = np.log(x.values)
                if "base" in a:
                    base = _as_number(self.single(a["base"], "log(): base"), self.text)
                    out = out / np.log(base.values)
            return _NumV(out)
        if fn == "round":
            a = self.args(node, ("x", "digits"), 1)
            if "digits" in a:
                d = _as_number(self.single(a["digits"], "round(): digits"), self.text)
                if d.values.size != 1 or d.values[0] != 0:
                    raise self.error("round() with digits other than 0 is not supported "
                                     "(R's algorithm for digits > 0 differs from numpy's)")
            x = _as_number(self.eval(a["x"]), self.text)
            return _NumV(np.rint(x.values), x.integer)
        if fn == "c":
            return self.concat(node)
        if fn in ("factor", "as.factor"):
            return self.factor(node)
        if fn == "relevel":
            return self.relevel(node)
        if fn in ("as.numeric", "as.double", "as.integer"):
            return self.as_numeric(node)
        if fn == "as.character":
            return _ChrV(_labels(self.eval(self.args(node, ("x",), 1)["x"])))
        if fn == "scale":
            return self.scale(node)
        if fn == "ifelse":
            return self.ifelse(node)
        if fn in ("poly", "ns", "bs", "splines::ns", "offset", "C", "contrasts", "cut"):
            raise self.error(f"{fn}() is not supported in alliance_meta formulas")
        raise self.error(f"unknown or unsupported function {fn}()")

    def concat(self, node: _Call) -> _Value:
        vals = []
        for name, arg in node.args:
            if name is not None:
                raise self.error("c(): named elements are not supported")
            vals.append(self.eval(arg))
        if not vals:
            raise self.error("c() with no elements")
        if any(isinstance(v, _ChrV | _FacV) for v in vals):
            return _ChrV(np.concatenate([_labels(v) for v in vals]))
        if all(isinstance(v, _LglV) for v in vals):
            return _LglV(np.concatenate([_as_logical(v, self.text) for v in vals]))
        nums = [_as_number(v, self.text) for v in vals]
        return _NumV(np.concatenate([v.values for v in nums]), all(v.integer for v in nums))

    def factor(self, node: _Call) -> _FacV:
        names = ("x", "levels") if node.fn == "factor" else ("x",)
        a = self.args(node, names, 1)
        x = self.eval(a["x"])
        if "levels" in a:
            levels_v = self.eval(a["levels"])
            levels = tuple(str(s) for s in _labels(levels_v))
            if len(set(levels)) != len(levels):
                raise self.error("factor(): duplicated levels")
            lookup = {s: i for i, s in enumerate(levels)}
            codes = np.array([lookup.get(s, -1) for s in _labels(x)], dtype=np.int64)
            return _FacV(codes, levels)
        if isinstance(x, _FacV):
            if node.fn == "as.factor":
                return x
            used = np.unique(x.codes[x.codes >= 0])  # factor() drops unused levels
            remap = np.full(len(x.levels) + 1, -1, dtype=np.int64)
            remap[used] = np.arange(used.size)
            return _FacV(remap[x.codes], tuple(x.levels[i] for i in used))
        return _as_factor(x)

    def relevel(self, node: _Call) -> _FacV:
        a = self.args(node, ("x", "ref"), 2)
        x = self.eval(a["x"])
        if not isinstance(x, _FacV):
            raise self.error(
                f"relevel() needs a factor, and this is {_type_name(x)} (R: \"'relevel' only "
                "for (unordered) factors\"); write relevel(factor(x), ref = ...)"
            )
        ref_v = self.single(a["ref"], "relevel(): ref")
        if isinstance(ref_v, _NumV):
            pos = int(ref_v.values[0]) - 1
            if not 0 <= pos < len(x.levels):
                raise self.error(f"relevel(): ref = {ref_v.values[0]:g} is out of range")
        else:
            ref = str(_labels(ref_v)[0])
            if ref not in x.levels:
                if not self.fitting:  # new data: the levels are those of the fit data
                    return x
                raise self.error(
                    f"relevel(): ref = {ref!r} is not a level (levels: {', '.join(x.levels)})"
                )
            pos = x.levels.index(ref)
        order = [pos] + [i for i in range(len(x.levels)) if i != pos]
        remap = np.full(len(x.levels) + 1, -1, dtype=np.int64)
        remap[order] = np.arange(len(order))
        return _FacV(remap[x.codes], tuple(x.levels[i] for i in order))

    def as_numeric(self, node: _Call) -> _NumV:
        x = self.eval(self.args(node, ("x",), 1)["x"])
        integer = node.fn == "as.integer"
        if isinstance(x, _FacV):  # R: the codes of the levels
            return _NumV((x.codes + 1).astype(np.float64), integer=True)
        if isinstance(x, _ChrV):
            try:
                vals = np.array([float(s) for s in x.values])
            except (TypeError, ValueError):
                raise self.error(f"{node.fn}(): text that is not a number (R gives NA)") from None
        else:
            vals = _as_number(x, self.text).values
        if integer:
            return _NumV(np.trunc(vals), integer=True)
        return _NumV(vals, integer=False)

    def scale(self, node: _Call) -> _NumV:
        a = self.args(node, ("x", "center", "scale"), 1)
        x = _as_number(self.eval(a["x"]), self.text).values
        center = self.flag(a.get("center"), True, "scale(): center")
        scale = self.flag(a.get("scale"), True, "scale(): scale")
        key = _deparse(node)
        if self.fitting:
            mu = float(np.mean(x)) if center else 0.0
            xc = x - mu
            sd = float(np.sqrt(np.sum(xc * xc) / (x.size - 1))) if scale and x.size > 1 else 1.0
            if scale and x.size <= 1:
                sd = math.nan
            self.state[key] = (mu, sd)
        else:
            mu, sd = self.state[key]
        return _NumV((x - mu) / sd if scale else x - mu)

    def ifelse(self, node: _Call) -> _Value:
        a = self.args(node, ("test", "yes", "no"), 3)
        test = _as_logical(self.eval(a["test"]), self.text)
        yes, no = self.eval(a["yes"]), self.eval(a["no"])
        self.size_check(_LglV(test), yes, no)
        if isinstance(yes, _FacV) or isinstance(no, _FacV):
            raise self.error("ifelse() of factors (R drops their levels) is not supported")
        if isinstance(yes, _LglV) and isinstance(no, _LglV):
            return _LglV(np.where(test, yes.values, no.values))
        if isinstance(yes, _NumV | _LglV) and isinstance(no, _NumV | _LglV):
            y, n = _as_number(yes, self.text), _as_number(no, self.text)
            return _NumV(np.where(test, y.values, n.values), y.integer and n.integer)
        return _ChrV(np.where(test, _labels(yes), _labels(no)).astype(object))


def _object_array(items: Sequence[object]) -> ObjArray:
    """A 1-d object array of ``items`` (tuples stay elements, not rows)."""
    out = np.empty(len(items), dtype=object)
    for i, x in enumerate(items):
        out[i] = x
    return out


def _size(v: _Value) -> int:
    return int(v.codes.size if isinstance(v, _FacV) else v.values.size)


def _as_factor(x: _Value) -> _FacV:
    """R's ``factor(x)`` of a non-factor: levels sorted (numbers numerically, strings
    in R's collation, FALSE before TRUE), labelled by ``as.character``."""
    labels = _labels(x)
    if isinstance(x, _NumV | _LglV):
        num = _as_number(x, "factor()").values
        order = np.argsort(num, kind="stable")
        levels = tuple(dict.fromkeys(str(s) for s in labels[order]))
    else:
        levels = _sorted_levels([str(s) for s in labels])
    lookup = {s: i for i, s in enumerate(levels)}
    return _FacV(np.array([lookup[s] for s in labels], dtype=np.int64), levels)


_MATH: dict[str, Callable[[FloatArray], Any]] = {
    "exp": np.exp, "sqrt": np.sqrt, "abs": np.abs, "log2": np.log2, "log10": np.log10,
    "log1p": np.log1p, "expm1": np.expm1, "sign": np.sign, "floor": np.floor,
    "ceiling": np.ceil, "trunc": np.trunc, "sin": np.sin, "cos": np.cos, "tan": np.tan,
    "asin": np.arcsin, "acos": np.arccos, "atan": np.arctan, "sinh": np.sinh,
    "cosh": np.cosh, "tanh": np.tanh, "gamma": spc.gamma, "lgamma": spc.gammaln,
    "plogis": spc.expit, "qlogis": spc.logit, "pnorm": spc.ndtr, "qnorm": spc.ndtri,
}  # fmt: skip
#: functions that keep an R integer an integer (abs(2L) is 2L; sqrt(4L) is a double)
_INT_KEEPING = frozenset({"abs"})


# ===========================================================================
# Data: pandas DataFrame, interchange-protocol frames, or a mapping of columns
# ===========================================================================


def _label_of(x: object) -> str:
    if isinstance(x, bool | np.bool_):
        return "TRUE" if x else "FALSE"
    if isinstance(x, int | np.integer):
        return str(int(x))
    if isinstance(x, float | np.floating):
        return r_number_string(float(x))
    return str(x)


def _missing_error(name: str, row: str) -> InvalidStudyError:
    return InvalidStudyError(
        "missing value (R's model.matrix gives NA, and metafor drops the study with a "
        "warning); remove the study, fill in the value, or pass nan_policy='omit' to the "
        "model to drop such studies with a warning, as metafor does",
        study=row,
        field=name,
    )


def _to_value(name: str, raw: object, rows: tuple[str, ...]) -> _Value:
    """One column of the data as an R value, refusing missing values."""
    if isinstance(raw, pd.Categorical):
        raw = pd.Series(raw)
    if isinstance(raw, pd.Series | pd.Index):
        series = pd.Series(raw)
        na = series.isna().to_numpy()
        if na.any():
            raise _missing_error(name, rows[int(np.argmax(na))])
        dtype = series.dtype
        if isinstance(dtype, pd.CategoricalDtype):
            cats = tuple(_label_of(c) for c in dtype.categories)
            return _FacV(series.cat.codes.to_numpy(dtype=np.int64), cats)
        if pd.api.types.is_bool_dtype(dtype):
            return _LglV(series.to_numpy(dtype=bool))
        if pd.api.types.is_numeric_dtype(dtype):
            integer = pd.api.types.is_integer_dtype(dtype)
            return _NumV(series.to_numpy(dtype=np.float64), integer)
        if pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype):
            return _object_value(name, series.to_numpy(dtype=object), rows)
        raise InvalidStudyError(f"a column of type {dtype} cannot be a moderator", field=name)
    arr = np.asarray(raw)
    if arr.ndim != 1:
        raise InvalidStudyError("a moderator column must be one-dimensional", field=name)
    if arr.dtype == bool:
        return _LglV(arr.astype(bool))
    if arr.dtype.kind in "iu":
        return _NumV(arr.astype(np.float64), integer=True)
    if arr.dtype.kind == "f":
        nan = np.isnan(arr)
        if nan.any():
            raise _missing_error(name, rows[int(np.argmax(nan))])
        return _NumV(arr.astype(np.float64))
    if arr.dtype.kind in "OUS":
        return _object_value(name, arr.astype(object), rows)
    raise InvalidStudyError(f"a column of type {arr.dtype} cannot be a moderator", field=name)


def _as_finite_number(x: object) -> float | None:
    """``x`` as a finite float when it is a number or a string that spells one
    (``"40"``, ``" 3.5 "``, ``"1e3"``), else None."""
    if isinstance(x, bool | np.bool_):
        return None
    if isinstance(x, int | float | np.integer | np.floating):
        f = float(x)
    elif isinstance(x, str):
        try:
            f = float(x)
        except ValueError:
            return None
    else:
        return None
    return f if math.isfinite(f) else None


def warn_numeric_text(
    name: str,
    values: Sequence[object] | npt.NDArray[Any],
    rows: Sequence[str],
    *,
    formula: bool,
    stacklevel: int = 2,
) -> None:
    """Warn (:class:`~alliance_meta.exceptions.NumericTextWarning`) when a text
    column about to become categorical has most of its values spelling finite
    numbers but not all: a numeric moderator with a typo (``"4O"``) would silently
    get one coefficient per value, as R's ``factor`` coding gives it.

    ``rows`` names the studies (labels) for the message; ``formula`` says whether
    the remedy is ``factor(x)`` in a formula or ``Moderator(name, "categorical")``.
    """
    vals = list(values)
    if not vals or not any(isinstance(v, str) for v in vals):
        return
    bad = [i for i, v in enumerate(vals) if _as_finite_number(v) is None]
    n_num = len(vals) - len(bad)
    if not bad or 2 * n_num <= len(vals):
        return
    shown = ", ".join(f"{vals[i]!r} (study {rows[i]!r})" for i in bad[:5])
    more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
    declare = (
        f"write factor({name}) in the formula" if formula
        else f"pass Moderator({name!r}, \"categorical\")"
    )  # fmt: skip
    warnings.warn(
        f"moderator {name!r} is text with {n_num} of its {len(vals)} values numbers, but "
        f"{shown}{more} {'is' if len(bad) == 1 else 'are'} not: it is coded as categorical, "
        f"one coefficient per distinct value (as R codes a character column). If {name!r} "
        f"is numeric, correct the data; if it is categorical, say so: {declare}",
        NumericTextWarning,
        stacklevel=stacklevel + 1,
    )


def _object_value(name: str, arr: ObjArray, rows: tuple[str, ...]) -> _Value:
    kinds = set()
    for i, x in enumerate(arr):
        if x is None or x is pd.NA or (isinstance(x, float) and math.isnan(x)):
            raise _missing_error(name, rows[i])
        if isinstance(x, bool | np.bool_):
            kinds.add("logical")
        elif isinstance(x, int | float | np.integer | np.floating):
            kinds.add("numeric")
        elif isinstance(x, str):
            kinds.add("character")
        else:
            raise InvalidStudyError(
                f"value {x!r} of type {type(x).__name__} cannot be a moderator",
                study=rows[i], field=name,
            )
    if kinds == {"logical"}:
        return _LglV(arr.astype(bool))
    if kinds == {"numeric"}:
        integer = all(isinstance(x, int | np.integer) for x in arr)
        return _NumV(arr.astype(np.float64), integer)
    if kinds <= {"character"}:
        return _ChrV(np.array([str(x) for x in arr], dtype=object))
    raise InvalidStudyError(
        f"the column mixes {' and '.join(sorted(kinds))} values", field=name
    )


def _columns(data: object) -> _Columns:
    """The data of a formula as a lazy column source with row labels."""
    if not isinstance(data, pd.DataFrame | Mapping) and hasattr(data, "__dataframe__"):
        with warnings.catch_warnings():  # pandas 3 deprecates the protocol it still reads
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            data = pd.api.interchange.from_dataframe(data)
    if isinstance(data, pd.DataFrame):
        frame = data
        rows = tuple(str(r) for r in frame.index)
        if frame.columns.has_duplicates:
            dup = frame.columns[frame.columns.duplicated()][0]
            raise InvalidStudyError("the data have two columns of this name", field=str(dup))

        def get_frame(name: str) -> _Value | None:
            if name not in frame.columns:
                return None
            return _to_value(name, frame[name], rows)

        return _Columns(len(frame), rows, get_frame)
    if isinstance(data, Mapping):
        # a single value (a string, a number) is a column of one row: {"ablat": 30}
        mapping = {str(k): [v] if isinstance(v, str | bytes) or np.ndim(v) == 0 else v
                   for k, v in data.items()}
        lengths = {name: len(v) if hasattr(v, "__len__") else np.asarray(v).size
                   for name, v in mapping.items()}
        k = next(iter(lengths.values()), 0)
        for name, n in lengths.items():
            if n != k:
                raise InvalidStudyError(
                    f"has {n} values where the first column has {k}", field=name
                )
        rows_m = tuple(str(i) for i in range(k))

        def get_mapping(name: str) -> _Value | None:
            if name not in mapping:
                return None
            return _to_value(name, mapping[name], rows_m)

        return _Columns(k, rows_m, get_mapping)
    raise ModelSpecificationError(
        f"the data of a formula must be a pandas DataFrame, an object with the DataFrame "
        f"interchange protocol, or a mapping of column names to values, not "
        f"{type(data).__name__}"
    )


# ===========================================================================
# The formula: variables, terms (formulaic's algebra) and R's coding
# ===========================================================================


@dataclass(frozen=True)
class _Structure:
    """A parsed formula: its variables (in R's order) and terms (sorted as R does)."""

    text: str
    nodes: tuple[_Node, ...]
    names: tuple[str, ...]
    terms: tuple[tuple[int, ...], ...]
    intercept: bool


_FORMULA_OPS = frozenset({"+", "-", "*", "/", ":", "^"})


def _parse_formula(formula: object) -> _Structure:
    if not isinstance(formula, str) or not formula.strip().startswith("~"):
        raise ModelSpecificationError(
            f"a moderator formula must be a string starting with '~' (one-sided, as "
            f"metafor's mods = ~ ...), not {formula!r}"
        )
    text = formula.strip()
    rhs = text[1:]
    if not rhs.strip():
        raise ModelSpecificationError(f"the formula {formula!r} has no right-hand side")
    toks = _lex(rhs)
    skeleton: list[str] = []
    nodes: list[_Node] = []
    names: list[str] = []
    i = 0
    depth = 0
    while toks[i].kind != "eof":
        tok = toks[i]
        if tok.kind == "op" and tok.text in _FORMULA_OPS:
            skeleton.append(f" {tok.text} ")
            i += 1
        elif tok.kind in ("(", ")"):
            depth += 1 if tok.kind == "(" else -1
            if depth < 0:
                raise _error_at(text, tok.start + 1, "unbalanced parentheses")
            skeleton.append(tok.text)
            i += 1
        elif tok.kind == "num":
            if not tok.text.isdigit():
                raise _error_at(text, tok.start + 1, f"unexpected number {tok.text!r}")
            skeleton.append(tok.text)
            i += 1
        elif tok.kind == "name":
            j = i + 1
            if toks[j].kind == "(":  # a call: through its closing parenthesis
                inner = 0
                while True:
                    if toks[j].kind == "(":
                        inner += 1
                    elif toks[j].kind == ")":
                        inner -= 1
                        if inner == 0:
                            break
                    elif toks[j].kind == "eof":
                        raise _error_at(text, tok.start + 1, "unbalanced parentheses")
                    j += 1
                j += 1
            source = rhs[tok.start : toks[j - 1].end]
            if source in (".",):
                raise ModelSpecificationError(
                    "'.' (all other columns) is not supported in formulas; name the columns"
                )
            node = _parse_expression(source)
            name = _deparse(node)
            if name not in names:
                names.append(name)
                nodes.append(node)
            skeleton.append(f"_v{names.index(name)}")
            i = j
        elif tok.kind == "op" and tok.text == "%in%":
            raise _error_at(
                text, tok.start + 1,
                "%in% as a formula operator is not supported (write a:b, or a/b for a + a:b)",
            )
        else:
            raise _error_at(
                text, tok.start + 1,
                f"{tok.text!r} is not a formula operator; wrap an expression in I(), "
                "e.g. I(x > 1)",
            )
    if depth:
        raise _error_at(text, len(text), "unbalanced parentheses")
    terms, intercept = _formulaic_terms("".join(skeleton), text)
    return _Structure(text, tuple(nodes), tuple(names), terms, intercept)


def formula_names(formula: str) -> tuple[str, ...]:
    """The names a formula's expressions refer to (the data columns it reads, and
    constants such as ``TRUE``), in order of appearance.

    >>> formula_names("~ I(year - 1950) * relevel(factor(alloc), ref = 'b') + log(x, 2)")
    ('year', 'alloc', 'x')
    """
    out: dict[str, None] = {}

    def walk(node: _Node) -> None:
        if isinstance(node, _Name):
            out.setdefault(node.name, None)
        elif isinstance(node, _Call):
            for _, arg in node.args:
                walk(arg)
        elif isinstance(node, _Unary):
            walk(node.operand)
        elif isinstance(node, _Binary):
            walk(node.left)
            walk(node.right)
        elif isinstance(node, _Paren):
            walk(node.inner)

    for node in _parse_formula(formula).nodes:
        walk(node)
    return tuple(out)


def _formulaic_terms(skeleton: str, text: str) -> tuple[tuple[tuple[int, ...], ...], bool]:
    """The terms of the formula, by formulaic's parser of Wilkinson formulas, in R's
    order: stably by their number of variables, and the variables of each term in
    the order of their first appearance in the formula."""
    from formulaic import Formula  # a slow import (~0.5 s): only when a formula is used

    try:
        parsed = Formula(skeleton, _ordering="none")
    except Exception as exc:  # formulaic's parse errors have no common base class
        first = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip().splitlines()[0]
        raise ModelSpecificationError(f"cannot parse the formula {text!r}: {first}") from exc
    intercept = False
    terms: list[tuple[int, ...]] = []
    for term in parsed:
        exprs = [str(f.expr) for f in term.factors]
        if exprs == ["1"]:
            intercept = True
            continue
        if any(not e.startswith("_v") for e in exprs):  # pragma: no cover - guarded above
            raise ModelSpecificationError(f"cannot parse the formula {text!r}")
        key = tuple(sorted({int(e[2:]) for e in exprs}))
        if key not in terms:
            terms.append(key)
    terms.sort(key=len)  # stable: R's order of terms (keep.order = FALSE)
    return tuple(terms), intercept


def _term_codes(
    terms: Sequence[tuple[int, ...]], intercept: bool, is_factor: Sequence[bool]
) -> list[dict[int, int]]:
    """For each variable of each term: 1 (contrasts) or 2 (indicator columns).

    R's rule (``TermCode`` in R's ``model.c``; Chambers & Hastie 1992, p. 38): a
    variable in a term is coded by contrasts when the term without it is empty or
    is contained in an earlier term, else by indicators of all its levels.  Without
    an intercept, the first factor of the first term that has one is coded by
    indicators (``model.matrix``).
    """
    codes: list[dict[int, int]] = []
    for j, term in enumerate(terms):
        code: dict[int, int] = {}
        for v in term:
            rest = set(term) - {v}
            ok = not rest or any(rest <= set(terms[i]) for i in range(j))
            code[v] = 1 if ok else 2
        codes.append(code)
    if not intercept:
        for j, term in enumerate(terms):
            factors = [v for v in term if is_factor[v]]
            if factors:
                codes[j][factors[0]] = 2
                break
    return codes


# ===========================================================================
# The result
# ===========================================================================


@attrs.frozen
class VariableCoding:
    """How one variable of a formula is coded (what new rows need).

    Parameters
    ----------
    name : str
        The variable as R names it (its deparsed expression, e.g. ``"I(year - 1950)"``).
    kind : {"numeric", "factor"}
        Numeric variables give one column; factors (R factors, strings, logicals)
        give treatment contrasts or indicators.
    levels : tuple of str
        The levels of a factor, in R's order; empty for a numeric variable.
    reference : str or None
        The reference level of a factor (its first level): the level without a
        column where the factor is coded by contrasts.
    transforms : tuple of (str, float, float)
        The stateful transforms inside the expression, as ``(call, center, scale)``
        of each ``scale()`` call, from the data the design was built on.
    """

    name: str
    kind: Literal["numeric", "factor"]
    levels: tuple[str, ...] = ()
    reference: str | None = None
    transforms: tuple[tuple[str, float, float], ...] = ()


def _integer_tuple(x: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(v) for v in x)


def _str_tuple(x: Sequence[str]) -> tuple[str, ...]:
    return tuple(str(v) for v in x)


def _coding_tuple(x: Sequence[VariableCoding]) -> tuple[VariableCoding, ...]:
    return tuple(x)


@attrs.frozen(field_transformer=freeze_arrays, repr=False)
class FormulaDesign:
    """The design matrix of a formula, as R's ``model.matrix`` builds it.

    Attributes
    ----------
    formula : str
        The formula.
    X : ndarray, shape (k, p)
        The design matrix (float64), redundant columns included.
    column_names : tuple of str
        The names of the columns, as R prints them (``intrcpt`` for the intercept,
        as metafor renames it).
    intercept : bool
        Whether the first column is the intercept.
    term_labels : tuple of str
        R's ``attr(terms(formula), "term.labels")``.
    assign : tuple of int
        For each column, its term: 0 for the intercept, ``t`` for
        ``term_labels[t - 1]`` (R's ``attr(X, "assign")``).
    variables : tuple of VariableCoding
        The coding of each variable, in R's order.
    """

    formula: str
    X: FloatArray
    column_names: tuple[str, ...] = attrs.field(converter=_str_tuple)
    intercept: bool
    term_labels: tuple[str, ...] = attrs.field(converter=_str_tuple)
    assign: tuple[int, ...] = attrs.field(converter=_integer_tuple)
    variables: tuple[VariableCoding, ...] = attrs.field(converter=_coding_tuple)
    _structure: _Structure = attrs.field(alias="structure", eq=False)
    _codes: tuple[tuple[tuple[int, int], ...], ...] = attrs.field(alias="codes", eq=False)

    @property
    def k(self) -> int:
        """The number of rows."""
        return int(self.X.shape[0])

    @property
    def p(self) -> int:
        """The number of columns."""
        return int(self.X.shape[1])

    @property
    def term_columns(self) -> dict[str, tuple[int, ...]]:
        """The columns of each term (the intercept under ``"intrcpt"``), R's ``assign``
        grouped: ``{"intrcpt": (0,), "ablat": (1,), "alloc": (2, 3), ...}``."""
        labels = (INTERCEPT, *self.term_labels)
        out: dict[str, tuple[int, ...]] = {}
        for t, label in enumerate(labels):
            cols = tuple(j for j, a in enumerate(self.assign) if a == t)
            if cols:
                out[label] = cols
        return out

    def redundant(self, tol: float = 1e-7) -> tuple[str, ...]:
        """Names of the columns R's ``lm`` (and metafor) would drop as redundant.

        See :func:`redundant_columns`.
        """
        mask = redundant_columns(self.X, tol)
        return tuple(n for n, r in zip(self.column_names, mask, strict=True) if r)

    def new_rows(self, data: object) -> FloatArray:
        """Rows of this design for new data, coded as the design was.

        Parameters
        ----------
        data : DataFrame or mapping
            The variables of the formula for the new rows (metafor's ``newmods``,
            built from a formula as R's ``predict(..., newdata)`` does).

        Returns
        -------
        ndarray, shape (m, p)

        Raises
        ------
        InvalidStudyError
            A missing column or value, a value of another type than in the data the
            design was built on, or a factor level it did not have.

        Notes
        -----
        Factors keep the levels (and reference) of the original data, whatever
        levels the new data have, and ``scale()`` keeps the original centre and
        scale, as ``model.frame(..., xlev = )`` and ``makepredictcall`` do in R.
        """
        cols = _columns(data)
        state = {t[0]: (t[1], t[2]) for v in self.variables for t in v.transforms}
        ev = _Evaluator(cols, self.formula, state, fitting=False)
        values: list[_NumV | _FacV] = []
        for node, coding in zip(self._structure.nodes, self.variables, strict=True):
            v = ev.eval(node)
            _check_length(v, cols.k, coding.name)
            if coding.kind == "numeric":
                if not isinstance(v, _NumV):
                    raise InvalidStudyError(
                        f"is {_type_name(v)} in the new data but was numeric", field=coding.name
                    )
                _check_finite(v, coding.name, cols.rows)
                values.append(v)
                continue
            if isinstance(v, _NumV):
                raise InvalidStudyError(
                    "is numeric in the new data but was a factor (use the same types)",
                    field=coding.name,
                )
            labels = _labels(v)
            lookup = {s: i for i, s in enumerate(coding.levels)}
            codes = np.empty(labels.size, dtype=np.int64)
            for i, s in enumerate(labels):
                if s is None:
                    raise _missing_error(coding.name, cols.rows[i])
                if s not in lookup:
                    raise InvalidStudyError(
                        f"level {s!r} is not a level of the data the design was built on "
                        f"({', '.join(coding.levels)})",
                        study=cols.rows[i], field=coding.name,
                    )
                codes[i] = lookup[s]
            values.append(_FacV(codes, coding.levels))
        X, _, _ = _build(self._structure, values, [dict(c) for c in self._codes], cols.k)
        return X

    def to_frame(self) -> pd.DataFrame:
        """The design matrix as a DataFrame with R's column names."""
        frame: pd.DataFrame = pd.DataFrame(np.array(self.X), columns=list(self.column_names))
        return frame

    def __repr__(self) -> str:
        names = ", ".join(self.column_names[:6]) + (", ..." if self.p > 6 else "")
        return f"FormulaDesign({self.formula!r}, k={self.k}, p={self.p}: {names})"


def _check_length(v: _Value, k: int, name: str) -> None:
    if _size(v) != k:
        raise ModelSpecificationError(
            f"the variable {name} has {_size(v)} values for {k} rows (R: 'variable lengths "
            "differ')"
        )


def _check_finite(v: _NumV, name: str, rows: Sequence[str]) -> None:
    bad = ~np.isfinite(v.values)
    if bad.any():
        i = int(np.argmax(bad))
        raise InvalidStudyError(
            f"is {r_number_string(float(v.values[i]))} (R's model.matrix would keep it, and "
            "metafor would drop or refuse the study)",
            study=rows[i], field=name,
        )


def _build(
    structure: _Structure,
    values: Sequence[_NumV | _FacV],
    codes: Sequence[Mapping[int, int]],
    k: int,
) -> tuple[FloatArray, list[str], list[int]]:
    """R's ``model.matrix`` columns: the intercept, then each term's columns, the
    first variable of an interaction varying fastest."""
    cols: list[FloatArray] = []
    names: list[str] = []
    assign: list[int] = []
    if structure.intercept:
        cols.append(np.ones(k))
        names.append(INTERCEPT)
        assign.append(0)
    for t, (term, code) in enumerate(zip(structure.terms, codes, strict=True), start=1):
        block: list[tuple[str, FloatArray]] = [("", np.ones(k))]
        for v in term:
            val = values[v]
            name = structure.names[v]
            if isinstance(val, _NumV):
                block = [(_join(n, name), c * val.values) for n, c in block]
                continue
            first = 1 if code[v] == 1 else 0
            new: list[tuple[str, FloatArray]] = []
            for lev in range(first, len(val.levels)):
                ind = (val.codes == lev).astype(np.float64)
                new.extend((_join(n, name + val.levels[lev]), c * ind) for n, c in block)
            block = new
        for n, c in block:
            names.append(n)
            cols.append(c)
            assign.append(t)
    X = np.column_stack(cols).astype(np.float64) if cols else np.zeros((k, 0))
    return X, names, assign


def _join(prefix: str, name: str) -> str:
    return f"{prefix}:{name}" if prefix else name


def model_matrix(formula: str, data: object) -> FormulaDesign:
    """The design matrix of a one-sided R formula, as R's ``model.matrix`` builds it.

    Parameters
    ----------
    formula : str
        A one-sided formula, e.g. ``"~ ablat * year"`` (see Notes).
    data : DataFrame, object with ``__dataframe__``, or mapping
        The columns the formula names.  Numeric columns are numbers; strings,
        booleans and pandas ``Categorical`` columns are factors.

    Returns
    -------
    FormulaDesign
        The matrix, R's column names, term labels and ``assign``, and the coding
        (levels, references, ``scale()`` centres) for :meth:`FormulaDesign.new_rows`.

    Raises
    ------
    ModelSpecificationError
        A formula that is not a string starting with ``~``, a syntax error, an
        unsupported operator or function, or a factor with fewer than two levels.
    InvalidStudyError
        A column the data do not have, a missing value (naming the row and the
        column), or a non-finite value of a variable (e.g. ``log(0)``).

    Notes
    -----
    **Grammar** (Wilkinson & Rogers, 1973, as in R's ``formula``): terms are joined
    by ``+``; ``a:b`` is the interaction of ``a`` and ``b``; ``a * b`` is
    ``a + b + a:b``; ``(a + b + c)^2`` is all terms up to second order; ``a / b`` is
    ``a + a:b``; ``- term`` removes a term; ``- 1`` or ``+ 0`` removes the intercept
    and ``+ 1`` restores it; parentheses group.  A variable is a column name
    (backticks for other names: ```my var```) or an R expression of them:

    - ``I(...)`` with arithmetic ``+ - * / ^ %% %/%``, comparisons, ``& | !``,
      ``%in%`` and ``c(...)``;
    - ``log(x)``, ``log(x, base = b)``, ``exp``, ``sqrt``, ``abs``, ``log2``,
      ``log10``, ``log1p``, ``expm1``, ``sign``, ``floor``, ``ceiling``, ``trunc``,
      ``round(x)``, trigonometric and hyperbolic functions, ``gamma``, ``lgamma``,
      ``plogis``, ``qlogis``, ``pnorm``, ``qnorm``;
    - ``factor(x)``, ``factor(x, levels = c(...))``, ``as.factor(x)``,
      ``relevel(f, ref = "b")`` (either quote), ``as.numeric``, ``as.integer``,
      ``as.character``, ``ifelse(test, yes, no)``, ``scale(x)``.

    **R's semantics.**  Strings are factors with their levels sorted in R's
    collation (:func:`r_collation_key`; ``"b" < "C"``), logicals are factors with
    levels ``FALSE``, ``TRUE``, numbers in ``factor()`` have numerically sorted
    levels labelled as R prints them (``"0.5"``, ``"1e+05"``), a pandas
    ``Categorical`` keeps its categories in their order (the first is the
    reference; unused categories give all-zero columns, as an R factor's unused
    levels do, while ``factor()`` drops them).  Terms are ordered by their number
    of variables, keeping the formula's order otherwise; the variables of a term
    in the order they first appear in the formula.  Each factor in each term is
    coded by treatment contrasts (the first level as reference) or by indicators
    of all its levels by R's rule: contrasts when the term without the factor is
    in the model before it, as with ``~ a + a:b``; indicators otherwise, as for
    both factors of ``~ a:b`` (which makes the design rank-deficient, as in R).
    Without an intercept the first factor gets all its levels.  Interaction
    columns vary the first variable fastest and are named
    ``"name1level1:name2level2"``.

    **Names.**  A variable is named by R's ``deparse`` of its expression:
    ``I(year-1950)`` becomes ``I(year - 1950)``, ``x/2`` stays ``x/2``, single
    quotes become double (``relevel(factor(g), ref = "b")``), ``1e5`` becomes
    ``1e+05``; a factor column appends the level (``factor(type)p``).  The
    intercept is ``intrcpt``, as metafor renames R's ``(Intercept)``.

    **Not supported** (a clear error): ``%in%`` as a formula operator, ``.``,
    ``offset()``, matrix-valued terms (``poly``, ``ns``, ``bs``, ``cbind``),
    ``C()`` and other contrasts than treatment (an ordered pandas ``Categorical``
    is coded by treatment contrasts, where R would use polynomial ones for an
    ordered factor), comparisons outside ``I()`` at the top level of the formula,
    ``&&``/``||``, ``round(x, digits)`` with ``digits != 0``, and functions not
    listed above.  Missing values raise instead of dropping the row.

    References
    ----------
    Wilkinson, G. N., & Rogers, C. E. (1973). Symbolic description of factorial
    models for analysis of variance. *Applied Statistics*, 22(3), 392-399.

    Chambers, J. M., & Hastie, T. J. (1992). *Statistical Models in S*, chapter 2.
    Wadsworth & Brooks/Cole.  (R's ``terms.formula`` and ``model.matrix``.)

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"ablat": [44, 55, 42, 13], "alloc": ["random", "random",
    ...                    "alternate", "systematic"]})
    >>> d = model_matrix("~ ablat * alloc", df)
    >>> d.column_names[:4]
    ('intrcpt', 'ablat', 'allocrandom', 'allocsystematic')
    >>> d.column_names[4:]
    ('ablat:allocrandom', 'ablat:allocsystematic')
    >>> d.assign
    (0, 1, 2, 2, 3, 3)
    >>> d.X[:, 4]
    array([44., 55.,  0.,  0.])
    """
    structure = _parse_formula(formula)
    cols = _columns(data)
    ev = _Evaluator(cols, structure.text, {}, fitting=True)
    values: list[_NumV | _FacV] = []
    variables: list[VariableCoding] = []
    used: set[int] = {v for term in structure.terms for v in term}
    for idx, (node, name) in enumerate(zip(structure.nodes, structure.names, strict=True)):
        before = set(ev.state)
        v = ev.eval(node)
        _check_length(v, cols.k, name)
        transforms = tuple((key, *ev.state[key]) for key in ev.state if key not in before)
        if isinstance(v, _NumV):
            if idx in used:
                _check_finite(v, name, cols.rows)
            values.append(v)
            variables.append(VariableCoding(name, "numeric", transforms=transforms))
            continue
        if isinstance(v, _ChrV) and isinstance(node, _Name) and idx in used:
            # a bare text column (not factor(x)) becomes a factor: check for typos
            warn_numeric_text(name, v.values, cols.rows, formula=True, stacklevel=4)
        fac = v if isinstance(v, _FacV) else _as_logical_factor(v) if isinstance(
            v, _LglV) else _as_factor(v)
        missing = fac.codes < 0
        if missing.any():
            raise InvalidStudyError(
                "value not among the levels given to factor() (R gives NA)",
                study=cols.rows[int(np.argmax(missing))], field=name,
            )
        if len(fac.levels) < 2 and idx in used:
            raise ModelSpecificationError(
                f"the factor {name} has {len(fac.levels)} level(s) "
                f"({', '.join(fac.levels)}); R's model.matrix refuses it ('contrasts can "
                "be applied only to factors with 2 or more levels')"
            )
        values.append(fac)
        variables.append(
            VariableCoding(name, "factor", fac.levels, fac.levels[0] if fac.levels else None,
                           transforms)
        )
    is_factor = [isinstance(v, _FacV) for v in values]
    codes = _term_codes(structure.terms, structure.intercept, is_factor)
    X, names, assign = _build(structure, values, codes, cols.k)
    labels = tuple(":".join(structure.names[v] for v in term) for term in structure.terms)
    return FormulaDesign(
        formula=formula,
        X=X,
        column_names=tuple(names),
        intercept=structure.intercept,
        term_labels=labels,
        assign=tuple(assign),
        variables=tuple(variables),
        structure=structure,
        codes=tuple(tuple(sorted(c.items())) for c in codes),
    )


def _as_logical_factor(v: _LglV) -> _FacV:
    """A logical variable as ``model.matrix`` codes it: both levels, always."""
    return _FacV(v.values.astype(np.int64), ("FALSE", "TRUE"))


# ===========================================================================
# Redundant columns, as R's lm finds them
# ===========================================================================


def redundant_columns(X: npt.ArrayLike, tol: float = 1e-7) -> BoolArray:
    """Columns that R's ``lm`` would give an ``NA`` coefficient (metafor drops them).

    Parameters
    ----------
    X : array_like, shape (k, p)
        The design matrix.
    tol : float
        The tolerance of R's ``lm`` (``qr(X, tol = 1e-7)``).

    Returns
    -------
    ndarray of bool, shape (p,)
        True for a column that is (numerically) a linear combination of the
        columns kept before it, or beyond the rank ``k``.

    Notes
    -----
    metafor's ``rma`` fits ``lm(yi ~ X - 1)`` and drops the columns whose
    coefficients are ``NA``.  ``lm`` uses LINPACK's ``dqrdc2``: a Householder QR
    that takes the columns in their order and moves a column to the end when the
    norm of what is left of it, after the reflections of the columns before it,
    falls below ``tol`` times its original norm.  This is that algorithm, with its
    update and recomputation of the column norms, so that the same columns go.
    """
    A = np.array(X, dtype=np.float64, copy=True)
    if A.ndim != 2:
        raise ModelSpecificationError("the design matrix must be two-dimensional")
    n, p = A.shape
    order = list(range(p))
    qraux = np.linalg.norm(A, axis=0) if n else np.zeros(p)
    work1 = qraux.copy()
    work2 = np.where(qraux == 0, 1.0, qraux)
    k = p  # columns 0..k-1 are not (yet) moved to the end
    for col in range(min(n, p)):
        while col < k and qraux[col] < work2[col] * tol:
            perm = [*range(col + 1, p), col]
            A[:, col:] = A[:, perm]
            order[col:] = [order[i] for i in perm]
            qraux[col:] = qraux[perm]
            work1[col:] = work1[perm]
            work2[col:] = work2[perm]
            k -= 1
        if col == n - 1:
            break
        x = A[col:, col]
        nrm = float(np.linalg.norm(x))
        if nrm == 0.0:
            continue
        if x[0] != 0:
            nrm = math.copysign(nrm, x[0])
        x /= nrm
        x[0] += 1.0
        for j in range(col + 1, p):
            t = -float(x @ A[col:, j]) / x[0]
            A[col:, j] += t * x
            if qraux[j] != 0:
                tt = max(1.0 - (abs(A[col, j]) / qraux[j]) ** 2, 0.0)
                if abs(tt) >= 1e-6:
                    qraux[j] *= math.sqrt(tt)
                else:
                    qraux[j] = float(np.linalg.norm(A[col + 1 :, j]))
                    work1[j] = qraux[j]
        qraux[col] = x[0]
        A[col, col] = -nrm
    rank = min(k, n)
    out = np.zeros(p, dtype=bool)
    out[order[rank:]] = True
    return out


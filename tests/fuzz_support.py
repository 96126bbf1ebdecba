"""Shared pieces of the property-based (``hypothesis``) fault tests.

- ``outcome(target, call, file=...)`` runs one generated case and classifies it: the call either
  returns (the caller then checks the result) or raises abrflow's own error naming the file; any
  other exception is an *escape*: counted, then re-raised so the test fails and hypothesis shrinks it.
- ``must_succeed``/``must_refuse``: ``outcome`` for a case whose validity is known from how it was
  built. Valid input must succeed (a named error is a refusal of valid input: it fails the test and
  counts as an escape); invalid input must raise the named error (accepting it fails and counts too).
  So a reader that raised a well-named error on every value, or accepted every value, fails.
- ``number_texts(value)``: ways an export spells one number (repr, fixed, exponent, a sign, padding).
- ``CASES``/``ESCAPES`` count generated cases per target; ``tests/conftest.py`` prints them at the end
  of the session (merged across xdist workers) and writes them to ``$ABRFLOW_FUZZ_COUNTS`` if set.
- ``mutations(seed)`` is a strategy of damaged copies of a valid file: truncated, bytes flipped,
  overwritten, inserted or deleted, a field replaced by a hostile token (NaN, inf, 1e400, text,
  NUL, non-ASCII, 400 digits), lines dropped or repeated, the text re-encoded (UTF-16, Latin-1),
  or emptied.

Profiles (registered in conftest): ``default`` (``make test``, few examples, derandomized) and
``fuzz`` (``HYPOTHESIS_PROFILE=fuzz``, ``make fuzz``).
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

from abrflow.errors import AbrflowError

CASES: collections.Counter[str] = collections.Counter()
ESCAPES: collections.Counter[str] = collections.Counter()

#: Field values a damaged or hostile export may carry.
HOSTILE_TOKENS = ("", " ", "nan", "NaN", "inf", "-inf", "Infinity", "1e400", "-1e400", "1e38", "3.5e38", "-3.5e38",
                  "1e-400", "9" * 400, "0x1F", "abc", "1,5", '"', "\x00", "ÿ", "ş", "€", "\ufeff", "None", "null",
                  "-0", "0", "-1", "1e308", "2147483648", "-9223372036854775809", "  12  ", "1e5", "12.5.3")


class Escape(AssertionError):
    """A generated case that raised something other than an AbrflowError, or a nameless one."""


def outcome(target: str, call: Callable[[], Any], *, file: str | None = None,
            allowed: tuple[type[BaseException], ...] = (AbrflowError,)) -> tuple[Any, BaseException | None]:
    """Run one case: ``(result, None)`` or ``(None, error)``; an escape fails the test.

    ``file``: the error message must name it (the file a clinic engineer has to open).
    """
    CASES[target] += 1
    try:
        return call(), None
    except allowed as exc:
        if file is not None and file not in str(exc):
            ESCAPES[target] += 1
            raise Escape(f"{target}: {type(exc).__name__} does not name {file!r}: {exc}") from exc
        return None, exc
    except Exception as exc:
        ESCAPES[target] += 1
        raise Escape(f"{target}: escaped as {type(exc).__name__}: {exc}") from exc


def fail(target: str, message: str) -> None:
    """A case returned something it must not (a silently changed value, an invalid record)."""
    ESCAPES[target] += 1
    raise Escape(f"{target}: {message}")


def must_succeed(target: str, call: Callable[[], Any], what: str, *, file: str | None = None) -> Any:
    """A valid-by-construction case: the result; any error (a named one included) fails the test."""
    result, error = outcome(target, call, file=file)
    if error is not None:
        fail(target, f"valid input refused: {what}: {type(error).__name__}: {error}")
    return result


def must_refuse(target: str, call: Callable[[], Any], what: str, *, file: str | None = None,
                allowed: tuple[type[BaseException], ...] = (AbrflowError,)) -> BaseException:
    """An invalid-by-construction case: the named error it raised; returning fails the test."""
    _, error = outcome(target, call, file=file, allowed=allowed)
    if error is None:
        fail(target, f"invalid input accepted: {what}")
    return error


def number_texts(value: float):
    """Spellings of the finite float ``value`` as an export may write it, padded with spaces. Rounded
    spellings (7–9 digits) stay inside any range ``value`` is in whose bounds they can spell; the
    number the file holds is ``float(text)``, which is what a read must return."""
    spellings = [repr(value), f"{value:.9g}", f"{value:.6e}", f"{value:E}"]
    if math.copysign(1.0, value) > 0:
        spellings.append(f"+{value!r}")
    if value.is_integer() and abs(value) < 1e15:
        spellings += [str(int(value)), f"{value:.1f}"]
    return st.tuples(st.sampled_from(spellings), st.sampled_from(["", " ", "  "]),
                     st.sampled_from(["", " "])).map(lambda t: t[1] + t[0] + t[2])


# ---------------------------------------------------------------- damaged files


def _replace_field(data: bytes, line_index: int, field_index: int, token: str, sep: bytes) -> bytes:
    lines = data.split(b"\n")
    line_index %= len(lines)
    fields = lines[line_index].split(sep)
    fields[field_index % len(fields)] = token.encode("utf-8")
    lines[line_index] = sep.join(fields)
    return b"\n".join(lines)


@st.composite
def _one_mutation(draw, data: bytes, sep: bytes | None, header_lines: int) -> bytes:
    n = len(data)
    kinds = ["truncate", "flip", "overwrite", "insert", "delete", "empty"]
    if sep is not None:
        kinds += ["field", "field", "field", "drop_line", "repeat_line", "reencode"]
    kind = draw(st.sampled_from(kinds))
    if kind == "empty" or n == 0:
        return b"" if draw(st.booleans()) else b"\n\r\n  \n"
    position = draw(st.integers(0, max(0, n - 1)))
    if kind == "truncate":
        return data[:position]
    if kind == "flip":
        return data[:position] + bytes([data[position] ^ draw(st.integers(1, 255))]) + data[position + 1:]
    if kind == "overwrite":
        chunk = draw(st.binary(min_size=1, max_size=16))
        return data[:position] + chunk + data[position + len(chunk):]
    if kind == "insert":
        return data[:position] + draw(st.binary(min_size=1, max_size=16)) + data[position:]
    if kind == "delete":
        return data[:position] + data[position + draw(st.integers(1, 64)):]
    n_lines = data.count(b"\n") + 1
    line = draw(st.one_of(st.integers(0, max(0, min(header_lines, n_lines) - 1)), st.integers(0, n_lines - 1)))
    if kind == "field":
        token = draw(st.one_of(st.sampled_from(HOSTILE_TOKENS), st.text(max_size=8),
                               st.floats().map(repr)))
        return _replace_field(data, line, draw(st.integers(0, 10_000)), token, sep)
    lines = data.split(b"\n")
    if kind == "drop_line":
        return b"\n".join(lines[:line] + lines[line + 1:])
    if kind == "repeat_line":
        return b"\n".join(lines[:line + 1] + lines[line:])
    # reencode: the same text saved in another code page
    text = data.decode("utf-8", errors="replace")
    encoding = draw(st.sampled_from(["utf-16", "utf-16-le", "latin-1", "cp1254", "utf-32"]))
    if encoding in ("latin-1", "cp1254"):
        text = text.replace("Patient", "Hasta Adı ş", 1).replace("Identifier", "Identifier ş", 1)
    return text.encode(encoding, errors="replace")


def mutations(seed: bytes, *, sep: bytes | None = b",", header_lines: int = 40, max_ops: int = 3):
    """Damaged copies of ``seed``: 1–``max_ops`` mutations applied in turn."""

    @st.composite
    def strategy(draw):
        data = seed
        for _ in range(draw(st.integers(1, max_ops))):
            data = draw(_one_mutation(data, sep, header_lines))
        return data

    return strategy()


#: Floats as a clinic export might hold them: ordinary values, NaN, ±inf, huge and tiny.
def hostile_floats(lo: float = -1e3, hi: float = 1e3):
    return st.one_of(st.floats(lo, hi, allow_nan=False), st.sampled_from([float("nan"), float("inf"), -float("inf"),
                                                                          1e308, -1e308, 1e39, 5e-324]),
                     st.floats())

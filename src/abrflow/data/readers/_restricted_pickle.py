"""The restricted unpickler of the original project's pickle: only the globals the format needs.

``pickle.load`` runs whatever callable a file names, so a legacy pickle is loaded through
:class:`LegacyUnpickler`: it resolves only the globals the format needs (NumPy array, dtype and
scalar reconstruction; plain containers; dates) and any other global is refused *before* it can be
called. The two scikit-learn objects in the file (``StandardScaler``, ``LabelEncoder``) are rebuilt
as inert stand-ins that only hold their fitted attributes: no scikit-learn code runs on load.
"""

from __future__ import annotations

import builtins
import collections
import copyreg
import datetime
import pickle
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ...errors import DataError


class _FittedAttributes:
    """Inert holder for a pickled scikit-learn estimator: keeps its state dict, runs nothing."""

    def __setstate__(self, state: object) -> None:
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"{type(self).__name__} state must be a dict, got {type(state).__name__}")
        self.__dict__.update(state)


class StandardScalerState(_FittedAttributes):
    """Stands in for ``sklearn.preprocessing.StandardScaler`` (mean_, scale_, with_mean, with_std)."""


class LabelEncoderState(_FittedAttributes):
    """Stands in for ``sklearn.preprocessing.LabelEncoder`` (classes_)."""


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a global outside the allow-list; nothing it names was called."""

    def __init__(self, module: str, name: str):
        self.qualified_name = f"{module}.{name}"
        super().__init__(f"refused global {self.qualified_name}")


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol 2 uses it for bytes; any other codec is refused."""
    if not isinstance(text, str) or encoding.replace("-", "").replace("_", "").lower() != "latin1":
        raise pickle.UnpicklingError(f"_codecs.encode only allowed for latin1 text, got {encoding!r}")
    return text.encode("latin1")


def _bytes(*args: object) -> bytes:
    """``builtins.bytes`` as pickles use it (from text + codec, or from a list of byte values); a bare
    size (``bytes(10**10)``) would allocate memory the file does not hold, so it is refused."""
    if args and isinstance(args[0], int):
        raise pickle.UnpicklingError("bytes(size) is not part of the legacy format")
    return bytes(*args)


def _bytearray(*args: object) -> bytearray:
    """``builtins.bytearray`` without the size form (see ``_bytes``)."""
    if args and isinstance(args[0], int):
        raise pickle.UnpicklingError("bytearray(size) is not part of the legacy format")
    return bytearray(*args)


class _NdarrayType:
    """Stands in for the global ``numpy.ndarray``: NumPy pickles only pass it to ``_reconstruct``;
    called directly (``ndarray(shape)``) it would allocate an array the file does not hold."""

    def __new__(cls, *args: object, **kwargs: object):
        raise pickle.UnpicklingError("numpy.ndarray(shape) called directly is not part of the legacy format")


def _array_reconstruct(core):
    def reconstruct(subtype: object, shape: object, dtype: object) -> np.ndarray:
        """``_reconstruct(ndarray, (0,), b'b')`` as NumPy writes it: an empty array that the next
        opcode fills from the file's own bytes (whose length NumPy checks against the shape)."""
        if subtype is not _NdarrayType or tuple(shape) != (0,):
            raise pickle.UnpicklingError("numpy _reconstruct is only allowed as NumPy writes it: "
                                         "(numpy.ndarray, (0,), …)")
        return core.multiarray._reconstruct(np.ndarray, (0,), dtype)

    return reconstruct


def _reconstructor(cls: type, base: type, state: object) -> object:
    """``copyreg._reconstructor`` (protocols 0/1) restricted to the inert stand-ins."""
    if not (isinstance(cls, type) and issubclass(cls, _FittedAttributes)) or base is not object or state is not None:
        raise pickle.UnpicklingError("copyreg._reconstructor only allowed for scikit-learn stand-ins")
    return copyreg._reconstructor(cls, base, state)


def _numpy_core():
    try:
        from numpy import _core as core  # NumPy >= 2
    except ImportError:  # pragma: no cover - NumPy 1.x
        from numpy import core
    return core


def _allowed_globals() -> dict[tuple[str, str], object]:
    core = _numpy_core()
    allowed: dict[tuple[str, str], object] = {
        ("numpy", "ndarray"): _NdarrayType,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
        ("copyreg", "_reconstructor"): _reconstructor,
        ("copy_reg", "_reconstructor"): _reconstructor,  # protocols 0/1 write Python 2 names
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("collections", "defaultdict"): collections.defaultdict,
        ("collections", "deque"): collections.deque,
        ("datetime", "datetime"): datetime.datetime,
        ("datetime", "date"): datetime.date,
        ("datetime", "time"): datetime.time,
        ("datetime", "timedelta"): datetime.timedelta,
        ("datetime", "timezone"): datetime.timezone,
    }
    # Pickles written by NumPy 1.x name numpy.core, by NumPy 2.x numpy._core; both mean the same.
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = _array_reconstruct(core)
        allowed[(f"{package}.multiarray", "scalar")] = core.multiarray.scalar
        allowed[(f"{package}.numeric", "_frombuffer")] = core.numeric._frombuffer
    # No "range": list(range(10**12)) would build from a few bytes more than any memory holds.
    for name in ("set", "frozenset", "slice", "complex", "list", "dict", "tuple", "int", "float", "str", "bool",
                 "object"):
        allowed[("builtins", name)] = allowed[("__builtin__", name)] = getattr(builtins, name)
    for module in ("builtins", "__builtin__"):
        allowed[(module, "bytes")], allowed[(module, "bytearray")] = _bytes, _bytearray
    for module in ("sklearn.preprocessing._data", "sklearn.preprocessing.data"):
        allowed[(module, "StandardScaler")] = StandardScalerState
    for module in ("sklearn.preprocessing._label", "sklearn.preprocessing.label"):
        allowed[(module, "LabelEncoder")] = LabelEncoderState
    return allowed


_ALLOWED_GLOBALS = _allowed_globals()


class LegacyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only ``_ALLOWED_GLOBALS``; everything else raises ``RefusedGlobal``."""

    def find_class(self, module: str, name: str) -> object:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise RefusedGlobal(module, name) from None

    def persistent_load(self, pid: object) -> object:
        raise pickle.UnpicklingError("persistent ids are not part of the legacy format")


def load_restricted(path: Path) -> object:
    try:
        with open(path, "rb") as fh:
            return LegacyUnpickler(fh).load()
    except RefusedGlobal as exc:
        raise DataError(
            f"refused to load {exc.qualified_name!r}: a legacy pickle may only contain NumPy arrays, "
            "plain containers and the fitted StandardScaler/LabelEncoder; nothing in the file was run",
            file=str(path)) from None
    except OSError as exc:
        raise DataError(f"cannot read file ({exc})", file=str(path)) from exc
    except Exception as exc:  # any malformed byte stream: truncated, wrong opcodes, bad arguments
        raise DataError(f"not a readable legacy pickle ({type(exc).__name__}: {exc})", file=str(path)) from exc


def _invalid_unicode(arr: np.ndarray) -> bool:
    """A NumPy text array (or scalar) holding code points that are not characters: NumPy builds such
    text from raw pickle bytes without checking, and Python's str operations then fail with SystemError."""
    codes = np.asarray(arr).reshape(-1).view(np.uint32)
    return bool(((codes > 0x10FFFF) | ((codes >= 0xD800) & (codes <= 0xDFFF))).any())


def reject_invalid_text(container: object, file: str) -> None:
    """Walk the loaded objects (iteratively: nesting may be deep) for NumPy text with invalid code points."""
    stack: list[tuple[object, str]] = [(container, "")]
    while stack:
        obj, where = stack.pop()
        if isinstance(obj, (np.ndarray, np.str_)):
            if obj.dtype.kind == "U" and _invalid_unicode(obj):
                raise DataError("damaged text: a NumPy string holds invalid Unicode code points", file=file,
                                field=where.lstrip(".") or None)
            if obj.dtype.kind == "O":
                stack.extend((v, f"{where}[{i}]") for i, v in enumerate(np.asarray(obj).reshape(-1).tolist()))
        elif isinstance(obj, Mapping):
            stack.extend((k, where) for k in obj.keys())
            stack.extend((v, f"{where}.{k}" if isinstance(k, str) else f"{where}[{k!r}]") for k, v in obj.items())
        elif isinstance(obj, (list, tuple, set, frozenset, collections.deque)):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(obj))
        elif isinstance(obj, _FittedAttributes):
            stack.extend((v, f"{where}.{k}") for k, v in vars(obj).items())

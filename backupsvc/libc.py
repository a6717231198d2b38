"""C library functions the data path calls through ctypes, each looked up once.

Memory tuning (:mod:`backupsvc.memory`), early writeback
(:mod:`backupsvc.writeback`) and page-cache residency (:mod:`backupsvc.directio`)
need calls the standard library does not offer. Where there is no such C
library or function (not Linux, not glibc), :func:`function` says None and the
callers do without.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Any


@functools.cache
def _library() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    except OSError:
        return None


@functools.cache
def function(name: str, argtypes: tuple[Any, ...] | None = None,
             restype: Any = ctypes.c_int) -> Any:
    """The C function ``name`` with this signature, or None if the library lacks it.

    Each signature gets its own function object, so two callers never change
    each other's argument types.
    """
    lib = _library()
    if lib is None:
        return None
    try:
        func = lib[name]
    except AttributeError:
        return None
    if argtypes is not None:
        func.argtypes = list(argtypes)
    func.restype = restype
    return func

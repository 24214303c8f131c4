"""In-place prediction through XGBoost's C API (``XGBoosterPredictFromDense``, declared in c_api.h).

``Booster.inplace_predict``'s answer, quicker (benchmarks/README.md) and without the GIL; one proxy DMatrix per thread.
"""

from __future__ import annotations

import ctypes
import threading

import numpy as np
import xgboost as xgb
from xgboost.libpath import find_lib_path

_LIB = ctypes.CDLL(find_lib_path()[0])  # the library xgboost loaded; own prototypes, xgboost's left untouched
_LIB.XGBGetLastError.restype = ctypes.c_char_p
_PREDICT = _LIB.XGBoosterPredictFromDense
_PREDICT.restype = ctypes.c_int
_PREDICT.argtypes = [
    ctypes.c_void_p,  # BoosterHandle
    ctypes.c_char_p,  # array interface of the input (JSON)
    ctypes.c_char_p,  # prediction configuration (JSON)
    ctypes.c_void_p,  # proxy DMatrix
    ctypes.POINTER(ctypes.POINTER(ctypes.c_uint64)),  # out: shape
    ctypes.POINTER(ctypes.c_uint64),  # out: number of dimensions
    ctypes.POINTER(ctypes.POINTER(ctypes.c_float)),  # out: predictions, valid until this thread's next call
]
# type 0: the objective's transformed output (class index for multi:softmax, probabilities for multi:softprob);
# iterations 0..0: every tree; NaN marks a missing value.
_CONFIG = (
    b'{"type": 0, "training": false, "iteration_begin": 0, "iteration_end": 0, "strict_shape": false, '
    b'"missing": NaN, "cache_id": 0}'
)


def _check(status: int) -> None:
    if status != 0:
        raise xgb.core.XGBoostError(_LIB.XGBGetLastError().decode("utf-8", "replace"))


class _Proxy:
    """A proxy DMatrix, freed with the thread that made it."""

    def __init__(self) -> None:
        self.handle = ctypes.c_void_p()
        _check(_LIB.XGProxyDMatrixCreate(ctypes.byref(self.handle)))
        self._free = _LIB.XGDMatrixFree  # kept here: module globals are gone when the last thread ends at exit

    def __del__(self) -> None:
        self._free(self.handle)


_local = threading.local()


def predict(booster: xgb.Booster, features: np.ndarray) -> np.ndarray:
    """What ``booster.inplace_predict(features, missing=np.nan)`` returns, for a float32 matrix."""
    features = np.ascontiguousarray(features, dtype=np.float32)
    rows, columns = features.shape
    interface = b'{"data": [%d, true], "shape": [%d, %d], "typestr": "<f4", "version": 3}' % (
        features.ctypes.data,
        rows,
        columns,
    )
    proxy = getattr(_local, "proxy", None)
    if proxy is None:
        proxy = _local.proxy = _Proxy()
    shape = ctypes.POINTER(ctypes.c_uint64)()
    dims = ctypes.c_uint64()
    output = ctypes.POINTER(ctypes.c_float)()
    _check(
        _PREDICT(
            booster.handle.value,
            interface,
            _CONFIG,
            proxy.handle,
            ctypes.byref(shape),
            ctypes.byref(dims),
            ctypes.byref(output),
        )
    )
    out_shape = tuple(shape[i] for i in range(dims.value))
    count = 1
    for length in out_shape:
        count *= length
    return np.frombuffer(ctypes.string_at(output, 4 * count), dtype=np.float32).reshape(out_shape)

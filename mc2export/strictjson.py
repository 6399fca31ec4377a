"""Strict JSON for files we did not write: :func:`loads` never returns NaN or infinity and never raises
RecursionError -- everything it refuses is a :class:`BadJSON` (a ``ValueError``, so existing
``except ValueError`` handlers keep working)."""
from __future__ import annotations

import json
import math

MAX_JSON_BYTES = 16 << 20     # config.json / manifest.json / results files: far above any real one
MAX_JSON_DEPTH = 32


class BadJSON(ValueError):
    """JSON we refuse: not JSON, NaN / Infinity, a number that overflows, too large or too deep."""


def _no_constant(name: str):
    raise BadJSON(f"{name} is not a number JSON allows")


def _finite_float(text: str) -> float:
    x = float(text)
    if not math.isfinite(x):
        raise BadJSON(f"number {text[:40]} is out of range")
    return x


def _depth_ok(obj, limit: int) -> bool:
    stack = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if isinstance(o, (dict, list)):
            if d > limit:
                return False
            stack.extend((v, d + 1) for v in (o.values() if isinstance(o, dict) else o))
    return True


def loads(data, limit: int = MAX_JSON_BYTES, depth: int = MAX_JSON_DEPTH):
    """Strict JSON: ``BadJSON`` for anything we refuse (never RecursionError, never NaN or inf)."""
    if isinstance(data, (bytes, bytearray)):
        if len(data) > limit:
            raise BadJSON(f"{len(data)} bytes, more than {limit}")
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as e:
            raise BadJSON(f"not UTF-8 (byte {e.start})") from None
    elif len(data) > limit:
        raise BadJSON(f"{len(data)} characters, more than {limit}")
    try:
        obj = json.loads(data, parse_constant=_no_constant, parse_float=_finite_float)
    except BadJSON:
        raise
    except RecursionError:
        raise BadJSON("nested too deeply") from None
    except ValueError as e:  # JSONDecodeError, int too long
        raise BadJSON(str(e).splitlines()[0][:120]) from None
    if not _depth_ok(obj, depth):
        raise BadJSON(f"nested deeper than {depth} levels")
    return obj


__all__ = ["BadJSON", "loads", "MAX_JSON_BYTES", "MAX_JSON_DEPTH"]

"""The results schema (``schema.json``) and a tiny JSON Schema validator for it (no dependency).

The validator implements the subset of JSON Schema 2020-12 that ``schema.json`` uses: ``type`` (one or a
list), ``const``, ``enum``, ``properties``, ``required``, ``additionalProperties`` (bool or schema),
``minProperties``, ``items``, ``minItems``, ``minimum``, ``maximum``, ``minLength``, ``pattern``,
``anyOf`` and local ``$ref`` (``#/$defs/...``). When the ``jsonschema`` package happens to be installed,
:func:`validate` also runs it (it is not a dependency).
"""
from __future__ import annotations

import csv
import io
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, List

from ..errors import UserError

SCHEMA_PATH = Path(__file__).with_name("schema.json")


@lru_cache(maxsize=1)
def load_schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def _type_ok(value: Any, t: str) -> bool:
    if t == "object":
        return isinstance(value, dict)
    if t == "array":
        return isinstance(value, list)
    if t == "string":
        return isinstance(value, str)
    if t == "boolean":
        return isinstance(value, bool)
    if t == "null":
        return value is None
    if t == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if t == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    raise ValueError(f"unsupported type {t!r} in schema")


def _resolve(ref: str, root: dict) -> dict:
    if not ref.startswith("#/"):
        raise ValueError(f"only local $ref supported, got {ref!r}")
    node = root
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def errors(instance: Any, schema: dict = None, root: dict = None, path: str = "$") -> List[str]:
    """Every violation as ``'<json path>: <message>'`` (empty list: valid)."""
    root = root if root is not None else (schema if schema is not None else load_schema())
    schema = schema if schema is not None else root
    out: List[str] = []
    if "$ref" in schema:
        out += errors(instance, _resolve(schema["$ref"], root), root, path)
    if "anyOf" in schema:
        if not any(not errors(instance, s, root, path) for s in schema["anyOf"]):
            out.append(f"{path}: matches none of the allowed forms")
    if "const" in schema and instance != schema["const"]:
        out.append(f"{path}: must be {schema['const']!r}, got {instance!r}")
    if "enum" in schema and instance not in schema["enum"]:
        out.append(f"{path}: {instance!r} is not one of {schema['enum']}")
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_type_ok(instance, t) for t in types):
            out.append(f"{path}: expected {'/'.join(types)}, got {type(instance).__name__}")
            return out
    if isinstance(instance, bool):
        return out
    if isinstance(instance, (int, float)):
        if "minimum" in schema and instance < schema["minimum"]:
            out.append(f"{path}: {instance} < minimum {schema['minimum']}")
        if "maximum" in schema and instance > schema["maximum"]:
            out.append(f"{path}: {instance} > maximum {schema['maximum']}")
    if isinstance(instance, str):
        if "minLength" in schema and len(instance) < schema["minLength"]:
            out.append(f"{path}: shorter than {schema['minLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], instance):
            out.append(f"{path}: {instance!r} does not match {schema['pattern']!r}")
    if isinstance(instance, list):
        if "minItems" in schema and len(instance) < schema["minItems"]:
            out.append(f"{path}: fewer than {schema['minItems']} items")
        if "items" in schema:
            for i, item in enumerate(instance):
                out += errors(item, schema["items"], root, f"{path}[{i}]")
    if isinstance(instance, dict):
        for key in schema.get("required", []):
            if key not in instance:
                out.append(f"{path}: missing required '{key}'")
        if "minProperties" in schema and len(instance) < schema["minProperties"]:
            out.append(f"{path}: fewer than {schema['minProperties']} properties")
        props = schema.get("properties", {})
        for key, value in instance.items():
            if key in props:
                out += errors(value, props[key], root, f"{path}.{key}")
            elif schema.get("additionalProperties") is False:
                out.append(f"{path}: unexpected property '{key}'")
            elif isinstance(schema.get("additionalProperties"), dict):
                out += errors(value, schema["additionalProperties"], root, f"{path}.{key}")
    return out


def validate(doc: Any, what: str = "results") -> None:
    """Raise ``UserError`` naming the first problems when ``doc`` does not follow ``schema.json``."""
    errs = errors(doc)
    try:  # an independent check when the package exists; never required
        import jsonschema  # type: ignore

        v = jsonschema.Draft202012Validator(load_schema())
        errs += [f"$.{'.'.join(str(p) for p in e.absolute_path)}: {e.message} (jsonschema)"
                 for e in v.iter_errors(doc)]
    except ImportError:
        pass
    if errs:
        more = f" (+{len(errs) - 3} more)" if len(errs) > 3 else ""
        raise UserError(f"{what} do not follow the mc2export bench schema: {'; '.join(errs[:3])}{more}")


def csv_errors(text: str) -> List[str]:
    """Problems of a results CSV against ``schema.json``'s ``x-csv`` section."""
    spec = load_schema()["x-csv"]
    cols = spec["columns"]
    reader = csv.DictReader(io.StringIO(text))
    out = []
    if reader.fieldnames != list(cols):
        return [f"header {reader.fieldnames} != {list(cols)}"]
    n = 0
    for i, row in enumerate(reader, start=2):
        n += 1
        for c, t in cols.items():
            v = row[c]
            if v == "":
                if c in spec["required"]:
                    out.append(f"line {i}: '{c}' is empty")
                continue
            try:
                if t == "integer":
                    int(v)
                elif t == "number":
                    float(v)
            except ValueError:
                out.append(f"line {i}: '{c}' = {v!r} is not a {t}")
            if c in spec.get("enums", {}) and v not in spec["enums"][c]:
                out.append(f"line {i}: '{c}' = {v!r} is not one of {spec['enums'][c]}")
    if n == 0:
        out.append("no rows")
    return out


MAX_RESULTS_BYTES = 64 << 20
MAX_NUMBER = 1e15  # far above any latency (ms), memory (bytes) or count; a sum of a few stays finite


def _first_absurd(doc, path: str = "$"):
    """(path, value) of the first number beyond +-MAX_NUMBER in ``doc`` (e.g. a latency of 1e308), or None."""
    stack = [(doc, path)]
    while stack:
        o, at = stack.pop()
        if isinstance(o, dict):
            stack.extend((v, f"{at}.{k}") for k, v in o.items())
        elif isinstance(o, list):
            stack.extend((v, f"{at}[{i}]") for i, v in enumerate(o))
        elif isinstance(o, (int, float)) and not isinstance(o, bool) and abs(o) > MAX_NUMBER:
            return at, float(o)
    return None


def load_results(path) -> dict:
    """Read and validate a results document (``mc2export bench --json`` or an app's JSON file)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"results file not found: '{p}': pass files written by `mc2export bench --json` "
                        "or by a sample app's benchmark mode")
    from ..export.reading import BadJSON, loads

    hint = "pass a results file written by `mc2export bench --json`"
    try:
        with open(p, "rb") as f:
            doc = loads(f.read(MAX_RESULTS_BYTES + 1), limit=MAX_RESULTS_BYTES)
    except OSError as e:
        raise UserError(f"cannot read '{p}' ({e.strerror or e}): {hint}") from None
    except BadJSON as e:
        raise UserError(f"'{p}' is not valid JSON ({e}): {hint}") from None
    big = _first_absurd(doc)
    if big is not None:
        raise UserError(f"'{p}' holds an absurd number ({big[1]:.3g} at {big[0]}): {hint}")
    validate(doc, what=f"results in '{p}'")
    return doc


__all__ = ["load_schema", "errors", "validate", "csv_errors", "load_results", "SCHEMA_PATH"]

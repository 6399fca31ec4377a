"""The sample apps' photo index (``.mc2i``, docs/app_index.md): the Python reference and its conformance vectors.

The iOS, Android and web apps keep their photo index in one append-only file: a header naming the model
that built it, then PUT / DELETE records with a CRC each, fp16 vectors. This module is the reference those
ports are checked against: :func:`replay` (read, keep a torn tail out), :class:`Appender` (truncate a torn
tail, append a batch with one write + fsync, compact atomically), :func:`search` (float32 dot products over
the fp16 vectors, top-k by partial selection), and :func:`write_vectors`, which writes
``examples/shared/vectors/index/`` (``python -m mc2export.appindex DIR``).
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from .errors import UserError

MAGIC = b"MC2INDEX"
VERSION = 1
MAX_HEADER = 65536
MAX_KEY = 4096
MAX_DIM = 8192
PUT, DELETE = 1, 2
IDENTITY = ("variant", "precision", "bundle_sha256", "dim")  # what must match the loaded bundle


def header(variant: str, precision: str, bundle_sha256: str, dim: int) -> dict:
    """The header of an index built by a bundle (``bundle_sha256``: the sha256 of its ``config.json``)."""
    return {"variant": variant, "precision": precision, "bundle_sha256": bundle_sha256, "dim": int(dim),
            "vector_dtype": "float16"}


def bundle_header(bundle) -> dict:
    """The header for an index built with the bundle folder ``bundle``."""
    folder = Path(bundle)
    data = (folder / "config.json").read_bytes()
    cfg = json.loads(data)
    return header(cfg["variant"], cfg["precision"], hashlib.sha256(data).hexdigest(), cfg["embed_dim"])


def _check_header(h: object) -> dict:
    if not isinstance(h, dict):
        raise UserError("index header is not a JSON object: the file is not an mc2export photo index")
    for k, t in (("variant", str), ("precision", str), ("bundle_sha256", str), ("dim", int), ("vector_dtype", str)):
        if not isinstance(h.get(k), t) or isinstance(h.get(k), bool):
            raise UserError(f"index header field '{k}' is missing or not a {t.__name__}: the index is damaged")
    if not 1 <= h["dim"] <= MAX_DIM:
        raise UserError(f"index header dim {h['dim']} is outside 1..{MAX_DIM}: the index is damaged")
    if h["vector_dtype"] != "float16":
        raise UserError(f"index vector_dtype '{h['vector_dtype']}' is not float16: written by a newer app")
    if len(h["bundle_sha256"]) != 64 or any(c not in "0123456789abcdef" for c in h["bundle_sha256"]):
        raise UserError("index header bundle_sha256 is not 64 lowercase hex digits: the index is damaged")
    return h


def encode_header(h: dict) -> bytes:
    body = json.dumps(_check_header(dict(h)), sort_keys=True, separators=(",", ":")).encode("utf-8")
    return MAGIC + struct.pack("<II", VERSION, len(body)) + body


def _record(kind: int, key: str, stamp: int, bits: bytes = b"") -> bytes:
    k = key.encode("utf-8")
    if not 1 <= len(k) <= MAX_KEY:
        raise ValueError(f"index key of {len(k)} bytes: keys are 1..{MAX_KEY} bytes of UTF-8")
    body = struct.pack("<BH", kind, len(k)) + k + struct.pack("<q", int(stamp)) + bits
    return body + struct.pack("<I", zlib.crc32(body))


def fp16_bits(vector) -> np.ndarray:
    """The stored form of an embedding: L2-normalized in float32, then IEEE binary16 (nearest even)."""
    v = np.asarray(vector, np.float32).reshape(-1)
    n = np.float32(np.sqrt(np.dot(v.astype(np.float64), v.astype(np.float64))))
    if not np.isfinite(n) or n == 0:
        raise ValueError("embedding is zero or not finite: nothing to index")
    return (v / n).astype("<f2")


def encode_put(key: str, stamp: int, vector) -> bytes:
    return _record(PUT, key, stamp, fp16_bits(vector).tobytes())


def encode_delete(key: str, stamp: int = 0) -> bytes:
    return _record(DELETE, key, stamp)


@dataclass
class Index:
    """A replayed index: live keys in first-insertion order, their stamps and fp16 vectors ``[N, dim]``."""
    header: dict
    keys: List[str] = field(default_factory=list)
    stamps: List[int] = field(default_factory=list)
    vectors: np.ndarray = None
    valid_length: int = 0      # bytes of the file that replay accepted
    dropped: int = 0           # bytes of torn tail after them
    records: int = 0           # whole records read (live or dead)

    def position(self) -> Dict[str, int]:
        return {k: i for i, k in enumerate(self.keys)}


def _parse_header(data: bytes) -> Tuple[dict, int]:
    if len(data) < 16 or data[:8] != MAGIC:
        raise UserError("not an mc2export photo index (no MC2INDEX header)")
    version, hlen = struct.unpack_from("<II", data, 8)
    if version != VERSION:
        raise UserError(f"photo index version {version}: written by another app version (this one reads {VERSION})")
    if not 1 <= hlen <= MAX_HEADER or 16 + hlen > len(data):
        raise UserError("photo index header is truncated or damaged")
    try:
        h = json.loads(data[16:16 + hlen].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise UserError("photo index header is not valid JSON: the index is damaged") from None
    return _check_header(h), 16 + hlen


def replay(data: bytes, expect: Optional[dict] = None) -> Index:
    """Replay an index file's bytes (docs/app_index.md, "Reading"). ``expect``: the header of the loaded
    bundle; an index of another model is refused (``UserError``)."""
    h, off = _parse_header(data)
    if expect is not None:
        diff = [k for k in IDENTITY if h.get(k) != expect.get(k)]
        if diff:
            raise UserError(f"this photo index was built by another model ({', '.join(f'{k} {h[k]!r}' for k in diff)}"
                            f"; the loaded bundle has {', '.join(repr(expect.get(k)) for k in diff)}): rebuild the index")
    dim = h["dim"]
    live: Dict[str, Tuple[int, bytes]] = {}  # insertion-ordered: a replacement keeps its place, a re-add goes last
    records = 0
    n = len(data)
    while off < n:
        if off + 3 > n:
            break
        kind, klen = struct.unpack_from("<BH", data, off)
        if kind not in (PUT, DELETE) or not 1 <= klen <= MAX_KEY:
            break
        vbytes = 2 * dim if kind == PUT else 0
        end = off + 3 + klen + 8 + vbytes + 4
        if end > n:
            break
        if zlib.crc32(data[off:end - 4]) != struct.unpack_from("<I", data, end - 4)[0]:
            break
        try:
            key = data[off + 3:off + 3 + klen].decode("utf-8")
        except UnicodeDecodeError:
            break
        stamp = struct.unpack_from("<q", data, off + 3 + klen)[0]
        if kind == PUT:
            live[key] = (stamp, data[off + 3 + klen + 8:end - 4])
        else:
            live.pop(key, None)
        records += 1
        off = end
    keys = list(live)
    stamps = [s for s, _ in live.values()]
    rows = b"".join(b for _, b in live.values())
    vectors = np.frombuffer(rows, "<f2").reshape(len(keys), dim)
    return Index(h, keys, stamps, vectors, valid_length=off, dropped=n - off, records=records)


def read(path, expect: Optional[dict] = None) -> Index:
    return replay(Path(path).read_bytes(), expect)


def search(vectors: np.ndarray, query, k: int) -> Tuple[np.ndarray, np.ndarray]:
    """Rows and scores of the ``k`` best matches of ``query`` (normalized here), best first; equal scores in
    index order. Scores: float32 dot products of the query with the fp16 vectors widened to float32."""
    q = np.asarray(query, np.float32).reshape(-1)
    q = q / np.float32(np.linalg.norm(q))
    scores = vectors.astype(np.float32) @ q
    k = min(int(k), len(scores))
    if k <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    order = np.lexsort((top, -scores[top]))  # score descending, then row ascending
    rows = top[order]
    return rows, scores[rows]


class Appender:
    """Append batches to an index file durably (docs/app_index.md, "Appending" and "Compaction").

    Opening replays the file (refusing another model's index), truncates a torn tail, and keeps the live
    state so that :meth:`needs` can tell which photos are new or changed."""

    def __init__(self, path, head: dict):
        self.path = Path(path)
        self.header = _check_header(dict(head))
        if self.path.exists():
            self.index = read(self.path, self.header)
            if self.index.dropped:
                with open(self.path, "r+b") as f:
                    f.truncate(self.index.valid_length)
                    os.fsync(f.fileno())
        else:
            _write_new(self.path, encode_header(self.header))
            self.index = read(self.path, self.header)
        self._stamps = dict(zip(self.index.keys, self.index.stamps))
        self.dead = self.index.records - len(self.index.keys)

    def needs(self, key: str, stamp: int) -> bool:
        return self._stamps.get(key) != stamp

    def append(self, puts: Iterable[Tuple[str, int, Sequence[float]]] = (), deletes: Iterable[str] = ()) -> None:
        """One batch: PUT records, then DELETE records, in one write followed by fsync."""
        blob = bytearray()
        for key, stamp, vec in puts:
            blob += encode_put(key, stamp, vec)
            self.dead += key in self._stamps
            self._stamps[key] = int(stamp)
        for key in deletes:
            blob += encode_delete(key)
            self.dead += 1 + (key in self._stamps)
            self._stamps.pop(key, None)
        if blob:
            with open(self.path, "ab") as f:
                f.write(blob)
                f.flush()
                os.fsync(f.fileno())

    def compact(self) -> Index:
        """Rewrite the live state into ``<name>.tmp`` and rename it over the index."""
        idx = read(self.path, self.header)
        blob = bytearray(encode_header(self.header))
        for key, stamp, bits in zip(idx.keys, idx.stamps, idx.vectors):
            blob += _record(PUT, key, stamp, bits.astype("<f2").tobytes())
        _write_new(self.path, bytes(blob))
        self.dead = 0
        return read(self.path, self.header)


def _write_new(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


# -- conformance vectors ------------------------------------------------------------------------------------

VECTOR_DIM = 16
VECTOR_HEADER = header("mobileclip2-s0", "fp32", hashlib.sha256(b"mc2export app index vectors").hexdigest(),
                       VECTOR_DIM)
OTHER_HEADER = header("mobileclip2-s2", "fp32", hashlib.sha256(b"another bundle").hexdigest(), VECTOR_DIM)


def _operations(rng: np.random.Generator) -> List[dict]:
    """PUTs of 60 photos (keys with non-ASCII and long names), replacements, deletes, a re-add, and a delete
    of an unknown key: every replay rule is exercised."""
    keys = [f"photo-{i:03d}.jpg" for i in range(60)]
    keys[7] = "Ferien/Straße am Meer – 海辺.HEIC"
    keys[11] = "content://media/external/images/media/" + "9" * 300
    ops = [{"op": "put", "key": k, "stamp": 1_700_000_000_000 + i, "vector": rng.normal(size=VECTOR_DIM).tolist()}
           for i, k in enumerate(keys)]
    for i in (3, 7, 40):  # changed photos: re-embedded, new stamp, same position
        ops.append({"op": "put", "key": keys[i], "stamp": 1_800_000_000_000 + i,
                    "vector": rng.normal(size=VECTOR_DIM).tolist()})
    for i in (5, 6, 59):
        ops.append({"op": "delete", "key": keys[i]})
    ops.append({"op": "delete", "key": "never-indexed.png"})
    ops.append({"op": "put", "key": keys[6], "stamp": 1_900_000_000_000, "vector": rng.normal(size=VECTOR_DIM).tolist()})
    return ops


def _file_of(head: dict, ops: List[dict]) -> bytes:
    blob = bytearray(encode_header(head))
    for o in ops:
        blob += encode_put(o["key"], o["stamp"], o["vector"]) if o["op"] == "put" else encode_delete(o["key"])
    return bytes(blob)


def write_vectors(out) -> List[str]:
    """Write the conformance vectors (docs/app_index.md) into ``out``; returns the file names."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2026)
    ops = _operations(rng)
    for o in ops:  # float32 values exactly as a port holds them
        if "vector" in o:
            o["vector"] = [float(x) for x in np.asarray(o["vector"], np.float32)]
    data = _file_of(VECTOR_HEADER, ops)
    idx = replay(data, VECTOR_HEADER)
    last_put = len(encode_put(ops[-1]["key"], ops[-1]["stamp"], ops[-1]["vector"]))
    torn = data[:len(data) - last_put // 2]
    corrupt = bytearray(data)
    corrupt[len(data) - 5] ^= 0x40  # a bit of the last record's vector: its CRC no longer matches
    other = _file_of(OTHER_HEADER, ops[:5])
    queries = [rng.normal(size=VECTOR_DIM).astype(np.float32) for _ in range(4)]
    queries.append(np.asarray(ops[20]["vector"], np.float32))  # a stored photo: its own best match
    searches = []
    for q in queries:
        for k in (1, 5, 100):
            rows, scores = search(idx.vectors, q, k)
            searches.append({"query": [float(x) for x in q], "k": k, "keys": [idx.keys[r] for r in rows],
                             "scores": [float(s) for s in scores]})
    torn_idx = replay(torn, VECTOR_HEADER)
    files = {"library.mc2i": data, "torn.mc2i": torn, "corrupt.mc2i": bytes(corrupt), "other_model.mc2i": other}
    for name, blob in files.items():
        (out / name).write_bytes(blob)
    expected = {
        "note": "docs/app_index.md; written by python -m mc2export.appindex",
        "header": VECTOR_HEADER,
        "live": [{"key": k, "stamp": s} for k, s in zip(idx.keys, idx.stamps)],
        "records": idx.records,
        "valid_length": idx.valid_length,
        "first_vectors": [[float(x) for x in v.astype(np.float32)] for v in idx.vectors[:3]],
        "first_vector_bits": [[int(b) for b in v.view("<u2")] for v in idx.vectors[:3]],
        "vectors_sha256": hashlib.sha256(np.ascontiguousarray(idx.vectors).tobytes()).hexdigest(),
        "score_tolerance": 1e-5,
        "searches": searches,
        "torn": {"file": "torn.mc2i", "live": len(torn_idx.keys), "records": torn_idx.records,
                 "valid_length": torn_idx.valid_length, "dropped": torn_idx.dropped,
                 "last_key": torn_idx.keys[-1]},
        "corrupt": {"file": "corrupt.mc2i", "live": len(torn_idx.keys), "records": torn_idx.records,
                    "valid_length": torn_idx.valid_length, "dropped": len(data) - torn_idx.valid_length},
        "other_model": {"file": "other_model.mc2i", "header": OTHER_HEADER,
                        "refused_because": "variant and bundle_sha256 differ from header"},
    }
    (out / "expected.json").write_text(json.dumps(expected, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    writer = {"note": "apply these operations to a new index with this header (one batch per operation is fine): "
                      "the file must be byte-identical to library.mc2i",
              "header": VECTOR_HEADER, "operations": ops, "sha256": hashlib.sha256(data).hexdigest(),
              "bytes": len(data)}
    (out / "writer.json").write_text(json.dumps(writer, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    return sorted(list(files) + ["expected.json", "writer.json"])


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("examples/shared/vectors/index")
    for name in write_vectors(target):
        print(target / name)

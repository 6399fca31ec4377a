"""CLIP byte-level BPE tokenizer, id-for-id equal to open_clip's ``SimpleTokenizer`` (no open_clip needed).

Every MobileCLIP / MobileCLIP2 text tower uses the OpenAI CLIP vocabulary (49,408 tokens) at context
length 77. The behaviour reproduced here (checked against ``shared/reference/golden/tokenizer.jsonl``):

* Cleaning: ``ftfy.fix_text``, ``html.unescape`` twice, strip, collapse every whitespace run to one
  space, lower-case.
* Pre-tokenization with the regex ``<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|
  [\\p{N}]|[^\\s\\p{L}\\p{N}]+`` (case-insensitive): words, single digits, runs of punctuation. The
  literal strings ``<start_of_text>`` / ``<end_of_text>`` become the special ids 49406 / 49407.
* Each piece is UTF-8 encoded, its bytes mapped to printable stand-in characters (GPT-2's byte table),
  the last symbol gets the ``</w>`` end-of-word suffix, and BPE merges are applied lowest rank first.
* Layout of a row: ``[49406, ids..., 49407, 0, 0, ...]`` (padding id 0). A row longer than the context
  length is cut to its first ``context_length`` ids and the last position is overwritten with 49407,
  so the end-of-text token (whose position the text tower pools at) is always present.

The merges file is the packaged asset ``mc2export/assets/bpe_simple_vocab_16e6.txt.gz`` (read once,
lazily, through ``importlib.resources``). :meth:`Tokenizer.export_vocab` writes the same table as
``vocab.json`` + ``merges.txt`` for mobile (Swift / Kotlin) ports.
"""
from __future__ import annotations

import gzip
import html
import json
import os
import tempfile
import threading
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Iterable, Sequence

import ftfy
import regex
import torch

from .errors import UserError

__all__ = ["Tokenizer", "tokenize", "get_tokenizer", "clean_text", "SOT_TOKEN", "EOT_TOKEN"]

SOT_TOKEN = "<start_of_text>"
EOT_TOKEN = "<end_of_text>"
DEFAULT_CONTEXT_LENGTH = 77
VOCAB_SIZE = 49408
_N_MERGES = 49152 - 256 - 2  # 48,894 merges are used (the rest of the file is ignored, as in CLIP)
_ASSET = "assets/bpe_simple_vocab_16e6.txt.gz"
_MERGES_HEADER = "#version: 0.2"
_CACHE_LIMIT = 200_000  # words kept in the per-tokenizer BPE cache before it is reset

_PATTERN = regex.compile(
    "<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+",
    regex.IGNORECASE,
)


def clean_text(text: str) -> str:
    """open_clip's default ("lower") cleaning: ftfy, HTML unescape x2, strip, collapse whitespace, lower-case."""
    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text))
    text = " ".join(text.strip().split())
    return text.lower()


def _byte_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte table: printable Latin-1 bytes map to themselves, the other 68 bytes to U+0100..U+0143."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    # Order matters for the vocabulary: printable bytes first (in the order above), then the others.
    ordered = {b: table[b] for b in printable}
    ordered.update({b: table[b] for b in range(256) if b not in ordered})
    return ordered


@dataclass(frozen=True)
class _BPEData:
    byte_encoder: dict[int, str]
    byte_decoder: dict[str, int]
    latin1_to_unicode: dict[int, str]  # str.translate table: chr(byte) -> stand-in character
    merges: tuple[tuple[str, str], ...]
    ranks: dict[tuple[str, str], int]
    encoder: dict[str, int]
    decoder: tuple[str, ...]


@lru_cache(maxsize=None)
def _load_bpe_data(bpe_path: str | None = None) -> _BPEData:
    """Read the merges file (packaged asset unless ``bpe_path`` is given) and build the tables, once."""
    try:
        if bpe_path is None:
            raw = resources.files("mc2export").joinpath(_ASSET).read_bytes()
            where = f"mc2export/{_ASSET}"
        else:
            raw = Path(bpe_path).read_bytes()
            where = str(bpe_path)
        lines = gzip.decompress(raw).decode("utf-8").split("\n")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read the BPE merges file {where!r}: {exc}; reinstall mc2export") from None
    merge_lines = lines[1 : _N_MERGES + 1]
    merges = tuple(tuple(line.split()) for line in merge_lines)
    if len(merges) != _N_MERGES or any(len(m) != 2 for m in merges):
        raise UserError(f"the BPE merges file {where!r} is incomplete or damaged; reinstall mc2export")

    byte_encoder = _byte_to_unicode()
    symbols = list(byte_encoder.values())
    vocab = symbols + [s + "</w>" for s in symbols]
    vocab.extend(a + b for a, b in merges)
    vocab.extend([SOT_TOKEN, EOT_TOKEN])
    encoder = {tok: i for i, tok in enumerate(vocab)}
    if len(vocab) != VOCAB_SIZE or len(encoder) != VOCAB_SIZE:
        raise UserError(f"the BPE merges file {where!r} gives {len(encoder)} tokens, expected {VOCAB_SIZE}")
    return _BPEData(
        byte_encoder=byte_encoder,
        byte_decoder={v: k for k, v in byte_encoder.items()},
        latin1_to_unicode={b: c for b, c in byte_encoder.items()},
        merges=merges,
        ranks={m: i for i, m in enumerate(merges)},
        encoder=encoder,
        decoder=tuple(vocab),
    )


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _check_context_length(context_length: object) -> int:
    if isinstance(context_length, bool) or not isinstance(context_length, int):
        raise UserError(f"context_length must be an integer >= 2, got {context_length!r}")
    if context_length < 2:
        raise UserError(f"context_length must be >= 2 (room for start and end tokens), got {context_length}")
    return context_length


def _as_text_list(texts: object) -> list[str]:
    if isinstance(texts, str):
        return [texts]
    if isinstance(texts, (list, tuple)):
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise UserError(f"text #{i} is a {type(t).__name__}, not a str; pass a string or a list of strings")
        return list(texts)
    raise UserError(f"expected a string or a list of strings, got {type(texts).__name__}")


class Tokenizer:
    """open_clip ``SimpleTokenizer``-compatible CLIP tokenizer (lower-case cleaning, context length 77).

    The vocabulary is loaded on first use and shared between instances; BPE results are cached per word.
    """

    def __init__(self, bpe_path: str | os.PathLike | None = None, context_length: int = DEFAULT_CONTEXT_LENGTH):
        self._bpe_path = None if bpe_path is None else str(bpe_path)
        self.context_length = _check_context_length(context_length)
        self._data: _BPEData | None = None
        self._cache: dict[str, tuple[int, ...]] = {}
        self._lock = threading.Lock()

    # -- tables ---------------------------------------------------------------------------------------
    @property
    def _tables(self) -> _BPEData:
        data = self._data
        if data is None:
            with self._lock:
                if self._data is None:
                    self._data = _load_bpe_data(self._bpe_path)
                    self._reset_cache()
                data = self._data
        return data

    def _reset_cache(self) -> None:
        enc = self._data.encoder
        self._cache = {SOT_TOKEN: (enc[SOT_TOKEN],), EOT_TOKEN: (enc[EOT_TOKEN],)}

    @property
    def sot_token_id(self) -> int:
        return VOCAB_SIZE - 2  # 49406

    @property
    def eot_token_id(self) -> int:
        return VOCAB_SIZE - 1  # 49407

    @property
    def vocab_size(self) -> int:
        return VOCAB_SIZE

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={VOCAB_SIZE}, context_length={self.context_length}, clean='lower')"

    # -- BPE ------------------------------------------------------------------------------------------
    def _bpe_ids(self, piece: str) -> tuple[int, ...]:
        """Ids of one pre-tokenized piece (already mapped to byte stand-in characters)."""
        ids = self._cache.get(piece)
        if ids is not None:
            return ids
        data = self._data
        ranks = data.ranks
        word = [*piece[:-1], piece[-1] + "</w>"]
        while len(word) > 1:
            best_rank = None
            best = None
            for pair in zip(word, word[1:]):
                r = ranks.get(pair)
                if r is not None and (best_rank is None or r < best_rank):
                    best_rank, best = r, pair
            if best is None:
                break
            first, second = best
            merged: list[str] = []
            i, n = 0, len(word)
            while i < n:
                if i < n - 1 and word[i] == first and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        enc = data.encoder
        ids = tuple(enc[sym] for sym in word)
        if len(self._cache) >= _CACHE_LIMIT:
            self._reset_cache()
        self._cache[piece] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        """BPE ids of ``text`` after cleaning, without the start/end tokens."""
        if not isinstance(text, str):
            raise UserError(f"expected a string, got {type(text).__name__}")
        table = self._tables.latin1_to_unicode
        out: list[int] = []
        for piece in _PATTERN.findall(clean_text(text)):
            mapped = piece.encode("utf-8").decode("latin-1").translate(table)
            out.extend(self._bpe_ids(mapped))
        return out

    def decode(self, ids: Iterable[int] | torch.Tensor, skip_special_tokens: bool = False) -> str:
        """Text of ``ids`` the way open_clip decodes it (``</w>`` becomes a space; bad UTF-8 is replaced).

        With ``skip_special_tokens=True`` the start token is dropped and decoding stops at the first end
        token, so a padded row from :meth:`__call__` decodes to just its text.
        """
        if isinstance(ids, torch.Tensor):
            ids = ids.reshape(-1).tolist()
        decoder = self._tables.decoder
        pieces: list[str] = []
        for i in ids:
            i = int(i)
            if not 0 <= i < VOCAB_SIZE:
                raise UserError(f"token id {i} is outside the vocabulary (0..{VOCAB_SIZE - 1})")
            if skip_special_tokens:
                if i == self.eot_token_id:
                    break
                if i == self.sot_token_id:
                    continue
            pieces.append(decoder[i])
        # Every vocabulary string (the special tokens and "</w>" included) is made of byte stand-ins.
        byte_decoder = self._data.byte_decoder
        raw = bytes(byte_decoder[c] for c in "".join(pieces))
        return raw.decode("utf-8", errors="replace").replace("</w>", " ")

    # -- batches --------------------------------------------------------------------------------------
    def n_tokens(self, text: str) -> int:
        """Length of ``[SOT] + ids + [EOT]`` before truncation."""
        return len(self.encode(text)) + 2

    def truncated(self, texts: str | Sequence[str], context_length: int | None = None) -> list[int]:
        """Indices of the texts whose ``[SOT] + ids + [EOT]`` does not fit in ``context_length`` (default 77)."""
        context_length = _check_context_length(self.context_length if context_length is None else context_length)
        return [i for i, t in enumerate(_as_text_list(texts)) if self.n_tokens(t) > context_length]

    def __call__(self, texts: str | Sequence[str], context_length: int | None = None) -> torch.Tensor:
        """Token rows ``LongTensor[B, context_length]`` laid out as ``[SOT, ids..., EOT, 0, ...]``."""
        context_length = _check_context_length(self.context_length if context_length is None else context_length)
        items = _as_text_list(texts)
        sot, eot = self.sot_token_id, self.eot_token_id
        rows = []
        for text in items:
            row = [sot, *self.encode(text), eot]
            if len(row) > context_length:
                row = row[:context_length]
                row[-1] = eot
            else:
                row.extend([0] * (context_length - len(row)))
            rows.append(row)
        if not rows:
            return torch.zeros((0, context_length), dtype=torch.long)
        return torch.tensor(rows, dtype=torch.long)

    # -- export ---------------------------------------------------------------------------------------
    def export_vocab(self, folder: str | os.PathLike) -> dict[str, Path]:
        """Write ``vocab.json`` and ``merges.txt`` (Hugging Face CLIP form) into ``folder``.

        * ``vocab.json``: a JSON object token string -> id for all 49,408 tokens, in id order (UTF-8).
          Token strings use the byte stand-in characters; ``</w>`` marks the end of a word; the special
          tokens are ``<start_of_text>`` (49406) and ``<end_of_text>`` (49407).
        * ``merges.txt``: the header line ``#version: 0.2`` then one merge ``left right`` per line in rank
          order (48,894 lines). Skip exactly the first line: a few merges themselves start with ``#``.

        Files are written atomically (temporary file, then ``os.replace``). Returns
        ``{"vocab": path, "merges": path}``.
        """
        data = self._tables
        out = Path(folder)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create folder '{out}': {exc.strerror or exc}") from None
        vocab_path, merges_path = out / "vocab.json", out / "merges.txt"
        vocab_text = json.dumps({tok: i for i, tok in enumerate(data.decoder)}, ensure_ascii=False, indent=0)
        merges_text = _MERGES_HEADER + "\n" + "".join(f"{a} {b}\n" for a, b in data.merges)
        try:
            _atomic_write_text(vocab_path, vocab_text + "\n")
            _atomic_write_text(merges_path, merges_text)
        except OSError as exc:
            raise UserError(f"cannot write the vocabulary to '{out}': {exc.strerror or exc}") from None
        return {"vocab": vocab_path, "merges": merges_path}


_default: Tokenizer | None = None
_default_lock = threading.Lock()


def get_tokenizer() -> Tokenizer:
    """The shared default :class:`Tokenizer` (created on first call)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Tokenizer()
    return _default


def tokenize(texts: str | Sequence[str], context_length: int = DEFAULT_CONTEXT_LENGTH) -> torch.Tensor:
    """Tokenize with the shared default tokenizer: ``LongTensor[B, context_length]``."""
    return get_tokenizer()(texts, context_length=context_length)

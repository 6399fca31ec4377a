"""Shared test vectors for the sample apps: ``mc2export app-vectors --out DIR [--bundle BUNDLE]``.

The iOS (Swift) and Android (Kotlin) ports of the tokenizer and of the preprocessing are checked against
files written here by the Python package itself, so "matches Python" has one meaning everywhere:

* ``text.json`` -- strings -> token ids (``mc2export.tokenizer``, equal to open_clip): plain prompts,
  the CLIP templates applied to a few labels, prompts longer than 77 tokens (truncated: the row keeps
  its first 77 ids and ends with EOT), whitespace / punctuation / digits / contractions, and Unicode
  cases. Every string carries ``exact``:

  - ``exact: true``: the apps' *portable cleaning* (below) gives the same cleaned text as Python's
    ``ftfy.fix_text`` + ``html.unescape`` x2 + whitespace collapse + lower-case, so the apps must
    produce exactly ``ids``.
  - ``exact: false`` ("python-only"): Python's cleaning does something the ports do not implement
    (mojibake repair, rare HTML entities, halfwidth katakana, ...). ``ids`` is what Python gives;
    ``portable_ids`` is what the ports must give (the same BPE on the portably cleaned text).

  The flag is computed, not hand-set: :func:`portable_clean` is the reference of the ports' cleaning.
* ``images.json`` + ``images/*.png|jpg`` -- small synthetic images (landscape, portrait, smaller than
  the resolution, RGBA, EXIF-rotated) and, per resize configuration the model cards use
  (256 bilinear, 224 bilinear, 224 bicubic), the expected result: the ``uint8`` R x R x 3 crop after
  EXIF orientation, shortest-side resize (PIL filters), center crop and RGB conversion, stored
  losslessly as a PNG, plus the SHA-256 of the float32 little-endian CHW tensors computed from it:
  ``unit`` (``u8 / 255``: the input of the ONNX / ExecuTorch image models, which normalize inside) and
  one per mean/std set (``(u8 / 255 - mean) / std`` in float32, the open_clip tensor). ``normalize.json``
  holds the float32 value of every (channel, byte) pair for both mean/std sets, so a port's
  arithmetic can be checked value by value; one full tensor (landscape, 224 bicubic, OpenAI mean/std,
  MobileCLIP2-L-14's pipeline) is also stored as raw little-endian float32 CHW in ``tensors/``.
* ``orientation.json`` -- a 3 x 2 image under the eight EXIF orientations (``ImageOps.exif_transpose``),
  and the orientation stored in each EXIF-tagged file.
* ``portable.json`` -- the tables of the portable cleaning (HTML entities, control characters, ...),
  so a port can assert its tables are these.
* ``bundle_expected.json`` (with ``--bundle``) -- the bundle's own embeddings, computed with its runtime
  (ONNX Runtime, ExecuTorch; Core ML on macOS only), for a few texts and the vector images, and the
  zero-shot probabilities: an app's self-test compares its outputs with these.
* ``manifest.json`` -- every file with its SHA-256 and size. PNG bytes depend on the zlib version: compare
  images by their decoded pixels (``pixels_sha256`` / ``u8_hwc_sha256`` in ``images.json``), not by bytes.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import unicodedata
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .errors import UserError, unreadable_model

VECTORS_VERSION = 1
CONTEXT_LENGTH = 77

# -- the portable cleaning (what the Swift / Kotlin ports implement) ---------------------------------------

# Named HTML entities the ports decode (semicolon required). Anything else stays as typed.
PORTABLE_ENTITIES: Dict[str, str] = {
    "amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'", "nbsp": "\u00a0", "copy": "\u00a9",
    "reg": "\u00ae", "trade": "\u2122", "hellip": "\u2026", "mdash": "\u2014", "ndash": "\u2013",
    "lsquo": "\u2018", "rsquo": "\u2019", "ldquo": "\u201c", "rdquo": "\u201d", "laquo": "\u00ab",
    "raquo": "\u00bb", "deg": "\u00b0", "times": "\u00d7", "divide": "\u00f7", "middot": "\u00b7",
    "bull": "\u2022", "euro": "\u20ac", "pound": "\u00a3", "yen": "\u00a5", "cent": "\u00a2",
    "sect": "\u00a7", "para": "\u00b6", "plusmn": "\u00b1", "frac12": "\u00bd", "frac14": "\u00bc",
    "frac34": "\u00be", "iexcl": "\u00a1", "iquest": "\u00bf", "szlig": "\u00df",
    "aacute": "\u00e1", "agrave": "\u00e0", "acirc": "\u00e2", "auml": "\u00e4", "atilde": "\u00e3",
    "aring": "\u00e5", "aelig": "\u00e6", "ccedil": "\u00e7", "eacute": "\u00e9", "egrave": "\u00e8",
    "ecirc": "\u00ea", "euml": "\u00eb", "iacute": "\u00ed", "igrave": "\u00ec", "icirc": "\u00ee",
    "iuml": "\u00ef", "ntilde": "\u00f1", "oacute": "\u00f3", "ograve": "\u00f2", "ocirc": "\u00f4",
    "ouml": "\u00f6", "otilde": "\u00f5", "oslash": "\u00f8", "uacute": "\u00fa", "ugrave": "\u00f9",
    "ucirc": "\u00fb", "uuml": "\u00fc", "yacute": "\u00fd", "yuml": "\u00ff",
    "Aacute": "\u00c1", "Agrave": "\u00c0", "Acirc": "\u00c2", "Auml": "\u00c4", "Atilde": "\u00c3",
    "Aring": "\u00c5", "AElig": "\u00c6", "Ccedil": "\u00c7", "Eacute": "\u00c9", "Egrave": "\u00c8",
    "Ecirc": "\u00ca", "Euml": "\u00cb", "Iacute": "\u00cd", "Igrave": "\u00cc", "Icirc": "\u00ce",
    "Iuml": "\u00cf", "Ntilde": "\u00d1", "Oacute": "\u00d3", "Ograve": "\u00d2", "Ocirc": "\u00d4",
    "Ouml": "\u00d6", "Otilde": "\u00d5", "Oslash": "\u00d8", "Uacute": "\u00da", "Ugrave": "\u00d9",
    "Ucirc": "\u00db", "Uuml": "\u00dc",
}
# Characters ftfy's remove_control_chars deletes (ftfy.chardata.CONTROL_CHARS, ftfy 6.x).
PORTABLE_CONTROL_CHARS: Tuple[Tuple[int, int], ...] = (
    (0x00, 0x08), (0x0B, 0x0B), (0x0E, 0x1F), (0x7F, 0x7F), (0x206A, 0x206F), (0xFEFF, 0xFEFF), (0xFFF9, 0xFFFC))
# Latin ligatures ftfy takes apart (ftfy.chardata.LIGATURES).
PORTABLE_LIGATURES: Dict[str, str] = {
    "\u0132": "IJ", "\u0133": "ij", "\u0149": "\u02bcn", "\u01f1": "DZ", "\u01f2": "Dz", "\u01f3": "dz",
    "\u01c4": "D\u017d", "\u01c5": "D\u017e", "\u01c6": "d\u017e", "\u01c7": "LJ", "\u01c8": "Lj",
    "\u01c9": "lj", "\u01ca": "NJ", "\u01cb": "Nj", "\u01cc": "nj", "\ufb00": "ff", "\ufb01": "fi",
    "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl", "\ufb05": "\u017ft", "\ufb06": "st",
}
# Python's str.isspace() characters: str.split() / strip() use exactly these.
PYTHON_WHITESPACE: Tuple[int, ...] = (
    0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x1F, 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B),
    0x2028, 0x2029, 0x202F, 0x205F, 0x3000)
_SINGLE_QUOTES = "\u02bc\u2018\u2019\u201a\u201b"
_DOUBLE_QUOTES = "\u201c\u201d\u201e\u201f"
_ANSI_RE = re.compile("\033\\[((?:\\d|;)*)([a-zA-Z])")
_ENTITY_RE = re.compile(r"&(#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
_WS = "".join(chr(c) for c in PYTHON_WHITESPACE)


def _numeric_ok(cp: int) -> bool:
    """Code points the ports decode from ``&#N;`` (those html.unescape maps to themselves)."""
    if cp in (0x09, 0x0A, 0x0D):
        return True
    if 0x20 <= cp <= 0x7E or 0xA0 <= cp <= 0xD7FF:
        return True
    if 0xE000 <= cp <= 0xFFFD:
        return not 0xFDD0 <= cp <= 0xFDEF
    return 0x10000 <= cp <= 0x10FFFF and (cp & 0xFFFF) < 0xFFFE


def portable_unescape(text: str) -> str:
    """One pass of the ports' HTML unescaping: the named entities above and ``&#N;`` / ``&#xH;``."""

    def fix(m: "re.Match[str]") -> str:
        body = m.group(1)
        if body[0] == "#":
            cp = int(body[2:], 16) if body[1] in "xX" else int(body[1:])
            return chr(cp) if _numeric_ok(cp) else m.group(0)
        return PORTABLE_ENTITIES.get(body, m.group(0))

    return _ENTITY_RE.sub(fix, text)


def _width(text: str) -> str:
    out = []
    for ch in text:
        cp = ord(ch)
        if cp == 0x3000:
            out.append(" ")
        elif 0xFF01 <= cp <= 0xFFEF:
            out.append(unicodedata.normalize("NFKC", ch))
        else:
            out.append(ch)
    return "".join(out)


def _controls(text: str) -> str:
    return "".join(ch for ch in text if not any(a <= ord(ch) <= b for a, b in PORTABLE_CONTROL_CHARS))


def _fix_segment(seg: str, unescape: bool) -> str:
    while True:
        orig = seg
        if unescape:
            seg = portable_unescape(seg)
        seg = "".join(PORTABLE_LIGATURES.get(ch, ch) for ch in seg)
        seg = _width(seg)
        seg = "".join("'" if ch in _SINGLE_QUOTES else '"' if ch in _DOUBLE_QUOTES else ch for ch in seg)
        seg = _ANSI_RE.sub("", seg)
        seg = _controls(seg)
        seg = unicodedata.normalize("NFC", seg)
        if seg == orig:
            return seg


def portable_clean(text: str) -> str:
    """The cleaning the Swift / Kotlin ports implement (the reference for the ``exact`` flag).

    It follows ``ftfy.fix_text`` step by step -- line by line; HTML unescaping switched off for good from
    the first line containing ``<``; each line fixed until nothing changes -- minus the fixes the ports
    do not carry: mojibake repair (``fix_encoding``), C1 controls read as Windows-1252, surrogate
    repair, and all HTML entities but :data:`PORTABLE_ENTITIES` and numeric ones (ftfy knows 2,231,
    ``html.unescape`` also decodes a few without the semicolon). Kept: the ``unescape_html`` subset,
    Latin ligatures, character width (fullwidth / ideographic space, by NFKC as ftfy does), curly
    quotes, ANSI terminal escapes, control characters, NFC. Then, as ``mc2export.tokenizer.clean_text``:
    the unescaping subset twice, strip, collapse whitespace (Python's ``str.isspace`` set), lower-case.
    """
    out = []
    unescape = True
    pos = 0
    while pos < len(text):
        nl = text.find("\n", pos) + 1
        end = nl if nl else len(text)
        seg = text[pos:end]
        if unescape and "<" in seg:
            unescape = False
        out.append(_fix_segment(seg, unescape))
        pos = end
    text = portable_unescape(portable_unescape("".join(out)))
    return " ".join(text.split()).lower()


# -- text vectors ------------------------------------------------------------------------------------------

LABELS = ("cat", "golden retriever", "traffic light", "crème brûlée")
LONG_PROMPTS = (
    "a photo of " + " and ".join(["a small brown dog playing with a red ball in the park"] * 8),
    "a very detailed description: " + ", ".join(f"item {i}" for i in range(60)),
    ("word " * 76).strip(),   # 76 words -> 78 tokens with SOT/EOT: the shortest truncated case
    ("word " * 75).strip(),   # exactly 77 tokens: fits, no truncation
)
TEXT_CASES: Tuple[Tuple[str, str], ...] = (
    ("a photo of a cat", "plain prompt"),
    ("a diagram", "plain"),
    ("A Photo Of A DOG.", "upper case"),
    ("", "empty string"),
    ("   ", "only spaces"),
    ("  leading and   trailing\tspaces\n\nand lines  ", "whitespace collapse"),
    ("it's a dog's life, isn't it? we're here; they've gone; I'm done; you'll see; he'd go", "contractions"),
    ("IT'S LOUD", "contraction after lower-casing"),
    ("rock'n'roll 'quoted' ''", "apostrophes"),
    ("1234567890 3.14 2024-06-01 #42 $9.99 100%", "digits are single tokens"),
    ("hello!!! what??? ...... ---> (a) [b] {c} <d>", "punctuation runs"),
    ("e-mail: someone@example.com https://example.com/a?b=c&d=e", "url and email"),
    ("<start_of_text>", "special token string"),
    ("a <end_of_text> b", "special token inside"),
    ("<START_OF_TEXT> upper", "special token, upper case"),
    ("Tom &amp; Jerry", "html entity"),
    ("&lt;b&gt;bold&lt;/b&gt;", "html tags escaped"),
    ("fish &amp;amp; chips", "double-escaped entity"),
    ("x &amp;amp;amp;amp; y", "four times escaped entity (ftfy repeats)"),
    ("caf&eacute; &#233; &#xE9; &#8217;s", "named and numeric entities"),
    ("a < b &amp; c", "'<' disables ftfy's unescape; html.unescape x2 still runs"),
    ("&nbsp;non&nbsp;breaking", "nbsp entity becomes whitespace"),
    ("&hearts; &notin; &frac13;", "entities outside the portable set"),
    ("AT&T and M&amp", "entity without semicolon (html.unescape decodes &amp)"),
    ("caf\u00e9", "precomposed e-acute"),
    ("cafe\u0301", "decomposed e-acute (NFC composes)"),
    ("cr\u00e8me br\u00fbl\u00e9e", "accents"),
    ("na\u00efve \u00fcber se\u00f1or \u00e7a", "diacritics"),
    ("Stra\u00dfe \u00c4\u00d6\u00dc", "German sharp s and umlauts"),
    ("\u0130stanbul \u0131 I", "Turkish dotted/dotless i"),
    ("\u039f\u0394\u039f\u03a3 \u03a3\u039f\u03a6\u0399\u0391", "Greek final sigma"),
    ("\u043f\u0440\u0438\u0432\u0435\u0442 \u041c\u0418\u0420", "Cyrillic"),
    ("\u732b\u306e\u5199\u771f", "Japanese"),
    ("\u4e00\u53ea\u732b", "Chinese"),
    ("\ud55c\uad6d\uc5b4 \uace0\uc591\uc774", "Korean"),
    ("\u0627\u0644\u0642\u0637", "Arabic"),
    ("\u0915\u093f\u0924\u093e\u092c", "Devanagari with combining marks"),
    ("a photo of a \U0001f431 and a \U0001f436", "emoji"),
    ("\U0001f468\u200d\U0001f469\u200d\U0001f467 family", "ZWJ emoji sequence"),
    ("\U0001f44d\U0001f3fd thumbs", "emoji with skin tone"),
    ("\u00bd cup, \u00b2 squared, \u2164 roman", "other numbers"),
    ("\u0661\u0662\u0663 \u0967\u0968", "non-ASCII digits"),
    ("dog\u2019s \u201cbest\u201d friend \u2018x\u2019", "curly quotes (iOS smart punctuation)"),
    ("\u201eGerman\u201c \u201ahere\u2018", "low-9 quotes"),
    ("\ufb01sh \ufb02ower \ufb03", "Latin ligatures"),
    ("\uff2c\uff2f\uff35\uff24\u3000\uff2e\uff2f\uff29\uff33\uff25\uff33", "fullwidth letters and ideographic space"),
    ("\uff76\uff80\uff76\uff85", "halfwidth katakana (ftfy widens)"),
    ("tab\tnew\nline\r\ncr\rend", "control whitespace"),
    ("zero\u200bwidth\u200cjoin\u200dx", "zero-width characters (kept)"),
    ("bom\ufeffinside \x00null \x07bell", "control characters (removed)"),
    ("\x1b[31mred\x1b[0m text", "ANSI terminal escapes"),
    ("no\u00a0break\u2003em\u3000ideo", "Unicode spaces"),
    ("\u2028line\u2029para\x85nel", "Unicode line breaks"),
    ("sch\u00c3\u00b6n caf\u00c3\u00a9", "mojibake (ftfy repairs it)"),
    ("\u00e2\u0080\u0099", "mojibake of a right quote"),
    ("\u017fhip 's '\u017f", "long s (case-insensitive 's)"),
    ("\u212a kelvin \u2126 ohm \u00b5 micro", "compatibility letters"),
    ("a\u0308\u0304 stacked", "stacked combining marks"),
    ("don't stop believin'", "song title"),
    ("a photo of a {} {}", "braces"),
    ("\u00ff\u0100\u0101 latin extended", "latin-1 / extended boundary"),
    ("ALL CAPS WITH NUMBERS 123 AND SYMBOLS !@#", "mixed"),
    ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "long word (BPE depth)"),
    ("supercalifragilisticexpialidocious antidisestablishmentarianism", "long words"),
)


def _tokenizer():
    from .tokenizer import get_tokenizer

    return get_tokenizer()


def _row_for_cleaned(tok, cleaned: str, context_length: int = CONTEXT_LENGTH) -> List[int]:
    """``[SOT, ids..., EOT]`` (truncated as the tokenizer does) for already-cleaned text."""
    from .tokenizer import _PATTERN

    table = tok._tables.latin1_to_unicode
    ids: List[int] = []
    for piece in _PATTERN.findall(cleaned):
        ids.extend(tok._bpe_ids(piece.encode("utf-8").decode("latin-1").translate(table)))
    row = [tok.sot_token_id, *ids, tok.eot_token_id]
    if len(row) > context_length:
        row = row[:context_length]
        row[-1] = tok.eot_token_id
    return row


def text_entries() -> List[dict]:
    """The text vectors (see the module docstring)."""
    from .tokenizer import clean_text
    from .zeroshot import OPENAI_TEMPLATES, SIMPLE_TEMPLATES

    tok = _tokenizer()
    cases: List[Tuple[str, str]] = list(TEXT_CASES)
    for t in OPENAI_TEMPLATES:
        cases.append((t.format("dog"), "openai template"))
    for label in LABELS:
        for t in SIMPLE_TEMPLATES:
            cases.append((t.format(label), "simple template"))
    for p in LONG_PROMPTS:
        cases.append((p, "long prompt"))
    seen = set()
    out = []
    for text, note in cases:
        if text in seen:
            continue
        seen.add(text)
        row = tok([text], context_length=CONTEXT_LENGTH)[0].tolist()
        n = tok.n_tokens(text)
        ids = row[: min(n, CONTEXT_LENGTH)]
        cleaned = clean_text(text)
        portable = portable_clean(text)
        entry = {"text": text, "note": note, "exact": portable == cleaned, "ids": ids, "n_tokens": n,
                 "truncated": n > CONTEXT_LENGTH, "clean": cleaned}
        if not entry["exact"]:
            entry["portable_clean"] = portable
            entry["portable_ids"] = _row_for_cleaned(tok, portable)
            entry["portable_truncated"] = len(_row_for_cleaned(tok, portable, 10 ** 6)) > CONTEXT_LENGTH
        out.append(entry)
    return out


# -- image vectors -----------------------------------------------------------------------------------------

# (resolution, interpolation) pairs the model cards use (tests/test_kotlin_shared.py checks every card is covered).
RESIZE_CONFIGS: Tuple[Tuple[int, str], ...] = ((256, "bilinear"), (224, "bilinear"), (224, "bicubic"))
# One full tensor is also written as raw float32 (little-endian, CHW): MobileCLIP2-L-14's pipeline.
RAW_TENSOR = ("landscape_400x300.png", 224, "bicubic", "openai")


def _mean_std_sets() -> Dict[str, dict]:
    from .preprocess import OPENAI_MEAN, OPENAI_STD

    return {"zero_one": {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]},
            "openai": {"mean": list(OPENAI_MEAN), "std": list(OPENAI_STD)}}


def _pattern(w: int, h: int, k: int) -> np.ndarray:
    """A deterministic RGB test picture: gradients, a disc, hard edges and fine stripes (aliasing)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 255.0 * x / max(w - 1, 1)
    g = 255.0 * y / max(h - 1, 1)
    b = 127.5 + 127.5 * np.sin((x + 2 * y) / (5.0 + k))
    img = np.stack([r, g, b], axis=-1)
    cx, cy, rad = w * 0.62, h * 0.4, min(w, h) * 0.22
    disc = (x - cx) ** 2 + (y - cy) ** 2 <= rad ** 2
    img[disc] = (230, 40 + 20 * k, 60)
    box = (x >= w * 0.08) & (x < w * 0.3) & (y >= h * 0.6) & (y < h * 0.9)
    img[box] = (20, 20, 20 + 30 * k)
    stripes = (x >= w * 0.4) & (x < w * 0.55) & (y >= h * 0.62)
    img[stripes & ((x.astype(int) + y.astype(int) * k) % 2 == 0)] = (255, 255, 255)
    img[stripes & ((x.astype(int) + y.astype(int) * k) % 2 == 1)] = (0, 0, 0)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _exif_bytes(orientation: int) -> bytes:
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def synthetic_images() -> List[dict]:
    """``[{"file", "mode", "size" (stored), "orientation", "bytes", "note"}]`` with encoded file bytes."""
    from PIL import Image

    def png(arr: np.ndarray, mode: str, orientation: Optional[int] = None) -> bytes:
        buf = io.BytesIO()
        kw = {"exif": _exif_bytes(orientation)} if orientation else {}
        Image.fromarray(arr, mode).save(buf, format="PNG", optimize=True, **kw)
        return buf.getvalue()

    def jpeg(arr: np.ndarray, orientation: int) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(arr, "RGB").save(buf, format="JPEG", quality=90, exif=_exif_bytes(orientation))
        return buf.getvalue()

    land = _pattern(400, 300, 1)
    portrait = _pattern(270, 480, 2)
    small = _pattern(150, 100, 3)
    upright = _pattern(330, 260, 4)            # what the viewer should see ...
    stored6 = np.ascontiguousarray(np.rot90(upright, k=1))   # ... stored rotated for orientation 6
    stored3 = np.ascontiguousarray(np.rot90(upright, k=2))   # ... and for orientation 3
    rgba = np.concatenate([_pattern(300, 260, 5), np.zeros((260, 300, 1), np.uint8)], axis=-1)
    yy, xx = np.mgrid[0:260, 0:300]
    rgba[..., 3] = np.clip(np.rint(255.0 * xx / 299.0), 0, 255).astype(np.uint8)
    rgba[yy < 40, 3] = 0                        # a fully transparent band
    rgba[yy >= 220, 3] = 255                    # and an opaque one
    items = [
        ("landscape_400x300.png", png(land, "RGB"), "RGB", 1, "landscape, downscaled"),
        ("portrait_270x480.png", png(portrait, "RGB"), "RGB", 1, "portrait, downscaled"),
        ("small_150x100.png", png(small, "RGB"), "RGB", 1, "smaller than R: upscaled"),
        ("exif6_260x330.png", png(stored6, "RGB", 6), "RGB", 6, "stored rotated, EXIF orientation 6 (eXIf chunk)"),
        ("exif3_330x260.png", png(stored3, "RGB", 3), "RGB", 3, "stored upside down, EXIF orientation 3"),
        ("rgba_300x260.png", png(rgba, "RGBA"), "RGBA", 1, "RGBA: PIL resizes in premultiplied alpha, then drops alpha"),
        ("exif6_260x330.jpg", jpeg(stored6, 6), "RGB", 6, "JPEG with EXIF orientation 6: decoders differ, "
                                                     "pixels are not compared, only the orientation"),
    ]
    out = []
    for name, data, mode, orient, note in items:
        with Image.open(io.BytesIO(data)) as im:
            size = list(im.size)
            pixels = _sha(np.asarray(im).tobytes()) if name.endswith(".png") else None
        out.append({"file": name, "bytes": data, "mode": mode, "size": size, "orientation": orient, "note": note,
                    "pixels_sha256": pixels})
    return out


def _f32_sha(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr, dtype="<f4").tobytes()).hexdigest()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def normalize_table() -> Dict[str, dict]:
    """float32 ``(b / 255 - mean[c]) / std[c]`` for every byte b and channel c, per mean/std set, as
    computed by ``mc2export.preprocess`` (torch float32 ops)."""
    import torch

    out = {}
    u8 = torch.arange(256, dtype=torch.uint8)
    unit = u8.to(torch.float32).div(255)
    for name, ms in _mean_std_sets().items():
        rows = []
        for c in range(3):
            m = torch.tensor(ms["mean"][c], dtype=torch.float32)
            s = torch.tensor(ms["std"][c], dtype=torch.float32)
            rows.append([float(v) for v in unit.sub(m).div(s).tolist()])
        out[name] = {**ms, "values": rows}
    out["unit"] = {"values": [float(v) for v in unit.tolist()]}
    return out


def image_entries(images: List[dict]) -> Tuple[List[dict], Dict[str, bytes]]:
    """Expected preprocessing results and the crop PNGs to write (``{relative path: bytes}``)."""
    import torch
    from PIL import Image

    from .preprocess import PreprocessConfig, build_transform

    files: Dict[str, bytes] = {}
    entries = []
    sets = _mean_std_sets()
    for img in images:
        if img["file"].endswith(".jpg"):
            continue  # decoders differ: orientation only (orientation.json)
        for res, interp in RESIZE_CONFIGS:
            with Image.open(io.BytesIO(img["bytes"])) as im:
                im.load()
                tr = build_transform(PreprocessConfig(resolution=res, interpolation=interp, mean=(0, 0, 0),
                                                      std=(1, 1, 1)))
                u8 = tr.to_uint8(im)
                unit = tr(im).numpy()
                upright = (im.size if img["orientation"] in (1, 2, 3, 4) else im.size[::-1])
            w, h = upright
            rsz = (res, int(res * h / w)) if w <= h else (int(res * w / h), res)
            top, left = int(round((rsz[1] - res) / 2.0)), int(round((rsz[0] - res) / 2.0))
            stem = img["file"].rsplit(".", 1)[0]
            crop_name = f"crops/{stem}_{res}_{interp}.png"
            buf = io.BytesIO()
            Image.fromarray(u8, "RGB").save(buf, format="PNG", optimize=True)
            files[crop_name] = buf.getvalue()
            chw = u8.transpose(2, 0, 1)
            norm = {}
            for name, ms in sets.items():
                t = torch.from_numpy(np.ascontiguousarray(chw)).to(torch.float32).div(255)
                t = t.sub(torch.tensor(ms["mean"], dtype=torch.float32).view(3, 1, 1)).div(
                    torch.tensor(ms["std"], dtype=torch.float32).view(3, 1, 1))
                norm[name] = _f32_sha(t.numpy())
                if (img["file"], res, interp, name) == RAW_TENSOR:
                    raw_name = f"tensors/{stem}_{res}_{interp}_{name}.f32"
                    files[raw_name] = np.ascontiguousarray(t.numpy(), dtype="<f4").tobytes()
                if name == "zero_one":
                    assert np.array_equal(t.numpy(), unit), "unit tensor mismatch"
            raw = {"f32_file": raw_name} if (img["file"], res, interp) == RAW_TENSOR[:3] else {}
            rng = np.random.default_rng(res)
            picks = [(int(c), int(y), int(x)) for c, y, x in zip(rng.integers(0, 3, 24), rng.integers(0, res, 24),
                                                                  rng.integers(0, res, 24))]
            entries.append({
                "image": img["file"], "resolution": res, "interpolation": interp,
                "upright_size": [w, h], "resized_size": list(rsz), "crop_left_top": [left, top],
                "crop_png": crop_name, "u8_hwc_sha256": _sha(u8.tobytes()),
                "f32_chw_sha256": {"unit": _f32_sha(unit), **norm},
                "samples_u8": [[c, y, x, int(u8[y, x, c])] for c, y, x in picks],
                "channel_mean_u8": [round(float(u8[..., c].mean()), 4) for c in range(3)], **raw,
            })
    return entries, files


def orientation_vectors(images: List[dict]) -> dict:
    """The eight EXIF orientations applied to a 3 x 2 picture, and each tagged file's orientation."""
    from PIL import Image, ImageOps

    base = np.arange(3 * 2 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10  # H=2, W=3, RGB
    cases = []
    for o in range(1, 9):
        im = Image.fromarray(base, "RGB")
        ex = im.getexif()
        ex[0x0112] = o
        buf = io.BytesIO()
        im.save(buf, format="PNG", exif=ex.tobytes())
        with Image.open(io.BytesIO(buf.getvalue())) as re_im:
            up = np.asarray(ImageOps.exif_transpose(re_im))
        cases.append({"orientation": o, "size": [int(up.shape[1]), int(up.shape[0])],
                      "pixels": [[int(v) for v in px] for row in up for px in row]})
    files = []
    for img in images:
        with Image.open(io.BytesIO(img["bytes"])) as im:
            files.append({"file": img["file"], "orientation": int(im.getexif().get(0x0112, 1))})
    return {"input": {"size": [3, 2], "pixels": [[int(v) for v in px] for row in base for px in row]},
            "note": "pixels are row-major [R,G,B] lists of the upright image; size is [width, height]",
            "cases": cases, "files": files}


# -- bundle vectors ----------------------------------------------------------------------------------------

BUNDLE_TEXTS = ("a photo of a cat", "a photo of a dog", "a diagram", "IT'S A DOG\u2019S LIFE",
                LONG_PROMPTS[0])
BUNDLE_LABELS = ("cat", "dog", "car", "tree")


def read_bundle_config(bundle: Path) -> dict:
    """``config.json`` of a bundle with one-line errors for a missing or foreign folder."""
    bundle = Path(bundle)
    cfg_path = bundle / "config.json"
    if not bundle.is_dir():
        raise UserError(f"bundle '{bundle}' not found (pass the folder an export command wrote)")
    if not cfg_path.is_file():
        raise UserError(f"'{bundle}' is not an mc2export bundle: no config.json")
    from .export.reading import read_config

    return read_config(bundle)  # the reading rules: its own checksum, version, types (docs/bundle.md)


class _BundleModels:
    """The bundle's towers in its own runtime: ``image(u8 [R,R,3]) -> [D]``, ``text(ids row) -> [D]``."""

    def __init__(self, bundle: Path, cfg: dict):
        import sys

        self.bundle, self.cfg = Path(bundle), cfg
        self.runtime = cfg.get("runtime")
        models = cfg.get("models") or {}
        if "image" not in models or "text" not in models:
            raise UserError(f"bundle '{bundle}' lacks an image or text model: expected embeddings need both")
        self.files = {t: self.bundle / models[t]["file"] for t in ("image", "text")}
        self.contract = {t: models[t].get("input") or {} for t in ("image", "text")}
        if self.runtime == "onnx":
            try:
                import onnxruntime as ort
            except ImportError:
                raise UserError("an ONNX bundle needs onnxruntime: pip install onnxruntime") from None
            self._sess = self._open(lambda p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]))
            self.how = f"onnxruntime {ort.__version__}"
        elif self.runtime == "executorch":
            try:
                from executorch.runtime import Runtime
            except ImportError:
                raise UserError("an ExecuTorch bundle needs executorch: pip install executorch") from None
            rt = Runtime.get()
            self._meth = self._open(lambda p: rt.load_program(str(p)).load_method("forward"))
            from importlib import metadata

            self.how = f"executorch {metadata.version('executorch')}"
        elif self.runtime == "coreml":
            if sys.platform != "darwin":
                raise UserError("Core ML prediction needs macOS: run app-vectors --bundle on a Mac, or use the "
                                "ONNX / ExecuTorch bundle of the same weights (validated to agree)")
            import coremltools as ct

            self._ml = self._open(lambda p: ct.models.MLModel(str(p)))
            self.how = f"coremltools {ct.__version__}"
        else:
            raise UserError(f"bundle runtime {self.runtime!r} is not one of onnx, executorch, coreml")

    def _open(self, load) -> dict:
        out = {}
        for t, p in self.files.items():
            try:
                out[t] = load(p)
            except Exception as e:  # each runtime raises its own types (protobuf, flatbuffer, ...)
                raise unreadable_model(p, self.runtime, e) from None
        return out

    def _image_input(self, u8: np.ndarray) -> np.ndarray:
        x = u8.transpose(2, 0, 1)[None].astype(np.float32) / np.float32(255)
        norm = str(self.contract["image"].get("normalization", ""))
        if not (norm.startswith("inside") or norm.startswith("none")):
            pre = self.cfg["preprocess"]
            x = (x - np.array(pre["mean"], np.float32).reshape(1, 3, 1, 1)) / np.array(
                pre["std"], np.float32).reshape(1, 3, 1, 1)
        return np.ascontiguousarray(x, dtype=np.float32)

    def image(self, u8: np.ndarray) -> np.ndarray:
        if self.runtime == "coreml":
            from PIL import Image

            return np.asarray(self._ml["image"].predict({"image": Image.fromarray(u8, "RGB")})["embedding"])[0]
        return self._run("image", self._image_input(u8))

    def text(self, row: Sequence[int]) -> np.ndarray:
        ctx = int(self.cfg.get("context_length") or CONTEXT_LENGTH)
        x = np.zeros((1, ctx), np.int32)
        x[0, : len(row)] = row
        if self.runtime == "coreml":
            return np.asarray(self._ml["text"].predict({"tokens": x})["embedding"])[0]
        return self._run("text", x)

    def _run(self, tower: str, x: np.ndarray) -> np.ndarray:
        if self.runtime == "onnx":
            sess = self._sess[tower]
            return sess.run(None, {sess.get_inputs()[0].name: x})[0][0]
        import torch

        return self._meth[tower].execute([torch.from_numpy(x)])[0].numpy()[0]


def bundle_expected(bundle: Path, images: List[dict]) -> dict:
    """Embeddings of :data:`BUNDLE_TEXTS`, the vector images and zero-shot probabilities, from the bundle."""
    from PIL import Image

    from .preprocess import PreprocessConfig, build_transform

    cfg = read_bundle_config(bundle)
    models = _BundleModels(bundle, cfg)
    tok = _tokenizer()
    pre = cfg["preprocess"]
    tr = build_transform(PreprocessConfig(resolution=pre["resolution"], interpolation=pre["interpolation"],
                                          mean=pre["mean"], std=pre["std"]))
    texts = []
    for t in BUNDLE_TEXTS:
        row = tok([t])[0].tolist()
        ids = row[: min(tok.n_tokens(t), CONTEXT_LENGTH)]
        texts.append({"text": t, "ids": ids, "embedding": [float(v) for v in models.text(ids)]})
    imgs = []
    for img in images:
        if img["file"].endswith(".jpg"):
            continue
        with Image.open(io.BytesIO(img["bytes"])) as im:
            im.load()
            u8 = tr.to_uint8(im)
        imgs.append({"image": img["file"], "embedding": [float(v) for v in models.image(u8)]})
    # zero-shot with the "simple" ensemble, the way the apps do it
    from .zeroshot import SIMPLE_TEMPLATES

    def unit(v: np.ndarray) -> np.ndarray:
        n = float(np.linalg.norm(v))
        return v / n if n > 0 else v

    classes = []
    for label in BUNDLE_LABELS:
        embs = [unit(models.text(tok([t.format(label)])[0].tolist()[: min(tok.n_tokens(t.format(label)), 77)]))
                for t in SIMPLE_TEMPLATES]
        classes.append(unit(np.mean(embs, axis=0)))
    C = np.stack(classes)
    scale = float(cfg.get("logit_scale") or 100.0)
    probs = []
    for e in imgs:
        logits = scale * (C @ unit(np.asarray(e["embedding"], np.float64)))
        p = np.exp(logits - logits.max())
        probs.append({"image": e["image"], "probs": [float(v) for v in p / p.sum()]})
    prec = str(cfg.get("precision", "fp32"))
    return {
        "vectors_version": VECTORS_VERSION, "bundle": Path(bundle).name, "runtime": cfg.get("runtime"),
        "variant": cfg.get("variant"), "precision": prec, "embed_dim": cfg.get("embed_dim"),
        "logit_scale": cfg.get("logit_scale"), "output_normalized": cfg.get("output_normalized"),
        "computed_with": models.how, "preprocess": pre,
        "tolerance": {"cosine_min": 0.9999 if prec == "fp32" else 0.999 if prec == "fp16" else 0.99,
                      "note": "on-device runtimes differ in kernels (and fp16 on the Neural Engine): compare by cosine"},
        "weights": (cfg.get("weights") or {}).get("source"),
        "texts": texts, "images": imgs,
        "zero_shot": {"labels": list(BUNDLE_LABELS), "templates": list(SIMPLE_TEMPLATES), "results": probs},
    }


# -- writing -----------------------------------------------------------------------------------------------

def _dump(obj) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, indent=1) + "\n").encode("utf-8")


def write_vectors(out: Path, bundle: Optional[Path] = None, tokenizer: bool = False) -> dict:
    """Write every vector file into ``out`` (created; our files overwritten). Returns the manifest.

    ``tokenizer=True`` also writes ``tokenizer/vocab.json`` + ``tokenizer/merges.txt`` (what a bundle holds,
    1.5 MB: not committed with the vectors) for ports whose tests cannot read the gzipped merges asset."""
    from . import __version__
    from .tokenizer import VOCAB_SIZE
    from .zeroshot import OPENAI_TEMPLATES, SIMPLE_TEMPLATES

    from .outputs import output_dir, write_atomic

    out = output_dir(out, "--out")
    if bundle is not None:
        read_bundle_config(bundle)  # fail before writing anything
    images = synthetic_images()
    files: Dict[str, bytes] = {}
    for img in images:
        files[f"images/{img['file']}"] = img["bytes"]
    texts = text_entries()
    files["text.json"] = _dump({
        "vectors_version": VECTORS_VERSION, "context_length": CONTEXT_LENGTH, "vocab_size": VOCAB_SIZE,
        "sot": 49406, "eot": 49407, "pad": 0,
        "row_layout": "ids = [SOT, ...BPE ids, EOT] after truncation; pad with 0 to context_length",
        "truncation": "rows longer than context_length keep their first 77 ids; the last becomes EOT (49407)",
        "exact_meaning": "exact=true: the apps must give `ids`; exact=false: Python-only cleaning, the apps must "
                         "give `portable_ids` (see portable.json and mc2export/appvectors.py:portable_clean)",
        "templates": {"openai": list(OPENAI_TEMPLATES), "simple": list(SIMPLE_TEMPLATES)},
        "counts": {"total": len(texts), "exact": sum(t["exact"] for t in texts),
                   "python_only": sum(not t["exact"] for t in texts),
                   "truncated": sum(t["truncated"] for t in texts)},
        "texts": texts})
    entries, crops = image_entries(images)
    files.update({f"images/{k}": v for k, v in crops.items()})
    files["images.json"] = _dump({
        "vectors_version": VECTORS_VERSION,
        "pipeline": "EXIF orientation -> (RGBA: premultiply) -> resize shortest side to R, long side int(R*long/short), "
                    "PIL filter with antialias -> center crop left=round((W-R)/2), top=round((H-R)/2) -> RGB",
        "tensors": "f32 hashes: SHA-256 of the CHW float32 little-endian bytes; unit = u8/255 (ONNX / ExecuTorch "
                   "model input), zero_one and openai = (u8/255 - mean)/std (open_clip tensor)",
        "resize_configs": [{"resolution": r, "interpolation": i} for r, i in RESIZE_CONFIGS], "mean_std": _mean_std_sets(),
        "images": [{k: v for k, v in img.items() if k != "bytes"} for img in images],
        "cases": entries})
    files["normalize.json"] = _dump(normalize_table())
    files["orientation.json"] = _dump(orientation_vectors(images))
    files["portable.json"] = _dump({
        "entities": PORTABLE_ENTITIES, "control_char_ranges": [list(r) for r in PORTABLE_CONTROL_CHARS],
        "ligatures": PORTABLE_LIGATURES, "python_whitespace": list(PYTHON_WHITESPACE),
        "single_quotes": [ord(c) for c in _SINGLE_QUOTES], "double_quotes": [ord(c) for c in _DOUBLE_QUOTES],
        "width": "U+3000 -> space; U+FF01..U+FFEF -> NFKC(char)",
        "numeric_entities": "&#N; / &#xH; decoded when the code point is 9, 10, 13, 0x20-0x7E, 0xA0-0xD7FF, "
                            "0xE000-0xFFFD except 0xFDD0-0xFDEF, or a non-BMP code point other than xFFFE/xFFFF",
    })
    if bundle is not None:
        files["bundle_expected.json"] = _dump(bundle_expected(Path(bundle), images))
    if tokenizer:
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            paths = _tokenizer().export_vocab(d)
            files["tokenizer/vocab.json"] = paths["vocab"].read_bytes()
            files["tokenizer/merges.txt"] = paths["merges"].read_bytes()
    try:
        for rel, data in files.items():
            write_atomic(out / rel, data)
        manifest = {"vectors_version": VECTORS_VERSION, "mc2export": __version__,
                    "files": {rel: {"sha256": _sha(data), "bytes": len(data)} for rel, data in sorted(files.items())},
                    "total_bytes": sum(len(d) for d in files.values())}
        write_atomic(out / "manifest.json", _dump(manifest))
    except OSError as e:
        raise UserError(f"cannot write vectors to '{out}': {e.strerror or e}") from None
    return manifest


def register(app, command) -> None:
    """Add ``app-vectors`` to the ``mc2export`` command line (called from ``mc2export.cli``)."""
    import typer

    @command("app-vectors")
    def app_vectors(out: Path = typer.Option(..., "--out", "-o", help="Folder for the vectors (created)."),
                    bundle: Optional[Path] = typer.Option(None, "--bundle", "-b",
                                                          help="An exported bundle: also write its expected "
                                                               "embeddings (bundle_expected.json)."),
                    tokenizer: bool = typer.Option(False, "--tokenizer", help="Also write tokenizer/vocab.json and "
                                                   "tokenizer/merges.txt (for the Swift tests; 1.5 MB).")):
        """Test vectors for the iOS / Android ports: tokenizer ids, preprocessed images, bundle embeddings."""
        manifest = write_vectors(out, bundle, tokenizer)
        n = len(manifest["files"]) + 1
        typer.echo(f"wrote {n} files ({manifest['total_bytes'] / 1024:.0f} KB) to {out}")


__all__ = ["write_vectors", "portable_clean", "text_entries", "image_entries", "bundle_expected", "register"]

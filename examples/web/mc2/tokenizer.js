// CLIP's byte-level BPE tokenizer and text cleaning in JavaScript: a port of mc2export.tokenizer
// (= open_clip's SimpleTokenizer), mirrored from the Kotlin port (examples/android/shared/.../TextCleaner.kt,
// ClipTokenizer.kt), which is the reviewed twin of this file.
//
// Cleaning: Python runs ftfy.fix_text + html.unescape x2 + whitespace collapse + lower-case. This file
// implements the *portable* cleaning (mc2export/appvectors.py:portable_clean is its reference), step by step
// like ftfy: line by line; HTML unescaping switched off for good from the first line containing '<'; each
// line fixed until nothing changes:
//   - HTML entities: the 92 common named ones of ENTITIES and numeric &#N; / &#xH; (semicolon required);
//   - Latin ligatures (ftfy's table), character width (U+3000 -> space, U+FF01..U+FFEF -> NFKC),
//     curly quotes -> ' and ", ANSI terminal escapes removed, ftfy's control characters removed, NFC;
//   - then the entity subset twice more, strip + collapse Python's whitespace set, lower-case
//     (String.prototype.toLowerCase: the full Unicode mapping with Final_Sigma, no locale, as str.lower()).
// Not covered (the vectors mark these strings "python-only", and the tests check that this file then gives
// the vectors' portable_ids): ftfy's mojibake repair (fix_encoding: "cafÃ©" -> "café"), C1 control
// characters read as Windows-1252 ("\x85" -> "…"), surrogate repair, the 2,139 rarer HTML entity names
// (&hearts;) and html.unescape's legacy names without ';' (M&amp -> M&).
// Unicode tables are the browser's (ICU): characters newer than its Unicode version may classify
// differently from Python (none in the vectors).

export const SOT = 49406;
export const EOT = 49407;
export const VOCAB_SIZE = 49408;
export const N_MERGES = 49152 - 256 - 2;
const SOT_TEXT = "<start_of_text>";
const EOT_TEXT = "<end_of_text>";

export const ENTITIES = {
  amp: "&", lt: "<", gt: ">", quot: '"', apos: "'", nbsp: "\u00a0", copy: "\u00a9", reg: "\u00ae",
  trade: "\u2122", hellip: "\u2026", mdash: "\u2014", ndash: "\u2013", lsquo: "\u2018", rsquo: "\u2019",
  ldquo: "\u201c", rdquo: "\u201d", laquo: "\u00ab", raquo: "\u00bb", deg: "\u00b0", times: "\u00d7",
  divide: "\u00f7", middot: "\u00b7", bull: "\u2022", euro: "\u20ac", pound: "\u00a3", yen: "\u00a5",
  cent: "\u00a2", sect: "\u00a7", para: "\u00b6", plusmn: "\u00b1", frac12: "\u00bd", frac14: "\u00bc",
  frac34: "\u00be", iexcl: "\u00a1", iquest: "\u00bf", szlig: "\u00df",
  aacute: "\u00e1", agrave: "\u00e0", acirc: "\u00e2", auml: "\u00e4", atilde: "\u00e3", aring: "\u00e5",
  aelig: "\u00e6", ccedil: "\u00e7", eacute: "\u00e9", egrave: "\u00e8", ecirc: "\u00ea", euml: "\u00eb",
  iacute: "\u00ed", igrave: "\u00ec", icirc: "\u00ee", iuml: "\u00ef", ntilde: "\u00f1", oacute: "\u00f3",
  ograve: "\u00f2", ocirc: "\u00f4", ouml: "\u00f6", otilde: "\u00f5", oslash: "\u00f8", uacute: "\u00fa",
  ugrave: "\u00f9", ucirc: "\u00fb", uuml: "\u00fc", yacute: "\u00fd", yuml: "\u00ff",
  Aacute: "\u00c1", Agrave: "\u00c0", Acirc: "\u00c2", Auml: "\u00c4", Atilde: "\u00c3", Aring: "\u00c5",
  AElig: "\u00c6", Ccedil: "\u00c7", Eacute: "\u00c9", Egrave: "\u00c8", Ecirc: "\u00ca", Euml: "\u00cb",
  Iacute: "\u00cd", Igrave: "\u00cc", Icirc: "\u00ce", Iuml: "\u00cf", Ntilde: "\u00d1", Oacute: "\u00d3",
  Ograve: "\u00d2", Ocirc: "\u00d4", Ouml: "\u00d6", Otilde: "\u00d5", Oslash: "\u00d8", Uacute: "\u00da",
  Ugrave: "\u00d9", Ucirc: "\u00db", Uuml: "\u00dc",
};
// Inclusive code point ranges ftfy's remove_control_chars deletes.
export const CONTROL_RANGES = [[0x00, 0x08], [0x0B, 0x0B], [0x0E, 0x1F], [0x7F, 0x7F], [0x206A, 0x206F],
  [0xFEFF, 0xFEFF], [0xFFF9, 0xFFFC]];
export const LIGATURES = {
  0x0132: "IJ", 0x0133: "ij", 0x0149: "\u02bcn", 0x01f1: "DZ", 0x01f2: "Dz", 0x01f3: "dz", 0x01c4: "D\u017d",
  0x01c5: "D\u017e", 0x01c6: "d\u017e", 0x01c7: "LJ", 0x01c8: "Lj", 0x01c9: "lj", 0x01ca: "NJ", 0x01cb: "Nj",
  0x01cc: "nj", 0xfb00: "ff", 0xfb01: "fi", 0xfb02: "fl", 0xfb03: "ffi", 0xfb04: "ffl", 0xfb05: "\u017ft",
  0xfb06: "st",
};
// Python's str.isspace() set: what str.split() and str.strip() use.
export const PYTHON_WHITESPACE = [0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x1F, 0x20, 0x85, 0xA0, 0x1680,
  0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200A, 0x2028, 0x2029, 0x202F,
  0x205F, 0x3000];
export const SINGLE_QUOTES = [0x02BC, 0x2018, 0x2019, 0x201A, 0x201B];
export const DOUBLE_QUOTES = [0x201C, 0x201D, 0x201E, 0x201F];
const SINGLE = new Set(SINGLE_QUOTES);
const DOUBLE = new Set(DOUBLE_QUOTES);
const WHITESPACE = new Set(PYTHON_WHITESPACE);
const ENTITY_RE = /&(#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});/g;
const ANSI_RE = /\u001b\[((?:\p{Nd}|;)*)([a-zA-Z])/gu;  // Python's \d is any Unicode decimal digit
const LETTER_RE = /^\p{L}$/u;
const NUMBER_RE = /^\p{N}$/u;

export const isPythonSpace = (cp) => WHITESPACE.has(cp);
const isLetter = (ch) => LETTER_RE.test(ch);
const isNumber = (ch) => NUMBER_RE.test(ch);

function numericOk(cp) {
  if (cp === 0x09 || cp === 0x0A || cp === 0x0D) return true;
  if ((cp >= 0x20 && cp <= 0x7E) || (cp >= 0xA0 && cp <= 0xD7FF)) return true;
  if (cp >= 0xE000 && cp <= 0xFFFD) return !(cp >= 0xFDD0 && cp <= 0xFDEF);
  return cp >= 0x10000 && cp <= 0x10FFFF && (cp & 0xFFFF) < 0xFFFE;
}

/** One pass of HTML unescaping: ENTITIES and numeric references, semicolon required. */
export function unescape(text) {
  if (text.indexOf("&") < 0) return text;
  return text.replace(ENTITY_RE, (m, body) => {
    if (body[0] === "#") {
      const hex = body.length > 1 && (body[1] === "x" || body[1] === "X");
      const cp = hex ? parseInt(body.slice(2), 16) : parseInt(body.slice(1), 10);
      return numericOk(cp) ? String.fromCodePoint(cp) : m;
    }
    return Object.prototype.hasOwnProperty.call(ENTITIES, body) ? ENTITIES[body] : m;
  });
}

const isControl = (cp) => CONTROL_RANGES.some(([a, b]) => cp >= a && cp <= b);

function mapCodePoints(text, f) {
  let out = "";
  for (const ch of text) out += f(ch.codePointAt(0), ch);
  return out;
}

function fixSegment(segment, unescapeHtml) {
  let seg = segment;
  for (;;) {
    const orig = seg;
    if (unescapeHtml) seg = unescape(seg);
    seg = mapCodePoints(seg, (cp, ch) => LIGATURES[cp] ?? ch);
    seg = mapCodePoints(seg, (cp, ch) => (cp === 0x3000 ? " " : cp >= 0xFF01 && cp <= 0xFFEF ? ch.normalize("NFKC") : ch));
    seg = mapCodePoints(seg, (cp, ch) => (SINGLE.has(cp) ? "'" : DOUBLE.has(cp) ? '"' : ch));
    if (seg.indexOf("\u001b") >= 0) seg = seg.replace(ANSI_RE, "");
    seg = mapCodePoints(seg, (cp, ch) => (isControl(cp) ? "" : ch));
    seg = seg.normalize("NFC");
    if (seg === orig) return seg;
  }
}

/** strip + split on Python whitespace + join with one space. */
export function collapseWhitespace(text) {
  let out = "";
  let pending = false;
  for (const ch of text) {
    if (isPythonSpace(ch.codePointAt(0))) {
      pending = out.length > 0;
    } else {
      if (pending) out += " ";
      pending = false;
      out += ch;
    }
  }
  return out;
}

/** The portable cleaning (see the file comment). */
export function clean(text) {
  let out = "";
  let unescapeHtml = true;
  let pos = 0;
  while (pos < text.length) {
    const nl = text.indexOf("\n", pos);
    const end = nl < 0 ? text.length : nl + 1;
    const seg = text.slice(pos, end);
    if (unescapeHtml && seg.indexOf("<") >= 0) unescapeHtml = false;
    out += fixSegment(seg, unescapeHtml);
    pos = end;
  }
  return collapseWhitespace(unescape(unescape(out))).toLowerCase();
}

// -- byte-level BPE --------------------------------------------------------------------------------------

/** GPT-2/CLIP byte table: BYTE_ENCODER[b] = the stand-in character of byte b; BYTE_SYMBOLS in vocabulary order. */
export const { BYTE_ENCODER, BYTE_SYMBOLS } = (() => {
  const printable = [];
  for (let b = 0x21; b <= 0x7E; b++) printable.push(b);
  for (let b = 0xA1; b <= 0xAC; b++) printable.push(b);
  for (let b = 0xAE; b <= 0xFF; b++) printable.push(b);
  const table = new Array(256).fill(null);
  for (const b of printable) table[b] = String.fromCodePoint(b);
  let extra = 0;
  for (let b = 0; b < 256; b++) if (table[b] === null) table[b] = String.fromCodePoint(256 + extra++);
  const set = new Set(printable);
  const ordered = printable.map((b) => table[b]);
  for (let b = 0; b < 256; b++) if (!set.has(b)) ordered.push(table[b]);
  return { BYTE_ENCODER: table, BYTE_SYMBOLS: ordered };
})();

const LITERALS = [SOT_TEXT, EOT_TEXT, "'s", "'t", "'re", "'ve", "'m", "'ll", "'d"];

/** Case-insensitive match of an ASCII literal at code point index pos (regex IGNORECASE: simple case
 *  folding, under which U+017F LATIN SMALL LETTER LONG S equals 's'). Returns the end index or -1. */
function matchLiteral(cps, pos, lit) {
  let i = pos;
  for (let k = 0; k < lit.length; k++) {
    if (i >= cps.length) return -1;
    const cp = cps[i].codePointAt(0);
    const p = lit.charCodeAt(k);
    if (!(cp === p || (cp >= 0x41 && cp <= 0x5A && cp + 32 === p) || (p === 0x73 && cp === 0x17F))) return -1;
    i++;
  }
  return i;
}

/** CLIP's pre-tokenization of cleaned text (Python: _PATTERN.findall). */
export function preTokenize(cleaned) {
  const cps = Array.from(cleaned);
  const out = [];
  let i = 0;
  outer: while (i < cps.length) {
    for (const lit of LITERALS) {
      const end = matchLiteral(cps, i, lit);
      if (end >= 0) {
        out.push(cps.slice(i, end).join(""));
        i = end;
        continue outer;
      }
    }
    const ch = cps[i];
    if (isLetter(ch)) {
      let j = i + 1;
      while (j < cps.length && isLetter(cps[j])) j++;
      out.push(cps.slice(i, j).join(""));
      i = j;
    } else if (isNumber(ch)) {
      out.push(ch);
      i++;
    } else if (isPythonSpace(ch.codePointAt(0))) {
      i++;
    } else {
      let j = i + 1;
      while (j < cps.length && !isLetter(cps[j]) && !isNumber(cps[j]) && !isPythonSpace(cps[j].codePointAt(0))) j++;
      out.push(cps.slice(i, j).join(""));
      i = j;
    }
  }
  return out;
}

/** Merge lines ("left right") of merges.txt, skipping exactly the first (header) line. */
export function parseMerges(text) {
  const lines = text.split("\n");
  if (!lines.length || !lines[0].startsWith("#version")) {
    throw new Error("merges.txt must start with the '#version: 0.2' header line");
  }
  const out = [];
  for (let i = 1; i < lines.length && out.length < N_MERGES; i++) {
    const line = lines[i].replace(/\r$/, "");
    if (!line) continue;
    const parts = line.split(" ");
    if (parts.length !== 2 || !parts[0] || !parts[1]) {
      throw new Error(`merges.txt line ${i + 1} is not 'left right': '${line}'`);
    }
    out.push(parts);
  }
  if (out.length !== N_MERGES) {
    throw new Error(`merges.txt holds ${out.length} merges, expected ${N_MERGES} (damaged or not CLIP's)`);
  }
  return out;
}

const UTF8 = new TextEncoder();

export class ClipTokenizer {
  constructor(encoder, ranks, contextLength = 77) {
    if (!Number.isInteger(contextLength) || contextLength < 2) {
      throw new Error(`context length must be an integer >= 2 (room for start and end tokens), got ${contextLength}`);
    }
    this.encoder = encoder;
    this.ranks = ranks;
    this.contextLength = contextLength;
    this.cache = new Map();
  }

  /** From a bundle's vocab.json (text) and merges.txt (text), checked to belong together. */
  static fromFiles(vocabJson, mergesTxt, contextLength = 77) {
    const merges = parseMerges(mergesTxt);
    let obj;
    try {
      obj = JSON.parse(vocabJson);
    } catch (e) {
      throw new Error(`vocab.json is not valid JSON: ${e.message}`);
    }
    if (obj === null || typeof obj !== "object" || Array.isArray(obj)) throw new Error("vocab.json must be a JSON object");
    const encoder = new Map();
    for (const [k, v] of Object.entries(obj)) {
      if (!Number.isInteger(v)) throw new Error(`vocab.json["${k}"] must be an integer`);
      encoder.set(k, v);
    }
    if (encoder.size !== VOCAB_SIZE) throw new Error(`vocab.json holds ${encoder.size} tokens, expected ${VOCAB_SIZE}`);
    if (encoder.get(SOT_TEXT) !== SOT || encoder.get(EOT_TEXT) !== EOT) {
      throw new Error(`vocab.json: ${SOT_TEXT} / ${EOT_TEXT} must be ${SOT} / ${EOT}`);
    }
    // Every symbol BPE can produce must have an id: the byte symbols (alone or word-final) and every merge.
    for (const s of BYTE_SYMBOLS) {
      if (!encoder.has(s) || !encoder.has(s + "</w>")) throw new Error("vocab.json lacks byte symbols: not CLIP's vocabulary");
    }
    const ranks = new Map();
    merges.forEach(([a, b], i) => {
      if (!encoder.has(a + b)) throw new Error(`merges.txt and vocab.json do not belong together (merge '${a} ${b}')`);
      ranks.set(a + " " + b, i);
    });
    return new ClipTokenizer(encoder, ranks, contextLength);
  }

  bpe(piece) {
    const hit = this.cache.get(piece);
    if (hit) return hit;
    if (piece === SOT_TEXT || piece === EOT_TEXT) return [this.encoder.get(piece)];
    let word = Array.from(UTF8.encode(piece), (b) => BYTE_ENCODER[b]);
    word[word.length - 1] += "</w>";
    while (word.length > 1) {
      let best = Infinity;
      let bi = -1;
      for (let k = 0; k < word.length - 1; k++) {
        const r = this.ranks.get(word[k] + " " + word[k + 1]);
        if (r !== undefined && r < best) {
          best = r;
          bi = k;
        }
      }
      if (bi < 0) break;
      const first = word[bi];
      const second = word[bi + 1];
      const merged = [];
      for (let k = 0; k < word.length;) {
        if (k < word.length - 1 && word[k] === first && word[k + 1] === second) {
          merged.push(first + second);
          k += 2;
        } else {
          merged.push(word[k]);
          k += 1;
        }
      }
      word = merged;
    }
    const ids = word.map((s) => {
      const id = this.encoder.get(s);
      if (id === undefined) throw new Error(`BPE symbol '${s}' is not in the vocabulary`);
      return id;
    });
    if (this.cache.size >= 50000) this.cache.clear();
    this.cache.set(piece, ids);
    return ids;
  }

  /** BPE ids of already-cleaned text (no start/end tokens). */
  encodeCleaned(cleaned) {
    const out = [];
    for (const piece of preTokenize(cleaned)) for (const id of this.bpe(piece)) out.push(id);
    return out;
  }

  /** { row: Int32Array(contextLength) [SOT, ids..., EOT, 0...], nTokens, truncated } for raw text. */
  tokenize(text) {
    return this.rowFor(this.encodeCleaned(clean(String(text))));
  }

  /** The same for already-cleaned text. */
  tokenizeCleaned(cleaned) {
    return this.rowFor(this.encodeCleaned(cleaned));
  }

  rowFor(ids) {
    const n = ids.length + 2;
    const L = this.contextLength;
    const row = new Int32Array(L);
    row[0] = SOT;
    if (n > L) {
      row.set(ids.slice(0, L - 1), 1);
      row[L - 1] = EOT;
    } else {
      row.set(ids, 1);
      row[ids.length + 1] = EOT;
    }
    return { row, nTokens: n, truncated: n > L };
  }
}

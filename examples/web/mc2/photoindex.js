// The photo index (`.mc2i`, docs/app_index.md) in the browser: replay of the journal's bytes (a torn tail kept
// out), batches encoded byte for byte as the Python reference (mc2export/appindex.py) writes them, compaction,
// and search over the vectors widened to float32 (the fp16 bits are recovered exactly from them when the
// journal is rewritten), top-k by a bounded heap.
//
// Persistence (JournalStore below): IndexedDB, one record per appended batch (its bytes), in key order; the
// journal is the concatenation. A batch is one IndexedDB transaction with durability "strict" (committed
// to disk before `complete`), so a closed tab or a crash loses at most the batch in flight, and nothing ever
// rewrites what is stored: the browser's equivalent of append + fsync. OPFS would hold a real file, but an
// append from the page's main thread goes through createWritable(), which copies the whole file to a swap
// file per commit (O(N) per batch); its sync access handle needs a worker. Compaction replaces all
// records with one in a single transaction (the atomic rename).

export const MAGIC = "MC2INDEX";
export const VERSION = 1;
export const MAX_HEADER = 65536;
export const MAX_KEY = 4096;
export const PUT = 1;
export const DELETE = 2;
const BLOCK = 4096;  // rows per Float32Array block: growing never copies what is stored

export class IndexError extends Error {
  constructor(message) {
    super(message);
    this.name = "IndexError";
  }
}

// -- fp16 -----------------------------------------------------------------------------------------------------

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE binary16 bits of a float32 value, round to nearest even (numpy's astype(float16)). */
export function toFp16(value) {
  f32[0] = value;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    const m = mant | 0x800000;
    const shift = 14 - e;
    let h = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1))) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
  return sign | h;
}

/** float32 value of fp16 bits (exact). */
export function fromFp16(h) {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  let mant = h & 0x3ff;
  if (exp === 0x1f) u32[0] = sign | 0x7f800000 | (mant << 13);
  else if (exp !== 0) u32[0] = sign | ((exp + 112) << 23) | (mant << 13);
  else if (mant === 0) u32[0] = sign;
  else {
    let e = 113;
    while (!(mant & 0x400)) { mant <<= 1; e--; }
    u32[0] = sign | (e << 23) | ((mant & 0x3ff) << 13);
  }
  return f32[0];
}

let fp16Table = null;
/** Every fp16 pattern widened (the replay's lookup). */
export function fp16Table16() {
  if (!fp16Table) {
    fp16Table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) fp16Table[h] = fromFp16(h);
  }
  return fp16Table;
}

// -- CRC-32 (zlib) ----------------------------------------------------------------------------------------------

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32(bytes, start = 0, end = bytes.length) {
  let c = 0xffffffff;
  for (let i = start; i < end; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

// -- header -----------------------------------------------------------------------------------------------------

const HEX64 = /^[0-9a-f]{64}$/;

/** A header object checked field by field (the spec's types and ranges). */
export function checkHeader(h) {
  if (h === null || typeof h !== "object" || Array.isArray(h)) throw new IndexError("photo index header is not a JSON object");
  for (const [k, t] of [["variant", "string"], ["precision", "string"], ["bundle_sha256", "string"], ["dim", "number"], ["vector_dtype", "string"]]) {
    if (typeof h[k] !== t) throw new IndexError(`photo index header: ${k} is missing or not a ${t}`);
  }
  if (!Number.isInteger(h.dim) || h.dim < 1 || h.dim > 8192) throw new IndexError(`photo index header: dim ${h.dim} is outside 1..8192`);
  if (h.vector_dtype !== "float16") throw new IndexError(`photo index header: vector_dtype "${h.vector_dtype}" is not supported (float16 only)`);
  if (!HEX64.test(h.bundle_sha256)) throw new IndexError("photo index header: bundle_sha256 must be 64 lowercase hex digits");
  return { variant: h.variant, precision: h.precision, bundle_sha256: h.bundle_sha256, dim: h.dim, vector_dtype: h.vector_dtype };
}

/** A string as Python's json.dumps writes it (ensure_ascii): headers byte-identical across the ports. */
function pyString(s) {
  return JSON.stringify(s).replace(/[^\x20-\x7e]/g, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
}

export function encodeHeader(h) {
  const c = checkHeader(h);
  const json = `{"bundle_sha256":${pyString(c.bundle_sha256)},"dim":${c.dim},"precision":${pyString(c.precision)},` +
    `"variant":${pyString(c.variant)},"vector_dtype":${pyString(c.vector_dtype)}}`;
  const body = new TextEncoder().encode(json);
  const out = new Uint8Array(16 + body.length);
  out.set(new TextEncoder().encode(MAGIC));
  const dv = new DataView(out.buffer);
  dv.setUint32(8, VERSION, true);
  dv.setUint32(12, body.length, true);
  out.set(body, 16);
  return out;
}

export function sameModel(a, b) {
  return a.variant === b.variant && a.precision === b.precision && a.bundle_sha256 === b.bundle_sha256 && a.dim === b.dim;
}

const describeHeader = (h) => `${h.variant} ${h.precision} (config ${h.bundle_sha256.slice(0, 12)}, ${h.dim}-d)`;

// -- records ----------------------------------------------------------------------------------------------------

const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

function keyBytes(key) {
  const b = utf8.encode(String(key));
  if (b.length < 1 || b.length > MAX_KEY) throw new RangeError(`an index key must be 1..${MAX_KEY} UTF-8 bytes, got ${b.length}`);
  return b;
}

export const recordBytes = (kind, klen, dim) => 1 + 2 + klen + 8 + (kind === PUT ? 2 * dim : 0) + 4;

/** fp16 bits of an embedding as the reference stores it: norm summed in double, rounded to float32, the
 *  division in float32 (Math.fround), then nearest-even fp16. Zero or non-finite: refused. */
export function vectorBits(vector, dim) {
  if (vector.length !== dim) throw new RangeError(`embedding has ${vector.length} values, the index holds ${dim}-d vectors`);
  let s = 0;
  for (let i = 0; i < dim; i++) { const x = Math.fround(vector[i]); s += x * x; }
  const n = Math.fround(Math.sqrt(s));
  if (!(n > 0) || !Number.isFinite(n)) throw new RangeError("embedding is zero or not finite: nothing to index");
  const out = new Uint16Array(dim);
  for (let i = 0; i < dim; i++) out[i] = toFp16(Math.fround(Math.fround(vector[i]) / n));
  return out;
}

// -- the live state ------------------------------------------------------------------------------------------------

/** Live photos in index order with their vectors widened to float32, in blocks of BLOCK rows. */
class Store {
  constructor(dim) {
    this.dim = dim;
    this.blocks = [];
    this.keys = [];
    this.stamps = [];
    this.alive = new Uint8Array(1024);
    this.slotOf = new Map();
    this.slots = 0;
  }

  get size() { return this.slotOf.size; }

  /** PUT with fp16 bits [off, off + dim) of `bits` (widened through the table). */
  put(key, stamp, bits, off) {
    let s = this.slotOf.get(key);
    if (s === undefined) {
      s = this.slots++;
      if (s % BLOCK === 0) this.blocks.push(new Float32Array(BLOCK * this.dim));
      if (s === this.alive.length) { const a = new Uint8Array(s * 2); a.set(this.alive); this.alive = a; }
      this.keys.push(key);
      this.stamps.push(0);
      this.slotOf.set(key, s);
    }
    this.stamps[s] = stamp;
    this.alive[s] = 1;
    const t = fp16Table16();
    const row = this.blocks[(s / BLOCK) | 0];
    const o = (s % BLOCK) * this.dim;
    for (let i = 0; i < this.dim; i++) row[o + i] = t[bits[off + i]];
  }

  delete(key) {
    const s = this.slotOf.get(key);
    if (s === undefined) return false;
    this.slotOf.delete(key);
    this.alive[s] = 0;
    return true;
  }

  row(s) {
    const o = (s % BLOCK) * this.dim;
    return this.blocks[(s / BLOCK) | 0].subarray(o, o + this.dim);
  }

  /** The fp16 bits of a live key (recovered exactly from the widened floats). */
  bits(key) {
    const s = this.slotOf.get(key);
    if (s === undefined) return null;
    return Uint16Array.from(this.row(s), toFp16);
  }
}

/** Bounded min-heap of the k best (score, slot); root = worst kept (lower score, then later slot). */
export class TopK {
  constructor(k) {
    this.k = k;
    this.scores = new Float32Array(k);
    this.slots = new Int32Array(k);
    this.n = 0;
  }

  worse(a, b) {
    const s = this.scores;
    return s[a] < s[b] || (s[a] === s[b] && this.slots[a] > this.slots[b]);
  }

  swap(a, b) {
    const s = this.scores[a]; this.scores[a] = this.scores[b]; this.scores[b] = s;
    const t = this.slots[a]; this.slots[a] = this.slots[b]; this.slots[b] = t;
  }

  /** Offers come in slot order: an equal score never displaces an earlier slot. */
  offer(score, slot) {
    if (this.n < this.k) {
      let i = this.n++;
      this.scores[i] = score; this.slots[i] = slot;
      while (i > 0) {
        const p = (i - 1) >> 1;
        if (!this.worse(i, p)) break;
        this.swap(i, p); i = p;
      }
    } else if (score > this.scores[0]) {
      this.scores[0] = score; this.slots[0] = slot;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < this.n && this.worse(l, m)) m = l;
        if (r < this.n && this.worse(r, m)) m = r;
        if (m === i) break;
        this.swap(i, m); i = m;
      }
    }
  }

  /** Best first. */
  drain() {
    const out = [];
    for (let i = 0; i < this.n; i++) out.push([this.scores[i], this.slots[i]]);
    return out.sort((a, b) => b[0] - a[0] || a[1] - b[1]);
  }
}

// -- the index -------------------------------------------------------------------------------------------------

export class PhotoIndex {
  constructor(header) {
    this.header = checkHeader(header);
    this.dim = this.header.dim;
    this.store = new Store(this.dim);
    this.length = encodeHeader(this.header).length;  // bytes of the journal (whole records)
    this.deadBytes = 0;
    this.records = 0;
    this.droppedBytes = 0;
  }

  /**
   * Replay a journal's bytes. `expected`: the loaded bundle's header -- another model's index is refused
   * (IndexError). A torn or damaged tail is left out: `validLength` / `droppedBytes` say where.
   */
  static replay(buffer, expected = null) {
    const b = buffer instanceof Uint8Array ? buffer : new Uint8Array(buffer);
    const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    if (b.length < 16 || new TextDecoder("ascii").decode(b.subarray(0, 8)) !== MAGIC) throw new IndexError("not a photo index (no MC2INDEX header)");
    const version = dv.getUint32(8, true);
    if (version !== VERSION) throw new IndexError(`photo index version ${version} is not supported (this app reads version ${VERSION})`);
    const hlen = dv.getUint32(12, true);
    if (hlen < 1 || hlen > MAX_HEADER) throw new IndexError(`photo index header length ${hlen} is outside 1..${MAX_HEADER}`);
    if (16 + hlen > b.length) throw new IndexError("photo index header is cut short");
    let h;
    try {
      h = JSON.parse(strictUtf8.decode(b.subarray(16, 16 + hlen)));
    } catch (e) {
      throw new IndexError("photo index header is not valid JSON: the index is damaged");
    }
    h = checkHeader(h);
    if (expected && !sameModel(h, expected)) {
      throw new IndexError(`this photo index was built by another model (${describeHeader(h)}), not the loaded one (${describeHeader(expected)})`);
    }
    const idx = new PhotoIndex(h);
    const dim = h.dim;
    const bits = new Uint16Array(dim);
    let off = 16 + hlen;
    const n = b.length;
    while (off + 3 <= n) {
      const kind = b[off];
      const klen = dv.getUint16(off + 1, true);
      if ((kind !== PUT && kind !== DELETE) || klen < 1 || klen > MAX_KEY) break;
      const end = off + recordBytes(kind, klen, dim);
      if (end > n) break;
      if (crc32(b, off, end - 4) !== dv.getUint32(end - 4, true)) break;
      let key;
      try {
        key = strictUtf8.decode(b.subarray(off + 3, off + 3 + klen));
      } catch (e) {
        break;
      }
      const stamp = Number(dv.getBigInt64(off + 3 + klen, true));
      if (kind === PUT) {
        for (let i = 0, p = off + 3 + klen + 8; i < dim; i++, p += 2) bits[i] = dv.getUint16(p, true);
        idx.applyPut(key, stamp, bits, 0, klen);
      } else {
        idx.applyDelete(key, klen);
      }
      idx.records++;
      off = end;
    }
    idx.length = off;
    idx.droppedBytes = n - off;
    return idx;
  }

  applyPut(key, stamp, bits, off, klen) {
    if (this.store.slotOf.has(key)) this.deadBytes += recordBytes(PUT, klen, this.dim);
    this.store.put(key, stamp, bits, off);
  }

  applyDelete(key, klen) {
    if (this.store.delete(key)) this.deadBytes += recordBytes(PUT, klen, this.dim);
    this.deadBytes += recordBytes(DELETE, klen, this.dim);
  }

  get size() { return this.store.size; }
  get validLength() { return this.length; }
  get deadFraction() { return this.length ? this.deadBytes / this.length : 0; }
  get compactionDue() { return this.deadFraction > 0.25; }

  keys() {
    const out = [];
    for (let s = 0; s < this.store.slots; s++) if (this.store.alive[s]) out.push(this.store.keys[s]);
    return out;
  }
  stamp(key) { const s = this.store.slotOf.get(key); return s === undefined ? null : this.store.stamps[s]; }
  has(key, stamp) { return this.stamp(key) === stamp; }
  vectorBits(key) { return this.store.bits(key); }

  /**
   * Encode a batch ([{key, stamp, vector}] PUTs, [{key, delete: true}] tombstones) as the bytes to append, and
   * apply it here. The caller stores the bytes (JournalStore.append) before reporting progress.
   */
  encodeBatch(ops) {
    const enc = ops.map((o) => ({ key: String(o.key), kb: keyBytes(o.key), stamp: o.delete ? (o.stamp || 0) : o.stamp,
      bits: o.delete ? null : vectorBits(o.vector, this.dim) }));
    let total = 0;
    for (const e of enc) total += recordBytes(e.bits ? PUT : DELETE, e.kb.length, this.dim);
    const out = new Uint8Array(total);
    const dv = new DataView(out.buffer);
    let p = 0;
    for (const e of enc) {
      const start = p;
      out[p] = e.bits ? PUT : DELETE;
      dv.setUint16(p + 1, e.kb.length, true);
      out.set(e.kb, p + 3);
      p += 3 + e.kb.length;
      dv.setBigInt64(p, BigInt(e.stamp), true);
      p += 8;
      if (e.bits) for (let i = 0; i < this.dim; i++, p += 2) dv.setUint16(p, e.bits[i], true);
      dv.setUint32(p, crc32(out, start, p), true);
      p += 4;
    }
    for (const e of enc) {
      if (e.bits) this.applyPut(e.key, e.stamp, e.bits, 0, e.kb.length);
      else this.applyDelete(e.key, e.kb.length);
      this.records++;
    }
    this.length += total;
    return out;
  }

  /** The compacted journal: the header, then one PUT per live key in index order, bits and stamps as they are. */
  compactBytes() {
    const keys = this.keys();
    const head = encodeHeader(this.header);
    const kbs = keys.map((k) => utf8.encode(k));
    let total = head.length;
    for (const kb of kbs) total += recordBytes(PUT, kb.length, this.dim);
    const out = new Uint8Array(total);
    out.set(head);
    const dv = new DataView(out.buffer);
    let p = head.length;
    keys.forEach((key, i) => {
      const start = p;
      const s = this.store.slotOf.get(key);
      const row = this.store.row(s);
      out[p] = PUT;
      dv.setUint16(p + 1, kbs[i].length, true);
      out.set(kbs[i], p + 3);
      p += 3 + kbs[i].length;
      dv.setBigInt64(p, BigInt(this.store.stamps[s]), true);
      p += 8;
      for (let j = 0; j < this.dim; j++, p += 2) dv.setUint16(p, toFp16(row[j]), true);
      dv.setUint32(p, crc32(out, start, p), true);
      p += 4;
    });
    this.length = total;
    this.deadBytes = 0;
    this.records = keys.length;
    return out;
  }

  /**
   * The k live photos of highest dot(q, v), best first; equal scores in index order. q is L2-normalized here
   * (float32); one pass over the Float32Array blocks with four accumulators (in double: at least as exact as
   * the float32 sums of the other ports, within the vectors' 1e-5); a bounded heap keeps the k best (its
   * scores are float32).
   */
  search(query, k) {
    const dim = this.dim;
    if (query.length !== dim) throw new RangeError(`query has ${query.length} values, the index holds ${dim}-d vectors`);
    if (!(k > 0) || this.size === 0) return [];
    let s = 0;
    for (let i = 0; i < dim; i++) s += query[i] * query[i];
    const norm = Math.sqrt(s);
    const q = new Float32Array(dim);
    if (norm > 0) for (let i = 0; i < dim; i++) q[i] = query[i] / norm;
    const heap = new TopK(Math.min(k, this.size));
    const alive = this.store.alive;
    const d4 = dim - (dim % 4);
    for (let b = 0; b < this.store.blocks.length; b++) {
      const block = this.store.blocks[b];
      const first = b * BLOCK;
      const rows = Math.min(BLOCK, this.store.slots - first);
      for (let r = 0; r < rows; r++) {
        if (!alive[first + r]) continue;
        const o = r * dim;
        let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        let i = 0;
        for (; i < d4; i += 4) {
          s0 += q[i] * block[o + i];
          s1 += q[i + 1] * block[o + i + 1];
          s2 += q[i + 2] * block[o + i + 2];
          s3 += q[i + 3] * block[o + i + 3];
        }
        for (; i < dim; i++) s0 += q[i] * block[o + i];
        heap.offer((s0 + s1) + (s2 + s3), first + r);
      }
    }
    return heap.drain().map(([score, slot]) => ({ key: this.store.keys[slot], score }));
  }
}

// -- persistence -------------------------------------------------------------------------------------------------

/** The journal in IndexedDB: one record per batch (see the top of this file). */
export class JournalStore {
  constructor(db, name) {
    this.db = db;
    this.name = name;
  }

  static open(name, dbName = "mc2-photo-index") {
    return new Promise((resolve, reject) => {
      const req = indexedDB.open(dbName, 1);
      req.onupgradeneeded = () => req.result.createObjectStore("batches");  // keys: [index name, batch number]
      req.onsuccess = () => resolve(new JournalStore(req.result, name));
      req.onerror = () => reject(req.error);
    });
  }

  tx(mode) {
    return this.db.transaction("batches", mode, { durability: "strict" });
  }

  done(tx) {
    return new Promise((resolve, reject) => {
      tx.oncomplete = () => resolve();
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error || new Error("the journal transaction was aborted"));
    });
  }

  /** The whole journal (null when there is none): the batches' bytes concatenated in key order. */
  async load() {
    const tx = this.tx("readonly");
    const range = IDBKeyRange.bound([this.name, 0], [this.name, Infinity]);
    const parts = await new Promise((resolve, reject) => {
      const req = tx.objectStore("batches").getAll(range);
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
    if (!parts.length) return null;
    let total = 0;
    for (const p of parts) total += p.byteLength;
    const out = new Uint8Array(total);
    let o = 0;
    for (const p of parts) { out.set(new Uint8Array(p), o); o += p.byteLength; }
    return out;
  }

  async nextSeq(store) {
    return new Promise((resolve, reject) => {
      const req = store.openCursor(IDBKeyRange.bound([this.name, 0], [this.name, Infinity]), "prev");
      req.onsuccess = () => resolve(req.result ? req.result.key[1] + 1 : 0);
      req.onerror = () => reject(req.error);
    });
  }

  /** Append one batch durably (resolves once committed). */
  async append(bytes) {
    const tx = this.tx("readwrite");
    const store = tx.objectStore("batches");
    const seq = await this.nextSeq(store);
    store.put(bytes.slice().buffer, [this.name, seq]);
    return this.done(tx);
  }

  /** Replace the journal with `bytes` in one transaction (compaction; a new index after a model change). */
  async replace(bytes) {
    const tx = this.tx("readwrite");
    const store = tx.objectStore("batches");
    store.delete(IDBKeyRange.bound([this.name, 0], [this.name, Infinity]));
    store.put(bytes.slice().buffer, [this.name, 0]);
    return this.done(tx);
  }

  close() { this.db.close(); }
}

/**
 * The page's index for the loaded bundle: replayed from IndexedDB (another model's journal is replaced by a new
 * one after `confirmReplace()` says yes; a torn tail is cut off before anything is appended), appended batch
 * by batch, compacted when a quarter is dead.
 */
export async function openPersistent(header, { name = "default", confirmReplace = async () => true } = {}) {
  const journal = await JournalStore.open(name);
  const bytes = await journal.load();
  let index = null;
  if (bytes) {
    try {
      index = PhotoIndex.replay(bytes, header);
      if (index.droppedBytes) await journal.replace(bytes.slice(0, index.validLength));
    } catch (e) {
      if (!(e instanceof IndexError) || !(await confirmReplace(e.message))) { journal.close(); throw e; }
      index = null;
    }
  }
  if (!index) {
    index = new PhotoIndex(header);
    await journal.replace(encodeHeader(header));
  }
  return {
    index, journal,
    async append(ops) { if (ops.length) await journal.append(index.encodeBatch(ops)); },
    async compact() { await journal.replace(index.compactBytes()); },
  };
}

// The inference preprocessing of mc2export.preprocess, pixel for pixel: EXIF orientation -> shortest side to R
// (long side int(R * long / short)) with Pillow's resampling -> center crop (Python's round: half to even)
// -> RGB -> float32 u8 / 255 [-> (x - mean) / std]. Canvas resampling is not Pillow's, so Pillow's 8-bit
// two-pass resize (Resample.c, ImagingResample 8bpc) is ported here line by line, as in the Kotlin twin
// (examples/android/shared/.../Preprocess.kt): separable filter whose support grows with the downscale factor
// (antialiasing), 22-bit fixed-point coefficients rounded half away from zero, horizontal pass first, each
// pass rounded and clipped to 8 bits. RGBA is resized in premultiplied alpha, as Pillow does.

const PRECISION_BITS = 32 - 8 - 2;

export const INTERPOLATIONS = {
  bilinear: { support: 1.0, filter: (x) => (x < 1.0 ? 1.0 - x : 0.0) },
  bicubic: {
    support: 2.0,
    filter: (x) => {
      const a = -0.5;
      if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
      if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
      return 0.0;
    },
  },
};

/** "bilinear" | "bicubic" (also upper case, as PIL's constant names), else an error naming the choices. */
export function parseInterpolation(name) {
  const key = typeof name === "string" ? name.trim().toLowerCase() : "";
  if (!(key in INTERPOLATIONS) || (name.trim() !== key && name.trim() !== key.toUpperCase())) {
    throw new Error(`interpolation '${name}' is not supported (bilinear or bicubic)`);
  }
  return key;
}

function precompute(inSize, outSize, interp) {
  const f = INTERPOLATIONS[interp];
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1.0);
  const support = f.support * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const pre = new Float64Array(outSize * ksize);
  const bounds = new Int32Array(outSize * 2);
  const ss = 1.0 / filterscale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    let ww = 0.0;
    let xmin = Math.trunc(center - support + 0.5);  // C's (int): truncation toward zero
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    const base = xx * ksize;
    for (let x = 0; x < xmax; x++) {
      const w = f.filter(Math.abs((x + xmin - center + 0.5) * ss));
      pre[base + x] = w;
      ww += w;
    }
    if (ww !== 0.0) for (let x = 0; x < xmax; x++) pre[base + x] /= ww;
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  const one = 2 ** PRECISION_BITS;
  const kk = new Int32Array(pre.length);
  for (let i = 0; i < pre.length; i++) {
    const v = pre[i];
    kk[i] = v < 0 ? Math.trunc(-0.5 + v * one) : Math.trunc(0.5 + v * one);
  }
  return { ksize, bounds, kk };
}

function clip8(v) {
  const s = v >> PRECISION_BITS;
  return s < 0 ? 0 : s > 255 ? 255 : s;
}

/** Resize interleaved 8-bit channels (nch per pixel) from w x h to outW x outH (Pillow's two passes). */
export function resizeChannels(src, w, h, nch, outW, outH, interp) {
  const needH = outW !== w;
  const needV = outH !== h;
  const horiz = precompute(w, outW, interp);
  const vert = precompute(h, outH, interp);
  const half = 1 << (PRECISION_BITS - 1);
  let cur = src;
  let curW = w;
  let vBounds = vert.bounds;
  const ss = new Int32Array(nch);
  if (needH) {
    // Only the rows the vertical pass reads (Pillow does the same; the result is identical).
    const yFirst = vert.bounds[0];
    const yLast = vert.bounds[outH * 2 - 2] + vert.bounds[outH * 2 - 1];
    const rows = needV ? yLast - yFirst : h;
    const off = needV ? yFirst : 0;
    const tmp = new Uint8Array(outW * rows * nch);
    for (let yy = 0; yy < rows; yy++) {
      const rowIn = (yy + off) * w * nch;
      for (let xx = 0; xx < outW; xx++) {
        const xmin = horiz.bounds[xx * 2];
        const xmax = horiz.bounds[xx * 2 + 1];
        const kb = xx * horiz.ksize;
        ss.fill(half);
        for (let x = 0; x < xmax; x++) {
          const k = horiz.kk[kb + x];
          const p = rowIn + (x + xmin) * nch;
          for (let c = 0; c < nch; c++) ss[c] += src[p + c] * k;
        }
        const o = (yy * outW + xx) * nch;
        for (let c = 0; c < nch; c++) tmp[o + c] = clip8(ss[c]);
      }
    }
    cur = tmp;
    curW = outW;
    if (needV) {
      vBounds = vert.bounds.slice();
      for (let i = 0; i < outH; i++) vBounds[i * 2] -= off;
    }
  }
  if (!needV) return cur === src ? src.slice() : cur;
  const out = new Uint8Array(curW * outH * nch);
  for (let yy = 0; yy < outH; yy++) {
    const ymin = vBounds[yy * 2];
    const ymax = vBounds[yy * 2 + 1];
    const kb = yy * vert.ksize;
    for (let xx = 0; xx < curW; xx++) {
      ss.fill(half);
      for (let y = 0; y < ymax; y++) {
        const k = vert.kk[kb + y];
        const p = ((y + ymin) * curW + xx) * nch;
        for (let c = 0; c < nch; c++) ss[c] += cur[p + c] * k;
      }
      const o = (yy * curW + xx) * nch;
      for (let c = 0; c < nch; c++) out[o + c] = clip8(ss[c]);
    }
  }
  return out;
}

/** [width, height] after resizing the shortest side of (w, h) to r (Python: int(r * long / short)). */
export function resizedSize(w, h, r) {
  return w <= h ? [r, Math.trunc((r * h) / w)] : [Math.trunc((r * w) / h), r];
}

/** Python's round(): half to even. */
function roundHalfEven(x) {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** [left, top] of the R x R center crop of a (w, h) image. */
export function cropOrigin(w, h, r) {
  return [roundHalfEven((w - r) / 2), roundHalfEven((h - r) / 2)];
}

function muldiv255(a, b) {
  const t = a * b + 128;
  return ((t >> 8) + t) >> 8;
}

function checkImage(rgba, width, height) {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new Error(`image has no pixels (size ${width}x${height})`);
  }
  if (!rgba || rgba.length !== width * height * 4) {
    throw new Error(`RGBA data holds ${rgba ? rgba.length : 0} bytes, expected width * height * 4 = ${width * height * 4}`);
  }
}

/**
 * Resize (shortest side -> r) and center-crop an upright RGBA image (Uint8Array/Uint8ClampedArray, 4 bytes
 * per pixel, not premultiplied): Uint8Array R x R x 3 (HWC, RGB). hasAlpha = false ignores the alpha byte.
 */
export function resizeCrop(rgba, width, height, r, interp, hasAlpha = false) {
  checkImage(rgba, width, height);
  if (!Number.isInteger(r) || r < 1) throw new Error("resolution must be a positive integer");
  const [nw, nh] = resizedSize(width, height, r);
  const resize = nw !== width || nh !== height;
  const nch = hasAlpha ? 4 : 3;
  let data = new Uint8Array(width * height * nch);
  for (let i = 0, n = width * height; i < n; i++) {
    let rr = rgba[i * 4];
    let gg = rgba[i * 4 + 1];
    let bb = rgba[i * 4 + 2];
    const a = rgba[i * 4 + 3];
    if (hasAlpha && resize) {  // RGBA -> RGBa before resizing, as Pillow
      rr = muldiv255(rr, a);
      gg = muldiv255(gg, a);
      bb = muldiv255(bb, a);
    }
    data[i * nch] = rr;
    data[i * nch + 1] = gg;
    data[i * nch + 2] = bb;
    if (nch === 4) data[i * nch + 3] = a;
  }
  let cw = width;
  if (resize) {
    data = resizeChannels(data, width, height, nch, nw, nh, interp);
    cw = nw;
    if (nch === 4) {  // RGBa -> RGBA
      for (let i = 0, n = nw * nh; i < n; i++) {
        const o = i * 4;
        const a = data[o + 3];
        if (a !== 255 && a !== 0) for (let c = 0; c < 3; c++) data[o + c] = Math.min(255, Math.trunc((255 * data[o + c]) / a));
      }
    }
  }
  const [left, top] = cropOrigin(nw, nh, r);
  const out = new Uint8Array(r * r * 3);
  for (let y = 0; y < r; y++) {
    for (let x = 0; x < r; x++) {
      const s = ((y + top) * cw + (x + left)) * nch;
      const o = (y * r + x) * 3;
      out[o] = data[s];
      out[o + 1] = data[s + 1];
      out[o + 2] = data[s + 2];
    }
  }
  return out;
}

/** float32 [3, R, R] from an R x R x 3 crop: u8 / 255, or (u8 / 255 - mean) / std in float32 (torch's). */
export function toCHW(crop, r, mean = null, std = null) {
  const out = new Float32Array(3 * r * r);
  const f = Math.fround;
  for (let c = 0; c < 3; c++) {
    const m = mean ? f(mean[c]) : 0;
    const s = std ? f(std[c]) : 1;
    for (let i = 0, n = r * r; i < n; i++) {
      const unit = f(crop[i * 3 + c] / 255);
      out[c * n + i] = mean ? f(f(unit - m) / s) : unit;
    }
  }
  return out;
}

// -- EXIF orientation --------------------------------------------------------------------------------------

/**
 * The upright RGBA image for EXIF orientation 1..8 (PIL's ImageOps.exif_transpose: 2 mirror, 3 rotate 180,
 * 4 flip, 5 transpose, 6 rotate 90 clockwise, 7 transverse, 8 rotate 90 counter-clockwise).
 * Returns { rgba, width, height }.
 */
export function applyOrientation(rgba, width, height, orientation) {
  checkImage(rgba, width, height);
  if (!(orientation >= 2 && orientation <= 8)) return { rgba, width, height };
  const w = width;
  const h = height;
  const swap = orientation >= 5;
  const ow = swap ? h : w;
  const oh = swap ? w : h;
  const bytes = rgba.byteOffset % 4 === 0 ? rgba : Uint8Array.from(rgba);
  const src = new Uint32Array(bytes.buffer, bytes.byteOffset, w * h);
  const out = new Uint32Array(ow * oh);
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) {
      let sx;
      let sy;
      switch (orientation) {
        case 2: sx = w - 1 - x; sy = y; break;
        case 3: sx = w - 1 - x; sy = h - 1 - y; break;
        case 4: sx = x; sy = h - 1 - y; break;
        case 5: sx = y; sy = x; break;
        case 6: sx = y; sy = h - 1 - x; break;
        case 7: sx = w - 1 - y; sy = h - 1 - x; break;
        default: sx = w - 1 - y; sy = x;  // 8
      }
      out[y * ow + x] = src[sy * w + sx];
    }
  }
  return { rgba: new Uint8Array(out.buffer), width: ow, height: oh };
}

/** The orientation tag (1..8) of JPEG or PNG (eXIf chunk) bytes; 1 when there is none or it cannot be read. */
export function readOrientation(bytes) {
  const b = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  const be16 = (i) => (b[i] << 8) | b[i + 1];
  const be32 = (i) => ((be16(i) << 16) | be16(i + 2)) >>> 0;
  function tiff(off, end) {
    if (off + 8 > end || end > b.length) return 1;
    const little = b[off] === 0x49 && b[off + 1] === 0x49;
    if (!little && !(b[off] === 0x4D && b[off + 1] === 0x4D)) return 1;
    const r16 = (i) => (little ? b[i] | (b[i + 1] << 8) : be16(i));
    const r32 = (i) => (little ? (r16(i) | (r16(i + 2) << 16)) >>> 0 : be32(i));
    if (r16(off + 2) !== 42) return 1;
    const ifd = off + r32(off + 4);
    if (ifd < off || ifd + 2 > end) return 1;
    const n = r16(ifd);
    for (let k = 0; k < n; k++) {
      const e = ifd + 2 + k * 12;
      if (e + 12 > end) return 1;
      if (r16(e) === 0x0112) {
        const t = r16(e + 2);
        const v = t === 3 ? r16(e + 8) : t === 4 ? r32(e + 8) : 0;
        return v >= 1 && v <= 8 ? v : 1;
      }
    }
    return 1;
  }
  if (b.length > 3 && b[0] === 0xFF && b[1] === 0xD8) {
    let i = 2;
    while (i + 4 <= b.length) {
      if (b[i] !== 0xFF) return 1;
      const marker = b[i + 1];
      if (marker === 0xFF) { i++; continue; }
      if (marker === 0xD9 || marker === 0xDA) return 1;  // end of image / start of scan: no EXIF before
      if (marker === 0x01 || (marker >= 0xD0 && marker <= 0xD7)) { i += 2; continue; }
      const len = be16(i + 2);
      const start = i + 4;
      if (marker === 0xE1 && len >= 8 && start + 6 <= b.length && b[start] === 0x45 && b[start + 1] === 0x78 &&
          b[start + 2] === 0x69 && b[start + 3] === 0x66 && b[start + 4] === 0 && b[start + 5] === 0) {
        return tiff(start + 6, Math.min(i + 2 + len, b.length));
      }
      i += 2 + len;
    }
    return 1;
  }
  if (b.length > 8 && b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4E && b[3] === 0x47) {
    let i = 8;
    while (i + 8 <= b.length) {
      const len = be32(i);
      const type = String.fromCharCode(b[i + 4], b[i + 5], b[i + 6], b[i + 7]);
      const start = i + 8;
      if (type === "eXIf") {
        let t = start;
        if (len >= 6 && b[t] === 0x45 && b[t + 1] === 0x78 && b[t + 2] === 0x69 && b[t + 3] === 0x66) t += 6;
        return tiff(t, Math.min(start + len, b.length));
      }
      if (type === "IEND") return 1;
      i = start + len + 4;
    }
  }
  return 1;
}

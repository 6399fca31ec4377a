import Foundation

/// An 8-bit image as packed 0xAARRGGBB values, row-major (the Kotlin RgbImage layout).
public struct RGBAImage: Sendable {
    public let width: Int
    public let height: Int
    public let pixels: [UInt32]
    /// false: alpha ignored (opaque image).
    public let hasAlpha: Bool

    public init(width: Int, height: Int, pixels: [UInt32], hasAlpha: Bool = false) {
        precondition(width >= 1 && height >= 1 && pixels.count == width * height, "bad image size")
        self.width = width
        self.height = height
        self.pixels = pixels
        self.hasAlpha = hasAlpha
    }

    /// From interleaved RGB (3) or RGBA (4, not premultiplied) bytes.
    public init(width: Int, height: Int, bytes: [UInt8], channels: Int) {
        precondition((channels == 3 || channels == 4) && bytes.count == width * height * channels)
        var px = [UInt32](repeating: 0, count: width * height)
        for i in 0..<(width * height) {
            let o = i * channels
            let a: UInt32 = channels == 4 ? UInt32(bytes[o + 3]) : 255
            px[i] = (a << 24) | (UInt32(bytes[o]) << 16) | (UInt32(bytes[o + 1]) << 8) | UInt32(bytes[o + 2])
        }
        self.init(width: width, height: height, pixels: px, hasAlpha: channels == 4)
    }
}

/// PIL's filters (Resample.c): bilinear (support 1), bicubic (support 2, a = -0.5).
public enum Interpolation: String, Sendable {
    case bilinear, bicubic

    /// The config's name: "bilinear" / "bicubic", also PIL's constant names in upper case and with surrounding
    /// spaces (as Interpolation.parse in Preprocess.kt); nil for anything else.
    public static func parse(_ name: String) -> Interpolation? {
        let t = name.trimmingCharacters(in: .whitespaces)
        switch t {
        case "bilinear", "BILINEAR": return .bilinear
        case "bicubic", "BICUBIC": return .bicubic
        default: return nil
        }
    }

    var support: Double { self == .bilinear ? 1.0 : 2.0 }

    func filter(_ x0: Double) -> Double {
        let x = x0 < 0 ? -x0 : x0
        switch self {
        case .bilinear:
            return x < 1.0 ? 1.0 - x : 0.0
        case .bicubic:
            let a = -0.5
            if x < 1.0 { return ((a + 2.0) * x - (a + 3.0)) * x * x + 1 }
            if x < 2.0 { return (((x - 5) * x + 8) * x - 4) * a }
            return 0.0
        }
    }
}

/// Pillow's 8-bit two-pass resize, line by line (see PilResample in Preprocess.kt).
public enum PilResample {
    static let precisionBits = 32 - 8 - 2

    struct Coeffs { let ksize: Int; let bounds: [Int]; let kk: [Int32] }

    static func precompute(_ inSize: Int, _ outSize: Int, _ f: Interpolation) -> Coeffs {
        let in0 = 0.0, in1 = Double(inSize)
        let scale = (in1 - in0) / Double(outSize)
        var filterscale = scale
        if filterscale < 1.0 { filterscale = 1.0 }
        let support = f.support * filterscale
        let ksize = Int(support.rounded(.up)) * 2 + 1
        var pre = [Double](repeating: 0, count: outSize * ksize)
        var bounds = [Int](repeating: 0, count: outSize * 2)
        for xx in 0..<outSize {
            let center = in0 + (Double(xx) + 0.5) * scale
            var ww = 0.0
            let ss = 1.0 / filterscale
            var xmin = Int(center - support + 0.5)  // truncation toward zero, as C's (int)
            if xmin < 0 { xmin = 0 }
            var xmax = Int(center + support + 0.5)
            if xmax > inSize { xmax = inSize }
            xmax -= xmin
            let base = xx * ksize
            for x in 0..<max(xmax, 0) {
                let w = f.filter((Double(x + xmin) - center + 0.5) * ss)
                pre[base + x] = w
                ww += w
            }
            if ww != 0.0 { for x in 0..<max(xmax, 0) { pre[base + x] /= ww } }
            bounds[xx * 2] = xmin
            bounds[xx * 2 + 1] = xmax
        }
        let one = Double(1 << precisionBits)
        let kk = pre.map { v in Int32(v < 0 ? Int(-0.5 + v * one) : Int(0.5 + v * one)) }
        return Coeffs(ksize: ksize, bounds: bounds, kk: kk)
    }

    @inline(__always) static func clip8(_ v: Int) -> UInt8 {
        let s = v >> precisionBits
        return s < 0 ? 0 : (s > 255 ? 255 : UInt8(s))
    }

    /// Interleaved 8-bit channels (`nch` per pixel) from w x h to outW x outH. Bytes, not Int: a 48 MP RGBA
    /// photo is 192 MB here, not 1.5 GB (as PilResample.resizeChannels in Preprocess.kt).
    public static func resizeChannels(_ src: [UInt8], _ w: Int, _ h: Int, _ nch: Int, _ outW: Int, _ outH: Int,
                                      _ f: Interpolation) -> [UInt8] {
        precondition(src.count == w * h * nch, "channel data holds \(src.count) bytes, expected \(w * h * nch)")
        let needH = outW != w, needV = outH != h
        let horiz = precompute(w, outW, f), vert = precompute(h, outH, f)
        var cur = src, curW = w
        var vBounds = vert.bounds
        let half = 1 << (precisionBits - 1)
        var ss = [Int](repeating: 0, count: nch)
        if needH {
            let yFirst = vert.bounds[0]
            let yLast = vert.bounds[outH * 2 - 2] + vert.bounds[outH * 2 - 1]
            let rows = needV ? yLast - yFirst : h
            let off = needV ? yFirst : 0
            var tmp = [UInt8](repeating: 0, count: outW * rows * nch)
            for yy in 0..<rows {
                let rowIn = (yy + off) * w * nch
                for xx in 0..<outW {
                    let xmin = horiz.bounds[xx * 2], xmax = horiz.bounds[xx * 2 + 1], kb = xx * horiz.ksize
                    for c in 0..<nch { ss[c] = half }
                    for x in 0..<xmax {
                        let k = Int(horiz.kk[kb + x]), p = rowIn + (x + xmin) * nch
                        for c in 0..<nch { ss[c] += Int(src[p + c]) * k }
                    }
                    let o = (yy * outW + xx) * nch
                    for c in 0..<nch { tmp[o + c] = clip8(ss[c]) }
                }
            }
            cur = tmp
            curW = outW
            if needV { for i in 0..<outH { vBounds[i * 2] -= off } }
        }
        if !needV { return cur }
        var out = [UInt8](repeating: 0, count: curW * outH * nch)
        for yy in 0..<outH {
            let ymin = vBounds[yy * 2], ymax = vBounds[yy * 2 + 1], kb = yy * vert.ksize
            for xx in 0..<curW {
                for c in 0..<nch { ss[c] = half }
                for y in 0..<ymax {
                    let k = Int(vert.kk[kb + y]), p = ((y + ymin) * curW + xx) * nch
                    for c in 0..<nch { ss[c] += Int(cur[p + c]) * k }
                }
                let o = (yy * curW + xx) * nch
                for c in 0..<nch { out[o + c] = clip8(ss[c]) }
            }
        }
        return out
    }
}

/// The R x R x 3 model picture (HWC, RGB).
public struct CroppedImage: Sendable {
    public let size: Int
    public let rgb: [UInt8]
    public init(size: Int, rgb: [UInt8]) {
        precondition(rgb.count == size * size * 3, "a crop holds size * size * 3 bytes")
        self.size = size
        self.rgb = rgb
    }
    public func u8(_ c: Int, _ y: Int, _ x: Int) -> UInt8 { rgb[(y * size + x) * 3 + c] }
}

/// mc2export.preprocess, pixel for pixel (see Preprocess.kt): orientation, shortest side -> R, center crop.
public enum Preprocess {
    public static func resizedSize(_ w: Int, _ h: Int, _ r: Int) -> (Int, Int) {
        w <= h ? (r, Int(Double(r * h) / Double(w))) : (Int(Double(r * w) / Double(h)), r)
    }

    public static func cropOrigin(_ w: Int, _ h: Int, _ r: Int) -> (Int, Int) {
        (Int((Double(w - r) / 2.0).rounded(.toNearestOrEven)), Int((Double(h - r) / 2.0).rounded(.toNearestOrEven)))
    }

    @inline(__always) static func muldiv255(_ a: Int, _ b: Int) -> Int {
        let t = a * b + 128
        return ((t >> 8) + t) >> 8
    }

    public static func resizeCrop(_ img: RGBAImage, _ r: Int, _ interpolation: Interpolation) -> CroppedImage {
        let w = img.width, h = img.height
        let (nw, nh) = resizedSize(w, h, r)
        let resize = nw != w || nh != h
        let nch = img.hasAlpha ? 4 : 3
        var data = [UInt8](repeating: 0, count: w * h * nch)
        for i in 0..<(w * h) {
            let p = img.pixels[i]
            let a = Int((p >> 24) & 0xFF)
            var rr = Int((p >> 16) & 0xFF), gg = Int((p >> 8) & 0xFF), bb = Int(p & 0xFF)
            if img.hasAlpha && resize { rr = muldiv255(rr, a); gg = muldiv255(gg, a); bb = muldiv255(bb, a) }
            data[i * nch] = UInt8(rr)
            data[i * nch + 1] = UInt8(gg)
            data[i * nch + 2] = UInt8(bb)
            if nch == 4 { data[i * nch + 3] = UInt8(a) }
        }
        var cw = w
        if resize {
            data = PilResample.resizeChannels(data, w, h, nch, nw, nh, interpolation)
            cw = nw
            if nch == 4 {
                for i in 0..<(nw * nh) {
                    let o = i * 4, a = Int(data[o + 3])
                    if a != 255 && a != 0 { for c in 0..<3 { data[o + c] = UInt8(min(255, (255 * Int(data[o + c])) / a)) } }
                }
            }
        }
        let (left, top) = cropOrigin(nw, nh, r)
        var out = [UInt8](repeating: 0, count: r * r * 3)
        for y in 0..<r {
            for x in 0..<r {
                let s = ((y + top) * cw + (x + left)) * nch, o = (y * r + x) * 3
                out[o] = data[s]; out[o + 1] = data[s + 1]; out[o + 2] = data[s + 2]
            }
        }
        return CroppedImage(size: r, rgb: out)
    }

    public static func prepare(_ img: RGBAImage, orientation: Int, resolution: Int, interpolation: Interpolation) -> CroppedImage {
        resizeCrop(ExifOrientation.apply(img, orientation), resolution, interpolation)
    }

    /// float32 [3, R, R] = u8 / 255 (the ONNX / ExecuTorch image input, or a Core ML MultiArray input).
    public static func toUnitCHW(_ img: CroppedImage) -> [Float] {
        let r = img.size
        var out = [Float](repeating: 0, count: 3 * r * r)
        for c in 0..<3 { for y in 0..<r { for x in 0..<r { out[(c * r + y) * r + x] = Float(img.u8(c, y, x)) / 255 } } }
        return out
    }

    /// float32 [3, R, R] = (u8 / 255 - mean) / std.
    public static func toNormalizedCHW(_ img: CroppedImage, mean: [Float], std: [Float]) -> [Float] {
        let r = img.size
        var out = [Float](repeating: 0, count: 3 * r * r)
        for c in 0..<3 {
            for y in 0..<r { for x in 0..<r { out[(c * r + y) * r + x] = (Float(img.u8(c, y, x)) / 255 - mean[c]) / std[c] } }
        }
        return out
    }
}

/// EXIF orientation (PIL's ImageOps.exif_transpose), and reading the tag from JPEG / PNG bytes.
public enum ExifOrientation {
    public static func apply(_ img: RGBAImage, _ orientation: Int) -> RGBAImage {
        guard (2...8).contains(orientation) else { return img }
        let w = img.width, h = img.height
        let swap = orientation >= 5
        let ow = swap ? h : w, oh = swap ? w : h
        var out = [UInt32](repeating: 0, count: ow * oh)
        for y in 0..<oh {
            for x in 0..<ow {
                let sx: Int, sy: Int
                switch orientation {
                case 2: (sx, sy) = (w - 1 - x, y)
                case 3: (sx, sy) = (w - 1 - x, h - 1 - y)
                case 4: (sx, sy) = (x, h - 1 - y)
                case 5: (sx, sy) = (y, x)
                case 6: (sx, sy) = (y, h - 1 - x)
                case 7: (sx, sy) = (w - 1 - y, h - 1 - x)
                default: (sx, sy) = (w - 1 - y, x)
                }
                out[y * ow + x] = img.pixels[sy * w + sx]
            }
        }
        return RGBAImage(width: ow, height: oh, pixels: out, hasAlpha: img.hasAlpha)
    }

    /// Orientation tag (1...8) of JPEG / PNG bytes; 1 when absent (the app uses ImageIO's property instead).
    public static func read(_ b: [UInt8]) -> Int {
        func be16(_ i: Int) -> Int { Int(b[i]) << 8 | Int(b[i + 1]) }
        func be32(_ i: Int) -> Int { be16(i) << 16 | be16(i + 2) }
        func tiff(_ off: Int, _ end: Int) -> Int {
            guard off + 8 <= end, end <= b.count else { return 1 }
            let little = b[off] == 0x49 && b[off + 1] == 0x49
            guard little || (b[off] == 0x4D && b[off + 1] == 0x4D) else { return 1 }
            func r16(_ i: Int) -> Int { little ? Int(b[i]) | Int(b[i + 1]) << 8 : be16(i) }
            func r32(_ i: Int) -> Int { little ? r16(i) | r16(i + 2) << 16 : be32(i) }
            guard r16(off + 2) == 42 else { return 1 }
            let ifd = off + r32(off + 4)
            guard ifd >= off, ifd + 2 <= end else { return 1 }
            for k in 0..<r16(ifd) {
                let e = ifd + 2 + k * 12
                guard e + 12 <= end else { return 1 }
                if r16(e) == 0x0112 {
                    let t = r16(e + 2)
                    let v = t == 3 ? r16(e + 8) : (t == 4 ? r32(e + 8) : 0)
                    return (1...8).contains(v) ? v : 1
                }
            }
            return 1
        }
        if b.count > 3, b[0] == 0xFF, b[1] == 0xD8 {
            var i = 2
            while i + 4 <= b.count {
                guard b[i] == 0xFF else { return 1 }
                let marker = Int(b[i + 1])
                if marker == 0xFF { i += 1; continue }
                if marker == 0xD9 || marker == 0xDA { return 1 }
                if marker == 0x01 || (0xD0...0xD7).contains(marker) { i += 2; continue }
                let len = be16(i + 2), start = i + 4
                if marker == 0xE1, len >= 8, start + 6 <= b.count, Array(b[start..<(start + 6)]) == [0x45, 0x78, 0x69, 0x66, 0, 0] {
                    return tiff(start + 6, min(i + 2 + len, b.count))
                }
                i += 2 + len
            }
            return 1
        }
        if b.count > 8, Array(b[0..<4]) == [0x89, 0x50, 0x4E, 0x47] {
            var i = 8
            while i + 8 <= b.count {
                let len = be32(i)
                let type = String(bytes: b[(i + 4)..<(i + 8)], encoding: .isoLatin1) ?? ""
                let start = i + 8
                if type == "eXIf" {
                    var t = start
                    if len >= 6, start + 4 <= b.count, Array(b[start..<(start + 4)]) == [0x45, 0x78, 0x69, 0x66] { t += 6 }
                    return tiff(t, min(start + len, b.count))
                }
                if type == "IEND" || len < 0 { return 1 }
                i = start + len + 4
            }
        }
        return 1
    }
}

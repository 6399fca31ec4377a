import CoreGraphics
import CoreVideo
import Foundation
import ImageIO
import MC2Core

/// iOS images -> MC2Core's RGBAImage (the pixel-exact port of mc2export.preprocess).
enum ImageLoading {
    /// Decode image data (JPEG, HEIC, PNG, ...) and read its EXIF orientation (1...8). `maxPixelSize` > 0 lets
    /// ImageIO subsample (fast indexing; not pixel-identical to Python); 0 decodes at full size.
    static func decode(_ data: Data, maxPixelSize: Int = 0) throws -> (RGBAImage, Int) {
        guard let src = CGImageSourceCreateWithData(data as CFData, nil) else { throw BundleError("not an image") }
        let props = CGImageSourceCopyPropertiesAtIndex(src, 0, nil) as? [CFString: Any]
        let orientation = (props?[kCGImagePropertyOrientation] as? NSNumber)?.intValue ?? 1
        let cg: CGImage?
        if maxPixelSize > 0 {
            let opts: [CFString: Any] = [kCGImageSourceCreateThumbnailFromImageAlways: true,
                                         kCGImageSourceThumbnailMaxPixelSize: maxPixelSize,
                                         kCGImageSourceCreateThumbnailWithTransform: false]
            cg = CGImageSourceCreateThumbnailAtIndex(src, 0, opts as CFDictionary)
        } else {
            cg = CGImageSourceCreateImageAtIndex(src, 0, nil)
        }
        guard let image = cg else { throw BundleError("cannot decode the image") }
        return (try rgba(image), (1...8).contains(orientation) ? orientation : 1)
    }

    /// Pixels of a CGImage as stored: 8-bit RGB(A) layouts are read directly from the decoded buffer (no colour
    /// management, no premultiplication, as PIL); anything else is drawn into an sRGB RGBA context.
    static func rgba(_ cg: CGImage) throws -> RGBAImage {
        let w = cg.width, h = cg.height
        let info = cg.alphaInfo
        let bpp = cg.bitsPerPixel / 8
        let premultiplied = info == .premultipliedFirst || info == .premultipliedLast
        if cg.bitsPerComponent == 8, bpp == 3 || bpp == 4, !premultiplied, let data = cg.dataProvider?.data as Data?,
           cg.colorSpace?.model == .rgb {
            let little = cg.bitmapInfo.contains(.byteOrder32Little)
            let alphaFirst = info == .first || info == .noneSkipFirst
            let hasAlpha = info == .first || info == .last
            var px = [UInt32](repeating: 0, count: w * h)
            data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
                for y in 0..<h {
                    for x in 0..<w {
                        let o = y * cg.bytesPerRow + x * bpp
                        var q: [UInt8] = (0..<bpp).map { raw[o + $0] }
                        if bpp == 4 && little { q.reverse() }
                        var r = q[0], g = q[1], b = q[2], a: UInt8 = 255
                        if bpp == 4 {
                            if alphaFirst { a = q[0]; r = q[1]; g = q[2]; b = q[3] } else { a = q[3] }
                            if !hasAlpha { a = 255 }
                        }
                        px[y * w + x] = UInt32(a) << 24 | UInt32(r) << 16 | UInt32(g) << 8 | UInt32(b)
                    }
                }
            }
            return RGBAImage(width: w, height: h, pixels: px, hasAlpha: hasAlpha)
        }
        var bytes = [UInt8](repeating: 0, count: w * h * 4)
        let ok: Bool = bytes.withUnsafeMutableBytes { buf in
            guard let ctx = CGContext(data: buf.baseAddress, width: w, height: h, bitsPerComponent: 8, bytesPerRow: w * 4,
                                      space: CGColorSpace(name: CGColorSpace.sRGB)!,
                                      bitmapInfo: CGImageAlphaInfo.noneSkipLast.rawValue) else { return false }
            ctx.draw(cg, in: CGRect(x: 0, y: 0, width: w, height: h))
            return true
        }
        guard ok else { throw BundleError("cannot read the image's pixels") }
        return RGBAImage(width: w, height: h, bytes: (0..<(w * h)).flatMap { i in [bytes[i * 4], bytes[i * 4 + 1], bytes[i * 4 + 2]] }, channels: 3)
    }

    /// A camera frame (32BGRA) with the orientation that makes it upright (back camera, portrait: 6).
    static func rgba(_ pb: CVPixelBuffer) -> RGBAImage {
        CVPixelBufferLockBaseAddress(pb, .readOnly)
        defer { CVPixelBufferUnlockBaseAddress(pb, .readOnly) }
        let w = CVPixelBufferGetWidth(pb), h = CVPixelBufferGetHeight(pb), stride = CVPixelBufferGetBytesPerRow(pb)
        let base = CVPixelBufferGetBaseAddress(pb)!.assumingMemoryBound(to: UInt8.self)
        var px = [UInt32](repeating: 0, count: w * h)
        for y in 0..<h {
            for x in 0..<w {
                let o = y * stride + x * 4
                px[y * w + x] = 0xFF00_0000 | UInt32(base[o + 2]) << 16 | UInt32(base[o + 1]) << 8 | UInt32(base[o])
            }
        }
        return RGBAImage(width: w, height: h, pixels: px)
    }
}

import CoreGraphics
import CoreVideo
import Foundation
import ImageIO
import MC2Core

/// iOS images -> MC2Core's RGBAImage (the pixel-exact port of mc2export.preprocess).
enum ImageLoading {
    /// Decode image data (JPEG, HEIC, PNG, ...) and read its EXIF orientation (1...8), bounded (MC2Core DecodePlan):
    /// full size -- Python's pixels -- up to `maxPixels`, larger photos through an ImageIO thumbnail of 1/s the
    /// size (s a power of two, the short side kept >= `minShortSide`). maxPixels 0: as small as the short side
    /// allows (the photo index: fast). Returns (pixels as stored, orientation, sample size).
    static func decode(_ data: Data, minShortSide: Int, maxPixels: Int = DecodePlan.maxExactPixels) throws -> (RGBAImage, Int, Int) {
        guard let src = CGImageSourceCreateWithData(data as CFData, nil) else { throw BundleError("not an image") }
        let props = CGImageSourceCopyPropertiesAtIndex(src, 0, nil) as? [CFString: Any]
        let orientation = (props?[kCGImagePropertyOrientation] as? NSNumber)?.intValue ?? 1
        let w = (props?[kCGImagePropertyPixelWidth] as? NSNumber)?.intValue ?? 0
        let h = (props?[kCGImagePropertyPixelHeight] as? NSNumber)?.intValue ?? 0
        guard w > 0, h > 0 else { throw BundleError("cannot read the image's size") }
        let sample = DecodePlan.sampleSize(w, h, minShortSide: min(minShortSide, min(w, h)), maxPixels: maxPixels)
        let cg: CGImage?
        if sample > 1 {
            let opts: [CFString: Any] = [kCGImageSourceCreateThumbnailFromImageAlways: true,
                                         kCGImageSourceThumbnailMaxPixelSize: max(w, h) / sample,
                                         kCGImageSourceCreateThumbnailWithTransform: false]  // EXIF is applied by MC2Core
            cg = CGImageSourceCreateThumbnailAtIndex(src, 0, opts as CFDictionary)
        } else {
            cg = CGImageSourceCreateImageAtIndex(src, 0, nil)
        }
        guard let image = cg else { throw BundleError("cannot decode the image") }
        return (try rgba(image), (1...8).contains(orientation) ? orientation : 1, sample)
    }

    /// The byte layout of an 8-bit RGB(A) CGImage that can be read as stored, or nil (premultiplied, 16-bit,
    /// non-RGB, 16-bit byte orders: those are drawn into an sRGB context instead).
    static func layout(_ cg: CGImage) -> PixelLayout? {
        let info = cg.alphaInfo
        let bpp = cg.bitsPerPixel / 8
        guard cg.bitsPerComponent == 8, bpp == 3 || bpp == 4, cg.colorSpace?.model == .rgb,
              info != .premultipliedFirst, info != .premultipliedLast, info != .alphaOnly else { return nil }
        // The byte order is a 3-bit field: compare it whole (`.contains(.byteOrder32Little)` is also true for
        // byteOrder16Big, whose value 3 << 12 shares the bit of 2 << 12).
        let order = PixelLayout.byteOrder(fromField: cg.bitmapInfo.rawValue & CGBitmapInfo.byteOrderMask.rawValue)
        guard order == .default || order == .big32 || order == .little32 else { return nil }
        return PixelLayout(bytesPerPixel: bpp, alphaFirst: info == .first || info == .noneSkipFirst,
                           hasAlpha: info == .first || info == .last, byteOrder: order)
    }

    /// Pixels of a CGImage as stored: 8-bit RGB(A) layouts are read directly from the decoded buffer (no colour
    /// management, no premultiplication, as PIL); anything else is drawn into an sRGB RGBA context.
    static func rgba(_ cg: CGImage) throws -> RGBAImage {
        let w = cg.width, h = cg.height
        if let l = layout(cg), let data = cg.dataProvider?.data as Data? {
            let px = data.withUnsafeBytes { raw in l.pixels(raw, width: w, height: h, bytesPerRow: cg.bytesPerRow) }
            return RGBAImage(width: w, height: h, pixels: px, hasAlpha: l.hasAlpha)
        }
        var px = [UInt32](repeating: 0, count: w * h)
        let ok: Bool = px.withUnsafeMutableBytes { buf in
            // 32-bit little-endian words with alpha first skipped = 0xXXRRGGBB in memory order B G R X: read back as
            // UInt32 on the (little-endian) device it is 0xXXRRGGBB; the alpha byte is set below.
            guard let ctx = CGContext(data: buf.baseAddress, width: w, height: h, bitsPerComponent: 8, bytesPerRow: w * 4,
                                      space: CGColorSpace(name: CGColorSpace.sRGB)!,
                                      bitmapInfo: CGImageAlphaInfo.noneSkipFirst.rawValue | CGBitmapInfo.byteOrder32Little.rawValue) else { return false }
            ctx.draw(cg, in: CGRect(x: 0, y: 0, width: w, height: h))
            return true
        }
        guard ok else { throw BundleError("cannot read the image's pixels") }
        for i in 0..<px.count { px[i] |= 0xFF00_0000 }
        return RGBAImage(width: w, height: h, pixels: px)
    }

    /// A camera frame (32BGRA) as stored; the orientation that makes it upright comes from `orientation(forRotation:)`.
    static func rgba(_ pb: CVPixelBuffer) -> RGBAImage {
        CVPixelBufferLockBaseAddress(pb, .readOnly)
        defer { CVPixelBufferUnlockBaseAddress(pb, .readOnly) }
        let w = CVPixelBufferGetWidth(pb), h = CVPixelBufferGetHeight(pb), stride = CVPixelBufferGetBytesPerRow(pb)
        let raw = UnsafeRawBufferPointer(start: CVPixelBufferGetBaseAddress(pb), count: stride * h)
        // kCVPixelFormatType_32BGRA: B G R A in memory = a 32-bit little-endian ARGB word, alpha ignored
        let bgra = PixelLayout(bytesPerPixel: 4, alphaFirst: true, hasAlpha: false, byteOrder: .little32)
        return RGBAImage(width: w, height: h, pixels: bgra.pixels(raw, width: w, height: h, bytesPerRow: stride))
    }

    /// EXIF orientation of a back-camera frame from the clockwise rotation that makes it upright
    /// (AVCaptureDevice.RotationCoordinator.videoRotationAngleForHorizonLevelCapture): 0 -> 1, 90 -> 6, 180 -> 3, 270 -> 8.
    static func orientation(forRotation degrees: Double) -> Int {
        switch ((Int(degrees.rounded()) % 360) + 360) % 360 {
        case 90: return 6
        case 180: return 3
        case 270: return 8
        default: return 1
        }
    }
}

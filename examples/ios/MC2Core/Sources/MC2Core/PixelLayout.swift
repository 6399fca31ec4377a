import Foundation

/// How an 8-bit RGB(A) bitmap lays out its bytes, as CoreGraphics describes it (the app maps a CGImage's
/// bitmapInfo / alphaInfo to this; the byte order is read with `.byteOrderMask`, never with `contains`:
/// CGBitmapInfo's byte-order values are numbers in a 3-bit field, not flags -- byteOrder16Big (3 << 12) "contains"
/// byteOrder32Little (2 << 12)). Pure logic, tested in MC2CoreTests.
public struct PixelLayout: Equatable, Sendable {
    public enum ByteOrder: Equatable, Sendable { case `default`, little16, little32, big16, big32 }

    public let bytesPerPixel: Int   // 3 or 4
    public let alphaFirst: Bool     // ARGB / XRGB in the 32-bit word's order
    public let hasAlpha: Bool       // false: the 4th byte is padding (noneSkipFirst / noneSkipLast)
    public let byteOrder: ByteOrder

    public init(bytesPerPixel: Int, alphaFirst: Bool, hasAlpha: Bool, byteOrder: ByteOrder) {
        self.bytesPerPixel = bytesPerPixel
        self.alphaFirst = alphaFirst
        self.hasAlpha = hasAlpha
        self.byteOrder = byteOrder
    }

    /// The byte-order field of a CGBitmapInfo raw value (`rawValue & CGBitmapInfo.byteOrderMask.rawValue`, 0x7000).
    public static func byteOrder(fromField field: UInt32) -> ByteOrder {
        switch field {
        case 1 << 12: return .little16
        case 2 << 12: return .little32
        case 3 << 12: return .big16
        case 4 << 12: return .big32
        default: return .default
        }
    }

    /// A 32-bit little-endian word is stored reversed: B G R A for ARGB.
    var reversed: Bool { bytesPerPixel == 4 && byteOrder == .little32 }

    /// Packed 0xAARRGGBB pixels (RGBAImage's layout) of a bitmap in this layout. Alpha is as stored: the caller
    /// refuses premultiplied layouts (their colours are rounded already).
    public func pixels(_ raw: UnsafeRawBufferPointer, width: Int, height: Int, bytesPerRow: Int) -> [UInt32] {
        precondition(bytesPerPixel == 3 || bytesPerPixel == 4, "8-bit RGB(A) layouts only")
        precondition(raw.count >= (height - 1) * bytesPerRow + width * bytesPerPixel, "buffer too small")
        var px = [UInt32](repeating: 0, count: width * height)
        var q = [UInt8](repeating: 0, count: 4)
        for y in 0..<height {
            for x in 0..<width {
                let o = y * bytesPerRow + x * bytesPerPixel
                for k in 0..<bytesPerPixel { q[k] = raw[o + (reversed ? bytesPerPixel - 1 - k : k)] }
                var r = q[0], g = q[1], b = q[2], a: UInt8 = 255
                if bytesPerPixel == 4 {
                    if alphaFirst { a = q[0]; r = q[1]; g = q[2]; b = q[3] } else { a = q[3] }
                    if !hasAlpha { a = 255 }
                }
                px[y * width + x] = UInt32(a) << 24 | UInt32(r) << 16 | UInt32(g) << 8 | UInt32(b)
            }
        }
        return px
    }
}

/// IEEE 754 binary16 <-> binary32 by bit manipulation: the same bits on every platform (Swift's `Float16` is
/// missing on Intel Macs, and without F16C its conversions are library calls). The index stores embeddings as
/// fp16 bits (docs/app_index.md); the search widens them eight at a time (`scaledLow` / `scaledHigh`).
public enum Half {
    /// Float -> binary16 bits, rounding to nearest even (numpy's `astype(float16)`); overflow gives infinity.
    public static func bits(_ f: Float) -> UInt16 {
        let x = f.bitPattern
        let sign = UInt16(truncatingIfNeeded: (x >> 16) & 0x8000)
        let exp = Int((x >> 23) & 0xFF)
        let man = x & 0x7F_FFFF
        if exp == 0xFF { return sign | 0x7C00 | (man != 0 ? 0x0200 | UInt16(truncatingIfNeeded: man >> 13) : 0) }
        let e = exp - 127 + 15
        if e >= 31 { return sign | 0x7C00 }
        if e <= 0 {
            // subnormal half (or zero): shift the full significand (implicit 1 included) and round
            if e < -10 { return sign }
            let full = man | 0x80_0000
            let shift = UInt32(14 - e)
            var h = full >> shift
            let rest = full & ((1 << shift) - 1), half = UInt32(1) << (shift - 1)
            if rest > half || (rest == half && h & 1 == 1) { h += 1 }
            return sign | UInt16(truncatingIfNeeded: h)
        }
        var h = UInt32(e) << 10 | (man >> 13)
        let rest = man & 0x1FFF
        if rest > 0x1000 || (rest == 0x1000 && h & 1 == 1) { h += 1 }  // a carry into the exponent is right
        return sign | UInt16(truncatingIfNeeded: h)
    }

    /// binary16 bits -> Float (exact).
    @inlinable public static func float(_ h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) << 16
        let exp = UInt32(h >> 10) & 0x1F, man = UInt32(h & 0x3FF)
        if exp == 0 { return Float(bitPattern: sign) + (sign != 0 ? -1 : 1) * Float(man) * 0x1p-24 }
        if exp == 31 { return Float(bitPattern: sign | 0x7F80_0000 | man << 13) }
        return Float(bitPattern: sign | (exp + 112) << 23 | man << 13)
    }

    /// The search's widening, four 32-bit lanes = eight halves at a time (little-endian: element 2l in the low
    /// 16 bits of lane l, 2l+1 in the high 16): each half's sign, exponent and mantissa are moved into a float's
    /// bits unchanged, which gives the half's value times 2^-112 exactly -- for subnormal halves too (as float
    /// subnormals). The caller multiplies the query by 2^112 once, so every product, and the float32 dot
    /// product, equals the one with the widened halves (scaling by a power of two is exact). Four to five
    /// integer lane operations per four values, no selects, no lane-type conversions (generic in Swift's SIMD,
    /// per-lane scalar code). Not for inf / NaN halves: the writers never store them (vectors are normalized).
    public static let searchScale: Float = 0x1p112

    @inlinable public static func scaledLow(_ w: SIMD4<UInt32>) -> SIMD4<Float> {
        unsafeBitCast(((w & 0x7FFF) &<< 13) | ((w & 0x8000) &<< 16), to: SIMD4<Float>.self)
    }

    @inlinable public static func scaledHigh(_ w: SIMD4<UInt32>) -> SIMD4<Float> {
        unsafeBitCast(((w & 0x7FFF_0000) &>> 3) | (w & 0x8000_0000), to: SIMD4<Float>.self)
    }
}

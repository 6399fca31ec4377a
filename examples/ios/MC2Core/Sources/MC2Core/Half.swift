/// IEEE 754 binary16 <-> binary32 by bit manipulation: the same bits on every platform (Swift's `Float16` is
/// missing on Intel Macs, and without F16C its conversions are library calls). The index stores embeddings as
/// fp16 bits (docs/app_index.md); the search widens them four lanes at a time (`widen4`).
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

    /// Four binary16 values (in the low 16 bits of each lane) widened at once with integer lane operations
    /// only -- no mask selects, no lane-type conversions (both become per-lane scalar code in Swift's generic
    /// SIMD, ~100x slower), and no subnormal float is ever formed (no slow path on x86). Normals: the exponent
    /// is rebased by 112; subnormals: rebased one step further, then 2^-14 subtracted (exact); inf / NaN keep an
    /// all-ones exponent. Exact for every input (IndexTests checks all 65536).
    @inlinable public static func widen4(_ h: SIMD4<UInt32>) -> SIMD4<Float> {
        let e = h & 0x7C00
        let sub = (e &- 1) &>> 31                     // 1 where the exponent is 0 (zero, subnormal)
        let inf = ((e ^ 0x7C00) &- 1) &>> 31          // 1 where the exponent is 31 (inf, NaN)
        let u = ((h & 0x7FFF) &<< 13) &+ 0x3800_0000 &+ (sub &<< 23) &+ (inf &* 0x3800_0000)
        let f = unsafeBitCast(u, to: SIMD4<Float>.self) - unsafeBitCast((0 &- sub) & 0x3880_0000, to: SIMD4<Float>.self)
        return unsafeBitCast(unsafeBitCast(f, to: SIMD4<UInt32>.self) | ((h & 0x8000) &<< 16), to: SIMD4<Float>.self)
    }
}

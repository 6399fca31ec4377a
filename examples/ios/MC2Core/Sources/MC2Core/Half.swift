/// IEEE 754 binary16 <-> binary32 by bit manipulation: the same bits on every platform (Swift's `Float16` is
/// missing on Intel Macs, and without F16C its conversions are library calls). The index stores embeddings as
/// fp16 bits (docs/app_index.md); the search widens them eight at a time (`widen8`).
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

    /// Eight binary16 values widened at once, branch-free (no subnormal float is ever formed, so no slow
    /// path on x86): the exponent is rebased; subnormal halves are renormalized by a subtraction; inf / NaN
    /// keep their exponent. Exact for every input.
    @inlinable public static func widen8(_ h: SIMD8<UInt16>) -> SIMD8<Float> {
        let w = SIMD8<UInt32>(truncatingIfNeeded: h)
        var u = (w & 0x7FFF) &<< 13
        let e = u & 0x0F80_0000
        u &+= 0x3800_0000  // (127 - 15) << 23
        u.replace(with: u &+ 0x3800_0000, where: e .== 0x0F80_0000)  // inf / NaN: exponent 255
        var f = unsafeBitCast(u, to: SIMD8<Float>.self)
        let sub = unsafeBitCast(u &+ 0x0080_0000, to: SIMD8<Float>.self) - Float(bitPattern: 113 << 23)
        f.replace(with: sub, where: e .== 0)
        return unsafeBitCast(unsafeBitCast(f, to: SIMD8<UInt32>.self) | ((w & 0x8000) &<< 16), to: SIMD8<Float>.self)
    }
}

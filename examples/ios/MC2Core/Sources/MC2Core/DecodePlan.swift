import Foundation

/// How large a photo the app decodes (twin of DecodePlan.kt, tested on the JVM): full size -- Python's pixels --
/// up to `maxExactPixels`; larger photos are decoded subsampled by a power of two (ImageIO thumbnail of
/// long side / s), the short side kept >= the model resolution, so a 48 MP photo never needs gigabytes.
/// The deviation this implies is measured in PreprocessTest.boundedDecodingDeviation (examples/README.md).
public enum DecodePlan {
    public static let maxExactPixels = 16_000_000

    static func maxSample(_ w: Int, _ h: Int, _ minShortSide: Int) -> Int {
        var s = 1
        let short = min(w, h)
        while short / (s * 2) >= minShortSide { s *= 2 }
        return s
    }

    /// 1 (full size) up to `maxPixels`, else the smallest power of two that brings the photo under it,
    /// never letting the short side fall below `minShortSide`.
    public static func sampleSize(_ w: Int, _ h: Int, minShortSide: Int, maxPixels: Int = maxExactPixels) -> Int {
        precondition(w >= 1 && h >= 1, "image has no pixels")
        var s = 1
        let cap = maxSample(w, h, minShortSide)
        while s < cap && (w / s) * (h / s) > maxPixels { s *= 2 }
        return s
    }
}

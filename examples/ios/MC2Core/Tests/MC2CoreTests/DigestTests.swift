import XCTest
@testable import MC2Core

/// The portable SHA-256 (used where CryptoKit is missing) against FIPS 180-4's examples, and CRC-32 against
/// zlib's check value. On Apple systems `Digest.sha256Hex` is CryptoKit's: it must agree with the portable one.
final class DigestTests: XCTestCase {
    func testPortableSHA256KnownVectors() {
        let cases: [(Data, String)] = [
            (Data(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            (Data("abc".utf8), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            (Data("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8),
             "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
            (Data("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu".utf8),
             "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"),
            (Data(repeating: UInt8(ascii: "a"), count: 1_000_000), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"),
        ]
        for (data, want) in cases {
            XCTAssertEqual(Digest.hex(PortableSHA256.hash(data)), want, "\(data.count) bytes")
            XCTAssertEqual(Digest.sha256Hex(data), want, "\(data.count) bytes (platform digest)")
        }
        // every tail length around the 55/56/64-byte padding boundaries agrees with the platform digest
        for n in 50...130 {
            let d = Data((0..<n).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) })
            XCTAssertEqual(Digest.hex(PortableSHA256.hash(d)), Digest.sha256Hex(d))
        }
        // a slice of a larger Data (startIndex != 0) hashes its own bytes
        let big = Data("xxabcxx".utf8)
        XCTAssertEqual(Digest.hex(PortableSHA256.hash(big[2..<5])), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    func testCRC32() {
        XCTAssertEqual(Digest.crc32(Array("123456789".utf8)), 0xCBF4_3926)
        XCTAssertEqual(Digest.crc32([UInt8]()), 0)
        let whole = Digest.crc32(Array("hello world".utf8))
        XCTAssertEqual(Digest.crc32(Array(" world".utf8), continuing: Digest.crc32(Array("hello".utf8))), whole)
        XCTAssertEqual(whole, 0x0D4A_1185)
    }
}

import Glibc
@testable import QSMCore
@testable import QSMProtocol
import QSMHarness
import Testing

/// The SHA-extension path against the standard's vectors, against the portable Swift
/// code on random inputs, and both against the `openssl` command-line tool.
struct HardwareSHA256Tests {
    static let hardware = HardwareSHA256.blockFunction

    static func randomBytes(_ count: Int, _ random: inout SplitMix64) -> [UInt8] {
        (0..<count).map { _ in UInt8(truncatingIfNeeded: random.next()) }
    }

    @Test(.enabled(if: hardware != nil, "this CPU has no SHA extensions (or QSM_SHA256=portable)"),
          arguments: [
              ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
              ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
              ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
               "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
              ("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
               "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"),
          ])
    func theHardwarePathMatchesFIPS180(message: String, digest: String) {
        #expect(PacketAuthenticatorTests.hex(SHA256.hash(Array(message.utf8), blockFunction: Self.hardware)) == digest)
    }

    @Test(.enabled(if: hardware != nil, "this CPU has no SHA extensions (or QSM_SHA256=portable)"))
    func theHardwarePathMatchesTheMillionAs() {
        var hasher = SHA256(blockFunction: Self.hardware)
        let chunk = [UInt8](repeating: UInt8(ascii: "a"), count: 1_000)
        for _ in 0..<1_000 { hasher.update(chunk) }
        #expect(PacketAuthenticatorTests.hex(hasher.finalize()) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    /// Random lengths, split into random pieces: every mix of partial and whole blocks.
    @Test(.enabled(if: hardware != nil, "this CPU has no SHA extensions (or QSM_SHA256=portable)"))
    func hardwareAndPortableAgreeOnRandomInputs() {
        var random = SplitMix64(seed: 2026_12_03)
        for round in 0..<2_000 {
            let message = Self.randomBytes(Int(random.next() % 4_100), &random)
            var portable = SHA256()
            var hardware = SHA256(blockFunction: Self.hardware)
            var offset = 0
            while offset < message.count {
                let take = min(message.count - offset, Int(random.next() % 300) + 1)
                portable.update(Array(message[offset..<(offset + take)]))
                hardware.update(Array(message[offset..<(offset + take)]))
                offset += take
            }
            let expected = portable.finalize()
            #expect(hardware.finalize() == expected, "round \(round), \(message.count) bytes")
            let key = Self.randomBytes(Int(random.next() % 200) + 1, &random)
            let portableTag = message.withUnsafeBytes { PacketAuthenticator(secret: key).code(for: $0) }
            let hardwareTag = message.withUnsafeBytes { PacketAuthenticator(secret: key, blockFunction: Self.hardware).code(for: $0) }
            #expect(portableTag == hardwareTag, "round \(round): HMAC of \(message.count) bytes, \(key.count)-byte key")
        }
    }

    /// `openssl dgst` on random keys and messages: HMAC-SHA256 and plain SHA-256 from
    /// both paths must equal what OpenSSL computes. `.ci/run` installs openssl.
    @Test func bothPathsMatchOpenSSLOnRandomInputs() throws {
        var random = SplitMix64(seed: 4231)
        // Lengths around block edges and beyond, keys short, block-sized and longer than
        // a block (hashed first).
        let cases = (0..<150).map { index in
            let length = index < 130 ? index : Int(random.next() % 5_000)
            let key = Self.randomBytes([1, 16, 32, 63, 64, 65, 100, 200][index % 8], &random)
            return (key: key, message: Self.randomBytes(length, &random))
        }
        guard let lines = try runOpenSSL(on: cases.map(\.message), linesPerInput: 2, { openssl, path, index in
            let hexKey = PacketAuthenticatorTests.hex(cases[index].key)
            return "\(openssl) dgst -sha256 -mac HMAC -macopt hexkey:\(hexKey) -r \(path) || echo failed\n"
                + "\(openssl) dgst -sha256 -r \(path) || echo failed\n"
        }) else { return }
        for (index, entry) in cases.enumerated() {
            let hmac = String(lines[2 * index].prefix(64)), digest = String(lines[2 * index + 1].prefix(64))
            for blockFunction in [nil, Self.hardware] {
                let authenticator = PacketAuthenticator(secret: entry.key, blockFunction: blockFunction)
                #expect(PacketAuthenticatorTests.hex(entry.message.withUnsafeBytes { authenticator.code(for: $0) }) == hmac,
                        "case \(index): \(entry.message.count) bytes, \(entry.key.count)-byte key, hardware \(blockFunction != nil)")
                #expect(PacketAuthenticatorTests.hex(SHA256.hash(entry.message, blockFunction: blockFunction)) == digest,
                        "case \(index): SHA-256 of \(entry.message.count) bytes, hardware \(blockFunction != nil)")
            }
        }
    }
}

import Glibc
@testable import QSMCore
@testable import QSMProtocol
import QSMHarness
import Testing

/// AES-128-GCM: both backends against the GCM specification's test vectors, the hardware
/// path against the portable one on random inputs, both against the `openssl`
/// command-line tool (counter mode and GMAC, the two halves of GCM), and tampering.
struct AESGCMTests {
    static let hardware = HardwareAESGCM.hardware
    /// Every backend this CPU can run: the portable one, the hardware one, and on a CPU
    /// with the wide hash also the hardware one without it.
    static var backends: [AESGCM.Backend] { [.portable] + (hardware.map { [$0] } ?? []) + (HardwareAESGCM.narrow.map { [$0] } ?? []) }

    static func bytes(_ hex: String) -> [UInt8] { PacketAuthenticatorTests.bytes(hex) }

    static func seal(_ key: [UInt8], _ nonce: [UInt8], _ aad: [UInt8], _ plaintext: [UInt8],
                     _ backend: AESGCM.Backend) -> (ciphertext: [UInt8], tag: [UInt8]) {
        let cipher = AESGCM(key: key, backend: backend)
        var ciphertext = [UInt8](repeating: 0, count: plaintext.count)
        var tag = [UInt8](repeating: 0, count: 16)
        nonce.withUnsafeBytes { n in aad.withUnsafeBytes { a in plaintext.withUnsafeBytes { p in
            ciphertext.withUnsafeMutableBytes { c in tag.withUnsafeMutableBytes { t in
                cipher.seal(nonce: n, aad: a, plaintext: p, ciphertext: c, tag: t)
            } }
        } } }
        return (ciphertext, tag)
    }

    static func open(_ key: [UInt8], _ nonce: [UInt8], _ aad: [UInt8], _ ciphertext: [UInt8], _ tag: [UInt8],
                     _ backend: AESGCM.Backend) -> [UInt8]? {
        let cipher = AESGCM(key: key, backend: backend)
        var plaintext = [UInt8](repeating: 0xAA, count: ciphertext.count)
        let authentic = nonce.withUnsafeBytes { n in aad.withUnsafeBytes { a in ciphertext.withUnsafeBytes { c in
            plaintext.withUnsafeMutableBytes { p in tag.withUnsafeBytes { t in
                cipher.open(nonce: n, aad: a, ciphertext: c, plaintext: p, tag: t)
            } }
        } } }
        if !authentic { #expect(plaintext.allSatisfy { $0 == 0xAA }, "a forged datagram was decrypted") }
        return authentic ? plaintext : nil
    }

    /// Test cases 1-4 of McGrew and Viega, "The Galois/Counter Mode of Operation (GCM)",
    /// appendix B (the vectors NIST's GCM validation starts from).
    static let vectors: [(key: String, nonce: String, aad: String, plaintext: String, ciphertext: String, tag: String)] = [
        ("00000000000000000000000000000000", "000000000000000000000000", "", "", "", "58e2fccefa7e3061367f1d57a4e7455a"),
        ("00000000000000000000000000000000", "000000000000000000000000", "", "00000000000000000000000000000000",
         "0388dace60b6a392f328c2b971b2fe78", "ab6e47d42cec13bdf53a67b21257bddf"),
        ("feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888", "",
         "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255",
         "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985",
         "4d5c2af327cd64a62cf35abd2ba6fab4"),
        ("feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888", "feedfacedeadbeeffeedfacedeadbeefabaddad2",
         "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
         "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
         "5bc94fbc3221a5db94fae95ae7121a47"),
    ]

    @Test(arguments: 0..<4)
    func everyBackendMatchesTheSpecificationsVectors(index: Int) {
        let v = Self.vectors[index]
        for backend in Self.backends {
            let sealed = Self.seal(Self.bytes(v.key), Self.bytes(v.nonce), Self.bytes(v.aad), Self.bytes(v.plaintext), backend)
            #expect(PacketAuthenticatorTests.hex(sealed.ciphertext) == v.ciphertext, "test case \(index + 1), \(backend.name)")
            #expect(PacketAuthenticatorTests.hex(sealed.tag) == v.tag, "test case \(index + 1), \(backend.name)")
            let opened = Self.open(Self.bytes(v.key), Self.bytes(v.nonce), Self.bytes(v.aad), Self.bytes(v.ciphertext),
                                   Self.bytes(v.tag), backend)
            #expect(opened == Self.bytes(v.plaintext), "test case \(index + 1), \(backend.name)")
        }
    }

    @Test(.enabled(if: hardware != nil, "this CPU has no AES/PCLMUL instructions (or QSM_AESGCM=portable)"))
    func hardwareAndPortableAgreeOnRandomInputs() {
        var random = SplitMix64(seed: 800_38)
        for round in 0..<400 {
            // Lengths around the four-block and single-block edges, and beyond.
            let length = round < 200 ? round : Int(random.next() % 3_000)
            // Authenticated data long enough for the wide hash too (GMAC of a datagram).
            let aadLength = round % 7 == 0 ? 0 : Int(random.next() % (round % 3 == 0 ? 1_500 : 100))
            let key = HardwareSHA256Tests.randomBytes(16, &random), nonce = HardwareSHA256Tests.randomBytes(12, &random)
            let aad = HardwareSHA256Tests.randomBytes(aadLength, &random)
            let plaintext = HardwareSHA256Tests.randomBytes(length, &random)
            let portable = Self.seal(key, nonce, aad, plaintext, .portable)
            let hardware = Self.seal(key, nonce, aad, plaintext, Self.hardware!)
            #expect(portable.ciphertext == hardware.ciphertext && portable.tag == hardware.tag,
                    "round \(round): \(length) bytes, \(aadLength) bytes of aad")
            if let narrow = HardwareAESGCM.narrow {
                let sealed = Self.seal(key, nonce, aad, plaintext, narrow)
                #expect(portable.ciphertext == sealed.ciphertext && portable.tag == sealed.tag,
                        "round \(round), without the wide hash: \(length) bytes, \(aadLength) bytes of aad")
            }
            #expect(Self.open(key, nonce, aad, hardware.ciphertext, hardware.tag, .portable) == plaintext)
        }
    }

    /// GMAC alone (authenticated data, nothing encrypted: how every datagram is sealed by
    /// default) at every length from 0 to 560 bytes, around 1,520 and beyond: the narrow
    /// path's tails (up to 15 blocks and the lengths block folded with one reduction) and
    /// the wide path's whole datagrams (one reduction for up to 96 blocks, longer ones in
    /// 256-byte chunks first), against the portable backend.
    @Test(.enabled(if: hardware != nil, "this CPU has no AES/PCLMUL instructions (or QSM_AESGCM=portable)"))
    func gmacAgreesAtEveryTailLength() {
        var random = SplitMix64(seed: 4_543)
        // Past 1,520 bytes the wide path folds 256-byte chunks first (its table of powers
        // covers 95 blocks and the lengths block): lengths around that edge, and far past.
        let lengths = Array(0...560) + Array(1_480...1_620) + (0..<100).map { _ in 561 + Int(random.next() % 2_000) }
            + [4_000, 9_001, 65_000]
        for aadLength in lengths {
            let key = HardwareSHA256Tests.randomBytes(16, &random), nonce = HardwareSHA256Tests.randomBytes(12, &random)
            let aad = HardwareSHA256Tests.randomBytes(aadLength, &random)
            let portable = Self.seal(key, nonce, aad, [], .portable)
            for backend in [Self.hardware!] + (HardwareAESGCM.narrow.map { [$0] } ?? []) {
                let sealed = Self.seal(key, nonce, aad, [], backend)
                if sealed.tag != portable.tag {
                    Issue.record("\(backend.name): GMAC of \(aadLength) bytes differs from the portable tag")
                    return
                }
                if Self.open(key, nonce, aad, [], sealed.tag, backend) != [] {
                    Issue.record("\(backend.name): GMAC of \(aadLength) bytes does not verify")
                    return
                }
            }
        }
    }

    /// Any flipped bit of ciphertext, aad, tag or nonce, on either backend, fails
    /// authentication and leaves the output untouched.
    @Test func tamperingIsRefused() {
        var random = SplitMix64(seed: 7)
        for backend in Self.backends {
            for round in 0..<60 {
                let key = HardwareSHA256Tests.randomBytes(16, &random), nonce = HardwareSHA256Tests.randomBytes(12, &random)
                let aad = HardwareSHA256Tests.randomBytes(1 + Int(random.next() % 40), &random)
                let plaintext = HardwareSHA256Tests.randomBytes(Int(random.next() % 300), &random)
                let sealed = Self.seal(key, nonce, aad, plaintext, backend)
                var (c, a, t, n) = (sealed.ciphertext, aad, sealed.tag, nonce)
                switch round % 4 {
                case 0 where !c.isEmpty: c[Int(random.next() % UInt64(c.count))] ^= 1 << UInt8(random.next() % 8)
                case 1: a[Int(random.next() % UInt64(a.count))] ^= 1 << UInt8(random.next() % 8)
                case 2: t[Int(random.next() % 16)] ^= 1 << UInt8(random.next() % 8)
                default: n[Int(random.next() % 12)] ^= 1 << UInt8(random.next() % 8)
                }
                #expect(Self.open(key, n, a, c, t, backend) == nil, "\(backend.name), round \(round)")
            }
        }
    }

    /// `openssl enc -aes-128-ctr` (the keystream GCM encrypts with, from counter 2) and
    /// `openssl mac ... GMAC` (the tag over authenticated data alone) on random inputs, for
    /// both backends. `.ci/run` installs openssl.
    @Test func bothBackendsMatchOpenSSLOnRandomInputs() throws {
        var random = SplitMix64(seed: 38_400)
        let cases = (0..<120).map { index in
            (key: HardwareSHA256Tests.randomBytes(16, &random), nonce: HardwareSHA256Tests.randomBytes(12, &random),
             data: HardwareSHA256Tests.randomBytes(index < 80 ? 1 + index : 1 + Int(random.next() % 4_000), &random))
        }
        guard let lines = try runOpenSSL(on: cases.map(\.data), linesPerInput: 2, { openssl, path, index in
            let key = PacketAuthenticatorTests.hex(cases[index].key), nonce = PacketAuthenticatorTests.hex(cases[index].nonce)
            return "\(openssl) enc -aes-128-ctr -K \(key) -iv \(nonce)00000002 -in \(path) | od -An -v -tx1 | tr -d ' \\n'; echo\n"
                + "\(openssl) mac -cipher AES-128-GCM -macopt hexkey:\(key) -macopt hexiv:\(nonce) -in \(path) GMAC || echo failed\n"
        }) else { return }
        for (index, entry) in cases.enumerated() {
            for backend in Self.backends {
                let encrypted = Self.seal(entry.key, entry.nonce, [], entry.data, backend).ciphertext
                #expect(PacketAuthenticatorTests.hex(encrypted) == lines[2 * index],
                        "case \(index): counter mode over \(entry.data.count) bytes, \(backend.name)")
                let gmac = Self.seal(entry.key, entry.nonce, entry.data, [], backend).tag
                #expect(PacketAuthenticatorTests.hex(gmac) == lines[2 * index + 1].lowercased(),
                        "case \(index): GMAC over \(entry.data.count) bytes, \(backend.name)")
            }
        }
    }
}

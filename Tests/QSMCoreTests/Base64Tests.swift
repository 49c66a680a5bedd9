#if canImport(Glibc)
import Glibc
#endif
import QSMHarness
import QSMProtocol
import Testing

/// `Base64`, the JSON message format's codec: the RFC 4648 test vectors, `openssl base64`
/// on random inputs, random round trips, and every kind of text strict decoding refuses.
@Suite struct Base64Tests {
    /// RFC 4648, section 10.
    @Test func theRFCVectors() {
        let vectors = [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="),
                       ("fooba", "Zm9vYmE="), ("foobar", "Zm9vYmFy")]
        for (plain, encoded) in vectors {
            #expect(Base64.encoded(Array(plain.utf8)) == encoded, "\(plain)")
            #expect(Base64.decode(encoded.utf8) == Array(plain.utf8), "\(encoded)")
        }
    }

    /// The encoding of random inputs (every length up to 70, then longer ones) is what
    /// `openssl base64 -A` prints, and decodes back to the input.
    @Test func matchesOpenSSLOnRandomInputs() throws {
        var random = SplitMix64(seed: 6_400)
        let inputs = (0..<100).map { index in
            (0..<(index < 70 ? index : 70 + Int(random.next() % 5_000))).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        }
        guard let lines = try runOpenSSL(on: inputs, linesPerInput: 1, { openssl, path, _ in
            "\(openssl) base64 -A -in \(path); echo\n"
        }) else { return }
        for (index, input) in inputs.enumerated() {
            #expect(Base64.encoded(input) == lines[index], "input \(index), \(input.count) bytes")
            #expect(Base64.decode(lines[index].utf8) == input, "input \(index), \(input.count) bytes")
        }
    }

    /// Encoding appends: what was in the buffer stays, and one buffer serves many calls.
    @Test(arguments: 0..<20) func encodingAppendsAndRoundTrips(seed: UInt64) {
        var random = SplitMix64(seed: seed)
        var buffer: [UInt8] = Array("prefix:".utf8)
        var expected = "prefix:"
        for _ in 0..<10 {
            let bytes = (0..<Int(random.next() % 300)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            bytes.withUnsafeBytes { Base64.encode($0, appendingTo: &buffer) }
            expected += Base64.encoded(bytes)
            #expect(Base64.decode(Base64.encoded(bytes).utf8) == bytes, "seed \(seed)")
        }
        #expect(String(decoding: buffer, as: UTF8.self) == expected)
    }

    /// Text that is not strict, padded base64 decodes to nothing, never to other bytes.
    @Test func refusesAnythingButStrictPaddedBase64() {
        for text in ["Zg", "Zg=", "Zm9", "Zg===", "=Zg=", "Z=g=", "Zg==Zg==", "Zm9v\n", " Zm9v", "Zm9v ", "Zm-v", "Zm_v",
                     "Zm9*", "Zh==", "Zm9=", "Zm8", "====", "A===", "\u{00E9}AAA"] {
            #expect(Base64.decode(text.utf8) == nil, "'\(text)'")
        }
        // Each refusal above is one change away from an accepted text.
        #expect(Base64.decode("Zg==".utf8) == [0x66])
        #expect(Base64.decode("Zm8=".utf8) == [0x66, 0x6F])
    }
}

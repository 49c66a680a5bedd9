@testable import QSMCore
@testable import QSMProtocol
@testable import QSMSimulation
import QSMHarness
import Testing

/// SHA-256 against FIPS 180-4's examples, HMAC-SHA256 against RFC 4231's test cases.
struct PacketAuthenticatorTests {
    static func hex(_ bytes: [UInt8]) -> String { bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined() }
    static func bytes(_ hex: String) -> [UInt8] {
        var result: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            result.append(UInt8(hex[index..<next], radix: 16)!)
            index = next
        }
        return result
    }

    @Test(arguments: [
        ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
        ("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
         "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"),
    ])
    func sha256MatchesTheStandard(message: String, digest: String) {
        #expect(Self.hex(SHA256.hash(Array(message.utf8))) == digest)
    }

    @Test func sha256OfAMillionAsInPiecesOfEverySize() {
        var hasher = SHA256()
        let chunk = [UInt8](repeating: UInt8(ascii: "a"), count: 1_000)
        var fed = 0
        var size = 1
        while fed < 1_000_000 {
            let take = min(size, 1_000_000 - fed)
            hasher.update(Array(chunk.prefix(min(take, chunk.count))))
            fed += min(take, chunk.count)
            size = size % 997 + 1
        }
        #expect(Self.hex(hasher.finalize()) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    @Test(arguments: [
        // RFC 4231 test cases 1, 2, 3, 4, 6 and 7 (case 5 is a truncation of its own).
        ("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", "4869205468657265",
         "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
        ("4a656665", "7768617420646f2079612077616e7420666f72206e6f7468696e673f",
         "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
        ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
         String(repeating: "dd", count: 50), "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
        ("0102030405060708090a0b0c0d0e0f10111213141516171819",
         String(repeating: "cd", count: 50), "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
        (String(repeating: "aa", count: 131),
         "54657374205573696e67204c6172676572205468616e20426c6f636b2d53697a65204b6579202d2048617368204b6579204669727374",
         "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
        (String(repeating: "aa", count: 131),
         "5468697320697320612074657374207573696e672061206c6172676572207468616e20626c6f636b2d73697a65206b657920616e642061206c6172676572207468616e20626c6f636b2d73697a6520646174612e20546865206b6579206e6565647320746f20626520686173686564206265666f7265206265696e6720757365642062792074686520484d414320616c676f726974686d2e",
         "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
    ])
    func hmacMatchesRFC4231(key: String, data: String, code: String) {
        let authenticator = PacketAuthenticator(secret: Self.bytes(key))
        let message = Self.bytes(data)
        #expect(Self.hex(message.withUnsafeBytes { authenticator.code(for: $0) }) == code)
    }

    /// What replaced `verify` on the data path: a sealed datagram opens under the same
    /// secret, and not under another secret, nor with any byte changed, nor truncated.
    @Test func aSealedDatagramOpensAndAnyChangeFailsIt() {
        let secret = Array("a cluster secret of some length".utf8), other = Array("another cluster's secret, as long".utf8)
        var random = SplitMix64(seed: 9)
        var scratch = [UInt8](repeating: 0, count: 2_048)
        for mode in [DatagramSeal.Mode.authenticate, .encrypt] {
            let sender = DatagramSeal(secret: secret, sender: NodeID(3), epoch: 7 << 32, mode: mode, backend: .portable, blockFunction: nil)
            let receiver = DatagramSeal(secret: secret, sender: NodeID(4), epoch: 9 << 32, mode: mode, backend: .portable, blockFunction: nil)
            let stranger = DatagramSeal(secret: other, sender: NodeID(5), epoch: 9 << 32, mode: mode, backend: .portable, blockFunction: nil)
            func opens(_ seal: DatagramSeal, _ datagram: [UInt8]) -> [UInt8]? {
                datagram.withUnsafeBytes { raw in scratch.withUnsafeMutableBytes { seal.open(raw, scratch: $0).map { Array($0.packet) } } }
            }
            for (counter, size) in [0, 1, 55, 56, 63, 64, 65, 1000, 1400].enumerated() {
                let body = (0..<size).map { _ in UInt8(truncatingIfNeeded: random.next()) }
                var datagram = body + [UInt8](repeating: 0, count: DatagramSeal.overheadBytes)
                _ = datagram.withUnsafeMutableBytes { sender.seal($0, length: size, counter: UInt64(counter + 1)) }
                #expect(opens(receiver, datagram) == body, "\(mode), size \(size)")
                #expect(opens(stranger, datagram) == nil, "\(mode), size \(size)")
                for position in [0, datagram.count / 2, datagram.count - 1] {
                    var changed = datagram
                    changed[position] ^= 0x01
                    #expect(opens(receiver, changed) == nil, "\(mode), size \(size), flipped byte \(position)")
                }
                #expect(opens(receiver, Array(datagram.dropLast())) == nil, "\(mode), size \(size), truncated")
            }
        }
    }

    /// The two-part tag (a GMS frame's counter, then the frame where it lies) is the tag
    /// of the two joined, for every split, including empty parts and block boundaries.
    @Test func aTagOfTwoPartsIsTheTagOfTheirJoin() {
        var random = SplitMix64(seed: 15)
        let authenticator = PacketAuthenticator(secret: (0..<32).map { _ in UInt8(truncatingIfNeeded: random.next()) })
        for _ in 0..<200 {
            let whole = (0..<Int(random.next() % 300)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            let split = whole.isEmpty ? 0 : Int(random.next() % UInt64(whole.count + 1))
            let prefix = Array(whole[..<split]), rest = Array(whole[split...])
            var joined = [UInt8](repeating: 0, count: 32), parts = [UInt8](repeating: 0, count: 32)
            whole.withUnsafeBytes { message in joined.withUnsafeMutableBytes { authenticator.write(code: message, into: $0, length: 32) } }
            prefix.withUnsafeBytes { first in
                rest.withUnsafeBytes { second in parts.withUnsafeMutableBytes { authenticator.write(code: first, second, into: $0, length: 32) } }
            }
            #expect(parts == joined, "\(whole.count) bytes split at \(split)")
            #expect(joined == whole.withUnsafeBytes { authenticator.code(for: $0) })
        }
    }
}

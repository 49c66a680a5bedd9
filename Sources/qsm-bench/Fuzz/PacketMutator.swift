import QSMCore
import QSMHarness

/// Turns valid packets into hostile ones: random bytes, bit flips, boundary values
/// written over fields, truncation, extension, splicing, kind changes, and replays.
struct PacketMutator {
    var random: SplitMix64
    let corpus: [[UInt8]]

    init(seed: UInt64, corpus: [[UInt8]]) {
        random = SplitMix64(seed: seed)
        self.corpus = corpus
    }

    private mutating func below(_ bound: Int) -> Int { bound <= 0 ? 0 : Int(random.next() % UInt64(bound)) }

    private static let boundaries: [UInt64] = [0, 1, 2, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFF_FFFF, 0xFFFF_FFFF, 1 << 32,
                                                UInt64(Int64.max), UInt64.max - 1, UInt64.max]

    /// The next hostile input.
    mutating func next() -> [UInt8] {
        let strategy = below(12)
        if strategy == 0 || corpus.isEmpty {
            return (0..<below(1_600)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        }
        var bytes = corpus[below(corpus.count)]
        switch strategy {
        case 1: // Replay as it was.
            return bytes
        case 2: // Truncate.
            return Array(bytes.prefix(below(bytes.count + 1)))
        case 3: // Extend.
            return bytes + (0..<(1 + below(300))).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        case 4: // Splice the head of one onto the tail of another.
            let other = corpus[below(corpus.count)]
            return Array(bytes.prefix(below(bytes.count + 1))) + Array(other.suffix(below(other.count + 1)))
        case 5: // Another packet kind on the same body.
            if !bytes.isEmpty { bytes[0] = UInt8(truncatingIfNeeded: random.next() % 12) }
            return bytes
        default:
            // Several point mutations: bit flips, byte and word boundary values.
            for _ in 0..<(1 + below(6)) where !bytes.isEmpty {
                let offset = below(bytes.count)
                switch below(4) {
                case 0: bytes[offset] ^= 1 << UInt8(below(8))
                case 1: bytes[offset] = UInt8(truncatingIfNeeded: Self.boundaries[below(Self.boundaries.count)])
                case 2: bytes[offset] = UInt8(truncatingIfNeeded: random.next())
                default:
                    // A big-endian 16-, 32- or 64-bit field set to a boundary value.
                    let width = [2, 4, 8][below(3)]
                    let value = Self.boundaries[below(Self.boundaries.count)]
                    for index in 0..<width where offset + index < bytes.count {
                        bytes[offset + index] = UInt8(truncatingIfNeeded: value >> UInt64(8 * (width - 1 - index)))
                    }
                }
            }
            return bytes
        }
    }
}

/// SHA-256 (FIPS 180-4), written from the specification because the design card allows
/// no packages. Streaming, no allocation after creation; checked against the standard's
/// test vectors in the test suite.
///
/// This target is pure, so it cannot reach the CPU's SHA instructions itself: a driver
/// that can (QSMCore) passes a `BlockFunction` that compresses whole blocks in hardware,
/// and the Swift compression here is the fallback and the reference it is tested against.
package struct SHA256: Sendable {
    package static let digestBytes = 32
    package static let blockBytes = 64

    /// Compresses `count` 64-byte blocks at `data` into the eight state words at `state`
    /// (FIPS 180-4 word order): the shape of a C function, so a hardware implementation
    /// costs one indirect call per run of blocks, with no closure or existential.
    package typealias BlockFunction = @convention(c) (UnsafeMutablePointer<UInt32>?, UnsafePointer<UInt8>?, Int) -> Void

    /// The hardware block function, or nil for the portable one.
    package let blockFunction: BlockFunction?

    private static let roundConstants: [UInt32] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ]

    private var state: (UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32) =
        (0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19)
    /// A partial block (a fixed-size value, so copying a hasher never allocates).
    private var pending: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
    private var pendingCount = 0
    private var totalBytes: UInt64 = 0

    /// - Parameter blockFunction: compresses whole blocks (in hardware); nil for the
    ///   portable Swift code.
    package init(blockFunction: BlockFunction? = nil) { self.blockFunction = blockFunction }

    package mutating func update(_ bytes: UnsafeRawBufferPointer) {
        totalBytes &+= UInt64(bytes.count)
        var offset = 0
        if pendingCount > 0 {
            let take = min(64 - pendingCount, bytes.count)
            let start = pendingCount
            withUnsafeMutableBytes(of: &pending) { block in
                for index in 0..<take { block[start + index] = bytes[index] }
            }
            pendingCount += take
            offset = take
            if pendingCount == 64 {
                var block = pending
                withUnsafeBytes(of: &block) { compress($0) }
                pendingCount = 0
            }
        }
        let wholeBlocks = (bytes.count - offset) / 64
        if wholeBlocks > 0 {
            compress(UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + 64 * wholeBlocks)]))
            offset += 64 * wholeBlocks
        }
        let start = pendingCount
        withUnsafeMutableBytes(of: &pending) { block in
            for index in offset..<bytes.count { block[start + index - offset] = bytes[index] }
        }
        pendingCount += bytes.count - offset
    }

    package mutating func update(_ bytes: [UInt8]) { bytes.withUnsafeBytes { update($0) } }

    /// The digest; the value is finished afterwards (start a new one to hash again).
    package mutating func finalize() -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: 32)
        digest.withUnsafeMutableBytes { finalize(into: $0) }
        return digest
    }

    /// Writes the 32-byte digest into `output` (at least 32 bytes), without allocating.
    package mutating func finalize(into output: UnsafeMutableRawBufferPointer) {
        let bitLength = totalBytes &* 8
        var padding: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &padding) { raw in
            raw[0] = 0x80
            let padLength = pendingCount < 56 ? 56 - pendingCount : 120 - pendingCount
            for index in 0..<8 { raw[padLength + index] = UInt8(truncatingIfNeeded: bitLength >> UInt64(56 - 8 * index)) }
            update(UnsafeRawBufferPointer(rebasing: raw[0..<(padLength + 8)]))
        }
        let words = [state.0, state.1, state.2, state.3, state.4, state.5, state.6, state.7]
        for (index, word) in words.enumerated() {
            output.storeBytes(of: word.bigEndian, toByteOffset: 4 * index, as: UInt32.self)
        }
    }

    /// The hash of `bytes` in one call.
    package static func hash(_ bytes: [UInt8], blockFunction: BlockFunction? = nil) -> [UInt8] {
        var hasher = SHA256(blockFunction: blockFunction)
        hasher.update(bytes)
        return hasher.finalize()
    }

    /// Compresses `blocks` (a whole number of 64-byte blocks).
    private mutating func compress(_ blocks: UnsafeRawBufferPointer) {
        if let blockFunction {
            withUnsafeMutableBytes(of: &state) { words in
                blockFunction(words.baseAddress!.assumingMemoryBound(to: UInt32.self),
                              blocks.baseAddress!.assumingMemoryBound(to: UInt8.self), blocks.count / 64)
            }
            return
        }
        var offset = 0
        while offset < blocks.count {
            compressPortably(UnsafeRawBufferPointer(rebasing: blocks[offset..<(offset + 64)]))
            offset += 64
        }
    }

    private mutating func compressPortably(_ block: UnsafeRawBufferPointer) {
        var w: (UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32,
                UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32,
                UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32,
                UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32)
            = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
               0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &w) { raw in
            let schedule = raw.bindMemory(to: UInt32.self)
            for t in 0..<16 { schedule[t] = UInt32(bigEndian: block.loadUnaligned(fromByteOffset: 4 * t, as: UInt32.self)) }
            for t in 16..<64 {
                let s0 = schedule[t - 15].rotatedRight(7) ^ schedule[t - 15].rotatedRight(18) ^ (schedule[t - 15] &>> 3)
                let s1 = schedule[t - 2].rotatedRight(17) ^ schedule[t - 2].rotatedRight(19) ^ (schedule[t - 2] &>> 10)
                schedule[t] = schedule[t - 16] &+ s0 &+ schedule[t - 7] &+ s1
            }
            var (a, b, c, d, e, f, g, h) = state
            Self.roundConstants.withUnsafeBufferPointer { k in
                for t in 0..<64 {
                    let s1 = e.rotatedRight(6) ^ e.rotatedRight(11) ^ e.rotatedRight(25)
                    let choose = (e & f) ^ (~e & g)
                    let temporary1 = h &+ s1 &+ choose &+ k[t] &+ schedule[t]
                    let s0 = a.rotatedRight(2) ^ a.rotatedRight(13) ^ a.rotatedRight(22)
                    let majority = (a & b) ^ (a & c) ^ (b & c)
                    let temporary2 = s0 &+ majority
                    h = g; g = f; f = e; e = d &+ temporary1
                    d = c; c = b; b = a; a = temporary1 &+ temporary2
                }
            }
            state = (state.0 &+ a, state.1 &+ b, state.2 &+ c, state.3 &+ d, state.4 &+ e, state.5 &+ f, state.6 &+ g, state.7 &+ h)
        }
    }
}

extension UInt32 {
    @inline(__always)
    func rotatedRight(_ count: UInt32) -> UInt32 { (self &>> count) | (self &<< (32 &- count)) }
}

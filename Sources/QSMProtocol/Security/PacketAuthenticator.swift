/// HMAC-SHA256 (RFC 2104 with FIPS 180-4): the GMS connection's frame tags (truncated to
/// 16 bytes, RFC 4868 style) and its handshake proofs, and the derivation of the
/// datagram keys (`DatagramSeal`). The key's inner and outer states are computed once; a
/// tag then costs two SHA-256 passes and no allocation.
package struct PacketAuthenticator: Sendable {
    private let inner: SHA256
    private let outer: SHA256

    /// - Parameters:
    ///   - secret: the cluster secret; at least 16 bytes (longer than a block is hashed
    ///     first, as HMAC specifies).
    ///   - blockFunction: SHA-256 block compression in hardware, or nil for the portable
    ///     code (see `SHA256.BlockFunction`).
    package init(secret: [UInt8], blockFunction: SHA256.BlockFunction? = nil) {
        var key = secret.count > SHA256.blockBytes ? SHA256.hash(secret, blockFunction: blockFunction) : secret
        key += [UInt8](repeating: 0, count: SHA256.blockBytes - key.count)
        var inner = SHA256(blockFunction: blockFunction)
        inner.update(key.map { $0 ^ 0x36 })
        var outer = SHA256(blockFunction: blockFunction)
        outer.update(key.map { $0 ^ 0x5c })
        self.inner = inner
        self.outer = outer
    }

    /// The full 32-byte HMAC of `message` (for checking against published vectors).
    package func code(for message: UnsafeRawBufferPointer) -> [UInt8] {
        var result = [UInt8](repeating: 0, count: SHA256.digestBytes)
        result.withUnsafeMutableBytes { write(code: message, into: $0, length: SHA256.digestBytes) }
        return result
    }

    /// Writes the first `length` bytes of the HMAC of `message` into `output`.
    package func write(code message: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer, length: Int) {
        write(code: UnsafeRawBufferPointer(start: nil, count: 0), message, into: output, length: length)
    }

    /// Writes the first `length` bytes of the HMAC of `prefix` followed by `message` into
    /// `output`, as if they were one buffer (a frame's tag covers a counter and the frame,
    /// and a frame can be megabytes: no copy is made to join them).
    package func write(code prefix: UnsafeRawBufferPointer, _ message: UnsafeRawBufferPointer,
                       into output: UnsafeMutableRawBufferPointer, length: Int) {
        var innerHash = inner
        if !prefix.isEmpty { innerHash.update(prefix) }
        innerHash.update(message)
        var digest: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        withUnsafeMutableBytes(of: &digest) { raw in
            innerHash.finalize(into: raw)
            var outerHash = outer
            outerHash.update(UnsafeRawBufferPointer(raw))
            outerHash.finalize(into: raw)
            for index in 0..<length { output[index] = raw[index] }
        }
    }
}

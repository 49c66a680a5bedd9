/// Why bytes could not be read or written.
package enum WireError: Error, Equatable, Sendable {
    /// Reading `needed` bytes at `offset` would pass the end (`available` bytes were left).
    case truncated(offset: Int, needed: Int, available: Int)
    /// Writing `needed` bytes at `offset` would pass the buffer's end.
    case overflow(offset: Int, needed: Int, available: Int)
    /// The bytes are present but do not make sense (a bad length, kind or version).
    case malformed(reason: String, offset: Int)
}

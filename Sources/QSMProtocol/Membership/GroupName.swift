/// The name of a multicast group as applications and the membership service know it.
///
/// Names travel on the wire length-prefixed, so they are bounded: 1 to 255 bytes of UTF-8,
/// with no control characters (they appear in logs and command lines).
public struct GroupName: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The name as given.
    public let text: String
    /// FNV-1a of the name's UTF-8, made once: a node finds a group's id by name per
    /// publication, and hashing a string each time cost more than the rest of the
    /// lookup (`IdentifierTable` mixes this word with a secret seed).
    package let textHash: UInt64

    /// The longest name accepted, in UTF-8 bytes.
    public static let maximumByteCount = 255

    /// Returns nil for an empty or over-long name, or one containing control characters.
    public init?(_ text: String) {
        let count = text.utf8.count
        guard count > 0, count <= Self.maximumByteCount,
              !text.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else { return nil }
        self.text = text
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01b3
        }
        textHash = hash
    }

    public static func == (lhs: GroupName, rhs: GroupName) -> Bool { lhs.textHash == rhs.textHash && lhs.text == rhs.text }

    public func hash(into hasher: inout Hasher) { hasher.combine(text) }

    public var description: String { text }

    public static func < (lhs: GroupName, rhs: GroupName) -> Bool { lhs.text < rhs.text }
}

extension GroupName: IdentifierKey {
    package var folded: UInt64 { textHash }
}

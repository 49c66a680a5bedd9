/// The name of a multicast group as applications and the membership service know it.
///
/// Names travel on the wire length-prefixed, so they are bounded: 1 to 255 bytes of UTF-8,
/// with no control characters (they appear in logs and command lines).
public struct GroupName: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The name as given.
    public let text: String

    /// The longest name accepted, in UTF-8 bytes.
    public static let maximumByteCount = 255

    /// Returns nil for an empty or over-long name, or one containing control characters.
    public init?(_ text: String) {
        let count = text.utf8.count
        guard count > 0, count <= Self.maximumByteCount,
              !text.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else { return nil }
        self.text = text
    }

    public var description: String { text }

    public static func < (lhs: GroupName, rhs: GroupName) -> Bool { lhs.text < rhs.text }
}

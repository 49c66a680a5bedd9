/// An IPv4 address, stored in host byte order.
public struct IPv4Address: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The address as a 32-bit number, most significant octet first (host byte order).
    public var value: UInt32

    /// The address with this 32-bit value (host byte order).
    public init(value: UInt32) { self.value = value }

    /// The address a.b.c.d.
    public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) {
        value = UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d)
    }

    /// Parses dotted-quad text ("239.192.0.1"); returns nil for anything else.
    public init?(_ text: some StringProtocol) {
        var octets: [UInt32] = []
        octets.reserveCapacity(4)
        for part in text.split(separator: ".", omittingEmptySubsequences: false) {
            guard !part.isEmpty, part.count <= 3, part.allSatisfy({ $0.isASCII && $0.isNumber }),
                  let octet = UInt32(part), octet <= 255 else { return nil }
            octets.append(octet)
        }
        guard octets.count == 4 else { return nil }
        value = octets[0] << 24 | octets[1] << 16 | octets[2] << 8 | octets[3]
    }

    /// 0.0.0.0, any local address.
    public static let any = IPv4Address(value: 0)
    /// 127.0.0.1.
    public static let loopback = IPv4Address(127, 0, 0, 1)

    /// True for 224.0.0.0/4, the IPv4 multicast range.
    public var isMulticast: Bool { value >> 28 == 0xE }

    public var description: String {
        "\(value >> 24).\(value >> 16 & 0xFF).\(value >> 8 & 0xFF).\(value & 0xFF)"
    }

    public static func < (lhs: IPv4Address, rhs: IPv4Address) -> Bool { lhs.value < rhs.value }
}

/// An IPv4 address and UDP port.
public struct QSMSocketAddress: Hashable, Sendable, CustomStringConvertible {
    /// The IPv4 address.
    public var address: IPv4Address
    /// The port.
    public var port: UInt16

    /// `address`:`port`.
    public init(_ address: IPv4Address, port: UInt16) {
        self.address = address
        self.port = port
    }

    /// Parses "HOST:PORT" where HOST is a dotted quad; nil for anything else.
    public init?(_ text: some StringProtocol) {
        guard let colon = text.lastIndex(of: ":"),
              let address = IPv4Address(text[..<colon]),
              let port = UInt16(text[text.index(after: colon)...]) else { return nil }
        self.init(address, port: port)
    }

    public var description: String { "\(address):\(port)" }
}

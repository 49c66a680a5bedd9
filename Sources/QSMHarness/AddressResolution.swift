#if canImport(Glibc)
import Glibc
#endif
import QSMCore

/// Turns what an operator types for an address into one the node can use: host names
/// are resolved (IPv4), an interface may be named by address, by name or by a CIDR its
/// address lies in, and IPv6 gets a clear refusal rather than a parse error.
public enum AddressResolution {
    /// `HOST:PORT`, HOST an IPv4 address or a name that resolves to one.
    public static func hostAndPort(_ text: String, flag: String) throws(ConfigurationError) -> QSMSocketAddress {
        if text.hasPrefix("[") || text.filter({ $0 == ":" }).count > 1 {
            throw ConfigurationError("\(flag): IPv6 is not supported yet (got '\(text)'); give an IPv4 address or a host name with one")
        }
        guard let colon = text.lastIndex(of: ":"), let port = UInt16(text[text.index(after: colon)...]) else {
            throw ConfigurationError("\(flag) must be HOST:PORT (like 127.0.0.1:7000 or gms.example:7000), got '\(text)'")
        }
        let host = String(text[..<colon])
        if let address = IPv4Address(host) { return QSMSocketAddress(address, port: port) }
        return QSMSocketAddress(try resolve(host, flag: flag), port: port)
    }

    /// The IPv4 address of a host name.
    static func resolve(_ host: String, flag: String) throws(ConfigurationError) -> IPv4Address {
        guard !host.isEmpty else { throw ConfigurationError("\(flag): the host is empty") }
        var hints = addrinfo()
        hints.ai_family = AF_INET
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, nil, &hints, &result)
        defer { if let result { freeaddrinfo(result) } }
        guard status == 0, let first = result, let raw = first.pointee.ai_addr else {
            let reason = status == 0 ? "no IPv4 address" : String(cString: gai_strerror(status))
            throw ConfigurationError("\(flag): cannot resolve '\(host)' to an IPv4 address: \(reason)")
        }
        let address = raw.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr.s_addr }
        return IPv4Address(value: UInt32(bigEndian: address))
    }

    /// The local IPv4 address to use for multicast: given as an address (which must be
    /// this host's), an interface name (`eth0`), or a CIDR (`10.0.0.0/24`) that exactly one
    /// local address lies in.
    public static func interface(_ text: String) throws(ConfigurationError) -> IPv4Address {
        let local = localAddresses()
        let known = local.map { "\($0.name) \($0.address)" }.joined(separator: ", ")
        if text.contains(":") {
            throw ConfigurationError("--interface: IPv6 is not supported yet (got '\(text)'); local IPv4 addresses: \(known)")
        }
        if let slash = text.firstIndex(of: "/") {
            guard let network = IPv4Address(text[..<slash]), let prefix = Int(text[text.index(after: slash)...]), (0...32).contains(prefix) else {
                throw ConfigurationError("--interface: '\(text)' is not a CIDR like 10.0.0.0/24")
            }
            let mask: UInt32 = prefix == 0 ? 0 : ~UInt32(0) << UInt32(32 - prefix)
            let matches = Set(local.map(\.address).filter { $0.value & mask == network.value & mask })
            guard matches.count == 1, let match = matches.first else {
                throw ConfigurationError("--interface: \(matches.isEmpty ? "no" : "more than one") local address in \(text) (local IPv4 addresses: \(known))")
            }
            return match
        }
        if let address = IPv4Address(text) {
            guard local.isEmpty || local.contains(where: { $0.address == address }) else {
                throw ConfigurationError("--interface: \(address) is not an address of this host (local IPv4 addresses: \(known))")
            }
            return address
        }
        guard let match = local.first(where: { $0.name == text }) else {
            throw ConfigurationError("--interface: no interface '\(text)' with an IPv4 address (local IPv4 addresses: \(known))")
        }
        return match.address
    }

    /// This host's interfaces with an IPv4 address, in the kernel's order.
    public static func localAddresses() -> [(name: String, address: IPv4Address)] {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { return [] }
        defer { freeifaddrs(list) }
        var found: [(String, IPv4Address)] = []
        var cursor = list
        while let entry = cursor {
            defer { cursor = entry.pointee.ifa_next }
            guard let raw = entry.pointee.ifa_addr, raw.pointee.sa_family == sa_family_t(AF_INET) else { continue }
            let value = raw.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr.s_addr }
            found.append((String(cString: entry.pointee.ifa_name), IPv4Address(value: UInt32(bigEndian: value))))
        }
        return found
    }
}

#if canImport(Glibc)
import Glibc
#endif

extension QSMSocketAddress {
    init(_ raw: sockaddr_in) {
        self.init(IPv4Address(value: UInt32(bigEndian: raw.sin_addr.s_addr)),
                  port: UInt16(bigEndian: raw.sin_port))
    }

    var sockaddr: sockaddr_in {
        var raw = sockaddr_in()
        raw.sin_family = sa_family_t(AF_INET)
        raw.sin_port = port.bigEndian
        raw.sin_addr = address.inAddr
        return raw
    }
}

extension IPv4Address {
    var inAddr: in_addr { in_addr(s_addr: value.bigEndian) }
}

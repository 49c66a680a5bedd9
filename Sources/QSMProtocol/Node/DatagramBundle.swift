/// Several protocol packets to the same address in one datagram: the kind byte
/// `PacketKind.bundle`, a 16-bit count, then each packet as a 16-bit length and its
/// bytes. With a cluster secret the whole datagram carries one tag.
///
/// Bundling is per datagram only: each packet keeps its own header, sequence number and
/// meaning, so sequencing, caching and recovery work per message exactly as for packets
/// sent alone (a lost bundle is a run of consecutive losses, recovered as a range). The
/// saving is in what every datagram costs (a system call share, the kernel's per-packet
/// work, a wake-up, a tag), which dominates for small messages.
package enum DatagramBundle {
    static let headerBytes = 1 + 2
    static let lengthBytes = 2
    /// Packets in one bundle at most (small control packets could otherwise make a count
    /// that a receiver has to walk for long).
    static let maximumPackets = 256

    /// How many single-fragment messages of `messageBytes` a bundle of at most
    /// `bundleBytes` (tag included) holds when they are all ready, and the length of that
    /// datagram: what a raw baseline must send to use the same technique. One, and a
    /// plain data datagram, when two do not fit.
    package static func packing(messageBytes: Int, bundleBytes: Int, authenticated: Bool) -> (messages: Int, datagramBytes: Int) {
        let tag = authenticated ? DatagramSeal.overheadBytes : 0
        let packet = DataPacket.headerBytes + messageBytes
        let room = bundleBytes - tag - headerBytes
        let count = bundleBytes == 0 ? 1 : max(1, min(maximumPackets, room / (lengthBytes + packet)))
        return count == 1 ? (1, packet + tag) : (count, headerBytes + count * (lengthBytes + packet) + tag)
    }

    /// Calls `body` with each packet of `bundle` (its kind byte included), after checking
    /// that the lengths add up exactly and that no packet is itself a bundle; false, and
    /// no call, if the bundle is malformed.
    static func forEachPacket(in bundle: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) -> Void) -> Bool {
        guard bundle.count >= headerBytes, bundle[0] == PacketKind.bundle.rawValue else { return false }
        let count = Int(bundle[1]) << 8 | Int(bundle[2])
        guard count >= 1, count <= maximumPackets else { return false }
        var offset = headerBytes
        for _ in 0..<count {
            guard offset + lengthBytes <= bundle.count else { return false }
            let length = Int(bundle[offset]) << 8 | Int(bundle[offset + 1])
            offset += lengthBytes
            guard length >= 1, offset + length <= bundle.count, bundle[offset] != PacketKind.bundle.rawValue else { return false }
            offset += length
        }
        guard offset == bundle.count else { return false }
        offset = headerBytes
        for _ in 0..<count {
            let length = Int(bundle[offset]) << 8 | Int(bundle[offset + 1])
            offset += lengthBytes
            body(UnsafeRawBufferPointer(rebasing: bundle[offset..<(offset + length)]))
            offset += length
        }
        return true
    }
}

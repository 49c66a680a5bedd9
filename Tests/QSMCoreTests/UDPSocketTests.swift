#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import QSMCore
@testable import QSMProtocol
@testable import QSMSimulation
import QSMHarness

@Suite(.enabled(if: NetworkNamespace.isAvailable, namespaceRequirement))
struct UDPSocketTests {
    @Test func bindsToAKernelChosenPortAndReportsIt() throws {
        let address = try NetworkNamespace.runIsolated { try loopbackSocket().1 }
        #expect(address.address == .loopback)
        #expect(address.port != 0)
    }

    @Test func reportsTheBufferSizesTheKernelGranted() throws {
        let (receive, send) = try NetworkNamespace.runIsolated {
            let socket = try UDPSocket()
            return (try socket.setReceiveBufferSize(1 << 20), try socket.setSendBufferSize(1 << 19))
        }
        // Linux doubles the request for its bookkeeping and reports that.
        #expect(receive >= 1 << 20)
        #expect(send >= 1 << 19)
    }

    @Test func emptyReceiveIsWouldBlockNotAnError() throws {
        let wouldBlock = try NetworkNamespace.runIsolated {
            let (socket, _) = try loopbackSocket()
            var buffer = [UInt8](repeating: 0, count: 16)
            let result = try buffer.withUnsafeMutableBytes { try socket.receive(into: $0) }
            if case .wouldBlock = result { return true }
            return false
        }
        #expect(wouldBlock)
    }

    @Test func failuresAreTypedWithCallAndErrno() throws {
        let (bindError, joinError) = try NetworkNamespace.runIsolated { () throws -> (SystemError?, SystemError?) in
            let socket = try UDPSocket()
            var bindError: SystemError?
            var joinError: SystemError?
            // 192.0.2.1 (TEST-NET-1) is not an address of this namespace: bind must refuse.
            do throws(SystemError) {
                try socket.bind(to: QSMSocketAddress(IPv4Address(192, 0, 2, 1), port: 0))
            } catch { bindError = error }
            do throws(SystemError) {
                try socket.joinMulticastGroup(IPv4Address(10, 0, 0, 1), interface: .loopback)
            } catch { joinError = error }
            return (bindError, joinError)
        }
        #expect(bindError == SystemError(call: "bind", errno: EADDRNOTAVAIL))
        #expect(joinError == SystemError(call: "setsockopt(IP_ADD_MEMBERSHIP)", errno: EINVAL))
        let description = bindError?.description ?? ""
        #expect(description.contains("bind failed"))
        #expect(description.contains("errno \(EADDRNOTAVAIL)"))
    }

    @Test func joinedGroupIsReceivedAndLeftGroupIsNot() throws {
        struct Outcome: Sendable {
            var first: UDPSocket.Reception?
            var senderPort: UInt16
            var firstBytes: [UInt8]
            var afterLeave: [UInt8]
        }
        let outcome = try NetworkNamespace.runIsolated { () throws -> Outcome in
            let group = IPv4Address(239, 192, 3, 3)
            let receiver = try UDPSocket()
            try receiver.setReuseAddress(true)
            let port = try receiver.bind(to: QSMSocketAddress(.any, port: 0)).port
            try receiver.joinMulticastGroup(group, interface: .loopback)
            let sender = try UDPSocket()
            try sender.setMulticastInterface(.loopback)
            try sender.setMulticastTimeToLive(0)
            try sender.setMulticastLoop(true)

            var buffer = [UInt8](repeating: 0, count: 64)
            try sendDatagram(sender, [1, 2, 3], to: QSMSocketAddress(group, port: port))
            _ = waitUntilReadable([receiver.descriptor])
            let first = try buffer.withUnsafeMutableBytes { try receiver.receive(into: $0) }
            var outcome = Outcome(first: nil, senderPort: try sender.localAddress().port,
                                  firstBytes: Array(buffer.prefix(3)), afterLeave: [])
            if case .completed(let reception) = first { outcome.first = reception }

            try receiver.leaveMulticastGroup(group, interface: .loopback)
            try sendDatagram(sender, [4], to: QSMSocketAddress(group, port: port))
            // A unicast sentinel sent afterwards arrives; the group datagram must not precede it.
            try sendDatagram(sender, [9], to: QSMSocketAddress(.loopback, port: port))
            _ = waitUntilReadable([receiver.descriptor])
            if case .completed(let reception) = try buffer.withUnsafeMutableBytes({ try receiver.receive(into: $0) }) {
                outcome.afterLeave = Array(buffer.prefix(reception.length))
            }
            return outcome
        }
        #expect(outcome.first == UDPSocket.Reception(length: 3, source: QSMSocketAddress(.loopback, port: outcome.senderPort),
                                                     truncated: false))
        #expect(outcome.firstBytes == [1, 2, 3])
        #expect(outcome.afterLeave == [9])
    }

    @Test func privateNamespaceIsNotTheCallersNamespace() throws {
        let outer = NetworkNamespace.currentIdentifier
        let inner = try NetworkNamespace.runIsolated { NetworkNamespace.currentIdentifier }
        #expect(outer != inner)
        #expect(inner > 0)
    }
}

@Suite struct PacketBufferPoolTests {
    @Test func exhaustionIsCountedNotFatal() {
        let pool = PacketBufferPool(bufferCount: 3, bufferCapacity: 100)
        let taken = (0..<3).compactMap { _ in pool.acquire() }
        #expect(Set(taken.map(\.index)).count == 3)
        #expect(pool.acquire() == nil)
        #expect(pool.acquire() == nil)
        #expect(pool.exhaustionCount == 2)
        pool.release(taken[1])
        #expect(pool.acquire() == taken[1])
    }

    @Test func doubleReleaseIsCountedAndIgnored() {
        let pool = PacketBufferPool(bufferCount: 2, bufferCapacity: 10)
        let buffer = pool.acquire()!
        pool.release(buffer)
        pool.release(buffer)
        pool.release(PacketBuffer(index: 77))
        #expect(pool.invalidReleaseCount == 2)
        #expect(pool.availableCount == 2)
    }

    @Test func buffersDoNotOverlap() {
        let pool = PacketBufferPool(bufferCount: 8, bufferCapacity: 100)
        let buffers = (0..<8).map { _ in pool.acquire()! }
        for (index, buffer) in buffers.enumerated() {
            pool.bytes(of: buffer).initializeMemory(as: UInt8.self, repeating: UInt8(index))
        }
        for (index, buffer) in buffers.enumerated() {
            let bytes = pool.bytes(of: buffer)
            #expect(bytes.count == 100)
            #expect(bytes.allSatisfy { $0 == UInt8(index) })
        }
    }
}

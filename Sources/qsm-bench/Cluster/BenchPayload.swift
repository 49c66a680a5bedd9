#if canImport(Glibc)
import Glibc
#endif
import QSMCore
import QSMHarness

/// The bytes a benchmark sender publishes: who sent it, its number in that sender's
/// stream, when it was published (CLOCK_MONOTONIC, the same clock in every process on
/// the host), then a pattern derived from the number, so that receivers detect any
/// corruption, not just loss.
enum BenchPayload {
    static let headerBytes = 24
    static let minimumSize = headerBytes

    /// As fast as possible, a sender stamps one message in this many with its publication
    /// time (the others carry zero), and receivers read the clock for those only. Reading
    /// it for every message, at both ends, was 4% of the machine's samples at 100 bytes
    /// (perf), where the raw baseline reads it for none; and the latency there is the
    /// window's queueing, milliseconds, which a sample of millions of messages shows as
    /// well. At a set rate (the latency experiments) every message is timed.
    static let timedEveryAtFullRate: UInt64 = 16

    /// Whether the message in `raw` carries its publication time.
    static func isTimed(_ raw: UnsafeRawBufferPointer) -> Bool {
        raw.count >= headerBytes && raw.loadUnaligned(fromByteOffset: 16, as: Int64.self) != 0
    }

    /// Writes message `sequence` of sender `sender` into `bytes` (its count is the size).
    static func fill(_ bytes: inout [UInt8], sender: Int, sequence: UInt64, publishedAt: Instant) {
        bytes.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: UInt32(sender).bigEndian, toByteOffset: 0, as: UInt32.self)
            raw.storeBytes(of: UInt32(0), toByteOffset: 4, as: UInt32.self)
            raw.storeBytes(of: sequence.bigEndian, toByteOffset: 8, as: UInt64.self)
            raw.storeBytes(of: publishedAt.nanoseconds.bigEndian, toByteOffset: 16, as: Int64.self)
            var value = UInt8(truncatingIfNeeded: sequence)
            for index in headerBytes..<raw.count {
                raw[index] = value
                value &+= 1
            }
        }
    }

    /// 0, 1, ..., 255, 0, 1, ... long enough for any offset plus the largest body.
    private static let patternTable: [UInt8] = (0..<(256 + 65_536)).map { UInt8(truncatingIfNeeded: $0) }

    struct Header {
        var sender: Int
        var sequence: UInt64
        var publishedAt: Instant
    }

    /// The header of a received message, or nil when it is too short or its pattern is
    /// wrong (corrupted).
    static func check(_ raw: UnsafeRawBufferPointer) -> Header? {
        guard raw.count >= headerBytes else { return nil }
        let sender = UInt32(bigEndian: raw.loadUnaligned(fromByteOffset: 0, as: UInt32.self))
        let sequence = UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        let published = Int64(bigEndian: raw.loadUnaligned(fromByteOffset: 16, as: Int64.self))
        // The pattern is a window into a table of repeating 0...255: one memcmp.
        let body = raw.count - headerBytes
        let offset = Int(UInt8(truncatingIfNeeded: sequence))
        let intact = patternTable.withUnsafeBytes { table in
            memcmp(raw.baseAddress! + headerBytes, table.baseAddress! + offset, body) == 0
        }
        guard intact else { return nil }
        return Header(sender: Int(sender), sequence: sequence, publishedAt: Instant(nanoseconds: published))
    }
}

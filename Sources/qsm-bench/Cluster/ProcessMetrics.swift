#if canImport(Glibc)
import Glibc
#endif
import QSMCore
import QSMHarness

/// What a worker process reports about itself: CPU time and memory.
enum ProcessMetrics {
    /// CPU seconds (user + system) this process used so far.
    static var cpuSeconds: Double { Double(ProcessCPUClock.nanoseconds()) / 1e9 }

    /// Resident set size now and at its peak, in megabytes, from /proc/self/status.
    static func residentMegabytes() -> (current: Double, peak: Double) {
        guard let file = fopen("/proc/self/status", "r") else { return (0, 0) }
        defer { fclose(file) }
        var current = 0.0
        var peak = 0.0
        var line = [CChar](repeating: 0, count: 256)
        while fgets(&line, Int32(line.count), file) != nil {
            let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let fields = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" })
            guard fields.count >= 2, let kilobytes = Double(fields[1]) else { continue }
            if fields[0] == "VmRSS:" { current = kilobytes / 1024 }
            if fields[0] == "VmHWM:" { peak = kilobytes / 1024 }
        }
        return (current, peak)
    }

    /// The UDP receive-buffer overflow count of this network namespace (all sockets in
    /// it), from /proc/self/net/snmp: datagrams the kernel dropped because a socket
    /// was full.
    static func udpReceiveBufferErrors() -> Int {
        guard let file = fopen("/proc/self/net/snmp", "r") else { return -1 }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 1024)
        var header: [Substring] = []
        while fgets(&line, Int32(line.count), file) != nil {
            let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            guard text.hasPrefix("Udp: ") else { continue }
            let fields = text.split(whereSeparator: { $0 == " " || $0 == "\n" })
            if header.isEmpty {
                header = fields
            } else if let index = header.firstIndex(of: "RcvbufErrors"), index < fields.count {
                return Int(fields[index]) ?? -1
            }
        }
        return -1
    }
}

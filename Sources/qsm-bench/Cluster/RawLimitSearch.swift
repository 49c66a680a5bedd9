import QSMCore
import QSMHarness

/// Finds the raw kernel limit with the run's own processes: the highest paced rate at
/// which an unreliable blast from one sender reaches every receiver without a loss.
/// Doubling finds a lossy rate, bisection narrows the gap to 5%, and the answer is
/// confirmed with a trial four times as long (stepping down 10% at a time if it fails).
/// Receivers use the engine's socket buffer size, so the sockets are the same.
struct RawLimitSearch {
    let sender: WorkerProcess
    let receivers: [WorkerProcess]
    /// Bytes of each datagram.
    let size: Int
    /// Messages each datagram stands for: 1 for the plain baseline; with bundling, as
    /// many as the engine packs into a datagram of `size` bytes.
    let messagesPerDatagram: Int
    let group: QSMSocketAddress
    /// Length of one trial.
    let trialSeconds: Double
    /// The engine's default receive buffer (the same sockets as the engine's).
    let receiveBufferBytes = QSMNodeConfiguration(gms: QSMSocketAddress(.loopback, port: 1)).receiveBufferBytes
    let log: (String) -> Void
    private var nextTrial = 1
    /// The receivers' mode of the search under way (`.offload` also segments the sends).
    private var mode = RawReceiveMode.blocking

    init(sender: WorkerProcess, receivers: [WorkerProcess], size: Int, messagesPerDatagram: Int = 1, group: QSMSocketAddress,
         trialSeconds: Double, log: @escaping (String) -> Void) {
        self.sender = sender
        self.receivers = receivers
        self.size = size
        self.messagesPerDatagram = messagesPerDatagram
        self.group = group
        self.trialSeconds = trialSeconds
        self.log = log
    }

    /// The lossless rate in messages per second for receivers in `mode` (the search
    /// itself is in datagrams per second).
    mutating func run(mode: RawReceiveMode) throws -> Double {
        self.mode = mode
        for receiver in receivers {
            try receiver.send(WorkerLine("raw-open", [("mode", mode.rawValue), ("group", group),
                                                     ("interface", receiver.interface), ("size", size), ("buffer", receiveBufferBytes)]))
        }
        for receiver in receivers { _ = try receiver.expect("raw-ready", within: 10) }
        defer {
            for receiver in receivers { try? receiver.send(WorkerLine("raw-close")) }
            for receiver in receivers { _ = try? receiver.expect("raw-closed", within: 10) }
        }
        var lossless = 0.0
        var lossy: Double?
        var rate = 20_000.0
        while lossy == nil, rate <= 4_000_000 {
            let outcome = try trial(rate: rate, seconds: trialSeconds)
            if outcome.lossless {
                lossless = max(lossless, outcome.achieved)
                // The sender could not go faster: this is the limit from its side.
                if outcome.achieved < rate * 0.9 { lossy = rate; break }
                rate *= 2
            } else {
                lossy = rate
            }
        }
        while let high = lossy, high - lossless > 0.05 * high {
            let middle = (lossless + high) / 2
            let outcome = try trial(rate: middle, seconds: trialSeconds)
            if outcome.lossless {
                lossless = max(lossless, min(middle, outcome.achieved))
                if outcome.achieved < middle * 0.95 { break }
            } else {
                lossy = middle
            }
        }
        // A short trial can pass on the strength of the socket buffers alone (they absorb
        // thousands of datagrams): the answer must hold for a trial four times as long.
        // Its CPU (sender and receivers, user and system) per delivered message is what
        // the engine's is compared with.
        cpuPerDeliveredMessage = nil
        for _ in 0..<5 where lossless > 0 {
            let outcome = try trial(rate: lossless, seconds: 4 * trialSeconds, measuringCPU: true)
            if outcome.lossless {
                if let cpu = outcome.cpuSeconds {
                    cpuPerDeliveredMessage = cpu / Double(outcome.count * receivers.count * messagesPerDatagram)
                }
                // What the sender really reached, if it fell short of the pace.
                lossless = min(lossless, outcome.achieved)
                break
            }
            lossless *= 0.9
        }
        let messages = lossless * Double(messagesPerDatagram)
        log("raw limit, \(mode.rawValue) receivers, \(size)-byte datagrams"
            + (messagesPerDatagram > 1 ? " of \(messagesPerDatagram) messages: \(Int(lossless)) datagrams/s = " : ": ")
            + "\(Int(messages)) msg/s")
        return messages
    }

    /// Send-to-receive latency of raw datagrams paced at `rate` per second for `seconds`,
    /// all receivers' together (as the engine's is reported), with receivers blocking in
    /// recvmmsg: one wake-up per datagram at such rates, as the engine's receivers
    /// have. The floor the engine's latency stands on, on this machine, measured with
    /// the same processes.
    mutating func latency(rate: Double, seconds: Double) throws -> LatencyHistogram {
        mode = .blocking
        for receiver in receivers {
            try receiver.send(WorkerLine("raw-open", [("mode", RawReceiveMode.blocking.rawValue), ("group", group),
                                                     ("interface", receiver.interface), ("size", size),
                                                     ("buffer", receiveBufferBytes), ("latency", 1)]))
        }
        for receiver in receivers { _ = try receiver.expect("raw-ready", within: 10) }
        defer {
            for receiver in receivers { try? receiver.send(WorkerLine("raw-close")) }
            for receiver in receivers { _ = try? receiver.expect("raw-closed", within: 10) }
        }
        _ = try trial(rate: rate, seconds: seconds, stamped: true)
        var merged = LatencyHistogram()
        for receiver in receivers {
            try receiver.send(WorkerLine("raw-latency"))
            let line = try receiver.expect("raw-latency", within: 10)
            if let histogram = LatencyHistogram(encoded: line["latency"] == "-" ? "" : line["latency"] ?? "",
                                                maximumMicroseconds: line.int("latency_max_us") ?? 0) {
                merged.merge(histogram)
            }
        }
        log("raw latency at \(Int(rate)) datagrams/s: p50 \(merged.percentile(0.5) ?? 0) us, "
            + "p99 \(merged.percentile(0.99) ?? 0) us, max \(merged.maximumMicroseconds) us")
        return merged
    }

    /// The CPU seconds, per message delivered at each receiver, that the last run's
    /// confirming trial took in the sender and receiver processes together.
    private(set) var cpuPerDeliveredMessage: Double?

    /// The summed CPU seconds of the sender and receiver processes.
    private func processesCPU() throws -> Double {
        var total = 0.0
        for worker in [sender] + receivers {
            try worker.send(WorkerLine("raw-cpu"))
            total += try worker.expect("raw-cpu", within: 10).double("cpu_s") ?? 0
        }
        return total
    }

    /// One trial; `stamped`: the datagrams carry their send time (the latency trial's;
    /// the throughput trials read no clock per datagram, like the engine's senders at
    /// full rate, see `BenchPayload.timedEveryAtFullRate`).
    private mutating func trial(rate: Double, seconds: Double, measuringCPU: Bool = false,
                                stamped: Bool = false) throws -> (lossless: Bool, achieved: Double, count: Int, cpuSeconds: Double?) {
        let trial = nextTrial
        nextTrial += 1
        let count = max(1000, Int(rate * seconds))
        let cpuBefore = measuringCPU ? try processesCPU() : 0
        try sender.send(WorkerLine("raw-blast", [("trial", trial), ("count", count), ("rate", rate), ("size", size),
                                                 ("group", group), ("interface", sender.interface),
                                                 ("gso", mode == .offload ? 1 : 0), ("stamp", stamped ? 1 : 0)]))
        let blasted = try sender.expect("raw-blasted", within: 60)
        let achieved = Double(count) / max(1e-6, blasted.double("seconds") ?? 1)
        // Let the receivers drain their sockets: done when all have everything, or when
        // nobody's count moved for 100 ms.
        var counts = [Int](repeating: -1, count: receivers.count)
        var stableSince = MonotonicClock.now()
        while true {
            var latest: [Int] = []
            for receiver in receivers {
                try receiver.send(WorkerLine("raw-count", [("trial", trial)]))
                latest.append(try receiver.expect("raw-count", within: 10).int("count") ?? 0)
            }
            let moved = latest != counts
            counts = latest
            if latest.allSatisfy({ $0 >= count }) { break }
            if moved {
                stableSince = MonotonicClock.now()
            } else if MonotonicClock.now().nanoseconds(since: stableSince) > 100_000_000 {
                break
            }
            WorkerProcess.waitForOutput([], milliseconds: 10)
        }
        let cpuSeconds = measuringCPU ? try processesCPU() - cpuBefore : nil
        let received = counts.min() ?? 0
        let lossless = received >= count
        log("  raw trial \(Int(rate)) datagrams/s (sent at \(Int(achieved))): "
            + (lossless ? "lossless" : "lost \(count - received) of \(count) at the worst receiver"))
        return (lossless, achieved, count, cpuSeconds)
    }
}

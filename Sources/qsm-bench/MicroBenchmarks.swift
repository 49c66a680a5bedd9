import QSMCore
import QSMHarness

/// `qsm-bench micro`: the event core's building blocks against their baselines.
struct MicroBenchmarks {
    var seconds = 1.0
    var rounds = 3
    var size = 1000
    var itemsPerProducer = 2_000_000
    var parts: Set<Part> = Set(Part.allCases)

    enum Part: String, CaseIterable {
        case alarms
        case requests
        case multicast
        case seal
    }

    func run() throws {
        progress("qsm-bench micro: \(rounds) round(s) of \(seconds) s per measurement; medians reported")

        var alarms = Table("alarm queue", "workload", "pending", "ops/s", "vs binary heap")
        for workload in AlarmQueueBenchmark.Workload.allCases where parts.contains(.alarms) {
            for pending in [1_000, 100_000] {
                var rates: [String: [Double]] = [:]
                for round in 1...rounds {
                    for implementation in ["splay tree", "binary heap"] {
                        progress("  alarm queue: \(implementation), \(workload.rawValue), \(pending) pending, round \(round)/\(rounds)")
                        let result = AlarmQueueBenchmark.run(implementation, workload: workload, pending: pending,
                                                             seconds: seconds)
                        rates[implementation, default: []].append(result.operationsPerSecond)
                    }
                }
                let heap = median(rates["binary heap"]!)
                for implementation in ["splay tree", "binary heap"] {
                    let rate = median(rates[implementation]!)
                    alarms.add(implementation, workload.rawValue, formatRate(Double(pending)), formatRate(rate),
                               formatRatio(rate / heap))
                }
            }
        }

        var requests = Table("request queue", "producers", "items/s", "vs Mutex<[T]>")
        for producers in [1, 2] where parts.contains(.requests) {
            var rates: [String: [Double]] = [:]
            for round in 1...rounds {
                for implementation in ["lock-free queue", "Mutex<[T]>"] {
                    progress("  request queue: \(implementation), \(producers) producer(s), round \(round)/\(rounds)")
                    let result = try RequestQueueBenchmark.run(implementation, producers: producers,
                                                               itemsPerProducer: itemsPerProducer)
                    rates[implementation, default: []].append(result.itemsPerSecond)
                }
            }
            let baseline = median(rates["Mutex<[T]>"]!)
            for implementation in ["lock-free queue", "Mutex<[T]>"] {
                let rate = median(rates[implementation]!)
                requests.add(implementation, "\(producers)", formatRate(rate), formatRatio(rate / baseline))
            }
        }

        var multicast = Table("loopback multicast, \(size) B", "packets/s", "lost", "reordered", "vs bare",
                              "1 ms alarm late, mean/max µs")
        var multicastNote = ""
        if parts.contains(.multicast) { do {
            try NetworkNamespace.enterPrivate()
            var bare: [MulticastBenchmark.Result] = []
            var core: [MulticastBenchmark.Result] = []
            for round in 1...rounds {
                // Alternate which path goes first, so drift in the machine's speed during
                // a round does not favour either.
                for path in round % 2 == 1 ? ["bare", "core"] : ["core", "bare"] {
                    if path == "bare" {
                        progress("  multicast: bare sendmmsg/recvmmsg loop, round \(round)/\(rounds)")
                        bare.append(try MulticastBenchmark.bare(size: size, seconds: seconds))
                    } else {
                        progress("  multicast: through the event core, round \(round)/\(rounds)")
                        core.append(try MulticastBenchmark.throughCore(size: size, seconds: seconds))
                    }
                }
            }
            let bareRate = median(bare.map(\.packetsPerSecond))
            for results in [core, bare] {
                let rate = median(results.map(\.packetsPerSecond))
                var lateness = "-"
                let intervals = results.compactMap(\.alarmLateness)
                if !intervals.isEmpty {
                    let fired = intervals.map(\.alarmsFired).reduce(0, +)
                    let mean = intervals.map { Double($0.meanNanoseconds) * Double($0.alarmsFired) }.reduce(0, +)
                        / Double(max(fired, 1)) / 1000
                    let worst = Double(intervals.map(\.maxNanoseconds).max() ?? 0) / 1000
                    lateness = "\(formatRate(mean)) / \(formatRate(worst))"
                }
                multicast.add(results[0].path, formatRate(rate), "\(results.map(\.lost).reduce(0, +))",
                              "\(results.map(\.reordered).reduce(0, +))", formatRatio(rate / bareRate), lateness)
            }
        } catch let error as SystemError {
            multicastNote = "loopback multicast skipped: cannot create a private network namespace (\(error)); run as root"
        } }

        var seals = Table("sealing a datagram (AES-128-GMAC)", "backend", "bytes", "ns per datagram", "vs portable")
        for size in SealBenchmark.sizes where parts.contains(.seal) {
            var times: [String: [Double]] = [:]
            for round in 1...rounds {
                for backend in SealBenchmark.backends {
                    progress("  seal: \(backend.name), \(size) bytes, round \(round)/\(rounds)")
                    times[backend.name, default: []].append(SealBenchmark.nanosecondsPerSeal(backend, size: size, seconds: seconds))
                }
            }
            let portable = median(times["portable"]!)
            for backend in SealBenchmark.backends {
                let time = median(times[backend.name]!)
                seals.add(backend.name, "\(size)", format(time, 1), formatRatio(portable / time))
            }
        }

        for table in [alarms, requests, multicast, seals] where !table.rows.isEmpty {
            print("")
            print(table.render())
        }
        if !multicastNote.isEmpty {
            print("")
            print(multicastNote)
        }
    }
}

func progress(_ message: String) {
    benchLog(message)
}

#if canImport(Glibc)
import Glibc
#endif
import QSMCore
import QSMHarness

/// `qsm-node stats`: reads the counters of the qsm-node processes on this machine from
/// their local stats sockets, without disturbing them (each serves a snapshot at most a
/// second old), and prints them.
enum StatsCommand {
    static let usage = """
        usage: qsm-node stats [--node ID | --gms PORT | --socket PATH] [--format table|openmetrics]

        Prints the counters of the qsm-node processes (publish, subscribe, run, gms)
        running on this machine, read from their local stats sockets in
        \(MetricsServer.runDirectory) ($QSM_RUN_DIR overrides it). Reading never waits on
        a node's core thread.

        flags:
          --node ID              only the node with this id
          --gms PORT             only the GMS listening on this port
          --socket PATH          only the process serving this socket
          --format F             table (default): node-wide counters, then one row per
                                 group and per sender; openmetrics: the exposition as
                                 served at /metrics
          -h, --help             show this help

        exit status: 0 when at least one process answered, 1 when none did, 2 on bad flags.
        """

    static func main(_ arguments: [String]) -> Never {
        let paths: [String]
        let format: String
        do throws(ConfigurationError) {
            let flags = try CommandLineFlags(arguments, valued: ["--node", "--gms", "--socket", "--format"], switches: ["-h", "--help"])
            if flags.has("-h") || flags.has("--help") { print(usage); exit(0) }
            format = try flags.value("--format") ?? "table"
            guard format == "table" || format == "openmetrics" else {
                throw ConfigurationError("--format must be table or openmetrics, got '\(format)'")
            }
            let directory = MetricsServer.runDirectory
            if let path = try flags.value("--socket") {
                paths = [path]
            } else if let node = try flags.value("--node") {
                guard let id = UInt64(node), id > 0 else { throw ConfigurationError("--node must be a node id, got '\(node)'") }
                paths = ["\(directory)/node-\(id).sock"]
            } else if let port = try flags.value("--gms") {
                guard let number = UInt16(port) else { throw ConfigurationError("--gms must be a port, got '\(port)'") }
                paths = ["\(directory)/gms-\(number).sock"]
            } else {
                paths = MetricsServer.sockets(in: directory)
            }
        } catch {
            fail(error.message, command: "stats")
        }
        var answered = 0
        for path in paths {
            let name = String(path.split(separator: "/").last ?? "").replacingSuffix(".sock")
            let text: String
            do {
                text = try MetricsServer.readAll(unixSocket: path)
            } catch where error.errno == ECONNREFUSED {
                // Nobody listens: the process died without removing its socket.
                unlink(path)
                log(.warning, "qsm-node stats", "\(name) is not running (removed its stale socket)")
                continue
            } catch {
                log(.warning, "qsm-node stats", "\(name) did not answer: \(error)")
                continue
            }
            answered += 1
            if format == "openmetrics" {
                print(text, terminator: "")
            } else {
                print(table(name, parse(text)))
            }
        }
        if answered == 0 {
            log(.error, "qsm-node stats", paths.isEmpty ? "no qsm-node process has a stats socket in \(MetricsServer.runDirectory)"
                                                        : "no process answered")
            exit(1)
        }
        exit(0)
    }

    /// One sample: its name, labels and value.
    struct Sample {
        var name: String
        var labels: [String: String]
        var value: String
    }

    /// The samples of an exposition (comments skipped; label values unescaped).
    static func parse(_ text: String) -> [Sample] {
        var samples: [Sample] = []
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " ") else { continue }
            let series = line[..<space], value = String(line[line.index(after: space)...])
            guard let brace = series.firstIndex(of: "{") else {
                samples.append(Sample(name: String(series), labels: [:], value: value))
                continue
            }
            var labels: [String: String] = [:]
            var rest = series[series.index(after: brace)...].dropLast()
            while let equals = rest.firstIndex(of: "=") {
                let key = String(rest[..<equals])
                var index = rest.index(equals, offsetBy: 2)
                var value = ""
                while index < rest.endIndex, rest[index] != "\"" {
                    if rest[index] == "\\", rest.index(after: index) < rest.endIndex {
                        index = rest.index(after: index)
                        value.append(rest[index] == "n" ? "\n" : rest[index])
                    } else {
                        value.append(rest[index])
                    }
                    index = rest.index(after: index)
                }
                labels[key] = value
                rest = index < rest.endIndex ? rest[rest.index(after: index)...].drop { $0 == "," } : ""
            }
            samples.append(Sample(name: String(series[..<brace]), labels: labels, value: value))
        }
        return samples
    }

    static func table(_ name: String, _ samples: [Sample]) -> String {
        var lines = ["== \(name)"]
        let plain = samples.filter { $0.labels.isEmpty }
        for sample in plain { lines.append("  " + sample.name.padded(to: 44) + " " + sample.value) }
        let drops = samples.filter { $0.labels["reason"] != nil && $0.value != "0" }
        for sample in drops { lines.append("  " + "\(sample.name){\(sample.labels["reason"]!)}".padded(to: 44) + " " + sample.value) }
        func value(_ metric: String, _ labels: [String: String]) -> String {
            samples.first { $0.name == metric && $0.labels == labels }?.value ?? "-"
        }
        let groups = Set(samples.compactMap { $0.labels["sender"] == nil ? $0.labels["group"] : nil }).sorted()
        if !groups.isEmpty {
            lines.append("  " + "group".padded(to: 24) + "sent".leftPadded(to: 12) + "sent_bytes".leftPadded(to: 14)
                         + "delivered".leftPadded(to: 12) + "delivered_bytes".leftPadded(to: 17))
            for group in groups {
                let labels = ["group": group]
                lines.append("  " + group.padded(to: 24) + value("qsm_group_sent_messages_total", labels).leftPadded(to: 12)
                             + value("qsm_group_sent_bytes_total", labels).leftPadded(to: 14)
                             + value("qsm_group_delivered_messages_total", labels).leftPadded(to: 12)
                             + value("qsm_group_delivered_bytes_total", labels).leftPadded(to: 17))
            }
        }
        let senders = samples.filter { $0.name == "qsm_sender_delivered_messages_total" }
        if !senders.isEmpty {
            lines.append("  " + "group".padded(to: 24) + "sender".leftPadded(to: 22) + "delivered".leftPadded(to: 12)
                         + "last_sequence".leftPadded(to: 15) + "lag".leftPadded(to: 8))
            for sample in senders {
                let group = sample.labels["group"] ?? "", sender = sample.labels["sender"] ?? ""
                lines.append("  " + group.padded(to: 24) + sender.leftPadded(to: 22) + sample.value.leftPadded(to: 12)
                             + value("qsm_sender_last_sequence", ["group": group, "sender": sender]).leftPadded(to: 15)
                             + (samples.first { $0.name == "qsm_sender_lag_messages" && $0.labels["sender"] == sender }?.value ?? "0").leftPadded(to: 8))
            }
        }
        return lines.joined(separator: "\n")
    }
}

extension String {
    func padded(to width: Int) -> String { count >= width ? self + " " : self + String(repeating: " ", count: width - count) }
    func leftPadded(to width: Int) -> String { count >= width ? " " + self : String(repeating: " ", count: width - count) + self }
    func replacingSuffix(_ suffix: String) -> String { hasSuffix(suffix) ? String(dropLast(suffix.count)) : self }
}

#if canImport(Glibc)
import Glibc
#endif
import QSMCore
import QSMHarness
import Testing

/// `qsm-node publish` and `subscribe` carry any payload, and metadata, with `--format`.
@Suite(.enabled(if: NetworkNamespace.isAvailable, "needs CAP_SYS_ADMIN to create a private network namespace (run as root)"))
struct MessageFormatProcessTests {
    /// Binary payloads (a newline, a zero byte, 0xFF) published length-prefixed arrive
    /// intact, with group, sender and sequence, as JSON lines; input that is not in the
    /// format (a truncated frame, a line that is not a message object) exits 1 with the
    /// reason, never publishing garbage.
    @Test func binaryPayloadsPassIntactAndBadInputIsRefused() throws {
        let node = EngineProcessTests.qsmNode
        let failure = try NetworkNamespace.runIsolated { () throws -> String? in
            let (gms, address) = try EngineProcessTests.startGMS()
            defer { gms.signal(SIGTERM) }
            // Addresses as an operator may type them: a host name, an interface name, a subnet.
            let byName = "localhost:" + (address.split(separator: ":").last ?? "")
            let subscriber = try ChildProcess(executable: node, arguments: [
                "subscribe", "--insecure", "--gms", byName, "--interface", "lo", "--group", "binary", "--id", "61", "--count", "3",
                "--format", "json"])
            let frames = #"\000\000\000\003a\nb\000\000\000\002\000\377\000\000\000\003xyz"#
            let publisher = try GMSAuthenticationProcessTests.shell(
                "printf '\(frames)' | \(node) publish --insecure --gms \(address) --interface 127.0.0.0/8 --group binary --id 62 --wait-members 1 --format length-prefixed")
            var lines: [String] = []
            EngineProcessTests.collect(subscriber, into: &lines, until: MonotonicClock.now().advanced(by: .seconds(60)))
            guard publisher.waitForExit(timeoutMilliseconds: 30_000) == 0 else { return "the publisher failed: \(publisher.availableLines())" }
            let expected = ["YQpi", "AP8=", "eHl6"].enumerated().map { index, payload in
                #"{"group":"binary","sender":62,"sequence":"# + "\(index + 1)" + #","payload_base64":""# + payload + #""}"#
            }
            guard lines == expected else { return "the subscriber wrote \(lines)" }
            for (input, format, reason) in [(#"\000\000\001"#, "length-prefixed", "inside the length"),
                                            (#"\000\000\000\011abc"#, "length-prefixed", "inside message 1"),
                                            (#"{\"payload\": 5}\n"#, "json", "not a JSON object with"),
                                            (#"{\"payload\": \"a\",}\n"#, "json", "not a JSON object with"),
                                            (#"[\"payload\"]\n"#, "json", "not a JSON object with"),
                                            (#"{\"payload_base64\": \"Zh==\"}\n"#, "json", "not base64"),
                                            (#"{\"payload_base64\": \"Zg\"}\n"#, "json", "not base64")] {
                let bad = try GMSAuthenticationProcessTests.shell(
                    "printf '\(input)' | \(node) publish --insecure --gms \(address) --group binary --id 63 --format \(format)")
                var output: [String] = []
                EngineProcessTests.collect(bad, into: &output, until: MonotonicClock.now().advanced(by: .seconds(30)))
                guard bad.waitForExit(timeoutMilliseconds: 10_000) == 1,
                      output.contains(where: { $0.contains("bad input") && $0.contains(reason) }) else {
                    return "\(format) input '\(input)': exit \(String(describing: bad.exitStatus)), \(output)"
                }
            }
            return nil
        }
        #expect(failure == nil, "\(failure ?? "")")
    }

    /// `publish --format json` sends a line's `payload` as its UTF-8 bytes (escapes
    /// decoded), else its `payload_base64` decoded; other members are ignored and `null`
    /// counts as absent. The subscriber writes each back in base64. A line holding a
    /// near-maximal message in base64 (1,000,000 bytes, a line of 1.33 MB: longer than
    /// the message) is read whole.
    @Test func jsonInputCarriesTextAndBase64Payloads() throws {
        let input = #"{"payload": "h\u00e9llo \"quoted\""}"# + "\n"
            + #"{"note": [1, {"x": null}], "payload_base64": "AP8K"}"# + "\n"
            + #"{"payload": null, "payload_base64": ""}"# + "\n"
            + #"{"payload_base64": ""# + String(repeating: "/+/+", count: 333_333) + "/w==" + #""}"# + "\n"
        let expected = ["aMOpbGxvICJxdW90ZWQi", "AP8K", "", String(repeating: "/+/+", count: 333_333) + "/w=="].enumerated().map {
            #"{"group":"json","sender":82,"sequence":"# + "\($0.offset + 1)" + #","payload_base64":""# + $0.element + #""}"#
        }
        let failure = try NetworkNamespace.runIsolated { () throws -> String? in
            try Self.published(Array(input.utf8), group: "json", ids: (81, 82), count: 4, flags: ["--format", "json"], expect: expected)
        }
        #expect(failure == nil, "\(failure ?? "")")
    }

    /// `publish` reads standard input through one reused buffer: a line split across
    /// reads, a line longer than the buffer's first fill (200,000 bytes), CRLF endings,
    /// an empty line and a last line without a newline each arrive as one message, intact
    /// and in order.
    @Test func linesOfEveryShapeArriveWhole() throws {
        let input = Array("one\r\ntwo\n\n".utf8) + [UInt8](repeating: UInt8(ascii: "x"), count: 200_000) + Array("\nlast".utf8)
        let expected = ["b25l", "dHdv", "", String(repeating: "eHh4", count: 66_666) + "eHg=", "bGFzdA=="].enumerated().map {
            #"{"group":"shapes","sender":72,"sequence":"# + "\($0.offset + 1)" + #","payload_base64":""# + $0.element + #""}"#
        }
        let failure = try NetworkNamespace.runIsolated { () throws -> String? in
            try Self.published(input, group: "shapes", ids: (71, 72), count: 5, flags: [], expect: expected)
        }
        #expect(failure == nil, "\(failure ?? "")")
    }

    /// Publishes `input`, from a file, to `group` with `qsm-node publish` and `flags`, to a
    /// subscriber that writes `count` messages as JSON lines: nil if it wrote `expected`,
    /// else what went wrong. Runs inside the test's namespace.
    private static func published(_ input: [UInt8], group: String, ids: (subscriber: Int, publisher: Int), count: Int,
                                  flags: [String], expect expected: [String]) throws -> String? {
        let node = EngineProcessTests.qsmNode
        let (gms, address) = try EngineProcessTests.startGMS()
        defer { gms.signal(SIGTERM) }
        let subscriber = try ChildProcess(executable: node, arguments: [
            "subscribe", "--insecure", "--gms", address, "--group", group, "--id", "\(ids.subscriber)", "--count", "\(count)",
            "--format", "json"])
        let path = "/tmp/qsm-\(group)-\(getpid()).txt"
        let file = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard file >= 0, input.withUnsafeBytes({ write(file, $0.baseAddress, $0.count) }) == input.count else { return "cannot write \(path)" }
        close(file)
        defer { unlink(path) }
        let publisher = try GMSAuthenticationProcessTests.shell(
            "\(node) publish --insecure --gms \(address) --group \(group) --id \(ids.publisher) --wait-members 1 \(flags.joined(separator: " ")) < \(path)")
        var lines: [String] = []
        EngineProcessTests.collect(subscriber, into: &lines, until: MonotonicClock.now().advanced(by: .seconds(60)))
        guard publisher.waitForExit(timeoutMilliseconds: 30_000) == 0 else { return "the publisher failed: \(publisher.availableLines())" }
        guard lines == expected else { return "the subscriber wrote \(lines.map { String($0.prefix(120)) })" }
        return nil
    }
}

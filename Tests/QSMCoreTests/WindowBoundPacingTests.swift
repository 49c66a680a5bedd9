import Testing
@testable import QSMProtocol
@testable import QSMSimulation

/// A sender held back by a small window publishes one window per acknowledgement: its
/// rate is the window over the acknowledgement latency. Two pacing rules keep that
/// latency at the rings' busy pace (`busyTokenInterval`, 5 ms) in a small region:
/// a waiting sender's status hastens the rings (`hastenRounds`), and the token budget
/// spaces rounds only beyond `tokenBytesPerSecondAllowance`. Before them, four receivers
/// acknowledged a one-message window every 730 ms (1.4 messages a second, measured with
/// `qsm-bench run --window 1`), and windows of up to 64 messages every 20 ms.
@Suite struct WindowBoundPacingTests {
    /// Offered 150 windows a second, which the busy pace can carry and the settling pace
    /// cannot: a sender that falls behind still publishes its backlog after `seconds`,
    /// and the run does not end quiescent.
    static func windowBound(messages: Int, seconds: Double = 1) -> SimulationScenario {
        var s = SimulationScenario()
        s.nodes = 5
        s.seconds = seconds
        s.rate = Double(150 * messages)
        s.drainSeconds = 5
        s.sendersOutsideGroups = true
        s.protocolConfiguration.windowMessages = messages
        return s
    }

    /// Windows of 1 to 64 messages are acknowledged within the busy pace and a round:
    /// a window per 5-6 ms. (Mutations: without the hastening, 20 ms, the settling pace;
    /// without the allowance, hundreds of milliseconds.)
    @Test(arguments: [(1, 1), (4, 2), (64, 3)] as [(Int, UInt64)])
    func aSmallWindowIsAcknowledgedAtTheBusyPace(messages: Int, seed: UInt64) throws {
        let scenario = Self.windowBound(messages: messages)
        let result = try Simulator(scenario: scenario, seed: seed).run()
        #expect(result.violations.isEmpty, "seed \(seed): \(result.violations.prefix(3))")
        #expect(result.published > 0 && result.delivered >= result.published, "seed \(seed)")
        #expect(result.acknowledgementLatencyMillisecondsMean < 8,
                "window \(messages), seed \(seed): \(result.acknowledgementLatencyMillisecondsMean) ms")
    }

    /// The loop the allowance breaks: with the budget alone, a window-bound sender's data
    /// arrives only as fast as rounds acknowledge it, the budget spaces the rounds by that
    /// data, and each round comes later than the last, up to the idle interval.
    @Test func theBudgetAloneSlowsAWindowBoundSendersAcknowledgements() throws {
        var scenario = Self.windowBound(messages: 1, seconds: 3)
        scenario.protocolConfiguration.tokenBytesPerSecondAllowance = 0
        // (It falls behind, and its backlog outlasts the drain: not checked for liveness.)
        scenario.drainSeconds = 0.5
        let alone = try Simulator(scenario: scenario, seed: 4).run()
        scenario.drainSeconds = 5
        scenario.protocolConfiguration.tokenBytesPerSecondAllowance = ProtocolConfiguration().tokenBytesPerSecondAllowance
        let allowed = try Simulator(scenario: scenario, seed: 4).run()
        #expect(allowed.violations.isEmpty, "\(allowed.violations.prefix(3))")
        #expect(alone.acknowledgementLatencyMillisecondsMean > 100, "\(alone.acknowledgementLatencyMillisecondsMean) ms")
        #expect(allowed.acknowledgementLatencyMillisecondsMean < 8, "\(allowed.acknowledgementLatencyMillisecondsMean) ms")
    }

    /// A region too large to round at the busy pace within the allowance is still
    /// spaced by it. Measured over a whole run, rings cost about five times what the
    /// budget charges them, with or without the allowance (it counts tokens without their
    /// envelopes, and not the busy rounds while views settle at the start): 200 nodes at
    /// 200 messages a second sent 1.2 MB of tokens a second, 283 kB with the budget alone
    /// (0.25 of the data), and 3.9 MB with no budget at all.
    @Test func aLargeRegionsRingsStayNearTheAllowance() throws {
        var scenario = SimulationScenario()
        scenario.nodes = 200
        scenario.seconds = 2
        scenario.rate = 200
        scenario.drainSeconds = 20
        let result = try Simulator(scenario: scenario, seed: 1).run()
        #expect(result.violations.isEmpty, "\(result.violations.prefix(3))")
        let dataBytesPerSecond = scenario.rate * Double(scenario.messageBytes)
        let tokenBytesPerSecond = result.tokenBytesPerDataByteWhilePublishing * dataBytesPerSecond
        #expect(tokenBytesPerSecond < 8 * ProtocolConfiguration().tokenBytesPerSecondAllowance,
                "\(tokenBytesPerSecond) token bytes a second")
    }
}

import Testing
@testable import QSMCore
@testable import QSMProtocol

/// Records what an event core tells its publish handler, in order. Touched only on the
/// test's thread, which runs the core's turns itself (hence unchecked).
private final class RecordingPublishHandler: PublishHandler, @unchecked Sendable {
    var calls: [String] = []

    func publishRequested(_ payload: consuming [UInt8], to group: GroupName, slot: Int32) {
        calls.append("publish \(payload.count) to \(group.text)")
    }

    func publishesEnded() { calls.append("ended") }
}

/// The engine settles (polls its machine's events, deliveries and deadline, arms the send
/// intent) once per run of publications, not once per message: the event core must say
/// when a run ends, before any other kind of request runs and at the end of its turn.
@Suite struct PublishRunTests {
    @Test func aRunOfPublicationsIsEndedOnceAndBeforeAnyOtherRequest() throws {
        let core = try EventCore()
        let handler = RecordingPublishHandler()
        core.publishHandler = handler
        let group = try #require(GroupName("g"))
        for size in 1...3 {
            #expect(core.handle.trySubmit(.publish(payload: [UInt8](repeating: 7, count: size), group: group, slot: -1)))
        }
        #expect(core.handle.trySubmit(.perform { _ in handler.calls.append("perform") }))
        #expect(core.handle.trySubmit(.publish(payload: [1, 2, 3, 4], group: group, slot: 0)))
        try core.runTurn(maximumWaitNanoseconds: 0)
        #expect(handler.calls == ["publish 1 to g", "publish 2 to g", "publish 3 to g", "ended",
                                  "perform", "publish 4 to g", "ended"])
        #expect(core.statistics.requestsProcessed == 5)

        // A turn with no publications says nothing; one with only other requests neither.
        try core.runTurn(maximumWaitNanoseconds: 0)
        #expect(core.handle.trySubmit(.perform { _ in handler.calls.append("perform") }))
        try core.runTurn(maximumWaitNanoseconds: 0)
        #expect(handler.calls.suffix(2) == ["ended", "perform"])
        #expect(handler.calls.count == 8)
    }
}

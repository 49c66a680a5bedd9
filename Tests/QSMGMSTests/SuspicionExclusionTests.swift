import QSMCore
import Testing
@testable import QSMGMS

/// The GMS's side of suspicion on the data path: a ring leader's report excludes a live
/// member of a region it shares, which may not register again until its quarantine is
/// over; reports it cannot act on are counted and ignored.
@Suite struct SuspicionExclusionTests {
    static func excluded(_ end: MembershipHarness.End) -> Bool {
        end.events.contains { if case .excluded = $0 { return true }; return false }
    }

    @Test func aSuspectSharingARegionIsExcludedAndQuarantined() throws {
        var configuration = MembershipConfiguration()
        configuration.suspectQuarantine = .seconds(10)
        configuration.suspectConfirmation = .zero
        let harness = try MembershipHarness(configuration)
        harness.addNode(1, groups: ["a"])
        harness.addNode(2, groups: ["a"])
        harness.addNode(3, groups: ["b"])
        harness.run(seconds: 1)
        // Not sharing a region, unknown, itself: ignored.
        harness.end(1).client.reportSuspect(NodeID(3))
        harness.end(1).client.reportSuspect(NodeID(99))
        harness.end(1).client.reportSuspect(NodeID(1))
        harness.run(seconds: 1)
        // Frozen as a whole (silent to the GMS too): the heartbeat timeout decides.
        harness.end(2).frozen = true
        harness.run(seconds: 3)
        harness.end(1).client.reportSuspect(NodeID(2))
        harness.run(seconds: 0.1)
        harness.thaw(2)
        harness.run(seconds: 1)
        #expect(harness.service.statistics.suspicionsReceived == 4)
        #expect(harness.service.statistics.suspicionsIgnored == 4)
        #expect(harness.service.statistics.suspicionExclusions == 0)
        #expect(!Self.excluded(harness.end(3)))
        // A member of its region: excluded at once, told why.
        harness.end(1).client.reportSuspect(NodeID(2))
        harness.run(seconds: 1)
        #expect(harness.service.statistics.suspicionExclusions == 1)
        #expect(Self.excluded(harness.end(2)))
        #expect(harness.service.groupViews.first { $0.name.text == "a" }!.members == [NodeID(1)])
        // It tries again and is refused while quarantined (its reconnection backs off).
        harness.run(seconds: 5)
        #expect(harness.service.statistics.quarantineRefusals >= 1)
        #expect(harness.service.groupViews.first { $0.name.text == "a" }!.members == [NodeID(1)])
        let refusal = harness.end(2).events.contains {
            if case .rejected(_, let reason) = $0 { return reason.contains("may register again") }
            return false
        }
        #expect(refusal)
        // After the quarantine it registers and rejoins on its own.
        harness.run(seconds: 60)
        #expect(harness.service.groupViews.first { $0.name.text == "a" }!.members == [NodeID(1), NodeID(2)])
        #expect(harness.divergence() == nil)
    }

    /// A suspect is excluded only once reports of it have kept coming for
    /// `suspectConfirmation`; reports that stop for long start the count again.
    @Test func aSuspicionMustLastToExclude() throws {
        let harness = try MembershipHarness()  // confirmation 5 s
        harness.addNode(1, groups: ["a"])
        harness.addNode(2, groups: ["a"])
        harness.run(seconds: 1)
        func report(after seconds: Double) {
            harness.run(seconds: seconds)
            harness.end(1).client.reportSuspect(NodeID(2))
            harness.run(seconds: 0.1)
        }
        report(after: 0)
        report(after: 3)
        #expect(harness.service.statistics.suspicionsAwaitingConfirmation == 2)
        #expect(!Self.excluded(harness.end(2)))
        // A lapse of more than 10 s: the next report starts afresh.
        report(after: 12)
        report(after: 3)
        #expect(harness.service.statistics.suspicionExclusions == 0)
        report(after: 2)
        #expect(harness.service.statistics.suspicionExclusions == 1)
        #expect(Self.excluded(harness.end(2)))
    }

    @Test func aSuspectMessageBeforeRegisteringIsRefused() throws {
        let service = try MembershipService(configuration: MembershipConfiguration())
        let connection = ConnectionID(1)
        service.connectionOpened(connection, now: Instant(nanoseconds: 1))
        ClientMessage.suspect(node: NodeID(2)).encoded().withUnsafeBytes {
            service.frameReceived($0, on: connection, now: Instant(nanoseconds: 2))
        }
        #expect(service.statistics.rejectedRequests == 1)
        #expect(service.statistics.suspicionsReceived == 0)
    }
}

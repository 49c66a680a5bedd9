@testable import QSMProtocol
import Testing

/// `ReplayWindow` against a reference model (every counter ever seen, in a set) on random
/// sequences: in order, reordered, duplicated, jumps past the window, and new epochs.
struct ReplayWindowTests {
    struct Model {
        var epoch: UInt64
        var highest: UInt64 = 0
        var seen: Set<UInt64> = []

        mutating func admit(epoch: UInt64, counter: UInt64) -> ReplayWindow.Verdict {
            if epoch < self.epoch { return .deadIncarnation }
            if epoch > self.epoch { self = Model(epoch: epoch) }
            if counter > highest {
                highest = counter
                seen.insert(counter)
                return .fresh
            }
            if highest - counter >= ReplayWindow.width { return .tooOld }
            return seen.insert(counter).inserted ? .fresh : .replayed
        }
    }

    @Test(arguments: 1...40)
    func matchesTheReferenceModel(seed: UInt64) {
        var random = SplitMix64(seed: seed)
        var window = ReplayWindow(epoch: 10)
        var model = Model(epoch: 10)
        var epoch: UInt64 = 10
        var next: UInt64 = 1
        var sent: [UInt64] = []
        for step in 0..<20_000 {
            let choice = random.next() % 100
            let counter: UInt64
            var useEpoch = epoch
            switch choice {
            case 0..<60:
                counter = next; next += 1
            case 60..<75:
                counter = next + random.next() % 64; next = counter + 1  // a few lost
            case 75..<90:
                counter = sent.isEmpty ? next : sent[Int(random.next() % UInt64(sent.count))]  // replay or late
            case 90..<95:
                counter = next > 5_000 ? next - 4_000 - random.next() % 200 : next  // near the window's edge
            case 95..<97:
                counter = next + ReplayWindow.width + random.next() % 3; next = counter + 1  // a jump past the window
            case 97..<99:
                useEpoch = epoch - 1 - random.next() % 3  // an older incarnation
                counter = random.next() % next + 1
            default:
                epoch += 1 + random.next() % 2; useEpoch = epoch; next = 1; sent = []  // a restart
                counter = next; next += 1
            }
            if useEpoch == epoch { sent.append(counter); if sent.count > 6_000 { sent.removeFirst(1_000) } }
            let expected = model.admit(epoch: useEpoch, counter: counter)
            let got = window.admit(epoch: useEpoch, counter: counter)
            if got != expected {
                Issue.record("seed \(seed), step \(step): epoch \(useEpoch) counter \(counter): window says \(got), model \(expected)")
                return
            }
        }
    }
}

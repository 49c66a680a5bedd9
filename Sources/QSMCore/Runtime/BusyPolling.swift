/// Whether a thread that has run out of work looks again (yielding the processor between
/// looks) or goes to sleep: the event core's and the dispatcher's rule.
///
/// A sleep costs a wake-up when the next work comes, and a delivery passes three
/// threads (the sender's core, the receiver's core, its dispatcher): asleep, each adds
/// its wake-up to the message's latency. So a thread looks again `attempts` times after
/// its last work before it sleeps (under heavy traffic that saves a wake-up per few
/// packets; under light traffic the looks run out long before the next packet).
///
/// A thread that `extendsWhileFrequent` (the event core) goes further while work has been
/// coming at short intervals (gaps between bursts of work averaging under half of
/// `window`): it keeps looking for up to `window` after its last work, however many looks
/// that takes, unless its yields show the processor is wanted. At 10,000 messages a
/// second the cores then wait for the next message awake (on the 2-core reference
/// machine, 4 receivers: p50 49 us became 31-39 us); at 1,000 a second they look a few
/// times and sleep as before, and an idle node sleeps. The dispatcher keeps to
/// `attempts`: looking on there took the processor from the cores at full rate (1000-byte
/// messages 10% slower) and took little off the latency.
struct BusyPolling {
    /// Empty looks after work before sleeping, whatever the pace of the work.
    let attempts: Int
    /// Whether to look on for up to `window` while work is frequent (see the type).
    let extendsWhileFrequent: Bool
    /// The longest a thread goes on looking after its last work (0: never looks).
    let windowNanoseconds: Int64
    /// When the thread last had work.
    private var lastWork: Instant
    /// Looks in a row that found nothing.
    private var emptyLooks = 0
    /// When the thread last looked (or worked).
    private var lastLook: Instant
    /// A moving average of the gaps from one turn that found work to the next, over the
    /// gaps that had an empty look in them (work found turn after turn says nothing of
    /// the pace); each gap capped at twice `window`, so one long silence is forgotten
    /// after a few bursts.
    private var gapNanoseconds: Int64

    init(attempts: Int, windowNanoseconds: Int64, extendsWhileFrequent: Bool, now: Instant) {
        self.attempts = attempts
        self.extendsWhileFrequent = extendsWhileFrequent
        self.windowNanoseconds = windowNanoseconds
        lastWork = now
        lastLook = now
        gapNanoseconds = 2 * windowNanoseconds
    }

    /// The thread found work at `now`.
    mutating func worked(at now: Instant) {
        if emptyLooks > 0 {
            let gap = min(max(0, now.nanoseconds(since: lastWork)), 2 * windowNanoseconds)
            gapNanoseconds = (3 * gapNanoseconds + gap) / 4
        }
        lastWork = now
        lastLook = now
        emptyLooks = 0
    }

    /// Whether to look again at `now` rather than sleep; counts the look if so.
    mutating func looksAgain(now: Instant) -> Bool {
        let sinceLook = now.nanoseconds(since: lastLook)
        lastLook = now
        guard now.nanoseconds(since: lastWork) < windowNanoseconds else { return false }
        if emptyLooks >= attempts {
            // Past the few looks, only while work is frequent and the processor is not
            // wanted: a yield that kept this thread off it for long gave it to a thread
            // with work, and looking on would take it from that thread again.
            guard extendsWhileFrequent, isWorkFrequent, sinceLook < Self.contendedNanoseconds else { return false }
        }
        emptyLooks += 1
        return true
    }

    /// A look that came this long after the one before means the yield between them
    /// ran other work (a free processor hands it back in a microsecond or two).
    static let contendedNanoseconds: Int64 = 50_000

    /// Whether work has lately been coming at short intervals (see the type).
    var isWorkFrequent: Bool { gapNanoseconds < windowNanoseconds / 2 }
}

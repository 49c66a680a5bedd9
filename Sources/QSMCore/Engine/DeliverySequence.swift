import Synchronization

/// The deliveries of a node, in order; each one taken makes room for the next in this
/// sequence's own buffer. Single-pass: when the iterator goes away, the sequence ends.
public struct DeliverySequence: AsyncSequence, Sendable {
    public typealias Element = QSMDelivery
    let stream: AsyncStream<QSMDelivery>
    let consumer: DeliveryConsumer

    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: AsyncStream<QSMDelivery>.AsyncIterator
        let lease: IterationLease
        public mutating func next() async -> QSMDelivery? {
            let value = await base.next()
            if value != nil { lease.consumer.outstanding.subtract(1, ordering: .acquiringAndReleasing) }
            return value
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(base: stream.makeAsyncIterator(), lease: IterationLease(consumer))
    }
}

/// Ends a `deliveries()` sequence when its iterator goes away (a `for await` loop left
/// by `break`, a throw or a return): its consumer stops holding the dispatcher back even
/// if the sequence value itself is still referenced.
final class IterationLease: Sendable {
    let consumer: DeliveryConsumer
    init(_ consumer: DeliveryConsumer) { self.consumer = consumer }
    deinit { consumer.continuation.finish() }
}

/// One `deliveries()` sequence as the dispatcher sees it: where to yield, how much it
/// holds that was not yet taken, and whether it has ended.
final class DeliveryConsumer: Sendable {
    let continuation: AsyncStream<QSMDelivery>.Continuation
    let outstanding = Atomic<Int>(0)
    let finished = Atomic<Bool>(false)
    /// Only this group's deliveries, or all (nil).
    let group: GroupName?
    init(_ continuation: AsyncStream<QSMDelivery>.Continuation, group: GroupName?) {
        self.continuation = continuation
        self.group = group
    }
}


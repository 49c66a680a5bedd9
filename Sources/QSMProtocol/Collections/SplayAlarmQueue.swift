/// One node of `SplayAlarmQueue`, addressed by its slot index (-1 is "none").
struct SplayNode {
    var deadline: Int64
    var sequence: UInt64
    var left: Int32
    var right: Int32
    var generation: UInt32
    var inTree: Bool
}

/// The core's alarm queue: a top-down splay tree (Sleator and Tarjan, 1985), as in QSM
/// (section 4.2.2), keyed by (deadline, sequence number).
///
/// Every operation is O(log n) amortized and iterative: no recursion, so no deep stacks
/// however skewed the tree. Recently touched keys sit near the root, which suits timer
/// workloads where most alarms are rescheduled or fire soon after being set.
///
/// Nodes live in one array and are recycled through a free list, so steady-state
/// scheduling allocates nothing. Slot 0 is the splay's scratch header node.
package final class SplayAlarmQueue<Payload>: AlarmQueue {
    /// Node fields are kept outside the generic class so all tree surgery is concrete code
    /// (no generic metadata or value witnesses on the hot path, even across modules).
    typealias Node = SplayNode

    static var none: Int32 { -1 }
    private static var header: Int32 { 0 }

    // Stored properties are `@exclusivity(unchecked)`: this state is confined to one thread
    // and never accessed overlappingly; the runtime's dynamic checks cost about 5% of a
    // receiver's CPU (perf, `qsm-bench run`).
    @exclusivity(unchecked) private var nodes: [Node]
    @exclusivity(unchecked) private var payloads: [Payload?]
    @exclusivity(unchecked) private var root: Int32 = SplayAlarmQueue.none
    @exclusivity(unchecked) private var freeHead: Int32 = SplayAlarmQueue.none
    @exclusivity(unchecked) private var nextSequence: UInt64 = 1
    @exclusivity(unchecked) package private(set) var count = 0

    /// - Parameter initialCapacity: alarms that fit before the node array must grow.
    package init(initialCapacity: Int = 64) {
        nodes = []
        nodes.reserveCapacity(initialCapacity + 1)
        payloads = []
        payloads.reserveCapacity(initialCapacity + 1)
        nodes.append(Node(deadline: 0, sequence: 0, left: -1, right: -1, generation: 0, inTree: false))
        payloads.append(nil)
    }

    // MARK: Public operations

    package func schedule(at deadline: Instant, _ payload: Payload) -> AlarmHandle {
        let slot = allocateSlot()
        payloads[Int(slot)] = payload
        insert(slot, deadline: deadline.nanoseconds)
        return AlarmHandle(slot: slot, generation: nodes[Int(slot)].generation)
    }

    @discardableResult
    package func cancel(_ handle: AlarmHandle) -> Payload? {
        guard isPending(handle) else { return nil }
        detach(handle.slot)
        return freeSlot(handle.slot)
    }

    @discardableResult
    package func reschedule(_ handle: AlarmHandle, to deadline: Instant) -> Bool {
        guard isPending(handle) else { return false }
        detach(handle.slot)
        insert(handle.slot, deadline: deadline.nanoseconds)
        return true
    }

    package func nextDeadline() -> Instant? {
        guard root != Self.none else { return nil }
        root = splay(root, deadline: .min, sequence: 0)
        return Instant(nanoseconds: nodes[Int(root)].deadline)
    }

    package func popFirst(notAfter limit: Instant) -> (deadline: Instant, payload: Payload)? {
        guard root != Self.none else { return nil }
        root = splay(root, deadline: .min, sequence: 0)
        let first = root
        let deadline = nodes[Int(first)].deadline
        guard deadline <= limit.nanoseconds else { return nil }
        // After splaying the minimum to the root it has no left child.
        root = nodes[Int(first)].right
        nodes[Int(first)].inTree = false
        count -= 1
        return (Instant(nanoseconds: deadline), freeSlot(first)!)
    }

    /// Whether `handle` names an alarm that has neither fired nor been cancelled.
    package func isPending(_ handle: AlarmHandle) -> Bool {
        handle.slot > 0 && Int(handle.slot) < nodes.count
            && nodes[Int(handle.slot)].generation == handle.generation
            && nodes[Int(handle.slot)].inTree
    }

    // MARK: Slots

    private func allocateSlot() -> Int32 {
        if freeHead != Self.none {
            let slot = freeHead
            freeHead = nodes[Int(slot)].right
            return slot
        }
        nodes.append(Node(deadline: 0, sequence: 0, left: -1, right: -1, generation: 0, inTree: false))
        payloads.append(nil)
        return Int32(nodes.count - 1)
    }

    private func freeSlot(_ slot: Int32) -> Payload? {
        let payload = payloads[Int(slot)].take()
        nodes[Int(slot)].generation &+= 1
        nodes[Int(slot)].inTree = false
        nodes[Int(slot)].left = Self.none
        nodes[Int(slot)].right = freeHead
        freeHead = slot
        return payload
    }

    // MARK: Tree surgery

    private func insert(_ slot: Int32, deadline: Int64) {
        let sequence = nextSequence
        nextSequence &+= 1
        nodes[Int(slot)].deadline = deadline
        nodes[Int(slot)].sequence = sequence
        nodes[Int(slot)].inTree = true
        count += 1
        guard root != Self.none else {
            nodes[Int(slot)].left = Self.none
            nodes[Int(slot)].right = Self.none
            root = slot
            return
        }
        let top = splay(root, deadline: deadline, sequence: sequence)
        // Keys are unique (the sequence number rises), so the new key is strictly on one side.
        if less(deadline, sequence, than: top) {
            nodes[Int(slot)].left = nodes[Int(top)].left
            nodes[Int(slot)].right = top
            nodes[Int(top)].left = Self.none
        } else {
            nodes[Int(slot)].right = nodes[Int(top)].right
            nodes[Int(slot)].left = top
            nodes[Int(top)].right = Self.none
        }
        root = slot
    }

    /// Unlinks a node that is in the tree, leaving the slot allocated.
    private func detach(_ slot: Int32) {
        let deadline = nodes[Int(slot)].deadline
        let sequence = nodes[Int(slot)].sequence
        root = splay(root, deadline: deadline, sequence: sequence)
        assert(root == slot, "splay did not bring the node to the root")
        let left = nodes[Int(slot)].left
        let right = nodes[Int(slot)].right
        if left == Self.none {
            root = right
        } else {
            // Every key in the left subtree is smaller, so splaying for this key brings the
            // subtree's maximum up; it has no right child to lose.
            let top = splay(left, deadline: deadline, sequence: sequence)
            nodes[Int(top)].right = right
            root = top
        }
        nodes[Int(slot)].inTree = false
        nodes[Int(slot)].left = Self.none
        nodes[Int(slot)].right = Self.none
        count -= 1
    }

    @inline(__always)
    private func less(_ deadline: Int64, _ sequence: UInt64, than node: Int32) -> Bool {
        SplayNode.less(deadline, sequence, than: nodes[Int(node)])
    }

    /// Top-down splay of the subtree rooted at `start` for the key (deadline, sequence):
    /// returns the new subtree root, which is the node with that key if present, else
    /// the last node on the search path (its neighbour in key order).
    private func splay(_ start: Int32, deadline: Int64, sequence: UInt64) -> Int32 {
        nodes.withUnsafeMutableBufferPointer { nodes in
            SplayNode.splay(&nodes, start, deadline: deadline, sequence: sequence)
        }
    }

    // MARK: Invariants (for tests)

    /// Checks the search-tree order, the node count, and that every reachable node is
    /// marked pending; returns a description of the first violation, or nil.
    package func invariantViolation() -> String? {
        var stack: [Int32] = []
        var current = root
        var previous: (Int64, UInt64)? = nil
        var visited = 0
        while current != Self.none || !stack.isEmpty {
            while current != Self.none {
                if stack.count > nodes.count { return "cycle: path longer than the node count" }
                stack.append(current)
                current = nodes[Int(current)].left
            }
            let node = stack.removeLast()
            visited += 1
            if visited > count { return "more reachable nodes than count \(count)" }
            let key = (nodes[Int(node)].deadline, nodes[Int(node)].sequence)
            if !nodes[Int(node)].inTree { return "reachable node \(node) not marked in tree" }
            if let previous, !(previous.0 < key.0 || (previous.0 == key.0 && previous.1 < key.1)) {
                return "keys out of order at node \(node): \(previous) then \(key)"
            }
            previous = key
            current = nodes[Int(node)].right
        }
        if visited != count { return "reachable nodes \(visited) differ from count \(count)" }
        return nil
    }
}

extension SplayNode {
    @inline(__always)
    static func less(_ deadline: Int64, _ sequence: UInt64, than other: SplayNode) -> Bool {
        deadline < other.deadline || (deadline == other.deadline && sequence < other.sequence)
    }

    @inline(__always)
    static func greater(_ deadline: Int64, _ sequence: UInt64, than other: SplayNode) -> Bool {
        deadline > other.deadline || (deadline == other.deadline && sequence > other.sequence)
    }

    /// Sleator's top-down splay over the node array; slot 0 is the scratch header.
    static func splay(_ nodes: inout UnsafeMutableBufferPointer<SplayNode>, _ start: Int32,
                      deadline: Int64, sequence: UInt64) -> Int32 {
        let header = 0
        let none: Int32 = -1
        nodes[header].left = none
        nodes[header].right = none
        var leftTreeMax = header
        var rightTreeMin = header
        var current = Int(start)
        while true {
            if less(deadline, sequence, than: nodes[current]) {
                var child = nodes[current].left
                if child == none { break }
                if less(deadline, sequence, than: nodes[Int(child)]) {
                    // Zig-zig: rotate right.
                    nodes[current].left = nodes[Int(child)].right
                    nodes[Int(child)].right = Int32(current)
                    current = Int(child)
                    child = nodes[current].left
                    if child == none { break }
                }
                // Link right.
                nodes[rightTreeMin].left = Int32(current)
                rightTreeMin = current
                current = Int(child)
            } else if greater(deadline, sequence, than: nodes[current]) {
                var child = nodes[current].right
                if child == none { break }
                if greater(deadline, sequence, than: nodes[Int(child)]) {
                    // Zag-zag: rotate left.
                    nodes[current].right = nodes[Int(child)].left
                    nodes[Int(child)].left = Int32(current)
                    current = Int(child)
                    child = nodes[current].right
                    if child == none { break }
                }
                // Link left.
                nodes[leftTreeMax].right = Int32(current)
                leftTreeMax = current
                current = Int(child)
            } else {
                break
            }
        }
        // Assemble.
        nodes[leftTreeMax].right = nodes[current].left
        nodes[rightTreeMin].left = nodes[current].right
        nodes[current].left = nodes[header].right
        nodes[current].right = nodes[header].left
        return Int32(current)
    }
}

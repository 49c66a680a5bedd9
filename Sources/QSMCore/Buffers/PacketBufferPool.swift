#if canImport(Glibc)
import Glibc
#endif

/// A reference to one buffer of a `PacketBufferPool`.
package struct PacketBuffer: Hashable, Sendable {
    package let index: Int32
}

/// A fixed set of equally sized packet buffers carved from one allocation made up front.
///
/// The send and receive paths take buffers from here and give them back, so in steady
/// state they allocate nothing. Running out is counted (`exhaustionCount`) and reported
/// to the caller as `nil`; it is never a crash. Owned by one thread (the core's).
package final class PacketBufferPool {
    /// Bytes each buffer holds (the largest datagram the engine sends or accepts).
    package let bufferCapacity: Int
    /// Number of buffers in the pool.
    package let bufferCount: Int
    // Stored properties are `@exclusivity(unchecked)`: this state is confined to one thread
    // and never accessed overlappingly; the runtime's dynamic checks cost about 5% of a
    // receiver's CPU (perf, `qsm-bench run`).
    /// How many times `acquire()` found the pool empty.
    @exclusivity(unchecked) package private(set) var exhaustionCount = 0
    /// How many times a buffer that was not taken was given back (a caller's bug; ignored).
    @exclusivity(unchecked) package private(set) var invalidReleaseCount = 0

    private let storage: UnsafeMutableRawPointer
    /// The allocation `storage` is carved from (64-byte aligned within it).
    private let allocation: UnsafeMutableRawPointer
    private let freeStack: UnsafeMutablePointer<Int32>
    private let taken: UnsafeMutablePointer<Bool>
    @exclusivity(unchecked) private var freeCount: Int

    /// - Parameters:
    ///   - bufferCount: buffers to preallocate (at least 1).
    ///   - bufferCapacity: bytes per buffer (at least 1); rounded up to 64 for alignment.
    package init(bufferCount: Int, bufferCapacity: Int) {
        precondition(bufferCount > 0 && bufferCount <= Int(Int32.max) && bufferCapacity > 0,
                     "PacketBufferPool needs at least one buffer of at least one byte")
        self.bufferCount = bufferCount
        self.bufferCapacity = bufferCapacity
        let stride = (bufferCapacity + 63) & ~63
        // Zeroed memory, so a datagram that is sent without every byte written carries
        // zeros or an earlier packet's bytes, never uninitialized memory. From calloc: a
        // block this large is fresh anonymous memory that the kernel zero-fills page by
        // page as it is first touched, so a node pays resident memory only for the
        // buffers it has used (a sender keeps to a few hundred of 2,048), not for the
        // whole pool up front.
        guard let zeroed = calloc(stride * bufferCount + 64, 1) else {
            preconditionFailure("cannot allocate \(stride * bufferCount) bytes of packet buffers")
        }
        allocation = zeroed
        storage = UnsafeMutableRawPointer(bitPattern: (Int(bitPattern: zeroed) + 63) & ~63)!
        freeStack = .allocate(capacity: bufferCount)
        taken = .allocate(capacity: bufferCount)
        taken.initialize(repeating: false, count: bufferCount)
        for index in 0..<bufferCount {
            freeStack[index] = Int32(bufferCount - 1 - index)
        }
        freeCount = bufferCount
        self.stride = stride
    }

    private let stride: Int

    deinit {
        free(allocation)
        freeStack.deallocate()
        taken.deallocate()
    }

    /// Buffers currently free.
    package var availableCount: Int { freeCount }

    /// Takes a free buffer, or returns nil (and counts it) when none is left.
    @inline(__always)
    package func acquire() -> PacketBuffer? {
        guard freeCount > 0 else {
            exhaustionCount += 1
            return nil
        }
        freeCount -= 1
        let index = freeStack[freeCount]
        taken[Int(index)] = true
        return PacketBuffer(index: index)
    }

    /// Gives a buffer back. Releasing a buffer twice is counted and otherwise ignored.
    @inline(__always)
    package func release(_ buffer: PacketBuffer) {
        let index = Int(buffer.index)
        guard index >= 0, index < bufferCount, taken[index] else {
            invalidReleaseCount += 1
            return
        }
        taken[index] = false
        freeStack[freeCount] = buffer.index
        freeCount += 1
    }

    /// The whole buffer's memory. Valid while the buffer is taken; do not keep it longer.
    @inline(__always)
    package func bytes(of buffer: PacketBuffer) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: storage + Int(buffer.index) * stride, count: bufferCapacity)
    }
}

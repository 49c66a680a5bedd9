/// Reading datagram sockets: batched `recvmmsg` into pool buffers, or coalesced (UDP GRO)
/// messages cut back into datagrams where they lie, into the inbound queue of their class.
extension EventCore {
    /// Reads everything queued on a datagram socket (batched recvmmsg) into the inbound
    /// queue of its class, stopping early only if the buffer pool runs dry.
    func drain(_ registration: Registration) {
        if case .datagramSocket(let state) = registration.kind, state.coalesces {
            return drainCoalesced(registration, state)
        }
        let queue = IOPriority.inbound(registration.medium, registration.traffic).rawValue
        let token = registration.id.token
        while true {
            let result: IOResult<Int>
            do throws(SystemError) {
                result = try receiveBatch.receive(on: registration.descriptor)
            } catch {
                statistics.receiveErrors += 1
                statistics.lastSocketError = error
                return
            }
            guard case .completed(let received) = result else { return }
            if received == 0 {
                statistics.poolExhaustions += 1
                return
            }
            for index in 0..<received {
                let buffer = receiveBatch.buffer(at: index)
                if receiveBatch.isTruncated(at: index) {
                    statistics.droppedTruncated += 1
                    pool.release(buffer)
                    continue
                }
                if injectedInboundLoss() {
                    statistics.droppedByInjectedLoss += 1
                    pool.release(buffer)
                    continue
                }
                queues[queue].append(.datagram(registration: token, buffer: buffer,
                                               length: Int32(receiveBatch.length(at: index)),
                                               source: receiveBatch.address(at: index)))
            }
            receiveBatch.detachAll()
            if received < receiveBatch.capacity { return }
        }
    }

    /// `drain` for a socket that receives coalesced datagrams: receives into the socket's
    /// own batch, each message cut into its datagrams, which are queued where they lie.
    /// The socket is read again only once they have all been handled; until then its
    /// data waits in the kernel (and epoll, level-triggered, reports it again).
    ///
    /// Copying each datagram into a packet buffer, as `drain` does, cost about 5% of a
    /// 4-receiver run's samples in `memmove`, and a drain of up to 2,048 of them left the
    /// first ones out of the cache by the time they were handled (issue 15).
    func drainCoalesced(_ registration: Registration, _ state: DatagramSocketState) {
        guard state.coalescedInQueue == 0 else { return }
        let batch: CoalescedDatagramBatch
        if let made = state.coalescedBatch {
            batch = made
        } else {
            batch = CoalescedDatagramBatch(capacity: Self.coalescedBatchCapacity)
            state.coalescedBatch = batch
        }
        let queue = IOPriority.inbound(registration.medium, registration.traffic).rawValue
        let token = registration.id.token
        var used = 0
        var bytes = 0
        while used < batch.capacity {
            let asked = min(Self.coalescedMessagesPerReceive, batch.capacity - used)
            let result: IOResult<Int>
            do throws(SystemError) {
                result = try batch.receive(on: registration.descriptor, startingAt: used, count: asked)
            } catch {
                statistics.receiveErrors += 1
                statistics.lastSocketError = error
                return
            }
            guard case .completed(let received) = result else { return }
            for index in used..<(used + received) {
                if batch.isTruncated(at: index) {
                    statistics.droppedTruncated += 1
                    continue
                }
                let datagrams = batch.datagrams(at: index)
                let source = batch.address(at: index)
                bytes += batch.bytes(at: index).count
                if datagrams.count > 1 {
                    statistics.coalescedReceives += 1
                    statistics.coalescedDatagrams += datagrams.count
                }
                for datagram in datagrams {
                    if injectedInboundLoss() {
                        statistics.droppedByInjectedLoss += 1
                        continue
                    }
                    guard datagram.count <= pool.bufferCapacity else {
                        // Longer than any datagram the core accepts uncoalesced.
                        statistics.droppedTruncated += 1
                        continue
                    }
                    queues[queue].append(.coalescedDatagram(registration: token, offset: Int32(batch.offset(of: datagram)),
                                                            length: Int32(datagram.count), source: source))
                    state.coalescedInQueue += 1
                }
            }
            used += received
            if received < asked || bytes >= Self.coalescedBytesPerDrain { return }
        }
    }
}

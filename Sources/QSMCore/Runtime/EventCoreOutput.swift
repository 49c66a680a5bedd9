/// Pull-based output: a socket that can write pulls datagrams from its feeds into pool
/// buffers and sends them in batches (segmented, UDP GSO, where the kernel offers it).
extension EventCore {
    func queueOutputIfReady(_ registration: Registration, _ state: DatagramSocketState) {
        guard !state.outputQueued, !state.writeBlocked, state.hasOutput else { return }
        state.outputQueued = true
        queues[IOPriority.outbound(registration.medium, registration.traffic).rawValue]
            .append(.output(registration: registration.id.token))
    }

    /// The socket can take output: build datagrams from registered feeds just in time and
    /// send them in batches until the kernel pushes back, the feeds run dry, or the
    /// per-turn allowance is used (then the rest waits for the next turn).
    func pullOutput(_ registration: Registration, _ state: DatagramSocketState) {
        let batch = state.pending
        let fallbacks = batch.segmentationFallbacks
        defer { if batch.segmentationFallbacks > fallbacks { noteSegmentationFallback() } }
        pulling: for _ in 0..<configuration.outputBatchesPerTurn {
            while !batch.isFull, let (feed, traffic) = state.takeNextFeed() {
                guard let buffer = pool.acquire() else {
                    statistics.poolExhaustions += 1
                    state.requeue(feed, traffic: traffic)
                    break
                }
                let bytes = pool.bytes(of: buffer)
                guard let datagram = feed.produceDatagram(into: bytes, core: self) else {
                    pool.release(buffer)
                    state.withdraw(feed)
                    continue
                }
                if datagram.hasMore { state.requeue(feed, traffic: traffic) } else { state.withdraw(feed) }
                if injectedOutboundDrop, now < discardInboundUntil {
                    statistics.droppedByInjectedLoss += 1
                    pool.release(buffer)
                    continue
                }
                guard datagram.length >= 0, datagram.length <= bytes.count else {
                    statistics.droppedOversizedOutput += 1
                    pool.release(buffer)
                    continue
                }
                batch.append(buffer, length: datagram.length, to: datagram.destination)
            }
            // Empty: the feeds ran dry, or the pool did (then the intent stands and the
            // socket is offered again next turn, once buffers have come back).
            if batch.isEmpty { break pulling }
            do throws(SystemError) {
                switch try batch.send(on: registration.descriptor) {
                case .wouldBlock:
                    do throws(SystemError) {
                        try updateInterest(registration, state.restingInterest.union(.writable))
                        state.writeBlocked = true
                        return
                    } catch {
                        // Without EPOLLOUT nobody would wake this socket: retry next turn.
                        statistics.lastSocketError = error
                        break pulling
                    }
                case .completed(let sent):
                    statistics.datagramsSent += sent
                    statistics.bytesSent += batch.lastSentByteCount
                    statistics.segmentedSends += batch.lastSegmentedMessages
                    statistics.segmentedDatagrams += batch.lastSegmentedDatagrams
                }
            } catch {
                statistics.droppedSendErrors += 1
                statistics.lastSocketError = error
                batch.dropFirst()
            }
        }
        if state.hasOutput && !state.writeBlocked && !state.outputQueued {
            state.outputQueued = true
            deferredOutput.append(registration.id.token)
        }
    }

    /// Counts a socket whose batch just turned segmentation off (the kernel refused it;
    /// a batch does so once).
    func noteSegmentationFallback() {
        statistics.segmentationFallbacks += 1
        statistics.segmentationOffload = registrations.contains { registration in
            guard let registration, case .datagramSocket(let state) = registration.kind else { return false }
            return state.pending.segmentsSends
        }
    }
}

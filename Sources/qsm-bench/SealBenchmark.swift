import QSMCore

/// `qsm-bench micro --only seal`: what sealing one datagram costs, as every datagram is
/// sealed by default (AES-128-GMAC: the whole datagram authenticated, nothing encrypted),
/// per backend this CPU runs (the portable one, the hardware one, and the hardware one
/// without the wide hash where the CPU has it), at datagram sizes the engine sends.
enum SealBenchmark {
    /// One small packet, one 1000-byte message, a full bundle (an Ethernet MTU).
    static let sizes = [150, 1_070, 1_472]

    static var backends: [AESGCM.Backend] {
        (HardwareAESGCM.hardware.map { [$0] } ?? []) + (HardwareAESGCM.narrow.map { [$0] } ?? []) + [.portable]
    }

    /// Nanoseconds per seal of `size` bytes with `backend`, over about `seconds`. (Each
    /// seal is a call through the backend's C function pointer that writes the tag:
    /// nothing the optimizer can drop.)
    static func nanosecondsPerSeal(_ backend: AESGCM.Backend, size: Int, seconds: Double) -> Double {
        let cipher = AESGCM(key: [UInt8](repeating: 7, count: 16), backend: backend)
        let datagram = [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
            for index in 0..<size { buffer[index] = UInt8(truncatingIfNeeded: index &* 31) }
            count = size
        }
        var nonce = [UInt8](repeating: 0, count: 12)
        var tag = [UInt8](repeating: 0, count: 16)
        let budget = Int64(seconds * 1e9)
        let start = MonotonicClock.now()
        var seals = 0
        while true {
            for _ in 0..<1_000 {
                nonce[0] &+= 1
                nonce.withUnsafeBytes { n in datagram.withUnsafeBytes { aad in tag.withUnsafeMutableBytes { t in
                    cipher.seal(nonce: n, aad: aad, plaintext: UnsafeRawBufferPointer(start: nil, count: 0),
                                ciphertext: UnsafeMutableRawBufferPointer(start: nil, count: 0), tag: t)
                } } }
            }
            seals += 1_000
            if MonotonicClock.now().nanoseconds(since: start) >= budget { break }
        }
        let elapsed = Double(MonotonicClock.now().nanoseconds(since: start))
        return elapsed / Double(seals)
    }
}

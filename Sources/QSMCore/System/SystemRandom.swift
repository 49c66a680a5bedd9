/// Unpredictable bytes from the operating system (the standard library's system
/// generator reads the kernel's CSPRNG, getrandom): secrets, handshake entropy, nonces.
package enum SystemRandom {
    package static func bytes(_ count: Int) -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }

    /// One unpredictable 64-bit word.
    package static func word() -> UInt64 {
        var generator = SystemRandomNumberGenerator()
        return generator.next()
    }

    package static func hex(_ count: Int) -> String {
        bytes(count).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }
}

/// AES-128-GCM (NIST SP 800-38D) with 12-byte nonces and 16-byte tags: the datagram
/// seal's cipher (see `DatagramSeal`). With an empty plaintext it is GMAC, a MAC whose
/// cost in hardware is a fraction of HMAC-SHA256's.
///
/// This target is pure, so it cannot reach the CPU's AES and carry-less multiply
/// instructions itself: a driver that can (QSMCore) passes a `Backend` of C functions,
/// and the Swift code in `PortableAESGCM` is the fallback and the reference it is tested
/// against (with the GCM specification's vectors and `openssl`).
package final class AESGCM: @unchecked Sendable {
    /// The functions that do the work: the shape of C functions, so a hardware
    /// implementation costs one indirect call per datagram, with no closure or existential.
    package struct Backend: Sendable {
        /// Expands a 16-byte key into a `contextBytes` context.
        package typealias Initialize = @convention(c) (UnsafeMutablePointer<UInt8>?, UnsafePointer<UInt8>?) -> Void
        /// (context, nonce, aad, aad length, plaintext, ciphertext, length, tag out)
        package typealias Seal = @convention(c) (UnsafePointer<UInt8>?, UnsafePointer<UInt8>?, UnsafePointer<UInt8>?, Int,
                                                UnsafePointer<UInt8>?, UnsafeMutablePointer<UInt8>?, Int, UnsafeMutablePointer<UInt8>?) -> Void
        /// (context, nonce, aad, aad length, ciphertext, plaintext out, length, tag): 1 if
        /// authentic (then decrypted), else 0 and nothing written.
        package typealias Open = @convention(c) (UnsafePointer<UInt8>?, UnsafePointer<UInt8>?, UnsafePointer<UInt8>?, Int,
                                                UnsafePointer<UInt8>?, UnsafeMutablePointer<UInt8>?, Int, UnsafePointer<UInt8>?) -> Int32
        package var name: String
        package var initialize: Initialize
        package var seal: Seal
        package var open: Open

        package init(name: String, initialize: Initialize, seal: Seal, open: Open) {
            self.name = name
            self.initialize = initialize
            self.seal = seal
            self.open = open
        }

        /// The Swift implementation (`PortableAESGCM`).
        package static let portable = Backend(
            name: "portable",
            initialize: { context, key in PortableAESGCM.initialize(context: context!, key: key!) },
            seal: { context, nonce, aad, aadLength, plaintext, ciphertext, length, tag in
                PortableAESGCM.seal(context: context!, nonce: nonce!, aad: aad, aadLength: aadLength,
                                    plaintext: plaintext, ciphertext: ciphertext, length: length, tag: tag!)
            },
            open: { context, nonce, aad, aadLength, ciphertext, plaintext, length, tag in
                PortableAESGCM.open(context: context!, nonce: nonce!, aad: aad, aadLength: aadLength,
                                    ciphertext: ciphertext, plaintext: plaintext, length: length, tag: tag!) ? 1 : 0
            })
    }

    package static let keyBytes = 16
    package static let nonceBytes = 12
    package static let tagBytes = 16
    /// Bytes of an expanded key, whatever the backend.
    /// (The hardware backend's: round keys and powers of H up to H^96, 2 KB.)
    package static let contextBytes = 2048

    package let backend: Backend
    private let context: UnsafeMutablePointer<UInt8>

    /// - Parameter key: 16 bytes.
    package init(key: [UInt8], backend: Backend) {
        precondition(key.count == Self.keyBytes, "AES-128 takes a 16-byte key")
        self.backend = backend
        context = .allocate(capacity: Self.contextBytes)
        context.initialize(repeating: 0, count: Self.contextBytes)
        key.withUnsafeBufferPointer { backend.initialize(context, $0.baseAddress) }
    }

    deinit {
        context.update(repeating: 0, count: Self.contextBytes)
        context.deallocate()
    }

    /// Encrypts `plaintext` into `ciphertext` (the same length; they may be the same
    /// memory) and writes the tag over it and `aad` into `tag`.
    @inline(__always)
    package func seal(nonce: UnsafeRawBufferPointer, aad: UnsafeRawBufferPointer, plaintext: UnsafeRawBufferPointer,
                     ciphertext: UnsafeMutableRawBufferPointer, tag: UnsafeMutableRawBufferPointer) {
        precondition(nonce.count == Self.nonceBytes && tag.count >= Self.tagBytes && ciphertext.count >= plaintext.count)
        backend.seal(context, bytes(nonce), bytes(aad), aad.count, bytes(plaintext),
                     ciphertext.baseAddress?.assumingMemoryBound(to: UInt8.self), plaintext.count,
                     tag.baseAddress!.assumingMemoryBound(to: UInt8.self))
    }

    /// Checks `tag` over `aad` and `ciphertext` (in constant time); only if it is
    /// authentic decrypts into `plaintext` (which may be the ciphertext's memory).
    @inline(__always)
    package func open(nonce: UnsafeRawBufferPointer, aad: UnsafeRawBufferPointer, ciphertext: UnsafeRawBufferPointer,
                     plaintext: UnsafeMutableRawBufferPointer, tag: UnsafeRawBufferPointer) -> Bool {
        precondition(nonce.count == Self.nonceBytes && tag.count >= Self.tagBytes && plaintext.count >= ciphertext.count)
        return backend.open(context, bytes(nonce), bytes(aad), aad.count, bytes(ciphertext),
                            plaintext.baseAddress?.assumingMemoryBound(to: UInt8.self), ciphertext.count, bytes(tag)) == 1
    }

    @inline(__always)
    private func bytes(_ buffer: UnsafeRawBufferPointer) -> UnsafePointer<UInt8>? {
        buffer.baseAddress?.assumingMemoryBound(to: UInt8.self)
    }
}

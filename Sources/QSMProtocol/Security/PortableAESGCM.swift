/// AES-128 (FIPS 197) and GCM (NIST SP 800-38D) in plain Swift: the fallback on CPUs
/// without AES and carry-less multiply instructions, and the reference the hardware code
/// is tested against. Written for clarity, not speed. The hash multiplication is constant
/// time; the S-box is a table, so on a CPU without AES instructions the cipher's timing
/// may depend on the key (the hardware path has no tables).
///
/// Context layout (of `AESGCM.contextBytes`): the eleven round keys, then H.
enum PortableAESGCM {
    /// The S-box, generated from its definition (multiplicative inverse, then the affine
    /// map) rather than typed in.
    static let sbox: [UInt8] = {
        var box = [UInt8](repeating: 0, count: 256)
        var p: UInt8 = 1, q: UInt8 = 1
        repeat {
            // p times 3; q divided by 3: they stay inverses.
            p = p ^ (p << 1) ^ ((p & 0x80) != 0 ? 0x1b : 0)
            q ^= q << 1
            q ^= q << 2
            q ^= q << 4
            if q & 0x80 != 0 { q ^= 0x09 }
            func rotate(_ x: UInt8, _ n: UInt8) -> UInt8 { (x << n) | (x >> (8 - n)) }
            box[Int(p)] = q ^ rotate(q, 1) ^ rotate(q, 2) ^ rotate(q, 3) ^ rotate(q, 4) ^ 0x63
        } while p != 1
        box[0] = 0x63
        return box
    }()

    static func initialize(context: UnsafeMutablePointer<UInt8>, key: UnsafePointer<UInt8>) {
        for index in 0..<16 { context[index] = key[index] }
        var roundConstant: UInt8 = 1
        for word in 4..<44 {
            var temp = (context[4 * word - 4], context[4 * word - 3], context[4 * word - 2], context[4 * word - 1])
            if word % 4 == 0 {
                temp = (sbox[Int(temp.1)] ^ roundConstant, sbox[Int(temp.2)], sbox[Int(temp.3)], sbox[Int(temp.0)])
                roundConstant = xtime(roundConstant)
            }
            context[4 * word] = context[4 * word - 16] ^ temp.0
            context[4 * word + 1] = context[4 * word - 15] ^ temp.1
            context[4 * word + 2] = context[4 * word - 14] ^ temp.2
            context[4 * word + 3] = context[4 * word - 13] ^ temp.3
        }
        var zero = [UInt8](repeating: 0, count: 16)
        encryptBlock(context: context, &zero)
        for index in 0..<16 { context[176 + index] = zero[index] }
    }

    @inline(__always)
    static func xtime(_ x: UInt8) -> UInt8 { (x << 1) ^ ((x >> 7) * 0x1b) }

    static func encryptBlock(context: UnsafePointer<UInt8>, _ block: inout [UInt8]) {
        for index in 0..<16 { block[index] ^= context[index] }
        for round in 1...10 {
            var state = [UInt8](repeating: 0, count: 16)
            // SubBytes and ShiftRows: row r of column c comes from column c + r.
            for column in 0..<4 {
                for row in 0..<4 { state[4 * column + row] = sbox[Int(block[4 * ((column + row) % 4) + row])] }
            }
            if round < 10 {
                for column in 0..<4 {
                    let a0 = state[4 * column], a1 = state[4 * column + 1], a2 = state[4 * column + 2], a3 = state[4 * column + 3]
                    state[4 * column] = xtime(a0) ^ xtime(a1) ^ a1 ^ a2 ^ a3
                    state[4 * column + 1] = a0 ^ xtime(a1) ^ xtime(a2) ^ a2 ^ a3
                    state[4 * column + 2] = a0 ^ a1 ^ xtime(a2) ^ xtime(a3) ^ a3
                    state[4 * column + 3] = xtime(a0) ^ a0 ^ a1 ^ a2 ^ xtime(a3)
                }
            }
            for index in 0..<16 { block[index] = state[index] ^ context[16 * round + index] }
        }
    }

    /// X times H in GF(2^128), GCM's bit order, in constant time (algorithm 1 of the
    /// specification, with masks instead of branches).
    static func multiply(_ x: (UInt64, UInt64), _ h: (UInt64, UInt64)) -> (UInt64, UInt64) {
        var z: (UInt64, UInt64) = (0, 0)
        var v = h
        for bit in 0..<128 {
            let word = bit < 64 ? x.0 : x.1
            let mask = 0 &- ((word >> UInt64(63 - bit % 64)) & 1)
            z.0 ^= v.0 & mask
            z.1 ^= v.1 & mask
            let carry = 0 &- (v.1 & 1)
            v.1 = (v.1 >> 1) | (v.0 << 63)
            v.0 = (v.0 >> 1) ^ (0xe100_0000_0000_0000 & carry)
        }
        return z
    }

    static func load(_ bytes: UnsafePointer<UInt8>, count: Int) -> (UInt64, UInt64) {
        var high: UInt64 = 0, low: UInt64 = 0
        for index in 0..<16 {
            let byte = index < count ? UInt64(bytes[index]) : 0
            if index < 8 { high = high << 8 | byte } else { low = low << 8 | byte }
        }
        return (high, low)
    }

    static func ghash(_ h: (UInt64, UInt64), _ state: inout (UInt64, UInt64), _ data: UnsafePointer<UInt8>?, _ length: Int) {
        guard let data else { return }
        var offset = 0
        while offset < length {
            let block = load(data + offset, count: min(16, length - offset))
            state = multiply((state.0 ^ block.0, state.1 ^ block.1), h)
            offset += 16
        }
    }

    static func counterBlock(_ nonce: UnsafePointer<UInt8>, _ counter: UInt32) -> [UInt8] {
        (0..<12).map { nonce[$0] } + [UInt8(counter >> 24), UInt8(truncatingIfNeeded: counter >> 16),
                                      UInt8(truncatingIfNeeded: counter >> 8), UInt8(truncatingIfNeeded: counter)]
    }

    static func counterMode(context: UnsafePointer<UInt8>, nonce: UnsafePointer<UInt8>, input: UnsafePointer<UInt8>?,
                            output: UnsafeMutablePointer<UInt8>?, length: Int) {
        guard let input, let output else { return }
        var counter: UInt32 = 2
        var offset = 0
        while offset < length {
            var stream = counterBlock(nonce, counter)
            encryptBlock(context: context, &stream)
            for index in 0..<min(16, length - offset) { output[offset + index] = input[offset + index] ^ stream[index] }
            counter &+= 1
            offset += 16
        }
    }

    static func tag(context: UnsafePointer<UInt8>, nonce: UnsafePointer<UInt8>, aad: UnsafePointer<UInt8>?, aadLength: Int,
                    ciphertext: UnsafePointer<UInt8>?, length: Int) -> [UInt8] {
        let h = load(context + 176, count: 16)
        var state: (UInt64, UInt64) = (0, 0)
        ghash(h, &state, aad, aadLength)
        ghash(h, &state, ciphertext, length)
        state = multiply((state.0 ^ UInt64(aadLength) * 8, state.1 ^ UInt64(length) * 8), h)
        var mask = counterBlock(nonce, 1)
        encryptBlock(context: context, &mask)
        return (0..<16).map { index in
            let word = index < 8 ? state.0 : state.1
            return mask[index] ^ UInt8(truncatingIfNeeded: word >> UInt64(56 - (index % 8) * 8))
        }
    }

    static func seal(context: UnsafePointer<UInt8>, nonce: UnsafePointer<UInt8>, aad: UnsafePointer<UInt8>?, aadLength: Int,
                     plaintext: UnsafePointer<UInt8>?, ciphertext: UnsafeMutablePointer<UInt8>?, length: Int,
                     tag output: UnsafeMutablePointer<UInt8>) {
        counterMode(context: context, nonce: nonce, input: plaintext, output: ciphertext, length: length)
        let computed = tag(context: context, nonce: nonce, aad: aad, aadLength: aadLength,
                           ciphertext: ciphertext.map { UnsafePointer($0) }, length: length)
        for index in 0..<16 { output[index] = computed[index] }
    }

    static func open(context: UnsafePointer<UInt8>, nonce: UnsafePointer<UInt8>, aad: UnsafePointer<UInt8>?, aadLength: Int,
                     ciphertext: UnsafePointer<UInt8>?, plaintext: UnsafeMutablePointer<UInt8>?, length: Int,
                     tag expected: UnsafePointer<UInt8>) -> Bool {
        let computed = tag(context: context, nonce: nonce, aad: aad, aadLength: aadLength, ciphertext: ciphertext, length: length)
        var difference: UInt8 = 0
        for index in 0..<16 { difference |= computed[index] ^ expected[index] }
        guard difference == 0 else { return false }
        counterMode(context: context, nonce: nonce, input: ciphertext, output: plaintext, length: length)
        return true
    }
}

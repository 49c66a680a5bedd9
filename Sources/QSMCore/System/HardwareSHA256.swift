import CQSMLinux
import Glibc
import QSMProtocol

/// The CPU's SHA-256 instructions, when it has them: detected once, at first use.
package enum HardwareSHA256 {
    /// The hardware block function for `SHA256` and `PacketAuthenticator`, or nil when
    /// this CPU lacks the SHA extensions (the portable code is then used) or when the
    /// environment variable `QSM_SHA256=portable` asks for the portable code (to compare
    /// the two).
    package static let blockFunction: SHA256.BlockFunction? = {
        if let choice = getenv("QSM_SHA256"), String(cString: choice) == "portable" { return nil }
        guard cqsm_cpu_has_sha_extensions() == 1 else { return nil }
        return cqsm_sha256_blocks_sha_extensions
    }()
}

import CQSMLinux
import Glibc
import QSMProtocol

/// The CPU's AES and carry-less multiply instructions, when it has them: detected once,
/// at first use.
package enum HardwareAESGCM {
    /// The hardware backend for `AESGCM`, or the portable one when this CPU lacks the
    /// instructions or the environment variable `QSM_AESGCM=portable` asks for it (to
    /// compare the two).
    package static let backend: AESGCM.Backend = hardware ?? .portable

    /// The hardware backend, or nil when this CPU lacks the instructions.
    package static let hardware: AESGCM.Backend? = {
        if let choice = getenv("QSM_AESGCM"), String(cString: choice) == "portable" { return nil }
        guard cqsm_cpu_has_aes_gcm() == 1 else { return nil }
        return AESGCM.Backend(name: cqsm_cpu_has_wide_ghash() == 1 ? "aes-ni+vpclmulqdq" : "aes-ni+pclmul",
                              initialize: cqsm_aes128_gcm_init, seal: cqsm_aes128_gcm_seal, open: cqsm_aes128_gcm_open)
    }()

    /// The hardware backend with the wide hash (sixteen blocks per reduction, VPCLMULQDQ)
    /// turned off, on a CPU that has it: for tests that compare both paths. Nil where the
    /// CPU has no wide hash (`hardware` then is this path already).
    package static let narrow: AESGCM.Backend? = {
        guard let hardware, cqsm_cpu_has_wide_ghash() == 1 else { return nil }
        return AESGCM.Backend(name: "aes-ni+pclmul", initialize: { context, key in
            cqsm_aes128_gcm_init(context, key)
            cqsm_aes128_gcm_set_wide(context, 0)
        }, seal: hardware.seal, open: hardware.open)
    }()
}

#if canImport(Glibc)
import Glibc
#endif

/// Writes `message` and a newline to standard error, unbuffered (for diagnostics and
/// progress that must appear even if the process dies next).
public func writeToStandardError(_ message: String) {
    var line = message + "\n"
    line.withUTF8 { bytes in
        var offset = 0
        while offset < bytes.count {
            let written = Glibc.write(2, bytes.baseAddress! + offset, bytes.count - offset)
            if written < 0 {
                if Glibc.errno == EINTR { continue }
                return
            }
            offset += written
        }
    }
}

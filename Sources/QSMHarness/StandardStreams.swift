#if canImport(Glibc)
import Glibc
#endif
import QSMCore

/// Writes `message` and a newline to standard error, unbuffered (for diagnostics and
/// progress that must appear even if the process dies next).
public func writeToStandardError(_ message: String) {
    writeLine(message, to: 2)
}

/// Writes `message` and a newline to standard output, unbuffered, so a parent reading a
/// pipe sees each line as soon as it is written.
public func writeToStandardOutput(_ message: String) {
    writeLine(message, to: 1)
}

private func writeLine(_ message: String, to descriptor: Int32) {
    var line = message + "\n"
    line.withUTF8 { bytes in
        var offset = 0
        while offset < bytes.count {
            let written = Glibc.write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
            if written < 0 {
                if Glibc.errno == EINTR { continue }
                return
            }
            offset += written
        }
    }
}

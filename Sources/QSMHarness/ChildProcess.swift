#if canImport(Glibc)
import Glibc
#endif
import QSMCore
import CQSMLinux

/// A child process with its standard input and output on pipes. Reads are bounded by a
/// timeout (poll), never by sleeping. A child still running when its owner goes away is
/// killed and reaped.
public final class ChildProcess {
    public let pid: pid_t
    public let arguments: [String]
    private var input: Int32
    private let output: Int32
    private var buffered: [UInt8] = []
    private var outputClosed = false
    public private(set) var exitStatus: Int32?

    /// Starts `executable` with `arguments`. Standard error is inherited.
    public init(executable: String, arguments: [String]) throws(SystemError) {
        cqsm_ignore_sigpipe()
        var toChild: [Int32] = [0, 0]
        var fromChild: [Int32] = [0, 0]
        // Close-on-exec from birth: set afterwards, a child spawned meanwhile by another
        // thread would inherit these ends, and this child's output would not end when it
        // exits. The spawn's dup2 onto 0 and 1 gives the child its ends without the flag.
        _ = try systemCall("pipe2") { cqsm_pipe_cloexec(&toChild) }
        do throws(SystemError) {
            _ = try systemCall("pipe2") { cqsm_pipe_cloexec(&fromChild) }
        } catch {
            close(toChild[0])
            close(toChild[1])
            throw error
        }
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var child: pid_t = 0
        let result = cqsm_spawn(&child, executable, toChild[0], fromChild[1], argv, environ)
        close(toChild[0])
        close(fromChild[1])
        guard result == 0 else {
            close(toChild[1])
            close(fromChild[0])
            throw SystemError(call: "posix_spawn(\(executable))", errno: result)
        }
        pid = child
        self.arguments = arguments
        input = toChild[1]
        output = fromChild[0]
        _ = fcntl(output, F_SETFL, fcntl(output, F_GETFL) | O_NONBLOCK)
    }

    deinit {
        if exitStatus == nil {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
        }
        if input >= 0 { close(input) }
        close(output)
    }

    /// Hands the child's standard input to a writer of its own, for another thread to feed.
    public func detachInput() -> ProcessInput {
        defer { input = -1 }
        return ProcessInput(descriptor: input)
    }

    /// Closes the child's standard input (it sees end of input).
    public func closeInput() {
        guard input >= 0 else { return }
        close(input)
        input = -1
    }

    /// The read end of the child's standard output, for polling several children at once.
    public var outputDescriptor: Int32 { output }

    /// Whether the child closed its standard output (it exited, or is about to).
    public var outputEnded: Bool { outputClosed }

    /// Writes a line to the child's standard input; false if the child no longer reads
    /// (SIGPIPE is ignored in this process, so that is EPIPE, not death).
    @discardableResult
    public func writeLine(_ line: String) -> Bool {
        ProcessInput(descriptor: input).writeLine(line)
    }

    /// Reads whatever output is available now, without waiting; returns complete lines.
    public func availableLines() -> [String] {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while !outputClosed {
            let count = chunk.withUnsafeMutableBytes { read(output, $0.baseAddress, $0.count) }
            if count > 0 {
                buffered += chunk[0..<count]
            } else {
                if count == 0 { outputClosed = true }
                break
            }
        }
        var lines: [String] = []
        while let newline = buffered.firstIndex(of: UInt8(ascii: "\n")) {
            lines.append(String(decoding: buffered[..<newline], as: UTF8.self))
            buffered.removeSubrange(...newline)
        }
        return lines
    }

    /// Waits up to `timeoutMilliseconds` for one complete line of output.
    public func readLine(timeoutMilliseconds: Int) -> String? {
        let deadline = MonotonicClock.now().advanced(byNanoseconds: Int64(timeoutMilliseconds) * 1_000_000)
        var pending: [String] = []
        while true {
            pending += availableLines()
            if let first = pending.first {
                // Put back lines beyond the first.
                for line in pending.dropFirst().reversed() { buffered.insert(contentsOf: Array((line + "\n").utf8), at: 0) }
                return first
            }
            let left = deadline.nanoseconds(since: MonotonicClock.now()) / 1_000_000
            if left <= 0 || outputClosed { return nil }
            var descriptor = pollfd(fd: output, events: Int16(POLLIN), revents: 0)
            _ = poll(&descriptor, 1, Int32(min(left, 100)))
        }
    }

    public func signal(_ number: Int32) { kill(pid, number) }

    /// Waits up to `timeoutMilliseconds` for the child to exit; returns its exit code
    /// (128 + signal number if a signal ended it), or nil if it is still running.
    @discardableResult
    public func waitForExit(timeoutMilliseconds: Int) -> Int32? {
        if let exitStatus { return exitStatus }
        let deadline = MonotonicClock.now().advanced(byNanoseconds: Int64(timeoutMilliseconds) * 1_000_000)
        while true {
            var status: Int32 = 0
            let result = waitpid(pid, &status, WNOHANG)
            if result == pid {
                let signalled = status & 0x7F
                exitStatus = signalled == 0 ? (status >> 8) & 0xFF : 128 + signalled
                return exitStatus
            }
            if MonotonicClock.now() >= deadline { return nil }
            // Bounded wait for the state change: poll the output pipe (it closes at exit).
            var descriptor = pollfd(fd: output, events: 0, revents: 0)
            _ = poll(&descriptor, 1, 20)
        }
    }

    /// Makes the kernel kill this process when its parent dies, so that a worker never
    /// outlives the tool that started it, whatever happens to that tool.
    public static func exitWithParent() throws(SystemError) {
        _ = try systemCall("prctl(PR_SET_PDEATHSIG)") { cqsm_exit_with_parent() }
    }

    /// The absolute path of the running executable's directory (to find sibling tools).
    public static var currentExecutableDirectory: String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let length = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard length > 0 else { return "." }
        let path = String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return String(path[..<(path.lastIndex(of: "/") ?? path.endIndex)])
    }
}

/// A child's standard input, detached so one thread can feed it while another reads the
/// child's output. Writes are not shared: one owner, one thread.
public struct ProcessInput: Sendable {
    package let descriptor: Int32

    /// Writes a line; false once the child stopped reading.
    @discardableResult
    public func writeLine(_ line: String) -> Bool {
        guard descriptor >= 0 else { return false }
        var text = line + "\n"
        return text.withUTF8 { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    return false
                }
                offset += written
            }
            return true
        }
    }

    /// Closes it: the child sees end of input.
    public func close() { if descriptor >= 0 { _ = Glibc.close(descriptor) } }
}

#if canImport(Glibc)
import Glibc
#endif
import QSMCore
import QSMHarness

/// Writes an experiment's CSV and SVG files into its output directory.
struct OutputFiles {
    let directory: String

    /// Creates the directory if needed.
    init(directory: String) throws {
        self.directory = directory
        if mkdir(directory, 0o755) != 0, errno != EEXIST {
            throw SystemError(call: "mkdir(\(directory))", errno: errno)
        }
    }

    /// Writes `text` to `name` in the directory; returns the path.
    @discardableResult
    func write(_ name: String, _ text: String) throws -> String {
        let path = directory + "/" + name
        guard let file = fopen(path, "w") else { throw SystemError(call: "fopen(\(path))", errno: errno) }
        defer { fclose(file) }
        guard fputs(text, file) >= 0 else { throw SystemError(call: "fputs(\(path))", errno: errno) }
        return path
    }

    /// A CSV document (RFC 4180): a header row, then rows. A value holding a comma, a
    /// quote or a line break is quoted, its quotes doubled ("ratio to raw, 4 receivers"
    /// and "0.14 (0.14, 0.16, 0.11)" are one field each).
    static func csv(_ header: [String], _ rows: [[String]]) -> String {
        ([header] + rows).map { $0.map(csvField).joined(separator: ",") }.joined(separator: "\n") + "\n"
    }

    private static func csvField(_ value: String) -> String {
        guard value.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" || $0 == "\r\n" }) else { return value }
        return "\"" + value.replacing("\"", with: "\"\"") + "\""
    }
}

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

    /// A CSV document: a header row, then rows (values never contain commas here).
    static func csv(_ header: [String], _ rows: [[String]]) -> String {
        ([header] + rows).map { $0.joined(separator: ",") }.joined(separator: "\n") + "\n"
    }
}

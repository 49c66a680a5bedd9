import Foundation
import Testing

/// The pure target is pure by construction: the compiler refuses a syscall or a clock
/// read there only if nothing that provides one is imported. These tests keep it so: no
/// file of QSMProtocol imports anything but the standard library and Synchronization,
/// and the package gives the target no dependency through which one could come.
@Suite struct LayeringTests {
    static let root: String = {
        // .../Tests/QSMCoreTests/LayeringTests.swift -> the package root.
        var parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)
        return parts.joined(separator: "/")
    }()

    static let allowedImports: Set<String> = ["Swift", "Synchronization"]

    @Test func theProtocolTargetImportsOnlyTheStandardLibrary() throws {
        let files = try swiftFiles(under: Self.root + "/Sources/QSMProtocol")
        #expect(files.count > 20, "found only \(files.count) files under Sources/QSMProtocol")
        var offenders: [String] = []
        for file in files {
            for (number, line) in try readLines(file).enumerated() {
                if let module = importedModule(line), !Self.allowedImports.contains(module) {
                    offenders.append("\(file):\(number + 1): \(line.trimmingCharacters())")
                }
            }
        }
        #expect(offenders.isEmpty, "QSMProtocol must stay pure: \(offenders)")
    }

    @Test func thePackageGivesTheProtocolTargetNoDependencies() throws {
        let manifest = try readLines(Self.root + "/Package.swift").joined(separator: "\n")
        let declarations = manifest.components(separatedBy: ".target(name: \"QSMProtocol\"")
        #expect(declarations.count == 2, "Package.swift must declare QSMProtocol exactly once")
        let declaration = declarations.last?.prefix { $0 != ")" } ?? ""
        #expect(!declaration.contains("dependencies"), "QSMProtocol must not depend on anything: \(declaration)")
    }

    /// Foundation stays out of every target: the engine, the harness and both executables.
    /// Linked, it cost each process about 2 MB of resident memory (issue 15, the sender's
    /// RSS).
    @Test func noFoundationInAnyTarget() throws {
        var offenders: [String] = []
        for target in ["QSMProtocol", "QSMCore", "QSMGMS", "QSMSimulation", "QSMHarness", "qsm-bench", "qsm-node"] {
            let files = try swiftFiles(under: Self.root + "/Sources/" + target)
            #expect(!files.isEmpty, "no files under Sources/\(target)")
            for file in files {
                for (number, line) in try readLines(file).enumerated() {
                    if let module = importedModule(line), module.hasPrefix("Foundation") {
                        offenders.append("\(file):\(number + 1): \(line.trimmingCharacters())")
                    }
                }
            }
        }
        #expect(offenders.isEmpty, "\(offenders)")
    }

    /// The harness (processes, namespaces, flags) never ships in a library product.
    @Test func libraryProductsDoNotShipTheHarnessOrTheSimulator() throws {
        let manifest = try readLines(Self.root + "/Package.swift")
        for line in manifest where line.contains(".library(") {
            #expect(!line.contains("QSMHarness") && !line.contains("QSMSimulation"), "\(line)")
        }
    }
}

/// The module a line imports, if it is an import declaration (`@testable`, `@_exported`
/// and kinds like `import struct` included).
func importedModule(_ line: String) -> String? {
    var words = line.trimmingCharacters().split(separator: " ").map(String.init)
    while let first = words.first, first.hasPrefix("@") || ["public", "package", "internal"].contains(first) {
        words.removeFirst()
    }
    guard words.first == "import", words.count >= 2 else { return nil }
    let kinds: Set<String> = ["struct", "class", "enum", "protocol", "func", "var", "let", "typealias"]
    let path = kinds.contains(words[1]) && words.count >= 3 ? words[2] : words[1]
    return String(path.split(separator: ".").first ?? "")
}

extension String {
    func trimmingCharacters() -> String { trimmingCharacters(in: .whitespaces) }
}

func readLines(_ path: String) throws -> [String] {
    try String(contentsOfFile: path, encoding: .utf8).components(separatedBy: "\n")
}

func swiftFiles(under directory: String) throws -> [String] {
    let names = try FileManager.default.subpathsOfDirectory(atPath: directory)
    return names.filter { $0.hasSuffix(".swift") }.sorted().map { directory + "/" + $0 }
}

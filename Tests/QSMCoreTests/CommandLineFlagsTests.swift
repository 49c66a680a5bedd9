@testable import QSMHarness
import QSMProtocol
import Testing

/// `CommandLineFlags`: what a command sees of the flags it was given.
@Suite struct CommandLineFlagsTests {
    private func flags(_ arguments: [String]) throws(ConfigurationError) -> CommandLineFlags {
        try CommandLineFlags(arguments, valued: ["--size", "--group"], switches: ["--json"])
    }

    /// A valued flag counts as given, in both spellings, as a switch does; nothing else does.
    @Test func everyGivenFlagIsSeen() throws {
        for arguments in [["--size", "0"], ["--size=0"], ["--json", "--size", "12"]] {
            let given = try flags(arguments)
            #expect(given.has("--size"), "\(arguments)")
            #expect(given.has("--group") == false && given.has("--other") == false, "\(arguments)")
            #expect(try given.integer("--size", in: 0...20, default: 7) != 7, "\(arguments)")
        }
        let none = try flags(["--json"])
        #expect(none.has("--json") && !none.has("--size"))
        #expect(try none.integer("--size", in: 0...20, default: 7) == 7)
    }

    @Test func outOfRangeAndUnknownFlagsAreRefused() throws {
        #expect(throws: ConfigurationError.self) { try flags(["--size", "21"]).integer("--size", in: 0...20, default: 7) }
        #expect(throws: ConfigurationError.self) { try flags(["--size=-1"]).integer("--size", in: 0...20, default: 7) }
        #expect(throws: ConfigurationError.self) { try flags(["--colour", "red"]) }
        #expect(throws: ConfigurationError.self) { try flags(["--json=yes"]) }
        #expect(throws: ConfigurationError.self) { try flags(["--size"]) }
    }

    /// A size that is 0 (off) or in a range: the values between are refused, as are
    /// those around the range; the ends and 0 are taken.
    @Test func zeroOrARange() throws {
        for (text, expected) in [("0", 0), ("256", 256), ("65507", 65507), ("1472", 1472)] {
            #expect(try flags(["--size", text]).integer("--size", zeroOr: 256...65_507, default: 7) == expected)
        }
        #expect(try flags([]).integer("--size", zeroOr: 256...65_507, default: 7) == 7)
        for text in ["1", "100", "255", "65508", "-1", "x"] {
            #expect(throws: ConfigurationError.self, "\(text)") { try flags(["--size", text]).integer("--size", zeroOr: 256...65_507, default: 7) }
        }
    }
}

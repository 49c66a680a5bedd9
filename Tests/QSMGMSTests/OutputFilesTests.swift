@testable import qsm_bench
import Testing

/// The experiments' CSV files are RFC 4180: a value with a comma, a quote or a line
/// break is one quoted field (the targets table has commas in both its names and its
/// figures).
@Suite struct OutputFilesTests {
    @Test func valuesWithCommasQuotesAndLineBreaksStayOneField() {
        let text = OutputFiles.csv(["target", "measured", "met"], [
            ["ratio to raw (same techniques), 4 receivers", "0.14 (0.14, 0.16, 0.11)", "NO"],
            ["a \"quoted\" word", "two\nlines", "crlf\r\nend"],
            ["plain", "1.5", "yes"],
        ])
        #expect(text == """
            target,measured,met
            "ratio to raw (same techniques), 4 receivers","0.14 (0.14, 0.16, 0.11)",NO
            "a ""quoted"" word","two
            lines","crlf\r\nend"
            plain,1.5,yes

            """)
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// A line chart drawn as a standalone SVG document, no dependencies: axes with ticks,
/// one polyline per series, a legend. Linear or logarithmic x axis.
struct SVGChart {
    struct Series {
        var name: String
        var points: [(x: Double, y: Double)]
    }

    var title: String
    var xLabel: String
    var yLabel: String
    var logarithmicX = false
    var series: [Series] = []
    /// Vertical bands to shade (for example, when a receiver was stopped).
    var bands: [(from: Double, to: Double)] = []

    private static let colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2"]
    private let width = 760.0, height = 420.0
    private let left = 80.0, right = 190.0, top = 40.0, bottom = 60.0

    init(title: String, xLabel: String, yLabel: String, logarithmicX: Bool = false) {
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
        self.logarithmicX = logarithmicX
    }

    func render() -> String {
        let all = series.flatMap(\.points).filter { $0.x.isFinite && $0.y.isFinite && (!logarithmicX || $0.x > 0) }
        let xs = all.map { transform($0.x) }
        var xMinimum = xs.min() ?? 0, xMaximum = xs.max() ?? 1
        if xMaximum <= xMinimum { xMaximum = xMinimum + 1 }
        let yMaximum = niceCeiling(max(all.map(\.y).max() ?? 1, 1e-9))
        let plotWidth = width - left - right, plotHeight = height - top - bottom
        func px(_ x: Double) -> Double { left + (transform(x) - xMinimum) / (xMaximum - xMinimum) * plotWidth }
        func py(_ y: Double) -> Double { top + plotHeight - y / yMaximum * plotHeight }
        var svg = [
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" font-family=\"sans-serif\" font-size=\"12\">",
            "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>",
            "<text x=\"\(left)\" y=\"24\" font-size=\"15\">\(escape(title))</text>",
        ]
        for band in bands {
            let from = px(max(band.from, logarithmicX ? 1e-9 : -.infinity)), to = px(band.to)
            svg.append("<rect x=\"\(f(from))\" y=\"\(f(top))\" width=\"\(f(max(1, to - from)))\" height=\"\(f(plotHeight))\" fill=\"#eeeeee\"/>")
        }
        // Axes and ticks.
        svg.append("<line x1=\"\(f(left))\" y1=\"\(f(top + plotHeight))\" x2=\"\(f(left + plotWidth))\" y2=\"\(f(top + plotHeight))\" stroke=\"black\"/>")
        svg.append("<line x1=\"\(f(left))\" y1=\"\(f(top))\" x2=\"\(f(left))\" y2=\"\(f(top + plotHeight))\" stroke=\"black\"/>")
        for step in 0...5 {
            let value = yMaximum * Double(step) / 5
            let y = py(value)
            svg.append("<line x1=\"\(f(left - 4))\" y1=\"\(f(y))\" x2=\"\(f(left + plotWidth))\" y2=\"\(f(y))\" stroke=\"#dddddd\"/>")
            svg.append("<text x=\"\(f(left - 8))\" y=\"\(f(y + 4))\" text-anchor=\"end\">\(label(value))</text>")
        }
        for tick in xTicks(minimum: xMinimum, maximum: xMaximum) {
            let x = px(tick)
            svg.append("<line x1=\"\(f(x))\" y1=\"\(f(top + plotHeight))\" x2=\"\(f(x))\" y2=\"\(f(top + plotHeight + 4))\" stroke=\"black\"/>")
            svg.append("<text x=\"\(f(x))\" y=\"\(f(top + plotHeight + 18))\" text-anchor=\"middle\">\(label(tick))</text>")
        }
        svg.append("<text x=\"\(f(left + plotWidth / 2))\" y=\"\(f(height - 16))\" text-anchor=\"middle\">\(escape(xLabel))</text>")
        svg.append("<text transform=\"translate(18 \(f(top + plotHeight / 2))) rotate(-90)\" text-anchor=\"middle\">\(escape(yLabel))</text>")
        // Series and legend.
        for (index, line) in series.enumerated() {
            let color = Self.colors[index % Self.colors.count]
            let points = line.points.filter { $0.x.isFinite && $0.y.isFinite && (!logarithmicX || $0.x > 0) }
            let path = points.map { "\(f(px($0.x))),\(f(py($0.y)))" }.joined(separator: " ")
            svg.append("<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\" points=\"\(path)\"/>")
            if points.count <= 20 {
                for point in points {
                    svg.append("<circle cx=\"\(f(px(point.x)))\" cy=\"\(f(py(point.y)))\" r=\"3\" fill=\"\(color)\"/>")
                }
            }
            let legendY = top + 10 + Double(index) * 20
            svg.append("<line x1=\"\(f(width - right + 15))\" y1=\"\(f(legendY))\" x2=\"\(f(width - right + 40))\" y2=\"\(f(legendY))\" stroke=\"\(color)\" stroke-width=\"2\"/>")
            svg.append("<text x=\"\(f(width - right + 46))\" y=\"\(f(legendY + 4))\">\(escape(line.name))</text>")
        }
        svg.append("</svg>")
        return svg.joined(separator: "\n") + "\n"
    }

    private func transform(_ x: Double) -> Double { logarithmicX ? Glibc.log10(x) : x }

    /// Tick positions in data units.
    private func xTicks(minimum: Double, maximum: Double) -> [Double] {
        if logarithmicX {
            // Powers of ten; over a short range also 2x and 5x, so that a sweep of
            // 1-16 still has labels to read off.
            let multiples: [Double] = maximum - minimum <= 2 ? [1, 2, 5] : [1]
            var ticks: [Double] = []
            var power = minimum.rounded(.down)
            while power <= maximum + 1e-9 {
                for multiple in multiples {
                    let tick = multiple * Glibc.pow(10, power)
                    let position = Glibc.log10(tick)
                    if position >= minimum - 1e-9, position <= maximum + 1e-9 { ticks.append(tick) }
                }
                power += 1
            }
            return ticks
        }
        let step = niceCeiling((maximum - minimum) / 6)
        var ticks: [Double] = []
        var tick = (minimum / step).rounded(.up) * step
        while tick <= maximum + 1e-9 {
            ticks.append(tick)
            tick += step
        }
        return ticks
    }

    private func niceCeiling(_ value: Double) -> Double {
        let magnitude = Glibc.pow(10, Glibc.log10(value).rounded(.down))
        for factor in [1.0, 2, 2.5, 5, 10] where factor * magnitude >= value { return factor * magnitude }
        return 10 * magnitude
    }

    private func label(_ value: Double) -> String {
        if value >= 1_000_000 { return format(value / 1_000_000, value.truncatingRemainder(dividingBy: 1_000_000) == 0 ? 0 : 1) + "M" }
        if value >= 10_000 { return format(value / 1000, value.truncatingRemainder(dividingBy: 1000) == 0 ? 0 : 1) + "k" }
        return value == value.rounded() ? String(Int(value)) : format(value, 2)
    }

    private func f(_ value: Double) -> String { format(value, 1) }

    private func escape(_ text: String) -> String {
        var escaped = ""
        for character in text {
            switch character {
            case "&": escaped += "&amp;"
            case "<": escaped += "&lt;"
            case ">": escaped += "&gt;"
            default: escaped.append(character)
            }
        }
        return escaped
    }
}

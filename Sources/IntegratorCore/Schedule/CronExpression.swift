// A standard five-field cron expression: parsing, validation with precise messages, and the normalized rendering.
// The fire-time search (and its daylight-saving rules) lives in CronExpression+DST.swift.

/// A parsed cron schedule: `minute hour day-of-month month day-of-week`.
///
/// Accepted syntax, per field: `*`, numbers, lists (`1,5`), ranges (`1-5`), steps over a range or `*` (`*/15`,
/// `10-50/5`), month names `jan`–`dec` and weekday names `sun`–`sat` (case-insensitive), day-of-week `0`–`7` where both
/// `0` and `7` are Sunday. The macros `@hourly`, `@daily` (`@midnight`), `@weekly`, `@monthly` and `@yearly`
/// (`@annually`) stand for their five-field equivalents.
///
/// Day matching follows Vixie cron: when both day-of-month and day-of-week are restricted (neither field starts with
/// `*`), a day matches if *either* matches; otherwise both must match.
///
/// Two expressions are equal when they fire at the same times under the same daylight-saving rules, so `1,2,3 * * * *`
/// equals `1-3 * * * *`, while `* * * * *` and `0-59 * * * *` differ (whether a field starts with `*` matters, see
/// ``followsRealTime``).
public struct CronExpression: Sendable, Equatable, CustomStringConvertible {
    /// The five fields, in the order they are written.
    public enum Field: String, Sendable, CaseIterable {
        case minute
        case hour
        case dayOfMonth = "day-of-month"
        case month
        case dayOfWeek = "day-of-week"

        /// The smallest and largest value the field accepts as written (day-of-week accepts 7 for Sunday).
        public var bounds: ClosedRange<Int> {
            switch self {
            case .minute: 0...59
            case .hour: 0...23
            case .dayOfMonth: 1...31
            case .month: 1...12
            case .dayOfWeek: 0...7
            }
        }

        /// The range `*` stands for (day-of-week: Sunday to Saturday).
        var starBounds: ClosedRange<Int> { self == .dayOfWeek ? 0...6 : bounds }

        /// Three-letter names, lowercase, for the value `nameBase + index`.
        var names: (list: [String], base: Int)? {
            switch self {
            case .month: (["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1)
            case .dayOfWeek: (["sun", "mon", "tue", "wed", "thu", "fri", "sat"], 0)
            default: nil
            }
        }
    }

    /// The allowed values of one field as a bit set (bit `n` set means value `n` matches), and whether the field
    /// was written starting with `*`.
    struct Values: Sendable, Equatable {
        var bits: UInt64
        var isStar: Bool

        func contains(_ value: Int) -> Bool { bits & (1 << UInt64(value)) != 0 }

        /// The smallest allowed value that is at least `value`, if any.
        func first(atLeast value: Int) -> Int? {
            guard value < 64 else { return nil }
            let remaining = bits & ~((1 << UInt64(value)) &- 1)
            return remaining == 0 ? nil : remaining.trailingZeroBitCount
        }

        var sorted: [Int] { (0..<64).filter(contains) }
    }

    let minute: Values
    let hour: Values
    let dayOfMonth: Values
    let month: Values
    /// Sunday is 0; a written 7 is stored as 0.
    let dayOfWeek: Values

    private static let macros: [String: String] = [
        "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *",
        "@monthly": "0 0 1 * *",
        "@weekly": "0 0 * * 0",
        "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
        "@hourly": "0 * * * *",
    ]

    /// Parses a five-field expression or a macro.
    ///
    /// - Throws: ``CronParseError`` naming the field and the part that is wrong, e.g. `hour: 24 is out of range 0-23`.
    public init(_ expression: String) throws(CronParseError) {
        var fields = expression.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" })
        if let first = fields.first, first.hasPrefix("@") {
            guard let expanded = Self.macros[first.lowercased()] else {
                throw CronParseError(
                    "unknown macro '\(first)' (expected @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly)",
                    expression: expression)
            }
            guard fields.count == 1 else {
                throw CronParseError("a macro stands alone, but '\(first)' is followed by \(fields.count - 1) more field(s)",
                                     expression: expression)
            }
            fields = expanded.split(separator: " ")
        }
        guard fields.count == 5 else {
            throw CronParseError("expected 5 fields, got \(fields.count)", expression: expression)
        }
        minute = try Self.parse(fields[0], as: .minute, in: expression)
        hour = try Self.parse(fields[1], as: .hour, in: expression)
        dayOfMonth = try Self.parse(fields[2], as: .dayOfMonth, in: expression)
        month = try Self.parse(fields[3], as: .month, in: expression)
        dayOfWeek = try Self.parse(fields[4], as: .dayOfWeek, in: expression)
    }

    /// The values a field matches, ascending (day-of-week: 0 = Sunday … 6 = Saturday).
    public func values(of field: Field) -> [Int] { values(field).sorted }

    /// Whether the schedule follows real time across daylight-saving changes (its minute or hour field starts with
    /// `*`): it then fires in both runs of a repeated hour and never for wall times that a spring-forward skips. A
    /// schedule that does not follow real time is a fixed-time schedule: it fires once for each matching wall time,
    /// at the first instant after a skipped one and at the first run of a repeated one.
    public var followsRealTime: Bool { minute.isStar || hour.isStar }

    /// The normalized expression, five fields with numbers only (`@weekly` renders as `0 0 * * 0`). Parsing it
    /// gives an equal expression.
    public var description: String {
        Field.allCases.map { Self.render(values($0), as: $0) }.joined(separator: " ")
    }

    func values(_ field: Field) -> Values {
        switch field {
        case .minute: minute
        case .hour: hour
        case .dayOfMonth: dayOfMonth
        case .month: month
        case .dayOfWeek: dayOfWeek
        }
    }

    // MARK: Parsing

    private static func parse(_ text: Substring, as field: Field, in expression: String) throws(CronParseError) -> Values {
        func failure(_ message: String) -> CronParseError {
            CronParseError("\(field.rawValue): \(message)", field: field, expression: expression)
        }
        func number(_ token: Substring) throws(CronParseError) -> Int {
            if !token.isEmpty, token.allSatisfy({ $0.isASCII && $0.isNumber }) {
                guard token.count <= 9, let value = Int(token), field.bounds.contains(value) else {
                    throw failure("\(token) is out of range \(field.bounds.lowerBound)-\(field.bounds.upperBound)")
                }
                return value
            }
            if let (names, base) = field.names, let index = names.firstIndex(of: token.lowercased()) {
                return base + index
            }
            switch field {
            case .month: throw failure("'\(token)' is not a number or a month name (jan-dec)")
            case .dayOfWeek: throw failure("'\(token)' is not a number or a weekday name (sun-sat)")
            default: throw failure("'\(token)' is not a number")
            }
        }

        var bits: UInt64 = 0
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            guard !item.isEmpty else { throw failure("empty item in the list '\(text)'") }
            let parts = item.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count <= 2 else { throw failure("'\(item)' has more than one '/'") }
            var step = 1
            if parts.count == 2 {
                let stepText = parts[1]
                guard !stepText.isEmpty, stepText.allSatisfy({ $0.isASCII && $0.isNumber }) else {
                    throw failure("step '\(stepText)' in '\(item)' is not a number")
                }
                guard stepText.count <= 9, let value = Int(stepText), value >= 1 else {
                    throw failure("step \(stepText) in '\(item)' must be at least 1")
                }
                step = value
            }
            let base = parts[0]
            let range: ClosedRange<Int>
            if base == "*" {
                range = field.starBounds
            } else if base.contains("-") {
                let ends = base.split(separator: "-", omittingEmptySubsequences: false)
                guard ends.count == 2, !ends[0].isEmpty, !ends[1].isEmpty else {
                    throw failure("'\(base)' is not a valid range (expected low-high)")
                }
                let low = try number(ends[0])
                let high = try number(ends[1])
                guard low <= high else { throw failure("range \(base) goes backwards (\(low) > \(high))") }
                range = low...high
            } else {
                guard parts.count == 1 else {
                    throw failure("a step needs a range or '*' before it, as in '*/\(step)', got '\(item)'")
                }
                let value = try number(base)
                range = value...value
            }
            for value in stride(from: range.lowerBound, through: range.upperBound, by: step) {
                // Day-of-week 7 is another name for Sunday.
                let stored = field == .dayOfWeek && value == 7 ? 0 : value
                bits |= 1 << UInt64(stored)
            }
        }
        return Values(bits: bits, isStar: text.hasPrefix("*"))
    }

    // MARK: Rendering

    /// `*` or `*/n` when the field was written starting with a star (that changes its meaning, so it is kept, with
    /// any extra values after it); otherwise the values as the shortest mix of single numbers, ranges and stepped
    /// ranges.
    private static func render(_ values: Values, as field: Field) -> String {
        var remaining = values.sorted
        guard values.isStar else { return renderList(remaining) }
        // Any item that starts with `*` includes the field's lowest value, so `remaining` is not empty here.
        let star = field.starBounds
        var step = star.count
        if remaining.count > 1 {
            let candidate = remaining[1] - remaining[0]
            if stride(from: star.lowerBound, through: star.upperBound, by: candidate).allSatisfy(values.contains) {
                step = candidate
            }
        }
        let covered = Set(stride(from: star.lowerBound, through: star.upperBound, by: step))
        remaining.removeAll(where: covered.contains)
        let head = step == 1 ? "*" : "*/\(step)"
        return remaining.isEmpty ? head : head + "," + renderList(remaining)
    }

    private static func renderList(_ sorted: [Int]) -> String {
        var pieces: [String] = []
        var index = 0
        while index < sorted.count {
            let start = sorted[index]
            var end = index
            if index + 1 < sorted.count {
                let step = sorted[index + 1] - start
                end = index + 1
                while end + 1 < sorted.count, sorted[end + 1] - sorted[end] == step { end += 1 }
                if end - index >= 2 {
                    pieces.append(step == 1 ? "\(start)-\(sorted[end])" : "\(start)-\(sorted[end])/\(step)")
                    index = end + 1
                    continue
                }
            }
            pieces.append(String(start))
            index += 1
        }
        return pieces.joined(separator: ",")
    }
}

/// Why a cron expression was rejected. The message names the field and the part that is wrong, e.g.
/// `hour: 24 is out of range 0-23`, `minute: 'x' is not a number`, `expected 5 fields, got 4`.
public struct CronParseError: Error, Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible {
    /// The whole message, starting with the field name when one field is at fault.
    public let message: String
    /// The field at fault, or nil when the expression as a whole is wrong (field count, unknown macro).
    public let field: CronExpression.Field?
    /// The expression as given.
    public let expression: String

    init(_ message: String, field: CronExpression.Field? = nil, expression: String) {
        self.message = message
        self.field = field
        self.expression = expression
    }

    public var description: String { message }
    public var debugDescription: String { "invalid cron expression '\(expression)': \(message)" }
}

// A plugin's list of fields, and everything derived from it: validation with paths, defaults, JSON Schema, masking.
import Foundation

/// The fields of one object (a credentials type's public or secret part, or a provider's config).
public struct FieldSet: Sendable, ExpressibleByArrayLiteral {
    public var fields: [Field]

    public init(_ fields: [Field]) { self.fields = fields }
    public init(arrayLiteral elements: Field...) { self.fields = elements }

    public static let empty = FieldSet([])

    public subscript(name: String) -> Field? { fields.first { $0.name == name } }

    /// Names of the secret fields.
    public var secretNames: [String] { fields.filter(\.isSecret).map(\.name) }

    /// Checks `value` (absent counts as `{}`) and returns every issue, each with its path under `path`.
    /// Unknown keys are issues too: a typo in a field name should not be silently ignored.
    public func issues(in value: JSONValue?, at path: String) -> [FieldIssue] {
        let object: [String: JSONValue]
        switch value {
        case nil, .null?: object = [:]
        case .object(let members)?: object = members
        case let other?: return [FieldIssue(field: path, message: "must be an object, got \(other.typeName)")]
        }
        var issues: [FieldIssue] = []
        let known = Set(fields.map(\.name))
        for key in object.keys.sorted() where !known.contains(key) {
            issues.append(FieldIssue(field: Self.join(path, key), message: "is not a known field"))
        }
        for field in fields {
            let fieldPath = Self.join(path, field.name)
            guard let member = object[field.name], member != .null else {
                if field.isRequired && field.defaultValue == nil {
                    issues.append(FieldIssue(field: fieldPath, message: "is required"))
                }
                continue
            }
            issues.append(contentsOf: field.issues(in: member, at: fieldPath))
        }
        return issues
    }

    /// Validates and returns the object with defaults filled in and nulls dropped.
    /// - Throws: ``ValidationFailure`` with every issue found.
    public func normalize(_ value: JSONValue?, at path: String) throws(ValidationFailure) -> [String: JSONValue] {
        var found: [FieldIssue] = []
        let result = normalized(value, at: path, collecting: &found)
        guard found.isEmpty else { throw ValidationFailure(found) }
        return result
    }

    /// Validates once, appending every issue to `issues`; returns the object with defaults filled in and nulls
    /// dropped, or an empty object when something was wrong.
    public func normalized(_ value: JSONValue?, at path: String, collecting issues: inout [FieldIssue]) -> [String: JSONValue] {
        let found = self.issues(in: value, at: path)
        guard found.isEmpty else {
            issues.append(contentsOf: found)
            return [:]
        }
        var result: [String: JSONValue] = [:]
        let object = value?.objectValue ?? [:]
        for field in fields {
            if let member = object[field.name], member != .null {
                result[field.name] = member
            } else if let defaultValue = field.defaultValue {
                result[field.name] = defaultValue
            }
        }
        return result
    }

    /// The same object with every secret field that is present replaced by ``Secret/mask``.
    public func masked(_ object: [String: JSONValue]) -> [String: JSONValue] {
        var result = object
        for name in secretNames where result[name] != nil {
            result[name] = .string(Secret.mask)
        }
        return result
    }

    /// JSON Schema (draft 2020-12) for the object, with the extra keys an admin form needs:
    /// `placeholder`, and `secret` (also expressed as the standard `writeOnly`).
    public func jsonSchema(title: String? = nil) -> JSONValue {
        var properties: [String: JSONValue] = [:]
        for field in fields { properties[field.name] = field.jsonSchema() }
        var schema: [String: JSONValue] = [
            "type": "object",
            "properties": .object(properties),
            "required": .array(fields.filter { $0.isRequired && $0.defaultValue == nil }.map { .string($0.name) }),
            "additionalProperties": false,
        ]
        if let title { schema["title"] = .string(title) }
        return .object(schema)
    }

    /// Problems with the declarations themselves (duplicate names, defaults that fail their own rules),
    /// reported when a plugin is registered so they surface at startup rather than at a user's request.
    public func declarationProblems() -> [String] {
        var problems: [String] = []
        var seen = Set<String>()
        for field in fields {
            if !seen.insert(field.name).inserted { problems.append("field '\(field.name)' is declared twice") }
            if field.name.isEmpty { problems.append("a field has an empty name") }
            if let defaultValue = field.defaultValue {
                for issue in field.issues(in: defaultValue, at: field.name) {
                    problems.append("default of \(issue.field) \(issue.message)")
                }
            }
            if field.isSecret && field.kind != .string { problems.append("secret field '\(field.name)' must be a string") }
        }
        return problems
    }

    static func join(_ path: String, _ key: String) -> String {
        path.isEmpty ? key : "\(path).\(key)"
    }
}

extension Field {
    /// Every issue with one present, non-null value of this field.
    func issues(in value: JSONValue, at path: String) -> [FieldIssue] {
        switch kind {
        case .string:
            guard let text = value.stringValue else { return [typeIssue(path, "a string", value)] }
            return stringIssues(text, at: path)
        case .integer:
            guard let number = value.intValue else {
                return [typeIssue(path, "an integer", value)]
            }
            return rangeIssues(Double(number), at: path)
        case .number:
            guard let number = value.doubleValue else { return [typeIssue(path, "a number", value)] }
            return rangeIssues(number, at: path)
        case .boolean:
            return value.boolValue == nil ? [typeIssue(path, "true or false", value)] : []
        case .array(let itemKind):
            guard let items = value.arrayValue else { return [typeIssue(path, "an array", value)] }
            var issues: [FieldIssue] = []
            if let minItems, items.count < minItems {
                issues.append(FieldIssue(field: path, message: "needs at least \(minItems) item\(minItems == 1 ? "" : "s")"))
            }
            for (index, item) in items.enumerated() {
                let itemPath = "\(path)[\(index)]"
                switch itemKind {
                case .string where item.stringValue == nil:
                    issues.append(typeIssue(itemPath, "a string", item))
                case .integer where item.intValue == nil:
                    issues.append(typeIssue(itemPath, "an integer", item))
                default:
                    if let choices, !choices.contains(item) {
                        issues.append(FieldIssue(field: itemPath, message: "must be one of \(Self.list(choices))"))
                    }
                }
            }
            if Set(items).count != items.count {
                issues.append(FieldIssue(field: path, message: "must not repeat an item"))
            }
            return issues
        }
    }

    private func typeIssue(_ path: String, _ expected: String, _ value: JSONValue) -> FieldIssue {
        FieldIssue(field: path, message: "must be \(expected), got \(value.typeName)")
    }

    private func stringIssues(_ text: String, at path: String) -> [FieldIssue] {
        var issues: [FieldIssue] = []
        if let minLength, text.count < minLength {
            issues.append(FieldIssue(field: path, message: minLength == 1 ? "must not be empty" : "must be at least \(minLength) characters"))
        }
        if let maxLength, text.count > maxLength {
            issues.append(FieldIssue(field: path, message: "must be at most \(maxLength) characters"))
        }
        if let choices, !choices.contains(.string(text)) {
            issues.append(FieldIssue(field: path, message: "must be one of \(Self.list(choices))"))
        }
        if let format, !text.isEmpty, let problem = format.problem(with: text) {
            issues.append(FieldIssue(field: path, message: problem))
        }
        return issues
    }

    private func rangeIssues(_ number: Double, at path: String) -> [FieldIssue] {
        if let minimum, number < minimum {
            return [FieldIssue(field: path, message: "must be at least \(Self.render(minimum))\(maximum.map { " and at most \(Self.render($0))" } ?? "")")]
        }
        if let maximum, number > maximum {
            return [FieldIssue(field: path, message: "must be at most \(Self.render(maximum))\(minimum.map { " and at least \(Self.render($0))" } ?? "")")]
        }
        if let choices, !choices.contains(.number(number)) {
            return [FieldIssue(field: path, message: "must be one of \(Self.list(choices))")]
        }
        return []
    }

    static func render(_ number: Double) -> String {
        number.rounded() == number ? String(Int64(number)) : String(number)
    }

    static func list(_ choices: [JSONValue]) -> String {
        choices.map { $0.stringValue.map { "'\($0)'" } ?? $0.encodedString() }.joined(separator: ", ")
    }

    /// This field's JSON Schema property.
    func jsonSchema() -> JSONValue {
        var schema: [String: JSONValue] = ["title": .string(title)]
        switch kind {
        case .string: schema["type"] = "string"
        case .integer: schema["type"] = "integer"
        case .number: schema["type"] = "number"
        case .boolean: schema["type"] = "boolean"
        case .array(let itemKind):
            schema["type"] = "array"
            var items: [String: JSONValue] = ["type": itemKind == .string ? "string" : "integer"]
            if let choices { items["enum"] = .array(choices) }
            schema["items"] = .object(items)
            schema["uniqueItems"] = true
            if let minItems { schema["minItems"] = .number(Double(minItems)) }
        }
        if let help { schema["description"] = .string(help) }
        if !examples.isEmpty { schema["examples"] = .array(examples) }
        if let placeholder { schema["placeholder"] = .string(placeholder) }
        if let defaultValue { schema["default"] = defaultValue }
        if let choices, kind != .array(of: .string), kind != .array(of: .integer) { schema["enum"] = .array(choices) }
        if let minimum { schema["minimum"] = .number(minimum) }
        if let maximum { schema["maximum"] = .number(maximum) }
        if let minLength { schema["minLength"] = .number(Double(minLength)) }
        if let maxLength { schema["maxLength"] = .number(Double(maxLength)) }
        if let format {
            switch format {
            case .url: schema["format"] = "uri"
            case .email: schema["format"] = "email"
            case .timeZone: schema["format"] = "time-zone"
            case .dateTime(let pattern):
                schema["format"] = "date-time-pattern"
                schema["pattern_hint"] = .string(pattern)
                if placeholder == nil { schema["placeholder"] = .string(pattern) }
            }
        }
        if isSecret {
            schema["secret"] = true
            schema["writeOnly"] = true
        }
        return .object(schema)
    }
}

extension Field.Format {
    /// Why `text` does not have this format, or `nil` when it does.
    func problem(with text: String) -> String? {
        switch self {
        case .url:
            guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
                scheme == "http" || scheme == "https", let host = components.host, !host.isEmpty
            else { return "must be an absolute http or https URL" }
            return nil
        case .email:
            let parts = text.split(separator: "@", omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty, parts[1].contains("."), !parts[1].hasPrefix("."), !parts[1].hasSuffix(".")
            else { return "must be an email address" }
            return nil
        case .timeZone:
            return TimeZone(identifier: text) == nil ? "must be an IANA time zone such as America/Sao_Paulo" : nil
        case .dateTime(let pattern):
            return Self.parseDate(text, pattern: pattern) == nil ? "must be a date and time written as \(pattern)" : nil
        }
    }

    /// Parses `text` written with `pattern`'s tokens, in UTC; `nil` when it does not match or names no real date.
    static func parseDate(_ text: String, pattern: String) -> Date? {
        let tokens: [(String, Calendar.Component)] = [
            ("YYYY", .year), ("MM", .month), ("DD", .day), ("HH", .hour), ("mm", .minute), ("ss", .second),
        ]
        var components = DateComponents()
        var textIndex = text.startIndex
        var patternIndex = pattern.startIndex
        while patternIndex < pattern.endIndex {
            let rest = pattern[patternIndex...]
            if let (token, component) = tokens.first(where: { rest.hasPrefix($0.0) }) {
                let end = text.index(textIndex, offsetBy: token.count, limitedBy: text.endIndex) ?? text.endIndex
                let digits = text[textIndex..<end]
                guard digits.count == token.count, digits.allSatisfy(\.isASCII), let value = Int(digits) else { return nil }
                components.setValue(value, for: component)
                textIndex = end
                patternIndex = pattern.index(patternIndex, offsetBy: token.count)
            } else {
                guard textIndex < text.endIndex, text[textIndex] == pattern[patternIndex] else { return nil }
                textIndex = text.index(after: textIndex)
                patternIndex = pattern.index(after: patternIndex)
            }
        }
        guard textIndex == text.endIndex else { return nil }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        guard let date = calendar.date(from: components) else { return nil }
        // Reject dates that roll over (31 February becomes 3 March in `date(from:)`).
        let back = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        for (_, component) in tokens {
            if let wanted = components.value(for: component), back.value(for: component) != wanted { return nil }
        }
        return date
    }
}

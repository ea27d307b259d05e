// Reads a JSON request body field by field, collecting every problem instead of stopping at the first.

/// A JSON object being read as API input. Each accessor records an issue when the member is wrong;
/// ``finish()`` also flags members nobody asked for, then throws every issue at once.
public struct InputObject {
    private let members: [String: JSONValue]
    private let path: String
    private var read: Set<String> = []
    public private(set) var issues: [FieldIssue] = []

    /// - Throws: ``ValidationFailure`` when `value` is not an object.
    public init(_ value: JSONValue, path: String = "") throws(ValidationFailure) {
        guard case .object(let members) = value else {
            throw ValidationFailure([FieldIssue(field: path.isEmpty ? "body" : path, message: "must be a JSON object, got \(value.typeName)")])
        }
        self.members = members
        self.path = path
    }

    private func fieldPath(_ key: String) -> String { FieldSet.join(path, key) }

    /// Whether the member is present (even as null).
    public func has(_ key: String) -> Bool { members[key] != nil }

    public mutating func raw(_ key: String) -> JSONValue? {
        read.insert(key)
        return members[key]
    }

    public mutating func addIssue(_ key: String, _ message: String) {
        issues.append(FieldIssue(field: fieldPath(key), message: message))
    }

    public mutating func add(_ more: [FieldIssue]) { issues.append(contentsOf: more) }

    /// A string member. `required` absent or null is an issue; so is a wrong type or a length outside `length`.
    public mutating func string(_ key: String, required: Bool = false, length: ClosedRange<Int> = 1...200) -> String? {
        guard let value = raw(key), value != .null else {
            if required { addIssue(key, "is required") }
            return nil
        }
        guard let text = value.stringValue else {
            addIssue(key, "must be a string, got \(value.typeName)")
            return nil
        }
        if text.count < length.lowerBound {
            addIssue(key, length.lowerBound == 1 ? "must not be empty" : "must be at least \(length.lowerBound) characters")
            return nil
        }
        if text.count > length.upperBound {
            addIssue(key, "must be at most \(length.upperBound) characters")
            return nil
        }
        return text
    }

    public mutating func bool(_ key: String, required: Bool = false) -> Bool? {
        guard let value = raw(key), value != .null else {
            if required { addIssue(key, "is required") }
            return nil
        }
        guard let flag = value.boolValue else {
            addIssue(key, "must be true or false, got \(value.typeName)")
            return nil
        }
        return flag
    }

    public mutating func integer(_ key: String, required: Bool = false, range: ClosedRange<Int>) -> Int? {
        guard let value = raw(key), value != .null else {
            if required { addIssue(key, "is required") }
            return nil
        }
        guard let number = value.intValue else {
            addIssue(key, "must be an integer, got \(value.typeName)")
            return nil
        }
        guard range.contains(number) else {
            addIssue(key, "must be from \(range.lowerBound) to \(range.upperBound)")
            return nil
        }
        return number
    }

    /// An object member (absent or null gives `nil`).
    public mutating func object(_ key: String) -> JSONValue? {
        guard let value = raw(key), value != .null else { return nil }
        guard value.objectValue != nil else {
            addIssue(key, "must be an object, got \(value.typeName)")
            return nil
        }
        return value
    }

    /// Flags unknown members, then throws if anything was wrong.
    public mutating func finish() throws(ValidationFailure) {
        for key in members.keys.sorted() where !read.contains(key) {
            addIssue(key, "is not a known field")
        }
        if !issues.isEmpty { throw ValidationFailure(issues) }
    }
}

// A problem with one input field, named by its path; lists of these become the `details` of a 400 response.

/// One thing wrong with one field. Messages never repeat the value, so a secret typed into the wrong place is not echoed.
public struct FieldIssue: Sendable, Hashable, Codable, CustomStringConvertible {
    /// Dotted path from the request body's root, for example `config.records` or `secret.token`.
    public var field: String
    public var message: String

    public init(field: String, message: String) {
        self.field = field
        self.message = message
    }

    public var description: String { "\(field): \(message)" }
}

/// Input that failed validation: every issue found, not just the first.
public struct ValidationFailure: Error, Sendable, CustomStringConvertible {
    public var issues: [FieldIssue]

    public init(_ issues: [FieldIssue]) { self.issues = issues }

    public var description: String { issues.map(\.description).joined(separator: "; ") }
}

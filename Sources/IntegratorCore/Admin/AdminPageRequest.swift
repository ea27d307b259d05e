// What an admin page handler is given: who is asking, the path's parameters, the query string and the posted form.
import Foundation

/// Name and value pairs from a query string or an `application/x-www-form-urlencoded` body, in order.
public struct AdminFormValues: Sendable {
    public var pairs: [(name: String, value: String)]

    public init(_ pairs: [(name: String, value: String)] = []) { self.pairs = pairs }

    /// Parses `a=1&b=x+y&c=%C3%A9`.
    public init(urlEncoded text: Substring) {
        pairs = text.split(separator: "&", omittingEmptySubsequences: true).map { part in
            let pieces = part.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            return (Self.decode(pieces[0]), pieces.count > 1 ? Self.decode(pieces[1]) : "")
        }
    }

    /// The first value of `name` that is not blank, trimmed of surrounding spaces.
    public subscript(name: String) -> String? {
        for pair in pairs where pair.name == name {
            let trimmed = pair.value.trimmingCharacters(in: .whitespacesAndNewlines)
            if !trimmed.isEmpty { return trimmed }
        }
        return nil
    }

    /// Every non-blank value of `name` (checkboxes, multi-selects).
    public func all(_ name: String) -> [String] {
        pairs.filter { $0.name == name }.map { $0.value.trimmingCharacters(in: .whitespacesAndNewlines) }.filter { !$0.isEmpty }
    }

    /// Whether the form carried `name` at all (a checkbox is absent when unchecked).
    public func has(_ name: String) -> Bool { pairs.contains { $0.name == name } }

    /// `a=1&b=2`, percent-encoded, for links that keep a query.
    public var encoded: String {
        pairs.map { "\(Self.encode($0.name))=\(Self.encode($0.value))" }.joined(separator: "&")
    }

    /// These values with `name` set to `value` alone (or removed when `nil`).
    public func replacing(_ name: String, with value: String?) -> AdminFormValues {
        var copy = AdminFormValues(pairs.filter { $0.name != name })
        if let value { copy.pairs.append((name, value)) }
        return copy
    }

    static func decode(_ text: Substring) -> String {
        let spaced = text.replacingOccurrences(of: "+", with: " ")
        return spaced.removingPercentEncoding ?? spaced
    }

    static func encode(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: unreserved) ?? ""
    }

    private static let unreserved = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~")
}

/// One request to an admin page or action.
public struct AdminPageRequest: Sendable {
    /// Who is signed in.
    public var username: String
    public var role: Role
    /// `{name}` segments of the page's path.
    public var parameters: [String: String]
    public var query: AdminFormValues
    /// The posted form of an action (empty for views).
    public var form: AdminFormValues

    public init(username: String, role: Role, parameters: [String: String], query: AdminFormValues, form: AdminFormValues) {
        self.username = username
        self.role = role
        self.parameters = parameters
        self.query = query
        self.form = form
    }

    /// A `{name}` segment of the path.
    public func parameter(_ name: String) throws -> String {
        guard let value = parameters[name], !value.isEmpty else {
            throw ServiceError(.notFound, "the address lacks its \(name)")
        }
        return value
    }

    /// Whether the signed-in user holds at least `role`.
    public func allows(_ role: Role) -> Bool { self.role >= role }

    /// The page of a list the query asks for: `cursor` from a "next page" link, 50 rows.
    public var page: PageRequest {
        PageRequest(limit: PageRequest.defaultLimit, after: query["cursor"].flatMap(PageRequest.decodeCursor))
    }
}

// Keyset pagination shared by every list endpoint: ordered by id, continued by an opaque cursor.
import Foundation
import SQLKit

/// What a list call asks for.
public struct PageRequest: Sendable {
    /// At most this many items (1…500).
    public var limit: Int
    /// The last id of the previous page, decoded from the opaque cursor.
    public var after: String?

    public static let maximumLimit = 500
    public static let defaultLimit = 50

    public init(limit: Int = PageRequest.defaultLimit, after: String? = nil) {
        self.limit = limit
        self.after = after
    }

    /// Decodes a cursor produced by ``Page/nextCursor``; `nil` when it is not one.
    public static func decodeCursor(_ cursor: String) -> String? {
        var base64 = cursor.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        guard let data = Data(base64Encoded: base64), let text = String(data: data, encoding: .utf8),
            text.hasPrefix("id:")
        else { return nil }
        return String(text.dropFirst(3))
    }

    static func encodeCursor(_ id: String) -> String {
        Data("id:\(id)".utf8).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}

/// One page of results.
public struct Page<Item: Sendable>: Sendable {
    public var items: [Item]
    /// Pass back as `cursor` for the next page; `nil` on the last page.
    public var nextCursor: String?

    public init(items: [Item], nextCursor: String?) {
        self.items = items
        self.nextCursor = nextCursor
    }

    /// A page from up to `limit + 1` items read in key order: the extra one, dropped, only says that another page
    /// exists. For plugins that page their own tables by a text key (`WHERE key > after ORDER BY key LIMIT limit + 1`).
    public init(overfetched items: [Item], limit: Int, key: (Item) -> String) {
        var items = items
        var next: String?
        if items.count > limit {
            items.removeLast(items.count - limit)
            next = items.last.map { PageRequest.encodeCursor(key($0)) }
        }
        self.init(items: items, nextCursor: next)
    }

    public func map<Other>(_ transform: (Item) throws -> Other) rethrows -> Page<Other> {
        Page<Other>(items: try items.map(transform), nextCursor: nextCursor)
    }
}

extension SQLSelectBuilder {
    /// Applies keyset pagination on `id` and fetches one row more than asked, to know whether another page exists.
    func page<Item: Sendable>(
        _ request: PageRequest, decode: (any SQLRow) throws -> Item, id: (Item) -> String
    ) async throws -> Page<Item> {
        var query = self
        if let after = request.after { query = query.where("id", .greaterThan, after) }
        let rows = try await query.orderBy("id").limit(request.limit + 1).all()
        return Page(overfetched: try rows.map(decode), limit: request.limit, key: id)
    }
}

extension SQLRow {
    /// A JSON column stored as text.
    func decodeJSON(column: String) throws -> JSONValue {
        try JSONValue.parse(try decode(column: column, as: String.self))
    }
}

// Fetch state: the cursor each integration's provider saved per stream, so the next fetch goes on from there.
import Foundation
import SQLKit

/// One stream's saved cursor.
public struct StreamCursor: Sendable, Equatable {
    public var stream: String
    public var cursor: JSONValue
    public var updatedAt: Date
}

/// Reads and writes `fetch_state`.
public struct FetchStateStore: Sendable {
    let database: Database

    public init(database: Database) { self.database = database }

    /// Every stream's cursor for the integration, by stream name.
    public func cursors(integrationID: String) async throws -> [StreamCursor] {
        try await database.withSQL { sql in
            try await sql.select().column("*").from("fetch_state").where("integration_id", .equal, integrationID)
                .orderBy("stream").all().map { row in
                    StreamCursor(
                        stream: try row.decode(column: "stream", as: String.self),
                        cursor: try row.decodeJSON(column: "cursor"),
                        updatedAt: try row.decode(column: "updated_at", as: Date.self))
                }
        }
    }

    /// Saves a cursor outside a fetch (fetches checkpoint through ``RecordStore/write(_:integrationID:eventPrefix:checkpoints:at:)``).
    public func save(integrationID: String, stream: String, cursor: JSONValue, at now: Date) async throws {
        try await database.withSQL { sql in
            try await Self.save(sql, integrationID: integrationID, stream: stream, cursor: cursor, at: now)
        }
    }

    /// Forgets the saved cursors (of one stream, or all), so the next fetch starts from the beginning.
    /// - Returns: how many streams were reset.
    @discardableResult
    public func reset(integrationID: String, stream: String? = nil) async throws -> Int {
        try await database.transaction { sql in
            var count = sql.select().column(SQLFunction("COUNT", args: SQLLiteral.all), as: "n").from("fetch_state")
                .where("integration_id", .equal, integrationID)
            var delete = sql.delete(from: "fetch_state").where("integration_id", .equal, integrationID)
            if let stream {
                count = count.where("stream", .equal, stream)
                delete = delete.where("stream", .equal, stream)
            }
            let removed = try await count.first()?.decode(column: "n", as: Int.self) ?? 0
            try await delete.run()
            return removed
        }
    }

    static func save(_ sql: any SQLDatabase, integrationID: String, stream: String, cursor: JSONValue, at now: Date) async throws {
        try await sql.raw(
            """
            INSERT INTO fetch_state (integration_id, stream, cursor, updated_at)
            VALUES (\(bind: integrationID), \(bind: stream), \(bind: cursor.encodedString()), \(bind: now))
            ON CONFLICT (integration_id, stream) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at
            """
        ).run()
    }
}

// Change events: one row per record that a fetch created or changed, with a copy of the record, for delivery.
import Foundation
import SQLKit

/// A record that appeared or changed. `type` is `<provider>.<stream>.created` or `<provider>.<stream>.updated`.
public struct ChangeEvent: Sendable, Equatable {
    public var id: String
    public var type: String
    public var integrationID: String
    public var stream: String
    public var recordID: String
    public var externalID: String
    /// The record's normalized data as it was when the event happened.
    public var data: JSONValue
    public var createdAt: Date
}

/// Filters for listing events.
public struct EventFilter: Sendable {
    public var type: String?
    public var integrationID: String?
    /// Only events created at or after this moment.
    public var since: Date?

    public init(type: String? = nil, integrationID: String? = nil, since: Date? = nil) {
        self.type = type
        self.integrationID = integrationID
        self.since = since
    }
}

/// Reads `events` (fetches write them through ``RecordStore``).
public struct EventStore: Sendable {
    let database: Database

    public init(database: Database) { self.database = database }

    /// Events in id (creation) order.
    public func list(_ filter: EventFilter, page: PageRequest) async throws -> Page<ChangeEvent> {
        try await database.withSQL { sql in
            var query = sql.select().column("*").from("events")
            if let type = filter.type { query = query.where("type", .equal, type) }
            if let integrationID = filter.integrationID { query = query.where("integration_id", .equal, integrationID) }
            if let since = filter.since {
                // The id bound lets the primary key skip older events; created_at keeps the filter exact.
                query = query.where("id", .greaterThanOrEqual, Identifier.lowerBound(for: since))
                    .where("created_at", .greaterThanOrEqual, since)
            }
            return try await query.page(page, decode: Self.decode, id: \.id)
        }
    }

    public func find(id: String) async throws -> ChangeEvent? {
        try await database.withSQL { sql in
            try await sql.select().column("*").from("events").where("id", .equal, id).first().map(Self.decode)
        }
    }

    static func decode(_ row: any SQLRow) throws -> ChangeEvent {
        ChangeEvent(
            id: try row.decode(column: "id", as: String.self),
            type: try row.decode(column: "type", as: String.self),
            integrationID: try row.decode(column: "integration_id", as: String.self),
            stream: try row.decode(column: "stream", as: String.self),
            recordID: try row.decode(column: "record_id", as: String.self),
            externalID: try row.decode(column: "external_id", as: String.self),
            data: try row.decodeJSON(column: "data"),
            createdAt: try row.decode(column: "created_at", as: Date.self))
    }
}

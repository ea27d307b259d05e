// Stored records: one row per (integration, stream, external id), written in batches together with their change events.
import Foundation
import SQLKit

/// A record as stored: the provider's normalized data, its content hash, and when it was first, last and lately seen.
public struct StoredRecord: Sendable, Equatable {
    public var id: String
    public var integrationID: String
    public var stream: String
    public var externalID: String
    public var data: JSONValue
    /// SHA-256 of the canonical JSON of `data`, in hex.
    public var contentHash: String
    public var firstSeenAt: Date
    /// The last fetch that yielded the record, changed or not.
    public var lastSeenAt: Date
    /// The last fetch that changed the record (its creation, at first).
    public var updatedAt: Date
}

/// A normalized record ready to be written: its data already in canonical JSON, with the hash of that text.
public struct PreparedRecord: Sendable, Equatable {
    public var stream: String
    public var externalID: String
    /// Canonical JSON (sorted keys, no whitespace), so equal content gives equal text and an equal hash.
    public var json: String
    public var contentHash: String

    public init(stream: String, externalID: String, json: String, contentHash: String) {
        self.stream = stream
        self.externalID = externalID
        self.json = json
        self.contentHash = contentHash
    }
}

/// How the records of one batch compared with what was stored.
public struct RecordCounts: Sendable, Equatable {
    public var new = 0
    public var updated = 0
    public var unchanged = 0

    public init(new: Int = 0, updated: Int = 0, unchanged: Int = 0) {
        self.new = new
        self.updated = updated
        self.unchanged = unchanged
    }

    public var total: Int { new + updated + unchanged }

    public static func += (left: inout RecordCounts, right: RecordCounts) {
        left.new += right.new
        left.updated += right.updated
        left.unchanged += right.unchanged
    }
}

/// Filters for listing one integration's records.
public struct RecordFilter: Sendable {
    public var stream: String?
    /// Only records whose content changed at or after this moment.
    public var updatedSince: Date?

    public init(stream: String? = nil, updatedSince: Date? = nil) {
        self.stream = stream
        self.updatedSince = updatedSince
    }
}

/// Reads `records`, and writes records, their events and fetch checkpoints in one transaction per batch.
public struct RecordStore: Sendable {
    let database: Database

    /// The most records one ``write(_:integrationID:eventPrefix:checkpoints:at:)`` call takes, so that every
    /// multi-row statement stays under both engines' limits on bound parameters.
    public static let maximumBatchSize = 1000

    public init(database: Database) { self.database = database }

    /// Upserts `records` (distinct by stream and external id), inserts a `<eventPrefix>.<stream>.created` or
    /// `.updated` event for each new or changed one, marks unchanged ones as seen, and saves `checkpoints`,
    /// all in one transaction: a checkpoint is never stored without the records that came before it.
    /// - Returns: how many records of each stream were new, updated and unchanged.
    public func write(
        _ records: [PreparedRecord], integrationID: String, eventPrefix: String, checkpoints: [String: JSONValue] = [:],
        at now: Date
    ) async throws -> [String: RecordCounts] {
        precondition(records.count <= Self.maximumBatchSize, "batches are limited to \(Self.maximumBatchSize) records")
        let engine = database.engine
        return try await database.transaction { sql in
            if engine == .postgres {
                // Two fetches of one integration may overlap; taking turns per batch keeps new/updated decisions
                // (and so the events) exact. Released at commit.
                try await sql.raw("SELECT pg_advisory_xact_lock(7242005, hashtext(\(bind: integrationID)))").run()
            }
            var counts: [String: RecordCounts] = [:]
            if !records.isEmpty {
                let stored = try await Self.storedHashes(sql, integrationID: integrationID, records: records)
                var upserts: [[any SQLExpression]] = []
                var events: [[any SQLExpression]] = []
                var seenIDs: [String] = []
                upserts.reserveCapacity(records.count)
                for record in records {
                    let key = RecordKey(stream: record.stream, externalID: record.externalID)
                    let action: String
                    let recordID: String
                    if let existing = stored[key] {
                        guard existing.hash != record.contentHash else {
                            counts[record.stream, default: RecordCounts()].unchanged += 1
                            seenIDs.append(existing.id)
                            continue
                        }
                        counts[record.stream, default: RecordCounts()].updated += 1
                        (recordID, action) = (existing.id, "updated")
                    } else {
                        counts[record.stream, default: RecordCounts()].new += 1
                        (recordID, action) = (Identifier.make(now: now), "created")
                    }
                    let data = SQLBind(record.json)
                    upserts.append([
                        SQLBind(recordID), SQLBind(integrationID), SQLBind(record.stream), SQLBind(record.externalID), data,
                        SQLBind(record.contentHash), SQLBind(now), SQLBind(now), SQLBind(now),
                    ])
                    events.append([
                        SQLBind(Identifier.make(now: now)), SQLBind("\(eventPrefix).\(record.stream).\(action)"),
                        SQLBind(integrationID), SQLBind(record.stream), SQLBind(recordID), SQLBind(record.externalID), data,
                        SQLBind(now),
                    ])
                }
                if !upserts.isEmpty {
                    try await sql.insert(into: "records")
                        .columns(
                            "id", "integration_id", "stream", "external_id", "data", "content_hash", "first_seen_at",
                            "last_seen_at", "updated_at"
                        )
                        .rows(upserts)
                        .onConflict(with: ["integration_id", "stream", "external_id"]) {
                            $0.set(excludedValueOf: "data").set(excludedValueOf: "content_hash")
                                .set(excludedValueOf: "last_seen_at").set(excludedValueOf: "updated_at")
                        }
                        .run()
                    try await sql.insert(into: "events")
                        .columns("id", "type", "integration_id", "stream", "record_id", "external_id", "data", "created_at")
                        .rows(events)
                        .run()
                }
                if !seenIDs.isEmpty {
                    try await sql.update("records").set("last_seen_at", to: now).where("id", .in, seenIDs).run()
                }
            }
            for (stream, cursor) in checkpoints.sorted(by: { $0.key < $1.key }) {
                try await FetchStateStore.save(sql, integrationID: integrationID, stream: stream, cursor: cursor, at: now)
            }
            return counts
        }
    }

    private struct RecordKey: Hashable {
        var stream: String
        var externalID: String
    }

    /// Ids and content hashes of the stored rows among `records`.
    private static func storedHashes(
        _ sql: any SQLDatabase, integrationID: String, records: [PreparedRecord]
    ) async throws -> [RecordKey: (id: String, hash: String)] {
        var found: [RecordKey: (id: String, hash: String)] = [:]
        found.reserveCapacity(records.count)
        for (stream, group) in Dictionary(grouping: records, by: \.stream) {
            let rows = try await sql.select().column("id").column("external_id").column("content_hash").from("records")
                .where("integration_id", .equal, integrationID).where("stream", .equal, stream)
                .where("external_id", .in, group.map(\.externalID))
                .all()
            for row in rows {
                let key = RecordKey(stream: stream, externalID: try row.decode(column: "external_id", as: String.self))
                found[key] = (try row.decode(column: "id", as: String.self), try row.decode(column: "content_hash", as: String.self))
            }
        }
        return found
    }

    public func find(id: String) async throws -> StoredRecord? {
        try await database.withSQL { sql in
            try await sql.select().column("*").from("records").where("id", .equal, id).first().map(Self.decode)
        }
    }

    /// One integration's records in id (creation) order.
    public func list(integrationID: String, _ filter: RecordFilter, page: PageRequest) async throws -> Page<StoredRecord> {
        try await database.withSQL { sql in
            var query = sql.select().column("*").from("records").where("integration_id", .equal, integrationID)
            if let stream = filter.stream { query = query.where("stream", .equal, stream) }
            if let since = filter.updatedSince { query = query.where("updated_at", .greaterThanOrEqual, since) }
            return try await query.page(page, decode: Self.decode, id: \.id)
        }
    }

    /// How many records an integration has.
    public func count(integrationID: String) async throws -> Int {
        try await database.withSQL { sql in
            try await sql.raw("SELECT COUNT(*) AS n FROM records WHERE integration_id = \(bind: integrationID)")
                .first()?.decode(column: "n", as: Int.self) ?? 0
        }
    }

    static func decode(_ row: any SQLRow) throws -> StoredRecord {
        StoredRecord(
            id: try row.decode(column: "id", as: String.self),
            integrationID: try row.decode(column: "integration_id", as: String.self),
            stream: try row.decode(column: "stream", as: String.self),
            externalID: try row.decode(column: "external_id", as: String.self),
            data: try row.decodeJSON(column: "data"),
            contentHash: try row.decode(column: "content_hash", as: String.self),
            firstSeenAt: try row.decode(column: "first_seen_at", as: Date.self),
            lastSeenAt: try row.decode(column: "last_seen_at", as: Date.self),
            updatedAt: try row.decode(column: "updated_at", as: Date.self))
    }
}

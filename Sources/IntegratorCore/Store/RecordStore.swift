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
    /// Told about the events of each batch inside the batch's transaction.
    let subscribers: EventSubscribers?

    /// The most records one ``write(_:integrationID:eventPrefix:checkpoints:at:)`` call takes, so that every
    /// multi-row statement stays under both engines' limits on bound parameters.
    public static let maximumBatchSize = 1000

    public init(database: Database) {
        self.database = database
        self.subscribers = nil
    }

    /// A store whose writes hand their change events to `subscribers` before committing.
    init(database: Database, subscribers: EventSubscribers?) {
        self.database = database
        self.subscribers = subscribers
    }

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
        let subscribers = self.subscribers
        return try await database.withTransaction { transaction in
            let sql = transaction.sql
            if engine == .postgres {
                // Two fetches of one integration may overlap; taking turns per batch keeps new/updated decisions
                // (and so the events) exact. Released at commit.
                try await sql.raw("SELECT pg_advisory_xact_lock(7242005, hashtext(\(bind: integrationID)))").run()
            }
            var counts: [String: RecordCounts] = [:]
            if !records.isEmpty {
                let stored = try await Self.storedHashes(sql, engine: engine, integrationID: integrationID, records: records)
                var changes = Changes(capacity: records.count)
                for record in records {
                    let key = RecordKey(stream: record.stream, externalID: record.externalID)
                    if let existing = stored[key] {
                        if existing.hash == record.contentHash {
                            counts[record.stream, default: RecordCounts()].unchanged += 1
                            changes.seenIDs.append(existing.id)
                        } else {
                            counts[record.stream, default: RecordCounts()].updated += 1
                            changes.add(record, id: existing.id, eventID: Identifier.make(now: now), eventType: "\(eventPrefix).\(record.stream).updated")
                        }
                    } else {
                        counts[record.stream, default: RecordCounts()].new += 1
                        changes.add(
                            record, id: Identifier.make(now: now), eventID: Identifier.make(now: now),
                            eventType: "\(eventPrefix).\(record.stream).created")
                    }
                }
                switch engine {
                case .postgres: try await Self.applyPostgres(changes, sql, integrationID: integrationID, at: now)
                case .sqlite: try await Self.applySQLite(changes, sql, integrationID: integrationID, at: now)
                }
                if let subscribers, !changes.ids.isEmpty {
                    try await subscribers.deliver(changes.events(integrationID: integrationID, at: now), in: transaction)
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

    /// A batch's writes, column by column: records to upsert (new or changed), with one event each, and the ids
    /// of unchanged records that were seen again.
    private struct Changes {
        var ids: [String] = []
        var streams: [String] = []
        var externalIDs: [String] = []
        var data: [String] = []
        var hashes: [String] = []
        var eventIDs: [String] = []
        var eventTypes: [String] = []
        var seenIDs: [String] = []

        init(capacity: Int) {
            for keyPath in [\Changes.ids, \.streams, \.externalIDs, \.data, \.hashes, \.eventIDs, \.eventTypes] {
                self[keyPath: keyPath].reserveCapacity(capacity)
            }
        }

        /// The batch's events, decoded lazily: a subscriber that wants none of their types never pays for the JSON.
        func events(integrationID: String, at now: Date) -> LazyEvents {
            LazyEvents(
                types: eventTypes,
                make: { index in
                    ChangeEvent(
                        id: eventIDs[index], type: eventTypes[index], integrationID: integrationID, stream: streams[index],
                        recordID: ids[index], externalID: externalIDs[index], data: (try? JSONValue.parse(data[index])) ?? .null,
                        createdAt: now)
                })
        }

        mutating func add(_ record: PreparedRecord, id: String, eventID: String, eventType: String) {
            ids.append(id)
            streams.append(record.stream)
            externalIDs.append(record.externalID)
            data.append(record.json)
            hashes.append(record.contentHash)
            eventIDs.append(eventID)
            eventTypes.append(eventType)
        }
    }

    /// PostgreSQL takes each column as one array parameter (`unnest`), so a batch is three short statements with a
    /// dozen parameters, not thousands: binding and parsing stay cheap however large the batch.
    private static func applyPostgres(_ changes: Changes, _ sql: any SQLDatabase, integrationID: String, at now: Date) async throws {
        if !changes.ids.isEmpty {
            try await sql.raw(
                """
                INSERT INTO records (id, integration_id, stream, external_id, data, content_hash, first_seen_at, last_seen_at, updated_at)
                SELECT r.id, \(bind: integrationID), r.stream, r.external_id, r.data, r.content_hash, \(bind: now), \(bind: now), \(bind: now)
                FROM unnest(\(bind: changes.ids)::text[], \(bind: changes.streams)::text[], \(bind: changes.externalIDs)::text[],
                            \(bind: changes.data)::text[], \(bind: changes.hashes)::text[]) AS r(id, stream, external_id, data, content_hash)
                ON CONFLICT (integration_id, stream, external_id) DO UPDATE SET data = excluded.data,
                    content_hash = excluded.content_hash, last_seen_at = excluded.last_seen_at, updated_at = excluded.updated_at
                """
            ).run()
            try await sql.raw(
                """
                INSERT INTO events (id, type, integration_id, stream, record_id, external_id, data, created_at)
                SELECT e.id, e.type, \(bind: integrationID), e.stream, e.record_id, e.external_id, e.data, \(bind: now)
                FROM unnest(\(bind: changes.eventIDs)::text[], \(bind: changes.eventTypes)::text[], \(bind: changes.streams)::text[],
                            \(bind: changes.ids)::text[], \(bind: changes.externalIDs)::text[], \(bind: changes.data)::text[])
                     AS e(id, type, stream, record_id, external_id, data)
                """
            ).run()
        }
        if !changes.seenIDs.isEmpty {
            try await sql.raw("UPDATE records SET last_seen_at = \(bind: now) WHERE id = ANY(\(bind: changes.seenIDs)::text[])").run()
        }
    }

    /// SQLite runs in this process, so parameters cost little: multi-row statements with one parameter per value.
    private static func applySQLite(_ changes: Changes, _ sql: any SQLDatabase, integrationID: String, at now: Date) async throws {
        if !changes.ids.isEmpty {
            let stamp = SQLBind(now)
            let integration = SQLBind(integrationID)
            try await sql.insert(into: "records")
                .columns(
                    "id", "integration_id", "stream", "external_id", "data", "content_hash", "first_seen_at", "last_seen_at",
                    "updated_at"
                )
                .rows(changes.ids.indices.map { index -> [any SQLExpression] in
                    [
                        SQLBind(changes.ids[index]), integration, SQLBind(changes.streams[index]), SQLBind(changes.externalIDs[index]),
                        SQLBind(changes.data[index]), SQLBind(changes.hashes[index]), stamp, stamp, stamp,
                    ]
                })
                .onConflict(with: ["integration_id", "stream", "external_id"]) {
                    $0.set(excludedValueOf: "data").set(excludedValueOf: "content_hash")
                        .set(excludedValueOf: "last_seen_at").set(excludedValueOf: "updated_at")
                }
                .run()
            try await sql.insert(into: "events")
                .columns("id", "type", "integration_id", "stream", "record_id", "external_id", "data", "created_at")
                .rows(changes.ids.indices.map { index -> [any SQLExpression] in
                    [
                        SQLBind(changes.eventIDs[index]), SQLBind(changes.eventTypes[index]), integration, SQLBind(changes.streams[index]),
                        SQLBind(changes.ids[index]), SQLBind(changes.externalIDs[index]), SQLBind(changes.data[index]), stamp,
                    ]
                })
                .run()
        }
        if !changes.seenIDs.isEmpty {
            try await sql.update("records").set("last_seen_at", to: now).where("id", .in, changes.seenIDs).run()
        }
    }

    /// Ids and content hashes of the stored rows among `records`.
    private static func storedHashes(
        _ sql: any SQLDatabase, engine: Database.Engine, integrationID: String, records: [PreparedRecord]
    ) async throws -> [RecordKey: (id: String, hash: String)] {
        var found: [RecordKey: (id: String, hash: String)] = [:]
        found.reserveCapacity(records.count)
        for (stream, group) in Dictionary(grouping: records, by: \.stream) {
            let externalIDs = group.map(\.externalID)
            let rows: [any SQLRow]
            switch engine {
            case .postgres:
                rows = try await sql.raw(
                    """
                    SELECT id, external_id, content_hash FROM records
                    WHERE integration_id = \(bind: integrationID) AND stream = \(bind: stream) AND external_id = ANY(\(bind: externalIDs)::text[])
                    """
                ).all()
            case .sqlite:
                rows = try await sql.select().column("id").column("external_id").column("content_hash").from("records")
                    .where("integration_id", .equal, integrationID).where("stream", .equal, stream)
                    .where("external_id", .in, externalIDs)
                    .all()
            }
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

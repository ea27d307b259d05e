// Every SQL statement of the scheduled messages plugin.
import Foundation
import IntegratorCore
import SQLKit

struct ScheduledMessageStore: Sendable {
    let engine: Database.Engine

    /// Creates the message or replaces the one with its id (time, payload, URL and version).
    func upsert(_ messages: [ScheduledMessage], at now: Date, _ sql: any SQLDatabase) async throws {
        for statement in upsertStatements(messages, at: now) { try await sql.raw(statement).run() }
    }

    /// The statements that store `messages` (or replace those with their ids), 500 rows each; ids must be distinct.
    func upsertStatements(_ messages: [ScheduledMessage], at now: Date) -> [SQLQueryString] {
        messages.chunks(of: 500).map { chunk in
            let rows = chunk.map { message -> SQLQueryString in
                """
                (\(bind: message.id), \(bind: message.version), \(bind: message.scheduleTo), \(bind: message.dueAt),
                 \(bind: message.payload.encodedString()), \(bind: message.webhookURL), \(bind: now), \(bind: now))
                """
            }
            return """
                INSERT INTO scheduled_messages (id, version, schedule_to, due_at, payload, webhook_url, created_at, updated_at)
                VALUES \(rows.joined(separator: ", "))
                ON CONFLICT (id) DO UPDATE SET version = excluded.version, schedule_to = excluded.schedule_to,
                    due_at = excluded.due_at, payload = excluded.payload, webhook_url = excluded.webhook_url,
                    updated_at = excluded.updated_at
                """
        }
    }

    func message(_ id: String, _ sql: any SQLDatabase) async throws -> ScheduledMessage? {
        try await sql.raw("SELECT * FROM scheduled_messages WHERE id = \(bind: id)").first().map(Self.message)
    }

    /// Up to `limit` messages after the id `after`, in id order, that pass `filter` (all when nil). A prefix is read
    /// as a range of the primary key; `contains` is checked on every row of that range (or of the table).
    func page(after: String?, limit: Int, filter: MessageFilter?, _ sql: any SQLDatabase) async throws -> [ScheduledMessage] {
        try await sql.raw(
            "SELECT * FROM scheduled_messages WHERE \(conditions(after: after, filter: filter)) ORDER BY id LIMIT \(bind: limit)"
        ).all().map(Self.message)
    }

    /// Removes up to `limit` messages that pass `filter`; returns their ids.
    func deleteMatching(_ filter: MessageFilter, limit: Int, _ sql: any SQLDatabase) async throws -> [String] {
        try await sql.raw(
            """
            DELETE FROM scheduled_messages WHERE id IN (
                SELECT id FROM scheduled_messages WHERE \(conditions(after: nil, filter: filter)) ORDER BY id LIMIT \(bind: limit)
            ) RETURNING id
            """
        ).all().map { try $0.decode(column: "id", as: String.self) }
    }

    /// Removes the message and returns it, if it exists. Whoever gets the row owns its firing: a concurrent upsert or
    /// delete waits for this transaction, or made it find nothing.
    func take(_ id: String, _ sql: any SQLDatabase) async throws -> ScheduledMessage? {
        try await sql.raw("DELETE FROM scheduled_messages WHERE id = \(bind: id) RETURNING *").first().map(Self.message)
    }

    /// Removes one message; whether it existed.
    func delete(_ id: String, _ sql: any SQLDatabase) async throws -> Bool {
        !(try await sql.raw("DELETE FROM scheduled_messages WHERE id = \(bind: id) RETURNING id").all()).isEmpty
    }

    /// Removes the messages that still have the versions asked for, records them as fired at `now`, and returns them.
    /// Versions are unique, so matching the ids (the primary key) and then the versions cannot pair one message's id
    /// with another's version. On PostgreSQL both happen in one statement whose text does not depend on how many
    /// messages it takes (array parameters), so the server parses it once per connection.
    func takeFiring(_ requests: [MessageVersion], at now: Date, _ sql: any SQLDatabase) async throws -> [ScheduledMessage] {
        guard !requests.isEmpty else { return [] }
        guard engine == .sqlite else {
            return try await sql.raw(
                """
                WITH taken AS (
                    DELETE FROM scheduled_messages
                    WHERE id = ANY(\(bind: Array(Set(requests.map(\.id))))::text[])
                      AND version = ANY(\(bind: Array(Set(requests.map(\.version))))::text[])
                    RETURNING *
                ), fired AS (
                    INSERT INTO scheduled_messages_fired (event_id, message_id, schedule_to, due_at, webhook_url, fired_at)
                    SELECT version, id, schedule_to, due_at, webhook_url, \(bind: now) FROM taken
                    ON CONFLICT (event_id) DO NOTHING
                )
                SELECT * FROM taken
                """
            ).all().map(Self.message)
        }
        let taken = try await take(requests, sql)
        try await recordFirings(taken, at: now, sql)
        return taken
    }

    /// Removes the messages that still have the versions asked for, and returns them.
    private func take(_ requests: [MessageVersion], _ sql: any SQLDatabase) async throws -> [ScheduledMessage] {
        var taken: [ScheduledMessage] = []
        for chunk in requests.chunks(of: 500) {
            let ids = Array(Set(chunk.map(\.id)))
            let versions = Array(Set(chunk.map(\.version)))
            taken += try await sql.raw(
                "DELETE FROM scheduled_messages WHERE id IN (\(binds: ids)) AND version IN (\(binds: versions)) RETURNING *"
            ).all().map(Self.message)
        }
        return taken
    }

    /// Notes that each message fired as the webhook event named by its version.
    func recordFirings(_ messages: [ScheduledMessage], at now: Date, _ sql: any SQLDatabase) async throws {
        for chunk in messages.chunks(of: 500) {
            let rows = chunk.map { message -> SQLQueryString in
                """
                (\(bind: message.version), \(bind: message.id), \(bind: message.scheduleTo), \(bind: message.dueAt),
                 \(bind: message.webhookURL), \(bind: now))
                """
            }
            try await sql.raw(
                """
                INSERT INTO scheduled_messages_fired (event_id, message_id, schedule_to, due_at, webhook_url, fired_at)
                VALUES \(rows.joined(separator: ", "))
                ON CONFLICT (event_id) DO NOTHING
                """
            ).run()
        }
    }

    /// The firings of messages with this id, oldest first.
    func firings(of id: String, _ sql: any SQLDatabase) async throws -> [ScheduledMessageFiring] {
        try await sql.raw("SELECT * FROM scheduled_messages_fired WHERE message_id = \(bind: id) ORDER BY fired_at, event_id").all().map { row in
            ScheduledMessageFiring(
                eventID: try row.decode(column: "event_id", as: String.self),
                scheduleTo: try row.decode(column: "schedule_to", as: String.self),
                dueAt: try row.decode(column: "due_at", as: Date.self),
                webhookURL: try row.decode(column: "webhook_url", as: String.self),
                firedAt: try row.decode(column: "fired_at", as: Date.self))
        }
    }

    private func conditions(after: String?, filter: MessageFilter?) -> SQLQueryString {
        var parts: [SQLQueryString] = ["1 = 1"]
        if let after { parts.append("id > \(bind: after)") }
        if let prefix = filter?.prefix {
            parts.append("id >= \(bind: prefix)")
            if let upper = MessageFilter.upperBound(ofPrefix: prefix) { parts.append("id < \(bind: upper)") }
        }
        if let contains = filter?.contains {
            parts.append(engine == .postgres ? "strpos(id, \(bind: contains)) > 0" : "instr(id, \(bind: contains)) > 0")
        }
        return parts.joined(separator: " AND ")
    }

    static func message(_ row: any SQLRow) throws -> ScheduledMessage {
        ScheduledMessage(
            id: try row.decode(column: "id", as: String.self),
            version: try row.decode(column: "version", as: String.self),
            scheduleTo: try row.decode(column: "schedule_to", as: String.self),
            dueAt: try row.decode(column: "due_at", as: Date.self),
            payload: try JSONValue.parse(try row.decode(column: "payload", as: String.self)),
            webhookURL: try row.decode(column: "webhook_url", as: String.self))
    }
}

/// One firing of a message: the webhook event that delivers it.
struct ScheduledMessageFiring: Sendable {
    var eventID: String
    var scheduleTo: String
    var dueAt: Date
    var webhookURL: String
    var firedAt: Date

    var json: JSONValue {
        [
            "eventId": .string(eventID), "scheduleTo": .string(scheduleTo), "webhookUrl": .string(webhookURL),
            "firedAt": .string(firedAt.apiString), "event": .string("/api/v1/webhooks/events/\(eventID)"),
        ]
    }
}

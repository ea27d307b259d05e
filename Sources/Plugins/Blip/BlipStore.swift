// Every SQL statement of the BLiP plugin on its own tables: the outbox, claims, outcomes, status callbacks, identities.
import Foundation
import IntegratorCore
import SQLKit

/// Where a notification stands. Sending moves it from `pending` to `sent` (or `failed`); BLiP's notifications move
/// it on to `delivered` and `read`, never back.
public enum BlipStatus: String, Sendable, CaseIterable {
    case pending, sent, failed, delivered, read
}

struct BlipNotification: Sendable {
    var id: String
    var integrationID: String?
    var externalID: String?
    /// E.164 when it could be normalised; as given otherwise (then the notification failed for it).
    var phone: String
    var template: BlipAPI.Template
    var status: BlipStatus
    var messageID: String
    var attempts: Int
    var lastError: String?
    var nextAttemptAt: Date
    var sentAt: Date?
    var deliveredAt: Date?
    var readAt: Date?
    var createdAt: Date
    var updatedAt: Date

    var json: JSONValue {
        func date(_ value: Date?) -> JSONValue { value.map { .string($0.apiString) } ?? .null }
        return [
            "id": .string(id), "integration": integrationID.map(JSONValue.string) ?? .null,
            "external_id": externalID.map(JSONValue.string) ?? .null, "phone": .string(phone),
            "template": .string(template.name), "namespace": .string(template.namespace), "language": .string(template.language),
            "parameters": .array(template.parameters.map(JSONValue.string)), "status": .string(status.rawValue),
            "message_id": .string(messageID), "attempts": .number(Double(attempts)),
            "last_error": lastError.map(JSONValue.string) ?? .null,
            "next_attempt_at": status == .pending ? date(nextAttemptAt) : .null,
            "sent_at": date(sentAt), "delivered_at": date(deliveredAt), "read_at": date(readAt),
            "created_at": .string(createdAt.apiString), "updated_at": .string(updatedAt.apiString),
        ]
    }
}

/// How one send ended, as the store records it.
struct BlipOutcome: Sendable {
    enum Kind: Sendable {
        case sent
        case failed(String)
        case retry(String, at: Date)
    }

    var notificationID: String
    var messageID: String
    var kind: Kind
}

struct BlipStore: Sendable {
    static let columns = """
        id, integration_id, external_id, phone, template, namespace, language, parameters, status, message_id, attempts,
        last_error, next_attempt_at, claimed_until, sent_at, delivered_at, read_at, created_at, updated_at
        """

    // MARK: Outbox

    func insert(_ notifications: [BlipNotification], _ sql: any SQLDatabase) async throws {
        for chunk in notifications.chunks(of: 500) {
            let rows = chunk.map { item -> SQLQueryString in
                """
                (\(bind: item.id), \(bind: item.integrationID), \(bind: item.externalID), \(bind: item.phone), \(bind: item.template.name),
                 \(bind: item.template.namespace), \(bind: item.template.language), \(bind: Self.encode(item.template.parameters)),
                 \(bind: item.status.rawValue), \(bind: item.messageID), \(bind: item.attempts), \(bind: item.lastError),
                 \(bind: item.nextAttemptAt), NULL, NULL, NULL, NULL, \(bind: item.createdAt), \(bind: item.updatedAt))
                """
            }
            try await sql.raw("INSERT INTO blip_notifications (\(unsafeRaw: Self.columns)) VALUES \(rows.joined(separator: ", "))").run()
        }
    }

    func notification(_ id: String, _ sql: any SQLDatabase) async throws -> BlipNotification? {
        try await sql.raw("SELECT * FROM blip_notifications WHERE id = \(bind: id)").first().map(Self.notification)
    }

    /// The notifications made before under these external ids, by external id.
    func notifications(externalIDs: [String], _ sql: any SQLDatabase) async throws -> [String: BlipNotification] {
        guard !externalIDs.isEmpty else { return [:] }
        var found: [String: BlipNotification] = [:]
        for chunk in Array(Set(externalIDs)).chunks(of: 500) {
            for row in try await sql.raw("SELECT * FROM blip_notifications WHERE external_id IN (\(binds: Array(chunk)))").all() {
                let item = try Self.notification(row)
                if let key = item.externalID { found[key] = item }
            }
        }
        return found
    }

    func list(status: BlipStatus?, phone: String?, after: String?, limit: Int, _ sql: any SQLDatabase) async throws -> [BlipNotification] {
        var filters: [SQLQueryString] = ["id > \(bind: after ?? "")"]
        if let status { filters.append("status = \(bind: status.rawValue)") }
        if let phone { filters.append("phone = \(bind: phone)") }
        return try await sql.raw(
            "SELECT * FROM blip_notifications WHERE \(filters.joined(separator: " AND ")) ORDER BY id LIMIT \(bind: limit)"
        ).all().map(Self.notification)
    }

    // MARK: Sending

    /// Takes up to `limit` due notifications of an integration (and those made for no integration) for a send,
    /// until `leaseUntil`: a worker that dies holding them leaves them to a later run once the lease ends. Two
    /// runs at once never take the same row (PostgreSQL skips rows another claim has locked; SQLite has one writer).
    func claim(
        integrationID: String, limit: Int, now: Date, leaseUntil: Date, _ sql: any SQLDatabase, engine: Database.Engine
    ) async throws -> [BlipNotification] {
        let lock: SQLQueryString = engine == .postgres ? "FOR UPDATE SKIP LOCKED" : ""
        return try await sql.raw(
            """
            UPDATE blip_notifications SET claimed_until = \(bind: leaseUntil), attempts = attempts + 1, updated_at = \(bind: now)
            WHERE id IN (
                SELECT id FROM blip_notifications
                WHERE status = \(bind: BlipStatus.pending.rawValue) AND next_attempt_at <= \(bind: now)
                    AND (claimed_until IS NULL OR claimed_until <= \(bind: now))
                    AND (integration_id IS NULL OR integration_id = \(bind: integrationID))
                ORDER BY next_attempt_at, id LIMIT \(bind: limit) \(lock))
            RETURNING *
            """
        ).all().map(Self.notification)
    }

    /// Takes, among the notifications mirrored from a business table under `externalIDs`, those pending and due. The
    /// status check is ``SQLQueryString/statusIsOneOf(_:_:)``, so that `blip_notifications_due` does not serve it and
    /// PostgreSQL reads the notifications named rather than every due one.
    func claim(externalIDs: [String], now: Date, leaseUntil: Date, _ sql: any SQLDatabase) async throws -> [BlipNotification] {
        guard !externalIDs.isEmpty else { return [] }
        return try await sql.raw(
            """
            UPDATE blip_notifications SET claimed_until = \(bind: leaseUntil), attempts = attempts + 1, updated_at = \(bind: now)
            WHERE external_id IN (\(binds: externalIDs))
                AND \(SQLQueryString.statusIsOneOf("status", [BlipStatus.pending.rawValue]))
                AND next_attempt_at <= \(bind: now) AND (claimed_until IS NULL OR claimed_until <= \(bind: now))
            RETURNING *
            """
        ).all().map(Self.notification)
    }

    /// Records how sends ended, each only while its notification is still pending under the same message id: a
    /// status callback that came first, or another copy of the run, is never overwritten.
    func record(_ outcomes: [BlipOutcome], at now: Date, _ sql: any SQLDatabase, engine: Database.Engine) async throws {
        if engine == .postgres {
            for chunk in outcomes.chunks(of: 1000) { try await recordTogether(Array(chunk), at: now, sql) }
            return
        }
        let pending = BlipStatus.pending.rawValue
        for outcome in outcomes {
            let fence: SQLQueryString =
                "WHERE id = \(bind: outcome.notificationID) AND message_id = \(bind: outcome.messageID) AND status = \(bind: pending)"
            switch outcome.kind {
            case .sent:
                try await sql.raw(
                    """
                    UPDATE blip_notifications SET status = \(bind: BlipStatus.sent.rawValue), sent_at = \(bind: now), last_error = NULL,
                        claimed_until = NULL, updated_at = \(bind: now) \(fence)
                    """
                ).run()
            case .failed(let reason):
                try await sql.raw(
                    """
                    UPDATE blip_notifications SET status = \(bind: BlipStatus.failed.rawValue), last_error = \(bind: reason),
                        claimed_until = NULL, updated_at = \(bind: now) \(fence)
                    """
                ).run()
            case .retry(let reason, let at):
                try await sql.raw(
                    """
                    UPDATE blip_notifications SET last_error = \(bind: reason), next_attempt_at = \(bind: at), claimed_until = NULL,
                        updated_at = \(bind: now) \(fence)
                    """
                ).run()
            }
        }
    }

    /// ``record(_:at:_:engine:)`` on PostgreSQL: one statement for many outcomes, each fenced as there; the notifications
    /// are found by id (the status check, as in ``claim(externalIDs:now:leaseUntil:_:)``, is kept off the index).
    private func recordTogether(_ outcomes: [BlipOutcome], at now: Date, _ sql: any SQLDatabase) async throws {
        let columns: [(kind: String, reason: String, dueAt: Date)] = outcomes.map { outcome in
            switch outcome.kind {
            case .sent: ("sent", "", now)
            case .failed(let reason): ("failed", reason, now)
            case .retry(let reason, let at): ("retry", reason, at)
            }
        }
        let (kinds, reasons, dueAt) = (columns.map(\.kind), columns.map(\.reason), columns.map(\.dueAt))
        try await sql.raw(
            """
            UPDATE blip_notifications AS n SET
                status = CASE WHEN i.kind = 'retry' THEN n.status ELSE i.kind END,
                sent_at = CASE WHEN i.kind = 'sent' THEN \(bind: now) ELSE n.sent_at END,
                next_attempt_at = CASE WHEN i.kind = 'retry' THEN i.due_at ELSE n.next_attempt_at END,
                last_error = NULLIF(i.reason, ''), claimed_until = NULL, updated_at = \(bind: now)
            FROM unnest(\(bind: outcomes.map(\.notificationID))::text[], \(bind: outcomes.map(\.messageID))::text[],
                \(bind: kinds)::text[], \(bind: reasons)::text[], \(bind: dueAt)::timestamptz[]) AS i(id, message_id, kind, reason, due_at)
            WHERE n.id = i.id AND n.message_id = i.message_id
                AND \(SQLQueryString.statusIsOneOf("n.status", [BlipStatus.pending.rawValue]))
            """
        ).run()
    }

    // MARK: Status callbacks

    /// Applies one of BLiP's message notifications to the notification sent with `messageID`, only forwards:
    /// `received` makes a pending or sent one `delivered`, `consumed` makes any of those `read`, `failed` fails a
    /// pending or sent one. Returns the status after it, or `nil` for an unknown message id.
    func apply(event: String, reason: String?, messageID: String, at now: Date, _ sql: any SQLDatabase) async throws -> BlipStatus? {
        let (target, from, stamp): (BlipStatus, [BlipStatus], String?) =
            switch event {
            case "received": (.delivered, [.pending, .sent], "delivered_at")
            case "consumed": (.read, [.pending, .sent, .delivered], "read_at")
            case "failed": (.failed, [.pending, .sent], nil)
            default: (.sent, [], nil)
            }
        if !from.isEmpty {
            let stampSet: SQLQueryString = stamp.map { ", \(unsafeRaw: $0) = \(bind: now)" } ?? ""
            let errorSet: SQLQueryString = target == .failed ? ", last_error = \(bind: reason ?? "BLiP reported the message failed")" : ""
            try await sql.raw(
                """
                UPDATE blip_notifications SET status = \(bind: target.rawValue), claimed_until = NULL, updated_at = \(bind: now)
                    \(stampSet) \(errorSet)
                WHERE message_id = \(bind: messageID) AND status IN (\(binds: from.map(\.rawValue)))
                """
            ).run()
        }
        return try await sql.raw("SELECT status FROM blip_notifications WHERE message_id = \(bind: messageID)").first()
            .map { BlipStatus(rawValue: try $0.decode(column: "status", as: String.self)) ?? .pending }
    }

    // MARK: Identities

    /// Accounts looked up at or after `since`, by phone.
    func accounts(credentialsID: String, phones: [String], since: Date, _ sql: any SQLDatabase) async throws -> [String: String] {
        guard !phones.isEmpty else { return [:] }
        var found: [String: String] = [:]
        for chunk in Array(Set(phones)).chunks(of: 500) {
            let rows = try await sql.raw(
                """
                SELECT phone, account FROM blip_identities WHERE credentials_id = \(bind: credentialsID)
                    AND phone IN (\(binds: Array(chunk))) AND looked_up_at >= \(bind: since)
                """
            ).all()
            for row in rows { found[try row.decode(column: "phone", as: String.self)] = try row.decode(column: "account", as: String.self) }
        }
        return found
    }

    func saveAccounts(_ accounts: [String: String], credentialsID: String, at now: Date, _ sql: any SQLDatabase) async throws {
        for chunk in accounts.sorted(by: { $0.key < $1.key }).chunks(of: 500) {
            let rows = chunk.map { "(\(bind: credentialsID), \(bind: $0.key), \(bind: $0.value), \(bind: now))" as SQLQueryString }
            try await sql.raw(
                """
                INSERT INTO blip_identities (credentials_id, phone, account, looked_up_at) VALUES \(rows.joined(separator: ", "))
                ON CONFLICT (credentials_id, phone) DO UPDATE SET account = excluded.account, looked_up_at = excluded.looked_up_at
                """
            ).run()
        }
    }

    // MARK: Rows

    static func notification(_ row: any SQLRow) throws -> BlipNotification {
        let parameters = try JSONValue.parse(try row.decode(column: "parameters", as: String.self)).arrayValue ?? []
        return BlipNotification(
            id: try row.decode(column: "id", as: String.self),
            integrationID: try row.decode(column: "integration_id", as: String?.self),
            externalID: try row.decode(column: "external_id", as: String?.self),
            phone: try row.decode(column: "phone", as: String.self),
            template: BlipAPI.Template(
                namespace: try row.decode(column: "namespace", as: String.self), name: try row.decode(column: "template", as: String.self),
                language: try row.decode(column: "language", as: String.self), parameters: parameters.compactMap(\.stringValue)),
            status: BlipStatus(rawValue: try row.decode(column: "status", as: String.self)) ?? .pending,
            messageID: try row.decode(column: "message_id", as: String.self),
            attempts: try row.decode(column: "attempts", as: Int.self),
            lastError: try row.decode(column: "last_error", as: String?.self),
            nextAttemptAt: try row.decode(column: "next_attempt_at", as: Date.self),
            sentAt: try row.decode(column: "sent_at", as: Date?.self),
            deliveredAt: try row.decode(column: "delivered_at", as: Date?.self),
            readAt: try row.decode(column: "read_at", as: Date?.self),
            createdAt: try row.decode(column: "created_at", as: Date.self),
            updatedAt: try row.decode(column: "updated_at", as: Date.self))
    }

    static func encode(_ strings: [String]) -> String {
        JSONValue.array(strings.map(JSONValue.string)).encodedString()
    }
}

// Reads and writes `task_outbox`: messages committed with their task runs, waiting for an external broker.
import Foundation
import SQLKit

/// One staged message and the outbox row that holds it.
struct OutboxEntry: Sendable {
    var seq: Int64
    var message: TaskMessage
}

/// Storage of the outbox. A publisher claims rows (``claim(limit:at:)``) in one statement, publishes them with no
/// transaction open, then deletes what the broker confirmed and releases the rest. A claim lasts ``claimWindow``:
/// other flushers skip claimed rows until then, and take them over if the publisher died holding them.
struct OutboxStore: Sendable {
    let database: Database

    /// How long a claim keeps other flushers away. Publishing gives up long before (its deadline is seconds), so
    /// this only matters when a publisher dies: its rows are published by someone else this much later.
    static let claimWindow: TimeInterval = 60

    /// Inside the caller's transaction: stages `messages`, claimed until `claimedUntil` when given (for a caller that
    /// publishes them itself right after its commit). Returns the rows written.
    func insert(_ messages: [TaskMessage], claimedUntil: Date? = nil, _ sql: any SQLDatabase) async throws -> [OutboxEntry] {
        var entries: [OutboxEntry] = []
        entries.reserveCapacity(messages.count)
        for chunk in messages.chunks(of: 400) {
            let rows = chunk.map { message -> SQLQueryString in
                """
                (\(bind: message.id), \(bind: message.name), \(bind: message.arguments.encodedString()), \(bind: message.queue),
                 \(bind: message.priority), \(bind: message.attempt), \(bind: message.maxAttempts), \(bind: message.enqueuedAt),
                 \(bind: message.integrationID), \(bind: message.scheduleID), \(bind: claimedUntil))
                """
            }
            let written = try await sql.raw(
                """
                INSERT INTO task_outbox (task_id, task_name, arguments, queue, priority, attempt, max_attempts, enqueued_at,
                                         integration_id, schedule_id, claimed_until)
                VALUES \(rows.joined(separator: ", "))
                RETURNING seq, task_id
                """
            ).all()
            // A batch may stage one task twice (its last copy wins everywhere else), so rows are matched by task id.
            let byID = Dictionary(chunk.map { ($0.id, $0) }, uniquingKeysWith: { _, last in last })
            for row in written {
                let id = try row.decode(column: "task_id", as: String.self)
                guard let message = byID[id] else { continue }
                entries.append(OutboxEntry(seq: try row.decode(column: "seq", as: Int64.self), message: message))
            }
        }
        return entries.sorted { $0.seq < $1.seq }
    }

    /// What one claim took: readable rows, oldest first, and rows that could not be read (by seq, with the reason).
    struct Claimed: Sendable {
        var entries: [OutboxEntry] = []
        var unreadable: [(seq: Int64, reason: String)] = []
    }

    /// Claims up to `limit` rows nobody holds, oldest first, in one statement (no transaction stays open). On
    /// PostgreSQL rows another claim is taking at the same moment are skipped.
    func claim(limit: Int, at now: Date) async throws -> Claimed {
        let lock: SQLQueryString = database.engine == .postgres ? "FOR UPDATE SKIP LOCKED" : ""
        let rows = try await database.withSQL { sql in
            try await sql.raw(
                """
                UPDATE task_outbox SET claimed_until = \(bind: now.addingTimeInterval(Self.claimWindow))
                WHERE seq IN (
                    SELECT seq FROM task_outbox
                    WHERE set_aside_reason IS NULL AND (claimed_until IS NULL OR claimed_until <= \(bind: now))
                    ORDER BY seq LIMIT \(bind: limit) \(lock)
                )
                RETURNING *
                """
            ).all()
        }
        var claimed = Claimed()
        for row in rows {
            let seq = try row.decode(column: "seq", as: Int64.self)
            do {
                claimed.entries.append(OutboxEntry(seq: seq, message: try TaskMessage.decode(row)))
            } catch {
                claimed.unreadable.append((seq, "\(error)"))
            }
        }
        claimed.entries.sort { $0.seq < $1.seq }
        return claimed
    }

    /// Claims the rows `seqs` that nobody holds, in one statement; returns those it claimed (the others were taken,
    /// or published and deleted, by someone else).
    func claim(_ seqs: [Int64], at now: Date) async throws -> Set<Int64> {
        guard !seqs.isEmpty else { return [] }
        return try await database.withSQL { sql in
            var claimed: Set<Int64> = []
            for chunk in seqs.chunks(of: 500) {
                let rows = try await sql.raw(
                    """
                    UPDATE task_outbox SET claimed_until = \(bind: now.addingTimeInterval(Self.claimWindow))
                    WHERE seq IN (\(binds: Array(chunk))) AND (claimed_until IS NULL OR claimed_until <= \(bind: now))
                    RETURNING seq
                    """
                ).all()
                for row in rows { claimed.insert(try row.decode(column: "seq", as: Int64.self)) }
            }
            return claimed
        }
    }

    /// Forgets rows the broker confirmed.
    func delete(_ seqs: [Int64]) async throws {
        guard !seqs.isEmpty else { return }
        try await database.withSQL { sql in
            for chunk in seqs.chunks(of: 500) {
                try await sql.raw("DELETE FROM task_outbox WHERE seq IN (\(binds: Array(chunk)))").run()
            }
        }
    }

    /// Hands claimed rows back to every flusher (their publish failed or ran out of time).
    func release(_ seqs: [Int64]) async throws {
        guard !seqs.isEmpty else { return }
        try await database.withSQL { sql in
            for chunk in seqs.chunks(of: 500) {
                try await sql.raw("UPDATE task_outbox SET claimed_until = NULL WHERE seq IN (\(binds: Array(chunk)))").run()
            }
        }
    }

    /// Keeps a row that cannot be read out of every later claim, with the reason.
    func setAside(seq: Int64, reason: String) async throws {
        try await database.withSQL { sql in
            try await sql.raw("UPDATE task_outbox SET set_aside_reason = \(bind: reason) WHERE seq = \(bind: seq)").run()
        }
    }

    /// Messages waiting in the outbox (set-aside rows included).
    func count() async throws -> Int {
        try await database.withSQL { sql in
            try await sql.raw("SELECT COUNT(*) AS n FROM task_outbox").first()?.decode(column: "n", as: Int.self) ?? 0
        }
    }
}

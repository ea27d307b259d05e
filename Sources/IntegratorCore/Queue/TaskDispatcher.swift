// Publishing as part of a database transaction: the run record and its message commit together or not at all.
import Foundation
import Logging
import SQLKit

/// Writes task runs and their messages inside the caller's transaction, so a crash between "recorded" and
/// "published" can neither lose a task nor publish it twice.
///
/// With the SQL broker the message row is written in the same transaction: atomic by construction. An external
/// broker cannot join a database transaction, so the message goes to the `task_outbox` table instead and
/// ``flushOutbox(limit:)`` publishes it after the commit and deletes the row. A crash after the broker confirmed but
/// before the row was deleted publishes that message again; the copy carries the same task id and attempt, and the
/// worker drops it (``TaskRunStore/startable(_:)`` refuses an attempt that already finished or was superseded), so
/// the task still runs once.
public struct TaskDispatcher: Sendable {
    let database: Database
    let broker: any Broker
    let runs: TaskRunStore

    public init(database: Database, broker: any Broker, runs: TaskRunStore) {
        self.database = database
        self.broker = broker
        self.runs = runs
    }

    /// `true` when messages wait in the outbox until ``flushOutbox(limit:)`` publishes them.
    public var usesOutbox: Bool { !(broker is SQLBroker) }

    /// Records `message` as queued and stages it for its queue, inside the caller's transaction.
    func stage(_ message: TaskMessage, at now: Date, scheduledFor: Date? = nil, _ sql: any SQLDatabase) async throws {
        try await stage([QueuedRun(message: message, scheduledFor: scheduledFor)], at: now, sql)
    }

    /// Records and stages many messages with a few multi-row statements.
    func stage(_ batch: [QueuedRun], at now: Date, _ sql: any SQLDatabase) async throws {
        guard !batch.isEmpty else { return }
        try await runs.insertQueued(batch, at: now, sql)
        let messages = batch.map(\.message)
        if let queue = broker as? SQLBroker {
            try await queue.insert(messages, availableAt: \.enqueuedAt, sql)
            return
        }
        for chunk in messages.chunks(of: 400) {
            let rows = chunk.map { message -> SQLQueryString in
                """
                (\(bind: message.id), \(bind: message.name), \(bind: message.arguments.encodedString()), \(bind: message.queue),
                 \(bind: message.priority), \(bind: message.attempt), \(bind: message.maxAttempts), \(bind: message.enqueuedAt),
                 \(bind: message.integrationID), \(bind: message.scheduleID))
                """
            }
            try await sql.raw(
                """
                INSERT INTO task_outbox (task_id, task_name, arguments, queue, priority, attempt, max_attempts, enqueued_at,
                                         integration_id, schedule_id)
                VALUES \(rows.joined(separator: ", "))
                """
            ).run()
        }
    }

    /// Publishes up to `limit` staged messages and forgets them; returns how many went out. Concurrent flushers on
    /// PostgreSQL skip each other's rows. If the broker refuses, the rows stay for the next flush.
    @discardableResult
    public func flushOutbox(limit: Int = 500) async throws -> Int {
        guard usesOutbox else { return 0 }
        let lock: SQLQueryString = database.engine == .postgres ? "FOR UPDATE SKIP LOCKED" : ""
        let broker = self.broker
        return try await database.transaction { sql in
            let rows = try await sql.raw("SELECT * FROM task_outbox ORDER BY seq LIMIT \(bind: limit) \(lock)").all()
            guard !rows.isEmpty else { return 0 }
            let staged = try rows.map { row in (try row.decode(column: "seq", as: Int64.self), try TaskMessage.decode(row)) }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (_, message) in staged { group.addTask { try await broker.publish(message) } }
                try await group.waitForAll()
            }
            try await sql.raw("DELETE FROM task_outbox WHERE seq IN (\(binds: staged.map(\.0)))").run()
            return staged.count
        }
    }

    /// Messages waiting in the outbox.
    public func outboxCount() async throws -> Int {
        try await database.withSQL { sql in
            try await sql.raw("SELECT COUNT(*) AS n FROM task_outbox").first()?.decode(column: "n", as: Int.self) ?? 0
        }
    }
}

// The multi-row statements of the task hot path: runs recorded queued, started and finished in batches.
//
// PostgreSQL receives each column as one array parameter and unnests it, so a statement's text and parameter count
// stay the same whatever the batch size (no per-row parameters to encode, no long CASE lists to plan). Arrays cannot
// hold NULL here, so optional text travels as '' and comes back through NULLIF: ids and results are never empty, and
// an empty error message is no message. Updates also say `id = ANY(ids)`: joined to the unnested rows alone, the
// planner of a table whose statistics are stale (it grew since the last ANALYZE) scans the whole table per batch.
// SQLite, whose statements cost no round trip, gets multi-row VALUES lists.
import Foundation
import SQLKit

extension TaskRunStore {
    /// The statements that record `batch` as queued. They never touch a row twice (the last entry for a task wins),
    /// so they may run as one statement (see ``Database/writeTogether(_:asOneStatement:)``).
    func queuedStatements(_ batch: [QueuedRun], at now: Date) -> [SQLQueryString] {
        queuedRunInserts(
            batch, at: now,
            ending: """
                ON CONFLICT (id) DO UPDATE SET state = excluded.state, attempt = excluded.attempt, worker_id = NULL,
                    started_at = NULL, finished_at = NULL, duration_ms = NULL, updated_at = excluded.updated_at
                """)
    }

    /// The multi-row inserts of `batch` as queued runs (the last entry for a task wins), each ending with `conflict`:
    /// what to do on a conflict, and what to return.
    func queuedRunInserts(_ batch: [QueuedRun], at now: Date, ending conflict: SQLQueryString) -> [SQLQueryString] {
        let entries = batch.lastOccurrences(by: \.message.id)
        guard !entries.isEmpty else { return [] }
        let queued = TaskState.queued.rawValue
        guard database.engine == .sqlite else {
            let rows = TaskMessage.unnested(
                entries.map(\.message),
                extra: [
                    ("has_fire_time", "\(bind: entries.map { $0.scheduledFor != nil })::bool[]"),
                    ("scheduled_for", "\(bind: entries.map { $0.scheduledFor ?? now })::timestamptz[]"),
                ])
            return [
                """
                INSERT INTO task_runs (id, task_name, arguments, queue, priority, state, attempt, enqueued_at, integration_id,
                                       schedule_id, scheduled_for, updated_at)
                SELECT task_id, task_name, arguments, queue, priority, \(bind: queued), attempt, enqueued_at, NULLIF(integration_id, ''),
                       NULLIF(schedule_id, ''), CASE WHEN has_fire_time THEN scheduled_for END, \(bind: now)
                FROM \(rows)
                \(conflict)
                """
            ]
        }
        return entries.chunks(of: 400).map { chunk in
            let rows = chunk.map { entry -> SQLQueryString in
                let message = entry.message
                return """
                    (\(bind: message.id), \(bind: message.name), \(bind: message.arguments.encodedString()), \(bind: message.queue),
                     \(bind: message.priority), \(bind: queued), \(bind: message.attempt), \(bind: message.enqueuedAt),
                     \(bind: message.integrationID), \(bind: message.scheduleID), \(bind: entry.scheduledFor), \(bind: now))
                    """
            }
            return """
                INSERT INTO task_runs (id, task_name, arguments, queue, priority, state, attempt, enqueued_at, integration_id,
                                       schedule_id, scheduled_for, updated_at)
                VALUES \(rows.joined(separator: ", "))
                \(conflict)
                """
        }
    }

    /// ``markStarted(_:workerID:at:)``'s one statement on PostgreSQL, for `deliveries` in task id order.
    static func markStartedStatement(_ deliveries: [Delivery], workerID: String, at now: Date) -> SQLQueryString {
        let started = TaskState.started.rawValue
        let open = [TaskState.queued, .retrying, .started].map(\.rawValue)
        let ids = deliveries.map(\.message.id)
        return """
            WITH batch AS (
                SELECT * FROM unnest(\(bind: ids)::text[], \(bind: deliveries.map(\.message.attempt))::int8[],
                                     \(bind: deliveries.map(\.deliveries))::int8[]) AS v(id, attempt, deliveries)
            ), marked AS (
                UPDATE task_runs AS r SET state = \(bind: started), worker_id = \(bind: workerID), started_at = \(bind: now),
                    updated_at = \(bind: now), attempt = batch.attempt
                FROM batch WHERE r.id = batch.id AND r.id = ANY(\(bind: ids)::text[]) AND r.attempt <= batch.attempt
                  AND \(SQLQueryString.statusIsOneOf("r.state", open))
                RETURNING r.id
            )
            INSERT INTO task_run_attempts (task_id, attempt, state, worker_id, deliveries, started_at)
            SELECT batch.id, batch.attempt, \(bind: started), \(bind: workerID), batch.deliveries, \(bind: now)
            FROM batch JOIN marked ON marked.id = batch.id
            \(unsafeRaw: startedAttemptConflictClause)
            """
    }

    /// How a start merges with an attempt's row already written: one that a later delivery (another worker, after
    /// this one's lease ran out) wrote, or that has an outcome, stays.
    static let startedAttemptConflictClause = """
        ON CONFLICT (task_id, attempt) DO UPDATE SET state = excluded.state, worker_id = excluded.worker_id,
            deliveries = excluded.deliveries, started_at = excluded.started_at
        WHERE task_run_attempts.finished_at IS NULL AND task_run_attempts.deliveries <= excluded.deliveries
        """

    /// Marks deliveries of distinct tasks as running on `workerID` and writes their attempts, in one transaction on
    /// SQLite and one statement on PostgreSQL. A run that already has an outcome (or a later attempt) is left alone:
    /// a start recorded after the task finished must not hide its outcome; so is an attempt's row that a later
    /// delivery (another worker, after this one's lease ran out) already wrote.
    public func markStarted(_ deliveries: [Delivery], workerID: String, at now: Date) async throws {
        // In task id order, as outcomes are written (see `inLockOrder`), so the two never lock rows in opposite orders.
        let deliveries = deliveries.lastOccurrences(by: \.message.id).sorted { $0.message.id < $1.message.id }
        guard !deliveries.isEmpty else { return }
        let started = TaskState.started.rawValue
        let open = [TaskState.queued, .retrying, .started].map(\.rawValue)
        if database.engine == .postgres {
            let statement = Self.markStartedStatement(deliveries, workerID: workerID, at: now)
            try await database.withSQL { sql in try await sql.raw(statement).run() }
            return
        }
        try await database.transaction { sql in
            for chunk in deliveries.chunks(of: 200) {
                let attempts = chunk.map { "WHEN \(bind: $0.message.id) THEN \(bind: $0.message.attempt)" as SQLQueryString }
                let attemptByID: SQLQueryString = "CASE id \(attempts.joined(separator: " ")) END"
                let marked = Set(
                    try await sql.raw(
                        """
                        UPDATE task_runs SET state = \(bind: started), worker_id = \(bind: workerID), started_at = \(bind: now),
                            updated_at = \(bind: now), attempt = \(attemptByID)
                        WHERE id IN (\(binds: chunk.map(\.message.id))) AND attempt <= \(attemptByID) AND state IN (\(binds: open))
                        RETURNING id
                        """
                    ).all().map { try $0.decode(column: "id", as: String.self) })
                let rows = chunk.filter { marked.contains($0.message.id) }.map { delivery -> SQLQueryString in
                    """
                    (\(bind: delivery.message.id), \(bind: delivery.message.attempt), \(bind: started), \(bind: workerID),
                     \(bind: delivery.deliveries), \(bind: now))
                    """
                }
                guard !rows.isEmpty else { continue }
                try await sql.raw(
                    """
                    INSERT INTO task_run_attempts (task_id, attempt, state, worker_id, deliveries, started_at)
                    VALUES \(rows.joined(separator: ", "))
                    \(unsafeRaw: Self.startedAttemptConflictClause)
                    """
                ).run()
            }
        }
    }

    /// Writes attempts with one multi-row statement; no two rows may name the same attempt.
    static func attemptsStatement(_ rows: [AttemptRow]) -> SQLQueryString {
        let values = rows.map { row -> SQLQueryString in
            """
            (\(bind: row.taskID), \(bind: row.attempt), \(bind: row.state.rawValue), \(bind: row.workerID), \(bind: row.deliveries),
             \(bind: row.startedAt), \(bind: row.finishedAt), \(bind: row.duration), \(bind: row.error))
            """
        }
        return """
            INSERT INTO task_run_attempts (task_id, attempt, state, worker_id, deliveries, started_at, finished_at, duration_ms, error)
            VALUES \(values.joined(separator: ", "))
            \(unsafeRaw: Self.attemptConflictClause)
            """
    }

    /// How a second write of an attempt merges with the first.
    static let attemptConflictClause = """
        ON CONFLICT (task_id, attempt) DO UPDATE SET state = excluded.state,
            worker_id = COALESCE(excluded.worker_id, task_run_attempts.worker_id),
            deliveries = CASE WHEN excluded.deliveries > task_run_attempts.deliveries THEN excluded.deliveries ELSE task_run_attempts.deliveries END,
            started_at = COALESCE(excluded.started_at, task_run_attempts.started_at),
            finished_at = excluded.finished_at, duration_ms = excluded.duration_ms, error = excluded.error
        """
}

/// One row of `task_run_attempts` to write.
struct AttemptRow {
    var taskID: String
    var attempt: Int
    var state: TaskState
    var workerID: String?
    var deliveries: Int
    var startedAt: Date? = nil
    var finishedAt: Date? = nil
    var duration: Int? = nil
    var error: String? = nil
}

// Outcomes fenced by the delivery that ran them. A worker can lose its claim on a task while the task still runs (it
// stalled past its lease, or its broker connection dropped) and the task is delivered to another worker. When the first
// worker finally reports, its outcome must not remove the newer delivery's message or overwrite what the newer attempt
// records; it is dropped, and the worker logs that.
import Foundation
import SQLKit

extension TaskRunStore {
    /// Records how attempts ended (succeeded, failed or dead: outcomes that end the task) and, with an in-database
    /// queue, acknowledges their messages in the same write: one statement on PostgreSQL when no task appears twice.
    ///
    /// An outcome is recorded only while its delivery still holds the task: the run is not on a later attempt, and
    /// - with `queue`, its acknowledgement removed the message, which it does only while the message is still the
    ///   claim that delivered it (see ``InDatabaseBroker/acknowledgeStatements(_:)``): exact, since any later
    ///   delivery would have had to claim that message again;
    /// - with an external broker, no later delivery of the same attempt has been recorded (as started or ended).
    ///
    /// Returns, for each outcome in order, whether it was recorded.
    func recordOutcomes(_ outcomes: [AttemptOutcome], acknowledgingIn queue: (any InDatabaseBroker)?) async throws -> [Bool] {
        guard !outcomes.isEmpty else { return [] }
        let rounds = Self.roundsOfDistinctTasks(outcomes.map(\.delivery.message.id))
        let acknowledgement = queue?.acknowledgeStatements(outcomes.map(\.delivery)) ?? []
        if database.engine == .postgres, rounds.count == 1, acknowledgement.count <= 1 {
            let statement = postgresOutcomeStatement(Self.inLockOrder(outcomes), acknowledgedBy: acknowledgement.first)
            let recorded = try await database.withSQL { sql in
                Set(try await sql.raw(statement).all().map { try $0.decode(column: "task_id", as: String.self) })
            }
            return outcomes.map { recorded.contains($0.delivery.message.id) }
        }
        let engine = database.engine
        let recordedPositions = try await database.transaction { sql -> Set<Int> in
            var eligible = Set(outcomes.indices)
            if queue != nil {
                var removed = Set<Int64>()
                for statement in acknowledgement {
                    for row in try await sql.raw(statement).all() { removed.insert(try row.decode(column: "seq", as: Int64.self)) }
                }
                eligible = eligible.filter { removed.contains(Int64(outcomes[$0].delivery.tag) ?? -1) }
            }
            var recorded = Set<Int>()
            for round in rounds {
                let positions = round.filter(eligible.contains)
                guard !positions.isEmpty else { continue }
                let rows = Self.inLockOrder(positions.map { outcomes[$0] })
                let ids: Set<String>
                if engine == .postgres {
                    let statement = postgresOutcomeStatement(rows, acknowledgedBy: nil, alreadyAcknowledged: queue != nil)
                    ids = Set(try await sql.raw(statement).all().map { try $0.decode(column: "task_id", as: String.self) })
                } else {
                    ids = try await recordSQLiteOutcomes(rows, alreadyAcknowledged: queue != nil, sql)
                }
                recorded.formUnion(positions.filter { ids.contains(outcomes[$0].delivery.message.id) })
            }
            return recorded
        }
        return outcomes.indices.map(recordedPositions.contains)
    }

    /// Outcomes ordered by task id. Recording starts (``markStarted(_:workerID:at:)``) orders its rows the same way:
    /// two statements that lock the same runs and attempts in different orders deadlocked on PostgreSQL, and each
    /// deadlock cost a second of detection and a redelivery after the lease.
    static func inLockOrder(_ outcomes: [AttemptOutcome]) -> [AttemptOutcome] {
        outcomes.sorted { $0.delivery.message.id < $1.delivery.message.id }
    }

    /// One statement: the acknowledgement (when given), the runs' outcomes and their attempts' rows, returning the
    /// `task_id` of every outcome recorded. No task may appear twice. `alreadyAcknowledged` says that the caller's
    /// transaction acknowledged these deliveries of an in-database queue before (so they hold their tasks).
    private func postgresOutcomeStatement(
        _ rows: [AttemptOutcome], acknowledgedBy acknowledgement: SQLQueryString?, alreadyAcknowledged: Bool = false
    ) -> SQLQueryString {
        let ids: SQLQueryString = "\(bind: rows.map(\.delivery.message.id))::text[]"
        let prefix: SQLQueryString = acknowledgement.map { "acknowledged AS (\($0))," } ?? ""
        let holdsTask: SQLQueryString
        if acknowledgement != nil {
            holdsTask = "AND v.seq IN (SELECT seq FROM acknowledged)"
        } else if alreadyAcknowledged {
            holdsTask = ""
        } else {
            holdsTask = """
                AND NOT EXISTS (
                      SELECT 1 FROM task_run_attempts AS a
                      WHERE a.task_id = v.id AND a.attempt = v.attempt AND a.deliveries > v.deliveries)
                """
        }
        // The update returns what the attempts' rows need, so only the runs it changed get one.
        return """
            WITH \(prefix) recorded AS (
                UPDATE task_runs AS r SET state = v.state, attempt = v.attempt, worker_id = v.worker_id, started_at = v.started_at,
                    finished_at = v.finished_at, updated_at = v.finished_at, duration_ms = v.duration_ms,
                    error = NULLIF(v.error, ''), result = NULLIF(v.result, '')
                FROM unnest(
                    \(ids), \(bind: rows.map(\.delivery.message.attempt))::int8[], \(bind: rows.map(\.state.rawValue))::text[],
                    \(bind: rows.map(\.workerID))::text[], \(bind: rows.map(\.delivery.deliveries))::int8[],
                    \(bind: rows.map(\.startedAt))::timestamptz[], \(bind: rows.map(\.finishedAt))::timestamptz[],
                    \(bind: rows.map(\.durationMilliseconds))::int8[], \(bind: rows.map { $0.error ?? "" })::text[],
                    \(bind: rows.map { $0.encodedResult ?? "" })::text[], \(bind: rows.map { Int64($0.delivery.tag) ?? -1 })::int8[]
                ) AS v(id, attempt, state, worker_id, deliveries, started_at, finished_at, duration_ms, error, result, seq)
                WHERE r.id = v.id AND r.id = ANY(\(ids)) AND r.attempt <= v.attempt \(holdsTask)
                RETURNING v.id, v.attempt, v.state, v.worker_id, v.deliveries, v.started_at, v.finished_at, v.duration_ms, v.error
            )
            INSERT INTO task_run_attempts (task_id, attempt, state, worker_id, deliveries, started_at, finished_at, duration_ms, error)
            SELECT id, attempt, state, worker_id, deliveries, started_at, finished_at, duration_ms, NULLIF(error, '')
            FROM recorded
            \(unsafeRaw: Self.attemptConflictClause)
            RETURNING task_id
            """
    }

    /// Records outcomes of distinct tasks on SQLite inside the caller's transaction; the ids of those recorded.
    /// `alreadyAcknowledged` as for ``postgresOutcomeStatement(_:acknowledgedBy:alreadyAcknowledged:)``.
    private func recordSQLiteOutcomes(
        _ rows: [AttemptOutcome], alreadyAcknowledged: Bool, _ sql: any SQLDatabase
    ) async throws -> Set<String> {
        let noLaterDelivery: SQLQueryString =
            alreadyAcknowledged
            ? ""
            : """
            AND NOT EXISTS (
                SELECT 1 FROM task_run_attempts AS a
                WHERE a.task_id = v.id AND a.attempt = v.attempt AND a.deliveries > v.deliveries)
            """
        var recorded = Set<String>()
        for chunk in rows.chunks(of: 100) {
            let values = chunk.map { outcome -> SQLQueryString in
                """
                (\(bind: outcome.delivery.message.id), \(bind: outcome.delivery.message.attempt), \(bind: outcome.state.rawValue),
                 \(bind: outcome.workerID), \(bind: outcome.delivery.deliveries), \(bind: outcome.startedAt), \(bind: outcome.finishedAt),
                 \(bind: outcome.durationMilliseconds), \(bind: outcome.error), \(bind: outcome.encodedResult))
                """
            }
            let ids = Set(
                try await sql.raw(
                    """
                    WITH v(id, attempt, state, worker_id, deliveries, started_at, finished_at, duration_ms, error, result) AS (
                        VALUES \(values.joined(separator: ", "))
                    )
                    UPDATE task_runs SET state = v.state, attempt = v.attempt, worker_id = v.worker_id, started_at = v.started_at,
                        finished_at = v.finished_at, updated_at = v.finished_at, duration_ms = v.duration_ms, error = v.error,
                        result = v.result
                    FROM v
                    WHERE task_runs.id = v.id AND task_runs.id IN (\(binds: chunk.map(\.delivery.message.id)))
                      AND task_runs.attempt <= v.attempt \(noLaterDelivery)
                    RETURNING task_runs.id AS id
                    """
                ).all().map { try $0.decode(column: "id", as: String.self) })
            let attempts = chunk.filter { ids.contains($0.delivery.message.id) }.map { outcome in
                AttemptRow(
                    taskID: outcome.delivery.message.id, attempt: outcome.delivery.message.attempt, state: outcome.state,
                    workerID: outcome.workerID, deliveries: outcome.delivery.deliveries, startedAt: outcome.startedAt,
                    finishedAt: outcome.finishedAt, duration: outcome.durationMilliseconds, error: outcome.error)
            }
            if !attempts.isEmpty { try await sql.raw(Self.attemptsStatement(attempts)).run() }
            recorded.formUnion(ids)
        }
        return recorded
    }

    /// Records how one attempt ended outside the batched path: `.retrying` (the run moves on to `nextAttempt`, the
    /// attempt's row says failed) or `.dead`, with what `alsoInTransaction` writes (a retry's timer), under the same
    /// fence as ``recordOutcomes(_:acknowledgingIn:)``. With `queue`, the message is acknowledged in the same
    /// transaction and nothing is recorded unless that acknowledgement took effect. Returns whether it was recorded.
    func recordAttemptEnd(
        _ delivery: Delivery, state: TaskState, workerID: String, error: String?, startedAt: Date, finishedAt: Date,
        nextAttempt: Int? = nil, acknowledgingIn queue: (any InDatabaseBroker)? = nil,
        alsoInTransaction: (@Sendable (any SQLDatabase) async throws -> Void)? = nil
    ) async throws -> Bool {
        let message = delivery.message
        let duration = Int((finishedAt.timeIntervalSince(startedAt) * 1000).rounded())
        let error = error.map { String($0.prefix(2000)) }
        return try await database.transaction { sql in
            if let queue {
                var removed = false
                for statement in queue.acknowledgeStatements([delivery]) {
                    removed = try await !sql.raw(statement).all().isEmpty || removed
                }
                guard removed else { return false }
            }
            let updated = try await sql.raw(
                """
                UPDATE task_runs SET state = \(bind: state.rawValue), attempt = \(bind: nextAttempt ?? message.attempt),
                    worker_id = \(bind: workerID), started_at = \(bind: startedAt), finished_at = \(bind: finishedAt),
                    updated_at = \(bind: finishedAt), duration_ms = \(bind: duration), error = \(bind: error), result = NULL
                WHERE id = \(bind: message.id) AND attempt <= \(bind: message.attempt)
                  AND NOT EXISTS (
                      SELECT 1 FROM task_run_attempts AS a
                      WHERE a.task_id = \(bind: message.id) AND a.attempt = \(bind: message.attempt) AND a.deliveries > \(bind: delivery.deliveries))
                RETURNING id
                """
            ).all()
            // A newer attempt or delivery owns the run. With a queue, the acknowledgement above removed only this
            // (stale) message and stays; without one, nothing was written.
            guard !updated.isEmpty else { return false }
            try await sql.raw(
                Self.attemptsStatement([
                    AttemptRow(
                        taskID: message.id, attempt: message.attempt, state: state == .retrying ? .failed : state, workerID: workerID,
                        deliveries: delivery.deliveries, startedAt: startedAt, finishedAt: finishedAt, duration: duration, error: error)
                ])
            ).run()
            try await alsoInTransaction?(sql)
            return true
        }
    }
}

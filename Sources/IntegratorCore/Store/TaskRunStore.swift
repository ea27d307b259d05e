// Task runs: one row per task with its current state, one row per attempt, and worker heartbeats.
import Foundation
import SQLKit

/// Where a task is in its life.
public enum TaskState: String, Sendable, Codable, CaseIterable {
    case queued, started, succeeded, failed, retrying, dead, revoked

    /// States that end a task (until someone retries it by hand).
    public var isFinal: Bool { [.succeeded, .failed, .dead, .revoked].contains(self) }
}

/// One task's record.
public struct TaskRun: Sendable, Equatable {
    public var id: String
    public var name: String
    public var arguments: JSONValue
    public var queue: String
    public var priority: Int
    public var state: TaskState
    public var attempt: Int
    public var workerID: String?
    public var enqueuedAt: Date
    public var startedAt: Date?
    public var finishedAt: Date?
    public var durationMilliseconds: Int?
    /// A short description of the last error; never contains secrets (handlers' messages are shown to users).
    public var error: String?
    public var result: JSONValue?
    public var integrationID: String?
    public var scheduleID: String?
    /// The fire time of the schedule or timer that published the task.
    public var scheduledFor: Date?
}

/// One attempt of a task.
public struct TaskAttempt: Sendable, Equatable {
    public var attempt: Int
    public var state: TaskState
    public var workerID: String?
    public var deliveries: Int
    public var startedAt: Date?
    public var finishedAt: Date?
    public var durationMilliseconds: Int?
    public var error: String?
}

/// Filters for listing runs.
public struct TaskRunFilter: Sendable {
    public var state: TaskState?
    public var name: String?
    public var queue: String?
    public var integrationID: String?
    public var scheduleID: String?
    public var since: Date?
    public var until: Date?

    public init(
        state: TaskState? = nil, name: String? = nil, queue: String? = nil, integrationID: String? = nil,
        scheduleID: String? = nil, since: Date? = nil, until: Date? = nil
    ) {
        self.state = state
        self.name = name
        self.queue = queue
        self.integrationID = integrationID
        self.scheduleID = scheduleID
        self.since = since
        self.until = until
    }
}

/// A worker as its heartbeats describe it.
public struct WorkerInfo: Sendable, Equatable {
    public var id: String
    public var host: String
    public var queues: [String]
    public var concurrency: Int
    public var busy: Int
    public var startedAt: Date
    public var lastSeen: Date
}

/// A run to record as queued, with the fire time that published it.
struct QueuedRun: Sendable {
    var message: TaskMessage
    var scheduledFor: Date?
}

/// How an attempt ended, as a worker records it.
struct AttemptOutcome: Sendable {
    var delivery: Delivery
    /// `.succeeded`, `.failed` or `.dead`: outcomes that end the task.
    var state: TaskState
    var error: String?
    /// The result summary as stored (JSON text).
    var encodedResult: String?
    var startedAt: Date
    var finishedAt: Date

    init(delivery: Delivery, state: TaskState, error: String?, encodedResult: String?, startedAt: Date, finishedAt: Date) {
        self.delivery = delivery
        self.state = state
        self.error = error.map { String($0.prefix(2000)) }
        self.encodedResult = encodedResult
        self.startedAt = startedAt
        self.finishedAt = finishedAt
    }

    var durationMilliseconds: Int { Int((finishedAt.timeIntervalSince(startedAt) * 1000).rounded()) }
}

/// One row of `task_run_attempts` to write.
private struct AttemptRow {
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

/// Reads and writes `task_runs`, `task_run_attempts` and `workers`.
public struct TaskRunStore: Sendable {
    let database: Database

    public init(database: Database) { self.database = database }

    /// Records a new task (or a new attempt of a known one) as queued.
    public func recordQueued(_ message: TaskMessage, at now: Date) async throws {
        try await database.transaction { sql in try await insertQueued(message, at: now, sql) }
    }

    /// Records `message` as queued inside the caller's transaction, so the run and what publishes it commit together.
    /// - Parameter scheduledFor: the fire time of the schedule or timer that published it; one schedule never has
    ///   two runs for the same fire time (a unique index says so).
    func insertQueued(_ message: TaskMessage, at now: Date, scheduledFor: Date? = nil, _ sql: any SQLDatabase) async throws {
        try await insertQueued([QueuedRun(message: message, scheduledFor: scheduledFor)], at: now, sql)
    }

    /// Records many runs as queued with a few multi-row statements (the beat fires in batches).
    func insertQueued(_ batch: [QueuedRun], at now: Date, _ sql: any SQLDatabase) async throws {
        for statement in queuedStatements(batch, at: now) { try await sql.raw(statement).run() }
    }

    /// The statements that record `batch` as queued. They never touch a row twice (the last entry for a task wins),
    /// so they may run as one statement (see ``Database/writeTogether(_:asOneStatement:)``).
    func queuedStatements(_ batch: [QueuedRun], at now: Date) -> [SQLQueryString] {
        batch.lastOccurrences(by: \.message.id).chunks(of: 400).flatMap { chunk -> [SQLQueryString] in
            let runs = chunk.map { entry -> SQLQueryString in
                let message = entry.message
                return """
                    (\(bind: message.id), \(bind: message.name), \(bind: message.arguments.encodedString()), \(bind: message.queue),
                     \(bind: message.priority), \(bind: TaskState.queued.rawValue), \(bind: message.attempt), \(bind: message.enqueuedAt),
                     \(bind: message.integrationID), \(bind: message.scheduleID), \(bind: entry.scheduledFor), \(bind: now))
                    """
            }
            return [
                """
                INSERT INTO task_runs (id, task_name, arguments, queue, priority, state, attempt, enqueued_at, integration_id, schedule_id,
                                       scheduled_for, updated_at)
                VALUES \(runs.joined(separator: ", "))
                ON CONFLICT (id) DO UPDATE SET state = excluded.state, attempt = excluded.attempt, worker_id = NULL,
                    started_at = NULL, finished_at = NULL, duration_ms = NULL, updated_at = excluded.updated_at
                """,
                Self.attemptsStatement(chunk.map { AttemptRow(taskID: $0.message.id, attempt: $0.message.attempt, state: .queued, workerID: nil, deliveries: 0) }),
            ]
        }
    }

    /// Marks an attempt as running on `workerID`. Returns `false` (and changes nothing) when the task was revoked or
    /// this message is a stale copy: a later attempt is already recorded, or this attempt already finished. Copies
    /// come from the outbox, which may publish a message twice if it stops between publishing and forgetting it.
    public func recordStarted(_ delivery: Delivery, workerID: String, at now: Date) async throws -> Bool {
        try await recordStarted([delivery], workerID: workerID, at: now)[0]
    }

    /// Marks a claimed batch as running with multi-row statements; for each delivery, in order, whether it may run
    /// (see ``recordStarted(_:workerID:at:)``). Copies of one task in the same batch are judged one after the other,
    /// as if started separately. Like a single start (whose read and write were never locked against a concurrent
    /// revoke), the states are read first, then the runs that may start are written together.
    public func recordStarted(_ deliveries: [Delivery], workerID: String, at now: Date) async throws -> [Bool] {
        guard !deliveries.isEmpty else { return [] }
        let rounds = Self.roundsOfDistinctTasks(deliveries.map(\.message.id))
        if rounds.count == 1 {
            let starting = try await database.withSQL { sql in try await startable(deliveries, among: rounds[0], sql) }
            try await database.writeTogether(startStatements(deliveries, starting, workerID: workerID, at: now))
            var allowed = [Bool](repeating: false, count: deliveries.count)
            for index in starting { allowed[index] = true }
            return allowed
        }
        return try await database.transaction { sql in
            var allowed = [Bool](repeating: false, count: deliveries.count)
            for round in rounds {
                let starting = try await startable(deliveries, among: round, sql)
                for statement in startStatements(deliveries, starting, workerID: workerID, at: now) { try await sql.raw(statement).run() }
                for index in starting { allowed[index] = true }
            }
            return allowed
        }
    }

    /// The positions among `indices` (distinct tasks) whose deliveries may start: not revoked, not superseded by a
    /// later attempt, and not an attempt that already finished.
    private func startable(_ deliveries: [Delivery], among indices: [Int], _ sql: any SQLDatabase) async throws -> [Int] {
        var current: [String: (state: TaskState?, attempt: Int)] = [:]
        for chunk in indices.chunks(of: 500) {
            let ids = chunk.map { deliveries[$0].message.id }
            for row in try await sql.raw("SELECT id, state, attempt FROM task_runs WHERE id IN (\(binds: ids))").all() {
                current[try row.decode(column: "id", as: String.self)] = (
                    TaskState(rawValue: try row.decode(column: "state", as: String.self)),
                    try row.decode(column: "attempt", as: Int.self)
                )
            }
        }
        return indices.filter { index in
            let message = deliveries[index].message
            guard let (state, attempt) = current[message.id] else { return true }
            if state == .revoked || attempt > message.attempt { return false }
            return !(attempt == message.attempt && (state == .succeeded || state == .failed || state == .dead))
        }
    }

    /// The statements that mark the deliveries at `starting` (distinct tasks) as running.
    private func startStatements(_ deliveries: [Delivery], _ starting: [Int], workerID: String, at now: Date) -> [SQLQueryString] {
        starting.chunks(of: 200).flatMap { chunk -> [SQLQueryString] in
            let attempts = chunk.map { index -> SQLQueryString in
                "WHEN \(bind: deliveries[index].message.id) THEN \(bind: deliveries[index].message.attempt)"
            }
            return [
                """
                UPDATE task_runs SET state = \(bind: TaskState.started.rawValue), worker_id = \(bind: workerID),
                    started_at = \(bind: now), updated_at = \(bind: now), attempt = CASE id \(attempts.joined(separator: " ")) END
                WHERE id IN (\(binds: chunk.map { deliveries[$0].message.id }))
                """,
                Self.attemptsStatement(
                    chunk.map { index in
                        let delivery = deliveries[index]
                        return AttemptRow(
                            taskID: delivery.message.id, attempt: delivery.message.attempt, state: .started, workerID: workerID,
                            deliveries: delivery.deliveries, startedAt: now)
                    }),
            ]
        }
    }

    /// Records how attempts ended (succeeded, failed or dead, no retry) with a few multi-row statements, together with
    /// `alsoWritten` (the SQL broker's acknowledgements), so a worker settles a batch of outcomes in one write.
    func recordOutcomes(_ outcomes: [AttemptOutcome], alsoWriting alsoWritten: [SQLQueryString] = []) async throws {
        let rounds = Self.roundsOfDistinctTasks(outcomes.map(\.delivery.message.id))
        let statements = rounds.flatMap { round in round.chunks(of: 100).flatMap { outcomeStatements($0.map { outcomes[$0] }) } }
        try await database.writeTogether(statements + alsoWritten, asOneStatement: rounds.count == 1)
    }

    private func outcomeStatements(_ rows: [AttemptOutcome]) -> [SQLQueryString] {
        func column(_ value: (AttemptOutcome) -> SQLQueryString) -> SQLQueryString {
            "CASE id \(rows.map { "WHEN \(bind: $0.delivery.message.id) THEN \(value($0))" as SQLQueryString }.joined(separator: " ")) END"
        }
        return [
            """
            UPDATE task_runs SET state = \(column { "\(bind: $0.state.rawValue)" }),
                finished_at = \(column { "\(bind: $0.finishedAt)" }), updated_at = \(column { "\(bind: $0.finishedAt)" }),
                duration_ms = \(column { "\(bind: $0.durationMilliseconds)" }), error = \(column { "\(bind: $0.error)" }),
                result = \(column { "\(bind: $0.encodedResult)" })
            WHERE id IN (\(binds: rows.map(\.delivery.message.id)))
            """,
            Self.attemptsStatement(
                rows.map { outcome in
                    AttemptRow(
                        taskID: outcome.delivery.message.id, attempt: outcome.delivery.message.attempt, state: outcome.state,
                        workerID: nil, deliveries: outcome.delivery.deliveries, startedAt: outcome.startedAt,
                        finishedAt: outcome.finishedAt, duration: outcome.durationMilliseconds, error: outcome.error)
                }),
        ]
    }

    /// Splits positions into rounds in which no task id appears twice (one statement may not touch a row twice);
    /// the copies of a task land in later rounds, in their original order.
    static func roundsOfDistinctTasks(_ ids: [String]) -> [[Int]] {
        var rounds: [[Int]] = []
        var seen: [String: Int] = [:]
        for (index, id) in ids.enumerated() {
            let round = seen[id, default: 0]
            seen[id] = round + 1
            if round == rounds.count { rounds.append([]) }
            rounds[round].append(index)
        }
        return rounds
    }

    /// Records how an attempt ended. For `.retrying`, `nextAttempt` is queued in the same transaction, and so is
    /// whatever `alsoInTransaction` writes (the retry's timer).
    public func recordOutcome(
        _ delivery: Delivery, state: TaskState, error: String?, result: JSONValue?, startedAt: Date, finishedAt: Date,
        nextAttempt: Int? = nil, alsoInTransaction: (@Sendable (any SQLDatabase) async throws -> Void)? = nil
    ) async throws {
        let message = delivery.message
        let duration = Int((finishedAt.timeIntervalSince(startedAt) * 1000).rounded())
        let error = error.map { String($0.prefix(2000)) }
        try await database.transaction { sql in
            var update = sql.update("task_runs")
                .set("state", to: state.rawValue).set("finished_at", to: finishedAt).set("duration_ms", to: duration)
                .set("updated_at", to: finishedAt).set("error", to: error)
                .set("result", to: result?.encodedString())
            if let nextAttempt { update = update.set("attempt", to: nextAttempt) }
            try await update.where("id", .equal, message.id).run()
            try await upsertAttempt(
                sql, taskID: message.id, attempt: message.attempt, state: state == .retrying ? .failed : state,
                workerID: nil, deliveries: delivery.deliveries, startedAt: startedAt, finishedAt: finishedAt,
                duration: duration, error: error)
            if let nextAttempt {
                try await upsertAttempt(sql, taskID: message.id, attempt: nextAttempt, state: .queued, workerID: nil, deliveries: 0)
            }
            try await alsoInTransaction?(sql)
        }
    }

    /// Marks a task revoked.
    public func recordRevoked(taskID: String, at now: Date) async throws {
        try await database.withSQL { sql in
            try await sql.update("task_runs").set("state", to: TaskState.revoked.rawValue).set("finished_at", to: now)
                .set("updated_at", to: now).where("id", .equal, taskID).run()
            try await sql.update("task_run_attempts").set("state", to: TaskState.revoked.rawValue)
                .where("task_id", .equal, taskID).where("state", .equal, TaskState.queued.rawValue).run()
        }
    }

    private func upsertAttempt(
        _ sql: any SQLDatabase, taskID: String, attempt: Int, state: TaskState, workerID: String?, deliveries: Int,
        startedAt: Date? = nil, finishedAt: Date? = nil, duration: Int? = nil, error: String? = nil
    ) async throws {
        try await upsertAttempts(
            [
                AttemptRow(
                    taskID: taskID, attempt: attempt, state: state, workerID: workerID, deliveries: deliveries, startedAt: startedAt,
                    finishedAt: finishedAt, duration: duration, error: error)
            ], sql)
    }

    /// Writes attempts with one multi-row statement; no two rows may name the same attempt.
    private func upsertAttempts(_ rows: [AttemptRow], _ sql: any SQLDatabase) async throws {
        guard !rows.isEmpty else { return }
        try await sql.raw(Self.attemptsStatement(rows)).run()
    }

    private static func attemptsStatement(_ rows: [AttemptRow]) -> SQLQueryString {
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
    private static let attemptConflictClause = """
        ON CONFLICT (task_id, attempt) DO UPDATE SET state = excluded.state,
            worker_id = COALESCE(excluded.worker_id, task_run_attempts.worker_id),
            deliveries = CASE WHEN excluded.deliveries > task_run_attempts.deliveries THEN excluded.deliveries ELSE task_run_attempts.deliveries END,
            started_at = COALESCE(excluded.started_at, task_run_attempts.started_at),
            finished_at = excluded.finished_at, duration_ms = excluded.duration_ms, error = excluded.error
        """

    public func find(id: String) async throws -> TaskRun? {
        try await database.withSQL { sql in
            try await sql.select().column("*").from("task_runs").where("id", .equal, id).first().map(Self.run)
        }
    }

    public func attempts(taskID: String) async throws -> [TaskAttempt] {
        try await database.withSQL { sql in
            try await sql.select().column("*").from("task_run_attempts").where("task_id", .equal, taskID)
                .orderBy("attempt").all().map(Self.attempt)
        }
    }

    public func list(_ filter: TaskRunFilter, page: PageRequest) async throws -> Page<TaskRun> {
        try await database.withSQL { sql in
            var query = sql.select().column("*").from("task_runs")
            if let state = filter.state { query = query.where("state", .equal, state.rawValue) }
            if let name = filter.name { query = query.where("task_name", .equal, name) }
            if let queue = filter.queue { query = query.where("queue", .equal, queue) }
            if let integrationID = filter.integrationID { query = query.where("integration_id", .equal, integrationID) }
            if let scheduleID = filter.scheduleID { query = query.where("schedule_id", .equal, scheduleID) }
            if let since = filter.since { query = query.where("enqueued_at", .greaterThanOrEqual, since) }
            if let until = filter.until { query = query.where("enqueued_at", .lessThan, until) }
            return try await query.page(page, decode: Self.run, id: \.id)
        }
    }

    /// Queue names that have carried tasks.
    public func knownQueues() async throws -> [String] {
        try await database.withSQL { sql in
            try await sql.raw("SELECT DISTINCT queue FROM task_runs ORDER BY queue").all().map { try $0.decode(column: "queue", as: String.self) }
        }
    }

    /// Runs in `state` on `queue`.
    public func count(state: TaskState, queue: String) async throws -> Int {
        try await database.withSQL { sql in
            try await sql.raw("SELECT COUNT(*) AS n FROM task_runs WHERE state = \(bind: state.rawValue) AND queue = \(bind: queue)")
                .first()?.decode(column: "n", as: Int.self) ?? 0
        }
    }

    /// How many runs are in each state (for benchmarks and checks).
    public func countByState() async throws -> [TaskState: Int] {
        try await database.withSQL { sql in
            var counts: [TaskState: Int] = [:]
            for row in try await sql.raw("SELECT state, COUNT(*) AS n FROM task_runs GROUP BY state").all() {
                if let state = TaskState(rawValue: try row.decode(column: "state", as: String.self)) {
                    counts[state] = try row.decode(column: "n", as: Int.self)
                }
            }
            return counts
        }
    }

    // MARK: Workers

    public func heartbeat(_ worker: WorkerInfo) async throws {
        try await database.withSQL { sql in
            try await sql.raw(
                """
                INSERT INTO workers (id, host, queues, concurrency, busy, started_at, last_seen)
                VALUES (\(bind: worker.id), \(bind: worker.host), \(bind: worker.queues.joined(separator: ",")), \(bind: worker.concurrency),
                        \(bind: worker.busy), \(bind: worker.startedAt), \(bind: worker.lastSeen))
                ON CONFLICT (id) DO UPDATE SET busy = excluded.busy, last_seen = excluded.last_seen
                """
            ).run()
        }
    }

    public func removeWorker(id: String) async throws {
        try await database.withSQL { sql in try await sql.delete(from: "workers").where("id", .equal, id).run() }
    }

    /// Workers seen since `since`, most recent first; older rows are pruned.
    public func liveWorkers(since: Date) async throws -> [WorkerInfo] {
        try await database.withSQL { sql in
            try await sql.delete(from: "workers").where("last_seen", .lessThan, since.addingTimeInterval(-3600)).run()
            return try await sql.select().column("*").from("workers").where("last_seen", .greaterThanOrEqual, since)
                .orderBy("id").all().map { row in
                    WorkerInfo(
                        id: try row.decode(column: "id", as: String.self),
                        host: try row.decode(column: "host", as: String.self),
                        queues: try row.decode(column: "queues", as: String.self).split(separator: ",").map(String.init),
                        concurrency: try row.decode(column: "concurrency", as: Int.self),
                        busy: try row.decode(column: "busy", as: Int.self),
                        startedAt: try row.decode(column: "started_at", as: Date.self),
                        lastSeen: try row.decode(column: "last_seen", as: Date.self))
                }
        }
    }

    static func run(_ row: any SQLRow) throws -> TaskRun {
        let result = try row.decode(column: "result", as: String?.self)
        return TaskRun(
            id: try row.decode(column: "id", as: String.self),
            name: try row.decode(column: "task_name", as: String.self),
            arguments: try row.decodeJSON(column: "arguments"),
            queue: try row.decode(column: "queue", as: String.self),
            priority: try row.decode(column: "priority", as: Int.self),
            state: TaskState(rawValue: try row.decode(column: "state", as: String.self)) ?? .failed,
            attempt: try row.decode(column: "attempt", as: Int.self),
            workerID: try row.decode(column: "worker_id", as: String?.self),
            enqueuedAt: try row.decode(column: "enqueued_at", as: Date.self),
            startedAt: try row.decode(column: "started_at", as: Date?.self),
            finishedAt: try row.decode(column: "finished_at", as: Date?.self),
            durationMilliseconds: try row.decode(column: "duration_ms", as: Int?.self),
            error: try row.decode(column: "error", as: String?.self),
            result: try result.map { try JSONValue.parse($0) },
            integrationID: try row.decode(column: "integration_id", as: String?.self),
            scheduleID: try row.decode(column: "schedule_id", as: String?.self),
            scheduledFor: try row.decode(column: "scheduled_for", as: Date?.self))
    }

    static func attempt(_ row: any SQLRow) throws -> TaskAttempt {
        TaskAttempt(
            attempt: try row.decode(column: "attempt", as: Int.self),
            state: TaskState(rawValue: try row.decode(column: "state", as: String.self)) ?? .failed,
            workerID: try row.decode(column: "worker_id", as: String?.self),
            deliveries: try row.decode(column: "deliveries", as: Int.self),
            startedAt: try row.decode(column: "started_at", as: Date?.self),
            finishedAt: try row.decode(column: "finished_at", as: Date?.self),
            durationMilliseconds: try row.decode(column: "duration_ms", as: Int?.self),
            error: try row.decode(column: "error", as: String?.self))
    }
}

// Task runs: one row per task with its current state, one row per attempt, and worker heartbeats.
import Foundation
import SQLKit

/// Where a task is in its life.
public enum TaskState: String, Sendable, Codable, CaseIterable {
    case queued, started, succeeded, failed, retrying, dead, revoked

    /// States that end a task (until someone retries it by hand).
    public var isFinal: Bool { [.succeeded, .failed, .dead, .revoked].contains(self) }

    /// States of a task that has not started: the ones it can be revoked from.
    public static let waiting: [TaskState] = [.queued, .retrying]
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
    /// Of `busy`, how many tasks run from each queue.
    public var busyByQueue: [String: Int]
    public var startedAt: Date
    public var lastSeen: Date

    public init(
        id: String, host: String, queues: [String], concurrency: Int, busy: Int, busyByQueue: [String: Int] = [:], startedAt: Date,
        lastSeen: Date
    ) {
        self.id = id
        self.host = host
        self.queues = queues
        self.concurrency = concurrency
        self.busy = busy
        self.busyByQueue = busyByQueue
        self.startedAt = startedAt
        self.lastSeen = lastSeen
    }
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
    /// The worker that ran the attempt (recorded with the outcome, since a short task's start may not have been).
    var workerID: String
    var error: String?
    /// The result summary as stored (JSON text).
    var encodedResult: String?
    var startedAt: Date
    var finishedAt: Date

    init(
        delivery: Delivery, state: TaskState, workerID: String, error: String?, encodedResult: String?, startedAt: Date, finishedAt: Date
    ) {
        self.delivery = delivery
        self.state = state
        self.workerID = workerID
        self.error = error.map { String($0.prefix(2000)) }
        self.encodedResult = encodedResult
        self.startedAt = startedAt
        self.finishedAt = finishedAt
    }

    var durationMilliseconds: Int { Int((finishedAt.timeIntervalSince(startedAt) * 1000).rounded()) }
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

    /// Marks an attempt as running on `workerID`. Returns `false` (and changes nothing) when the task was revoked or
    /// this message is a stale copy (see ``startable(_:)``).
    public func recordStarted(_ delivery: Delivery, workerID: String, at now: Date) async throws -> Bool {
        try await recordStarted([delivery], workerID: workerID, at: now)[0]
    }

    /// Marks the deliveries that may run (see ``startable(_:)``) as running, with one read and one write; for each
    /// delivery, in order, whether it may run.
    public func recordStarted(_ deliveries: [Delivery], workerID: String, at now: Date) async throws -> [Bool] {
        let allowed = try await startable(deliveries)
        try await markStarted(zip(deliveries, allowed).filter(\.1).map(\.0), workerID: workerID, at: now)
        return allowed
    }

    /// For each delivery, in order, whether it may run: not revoked, not superseded by a later attempt, and not an
    /// attempt that already finished. Stale copies come from the outbox, which may publish a message twice if it
    /// stops between publishing and forgetting it. One read, none when the claim read the runs
    /// (``Delivery/runAtClaim``); nothing is locked against a concurrent revoke.
    public func startable(_ deliveries: [Delivery]) async throws -> [Bool] {
        guard !deliveries.isEmpty else { return [] }
        let unread = deliveries.filter { $0.runAtClaim == nil }
        let current = unread.isEmpty ? [:] : try await blockingRuns(of: unread)
        return Self.startable(deliveries, current: current)
    }

    /// ``startable(_:)`` when the claim read every delivery's run (the SQL queue on PostgreSQL), without a query;
    /// `nil` when some run must be read.
    public func startableAsClaimed(_ deliveries: [Delivery]) -> [Bool]? {
        guard deliveries.allSatisfy({ $0.runAtClaim != nil }) else { return nil }
        return Self.startable(deliveries, current: [:])
    }

    private static func startable(_ deliveries: [Delivery], current: [String: (state: TaskState?, attempt: Int)]) -> [Bool] {
        deliveries.map { delivery in
            let message = delivery.message
            let run: (state: TaskState?, attempt: Int)?
            switch delivery.runAtClaim {
            case .found(let state, let attempt): run = (state, attempt)
            case .missing: run = nil
            case nil: run = current[message.id]
            }
            guard let (state, attempt) = run else { return true }
            if state == .revoked || attempt > message.attempt { return false }
            return !(attempt == message.attempt && Self.attemptEndingStates.contains(state?.rawValue ?? ""))
        }
    }

    /// The runs of `deliveries` that could refuse one of them, by task id: revoked or ended, or past the lowest attempt
    /// delivered. Every other run lets its delivery start, so only these (usually none) are read.
    private func blockingRuns(of deliveries: [Delivery]) async throws -> [String: (state: TaskState?, attempt: Int)] {
        let ids = Array(Set(deliveries.map(\.message.id)))
        let lowestAttempt = deliveries.map(\.message.attempt).min() ?? 0
        let blocking: SQLQueryString = """
            (state IN (\(binds: [TaskState.revoked.rawValue] + Self.attemptEndingStates)) OR attempt > \(bind: lowestAttempt))
            """
        let isPostgres = database.engine == .postgres
        return try await database.withSQL { sql in
            var current: [String: (state: TaskState?, attempt: Int)] = [:]
            for chunk in ids.chunks(of: isPostgres ? max(1, ids.count) : 500) {
                let matching = SQLQueryString.isOneOf(Array(chunk), on: sql)
                for row in try await sql.raw("SELECT id, state, attempt FROM task_runs WHERE id \(matching) AND \(blocking)").all() {
                    current[try row.decode(column: "id", as: String.self)] = (
                        TaskState(rawValue: try row.decode(column: "state", as: String.self)),
                        try row.decode(column: "attempt", as: Int.self)
                    )
                }
            }
            return current
        }
    }

    /// States that end an attempt for good: a copy of that attempt must not run again.
    private static let attemptEndingStates = [TaskState.succeeded, .failed, .dead].map(\.rawValue)

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

    /// Records how an attempt ended, and who ran it. For `.retrying`, the run moves on to `nextAttempt` in the same
    /// transaction, together with whatever `alsoInTransaction` writes (the retry's timer).
    public func recordOutcome(
        _ delivery: Delivery, state: TaskState, workerID: String? = nil, error: String?, result: JSONValue?, startedAt: Date,
        finishedAt: Date, nextAttempt: Int? = nil, alsoInTransaction: (@Sendable (any SQLDatabase) async throws -> Void)? = nil
    ) async throws {
        let message = delivery.message
        let duration = Int((finishedAt.timeIntervalSince(startedAt) * 1000).rounded())
        let error = error.map { String($0.prefix(2000)) }
        try await database.transaction { sql in
            var update = sql.update("task_runs")
                .set("state", to: state.rawValue).set("started_at", to: startedAt).set("finished_at", to: finishedAt)
                .set("duration_ms", to: duration)
                .set("updated_at", to: finishedAt).set("error", to: error)
                .set("result", to: result?.encodedString())
            if let nextAttempt { update = update.set("attempt", to: nextAttempt) }
            if let workerID { update = update.set("worker_id", to: workerID) }
            try await update.where("id", .equal, message.id).run()
            try await upsertAttempt(
                sql, taskID: message.id, attempt: message.attempt, state: state == .retrying ? .failed : state,
                workerID: workerID, deliveries: delivery.deliveries, startedAt: startedAt, finishedAt: finishedAt,
                duration: duration, error: error)
            try await alsoInTransaction?(sql)
        }
    }

    /// Marks a task revoked. Its attempts are untouched: an attempt is recorded once it starts, and this one never did.
    public func recordRevoked(taskID: String, at now: Date) async throws {
        try await database.withSQL { sql in
            try await sql.update("task_runs").set("state", to: TaskState.revoked.rawValue).set("finished_at", to: now)
                .set("updated_at", to: now).where("id", .equal, taskID).run()
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
        let busyByQueue = JSONValue.object(worker.busyByQueue.mapValues { .number(Double($0)) }).encodedString()
        try await database.withSQL { sql in
            try await sql.raw(
                """
                INSERT INTO workers (id, host, queues, concurrency, busy, busy_by_queue, started_at, last_seen)
                VALUES (\(bind: worker.id), \(bind: worker.host), \(bind: worker.queues.joined(separator: ",")), \(bind: worker.concurrency),
                        \(bind: worker.busy), \(bind: busyByQueue), \(bind: worker.startedAt), \(bind: worker.lastSeen))
                ON CONFLICT (id) DO UPDATE SET busy = excluded.busy, busy_by_queue = excluded.busy_by_queue, last_seen = excluded.last_seen
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
                        busyByQueue: try Self.busyByQueue(row.decode(column: "busy_by_queue", as: String?.self)),
                        startedAt: try row.decode(column: "started_at", as: Date.self),
                        lastSeen: try row.decode(column: "last_seen", as: Date.self))
                }
        }
    }

    private static func busyByQueue(_ text: String?) throws -> [String: Int] {
        guard let text, case .object(let counts) = try JSONValue.parse(text) else { return [:] }
        return counts.compactMapValues(\.intValue)
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

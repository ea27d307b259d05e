// The admin's read queries that the services do not offer: runs newest first with several states, queue depth per
// priority, finished tasks per minute, what the beat has due next, and the last run of each integration.
import Foundation
import SQLKit

/// What the task-runs page filters by; every part is optional.
struct AdminRunFilter: Sendable {
    var states: [TaskState] = []
    var task: String?
    var queue: String?
    var integrationID: String?
    var scheduleID: String?
    var since: Date?
    var until: Date?
}

/// Finished tasks in one minute.
struct MinuteCounts: Sendable {
    var succeeded = 0
    var failed = 0
}

struct AdminQueries: Sendable {
    let database: Database

    /// Runs matching `filter`, newest first, `limit` at a time, continued below the id `before`.
    func runs(_ filter: AdminRunFilter, before: String?, limit: Int) async throws -> (runs: [TaskRun], more: Bool) {
        let sqlite = database.engine == .sqlite
        return try await database.withSQL { sql in
            var query = SQLQueryString("SELECT * FROM task_runs WHERE 1 = 1")
            if !filter.states.isEmpty {
                // States, tasks and queues have few values, each shared by many runs: on SQLite their indexes would make
                // it sort every matching run, while walking the primary key newest first stops after one page. (`+`
                // keeps SQLite off an index; integration and schedule ids are selective and keep theirs.)
                query.appendLiteral(sqlite ? " AND +state IN (" : " AND state IN (")
                for (index, state) in filter.states.enumerated() {
                    if index > 0 { query.appendLiteral(", ") }
                    query.appendInterpolation(bind: state.rawValue)
                }
                query.appendLiteral(")")
            }
            if let task = filter.task {
                query.appendInterpolation(unsafeRaw: sqlite ? " AND +task_name = " : " AND task_name = ")
                query.appendInterpolation(bind: task)
            }
            if let queue = filter.queue { query.appendInterpolation(unsafeRaw: " AND queue = "); query.appendInterpolation(bind: queue) }
            if let id = filter.integrationID {
                query.appendInterpolation(unsafeRaw: " AND integration_id = ")
                query.appendInterpolation(bind: id)
            }
            if let id = filter.scheduleID { query.appendInterpolation(unsafeRaw: " AND schedule_id = "); query.appendInterpolation(bind: id) }
            if let since = filter.since { query.appendInterpolation(unsafeRaw: " AND enqueued_at >= "); query.appendInterpolation(bind: since) }
            if let until = filter.until { query.appendInterpolation(unsafeRaw: " AND enqueued_at < "); query.appendInterpolation(bind: until) }
            if let before { query.appendInterpolation(unsafeRaw: " AND id < "); query.appendInterpolation(bind: before) }
            query.appendInterpolation(unsafeRaw: " ORDER BY id DESC LIMIT \(limit + 1)")
            let rows = try await sql.raw(query).all()
            let runs = try rows.prefix(limit).map(TaskRunStore.run)
            return (Array(runs), rows.count > limit)
        }
    }

    /// Ids of every run matching `filter` (for bulk retry and revoke), at most `cap`.
    func runIDs(_ filter: AdminRunFilter, cap: Int) async throws -> [String] {
        var ids: [String] = []
        var before: String?
        while ids.count < cap {
            let page = try await runs(filter, before: before, limit: min(500, cap - ids.count))
            ids += page.runs.map(\.id)
            guard page.more, let last = page.runs.last else { break }
            before = last.id
        }
        return ids
    }

    /// Queued runs per queue and priority (from the runs, so it reads the same on either broker).
    func queuedByPriority() async throws -> [String: [(priority: Int, count: Int)]] {
        try await database.withSQL { sql in
            var result: [String: [(priority: Int, count: Int)]] = [:]
            let rows = try await sql.raw(
                "SELECT queue, priority, COUNT(*) AS n FROM task_runs WHERE state = 'queued' GROUP BY queue, priority ORDER BY priority DESC"
            ).all()
            for row in rows {
                let queue = try row.decode(column: "queue", as: String.self)
                result[queue, default: []].append((try row.decode(column: "priority", as: Int.self), try row.decode(column: "n", as: Int.self)))
            }
            return result
        }
    }

    /// Tasks that finished in each of the `minutes` minutes before `now`, oldest first.
    func finishedPerMinute(minutes: Int, now: Date) async throws -> [MinuteCounts] {
        let start = now.addingTimeInterval(-Double(minutes) * 60)
        let postgres = database.engine == .postgres
        return try await database.withSQL { sql in
            let bucket: SQLQueryString =
                postgres
                ? "FLOOR(EXTRACT(EPOCH FROM (finished_at - \(bind: start))) / 60)"
                : "CAST((finished_at - \(bind: start)) / 60 AS INTEGER)"
            // Runs are found by their enqueue time (indexed); a task that waited over a day before finishing is left out.
            let rows = try await sql.raw(
                """
                SELECT \(bucket) AS minute, state, COUNT(*) AS n FROM task_runs
                WHERE enqueued_at >= \(bind: start.addingTimeInterval(-86400)) AND finished_at >= \(bind: start)
                  AND finished_at < \(bind: now) AND state IN ('succeeded', 'failed', 'dead')
                GROUP BY 1, state
                """
            ).all()
            var counts = Array(repeating: MinuteCounts(), count: minutes)
            for row in rows {
                let minute = Int(try row.decode(column: "minute", as: Double.self))
                guard counts.indices.contains(minute) else { continue }
                let count = try row.decode(column: "n", as: Int.self)
                if try row.decode(column: "state", as: String.self) == "succeeded" {
                    counts[minute].succeeded += count
                } else {
                    counts[minute].failed += count
                }
            }
            return counts
        }
    }

    /// The earliest fire time of an enabled schedule and the earliest timer, whichever comes first.
    func nextDue() async throws -> Date? {
        try await database.withSQL { sql in
            let schedule = try await sql.raw("SELECT MIN(next_run_at) AS due FROM schedules WHERE enabled = \(unsafeRaw: database.engine == .postgres ? "TRUE" : "1")")
                .first()?.decode(column: "due", as: Date?.self)
            let timer = try await sql.raw("SELECT MIN(due_at) AS due FROM timers WHERE set_aside_reason IS NULL").first()?
                .decode(column: "due", as: Date?.self)
            return [schedule, timer].compactMap { $0 }.min()
        }
    }

    /// The latest run of each of `integrationIDs`.
    func lastRuns(of integrationIDs: [String]) async throws -> [String: TaskRun] {
        guard !integrationIDs.isEmpty else { return [:] }
        return try await database.withSQL { sql in
            var query = SQLQueryString("SELECT * FROM task_runs WHERE id IN (SELECT MAX(id) FROM task_runs WHERE integration_id IN (")
            for (index, id) in integrationIDs.enumerated() {
                if index > 0 { query.appendLiteral(", ") }
                query.appendInterpolation(bind: id)
            }
            query.appendLiteral(") GROUP BY integration_id)")
            var result: [String: TaskRun] = [:]
            for run in try await sql.raw(query).all().map(TaskRunStore.run) {
                if let id = run.integrationID { result[id] = run }
            }
            return result
        }
    }
}

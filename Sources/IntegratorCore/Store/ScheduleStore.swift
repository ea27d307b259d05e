// Reads and writes `schedules`; the beat's queries for due schedules live here too.
import Foundation
import SQLKit

/// Storage of schedules.
public struct ScheduleStore: Sendable {
    let database: Database

    public init(database: Database) { self.database = database }

    public func insert(_ schedule: Schedule) async throws {
        try await database.transaction { sql in
            let timing = Self.timingColumns(schedule.timing)
            try await sql.raw(
                """
                INSERT INTO schedules (id, name, task_name, arguments, kind, every_seconds, cron_expression, timezone, clocked_at,
                    enabled, one_off, start_time, expires, queue, priority, misfire, misfire_grace_seconds, overlap,
                    integration_id, anchor, next_run_at, last_run_at, last_task_id, total_run_count, created_at, updated_at)
                VALUES (\(bind: schedule.id), \(bind: schedule.name), \(bind: schedule.taskName), \(bind: schedule.arguments.encodedString()),
                    \(bind: schedule.timing.kind), \(bind: timing.every), \(bind: timing.expression), \(bind: timing.zone), \(bind: timing.at),
                    \(bind: schedule.enabled), \(bind: schedule.oneOff), \(bind: schedule.startTime), \(bind: schedule.expires),
                    \(bind: schedule.queue), \(bind: schedule.priority), \(bind: schedule.misfire.rawValue),
                    \(bind: schedule.misfireGraceSeconds), \(bind: schedule.overlap.rawValue), \(bind: schedule.integrationID),
                    \(bind: schedule.anchor), \(bind: schedule.nextRunAt), \(bind: schedule.lastRunAt), \(bind: schedule.lastTaskID),
                    \(bind: schedule.totalRunCount), \(bind: schedule.createdAt), \(bind: schedule.updatedAt))
                """
            ).run()
            try await BeatWakeup.notifyOthers(sql)
        }
    }

    /// Changes a schedule against its current row: the row is locked (on SQLite the write transaction holds the
    /// database), `change` gets what is stored now — including what the beat wrote a moment ago — and what it returns
    /// is saved. So an edit racing a fire cannot write back a `next_run_at` the beat has already moved past. The beat's
    /// own columns (`last_run_at`, `last_task_id`, `total_run_count`) are left alone. `nil` when there is no such row.
    /// - Parameter change: runs inside the transaction; it must not touch the database.
    public func update(id: String, _ change: @escaping @Sendable (Schedule) throws -> Schedule) async throws -> Schedule? {
        let lock: SQLQueryString = database.engine == .postgres ? "FOR UPDATE" : ""
        return try await database.transaction { sql in
            guard let row = try await sql.raw("SELECT * FROM schedules WHERE id = \(bind: id) \(lock)").first() else { return nil }
            let schedule = try change(try Self.schedule(row))
            // Enabling a schedule that was set aside (and has been repaired, since it was read) takes it back.
            let setAsideReason: String? = schedule.enabled ? nil : try Self.setAsideReason(row)
            let timing = Self.timingColumns(schedule.timing)
            try await sql.raw(
                """
                UPDATE schedules SET name = \(bind: schedule.name), task_name = \(bind: schedule.taskName),
                    arguments = \(bind: schedule.arguments.encodedString()), kind = \(bind: schedule.timing.kind),
                    every_seconds = \(bind: timing.every), cron_expression = \(bind: timing.expression), timezone = \(bind: timing.zone),
                    clocked_at = \(bind: timing.at), enabled = \(bind: schedule.enabled), one_off = \(bind: schedule.oneOff),
                    start_time = \(bind: schedule.startTime), expires = \(bind: schedule.expires), queue = \(bind: schedule.queue),
                    priority = \(bind: schedule.priority), misfire = \(bind: schedule.misfire.rawValue),
                    misfire_grace_seconds = \(bind: schedule.misfireGraceSeconds), overlap = \(bind: schedule.overlap.rawValue),
                    integration_id = \(bind: schedule.integrationID), anchor = \(bind: schedule.anchor),
                    next_run_at = \(bind: schedule.nextRunAt), updated_at = \(bind: schedule.updatedAt),
                    set_aside_reason = \(bind: setAsideReason)
                WHERE id = \(bind: id)
                """
            ).run()
            try await BeatWakeup.notifyOthers(sql)
            return schedule
        }
    }

    @discardableResult
    public func delete(id: String) async throws -> Bool {
        try await database.withSQL { sql in
            !(try await sql.raw("DELETE FROM schedules WHERE id = \(bind: id) RETURNING id").all()).isEmpty
        }
    }

    public func find(id: String) async throws -> Schedule? {
        try await database.withSQL { sql in
            try await sql.raw("SELECT * FROM schedules WHERE id = \(bind: id)").first().map(Self.schedule)
        }
    }

    public func find(name: String) async throws -> Schedule? {
        try await database.withSQL { sql in
            try await sql.raw("SELECT * FROM schedules WHERE name = \(bind: name)").first().map(Self.schedule)
        }
    }

    /// A page of schedules. A row that cannot be read (the beat set it aside, see ``setAsideReason(id:)``) is left out
    /// of the page instead of failing it, so one bad row never hides the others; the cursor still moves past it.
    public func list(enabled: Bool?, integrationID: String?, page: PageRequest) async throws -> Page<Schedule> {
        try await database.withSQL { sql in
            var query = sql.select().column("*").from("schedules")
            if let enabled { query = query.where("enabled", .equal, enabled) }
            if let integrationID { query = query.where("integration_id", .equal, integrationID) }
            if let after = page.after { query = query.where("id", .greaterThan, after) }
            var rows = try await query.orderBy("id").limit(page.limit + 1).all()
            let hasMore = rows.count > page.limit
            if hasMore { rows.removeLast() }
            let items = rows.compactMap { try? Self.schedule($0) }
            let lastID = try rows.last?.decode(column: "id", as: String.self)
            return Page(items: items, nextCursor: hasMore ? lastID.map(PageRequest.encodeCursor) : nil)
        }
    }

    public func countEnabled() async throws -> Int {
        try await database.withSQL { sql in
            try await sql.raw("SELECT COUNT(*) AS n FROM schedules WHERE enabled = \(bind: true)").first()?
                .decode(column: "n", as: Int.self) ?? 0
        }
    }

    /// The earliest next fire time of an enabled schedule.
    func earliestDue() async throws -> Date? {
        try await database.withSQL { sql in
            try await sql.raw(
                "SELECT next_run_at FROM schedules WHERE enabled = \(Self.enabledLiteral(database.engine)) AND next_run_at IS NOT NULL ORDER BY next_run_at LIMIT 1"
            ).first()?.decode(column: "next_run_at", as: Date.self)
        }
    }

    /// Due schedules as ``lockDue(at:limit:_:engine:)`` read them: the readable ones, and the ids of rows that could
    /// not be read, with the reason.
    struct DueSchedules: Sendable {
        var schedules: [Schedule] = []
        var unreadable: [(id: String, reason: String)] = []
    }

    /// Inside a transaction: up to `limit` enabled schedules due by `now`, earliest first, locked against other beats.
    /// A row that cannot be read is reported apart (see ``setAside(_:at:_:)``), not thrown: it must not stop the others.
    func lockDue(at now: Date, limit: Int, _ sql: any SQLDatabase, engine: Database.Engine) async throws -> DueSchedules {
        let lock: SQLQueryString = engine == .postgres ? "FOR UPDATE SKIP LOCKED" : ""
        let rows = try await sql.raw(
            """
            SELECT * FROM schedules WHERE enabled = \(Self.enabledLiteral(engine)) AND next_run_at <= \(bind: now)
            ORDER BY next_run_at LIMIT \(bind: limit) \(lock)
            """
        ).all()
        var due = DueSchedules()
        for row in rows {
            do {
                due.schedules.append(try Self.schedule(row))
            } catch {
                due.unreadable.append((try row.decode(column: "id", as: String.self), "\(error)"))
            }
        }
        return due
    }

    /// Inside a transaction: disables schedules the beat cannot read and records why (`set_aside_reason`). Their rows
    /// stay as they are otherwise; enabling one again (after repairing it) clears the reason.
    func setAside(_ unreadable: [(id: String, reason: String)], at now: Date, _ sql: any SQLDatabase) async throws {
        for (id, reason) in unreadable {
            try await sql.raw(
                """
                UPDATE schedules SET enabled = \(bind: false), set_aside_reason = \(bind: reason), updated_at = \(bind: now)
                WHERE id = \(bind: id)
                """
            ).run()
        }
    }

    /// Why a schedule was set aside, if it was.
    public func setAsideReason(id: String) async throws -> String? {
        try await database.withSQL { sql in
            try await sql.raw("SELECT set_aside_reason FROM schedules WHERE id = \(bind: id)").first()
                .flatMap { try Self.setAsideReason($0) }
        }
    }

    private static func setAsideReason(_ row: any SQLRow) throws -> String? {
        try row.decode(column: "set_aside_reason", as: String?.self)
    }

    /// Inside a transaction: what a fire changed. `fired` counts the fire times recorded (a fire time that already
    /// had a run is not counted again); `lastTaskID` is the last task recorded.
    func recordFire(
        _ schedule: Schedule, plan: FirePlan, fired: Int, lastTaskID: String?, at now: Date, _ sql: any SQLDatabase
    ) async throws {
        var finished = false
        if case .clocked = schedule.timing { finished = true }
        if schedule.oneOff, !plan.fireTimes.isEmpty { finished = true }
        try await sql.raw(
            """
            UPDATE schedules SET next_run_at = \(bind: plan.nextRunAt),
                enabled = \(bind: schedule.enabled && !finished),
                last_run_at = \(bind: fired == 0 ? schedule.lastRunAt : now),
                last_task_id = \(bind: lastTaskID),
                total_run_count = total_run_count + \(bind: fired)
            WHERE id = \(bind: schedule.id)
            """
        ).run()
    }

    /// Inside a transaction: a fire by hand (`POST …/run`), counted like any other.
    func recordManualRun(id: String, taskID: String, at now: Date, _ sql: any SQLDatabase) async throws {
        try await sql.raw(
            """
            UPDATE schedules SET last_run_at = \(bind: now), last_task_id = \(bind: taskID), total_run_count = total_run_count + 1
            WHERE id = \(bind: id)
            """
        ).run()
    }

    /// `true` spelled as a literal, so the planner can use the partial index on enabled schedules (a bound
    /// parameter would hide that the predicate matches the index's).
    private static func enabledLiteral(_ engine: Database.Engine) -> SQLQueryString {
        engine == .postgres ? "TRUE" : "1"
    }

    private static func timingColumns(_ timing: ScheduleTiming) -> (every: Int?, expression: String?, zone: String?, at: Date?) {
        switch timing {
        case .interval(let seconds): (seconds, nil, nil, nil)
        case .crontab(let expression, let zone): (nil, expression.description, zone.identifier, nil)
        case .clocked(let at): (nil, nil, nil, at)
        }
    }

    static func schedule(_ row: any SQLRow) throws -> Schedule {
        let kind = try row.decode(column: "kind", as: String.self)
        let timing: ScheduleTiming
        switch kind {
        case "interval":
            timing = .interval(seconds: try row.decode(column: "every_seconds", as: Int.self))
        case "crontab":
            let text = try row.decode(column: "cron_expression", as: String.self)
            let zoneName = try row.decode(column: "timezone", as: String.self)
            guard let zone = TimeZone(identifier: zoneName), let expression = try? CronExpression(text) else {
                throw StoreError(code: .other, message: "schedule has an unreadable crontab '\(text)' in '\(zoneName)'")
            }
            timing = .crontab(expression, timeZone: zone)
        default:
            timing = .clocked(try row.decode(column: "clocked_at", as: Date.self))
        }
        return Schedule(
            id: try row.decode(column: "id", as: String.self),
            name: try row.decode(column: "name", as: String.self),
            taskName: try row.decode(column: "task_name", as: String.self),
            arguments: try row.decodeJSON(column: "arguments"),
            timing: timing,
            enabled: try row.decode(column: "enabled", as: Bool.self),
            oneOff: try row.decode(column: "one_off", as: Bool.self),
            startTime: try row.decode(column: "start_time", as: Date?.self),
            expires: try row.decode(column: "expires", as: Date?.self),
            queue: try row.decode(column: "queue", as: String.self),
            priority: try row.decode(column: "priority", as: Int.self),
            misfire: MisfirePolicy(rawValue: try row.decode(column: "misfire", as: String.self)) ?? .runOnce,
            misfireGraceSeconds: try row.decode(column: "misfire_grace_seconds", as: Int.self),
            overlap: OverlapPolicy(rawValue: try row.decode(column: "overlap", as: String.self)) ?? .skip,
            integrationID: try row.decode(column: "integration_id", as: String?.self),
            anchor: try row.decode(column: "anchor", as: Date.self),
            nextRunAt: try row.decode(column: "next_run_at", as: Date?.self),
            lastRunAt: try row.decode(column: "last_run_at", as: Date?.self),
            lastTaskID: try row.decode(column: "last_task_id", as: String?.self),
            totalRunCount: try row.decode(column: "total_run_count", as: Int.self),
            createdAt: try row.decode(column: "created_at", as: Date.self),
            updatedAt: try row.decode(column: "updated_at", as: Date.self))
    }
}

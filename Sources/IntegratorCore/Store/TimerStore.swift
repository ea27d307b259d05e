// Durable one-shot timers: a task to publish at a due time, stored until the beat fires it.
import Foundation
import SQLKit

/// A task due at one instant. Clocked work, retries, scheduled webhooks and debounce flushes are all timers.
public struct DurableTimer: Sendable, Equatable {
    /// Caller-chosen (`debounce:user-42`) for upsert and cancel, or generated.
    public var id: String
    public var dueAt: Date
    /// The message published when the timer fires; its `id` is the task id the run will carry.
    public var message: TaskMessage

    public init(id: String = Identifier.make(), dueAt: Date, message: TaskMessage) {
        self.id = id
        self.dueAt = dueAt
        self.message = message
    }
}

/// Reads and writes `timers`. Writers wake the beat so a timer due soon fires on time.
public struct TimerStore: Sendable {
    let database: Database
    let wakeup: BeatWakeup

    public init(database: Database, wakeup: BeatWakeup) {
        self.database = database
        self.wakeup = wakeup
    }

    /// Creates the timer, or moves an existing one with the same id to the new due time and task (a debounce).
    public func upsert(_ timer: DurableTimer, at now: Date) async throws {
        // One statement, which wakes other processes' beats as it commits.
        try await database.withSQL { sql in try await upsert([timer], at: now, sql, wakingBeatsFor: timer.dueAt) }
        wakeup.notify(dueAt: timer.dueAt)
    }

    /// Writes the timer inside the caller's transaction and wakes other processes' beats when it commits. The caller
    /// wakes this process's beat after committing.
    func upsert(_ timer: DurableTimer, at now: Date, _ sql: any SQLDatabase) async throws {
        try await upsert([timer], at: now, sql, wakingBeatsFor: timer.dueAt)
    }

    /// Creates many timers (or moves existing ones) in chunked multi-row statements, each committed on its own.
    public func upsert(contentsOf timers: [DurableTimer], at now: Date) async throws {
        for chunk in timers.chunks(of: Self.chunkSize) {
            try await database.withSQL { sql in try await upsert(Array(chunk), at: now, sql, wakingBeatsFor: chunk.map(\.dueAt).min()) }
        }
        wakeup.notify(dueAt: timers.map(\.dueAt).min())
    }

    /// Creates many timers (or moves existing ones) together with the caller's own `writes`: all take effect or none
    /// does, and the beats are woken for the earliest timer. On PostgreSQL it is one statement, the writes running as
    /// `WITH` parts of the timers' upsert: one round trip where a transaction takes four. So each write must be a
    /// statement that returns nothing the caller reads, and none may touch a timer (the parts of one statement share a
    /// snapshot). More than ``chunkSize`` timers, or SQLite, take a transaction.
    public func upsert(contentsOf timers: [DurableTimer], at now: Date, writingAlso writes: [SQLQueryString]) async throws {
        guard let earliest = timers.map(\.dueAt).min() else {
            try await database.writeTogether(writes)
            return
        }
        guard database.engine == .postgres, timers.count <= Self.chunkSize else {
            try await database.withTransaction { transaction in
                for write in writes { try await transaction.sql.raw(write).run() }
                try await upsert(contentsOf: timers, in: transaction, at: now)
            }
            return
        }
        try await database.withSQL { sql in try await upsert(timers, at: now, sql, wakingBeatsFor: earliest, writingAlso: writes) }
        wakeup.notify(dueAt: earliest)
    }

    /// One multi-row upsert. A statement may not touch a row twice, so of timers sharing an id the last wins.
    /// `wakingBeatsFor` (PostgreSQL only) also sends the beats of other processes ``BeatWakeup``'s notification for
    /// that due time, delivered at commit, in the same statement: a round trip less than a `pg_notify` of its own.
    /// `writingAlso` are the caller's statements written with it: on PostgreSQL as `WITH` parts of this one (see
    /// ``upsert(contentsOf:at:writingAlso:)``), on SQLite one after the other before it.
    func upsert(
        _ timers: [DurableTimer], at now: Date, _ sql: any SQLDatabase, wakingBeatsFor dueAt: Date? = nil,
        writingAlso writes: [SQLQueryString] = []
    ) async throws {
        let rows = timers.lastOccurrences(by: \.id).map { timer -> SQLQueryString in
            let message = timer.message
            return """
                (\(bind: timer.id), \(bind: timer.dueAt), \(bind: message.id), \(bind: message.name),
                 \(bind: message.arguments.encodedString()), \(bind: message.queue), \(bind: message.priority),
                 \(bind: message.attempt), \(bind: message.maxAttempts), \(bind: message.integrationID),
                 \(bind: message.scheduleID), \(bind: now))
                """
        }
        let write: SQLQueryString = """
            INSERT INTO timers (id, due_at, task_id, task_name, arguments, queue, priority, attempt, max_attempts,
                                integration_id, schedule_id, created_at)
            VALUES \(rows.joined(separator: ", "))
            ON CONFLICT (id) DO UPDATE SET due_at = excluded.due_at, task_id = excluded.task_id, task_name = excluded.task_name,
                arguments = excluded.arguments, queue = excluded.queue, priority = excluded.priority,
                attempt = excluded.attempt, max_attempts = excluded.max_attempts,
                integration_id = excluded.integration_id, schedule_id = excluded.schedule_id, set_aside_reason = NULL
            """
        var statements = writes + [write]
        if let dueAt, database.engine == .postgres {
            // Last, so the statement's own select sends it; the writes before it, as `WITH` parts, run to the end
            // whether read or not.
            statements.append(.notification(on: BeatWakeup.channel, payload: BeatWakeup.payload(dueAt: dueAt)))
        }
        try await sql.runTogether(statements, engine: database.engine)
    }

    /// Timers per multi-row statement: 12 parameters each stays under both engines' limits on bound parameters.
    static let chunkSize = 1000

    /// Removes a timer that has not fired; `false` when there is none with that id.
    @discardableResult
    public func cancel(id: String) async throws -> Bool {
        try await database.withSQL { sql in
            !(try await sql.raw("DELETE FROM timers WHERE id = \(bind: id) RETURNING id").all()).isEmpty
        }
    }

    public func find(id: String) async throws -> DurableTimer? {
        try await database.withSQL { sql in
            try await sql.raw("SELECT * FROM timers WHERE id = \(bind: id)").first().map(Self.timer)
        }
    }

    public func count() async throws -> Int {
        try await database.withSQL { sql in
            try await sql.raw("SELECT COUNT(*) AS n FROM timers").first()?.decode(column: "n", as: Int.self) ?? 0
        }
    }

    /// The earliest due time, if any timer is pending.
    func earliestDue() async throws -> Date? {
        try await database.withSQL { try await Self.earliestDue($0) }
    }

    private static func earliestDue(_ sql: any SQLDatabase) async throws -> Date? {
        try await sql.raw("SELECT due_at FROM timers WHERE set_aside_reason IS NULL ORDER BY due_at LIMIT 1").first()?
            .decode(column: "due_at", as: Date.self)
    }

    /// What the take's statement does besides taking, on PostgreSQL, each sparing the beat's pass a round trip of its
    /// own. SQLite ignores them: it has no notifications, and its commits do not wait for another server.
    struct TakeCompanions: Sendable {
        /// Sets `synchronous_commit` off for the rest of the transaction, as `SET LOCAL` would.
        var commitWithoutWaitingForFlush = false
        /// Sends this `NOTIFY`, delivered when the transaction commits, if the take took any timer.
        var announceOn: QueueAnnouncement?
    }

    /// What one take found: the timers it took, earliest first, and when the earliest timer it left is due (`nil`
    /// when none is left), as the take's snapshot saw them.
    struct Taken: Sendable {
        var timers: [DurableTimer]
        var nextDue: Date?
    }

    /// ``takeDue(at:limit:_:engine:companions:)``'s statement on PostgreSQL.
    static func postgresTake(at now: Date, limit: Int, companions: TakeCompanions) -> SQLQueryString {
        // Companion parts run because the outermost select list counts their rows (once, as an init plan): a
        // part of a WITH that no output column reads does not run, even when it calls a volatile function.
        var parts: [SQLQueryString] = []
        var counts: [SQLQueryString] = []
        if companions.commitWithoutWaitingForFlush {
            parts.append(", commit_mode AS MATERIALIZED (SELECT set_config('synchronous_commit', 'off', true) AS applied)")
            counts.append(", (SELECT count(*) FROM commit_mode) AS commit_mode_set")
        }
        if let announcement = companions.announceOn {
            parts.append(
                """
                , announced AS MATERIALIZED (
                    SELECT pg_notify(\(bind: announcement.channel), \(bind: announcement.sender)) AS sent WHERE EXISTS (SELECT 1 FROM taken))
                """)
            counts.append(", (SELECT count(*) FROM announced) AS announcements")
        }
        // Every part of the statement sees the table as it was before the delete, so the timers taken are left out
        // of the next due time by id. A row another beat holds may be among those read: it is due now anyway.
        // `= ANY(ARRAY(…))` rather than `IN (…)`: as a semi-join, the delete made the planner weigh join methods
        // against the whole table at every take, and planning cost as much as running it at a thousand timers a second.
        return """
            WITH taken AS (
                DELETE FROM timers WHERE id = ANY(ARRAY(
                    SELECT id FROM timers WHERE due_at <= \(bind: now) AND set_aside_reason IS NULL
                    ORDER BY due_at, id LIMIT \(bind: limit) FOR UPDATE SKIP LOCKED
                )) RETURNING *
            ), following AS (
                SELECT due_at FROM timers WHERE set_aside_reason IS NULL AND id NOT IN (SELECT id FROM taken)
                ORDER BY due_at LIMIT 1
            )\(parts.joined(separator: ""))
            SELECT taken.*, upcoming.due_at AS next_due_at\(counts.joined(separator: ""))
            FROM (SELECT (SELECT due_at FROM following) AS due_at) AS upcoming LEFT JOIN taken ON true
            """
    }

    /// Inside a transaction: takes up to `limit` timers due by `now`, earliest first, and deletes them, in one
    /// statement. On PostgreSQL rows another transaction holds are skipped, so two beats never take the same timer.
    /// The same statement reads when the earliest timer left is due, which spares the beat a query before it sleeps.
    /// Throws ``UnreadableTimers`` when a row taken cannot be read: the caller rolls back (the rows come back), sets
    /// those aside (``setAside(_:)``) and takes the batch again.
    func takeDue(
        at now: Date, limit: Int, _ sql: any SQLDatabase, engine: Database.Engine, companions: TakeCompanions = TakeCompanions()
    ) async throws -> Taken {
        let rows: [any SQLRow]
        var nextDue: Date?
        if engine == .postgres {
            rows = try await sql.raw(Self.postgresTake(at: now, limit: limit, companions: companions)).all()
            nextDue = try rows.first?.decode(column: "next_due_at", as: Date?.self)
        } else {
            // SQLite has no DELETE in a WITH; its queries are calls within the process, so the second costs little.
            rows = try await sql.raw(
                """
                DELETE FROM timers WHERE id IN (
                    SELECT id FROM timers WHERE due_at <= \(bind: now) AND set_aside_reason IS NULL
                    ORDER BY due_at, id LIMIT \(bind: limit)
                ) RETURNING *
                """
            ).all()
            nextDue = try await Self.earliestDue(sql)
        }
        var timers: [DurableTimer] = []
        var unreadable = UnreadableTimers()
        timers.reserveCapacity(rows.count)
        // On PostgreSQL, a take that found nothing still returns one row: the next due time with no timer.
        for row in rows where try row.decode(column: "id", as: String?.self) != nil {
            do {
                timers.append(try Self.timer(row))
            } catch {
                unreadable.timers.append((try row.decode(column: "id", as: String.self), "\(error)"))
            }
        }
        guard unreadable.timers.isEmpty else { throw unreadable }
        return Taken(timers: timers.sorted { ($0.dueAt, $0.id) < ($1.dueAt, $1.id) }, nextDue: nextDue)
    }

    /// Keeps timers that cannot be read out of the beat's way, stored with the reason (`set_aside_reason`). Setting a
    /// timer with the same id again replaces it and takes it back.
    func setAside(_ unreadable: UnreadableTimers) async throws {
        try await database.transaction { sql in
            for (id, reason) in unreadable.timers {
                try await sql.raw("UPDATE timers SET set_aside_reason = \(bind: reason) WHERE id = \(bind: id)").run()
            }
        }
    }

    /// Why a timer was set aside, if it was.
    public func setAsideReason(id: String) async throws -> String? {
        try await database.withSQL { sql in
            try await sql.raw("SELECT set_aside_reason FROM timers WHERE id = \(bind: id)").first()?
                .decode(column: "set_aside_reason", as: String?.self)
        }
    }

    static func timer(_ row: any SQLRow) throws -> DurableTimer {
        DurableTimer(
            id: try row.decode(column: "id", as: String.self),
            dueAt: try row.decode(column: "due_at", as: Date.self),
            message: try TaskMessage.decode(row, enqueuedAtColumn: "created_at"))
    }
}

/// Due timers whose rows could not be read, by id with the reason.
struct UnreadableTimers: Error, CustomStringConvertible {
    var timers: [(id: String, reason: String)] = []

    var description: String { "unreadable timers: \(timers.map { "\($0.id): \($0.reason)" }.joined(separator: "; "))" }
}

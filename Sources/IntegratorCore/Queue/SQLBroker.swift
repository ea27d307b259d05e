// The embedded broker: queue rows in the store's own database, leased to workers, priority then FIFO.
import Foundation
import SQLKit
import Synchronization

/// A `NOTIFY` telling idle workers that tasks were queued: the channel, and the payload naming the broker that sent it.
struct QueueAnnouncement: Sendable {
    var channel: String
    var sender: String
}

/// A broker on SQL tables. On PostgreSQL, claims use `FOR UPDATE SKIP LOCKED`, so many worker processes share
/// the queue without blocking each other; SQLite serves one process. A lease that runs out (a worker died) makes
/// the message deliverable again, so nothing is lost.
public struct SQLBroker: InDatabaseBroker {
    let database: Database
    let clock: any TimeSource
    private let lastAnalyze = LastAnalyze()
    private let arrivals = QueueArrivals()

    public init(database: Database, clock: any TimeSource = SystemTimeSource()) {
        self.database = database
        self.clock = clock
    }

    public func publish(_ message: TaskMessage) async throws {
        try await database.withSQL { sql in try await insert(message, availableAt: message.enqueuedAt, sql) }
        arrivals.note()
    }

    /// Inserts in an existing transaction, so a run record and its message are written together.
    func insert(_ message: TaskMessage, availableAt: Date, _ sql: any SQLDatabase) async throws {
        try await insert([message], availableAt: { _ in availableAt }, sql)
    }

    /// Inserts many messages with multi-row statements in an existing transaction.
    func insert(_ messages: [TaskMessage], availableAt: (TaskMessage) -> Date, _ sql: any SQLDatabase) async throws {
        for statement in insertStatements(messages, availableAt: availableAt) { try await sql.raw(statement).run() }
    }

    /// The statements that insert `messages` (to run with others, see ``Database/writeTogether(_:asOneStatement:)``).
    func insertStatements(_ messages: [TaskMessage], availableAt: (TaskMessage) -> Date) -> [SQLQueryString] {
        // Idle workers are woken once the rows have committed (noteCommittedArrivals): woken now, they would find
        // nothing and poll until then.
        guard !messages.isEmpty else { return [] }
        if database.engine == .postgres {
            let rows = TaskMessage.unnested(messages, extra: [("available_at", "\(bind: messages.map(availableAt))::timestamptz[]")])
            return [
                """
                INSERT INTO task_queue (task_id, task_name, arguments, queue, priority, attempt, enqueued_at, available_at,
                                        deliveries, dead, integration_id, schedule_id, max_attempts)
                SELECT task_id, task_name, arguments, queue, priority, attempt, enqueued_at, available_at, 0, FALSE,
                       NULLIF(integration_id, ''), NULLIF(schedule_id, ''), NULLIF(max_attempts, 0)
                FROM \(rows)
                """
            ]
        }
        return messages.chunks(of: 400).map { chunk in
            let rows = chunk.map { message -> SQLQueryString in
                """
                (\(bind: message.id), \(bind: message.name), \(bind: message.arguments.encodedString()), \(bind: message.queue),
                 \(bind: message.priority), \(bind: message.attempt), \(bind: message.enqueuedAt), \(bind: availableAt(message)),
                 0, \(bind: false), \(bind: message.integrationID), \(bind: message.scheduleID), \(bind: message.maxAttempts))
                """
            }
            return """
                INSERT INTO task_queue (task_id, task_name, arguments, queue, priority, attempt, enqueued_at, available_at,
                                        deliveries, dead, integration_id, schedule_id, max_attempts)
                VALUES \(rows.joined(separator: ", "))
                """
        }
    }

    public var arrivalMark: UInt64 { arrivals.mark }

    func noteCommittedArrivals() {
        arrivals.note()
    }

    /// The PostgreSQL channel on which the beat tells idle workers of other processes that it queued tasks.
    static let arrivalsChannel = "integrator_queue"

    /// The announcement this broker's beat makes: its payload names this broker, whose own workers were already told
    /// within the process (``noteCommittedArrivals()``) and ignore it.
    var announcement: QueueAnnouncement { QueueAnnouncement(channel: Self.arrivalsChannel, sender: arrivals.sender) }

    /// Inside a transaction that queued messages: on PostgreSQL, workers listening in other processes hear of them
    /// when it commits. Only the beat calls it, once per batch of fires: `NOTIFY` serialises committing transactions,
    /// too dear for every enqueue.
    func announceArrivals(_ sql: any SQLDatabase) async throws {
        try await sql.notifyAtCommit(Self.arrivalsChannel, payload: arrivals.sender)
    }

    /// On PostgreSQL, hears the beats' announcements for this process's workers until cancelled, listening again
    /// after a dropped connection. Missing some only costs a poll pause. This broker's own announcements are skipped:
    /// heard a moment after the local news, each made an idle worker claim a second time and find nothing.
    public func receiveNewsOfArrivals() async {
        guard database.engine == .postgres else { return }
        let ownSender = arrivals.sender
        while !Task.isCancelled {
            do {
                try await database.listen(channel: Self.arrivalsChannel) { sender in
                    if sender != ownSender { arrivals.note() }
                }
            } catch {
                if Task.isCancelled { return }
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }

    /// Idle workers are woken by messages their own process inserts and, on PostgreSQL, by the beat's announcements
    /// (``receiveNewsOfArrivals()``); other news waits for their next poll.
    public func waitForMessages(after mark: UInt64, upTo limit: Duration) async -> Bool {
        await arrivals.wait(after: mark, upTo: limit)
    }

    public func claim(queues: [String], limit: Int, workerID: String, leaseUntil: Date) async throws -> [Delivery] {
        guard !queues.isEmpty, limit > 0 else { return [] }
        let now = clock.now()
        let available: SQLQueryString = """
            SELECT seq FROM task_queue
            WHERE queue IN (\(binds: queues)) AND dead = \(bind: false) AND available_at <= \(bind: now)
              AND (lease_until IS NULL OR lease_until < \(bind: now))
            ORDER BY priority DESC, seq
            LIMIT \(bind: limit)
            """
        // On PostgreSQL the chosen rows come back as an array that the update finds through the primary key; with
        // `seq IN (…)` it scanned the whole table for them, a cost that grew with the backlog (3 ms a claim at 10,000
        // queued tasks, against 1.5 ms).
        let chosen: SQLQueryString =
            database.engine == .postgres ? "seq = ANY(ARRAY(\(available) FOR UPDATE SKIP LOCKED))" : "seq IN (\(available))"
        let update: SQLQueryString = """
            UPDATE task_queue SET lease_until = \(bind: leaseUntil), leased_by = \(bind: workerID), deliveries = deliveries + 1
            WHERE \(chosen)
            RETURNING seq, task_id, task_name, arguments, queue, priority, attempt, enqueued_at, integration_id, schedule_id,
                      max_attempts, deliveries
            """
        // On PostgreSQL the claim also reads the claimed tasks' runs, which the worker checks before it starts them (a
        // revoked or finished task must not run): a round trip less for every claim.
        let readsRuns = database.engine == .postgres
        let claim: SQLQueryString =
            readsRuns
            ? """
            WITH claimed AS (\(update))
            SELECT claimed.*, r.id AS run_id, r.state AS run_state, r.attempt AS run_attempt
            FROM claimed LEFT JOIN task_runs AS r ON r.id = claimed.task_id
            """
            : update
        let began = ContinuousClock.now
        let rows = try await database.withSQL { sql in try await sql.raw(claim).all() }
        if !rows.isEmpty, ContinuousClock.now - began > .milliseconds(20) { try await refreshStatisticsIfDue() }
        // RETURNING gives no order: put the claimed ones back in priority, then FIFO order (the tag is the seq).
        return try rows.map { row in
            var delivery = try Self.delivery(row)
            if readsRuns { delivery.runAtClaim = try Self.runAtClaim(row) }
            return delivery
        }.sorted { first, second in
            first.message.priority != second.message.priority
                ? first.message.priority > second.message.priority : (Int64(first.tag) ?? 0) < (Int64(second.tag) ?? 0)
        }
    }

    /// PostgreSQL plans the claim from the queue table's statistics. When the table filled up since they were taken
    /// (a fresh install, a burst after a quiet spell) it estimates a handful of rows and scans and sorts the whole
    /// queue instead of walking the claim index, and every claim pays for that until autovacuum analyzes the table.
    /// A slow claim therefore refreshes the statistics at once, at most once a minute per broker.
    private func refreshStatisticsIfDue() async throws {
        guard database.engine == .postgres else { return }
        let now = ContinuousClock.now
        let due = lastAnalyze.time.withLock { last -> Bool in
            if let last, now - last < .seconds(60) { return false }
            last = now
            return true
        }
        if due { try await database.withSQL { sql in try await sql.raw("ANALYZE task_queue").run() } }
    }

    public func acknowledge(_ delivery: Delivery) async throws {
        try await database.withSQL { sql in try await acknowledge(delivery, sql) }
    }

    public func acknowledge(_ deliveries: [Delivery]) async throws {
        guard !deliveries.isEmpty else { return }
        try await database.withSQL { sql in try await acknowledge(deliveries, sql) }
    }

    /// Acknowledges inside the caller's transaction, so the outcome and the removal commit together.
    func acknowledge(_ delivery: Delivery, _ sql: any SQLDatabase) async throws {
        try await acknowledge([delivery], sql)
    }

    /// Acknowledges many with one statement per chunk, inside the caller's transaction.
    func acknowledge(_ deliveries: [Delivery], _ sql: any SQLDatabase) async throws {
        for statement in acknowledgeStatements(deliveries) { try await sql.raw(statement).run() }
    }

    /// The statements that acknowledge `deliveries` (to run with the outcomes' records). Each removes a message only
    /// while it is still the claim that delivered it (same attempt, same delivery count): a worker whose lease ran out
    /// and whose message another worker claimed since removes nothing. Each returns the `seq` of every message it
    /// removed, so a caller can tell which acknowledgements took effect; on PostgreSQL it is one statement.
    func acknowledgeStatements(_ deliveries: [Delivery]) -> [SQLQueryString] {
        guard !deliveries.isEmpty else { return [] }
        if database.engine == .postgres {
            // Each claim as one text key, compared row by row against the batch's keys: no join with the batch, so
            // the statement plans as cheaply as an unfenced `seq = ANY(…)` (this is the worker's hot path).
            let claims = deliveries.map { "\(Self.sequence($0)).\($0.message.attempt).\($0.deliveries)" }
            return [
                """
                DELETE FROM task_queue
                WHERE seq = ANY(\(bind: deliveries.map(Self.sequence))::int8[])
                  AND (seq || '.' || attempt || '.' || deliveries) = ANY(\(bind: claims)::text[])
                RETURNING seq
                """
            ]
        }
        return deliveries.chunks(of: 300).map { chunk in
            "DELETE FROM task_queue WHERE \(Self.held(Array(chunk))) RETURNING seq"
        }
    }

    /// Matches the queue rows of `deliveries` that are still the claims that delivered them (SQLite and small sets;
    /// the seq list lets the primary key find them).
    private static func held(_ deliveries: [Delivery]) -> SQLQueryString {
        let claims = deliveries.map { "(\(bind: sequence($0)), \(bind: $0.message.attempt), \(bind: $0.deliveries))" as SQLQueryString }
        return """
            seq IN (\(binds: deliveries.map(sequence))) AND (seq, attempt, deliveries) IN (VALUES \(claims.joined(separator: ", ")))
            """
    }

    /// The queue row a delivery came from (its tag); -1, which names no row, for a tag this broker did not make.
    static func sequence(_ delivery: Delivery) -> Int64 { Int64(delivery.tag) ?? -1 }

    /// Applies `changes` to the queue rows of `deliveries` still held by their claims; throws ``DeliveryNotHeld`` when
    /// some no longer are (another worker claimed them after their lease ran out).
    private func updateHeld(_ deliveries: [Delivery], set changes: SQLQueryString) async throws {
        guard !deliveries.isEmpty else { return }
        let changed = try await database.withSQL { sql in
            try await sql.raw("UPDATE task_queue SET \(changes) WHERE \(Self.held(deliveries)) RETURNING seq").all().count
        }
        if changed < deliveries.count { throw DeliveryNotHeld(count: deliveries.count - changed) }
    }

    public func retry(_ delivery: Delivery, as next: TaskMessage, notBefore: Date) async throws {
        try await updateHeld(
            [delivery],
            set: """
                attempt = \(bind: next.attempt), available_at = \(bind: notBefore), lease_until = NULL, leased_by = NULL, deliveries = 0
                """)
    }

    public func deadLetter(_ delivery: Delivery, reason: String) async throws {
        try await updateHeld(
            [delivery],
            set: "dead = \(bind: true), dead_reason = \(bind: String(reason.prefix(1000))), lease_until = NULL, leased_by = NULL")
    }

    public func release(_ deliveries: [Delivery]) async throws {
        for chunk in deliveries.chunks(of: 300) {
            try await updateHeld(Array(chunk), set: "lease_until = NULL, leased_by = NULL")
        }
    }

    public func extendLeases(workerID: String, leaseUntil: Date) async throws {
        try await database.withSQL { sql in
            if database.engine == .postgres {
                // Skips the rows an acknowledgement holds (they are being deleted): waiting for them, in whatever order
                // the update meets them, deadlocked with acknowledgements that lock the same rows in another order.
                try await sql.raw(
                    """
                    UPDATE task_queue SET lease_until = \(bind: leaseUntil)
                    WHERE seq IN (
                        SELECT seq FROM task_queue WHERE leased_by = \(bind: workerID) AND dead = \(bind: false) FOR UPDATE SKIP LOCKED)
                    """
                ).run()
            } else {
                try await sql.update("task_queue").set("lease_until", to: leaseUntil)
                    .where("leased_by", .equal, workerID).where("dead", .equal, false).run()
            }
        }
    }

    public func purge(queue: String) async throws -> Int? {
        let removed = try await database.withTransaction { transaction in
            try await removeWaiting(queue: queue, at: clock.now(), transaction.sql)
        }
        return removed.count
    }

    func removeWaiting(queue: String, at now: Date, _ sql: any SQLDatabase) async throws -> [String] {
        try await sql.raw(
            """
            DELETE FROM task_queue WHERE queue = \(bind: queue) AND dead = \(bind: false)
              AND (lease_until IS NULL OR lease_until < \(bind: now)) RETURNING task_id
            """
        ).all().map { try $0.decode(column: "task_id", as: String.self) }
    }

    public func stats() async throws -> [QueueStats] {
        let now = clock.now()
        return try await database.withSQL { sql in
            try await sql.raw(
                """
                SELECT queue,
                  SUM(CASE WHEN dead = \(bind: false) AND available_at <= \(bind: now) AND (lease_until IS NULL OR lease_until < \(bind: now)) THEN 1 ELSE 0 END) AS ready,
                  SUM(CASE WHEN dead = \(bind: false) AND lease_until >= \(bind: now) THEN 1 ELSE 0 END) AS in_flight,
                  SUM(CASE WHEN dead = \(bind: true) THEN 1 ELSE 0 END) AS dead,
                  SUM(CASE WHEN dead = \(bind: false) AND available_at > \(bind: now) AND (lease_until IS NULL OR lease_until < \(bind: now)) THEN 1 ELSE 0 END) AS delayed
                FROM task_queue GROUP BY queue ORDER BY queue
                """
            ).all().map { row in
                QueueStats(
                    queue: try row.decode(column: "queue", as: String.self),
                    ready: try row.decode(column: "ready", as: Int.self),
                    inFlight: try row.decode(column: "in_flight", as: Int.self),
                    dead: try row.decode(column: "dead", as: Int.self),
                    delayed: try row.decode(column: "delayed", as: Int.self))
            }
        }
    }

    /// The run columns a claim on PostgreSQL joins to each claimed message.
    private static func runAtClaim(_ row: any SQLRow) throws -> RunAtClaim {
        guard try row.decode(column: "run_id", as: String?.self) != nil else { return .missing }
        return .found(
            state: TaskState(rawValue: try row.decode(column: "run_state", as: String.self)),
            attempt: try row.decode(column: "run_attempt", as: Int.self))
    }

    static func delivery(_ row: any SQLRow) throws -> Delivery {
        let message = try TaskMessage.decode(row)
        return Delivery(
            message: message, tag: String(try row.decode(column: "seq", as: Int64.self)),
            deliveries: try row.decode(column: "deliveries", as: Int.self))
    }
}

/// When a broker last refreshed the queue table's statistics; shared by its copies.
private final class LastAnalyze: Sendable {
    let time = Mutex<ContinuousClock.Instant?>(nil)
}

/// A worker settled or handed back messages it no longer holds: their leases ran out and another worker claimed them
/// since. Nothing was changed for those; the newer claim decides what happens to them.
public struct DeliveryNotHeld: Error, CustomStringConvertible {
    /// How many of the messages were no longer held.
    public var count: Int
    public var description: String { "\(count) message(s) were claimed by another worker after their lease ran out" }
}

/// News of messages this process inserts, for its idle workers: each waits for news newer than the mark it took before
/// its last claim, or for its poll pause, whichever comes first.
final class QueueArrivals: Sendable {
    /// Names this process's announcements among those of every process on the database.
    let sender = Hex.lowercase((0..<8).map { _ in UInt8.random(in: .min ... .max) })

    private enum Waiter {
        case registered
        case waiting(CheckedContinuation<Bool, Never>)
        case resolved(Bool)
    }

    private struct State {
        var mark: UInt64 = 0
        var nextID: UInt64 = 0
        var waiters: [UInt64: Waiter] = [:]
    }

    private let state = Mutex(State())

    var mark: UInt64 { state.withLock { $0.mark } }

    /// Messages were inserted: every waiting worker wakes.
    func note() {
        let woken = state.withLock { state -> [CheckedContinuation<Bool, Never>] in
            state.mark &+= 1
            return state.waiters.keys.compactMap { Self.resolve($0, true, in: &state) }
        }
        for continuation in woken { continuation.resume(returning: true) }
    }

    /// `true` as soon as there is news after `mark` (at once if there is already), `false` after `limit` or when
    /// cancelled.
    func wait(after mark: UInt64, upTo limit: Duration) async -> Bool {
        let id = state.withLock { state -> UInt64? in
            guard state.mark == mark else { return nil }
            state.nextID &+= 1
            state.waiters[state.nextID] = .registered
            return state.nextID
        }
        guard let id else { return true }
        let timer = Task {
            try? await Task.sleep(for: limit)
            self.resolve(id, false)
        }
        defer { timer.cancel() }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let outcome = state.withLock { state -> Bool? in
                    switch state.waiters[id] {
                    case .registered:
                        state.waiters[id] = .waiting(continuation)
                        return nil
                    case .resolved(let outcome):
                        state.waiters[id] = nil
                        return outcome
                    case .waiting, nil:
                        return false
                    }
                }
                if let outcome { continuation.resume(returning: outcome) }
            }
        } onCancel: {
            resolve(id, false)
        }
    }

    private func resolve(_ id: UInt64, _ outcome: Bool) {
        state.withLock { Self.resolve(id, outcome, in: &$0) }?.resume(returning: outcome)
    }

    /// Settles waiter `id` with `outcome`: one that has not begun to wait finds it when it does; one that waits is
    /// removed and its continuation returned, to be resumed outside the lock. A waiter settled before keeps its outcome.
    private static func resolve(_ id: UInt64, _ outcome: Bool, in state: inout State) -> CheckedContinuation<Bool, Never>? {
        switch state.waiters[id] {
        case .registered:
            state.waiters[id] = .resolved(outcome)
            return nil
        case .waiting(let continuation):
            state.waiters[id] = nil
            return continuation
        case .resolved, nil:
            return nil
        }
    }
}

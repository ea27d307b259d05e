// The beat: fires due schedules and timers onto their queues. One leads; the others stand by.
import Foundation
import Logging
import ServiceLifecycle
import SQLKit

/// Settings of a beat.
public struct BeatOptions: Sendable {
    /// The longest the beat sleeps without looking at the database; edits made by other processes are seen within it
    /// even without a wake-up.
    public var pollInterval: Duration = .seconds(1)
    /// Schedules or timers fired per transaction.
    public var batchSize = 500
    /// How often a standby tries to take the lead.
    public var standbyRetry: Duration = .seconds(1)

    public init() {}
}

/// What one pass fired.
public struct BeatPass: Sendable, Equatable {
    public var schedulesFired = 0
    public var timersFired = 0
    public var published = 0

    public var total: Int { schedulesFired + timersFired }
}

/// Called after timers were published, with their due times and the instant they were published (benchmarks
/// compute lateness from it).
public typealias BeatPublishObserver = @Sendable (_ dueTimes: [Date], _ publishedAt: Date) -> Void

/// Fires schedules and durable timers. Run it as a `Service`; only the leader (see ``LeaderLease``) fires.
///
/// The beat keeps nothing but the database's answers: each pass asks for what is due (an index on the due time),
/// fires it in batches, then sleeps until the earliest next due time, the poll interval, or a wake-up from a writer,
/// whichever comes first. So a million pending timers cost no memory, and edits take effect on the next pass.
public final class Beat: Service, Sendable {
    let database: Database
    let schedules: ScheduleStore
    let timers: TimerStore
    let dispatcher: TaskDispatcher
    let wakeup: BeatWakeup
    let clock: any TimeSource
    let logger: Logger
    let options: BeatOptions
    let identity: String
    let onPublished: BeatPublishObserver?

    public init(
        database: Database, schedules: ScheduleStore, timers: TimerStore, dispatcher: TaskDispatcher, wakeup: BeatWakeup,
        clock: any TimeSource, logger: Logger, options: BeatOptions = BeatOptions(), identity: String? = nil,
        onPublished: BeatPublishObserver? = nil
    ) {
        self.database = database
        self.schedules = schedules
        self.timers = timers
        self.dispatcher = dispatcher
        self.wakeup = wakeup
        self.clock = clock
        var logger = logger
        let identity = identity ?? "beat-\(ProcessInfo.processInfo.hostName)-\(ProcessInfo.processInfo.processIdentifier)"
        logger[metadataKey: "beat"] = "\(identity)"
        self.logger = logger
        self.options = options
        self.identity = identity
        self.onPublished = onPublished
    }

    /// Stands by, leads when it wins the lease, and stops on graceful shutdown.
    public func run() async throws {
        let lease = LeaderLease(
            database: database, holder: identity, clock: clock, logger: logger, retryInterval: options.standbyRetry)
        try await cancelWhenGracefulShutdown {
            try await lease.run { try await self.lead() }
        }
    }

    /// The leader's loop: fire what is due, then wait.
    func lead() async throws {
        let signal = wakeup.subscribe()
        defer { wakeup.unsubscribe(signal) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            defer { group.cancelAll() }
            group.addTask {
                // Writers in other processes wake this beat through the database.
                try await self.database.listen(channel: BeatWakeup.channel) { self.wakeup.notify() }
            }
            group.addTask {
                // When the earliest schedule is due, as last read; `distantPast` means "look".
                var scheduleDue: Date? = .distantPast
                while !Task.isCancelled {
                    let pass: BeatPass
                    do {
                        pass = try await self.pass(includingSchedules: scheduleDue.map { $0 <= self.clock.now() } ?? false)
                    } catch let error as CancellationError {
                        throw error
                    } catch {
                        self.logger.error("beat pass failed; retrying", metadata: ["error": "\(error)"])
                        try await Task.sleep(for: .seconds(1))
                        scheduleDue = .distantPast
                        continue
                    }
                    if pass.total > 0 {
                        if pass.schedulesFired > 0 { scheduleDue = .distantPast }
                        continue
                    }
                    scheduleDue = try await self.sleepUntilDue(signal)
                }
            }
            try await group.next()
        }
    }

    /// Sleeps until the earliest due time, the poll interval, or a wake-up. Returns when the earliest schedule is
    /// due as read before sleeping (`distantPast` after a wake-up, since a writer may have changed it). Every sleep
    /// starts with a fresh read, so edits nobody announced are seen within one poll interval.
    private func sleepUntilDue(_ signal: WakeSignal) async throws -> Date? {
        let scheduleDue = try await schedules.earliestDue()
        let due = [scheduleDue, try await timers.earliestDue()].compactMap { $0 }.min()
        var wait = options.pollInterval
        if let due {
            let seconds = due.timeIntervalSince(clock.now())
            if seconds <= 0 { return scheduleDue }
            wait = min(wait, .microseconds(Int64((seconds * 1_000_000).rounded(.up))))
        }
        return await signal.wait(timeout: wait) ? .distantPast : scheduleDue
    }

    /// One pass: fires everything due now, batch by batch, and publishes what waits in the outbox.
    /// - Parameter includingSchedules: `false` skips the schedules' query when none can be due yet.
    @discardableResult
    public func pass(includingSchedules: Bool = true) async throws -> BeatPass {
        var pass = BeatPass()
        while includingSchedules {
            let fired = try await fireDueSchedules(at: clock.now())
            pass.schedulesFired += fired
            if fired < options.batchSize { break }
        }
        while true {
            let fired = try await fireDueTimers(at: clock.now())
            pass.timersFired += fired
            if fired < options.batchSize { break }
        }
        while dispatcher.usesOutbox {
            let published = try await dispatcher.flushOutbox(limit: options.batchSize)
            pass.published += published
            if published < options.batchSize { break }
        }
        return pass
    }

    /// Fires one batch of due schedules in one transaction; returns how many schedules it looked at.
    func fireDueSchedules(at now: Date) async throws -> Int {
        let engine = database.engine
        let (count, fired) = try await database.transaction { sql in
            try await commitWithoutWaitingForFlush(sql)
            let due = try await schedules.lockDue(at: now, limit: options.batchSize, sql, engine: engine)
            guard !due.isEmpty else { return (0, 0) }
            let active = try await Self.activeTasks(due.compactMap(\.lastTaskID), sql)
            var fired: [QueuedRun] = []
            for schedule in due {
                let plan = schedule.plan(at: now, previousRunActive: schedule.lastTaskID.map(active.contains) ?? false)
                var lastTaskID = schedule.lastTaskID
                for fireTime in plan.fireTimes {
                    let message = schedule.message(at: now)
                    fired.append(QueuedRun(message: message, scheduledFor: fireTime))
                    lastTaskID = message.id
                }
                if plan.skippedAny {
                    logger.info(
                        "schedule fire time skipped by its misfire or overlap policy",
                        metadata: ["schedule": "\(schedule.name)", "due": "\(schedule.nextRunAt.map { "\($0)" } ?? "-")"])
                }
                try await schedules.recordFire(schedule, plan: plan, lastTaskID: lastTaskID, at: now, sql)
            }
            try await dispatcher.stage(fired, at: now, sql)
            return (due.count, fired.count)
        }
        if fired > 0 { logger.debug("fired schedules", metadata: ["tasks": "\(fired)"]) }
        return count
    }

    /// Fires one batch of due timers in one transaction; returns how many fired.
    func fireDueTimers(at now: Date) async throws -> Int {
        let engine = database.engine
        let due = try await database.transaction { sql in
            try await commitWithoutWaitingForFlush(sql)
            let due = try await timers.takeDue(at: now, limit: options.batchSize, sql, engine: engine)
            try await dispatcher.stage(
                due.map { timer in
                    var message = timer.message
                    message.enqueuedAt = now
                    return QueuedRun(message: message, scheduledFor: timer.dueAt)
                }, at: now, sql)
            return due
        }
        if !due.isEmpty, let onPublished, !dispatcher.usesOutbox {
            onPublished(due.map(\.dueAt), clock.now())
        }
        return due.count
    }

    /// With the SQL queue on PostgreSQL, lets a fire's commit return before its WAL reaches disk (it does within a
    /// few hundred ms), which takes the flush's latency out of the beat's lateness. Safe because nothing outside the
    /// database sees the fire until something else commits on top of it — a worker claiming the message commits
    /// synchronously and so flushes the fire's WAL first (WAL is flushed in order). If the server crashes before that,
    /// the whole fire is gone — timer, run and message together — and it fires again after recovery: once, nothing
    /// lost. With an outbox the message leaves for the broker before any later commit, so those fires stay synchronous.
    private func commitWithoutWaitingForFlush(_ sql: any SQLDatabase) async throws {
        if database.engine == .postgres, !dispatcher.usesOutbox {
            try await sql.raw("SET LOCAL synchronous_commit = off").run()
        }
    }

    /// Of `taskIDs`, those still queued, running or waiting to retry.
    private static func activeTasks(_ taskIDs: [String], _ sql: any SQLDatabase) async throws -> Set<String> {
        guard !taskIDs.isEmpty else { return [] }
        let states = [TaskState.queued, .started, .retrying].map(\.rawValue)
        return Set(
            try await sql.raw("SELECT id FROM task_runs WHERE id IN (\(binds: taskIDs)) AND state IN (\(binds: states))").all()
                .map { try $0.decode(column: "id", as: String.self) })
    }
}

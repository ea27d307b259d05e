// The beat: fires due schedules and timers onto their queues. One leads; the others stand by.
import Foundation
import Logging
import ServiceLifecycle
import SQLKit
import Synchronization

/// Settings of a beat.
public struct BeatOptions: Sendable {
    /// The longest the beat sleeps without looking at the database; edits made by other processes are seen within it
    /// even without a wake-up.
    public var pollInterval: Duration = .seconds(1)
    /// Schedules or timers fired per transaction.
    public var batchSize = 500
    /// How often a standby tries to take the lead.
    public var standbyRetry: Duration = .seconds(1)
    /// How long a part of the beat that failed (schedules, timers or the outbox) waits before it tries again; the
    /// other parts carry on meanwhile.
    public var retryInterval: Duration = .seconds(1)
    /// While the broker is unavailable the outbox waits longer after each failed try (from ``retryInterval``), up
    /// to this.
    public var longestBrokerRetry: Duration = .seconds(5)

    public init() {}
}

/// The beat's independent parts: one failing does not hold up the others.
public enum BeatPart: String, Sendable, CaseIterable {
    case schedules, timers, outbox
}

/// What one pass fired.
public struct BeatPass: Sendable, Equatable {
    public var schedulesFired = 0
    public var timersFired = 0
    public var published = 0
    /// Parts that failed in this pass (logged when they start failing; each retries on its own).
    public var failed: Set<BeatPart> = []

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
///
/// Schedules, timers and the outbox fail apart: an error in one is logged once, that part retries on its own, and the
/// others go on. The outbox is flushed by a loop of its own, so a broker that blocks delays no fire. A row the beat
/// cannot read is set aside with an error log instead of failing its batch.
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
    /// Where fire lateness and leadership are recorded.
    let metrics: IntegratorMetrics
    /// Lets handlers that fire their timers in the beat (``BeatFiredTaskHandler``) do so; without it every timer is
    /// queued as a task.
    let environment: PluginEnvironment?
    /// Task names whose in-beat firing failed, with when (on the beat's clock) to try it again; meanwhile their timers
    /// are queued as tasks.
    private let failingInBeat = Mutex<[String: Date]>([:])
    /// Parts failing now: how many tries in a row failed, and when the next may start.
    private let failures = Mutex<[BeatPart: PartFailure]>([:])
    /// When the earliest timer is due, as the last committed take of the current pass read it: the fire loop sleeps on
    /// it instead of asking the database again. `nil` when unknown (no take committed since the pass began).
    private let timersNextDue = Mutex<Date??>(nil)

    private struct PartFailure {
        var attempts: Int
        var retryAt: ContinuousClock.Instant
    }

    public init(
        database: Database, schedules: ScheduleStore, timers: TimerStore, dispatcher: TaskDispatcher, wakeup: BeatWakeup,
        clock: any TimeSource, logger: Logger, options: BeatOptions = BeatOptions(), identity: String? = nil,
        onPublished: BeatPublishObserver? = nil, metrics: IntegratorMetrics = .shared, environment: PluginEnvironment? = nil
    ) {
        self.metrics = metrics
        self.environment = environment
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

    /// Stands by, leads when it wins the lease, and stops on graceful shutdown or cancellation; runs at
    /// ``WorkPriority/dueWork`` (ahead of request handling in the same process).
    public func run() async throws {
        try await WorkPriority.run(at: WorkPriority.dueWork) { try await self.contendAndLead() }
    }

    private func contendAndLead() async throws {
        let lease = LeaderLease(
            database: database, holder: identity, clock: clock, logger: logger, retryInterval: options.standbyRetry, metrics: metrics)
        try await cancelWhenGracefulShutdown {
            try await lease.run { try await self.lead() }
        }
    }

    /// The leader's work: fire what is due, then wait; beside it, publish what waits in the outbox.
    func lead() async throws {
        let signal = wakeup.subscribe()
        defer { wakeup.unsubscribe(signal) }
        let outboxSignal = WakeSignal()
        try await withThrowingTaskGroup(of: Void.self) { group in
            defer { group.cancelAll() }
            group.addTask {
                // Writers in other processes wake this beat through the database.
                try await self.database.listen(channel: BeatWakeup.channel) { payload in
                    self.wakeup.notify(dueAt: BeatWakeup.dueTime(fromPayload: payload))
                }
            }
            group.addTask { try await self.fireLoop(signal, outbox: outboxSignal) }
            if dispatcher.usesOutbox {
                group.addTask { try await self.outboxLoop(outboxSignal) }
            }
            try await group.next()
        }
    }

    /// Fires due schedules and timers, then sleeps until the next is due; tells the outbox loop when it fired.
    private func fireLoop(_ signal: WakeSignal, outbox: WakeSignal) async throws {
        // When the earliest schedule is due, as last read; `distantPast` means "look".
        var scheduleDue: Date? = .distantPast
        var scheduleDueReadAt = ContinuousClock.now
        while !Task.isCancelled {
            var parts: Set<BeatPart> = []
            if let due = scheduleDue, due <= clock.now(), retryWait(.schedules) == nil { parts.insert(.schedules) }
            if retryWait(.timers) == nil { parts.insert(.timers) }
            timersNextDue.withLock { $0 = nil }
            let pass = try await self.pass(parts)
            if pass.total > 0, dispatcher.usesOutbox { outbox.fire() }
            // The earliest schedule changes when schedules fire or are edited, and editors wake the beat (which then
            // looks, above). While timers keep the beat busy it is read again at most once per poll interval, which
            // also catches edits nobody announced.
            let knownScheduleDue: Date?? =
                parts.contains(.schedules) || ContinuousClock.now - scheduleDueReadAt >= options.pollInterval ? nil : .some(scheduleDue)
            if knownScheduleDue == nil { scheduleDueReadAt = .now }
            // A pass takes batches until one comes back short, so what is left came due since: the earliest due time,
            // which the last take read with it, says so (and the loop goes round at once) without another query.
            scheduleDue = try await sleepUntilDue(signal, outbox: outbox, knownScheduleDue: knownScheduleDue)
        }
    }

    /// Publishes what waits in the outbox whenever the fire loop staged something, at every poll, and — while the
    /// broker is unavailable — after a wait that grows up to ``BeatOptions/longestBrokerRetry``.
    private func outboxLoop(_ signal: WakeSignal) async throws {
        while !Task.isCancelled {
            if let wait = retryWait(.outbox) {
                try await Task.sleep(for: wait)
                continue
            }
            let pass = try await self.pass([.outbox])
            if pass.failed.contains(.outbox) { continue }
            await signal.wait(timeout: options.pollInterval)
        }
    }

    /// Sleeps until the earliest due time, the poll interval, a part's retry, or a wake-up. Returns when the earliest
    /// schedule is due as read before sleeping (`distantPast` after a wake-up, since a writer may have changed it, or
    /// when it could not be read). The timers' earliest due time is the one the pass's last take read, or is read here
    /// when the pass committed no take; the schedules' is read too, unless `knownScheduleDue` gives it. A timer written
    /// after the take with an earlier due time wakes the sleep (its writer signals; a signal before the sleep waits).
    private func sleepUntilDue(_ signal: WakeSignal, outbox: WakeSignal, knownScheduleDue: Date?? = nil) async throws -> Date? {
        var wait = options.pollInterval
        var scheduleDue: Date? = .distantPast
        var due: [Date] = []
        if let retry = retryWait(.schedules) {
            wait = min(wait, retry)
        } else if let next = knownScheduleDue != nil ? knownScheduleDue : try await read(.schedules, { try await self.schedules.earliestDue() }) {
            scheduleDue = next
            if let next { due.append(next) }
        } else {
            wait = min(wait, options.retryInterval)
        }
        let knownTimerDue = timersNextDue.withLock { $0 }
        if let retry = retryWait(.timers) {
            wait = min(wait, retry)
        } else if let next = knownTimerDue != nil ? knownTimerDue : try await read(.timers, { try await self.timers.earliestDue() }) {
            if let next { due.append(next) }
        } else {
            wait = min(wait, options.retryInterval)
        }
        if let earliest = due.min() {
            let seconds = earliest.timeIntervalSince(clock.now())
            if seconds <= 0 { return scheduleDue }
            wait = min(wait, .microseconds(Int64((seconds * 1_000_000).rounded(.up))))
        }
        // Writers name when their timer is due: one due after this sleep ends needs no early wake-up, which at a
        // thousand timers written a second would otherwise cost a pass each.
        let wakesBy = clock.now().addingTimeInterval(wait.seconds)
        guard await signal.wait(timeout: wait, wakesBy: wakesBy) else { return scheduleDue }
        // Someone wrote: maybe to the outbox too (a publisher that gave up leaves its rows to the beat).
        if dispatcher.usesOutbox { outbox.fire() }
        return .distantPast
    }

    /// One pass: fires everything due now, batch by batch, and publishes what waits in the outbox. A part that fails
    /// is logged (once while it keeps failing) and listed in ``BeatPass/failed``; the others still run.
    /// - Parameter includingSchedules: `false` skips the schedules' query when none can be due yet.
    @discardableResult
    public func pass(includingSchedules: Bool = true) async throws -> BeatPass {
        try await pass(includingSchedules ? Set(BeatPart.allCases) : [.timers, .outbox])
    }

    /// One pass over `parts`. Throws only when cancelled.
    func pass(_ parts: Set<BeatPart>) async throws -> BeatPass {
        var pass = BeatPass()
        if parts.contains(.schedules) {
            let fired = try await attempt(.schedules) { try await self.drain { try await self.fireDueSchedules(at: self.clock.now()) } }
            if let fired { pass.schedulesFired = fired } else { pass.failed.insert(.schedules) }
        }
        if parts.contains(.timers) {
            let fired = try await attempt(.timers) { try await self.drain { try await self.fireDueTimers(at: self.clock.now()) } }
            if let fired { pass.timersFired = fired } else { pass.failed.insert(.timers) }
        }
        if parts.contains(.outbox), dispatcher.usesOutbox {
            let published = try await attempt(.outbox) {
                try await self.drain { try await self.dispatcher.flushOutbox(limit: self.options.batchSize, at: self.clock.now()) }
            }
            if let published { pass.published = published } else { pass.failed.insert(.outbox) }
        }
        return pass
    }

    /// Repeats `batch` while it comes back full; the sum of what it handled.
    private func drain(_ batch: () async throws -> Int) async throws -> Int {
        var total = 0
        while true {
            let count = try await batch()
            total += count
            if count < options.batchSize { return total }
        }
    }

    // MARK: Failing apart

    /// Runs one part; on failure logs it (when the part starts failing, not at every retry), sets when it may retry,
    /// and returns `nil`. Rethrows only cancellation.
    private func attempt(_ part: BeatPart, _ body: () async throws -> Int) async throws -> Int? {
        do {
            let count = try await body()
            recovered(part)
            return count
        } catch {
            if Task.isCancelled { throw CancellationError() }
            failed(part, error)
            return nil
        }
    }

    /// Like ``attempt(_:_:)`` for a read the beat sleeps on; `nil` when it failed, `.some` of what it read.
    private func read(_ part: BeatPart, _ body: () async throws -> Date?) async throws -> Date?? {
        do {
            return .some(try await body())
        } catch {
            if Task.isCancelled { throw CancellationError() }
            failed(part, error)
            return nil
        }
    }

    private func failed(_ part: BeatPart, _ error: any Error) {
        let attempts = failures.withLock { failures in
            let attempts = (failures[part]?.attempts ?? 0) + 1
            var wait = options.retryInterval
            if part == .outbox {
                for _ in 1..<min(attempts, 8) { wait = min(wait * 2, options.longestBrokerRetry) }
            }
            failures[part] = PartFailure(attempts: attempts, retryAt: .now + wait)
            return attempts
        }
        // The dispatcher says once per outage that the broker is unavailable; anything else is the beat's to say.
        guard attempts == 1, !(error is BrokerUnavailable) else { return }
        logger.error(
            "beat could not handle its \(part.rawValue); the other parts go on, this one retries until it works",
            metadata: ["error": "\(error)"])
    }

    private func recovered(_ part: BeatPart) {
        guard let failure = failures.withLock({ $0.removeValue(forKey: part) }) else { return }
        logger.info("beat handles its \(part.rawValue) again", metadata: ["failed_tries": "\(failure.attempts)"])
    }

    /// How long `part` must still wait before its next try, or `nil` when it may run now.
    private func retryWait(_ part: BeatPart) -> Duration? {
        guard let retryAt = failures.withLock({ $0[part]?.retryAt }) else { return nil }
        let wait = retryAt - .now
        return wait > .zero ? wait : nil
    }

    // MARK: Firing

    /// What one batch of schedules did, to log after the commit.
    private struct ScheduleBatch: Sendable {
        var looked = 0
        var fired = 0
        var unreadable: [(id: String, reason: String)] = []
        var misfired: [(name: String, due: Date?)] = []
        var alreadyFired: [String] = []
        /// The due times of the runs fired.
        var fireTimes: [Date] = []
    }

    /// Fires one batch of due schedules in one transaction; returns how many schedules it looked at. Unreadable rows
    /// are set aside, and fire times that already have a run are skipped.
    func fireDueSchedules(at now: Date) async throws -> Int {
        let engine = database.engine
        let batch = try await database.transaction { sql in
            try await self.commitWithoutWaitingForFlush(sql)
            let due = try await self.schedules.lockDue(at: now, limit: self.options.batchSize, sql, engine: engine)
            var batch = ScheduleBatch(looked: due.schedules.count + due.unreadable.count, unreadable: due.unreadable)
            if !due.unreadable.isEmpty { try await self.schedules.setAside(due.unreadable, at: now, sql) }
            guard !due.schedules.isEmpty else { return batch }
            let active = try await Self.activeTasks(due.schedules.compactMap(\.lastTaskID), sql)
            var plans: [(schedule: Schedule, plan: FirePlan, runs: [QueuedRun])] = []
            for schedule in due.schedules {
                let plan = schedule.plan(at: now, previousRunActive: schedule.lastTaskID.map(active.contains) ?? false)
                plans.append((schedule, plan, plan.fireTimes.map { QueuedRun(message: schedule.message(at: now), scheduledFor: $0) }))
                if plan.skippedAny { batch.misfired.append((schedule.name, schedule.nextRunAt)) }
            }
            let recorded = try await self.dispatcher.stageFires(plans.flatMap { $0.runs }, at: now, sql)
            if !recorded.isEmpty { try await self.dispatcher.announceToIdleWorkers(sql) }
            batch.fired = recorded.count
            for (schedule, plan, runs) in plans {
                let kept = runs.filter { recorded.contains($0.message.id) }
                if kept.count < runs.count { batch.alreadyFired.append(schedule.name) }
                batch.fireTimes += kept.compactMap(\.scheduledFor)
                try await self.schedules.recordFire(
                    schedule, plan: plan, fired: kept.count, lastTaskID: kept.last?.message.id ?? schedule.lastTaskID, at: now, sql)
            }
            return batch
        }
        if batch.fired > 0 { dispatcher.queue?.noteCommittedArrivals() }
        metrics.beatFired(.schedule, dueTimes: batch.fireTimes, firedAt: clock.now())
        for (id, reason) in batch.unreadable {
            logger.error("a schedule cannot be read; it is set aside and disabled", metadata: ["schedule": "\(id)", "reason": "\(reason)"])
        }
        for (name, due) in batch.misfired {
            logger.info(
                "schedule fire time skipped by its misfire or overlap policy",
                metadata: ["schedule": "\(name)", "due": "\(due.map { "\($0)" } ?? "-")"])
        }
        for name in batch.alreadyFired {
            logger.warning("a schedule fire time already had its run; not fired again", metadata: ["schedule": "\(name)"])
        }
        if batch.fired > 0 { logger.debug("fired schedules", metadata: ["tasks": "\(batch.fired)"]) }
        return batch.looked
    }

    /// Fires one batch of due timers in one transaction; returns how many fired. Timers that cannot be read are set
    /// aside (one error each) and the batch is taken again without them.
    func fireDueTimers(at now: Date) async throws -> Int {
        // Tasks whose in-beat firing failed during this call: left out of the retries below whatever the retry interval,
        // so each failing handler costs one rollback and the loop ends.
        var failedHere: Set<String> = []
        while true {
            do {
                return try await fireTimerBatch(at: now, leavingOut: failedHere)
            } catch let failed as InBeatFiringFailed {
                // The batch was rolled back, its timers are due again: take it again with that task's timers queued.
                failedHere.insert(failed.taskName)
                let firstFailure = failingInBeat.withLock { failing in
                    defer { failing[failed.taskName] = clock.now().addingTimeInterval(options.retryInterval.seconds) }
                    return failing[failed.taskName] == nil
                }
                if firstFailure {
                    logger.error(
                        "beat could not fire timers of this task itself; they are queued as tasks for the workers instead",
                        metadata: ["task": "\(failed.taskName)", "error": "\(failed.error)"])
                }
            } catch let unreadable as UnreadableTimers {
                try await timers.setAside(unreadable)
                for (id, reason) in unreadable.timers {
                    logger.error("a timer cannot be read; it is set aside", metadata: ["timer": "\(id)", "reason": "\(reason)"])
                }
            }
        }
    }

    private func fireTimerBatch(at now: Date, leavingOut failedHere: Set<String>) async throws -> Int {
        let engine = database.engine
        let taken = try await database.withTransaction { transaction in
            let sql = transaction.sql
            // The commit mode and the announcement to idle workers ride on the take: two round trips fewer a pass.
            let companions = TimerStore.TakeCompanions(
                commitWithoutWaitingForFlush: self.commitsWithoutWaitingForFlush,
                announceOn: self.dispatcher.idleWorkersAnnouncement)
            let taken = try await self.timers.takeDue(
                at: now, limit: self.options.batchSize, sql, engine: engine, companions: companions)
            let due = taken.timers
            let queued = try await self.fireInBeat(due, transaction, leavingOut: failedHere)
            try await self.dispatcher.stage(
                queued.map { timer in
                    var message = timer.message
                    message.enqueuedAt = now
                    return QueuedRun(message: message, scheduledFor: timer.dueAt)
                }, at: now, sql, claimedForCaller: false)
            return taken
        }
        let due = taken.timers
        timersNextDue.withLock { $0 = .some(taken.nextDue) }
        if !due.isEmpty { dispatcher.queue?.noteCommittedArrivals() }
        metrics.beatFired(.timer, dueTimes: due.map(\.dueAt), firedAt: clock.now())
        if !due.isEmpty, let onPublished, !dispatcher.usesOutbox {
            onPublished(due.map(\.dueAt), clock.now())
        }
        return due.count
    }

    /// Fires the timers whose task handlers fire in the beat (``BeatFiredTaskHandler``) in `transaction`; returns the
    /// timers left to queue as tasks: the others', and those of a handler that failed lately and is not due for another
    /// try, or is in `failedHere`. Throws ``InBeatFiringFailed`` when a handler fails: the caller rolls the whole batch back and takes it again,
    /// which costs a batch only when a handler fails, where a savepoint per handler would cost two round trips a pass.
    private func fireInBeat(
        _ due: [DurableTimer], _ transaction: StoreTransaction, leavingOut failedHere: Set<String>
    ) async throws -> [DurableTimer] {
        guard let environment, !due.isEmpty else { return due }
        var queued: [DurableTimer] = []
        var handlers: [(handler: any BeatFiredTaskHandler, timers: [DurableTimer])] = []
        let now = clock.now()
        let resting = failingInBeat.withLock { failing in failedHere.union(failing.filter { $0.value > now }.keys) }
        for timer in due {
            guard let handler = environment.registry.taskHandler(timer.message.name) as? any BeatFiredTaskHandler,
                !resting.contains(handler.name)
            else {
                queued.append(timer)
                continue
            }
            if let index = handlers.firstIndex(where: { $0.handler.name == handler.name }) {
                handlers[index].timers.append(timer)
            } else {
                handlers.append((handler, [timer]))
            }
        }
        for (handler, timers) in handlers {
            do {
                queued += try await handler.fire(dueTimers: timers, in: transaction, environment: environment)
            } catch {
                if Task.isCancelled { throw CancellationError() }
                throw InBeatFiringFailed(taskName: handler.name, error: error)
            }
            if failingInBeat.withLock({ $0.removeValue(forKey: handler.name) }) != nil {
                logger.info("beat fires timers of this task itself again", metadata: ["task": "\(handler.name)"])
            }
        }
        return queued
    }

    /// With the SQL queue on PostgreSQL, lets a fire's commit return before its WAL reaches disk (it does within a
    /// few hundred ms), which takes the flush's latency out of the beat's lateness. Safe because nothing outside the
    /// database sees the fire until something else commits on top of it — a worker claiming the message commits
    /// synchronously and so flushes the fire's WAL first (WAL is flushed in order). If the server crashes before that,
    /// the whole fire is gone — timer, run and message together — and it fires again after recovery: once, nothing
    /// lost. With an outbox the message leaves for the broker before any later commit, so those fires stay synchronous.
    private func commitWithoutWaitingForFlush(_ sql: any SQLDatabase) async throws {
        if commitsWithoutWaitingForFlush {
            try await sql.raw("SET LOCAL synchronous_commit = off").run()
        }
    }

    private var commitsWithoutWaitingForFlush: Bool { database.engine == .postgres && !dispatcher.usesOutbox }

    /// Of `taskIDs`, those still queued, running or waiting to retry.
    private static func activeTasks(_ taskIDs: [String], _ sql: any SQLDatabase) async throws -> Set<String> {
        guard !taskIDs.isEmpty else { return [] }
        let states = [TaskState.queued, .started, .retrying].map(\.rawValue)
        return Set(
            try await sql.raw(
                "SELECT id FROM task_runs WHERE id IN (\(binds: taskIDs)) AND \(SQLQueryString.statusIsOneOf("state", states))"
            ).all().map { try $0.decode(column: "id", as: String.self) })
    }
}

/// A beat-fired task handler threw: its batch is rolled back and taken again with that task's timers queued.
private struct InBeatFiringFailed: Error {
    var taskName: String
    var error: any Error
}

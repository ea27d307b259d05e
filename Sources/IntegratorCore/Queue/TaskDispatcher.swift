// Publishing as part of a database transaction: the run record and its message commit together or not at all.
import Foundation
import Logging
import SQLKit
import Synchronization

/// Outbox rows one caller staged, to publish once its transaction committed (``TaskDispatcher/publishStaged(_:)``).
/// Empty with a broker whose messages live in the database: those are in their queue at commit.
public struct StagedMessages: Sendable {
    let entries: [OutboxEntry]
    /// When they were staged: their claim for publishing is counted from here.
    let stagedAt: Date
    /// The rows were written claimed for the caller, so publishing them needs no claim statement.
    var claimedWhenStaged = false

    static let none = StagedMessages(entries: [], stagedAt: .distantPast)

    public var isEmpty: Bool { entries.isEmpty }
    public var count: Int { entries.count }
}

/// The outbox could not publish: the broker refused, failed or did not confirm before the deadline. What was not
/// confirmed stays in the outbox for a later flush.
public struct BrokerUnavailable: Error, CustomStringConvertible {
    /// What went wrong, as the broker said it (or that the deadline passed).
    public var reason: String
    public var description: String { "the broker did not take the outbox's messages: \(reason)" }
}

/// Writes task runs and their messages inside the caller's transaction, so a crash between "recorded" and
/// "published" can neither lose a task nor publish it twice.
///
/// With a broker whose messages live in the database (the SQL queue) the message row is written in the same
/// transaction: atomic by construction. An external broker cannot join a database transaction, so the message goes to
/// the `task_outbox` table instead and is published after the commit — by the caller (``publishStaged(_:)``) or by
/// the beat (``flushOutbox(limit:at:)``) — with no transaction open while the broker is waited for, and within a
/// deadline: a broker that blocks (a RabbitMQ memory or disk alarm) holds up neither the database nor the caller.
/// A crash after the broker confirmed but before the row was deleted publishes that message again; the copy carries
/// the same task id and attempt, and the worker drops it (``TaskRunStore/startable(_:)`` refuses an attempt that
/// already finished or was superseded), so the task still runs once.
public struct TaskDispatcher: Sendable {
    let database: Database
    let broker: any Broker
    let runs: TaskRunStore
    /// The broker when its messages are rows of the store's database (checked once).
    let queue: (any InDatabaseBroker)?
    let outbox: OutboxStore
    /// The longest a publish of staged messages waits for the broker's confirms.
    let publishTimeout: Duration
    let logger: Logger
    private let health: BrokerHealth

    /// - Parameters:
    ///   - publishTimeout: how long publishing staged messages waits for the broker before leaving them in the outbox.
    ///   - logger: where the outbox says that the broker is unavailable (once per outage) and available again.
    public init(
        database: Database, broker: any Broker, runs: TaskRunStore, publishTimeout: Duration = .seconds(5),
        logger: Logger = Logger(label: "integrator.outbox")
    ) {
        self.database = database
        self.broker = broker
        self.runs = runs
        self.queue = broker.inDatabase
        self.outbox = OutboxStore(database: database)
        self.publishTimeout = publishTimeout
        self.logger = logger
        self.health = BrokerHealth()
    }

    /// `true` when messages wait in the outbox until they are published after the commit.
    public var usesOutbox: Bool { queue == nil }

    /// Records `message` as queued and stages it for its queue, inside the caller's transaction.
    @discardableResult
    func stage(_ message: TaskMessage, at now: Date, scheduledFor: Date? = nil, _ sql: any SQLDatabase) async throws -> StagedMessages {
        try await stage([QueuedRun(message: message, scheduledFor: scheduledFor)], at: now, sql)
    }

    /// Records and stages many messages with a few multi-row statements, inside the caller's transaction. The caller
    /// publishes what this returns with ``publishStaged(_:)`` once the transaction committed; if it never does (it
    /// died), the beat's flush publishes the rows.
    /// - Parameter claimedForCaller: write the outbox rows already claimed for the caller, which saves
    ///   ``publishStaged(_:)`` a statement; a caller that dies before publishing leaves them to the beat once the claim
    ///   runs out (``OutboxStore/claimWindow``). Pass `false` when the beat's own flush publishes them.
    @discardableResult
    func stage(_ batch: [QueuedRun], at now: Date, _ sql: any SQLDatabase, claimedForCaller: Bool = true) async throws -> StagedMessages {
        guard !batch.isEmpty else { return .none }
        if let queue {
            // The runs and the queue rows in one statement on PostgreSQL: every enqueue inside a transaction saves a
            // round trip.
            try await sql.runTogether(
                runs.queuedStatements(batch, at: now) + queue.insertStatements(batch.map(\.message), availableAt: \.enqueuedAt),
                engine: database.engine)
            return .none
        }
        try await runs.insertQueued(batch, at: now, sql)
        return try await stageMessages(batch.map(\.message), at: now, sql, claimedForCaller: claimedForCaller)
    }

    /// The beat's fires: records and stages them like ``stage(_:at:_:)``, but a fire whose (schedule, fire time)
    /// already has a run is dropped, run and message, instead of failing the batch. Returns the task ids recorded.
    func stageFires(_ batch: [QueuedRun], at now: Date, _ sql: any SQLDatabase) async throws -> Set<String> {
        guard !batch.isEmpty else { return [] }
        let recorded = try await runs.insertFires(batch, at: now, sql)
        let messages = batch.map(\.message).filter { recorded.contains($0.id) }
        if !messages.isEmpty { _ = try await stageMessages(messages, at: now, sql, claimedForCaller: false) }
        return recorded
    }

    /// Inside the beat's transaction that staged messages: on the SQL queue, idle workers of other processes hear of
    /// them at its commit instead of at their next poll. (RabbitMQ pushes messages to its consumers anyway.)
    func announceToIdleWorkers(_ sql: any SQLDatabase) async throws {
        try await queue?.announceArrivals(sql)
    }

    /// How idle workers of other processes hear of staged messages: the SQL queue's announcement, or none.
    var idleWorkersAnnouncement: QueueAnnouncement? { queue?.announcement }

    private func stageMessages(
        _ messages: [TaskMessage], at now: Date, _ sql: any SQLDatabase, claimedForCaller: Bool
    ) async throws -> StagedMessages {
        if let queue {
            try await queue.insert(messages, availableAt: \.enqueuedAt, sql)
            return .none
        }
        let claimedUntil = claimedForCaller ? now.addingTimeInterval(OutboxStore.claimWindow) : nil
        return StagedMessages(
            entries: try await outbox.insert(messages, claimedUntil: claimedUntil, sql), stagedAt: now,
            claimedWhenStaged: claimedForCaller)
    }

    /// Publishes what the caller staged, after its transaction committed, and deletes the rows the broker confirmed.
    /// On the SQL queue, where the messages are already in their queue, it wakes this process's idle workers. The rows
    /// are claimed first (one statement), so a flush of the beat running at the same moment publishes each row either
    /// here or there, not in both. Never throws: the tasks are durable in the outbox. When the broker fails,
    /// is blocked past the deadline, or is known to be unavailable (then it is tried at most every few seconds), the
    /// rows are left for the beat's flush and one warning per outage says so.
    /// - Parameter now: the caller's current time. Rows claimed when staged are published without a claim statement
    ///   while that claim still runs; a caller later than that (the beat may have taken them over) claims them first.
    public func publishStaged(_ staged: StagedMessages, at now: Date = Date()) async {
        if let queue {
            queue.noteCommittedArrivals()
            return
        }
        guard !staged.isEmpty else { return }
        guard health.mayPublishDirectly() else {
            // Rows claimed when staged would otherwise wait for their claim to run out before the beat takes them.
            if staged.claimedWhenStaged { await releaseQuietly(staged.entries.map(\.seq)) }
            return
        }
        let claimed: Set<Int64>
        if staged.claimedWhenStaged, now < staged.stagedAt.addingTimeInterval(OutboxStore.claimWindow) {
            claimed = Set(staged.entries.map(\.seq))
        } else {
            do {
                claimed = try await outbox.claim(staged.entries.map(\.seq), at: staged.stagedAt)
            } catch {
                logger.warning("staged messages are left for the beat to publish", metadata: ["error": "\(error)"])
                return
            }
        }
        let entries = staged.entries.filter { claimed.contains($0.seq) }
        guard !entries.isEmpty else { return }
        let seqs = entries.map(\.seq)
        let result = await publish(entries)
        do {
            try await outbox.delete(result.published)
        } catch {
            // Confirmed but not forgotten: published again when the claim runs out, and the copy is dropped.
            logger.warning("published messages stay in the outbox", metadata: ["error": "\(error)"])
        }
        if let failure = result.failure {
            let published = Set(result.published)
            await releaseQuietly(seqs.filter { !published.contains($0) })
            noteFailure(failure)
        } else {
            noteSuccess()
        }
    }

    /// Publishes up to `limit` staged messages nobody else is publishing and forgets the ones the broker confirmed;
    /// returns how many went out. No transaction is open while the broker is waited for, and the wait ends at the
    /// publish deadline. Throws ``BrokerUnavailable`` when the broker failed or timed out (unconfirmed rows stay for
    /// the next flush; the outage is logged once, not per flush), or the database's error.
    @discardableResult
    public func flushOutbox(limit: Int = 500, at now: Date = Date()) async throws -> Int {
        guard usesOutbox else { return 0 }
        if let stuck = health.abandonedPublish() {
            // A publish given up on earlier still waits on the broker: don't pile more on top of it.
            throw BrokerUnavailable(reason: stuck)
        }
        let claimed = try await outbox.claim(limit: limit, at: now)
        for (seq, reason) in claimed.unreadable {
            logger.error("an outbox row cannot be read; set aside", metadata: ["seq": "\(seq)", "reason": "\(reason)"])
            try await outbox.setAside(seq: seq, reason: reason)
        }
        guard !claimed.entries.isEmpty else { return 0 }
        let result = await publish(claimed.entries)
        try await outbox.delete(result.published)
        if let failure = result.failure {
            let published = Set(result.published)
            try await outbox.release(claimed.entries.map(\.seq).filter { !published.contains($0) })
            noteFailure(failure)
            throw BrokerUnavailable(reason: failure)
        }
        noteSuccess()
        return result.published.count
    }

    /// Messages waiting in the outbox.
    public func outboxCount() async throws -> Int {
        try await outbox.count()
    }

    // MARK: Publishing within the deadline

    /// Publishes `entries` concurrently and waits for the broker's confirms, at most ``publishTimeout``. Returns the
    /// rows confirmed in time and, if any was not, why. A publish still running at the deadline is cancelled and
    /// left to finish on its own; the next flush waits for it (``BrokerHealth/abandonedPublish()``).
    private func publish(_ entries: [OutboxEntry]) async -> (published: [Int64], failure: String?) {
        let progress = PublishProgress()
        let broker = self.broker
        let health = self.health
        let attempt = health.publishStarted()
        let work = Task {
            await withTaskGroup(of: Void.self) { group in
                for entry in entries {
                    group.addTask {
                        do {
                            try await broker.publish(entry.message)
                            progress.confirmed(entry.seq)
                        } catch {
                            progress.failed("\(error)")
                        }
                    }
                }
            }
            health.publishEnded(attempt)
        }
        let inTime = await Self.finishes(work, within: publishTimeout)
        if !inTime {
            work.cancel()
            health.abandon(attempt, reason: "publishing waited longer than \(publishTimeout) for the broker")
        }
        let (published, failure) = progress.outcome
        guard published.count < entries.count else { return (published, nil) }
        return (published, inTime ? failure ?? "the broker did not confirm every message" : "no confirm from the broker within \(publishTimeout)")
    }

    /// Waits until `work` ends or `timeout` passes, whichever is first; `true` when the work ended. Unlike a task
    /// group it does not wait for work that ignores cancellation. Cancelling the caller cancels the work.
    static func finishes(_ work: Task<Void, Never>, within timeout: Duration) async -> Bool {
        let first = FirstOutcome()
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                first.wait(continuation)
                let timer = Task {
                    try? await Task.sleep(for: timeout)
                    first.resolve(false)
                }
                Task {
                    await work.value
                    first.resolve(true)
                    timer.cancel()
                }
            }
        } onCancel: {
            work.cancel()
        }
    }

    private func releaseQuietly(_ seqs: [Int64]) async {
        do {
            try await outbox.release(seqs)
        } catch {
            // The claim runs out on its own; the beat publishes them then.
            logger.debug("outbox rows stay claimed until their claim runs out", metadata: ["error": "\(error)"])
        }
    }

    private func noteFailure(_ reason: String) {
        if health.failed() {
            logger.warning("broker blocked or unavailable; outbox waits", metadata: ["reason": "\(reason)"])
        }
    }

    private func noteSuccess() {
        if health.succeeded() { logger.info("broker takes messages again; outbox resumes") }
    }
}

/// What publishers of one dispatcher know about the broker: whether it is failing (to log an outage once and spare
/// API callers the deadline while it lasts), and publishes given up on that may still be waiting on it.
final class BrokerHealth: Sendable {
    private struct State {
        var failing = false
        /// While failing, when a caller may try the broker directly again.
        var nextProbe: ContinuousClock.Instant = .now
        var nextAttempt = 0
        var running: Set<Int> = []
        /// Publishes that ran past their deadline and have not ended yet, with why they were given up.
        var abandoned: [Int: String] = [:]
    }

    /// While the broker fails, how often a caller tries it directly; in between, the beat's flush publishes.
    static let probeInterval: Duration = .seconds(5)

    private let state = Mutex(State())

    /// `true` when a caller should publish itself rather than leave the rows to the beat.
    func mayPublishDirectly() -> Bool {
        state.withLock { state in
            guard state.abandoned.isEmpty else { return false }
            guard state.failing else { return true }
            let now = ContinuousClock.now
            guard now >= state.nextProbe else { return false }
            state.nextProbe = now + Self.probeInterval
            return true
        }
    }

    /// Records a failure; `true` when the broker was fine before (the outage starts: log it).
    func failed() -> Bool {
        state.withLock { state in
            defer {
                state.failing = true
                state.nextProbe = ContinuousClock.now + Self.probeInterval
            }
            return !state.failing
        }
    }

    /// Records a success; `true` when the broker was failing (the outage ended: log it).
    func succeeded() -> Bool {
        state.withLock { state in
            defer { state.failing = false }
            return state.failing
        }
    }

    func publishStarted() -> Int {
        state.withLock { state in
            state.nextAttempt += 1
            state.running.insert(state.nextAttempt)
            return state.nextAttempt
        }
    }

    func publishEnded(_ attempt: Int) {
        state.withLock { state in
            state.running.remove(attempt)
            state.abandoned.removeValue(forKey: attempt)
        }
    }

    func abandon(_ attempt: Int, reason: String) {
        state.withLock { state in
            // One that ended in the meantime holds nothing up.
            if state.running.contains(attempt) { state.abandoned[attempt] = reason }
        }
    }

    /// Why a publish given up on is still running, if one is.
    func abandonedPublish() -> String? {
        state.withLock { $0.abandoned.values.first }
    }
}

/// What the publishes of one batch got from the broker so far.
private final class PublishProgress: Sendable {
    private let state = Mutex<(confirmed: [Int64], failure: String?)>(([], nil))

    func confirmed(_ seq: Int64) { state.withLock { $0.confirmed.append(seq) } }

    func failed(_ reason: String) { state.withLock { if $0.failure == nil { $0.failure = reason } } }

    var outcome: (confirmed: [Int64], failure: String?) { state.withLock { $0 } }
}

/// Resumes one waiter with the first of several outcomes.
private final class FirstOutcome: Sendable {
    private let waiter = Mutex<CheckedContinuation<Bool, Never>?>(nil)

    func wait(_ continuation: CheckedContinuation<Bool, Never>) { waiter.withLock { $0 = continuation } }

    func resolve(_ outcome: Bool) { waiter.withLock { $0.take() }?.resume(returning: outcome) }
}

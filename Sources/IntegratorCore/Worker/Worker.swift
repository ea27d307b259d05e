// The worker service: claims tasks up to its free slots, runs their handlers, records every outcome, then settles.
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// What a worker consumes and how.
public struct WorkerOptions: Sendable {
    /// Queues to take tasks from.
    public var queues: [String]
    /// Tasks run at once. The broker is asked only for as many tasks as there are free slots, so a
    /// high-priority task published later is the next one taken (no prefetch hoarding).
    public var concurrency: Int
    /// How long a claimed task stays ours without a heartbeat; after that another worker may take it.
    public var lease: TimeInterval
    /// Longest pause between polls when the queues are empty.
    public var maxPollInterval: Duration
    /// The longest pause between two heartbeats (the worker reporting itself and extending its leases). The worker
    /// beats at least three times per lease, so a lease runs out only after three heartbeats in a row failed.
    public var heartbeatInterval: Duration
    /// On graceful shutdown, how long running tasks may take to finish before they are cancelled.
    public var shutdownGrace: Duration
    /// After the grace period, how long the worker waits for cancelled tasks to end before it hands back the ones that
    /// did. A task still running after that keeps its lease (heartbeats go on until it ends), so no other worker runs
    /// it at the same time.
    public var cancellationWait: Duration
    /// A message delivered more often than this without an outcome (its workers keep dying on it) is dead-lettered.
    public var maxDeliveries: Int
    /// A task is recorded `started` once it has run this long; a shorter one goes from `queued` straight to its
    /// outcome, which still carries its worker and start time. This saves a write per short task (Celery does not
    /// track starts at all by default). Zero records every start before the task runs.
    public var recordStartedAfter: Duration

    public init(
        queues: [String] = ["default"], concurrency: Int = 8, lease: TimeInterval = 60, maxPollInterval: Duration = .milliseconds(200),
        heartbeatInterval: Duration = .seconds(5), shutdownGrace: Duration = .seconds(30), cancellationWait: Duration = .seconds(5),
        maxDeliveries: Int = 5, recordStartedAfter: Duration = .milliseconds(100)
    ) {
        self.recordStartedAfter = max(.zero, recordStartedAfter)
        self.maxDeliveries = max(1, maxDeliveries)
        self.queues = queues
        self.concurrency = max(1, concurrency)
        self.lease = lease
        self.maxPollInterval = maxPollInterval
        self.heartbeatInterval = heartbeatInterval
        self.shutdownGrace = shutdownGrace
        self.cancellationWait = max(.zero, cancellationWait)
    }

    /// How often the worker beats: `heartbeatInterval`, or a third of the lease when that is shorter.
    var effectiveHeartbeatInterval: Duration {
        let third = Duration.milliseconds(Int64((max(0.003, lease) * 1000 / 3).rounded(.down)))
        return min(heartbeatInterval, third)
    }
}

/// Told the states recorded as attempts ended (succeeded, failed, dead or retrying), right after they were written,
/// a batch at a time.
public typealias WorkerOutcomeObserver = @Sendable ([TaskState]) -> Void

/// Consumes queues and runs tasks. Acknowledges a task only after its outcome is recorded, so a worker that dies
/// loses nothing: its leases run out and the tasks are delivered again.
public final class Worker: Service {
    public let id: String
    let options: WorkerOptions
    let broker: any Broker
    let runs: TaskRunStore
    let registry: PluginRegistry
    /// Where retries wait for their delay. Without it (a worker built outside a runtime) the broker delays them.
    let timers: TimerStore?
    /// Handed to every task through its context (``TaskContext/environment``).
    let environment: PluginEnvironment?
    let clock: any TimeSource
    let logger: Logger
    /// The broker as a queue in the store's database, when it is one: outcomes and acknowledgements then commit together.
    private let queueInDatabase: (any InDatabaseBroker)?
    private let inFlight = Mutex<[String: Delivery]>([:])
    /// The attempts running here, each with the delivery tag that runs it: a second copy of one (a message published
    /// twice, both claimed before either recorded its outcome) is acknowledged instead of run beside it. The copy
    /// running goes on to record the outcome; if this worker dies, its own message comes back.
    private let runningAttempts = Mutex<[String: String]>([:])
    /// Deliveries whose tasks shutdown cancelled before they recorded an outcome: the drain hands them back.
    private let interrupted = Mutex<[Delivery]>([])
    /// Yields when a task frees its slot; keeps only the newest signal, which is all the consume loop needs.
    private let slotSignals = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
    private let startedAt: Date
    /// Final outcomes of concurrent tasks, recorded together (and, on the SQL broker, acknowledged in the same
    /// transaction); an external broker's acknowledgements follow the commit. While tasks end one after another a
    /// write waits a few milliseconds for more (``BatchGathering/stream(window:enough:pause:)``), for a quarter of the
    /// slots at most: nothing waits on it but the tasks' slots, and a worker whose slots all wait runs nothing.
    private let outcomes: GroupCommit<AttemptOutcome>
    private let onRecorded: WorkerOutcomeObserver?
    /// Where outcomes, retries and dead letters are counted.
    let metrics: IntegratorMetrics

    public init(
        options: WorkerOptions, broker: any Broker, runs: TaskRunStore, registry: PluginRegistry, timers: TimerStore? = nil,
        environment: PluginEnvironment? = nil,
        clock: any TimeSource = SystemTimeSource(), logger: Logger, id: String? = nil, onRecorded: WorkerOutcomeObserver? = nil,
        metrics: IntegratorMetrics = .shared
    ) {
        self.onRecorded = onRecorded
        self.metrics = metrics
        self.timers = timers
        self.environment = environment
        let host = ProcessInfo.processInfo.hostName
        self.id = id ?? "\(host)-\(ProcessInfo.processInfo.processIdentifier)-\(Identifier.make().suffix(6))"
        self.options = options
        self.broker = broker
        self.runs = runs
        self.registry = registry
        self.clock = clock
        var logger = logger
        logger[metadataKey: "worker.id"] = "\(self.id)"
        self.logger = logger
        self.startedAt = clock.now()
        let queueInDatabase = broker.inDatabase
        self.queueInDatabase = queueInDatabase
        let workerLogger = logger
        self.outcomes = GroupCommit(maxBatch: 500, gathering: .stream(enough: max(1, options.concurrency / 4))) { batch in
            let recorded = try await runs.recordOutcomes(batch, acknowledgingIn: queueInDatabase)
            // An external broker's messages are acknowledged after the commit, fenced-off ones too: a newer delivery of
            // the same task decides its outcome, and this copy is done.
            if queueInDatabase == nil { try await broker.acknowledge(batch.map(\.delivery)) }
            var states: [TaskState] = []
            states.reserveCapacity(batch.count)
            for (outcome, wasRecorded) in zip(batch, recorded) {
                if wasRecorded {
                    states.append(outcome.state)
                    metrics.taskEnded(outcome, in: registry)
                } else {
                    Self.logFencedOff(outcome.delivery, state: outcome.state, logger: workerLogger)
                }
            }
            if !states.isEmpty { onRecorded?(states) }
        }
    }

    /// Says that an outcome was dropped because a newer delivery of its task holds the run.
    private static func logFencedOff(_ delivery: Delivery, state: TaskState, logger: Logger) {
        logger.warning(
            "outcome not recorded: the task was delivered again after this worker's lease ran out",
            metadata: [
                "task.id": "\(delivery.message.id)", "task.name": "\(delivery.message.name)", "task.attempt": "\(delivery.message.attempt)",
                "task.deliveries": "\(delivery.deliveries)", "task.outcome": "\(state.rawValue)",
            ])
    }

    /// Tasks running right now.
    public var busy: Int { inFlight.withLock { $0.count } }

    /// Tasks running right now, by the queue they came from.
    public var busyByQueue: [String: Int] {
        inFlight.withLock { inFlight in
            var counts: [String: Int] = [:]
            for delivery in inFlight.values { counts[delivery.message.queue, default: 0] += 1 }
            return counts
        }
    }

    /// Runs until cancelled or shut down gracefully, at ``WorkPriority/dueWork`` (ahead of request handling in the
    /// same process).
    public func run() async throws {
        try await WorkPriority.run(at: WorkPriority.dueWork) { try await self.runLoops() }
    }

    private func runLoops() async throws {
        logger.info("worker started", metadata: ["worker.queues": "\(options.queues.joined(separator: ","))", "worker.concurrency": "\(options.concurrency)"])
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.heartbeatLoop() }
            group.addTask { await self.broker.receiveNewsOfArrivals() }
            // A discarding group drops finished children at once, so a long-running worker does not accumulate them.
            await withDiscardingTaskGroup { tasks in
                // With every slot busy the consume loop waits for a freed slot; shutdown must wake it too.
                await withGracefulShutdownHandler {
                    await self.consume(into: &tasks)
                } onGracefulShutdown: {
                    self.slotSignals.continuation.yield()
                }
                await self.drain(&tasks)
            }
            // Every task has ended now, including those that outlived the drain's wait.
            await handBackInterrupted()
            group.cancelAll()
        }
        try? await runs.removeWorker(id: id)
        logger.info("worker stopped")
    }

    private func consume(into tasks: inout DiscardingTaskGroup) async {
        var slotFreed = slotSignals.stream.makeAsyncIterator()
        let shortPause = Duration.milliseconds(5)
        var idlePause = shortPause
        var emptyClaims = 0
        var failures = 0
        // Set when a claim made after a pause, not after news of arrivals, found messages: another process enqueues
        // without announcing it, and only brisk polls keep such tasks from waiting.
        var unannouncedArrivalSeen: ContinuousClock.Instant?
        // The first claim follows no news: what it finds was queued while this worker was not listening, possibly by a
        // process that does not announce its tasks.
        var claimFollowsNews = false
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            // Slots free up in bursts (a settled batch); let the burst finish so one claim takes all of them.
            await Task.yield()
            let free = options.concurrency - busy
            guard free > 0 else {
                // Every slot is busy: sleep until a task finishes (or shutdown begins).
                _ = await slotFreed.next(isolation: #isolation)
                claimFollowsNews = true
                continue
            }
            let deliveries: [Delivery]
            let arrivals = broker.arrivalMark
            do {
                deliveries = try await broker.claim(
                    queues: options.queues, limit: free, workerID: id, leaseUntil: clock.now().addingTimeInterval(options.lease))
                failures = 0
            } catch is CancellationError {
                break
            } catch {
                if Task.isCancelled { break }
                failures += 1
                // The broker is down: say so once per streak, keep trying with a growing pause.
                if failures == 1 { logger.error("cannot reach the broker; retrying", metadata: ["error": "\(error)"]) }
                try? await Task.sleep(for: .milliseconds(min(5000, 100 * (1 << min(failures, 6)))))
                continue
            }
            if !deliveries.isEmpty {
                inFlight.withLock { inFlight in
                    for delivery in deliveries { inFlight[delivery.tag] = delivery }
                }
                tasks.addTask { await self.start(deliveries) }
                if !claimFollowsNews { unannouncedArrivalSeen = .now }
                idlePause = shortPause
                emptyClaims = 0
                // A full claim may have left more behind; a short one emptied the queue, so claiming again at once
                // would come back empty.
                if deliveries.count == free { continue }
            }
            // Without unannounced messages lately, every arrival is announced, and a poll is only a safety net.
            let brisk = unannouncedArrivalSeen.map { ContinuousClock.now - $0 < Self.briskPollingSpan } ?? false
            if !brisk { idlePause = options.maxPollInterval }
            if await broker.waitForMessages(after: arrivals, upTo: idlePause) {
                // A message is on its way (committed by this process, announced, or pushed by RabbitMQ): claim at once.
                idlePause = shortPause
                emptyClaims = 0
                claimFollowsNews = true
                continue
            }
            claimFollowsNews = false
            // Under a steady trickle of unannounced messages a claim often comes back empty between two of them;
            // backing off at once let such a task wait 20–40 ms for the next poll. The pause grows after 100 ms of
            // empty claims.
            emptyClaims += 1
            if emptyClaims >= 20 { idlePause = min(options.maxPollInterval, idlePause * 2) }
        }
    }

    /// How long after a poll found messages nobody announced the worker keeps polling briskly.
    static let briskPollingSpan: Duration = .seconds(10)

    /// On shutdown: let running tasks finish within the grace period, then cancel the rest, wait (bounded) for them to
    /// end, and hand back those that ended without an outcome. A task that ignores its cancellation is not handed back
    /// while it runs: its lease stays with this worker, so it never runs twice at once.
    private func drain(_ tasks: inout DiscardingTaskGroup) async {
        guard busy > 0 else { return }
        logger.info("finishing running tasks", metadata: ["worker.busy": "\(busy)"])
        await waitUntilIdle(for: options.shutdownGrace)
        guard busy > 0 else { return }
        tasks.cancelAll()
        await waitUntilIdle(for: options.cancellationWait)
        await handBackInterrupted()
        let stillRunning = busy
        if stillRunning > 0 {
            logger.warning(
                "tasks still running after cancellation; they keep their leases until they end",
                metadata: ["worker.busy": "\(stillRunning)"])
        }
    }

    /// Waits until no task runs, for at most `limit`; not at all once the worker itself is cancelled (its tasks are then
    /// cancelled too, and the end of ``run()`` waits for them).
    private func waitUntilIdle(for limit: Duration) async {
        let deadline = ContinuousClock.now + limit
        while busy > 0, ContinuousClock.now < deadline, !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Hands back the deliveries of tasks that shutdown cancelled and that have ended without an outcome.
    private func handBackInterrupted() async {
        let handBack = interrupted.withLock { interrupted in
            defer { interrupted = [] }
            return interrupted
        }
        guard !handBack.isEmpty else { return }
        logger.warning("handing back unfinished tasks", metadata: ["worker.released": "\(handBack.count)"])
        do {
            try await Self.completing { try await self.broker.release(handBack) }
        } catch {
            // Their leases run out instead, and they are delivered again then.
            logger.warning("could not hand back unfinished tasks", metadata: ["error": "\(error)"])
        }
    }

    /// Reports the worker and extends its leases, at least three times per lease. A failure is logged once per streak
    /// of failures: three in a row let the leases run out and other workers take the running tasks.
    private func heartbeatLoop() async {
        let interval = options.effectiveHeartbeatInterval
        var failing = false
        var lastStallCheck = clock.now()
        while !Task.isCancelled {
            let now = clock.now()
            if now.timeIntervalSince(lastStallCheck) >= Self.stallCheckInterval {
                lastStallCheck = now
                await warnIfNothingFiresTimers(at: now)
            }
            do {
                // The lease first: it is what keeps a running task from being delivered to another worker.
                try await broker.extendLeases(workerID: id, leaseUntil: now.addingTimeInterval(options.lease))
                try await runs.heartbeat(
                    WorkerInfo(
                        id: id, host: ProcessInfo.processInfo.hostName, queues: options.queues, concurrency: options.concurrency,
                        busy: busy, busyByQueue: busyByQueue, startedAt: startedAt, lastSeen: now))
                if failing {
                    failing = false
                    logger.info("heartbeat recovered")
                }
            } catch {
                if Task.isCancelled { break }
                if !failing {
                    failing = true
                    logger.warning(
                        "heartbeat failed; running tasks lose their leases if it keeps failing",
                        metadata: ["error": "\(error)", "worker.lease_s": "\(options.lease)"])
                }
            }
            try? await Task.sleep(for: interval)
        }
    }

    /// How often a worker looks for timers that are due with no beat to fire them.
    static let stallCheckInterval: TimeInterval = 60

    /// Retries and other timers wait for a beat; a fleet without one stalls silently. Says so once a minute while it
    /// lasts: a timer overdue by more than ``BeatStatus/silenceLimit`` and no beat reporting for as long.
    private func warnIfNothingFiresTimers(at now: Date) async {
        guard let timers, let due = try? await timers.earliestDue(), now.timeIntervalSince(due) > BeatStatus.silenceLimit,
            let silence = try? await BeatStatusStore(database: timers.database).silence(at: now)
        else { return }
        logger.warning(
            "timers are due and nothing fires them: \(silence)",
            metadata: ["timers.overdue_s": "\(Int(now.timeIntervalSince(due)))"])
    }

    /// Starts a claimed batch: checks in one read which tasks may run (or, with `recordStartedAfter` zero, records them
    /// started in one write), runs each to its recorded outcome, and records as started those still running after
    /// `recordStartedAfter`. Deliveries that cannot run (unknown task, too many deliveries) are dead-lettered.
    private func start(_ claimed: [Delivery]) async {
        await withDiscardingTaskGroup { group in
            let (deliveries, copies) = runningAttempts.withLock { running -> ([Delivery], [Delivery]) in
                var fresh: [Delivery] = []
                var copies: [Delivery] = []
                for delivery in claimed {
                    let key = Self.attemptKey(delivery.message)
                    if running[key] == nil {
                        running[key] = delivery.tag
                        fresh.append(delivery)
                    } else {
                        copies.append(delivery)
                    }
                }
                return (fresh, copies)
            }
            for copy in copies { group.addTask { await self.skip(copy) } }
            var runnable: [StartedTask] = []
            for delivery in deliveries {
                let message = delivery.message
                if let handler = registry.taskHandler(message.name), delivery.deliveries <= options.maxDeliveries {
                    runnable.append(StartedTask(delivery: delivery, handler: handler))
                    continue
                }
                group.addTask {
                    let logger = self.logger(for: message)
                    defer { self.freeSlot(of: delivery) }
                    do {
                        if self.registry.taskHandler(message.name) == nil {
                            try await self.deadLetter(delivery, reason: "unknown task name '\(message.name)'")
                            logger.warning("task dead-lettered: unknown task name")
                        } else {
                            try await self.deadLetter(
                                delivery, reason: "delivered \(delivery.deliveries) times without an outcome; the task may crash its worker")
                            logger.warning("task dead-lettered: too many deliveries")
                        }
                    } catch {
                        logger.error("could not record task outcome; it will be delivered again", metadata: ["error": "\(error)"])
                    }
                }
            }
            guard !runnable.isEmpty else { return }
            let startedAt = clock.now()
            let allowed: [Bool]
            let recordsStartLater = options.recordStartedAfter > .zero
            let starts = runnable.map(\.delivery)
            do {
                // When the claim read the runs there is nothing to write or read yet: the tasks start without a hop.
                if recordsStartLater, let known = runs.startableAsClaimed(starts) {
                    allowed = known
                } else {
                    allowed = try await Self.completing { [id, runs] in
                        recordsStartLater
                            ? try await runs.startable(starts)
                            : try await runs.recordStarted(starts, workerID: id, at: startedAt)
                    }
                }
            } catch {
                // The database is down: leave the messages leased; they are delivered again when the leases end.
                logger.error(
                    "could not record tasks as started; they will be delivered again",
                    metadata: ["error": "\(error)", "worker.batch": "\(runnable.count)"])
                for task in runnable { freeSlot(of: task.delivery) }
                return
            }
            let starting = zip(runnable, allowed).filter(\.1).map(\.0)
            for (task, mayRun) in zip(runnable, allowed) where !mayRun {
                group.addTask { await self.skip(task.delivery) }
            }
            guard !starting.isEmpty else { return }
            let running = RunningTasks(starting.map(\.delivery))
            // All tasks of a batch start together, so those sharing a timeout share its deadline: one timer per
            // timeout instead of one per task.
            for (timeout, tasks) in Dictionary(grouping: starting, by: \.handler.timeout) {
                group.addTask { await self.runTogether(tasks, timeout: timeout, startedAt: startedAt, running: running) }
            }
            if recordsStartLater {
                group.addTask { await self.recordStillRunning(running, startedAt: startedAt) }
            }
        }
    }

    /// Runs tasks that started together and share a timeout, each to its recorded outcome. When the timeout passes,
    /// whatever still runs is cancelled and fails with ``TaskTimeout``.
    private func runTogether(_ tasks: [StartedTask], timeout: Duration, startedAt: Date, running: RunningTasks) async {
        let deadline = Deadline()
        enum Ended { case task, timeout, timerStopped }
        await withTaskGroup(of: Ended.self) { group in
            for task in tasks {
                group.addTask {
                    await self.process(task, startedAt: startedAt, running: running, deadline: deadline)
                    return .task
                }
            }
            group.addTask {
                do {
                    try await Task.sleep(for: timeout)
                    return .timeout
                } catch {
                    return .timerStopped
                }
            }
            var unfinished = tasks.count
            while let ended = await group.next() {
                switch ended {
                case .timeout:
                    deadline.pass()
                    group.cancelAll()
                case .task:
                    unfinished -= 1
                    // Every task is done: stop the timer.
                    if unfinished == 0 { group.cancelAll() }
                case .timerStopped:
                    break
                }
            }
        }
    }

    /// After `recordStartedAfter`, records as started the tasks of a batch whose handlers are still running.
    private func recordStillRunning(_ running: RunningTasks, startedAt: Date) async {
        do {
            try await Task.sleep(for: options.recordStartedAfter)
        } catch {
            return
        }
        let stillRunning = running.remaining
        guard !stillRunning.isEmpty else { return }
        do {
            // Shutdown may cancel this task mid-write; the write finishes regardless (a transaction cut short could
            // leave its connection inside it).
            try await Self.completing { try await self.runs.markStarted(stillRunning, workerID: self.id, at: startedAt) }
        } catch {
            // Only the display of a running task suffers; its outcome is recorded as usual.
            logger.warning("could not record running tasks as started", metadata: ["error": "\(error)"])
        }
    }

    private func freeSlot(of delivery: Delivery) {
        let key = Self.attemptKey(delivery.message)
        runningAttempts.withLock { running in
            if running[key] == delivery.tag { running[key] = nil }
        }
        inFlight.withLock { _ = $0.removeValue(forKey: delivery.tag) }
        slotSignals.continuation.yield()
    }

    private static func attemptKey(_ message: TaskMessage) -> String { "\(message.id)#\(message.attempt)" }

    private func logger(for message: TaskMessage) -> Logger {
        var logger = self.logger
        // Set as one value: the stream log handler renders its metadata again on every change, and this runs per task.
        var metadata = logger.handler.metadata
        metadata["task.id"] = "\(message.id)"
        metadata["task.name"] = "\(message.name)"
        metadata["task.attempt"] = "\(message.attempt)"
        logger.handler.metadata = metadata
        return logger
    }

    /// Acknowledges a delivery that must not run: its task was revoked or already ran.
    private func skip(_ delivery: Delivery) async {
        defer { freeSlot(of: delivery) }
        do {
            try await Self.completing { try await self.broker.acknowledge(delivery) }
            logger(for: delivery.message).info("skipped a task that was revoked, already ran, or is running here")
        } catch {
            logger(for: delivery.message).error("could not acknowledge a skipped task", metadata: ["error": "\(error)"])
        }
    }

    /// Runs one started task to its recorded outcome, then settles it with the broker.
    private func process(_ task: StartedTask, startedAt: Date, running: RunningTasks, deadline: Deadline) async {
        let delivery = task.delivery
        defer { freeSlot(of: delivery) }
        let message = delivery.message
        var outcome: Result<JSONValue, any Error>
        do {
            let context = TaskContext(
                taskID: message.id, attempt: message.attempt, taskName: message.name, environment: environment, logger: logger)
            outcome = .success(try await task.handler.run(message.arguments, context: context))
        } catch {
            outcome = .failure(error)
        }
        running.finished(delivery)
        if Task.isCancelled {
            if deadline.hasPassed {
                // Cancelled by its timeout: a failed attempt like any other.
                outcome = .failure(TaskTimeout(timeout: task.handler.timeout))
            } else if case .failure = outcome {
                // Cancelled by shutdown before it finished: record nothing; the drain hands it back once it ended.
                interrupted.withLock { $0.append(delivery) }
                return
            }
            // A task that finished its work despite the shutdown's cancellation keeps its outcome.
        }
        // The database may be away for a moment (a restart, a failover). The task has run, so its outcome is recorded
        // once the database is back instead of the task running again. Only when that keeps failing, or the worker
        // stops, does the message go back to the broker (on RabbitMQ nothing else would ever hand it back: it has no
        // lease that runs out).
        var pause = Self.firstSettlePause
        for attempt in 1...Self.settleAttempts {
            do {
                try await settle(delivery, handler: task.handler, outcome: outcome, startedAt: startedAt)
                return
            } catch {
                guard attempt < Self.settleAttempts, (try? await Task.sleep(for: pause)) != nil else {
                    logger(for: message).error(
                        "could not record task outcome; its message goes back to the queue to run again", metadata: ["error": "\(error)"])
                    break
                }
                logger(for: message).warning("could not record task outcome; trying again", metadata: ["error": "\(error)"])
                pause = min(pause * 2, .seconds(8))
            }
        }
        do {
            try await Self.completing { try await self.broker.release([delivery]) }
        } catch {
            logger(for: message).error("could not hand the message back either; it is delivered again when its lease ends", metadata: ["error": "\(error)"])
        }
    }

    /// How often an outcome is written before its message goes back to the broker (about 15 s in all).
    static let settleAttempts = 6
    static let firstSettlePause: Duration = .milliseconds(500)

    /// Runs bookkeeping that must finish even if the worker is being cancelled, or a recorded outcome could be
    /// left with its message still leased. The unstructured task does not inherit cancellation; its value is
    /// awaited, so it never outlives the caller.
    private static func completing<T: Sendable>(_ work: @escaping @Sendable () async throws -> T) async throws -> T {
        try await Task { try await work() }.value
    }

    /// Records the task dead and moves its message to the dead letters.
    private func deadLetter(_ delivery: Delivery, reason: String) async throws {
        let now = clock.now()
        try await recordDead(delivery, reason: reason, error: reason, startedAt: now, finishedAt: now)
    }

    /// Records the attempt dead, then dead-letters its message, unless a newer delivery of the task holds the run:
    /// then its copy is acknowledged and the outcome dropped with a warning.
    private func recordDead(_ delivery: Delivery, reason: String, error: String, startedAt: Date, finishedAt: Date) async throws {
        try await Self.completing {
            let recorded = try await self.runs.recordAttemptEnd(
                delivery, state: .dead, workerID: self.id, error: error, startedAt: startedAt, finishedAt: finishedAt)
            guard recorded else {
                Self.logFencedOff(delivery, state: .dead, logger: self.logger)
                // This copy is done. On the SQL queue the acknowledgement is fenced too: a newer claim stays.
                try await self.broker.acknowledge(delivery)
                return
            }
            self.onRecorded?([.dead])
            self.countDeadLetter(delivery, ran: finishedAt.timeIntervalSince(startedAt))
            do {
                try await self.broker.deadLetter(delivery, reason: reason)
            } catch let lost as DeliveryNotHeld {
                // Another worker claimed the message after this one's lease ran out; its outcome will replace this one.
                self.logger(for: delivery.message).warning("task recorded dead, but its message is another worker's now", metadata: ["error": "\(lost)"])
            }
        }
    }

    /// Records the outcome and settles the message. Final outcomes join the group commit, whose write does not inherit
    /// the caller's cancellation; retries and dead letters run detached from it for the same reason.
    private func settle(_ delivery: Delivery, handler: any TaskHandler, outcome: Result<JSONValue, any Error>, startedAt: Date) async throws {
        let message = delivery.message
        let finishedAt = clock.now()
        switch outcome {
        case .success(let value):
            let encoded = value.encodedString()
            let result = encoded.utf8.count > 8192 ? JSONValue.object(["truncated": true]).encodedString() : encoded
            try await outcomes.submit(
                AttemptOutcome(
                    delivery: delivery, state: .succeeded, workerID: id, error: nil, encodedResult: result, startedAt: startedAt,
                    finishedAt: finishedAt))
        case .failure(let error):
            let logger = logger(for: message)
            let summary = Self.summary(of: error)
            let permanent = Self.isPermanent(error)
            var policy = handler.retryPolicy
            if let maxAttempts = message.maxAttempts { policy.maxAttempts = max(1, maxAttempts) }
            if permanent {
                try await outcomes.submit(
                    AttemptOutcome(
                        delivery: delivery, state: .failed, workerID: id, error: summary, encodedResult: nil, startedAt: startedAt,
                        finishedAt: finishedAt))
                logger.info("task failed permanently", metadata: ["error": "\(summary)"])
            } else if policy.allowsRetry(after: message.attempt) {
                var generator = SystemRandomNumberGenerator()
                let delay = policy.nextDelay(after: message.attempt, using: &generator)
                var next = message
                next.attempt += 1
                try await Self.completing { [next] in
                    try await self.scheduleRetry(
                        delivery, as: next, notBefore: finishedAt.addingTimeInterval(delay), error: summary, startedAt: startedAt,
                        finishedAt: finishedAt)
                }
                logger.info("task will retry", metadata: ["error": "\(summary)", "retry.delay_s": "\(String(format: "%.2f", delay))"])
            } else {
                try await recordDead(
                    delivery, reason: "failed after \(message.attempt) attempts: \(summary)", error: summary, startedAt: startedAt,
                    finishedAt: finishedAt)
                logger.warning("task dead after its last attempt", metadata: ["error": "\(summary)"])
            }
        }
    }

    /// Records the failed attempt and arranges the next one. With timers, the retry is a durable timer written in the
    /// same transaction as the outcome (and, on the SQL queue, as the acknowledgement); a worker that dies before
    /// acknowledging an external broker's message gets it back, and the stale attempt is dropped when it starts.
    /// Nothing is arranged when a newer delivery of the task holds the run.
    private func scheduleRetry(
        _ delivery: Delivery, as next: TaskMessage, notBefore: Date, error: String, startedAt: Date, finishedAt: Date
    ) async throws {
        guard let timers else {
            let recorded = try await runs.recordAttemptEnd(
                delivery, state: .retrying, workerID: id, error: error, startedAt: startedAt, finishedAt: finishedAt,
                nextAttempt: next.attempt)
            guard recorded else {
                Self.logFencedOff(delivery, state: .retrying, logger: logger)
                try await broker.acknowledge(delivery)
                return
            }
            onRecorded?([.retrying])
            countRetry(delivery, ran: finishedAt.timeIntervalSince(startedAt))
            do {
                try await broker.retry(delivery, as: next, notBefore: notBefore)
            } catch let lost as DeliveryNotHeld {
                logger(for: delivery.message).warning("retry recorded, but the message is another worker's now", metadata: ["error": "\(lost)"])
            }
            return
        }
        let timer = DurableTimer(id: "retry:\(next.id):\(next.attempt)", dueAt: notBefore, message: next)
        let queue = queueInDatabase
        let recorded = try await runs.recordAttemptEnd(
            delivery, state: .retrying, workerID: id, error: error, startedAt: startedAt, finishedAt: finishedAt,
            nextAttempt: next.attempt, acknowledgingIn: queue
        ) { sql in
            try await timers.upsert(timer, at: finishedAt, sql)
        }
        if queue == nil { try await broker.acknowledge(delivery) }
        guard recorded else {
            Self.logFencedOff(delivery, state: .retrying, logger: logger)
            return
        }
        onRecorded?([.retrying])
        countRetry(delivery, ran: finishedAt.timeIntervalSince(startedAt))
        timers.wakeup.notify(dueAt: timer.dueAt)
    }

    /// Errors retrying cannot fix: a handler's own ``PluginError`` marked permanent, and outbound requests the SSRF
    /// guard refused or that had no valid URL (a plugin that lets them through unwrapped still fails at once).
    static func isPermanent(_ error: any Error) -> Bool {
        switch error {
        case let error as PluginError: error.isPermanent
        case let error as OutboundError: error.isRefusedAsConfigured
        default: false
        }
    }

    /// What is stored about an error. Handlers' own errors (``PluginError``) give their message; others their description.
    static func summary(of error: any Error) -> String {
        let text: String
        switch error {
        case let error as PluginError: text = error.message
        case let error as TaskTimeout: text = error.description
        default: text = "\(type(of: error)): \(error)"
        }
        return String(text.prefix(1000))
    }
}

/// A delivery that may run, with the handler its task name selects.
private struct StartedTask: Sendable {
    var delivery: Delivery
    var handler: any TaskHandler
}

/// Set when the timeout of a group of tasks passed, so their cancellation counts as a timeout, not a shutdown.
private final class Deadline: Sendable {
    private let passed = Mutex(false)
    func pass() { passed.withLock { $0 = true } }
    var hasPassed: Bool { passed.withLock { $0 } }
}

/// The deliveries of a started batch whose handlers have not returned yet.
private final class RunningTasks: Sendable {
    private let deliveries: Mutex<[String: Delivery]>

    init(_ deliveries: [Delivery]) {
        self.deliveries = Mutex(Dictionary(deliveries.map { ($0.tag, $0) }, uniquingKeysWith: { _, last in last }))
    }

    var isEmpty: Bool { deliveries.withLock { $0.isEmpty } }
    var remaining: [Delivery] { deliveries.withLock { Array($0.values) } }
    func finished(_ delivery: Delivery) { deliveries.withLock { _ = $0.removeValue(forKey: delivery.tag) } }
}

/// An attempt ran longer than its handler allows.
public struct TaskTimeout: Error, CustomStringConvertible {
    public var timeout: Duration
    public var description: String { "timed out after \(timeout)" }
}

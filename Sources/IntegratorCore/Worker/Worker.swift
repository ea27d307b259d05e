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
    /// How often the worker reports itself and extends its leases.
    public var heartbeatInterval: Duration
    /// On graceful shutdown, how long running tasks may take to finish before they are handed back.
    public var shutdownGrace: Duration
    /// A message delivered more often than this without an outcome (its workers keep dying on it) is dead-lettered.
    public var maxDeliveries: Int
    /// A task is recorded `started` once it has run this long; a shorter one goes from `queued` straight to its
    /// outcome, which still carries its worker and start time. This saves a write per short task (Celery does not
    /// track starts at all by default). Zero records every start before the task runs.
    public var recordStartedAfter: Duration

    public init(
        queues: [String] = ["default"], concurrency: Int = 8, lease: TimeInterval = 60, maxPollInterval: Duration = .milliseconds(200),
        heartbeatInterval: Duration = .seconds(5), shutdownGrace: Duration = .seconds(30), maxDeliveries: Int = 5,
        recordStartedAfter: Duration = .milliseconds(100)
    ) {
        self.recordStartedAfter = max(.zero, recordStartedAfter)
        self.maxDeliveries = max(1, maxDeliveries)
        self.queues = queues
        self.concurrency = max(1, concurrency)
        self.lease = lease
        self.maxPollInterval = maxPollInterval
        self.heartbeatInterval = heartbeatInterval
        self.shutdownGrace = shutdownGrace
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
    let clock: any TimeSource
    let logger: Logger
    private let inFlight = Mutex<[String: Delivery]>([:])
    /// Yields when a task frees its slot; keeps only the newest signal, which is all the consume loop needs.
    private let slotSignals = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
    private let startedAt: Date
    /// Final outcomes of concurrent tasks, recorded together (and, on the SQL broker, acknowledged in the same
    /// transaction); an external broker's acknowledgements follow the commit.
    private let outcomes: GroupCommit<AttemptOutcome>
    private let onRecorded: WorkerOutcomeObserver?

    public init(
        options: WorkerOptions, broker: any Broker, runs: TaskRunStore, registry: PluginRegistry, timers: TimerStore? = nil,
        clock: any TimeSource = SystemTimeSource(), logger: Logger, id: String? = nil, onRecorded: WorkerOutcomeObserver? = nil
    ) {
        self.onRecorded = onRecorded
        self.timers = timers
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
        self.outcomes = GroupCommit(maxBatch: 500) { batch in
            let deliveries = batch.map(\.delivery)
            if let queue = broker as? SQLBroker {
                try await runs.recordOutcomes(batch, alsoWriting: queue.acknowledgeStatements(deliveries))
            } else {
                try await runs.recordOutcomes(batch)
                try await broker.acknowledge(deliveries)
            }
            onRecorded?(batch.map(\.state))
        }
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

    public func run() async throws {
        logger.info("worker started", metadata: ["worker.queues": "\(options.queues.joined(separator: ","))", "worker.concurrency": "\(options.concurrency)"])
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.heartbeatLoop() }
            // A discarding group drops finished children at once, so a long-running worker does not accumulate them.
            await withDiscardingTaskGroup { tasks in
                await self.consume(into: &tasks)
                await self.drain(&tasks)
            }
            group.cancelAll()
        }
        try? await runs.removeWorker(id: id)
        logger.info("worker stopped")
    }

    private func consume(into tasks: inout DiscardingTaskGroup) async {
        var slotFreed = slotSignals.stream.makeAsyncIterator()
        var idlePause = Duration.milliseconds(5)
        var failures = 0
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            // Slots free up in bursts (a settled batch); let the burst finish so one claim takes all of them.
            await Task.yield()
            let free = options.concurrency - busy
            guard free > 0 else {
                // Every slot is busy: sleep until a task finishes (or shutdown begins).
                _ = await slotFreed.next(isolation: #isolation)
                continue
            }
            let deliveries: [Delivery]
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
            }
            if deliveries.isEmpty {
                try? await Task.sleep(for: idlePause)
                idlePause = min(options.maxPollInterval, idlePause * 2)
            } else {
                idlePause = .milliseconds(5)
            }
        }
    }

    /// On shutdown: let running tasks finish within the grace period, then cancel them and hand them back.
    private func drain(_ tasks: inout DiscardingTaskGroup) async {
        guard busy > 0 else { return }
        logger.info("finishing running tasks", metadata: ["worker.busy": "\(busy)"])
        let deadline = ContinuousClock.now + options.shutdownGrace
        while busy > 0, ContinuousClock.now < deadline, !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(20))
        }
        let leftover = inFlight.withLock { Array($0.values) }
        tasks.cancelAll()
        if !leftover.isEmpty {
            logger.warning("handing back unfinished tasks", metadata: ["worker.released": "\(leftover.count)"])
            try? await broker.release(leftover)
        }
    }

    private func heartbeatLoop() async {
        while !Task.isCancelled {
            let now = clock.now()
            do {
                try await runs.heartbeat(
                    WorkerInfo(
                        id: id, host: ProcessInfo.processInfo.hostName, queues: options.queues, concurrency: options.concurrency,
                        busy: busy, busyByQueue: busyByQueue, startedAt: startedAt, lastSeen: now))
                try await broker.extendLeases(workerID: id, leaseUntil: now.addingTimeInterval(options.lease))
            } catch {
                logger.debug("heartbeat failed", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: options.heartbeatInterval)
        }
    }

    /// Starts a claimed batch: checks in one read which tasks may run (or, with `recordStartedAfter` zero, records them
    /// started in one write), runs each to its recorded outcome, and records as started those still running after
    /// `recordStartedAfter`. Deliveries that cannot run (unknown task, too many deliveries) are dead-lettered.
    private func start(_ deliveries: [Delivery]) async {
        await withDiscardingTaskGroup { group in
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
            do {
                allowed = recordsStartLater
                    ? try await runs.startable(runnable.map(\.delivery))
                    : try await runs.recordStarted(runnable.map(\.delivery), workerID: id, at: startedAt)
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
            try await runs.markStarted(stillRunning, workerID: id, at: startedAt)
        } catch {
            // Only the display of a running task suffers; its outcome is recorded as usual.
            logger.warning("could not record running tasks as started", metadata: ["error": "\(error)"])
        }
    }

    private func freeSlot(of delivery: Delivery) {
        inFlight.withLock { _ = $0.removeValue(forKey: delivery.tag) }
        slotSignals.continuation.yield()
    }

    private func logger(for message: TaskMessage) -> Logger {
        var logger = self.logger
        logger[metadataKey: "task.id"] = "\(message.id)"
        logger[metadataKey: "task.name"] = "\(message.name)"
        logger[metadataKey: "task.attempt"] = "\(message.attempt)"
        return logger
    }

    /// Acknowledges a delivery that must not run: its task was revoked or already ran.
    private func skip(_ delivery: Delivery) async {
        defer { freeSlot(of: delivery) }
        do {
            try await Self.completing { try await self.broker.acknowledge(delivery) }
            logger(for: delivery.message).info("skipped a task that was revoked or already ran")
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
            let context = TaskContext(taskID: message.id, attempt: message.attempt, taskName: message.name, logger: logger)
            outcome = .success(try await task.handler.run(message.arguments, context: context))
        } catch {
            outcome = .failure(error)
        }
        running.finished(delivery)
        if Task.isCancelled {
            // Cancelled by its timeout: a failed attempt like any other. Cancelled by shutdown: the drain hands it
            // back; record nothing final.
            guard deadline.hasPassed else { return }
            outcome = .failure(TaskTimeout(timeout: task.handler.timeout))
        }
        do {
            try await settle(delivery, handler: task.handler, outcome: outcome, startedAt: startedAt)
        } catch {
            // Recording failed (database down): leave the message leased; it is delivered again when the lease ends.
            logger(for: message).error("could not record task outcome; it will be delivered again", metadata: ["error": "\(error)"])
        }
    }

    /// Runs bookkeeping that must finish even if the worker is being cancelled, or a recorded outcome could be
    /// left with its message still leased. The unstructured task does not inherit cancellation; its value is
    /// awaited, so it never outlives the caller.
    private static func completing(_ work: @escaping @Sendable () async throws -> Void) async throws {
        try await Task { try await work() }.value
    }

    /// Records the task dead and moves its message to the dead letters.
    private func deadLetter(_ delivery: Delivery, reason: String) async throws {
        try await Self.completing {
            let now = self.clock.now()
            try await self.runs.recordOutcome(
                delivery, state: .dead, workerID: self.id, error: reason, result: nil, startedAt: now, finishedAt: now)
            self.onRecorded?([.dead])
            try await self.broker.deadLetter(delivery, reason: reason)
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
                try await Self.completing {
                    try await self.runs.recordOutcome(
                        delivery, state: .dead, workerID: self.id, error: summary, result: nil, startedAt: startedAt,
                        finishedAt: finishedAt)
                    self.onRecorded?([.dead])
                    try await self.broker.deadLetter(delivery, reason: "failed after \(message.attempt) attempts: \(summary)")
                }
                logger.warning("task dead after its last attempt", metadata: ["error": "\(summary)"])
            }
        }
    }

    /// Records the failed attempt and arranges the next one. With timers, the retry is a durable timer written in the
    /// same transaction as the outcome (and, on the SQL broker, as the acknowledgement); a worker that dies before
    /// acknowledging an external broker's message gets it back, and the stale attempt is dropped when it starts.
    private func scheduleRetry(
        _ delivery: Delivery, as next: TaskMessage, notBefore: Date, error: String, startedAt: Date, finishedAt: Date
    ) async throws {
        guard let timers else {
            try await runs.recordOutcome(
                delivery, state: .retrying, workerID: id, error: error, result: nil, startedAt: startedAt, finishedAt: finishedAt,
                nextAttempt: next.attempt)
            try await broker.retry(delivery, as: next, notBefore: notBefore)
            return
        }
        let timer = DurableTimer(id: "retry:\(next.id):\(next.attempt)", dueAt: notBefore, message: next)
        let sqlBroker = broker as? SQLBroker
        try await runs.recordOutcome(
            delivery, state: .retrying, workerID: id, error: error, result: nil, startedAt: startedAt, finishedAt: finishedAt,
            nextAttempt: next.attempt
        ) { sql in
            try await timers.upsert(timer, at: finishedAt, sql)
            try await sqlBroker?.acknowledge(delivery, sql)
            try await BeatWakeup.notifyOthers(sql)
        }
        onRecorded?([.retrying])
        if sqlBroker == nil { try await broker.acknowledge(delivery) }
        timers.wakeup.notify()
    }

    /// Errors retrying cannot fix: a handler's own ``PluginError`` marked permanent, and outbound requests the SSRF
    /// guard refused or that had no valid URL (a plugin that lets them through unwrapped still fails at once).
    static func isPermanent(_ error: any Error) -> Bool {
        switch error {
        case let error as PluginError: error.isPermanent
        case let error as OutboundError: error.code == .refusedAddress || error.code == .invalidURL
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

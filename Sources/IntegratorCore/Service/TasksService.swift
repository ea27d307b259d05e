// Enqueueing, retrying, revoking and reading tasks: the one durable way in for the API, the CLI, the beat and plugins.
import Foundation
import Logging

/// The task use cases. Every enqueue records the run and stages its message in one write: on the SQL queue the
/// message row itself, with an external broker a row of the outbox that is published right after the commit (and by
/// the beat's outbox flush if this process dies first). So a run is never recorded without something that will
/// publish it, and a message is never published for a run that rolled back.
public struct TasksService: Sendable {
    let database: Database
    let broker: any Broker
    /// The broker when its messages are rows of the store's database (checked once).
    let queue: (any InDatabaseBroker)?
    let runs: TaskRunStore
    let dispatcher: TaskDispatcher
    let registry: PluginRegistry
    let clock: any TimeSource
    /// Concurrent enqueues share one write (one statement on PostgreSQL, a transaction on SQLite): the runs and, on
    /// the SQL queue, their messages; with an external broker, the runs and their outbox rows, published after it.
    private let queuedRuns: GroupCommit<TaskMessage>

    public init(
        database: Database, broker: any Broker, runs: TaskRunStore, dispatcher: TaskDispatcher, registry: PluginRegistry,
        clock: any TimeSource
    ) {
        self.database = database
        self.broker = broker
        let queue = broker.inDatabase
        self.queue = queue
        self.runs = runs
        self.dispatcher = dispatcher
        self.registry = registry
        self.clock = clock
        self.queuedRuns = GroupCommit(maxBatch: 500) { messages in
            try await Self.record(
                messages, runs: runs, queue: queue, dispatcher: dispatcher, database: database, at: clock.now())
        }
    }

    /// A service on `broker` with a dispatcher of its own (tests and tools that enqueue onto a broker of their own).
    public init(
        broker: any Broker, runs: TaskRunStore, registry: PluginRegistry, clock: any TimeSource,
        logger: Logger = Logger(label: "integrator.tasks")
    ) {
        self.init(
            database: runs.database, broker: broker, runs: runs,
            dispatcher: TaskDispatcher(database: runs.database, broker: broker, runs: runs, logger: logger), registry: registry,
            clock: clock)
    }

    /// Writes the runs of `messages` as queued with their messages (the SQL queue) or their outbox rows, then publishes
    /// what went to the outbox.
    private static func record(
        _ messages: [TaskMessage], runs: TaskRunStore, queue: (any InDatabaseBroker)?, dispatcher: TaskDispatcher,
        database: Database, at now: Date
    ) async throws {
        let batch = messages.map { QueuedRun(message: $0) }
        if let queue {
            let runStatements = runs.queuedStatements(batch, at: now)
            try await database.writeTogether(runStatements + queue.insertStatements(messages, availableAt: \.enqueuedAt))
            queue.noteCommittedArrivals()
            return
        }
        let staged = try await database.transaction { sql in try await dispatcher.stage(batch, at: now, sql) }
        // A broker that refuses or cannot be reached leaves them staged (the dispatcher warns once per outage), and
        // the beat's outbox flush publishes them once it is back: the tasks were accepted either way.
        await dispatcher.publishStaged(staged, at: now)
    }

    /// Records the task as queued and hands it to its queue. Returns once the run and its message are stored; with an
    /// external broker also once the broker confirmed it, unless the broker is unreachable, in which case the message
    /// waits in the outbox and the beat publishes it when the broker is back (a warning says so).
    @discardableResult
    public func enqueue(_ message: TaskMessage) async throws -> TaskMessage {
        try await queuedRuns.submit(message)
        return message
    }

    /// Enqueues inside the caller's transaction: the run and its message are stored if and only if the transaction
    /// commits, and an external broker gets the message right after the commit.
    public func enqueue(_ message: TaskMessage, in transaction: StoreTransaction) async throws {
        try await enqueue(contentsOf: [message], in: transaction)
    }

    /// Enqueues many tasks inside the caller's transaction.
    public func enqueue(contentsOf messages: [TaskMessage], in transaction: StoreTransaction) async throws {
        guard !messages.isEmpty else { return }
        let staged = try await dispatcher.stage(messages.map { QueuedRun(message: $0) }, at: clock.now(), transaction.sql)
        let dispatcher = self.dispatcher
        let clock = self.clock
        transaction.afterCommit { await dispatcher.publishStaged(staged, at: clock.now()) }
    }

    /// Enqueues many tasks with one write (their runs and messages or outbox rows commit together), then publishes
    /// them to an external broker with their confirms awaited together.
    public func enqueue(contentsOf messages: [TaskMessage]) async throws {
        guard !messages.isEmpty else { return }
        try await Self.record(
            messages, runs: runs, queue: queue, dispatcher: dispatcher, database: database, at: clock.now())
    }

    /// Enqueues from an API body `{"task", "args", "queue", "priority"}`.
    public func enqueue(_ body: JSONValue) async throws -> TaskMessage {
        var input = try InputObject(body)
        let name = input.string("task", required: true, length: 1...200)
        let arguments = input.raw("args") ?? .object([:])
        let queue = input.string("queue", length: 1...64) ?? IntegrationsService.defaultQueue
        let priority = input.integer("priority", range: IntegrationsService.priorities) ?? IntegrationsService.defaultPriority
        if let name, registry.taskHandler(name) == nil {
            input.addIssue("task", "unknown task '\(name)'; known tasks: \(registry.taskNames.joined(separator: ", "))")
        }
        if let problem = IntegrationsService.problem(withQueueName: queue) { input.addIssue("queue", problem) }
        try input.finish()
        guard let name else { throw ValidationFailure(input.issues) }
        return try await enqueue(
            TaskMessage(name: name, arguments: arguments, queue: queue, priority: priority, enqueuedAt: clock.now()))
    }

    public func get(id: String) async throws -> (TaskRun, [TaskAttempt]) {
        guard Identifier.isWellFormed(id), let run = try await runs.find(id: id) else {
            throw ServiceError(.notFound, "no task with id \(id)")
        }
        return (run, try await runs.attempts(taskID: id))
    }

    public func list(_ filter: TaskRunFilter, page: PageRequest) async throws -> Page<TaskRun> {
        try await runs.list(filter, page: page)
    }

    /// Runs a failed or dead task again as a new attempt with the same id. One transaction: the run's state is checked
    /// under a lock, its dead message (on the SQL queue) removed, and the new attempt recorded and staged, so two
    /// retries at once make one new attempt and a crash leaves either the old state or the new one.
    public func retry(id: String) async throws -> TaskRun {
        _ = try await get(id: id)
        let now = clock.now()
        let dispatcher = self.dispatcher
        let runs = self.runs
        let removesDeadMessage = queue != nil
        let staged = try await database.withTransaction { transaction in
            guard let run = try await runs.lockedForChange(id: id, transaction) else {
                throw ServiceError(.notFound, "no task with id \(id)")
            }
            guard run.state == .failed || run.state == .dead else {
                throw ServiceError(.conflict, "only failed or dead tasks can be retried; this one is \(run.state.rawValue)")
            }
            let next = TaskMessage(
                id: run.id, name: run.name, arguments: run.arguments, queue: run.queue, priority: run.priority,
                attempt: run.attempt + 1, enqueuedAt: now, integrationID: run.integrationID, scheduleID: run.scheduleID)
            if removesDeadMessage { try await runs.removeDeadMessages(taskID: id, transaction) }
            return try await dispatcher.stage([QueuedRun(message: next)], at: now, transaction.sql)
        }
        await dispatcher.publishStaged(staged, at: clock.now())
        return try await get(id: id).0
    }

    /// Revokes a task no worker has started: its pending message (queue row, retry timer or outbox row) is removed and
    /// the run marked revoked in one transaction. On RabbitMQ a published message cannot be taken back; the run is
    /// marked revoked and the worker that receives it acknowledges it without running it.
    public func revoke(id: String) async throws {
        _ = try await get(id: id)
        let now = clock.now()
        let runs = self.runs
        let inDatabase = queue != nil
        try await database.withTransaction { transaction in
            guard let run = try await runs.lockedForChange(id: id, transaction) else {
                throw ServiceError(.notFound, "no task with id \(id)")
            }
            let notStarted = ServiceError(
                .conflict, "only tasks that have not started can be revoked; this one is \(run.state.rawValue)")
            guard TaskState.waiting.contains(run.state) else { throw notStarted }
            let removed = try await runs.removePendingMessages(taskID: id, at: now, includingQueue: inDatabase, transaction)
            // On the SQL queue a queued task whose message is leased is running (its start may not be recorded yet).
            if inDatabase, !removed { throw notStarted }
            try await runs.markRevoked(taskID: id, at: now, transaction)
        }
    }

    /// Drops every task of `queue` that has not started: its waiting messages (ready, delayed, retries, outbox) leave
    /// the broker and its runs are marked revoked, so a copy a worker meets later is skipped. Tasks running now, and
    /// dead letters, stay.
    public func purge(queue name: String) async throws -> QueuePurge {
        let now = clock.now()
        let runs = self.runs
        let purge: QueuePurge
        if let queue {
            purge = try await database.withTransaction { transaction in
                let removed = try await queue.removeWaiting(queue: name, at: now, transaction.sql)
                let pending = try await runs.removePendingMessages(queue: name, transaction)
                let revoked = try await runs.markRevoked(taskIDs: removed + pending, at: now, transaction)
                return QueuePurge(queue: name, messages: removed.count, revoked: revoked)
            }
            if purge.messages == 0, purge.revoked == 0, try await broker.stats(of: name) == nil {
                throw try await unknownQueue(name)
            }
        } else {
            // Runs first: a message published while the broker purges is then skipped by the worker that gets it.
            let revoked = try await database.withTransaction { transaction in
                _ = try await runs.removePendingMessages(queue: name, transaction)
                return try await runs.markRevoked(queue: name, at: now, transaction)
            }
            let messages = try await broker.purge(queue: name)
            if messages == nil, revoked == 0 { throw try await unknownQueue(name) }
            purge = QueuePurge(queue: name, messages: messages ?? 0, revoked: revoked)
        }
        return purge
    }

    private func unknownQueue(_ name: String) async throws -> ServiceError {
        let known = try await broker.stats().map(\.queue).sorted()
        let list = known.isEmpty ? "there are none yet" : "known queues: " + known.joined(separator: ", ")
        return ServiceError(.notFound, "no queue named '\(name)' (\(list))")
    }

    /// One queue's counts from the broker, or `nil` when it has no such queue.
    public func queue(named name: String) async throws -> QueueStats? { try await broker.stats(of: name) }

    /// Per-queue counts from the broker.
    public func queues() async throws -> [QueueStats] { try await broker.stats() }

    /// Workers whose last heartbeat is at most 30 seconds old.
    public func workers() async throws -> [WorkerInfo] {
        try await runs.liveWorkers(since: clock.now().addingTimeInterval(-30))
    }
}

/// What purging a queue dropped.
public struct QueuePurge: Sendable, Equatable {
    public let queue: String
    /// Messages removed from the broker.
    public let messages: Int
    /// Runs marked revoked.
    public let revoked: Int
}

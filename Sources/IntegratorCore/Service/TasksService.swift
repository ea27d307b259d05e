// Enqueueing, retrying, revoking and reading tasks, shared by the API, the CLI and (later) the beat.
import Foundation

/// The task use cases.
public struct TasksService: Sendable {
    let broker: any Broker
    let runs: TaskRunStore
    let registry: PluginRegistry
    let clock: any TimeSource
    /// Concurrent enqueues share one write (one statement on PostgreSQL, a transaction on SQLite). On the SQL broker
    /// it holds the runs and their messages (atomic, as ``TaskDispatcher`` stages them); with an external broker, the
    /// runs, and each message is published after it.
    private let queuedRuns: GroupCommit<TaskMessage>

    public init(broker: any Broker, runs: TaskRunStore, registry: PluginRegistry, clock: any TimeSource) {
        self.broker = broker
        self.runs = runs
        self.registry = registry
        self.clock = clock
        let queue = broker as? SQLBroker
        self.queuedRuns = GroupCommit(maxBatch: 500) { messages in
            try await Self.recordQueued(messages, runs: runs, queue: queue, at: clock.now())
        }
    }

    /// Writes the runs of `messages` as queued and, on the SQL broker, the messages themselves, in one write.
    private static func recordQueued(_ messages: [TaskMessage], runs: TaskRunStore, queue: SQLBroker?, at now: Date) async throws {
        let runStatements = runs.queuedStatements(messages.map { QueuedRun(message: $0) }, at: now)
        let messageStatements = queue?.insertStatements(messages, availableAt: \.enqueuedAt) ?? []
        try await runs.database.writeTogether(runStatements + messageStatements)
    }

    /// Records the task as queued and publishes it. On the SQL broker both happen in one transaction. Otherwise the
    /// message is published after the run was recorded; if publishing fails the run is marked failed and the error thrown.
    @discardableResult
    public func enqueue(_ message: TaskMessage) async throws -> TaskMessage {
        try await queuedRuns.submit(message)
        if !(broker is SQLBroker) { try await publish(message) }
        return message
    }

    /// Enqueues many tasks with one write: their runs (and, on the SQL broker, their messages, atomically) go out
    /// together; with an external broker every message is then published, with their confirms awaited together.
    /// Throws the first failure after every publish was tried; the runs whose message was not accepted are marked failed.
    public func enqueue(contentsOf messages: [TaskMessage]) async throws {
        guard !messages.isEmpty else { return }
        let queue = broker as? SQLBroker
        try await Self.recordQueued(messages, runs: runs, queue: queue, at: clock.now())
        if queue != nil { return }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for message in messages { group.addTask { try await self.publish(message) } }
            try await group.waitForAll()
        }
    }

    /// Publishes to an external broker a message whose run is recorded; a refusal marks the run failed.
    private func publish(_ message: TaskMessage) async throws {
        do {
            try await broker.publish(message)
        } catch {
            let now = clock.now()
            try? await runs.recordOutcome(
                Delivery(message: message, tag: "", deliveries: 0), state: .failed, error: "could not publish: \(error)", result: nil,
                startedAt: now, finishedAt: now)
            throw ServiceError(.unavailable, "the broker did not accept the task")
        }
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

    /// Runs a failed or dead task again as a new attempt with the same id.
    public func retry(id: String) async throws -> TaskRun {
        let (run, _) = try await get(id: id)
        guard run.state == .failed || run.state == .dead else {
            throw ServiceError(.conflict, "only failed or dead tasks can be retried; this one is \(run.state.rawValue)")
        }
        let next = TaskMessage(
            id: run.id, name: run.name, arguments: run.arguments, queue: run.queue, priority: run.priority,
            attempt: run.attempt + 1, enqueuedAt: clock.now(), integrationID: run.integrationID, scheduleID: run.scheduleID)
        try await runs.recordQueued(next, at: clock.now())
        if try await !broker.requeueDead(taskID: run.id, as: next) {
            try await broker.publish(next)
        }
        return try await get(id: id).0
    }

    /// Revokes a task no worker has started.
    public func revoke(id: String) async throws {
        let (run, _) = try await get(id: id)
        guard run.state == .queued || run.state == .retrying, try await broker.revoke(taskID: id) else {
            throw ServiceError(.conflict, "only tasks that have not started can be revoked; this one is \(run.state.rawValue)")
        }
        try await runs.recordRevoked(taskID: id, at: clock.now())
    }

    public func queues() async throws -> [QueueStats] { try await broker.stats() }

    /// Workers whose last heartbeat is at most 30 seconds old.
    public func workers() async throws -> [WorkerInfo] {
        try await runs.liveWorkers(since: clock.now().addingTimeInterval(-30))
    }
}

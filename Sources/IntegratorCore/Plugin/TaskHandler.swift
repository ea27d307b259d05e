// How a plugin declares work that runs on workers, addressed by task name.
import Logging

/// Runs tasks of one name. Handlers must be idempotent: a task runs at least once and may run again after a crash.
public protocol TaskHandler: Sendable {
    /// The task name messages carry, such as `core.noop` or `integration.fetch`.
    var name: String { get }
    /// How failures are retried. Default: ``RetryPolicy/default`` (3 attempts, backoff from 1 s up to 5 min).
    var retryPolicy: RetryPolicy { get }
    /// How long one attempt may take before it is cancelled and counted as failed. Default: 5 minutes.
    var timeout: Duration { get }
    /// Runs one task and returns a small JSON summary that is stored with the run.
    /// Throw ``PluginError`` with `permanent: true` for errors that retrying cannot fix.
    func run(_ arguments: JSONValue, context: TaskContext) async throws -> JSONValue
}

extension TaskHandler {
    public var retryPolicy: RetryPolicy { .default }
    public var timeout: Duration { .seconds(300) }
}

/// A task handler whose timers the beat can fire itself, inside the transaction that takes them, instead of queueing a
/// task per timer for a worker: that saves each timer a queue row, a claim, a run record and an acknowledgement, and
/// the wait between the beat and a worker. For short work that only touches the database (take a row, store what comes
/// next, enqueue the slow part), such as a scheduled message handing its delivery to the webhooks plugin.
///
/// The beat calls ``fire(dueTimers:in:environment:)`` with every due timer of the handler's task in one batch (up to
/// ``BeatOptions/batchSize``). If it throws, the beat's whole batch is rolled back and taken again with those timers
/// queued as ordinary tasks, which run ``TaskHandler/run(_:context:)`` with the handler's retries (and so for every
/// batch until ``BeatOptions/retryInterval`` has passed, when the beat tries the handler again); so the method must do
/// what `run` does for the same arguments, and a timer is handled by one or the other, never lost. The method may be
/// called again for the same timers after a rollback. Timers fired here leave no task run: record what they did in
/// the plugin's own tables.
public protocol BeatFiredTaskHandler: TaskHandler {
    /// Does the work of `dueTimers`' tasks in `transaction` (the beat's) and returns the timers it leaves to be queued
    /// as tasks (those it cannot handle here, such as arguments it does not understand, whose task run then records
    /// the error). Keep it short: the beat's other timers wait for it.
    func fire(dueTimers: [DurableTimer], in transaction: StoreTransaction, environment: PluginEnvironment) async throws
        -> [DurableTimer]
}

/// What a running task knows about itself.
public struct TaskContext: Sendable {
    /// Stable across redeliveries and retries.
    public var taskID: String
    /// 1 for the first try.
    public var attempt: Int
    /// The task name the message carried.
    public var taskName: String
    /// What the process offers plugin code: the database, outbound HTTP, credentials, enqueueing, timers, the clock.
    /// `nil` only for a worker built by hand without a runtime (some engine tests); see ``requireEnvironment()``.
    public var environment: PluginEnvironment?
    private var workerLogger: Logger

    /// Logs with the task's id, name and attempt as metadata. The metadata is added when the logger is read, so a
    /// task that does not log costs nothing here.
    public var logger: Logger {
        get {
            var logger = workerLogger
            logger[metadataKey: "task.id"] = "\(taskID)"
            if !taskName.isEmpty { logger[metadataKey: "task.name"] = "\(taskName)" }
            logger[metadataKey: "task.attempt"] = "\(attempt)"
            return logger
        }
        set { workerLogger = newValue }
    }

    public init(taskID: String, attempt: Int, taskName: String = "", environment: PluginEnvironment? = nil, logger: Logger) {
        self.taskID = taskID
        self.attempt = attempt
        self.taskName = taskName
        self.environment = environment
        self.workerLogger = logger
    }

    /// The environment, or a permanent error for a handler run by a worker that has none.
    public func requireEnvironment() throws -> PluginEnvironment {
        guard let environment else {
            throw PluginError("task '\(taskName)' needs a worker started by a runtime (it has no plugin environment)", permanent: true)
        }
        return environment
    }
}

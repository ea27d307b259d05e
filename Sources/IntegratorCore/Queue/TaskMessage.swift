// What travels on a queue: one task, its arguments, and where it came from.
import Foundation
import SQLKit

/// A task as published to a queue. `id` stays the same across redeliveries and retries; `attempt` counts tries.
public struct TaskMessage: Sendable, Equatable {
    public var id: String
    public var name: String
    public var arguments: JSONValue
    public var queue: String
    /// 0–9, 9 runs first.
    public var priority: Int
    /// 1 for the first try.
    public var attempt: Int
    public var enqueuedAt: Date
    public var integrationID: String?
    public var scheduleID: String?
    /// Overrides the handler's ``RetryPolicy/maxAttempts`` (an integration's own setting travels here).
    public var maxAttempts: Int?

    public init(
        id: String = Identifier.make(), name: String, arguments: JSONValue = .object([:]), queue: String = "default",
        priority: Int = 5, attempt: Int = 1, enqueuedAt: Date, integrationID: String? = nil, scheduleID: String? = nil,
        maxAttempts: Int? = nil
    ) {
        self.maxAttempts = maxAttempts
        self.id = id
        self.name = name
        self.arguments = arguments
        self.queue = queue
        self.priority = priority
        self.attempt = attempt
        self.enqueuedAt = enqueuedAt
        self.integrationID = integrationID
        self.scheduleID = scheduleID
    }
}

/// A message handed to a worker, with what the broker needs to settle it.
public struct Delivery: Sendable {
    public var message: TaskMessage
    /// The broker's own handle (a queue row id, an AMQP delivery tag).
    public var tag: String
    /// How many times this attempt has been delivered (more than 1 after a worker died holding it).
    public var deliveries: Int
    /// The task's run as the claim found it, when the broker read it in the claim's own statement (the SQL queue on
    /// PostgreSQL); ``TaskRunStore/startable(_:)`` then decides without a read of its own. `nil`: not read.
    public var runAtClaim: RunAtClaim?

    public init(message: TaskMessage, tag: String, deliveries: Int, runAtClaim: RunAtClaim? = nil) {
        self.message = message
        self.tag = tag
        self.deliveries = deliveries
        self.runAtClaim = runAtClaim
    }
}

/// What a claim found of a delivery's task run.
public enum RunAtClaim: Sendable, Equatable {
    /// No run is recorded for the task.
    case missing
    /// The run's state (`nil` when it is not one this version knows) and attempt.
    case found(state: TaskState?, attempt: Int)
}

/// Counts for one queue.
public struct QueueStats: Sendable, Equatable {
    public var queue: String
    public var ready: Int
    public var inFlight: Int
    public var dead: Int
    /// Ready but waiting for a retry delay to pass.
    public var delayed: Int

    public init(queue: String, ready: Int, inFlight: Int, dead: Int, delayed: Int) {
        self.queue = queue
        self.ready = ready
        self.inFlight = inFlight
        self.dead = dead
        self.delayed = delayed
    }
}

extension TaskMessage {
    /// A message from a row of any table that stores one (`task_queue`, `task_outbox`, `timers`): the same column
    /// names everywhere, except where the enqueue time is kept.
    static func decode(_ row: any SQLRow, enqueuedAtColumn: String = "enqueued_at") throws -> TaskMessage {
        TaskMessage(
            id: try row.decode(column: "task_id", as: String.self),
            name: try row.decode(column: "task_name", as: String.self),
            arguments: try row.decodeJSON(column: "arguments"),
            queue: try row.decode(column: "queue", as: String.self),
            priority: try row.decode(column: "priority", as: Int.self),
            attempt: try row.decode(column: "attempt", as: Int.self),
            enqueuedAt: try row.decode(column: enqueuedAtColumn, as: Date.self),
            integrationID: try row.decode(column: "integration_id", as: String?.self),
            scheduleID: try row.decode(column: "schedule_id", as: String?.self),
            maxAttempts: try row.decode(column: "max_attempts", as: Int?.self))
    }

    /// PostgreSQL rows of `messages`, one array parameter per column (see TaskRunStore+Batches.swift):
    /// `unnest(…) AS v(task_id, task_name, arguments, queue, priority, attempt, enqueued_at, integration_id, schedule_id,
    /// max_attempts, <extra>)`. Arrays cannot hold NULL, so absent ids come as '' and an absent attempt limit as 0 (a
    /// limit is at least 1): select them through NULLIF.
    /// - Parameter extra: more columns, each a name and its array parameter (with its cast), one element per message.
    static func unnested(_ messages: [TaskMessage], extra: [(name: String, array: SQLQueryString)] = []) -> SQLQueryString {
        let arrays: [SQLQueryString] = [
            "\(bind: messages.map(\.id))::text[]", "\(bind: messages.map(\.name))::text[]",
            "\(bind: messages.map { $0.arguments.encodedString() })::text[]", "\(bind: messages.map(\.queue))::text[]",
            "\(bind: messages.map(\.priority))::int8[]", "\(bind: messages.map(\.attempt))::int8[]",
            "\(bind: messages.map(\.enqueuedAt))::timestamptz[]", "\(bind: messages.map { $0.integrationID ?? "" })::text[]",
            "\(bind: messages.map { $0.scheduleID ?? "" })::text[]", "\(bind: messages.map { $0.maxAttempts ?? 0 })::int8[]",
        ]
        let names = [
            "task_id", "task_name", "arguments", "queue", "priority", "attempt", "enqueued_at", "integration_id", "schedule_id",
            "max_attempts",
        ]
        return """
            unnest(\((arrays + extra.map(\.array)).joined(separator: ", "))) AS v(\(unsafeRaw: (names + extra.map(\.name)).joined(separator: ", ")))
            """
    }
}

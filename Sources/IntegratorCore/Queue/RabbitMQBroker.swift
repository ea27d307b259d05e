// The RabbitMQ broker: durable priority queues, persistent messages with publisher confirms, manual acks,
// a prefetch equal to the worker's slots, and per-queue dead-letter and delay queues.
import Foundation
import Logging
import Synchronization

/// A broker on RabbitMQ. One connection publishes (and waits for confirms), another consumes; each has its own
/// thread. Both reconnect with backoff after the server restarts and declare their queues again.
///
/// For every task queue `q` it declares `q` (with `x-max-priority`), `q.dead` (dead letters) and `q.delay`
/// (retries wait there with a per-message expiration, then dead-letter back into `q`).
public final class RabbitMQBroker: Broker {
    let publisher: AMQPConnection
    let consumer: AMQPConnection
    let maxPriority: Int
    let runs: TaskRunStore
    let clock: any TimeSource
    private let declaredQueues = Mutex<Set<String>>([])
    private let consumedQueues = Mutex<[String]?>(nil)

    /// - Parameters:
    ///   - url: `amqp://user:password@host:port/vhost`.
    ///   - maxPriority: `x-max-priority` of the task queues (priorities above it are capped by RabbitMQ).
    public init(url: Secret, runs: TaskRunStore, clock: any TimeSource = SystemTimeSource(), maxPriority: Int = 10, logger: Logger)
        throws(ConfigurationError)
    {
        let endpoint = try AMQPEndpoint(url: url)
        self.publisher = AMQPConnection(role: .publisher, endpoint: endpoint, logger: logger)
        self.consumer = AMQPConnection(role: .consumer, endpoint: endpoint, logger: logger)
        self.maxPriority = maxPriority
        self.runs = runs
        self.clock = clock
    }

    /// Closes both connections; unacknowledged messages go back to their queues.
    public func shutdown() {
        publisher.shutdown()
        consumer.shutdown()
    }

    private func ensureDeclared(_ queue: String, on connection: AMQPConnection) async throws {
        let key = "\(connection.role == .publisher ? "p" : "c"):\(queue)"
        if declaredQueues.withLock({ $0.contains(key) }) { return }
        try await connection.declare(AMQPQueueSpec(name: queue, maxPriority: maxPriority))
        try await connection.declare(AMQPQueueSpec(name: "\(queue).dead", maxPriority: 0))
        try await connection.declare(AMQPQueueSpec(name: "\(queue).delay", maxPriority: 0, deadLetterTo: queue))
        declaredQueues.withLock { _ = $0.insert(key) }
    }

    public func publish(_ message: TaskMessage) async throws {
        try await ensureDeclared(message.queue, on: publisher)
        try await publisher.publish(queue: message.queue, body: Self.encode(message), priority: message.priority)
    }

    public func claim(queues: [String], limit: Int, workerID: String, leaseUntil: Date) async throws -> [Delivery] {
        let current = consumedQueues.withLock { $0 }
        if current != queues.sorted() {
            for queue in queues { try await ensureDeclared(queue, on: consumer) }
            // The first claim asks for every free slot: that is the worker's concurrency, and so the prefetch.
            try await consumer.consume(queues: queues, prefetch: limit)
            consumedQueues.withLock { $0 = queues.sorted() }
        }
        let received = await consumer.take(limit: limit, wait: .milliseconds(50))
        return received.compactMap { raw in
            guard let message = Self.decode(raw.body) else {
                // Not ours to run: park it in the first queue's dead letters rather than looping on it.
                consumer.nack(generation: raw.generation, tag: raw.tag, requeue: false)
                return nil
            }
            return Delivery(message: message, tag: "\(raw.generation):\(raw.tag)", deliveries: raw.redelivered ? 2 : 1)
        }
    }

    private func parseTag(_ tag: String) -> (Int, UInt64)? {
        let parts = tag.split(separator: ":")
        guard parts.count == 2, let generation = Int(parts[0]), let value = UInt64(parts[1]) else { return nil }
        return (generation, value)
    }

    public func acknowledge(_ delivery: Delivery) async throws {
        guard let (generation, tag) = parseTag(delivery.tag) else { return }
        consumer.ack(generation: generation, tag: tag)
    }

    public func acknowledge(_ deliveries: [Delivery]) async throws {
        var tagsByGeneration: [Int: [UInt64]] = [:]
        for delivery in deliveries {
            guard let (generation, tag) = parseTag(delivery.tag) else { continue }
            tagsByGeneration[generation, default: []].append(tag)
        }
        for (generation, tags) in tagsByGeneration { consumer.ack(generation: generation, tags: tags) }
    }

    public func retry(_ delivery: Delivery, as next: TaskMessage, notBefore: Date) async throws {
        let delay = notBefore.timeIntervalSince(clock.now())
        if delay < 0.001 {
            try await publisher.publish(queue: next.queue, body: Self.encode(next), priority: next.priority)
        } else {
            try await ensureDeclared(next.queue, on: publisher)
            // Messages leave a queue only from its head, so a long delay can hold back a shorter one behind it
            // until durable timers take over retries.
            try await publisher.publish(
                queue: "\(next.queue).delay", body: Self.encode(next), priority: next.priority,
                expiration: String(Int((delay * 1000).rounded(.up))))
        }
        try await acknowledge(delivery)
    }

    public func deadLetter(_ delivery: Delivery, reason: String) async throws {
        try await ensureDeclared(delivery.message.queue, on: publisher)
        var body = Self.object(delivery.message)
        body["dead_reason"] = .string(String(reason.prefix(1000)))
        try await publisher.publish(
            queue: "\(delivery.message.queue).dead", body: Array(JSONValue.object(body).encodedString().utf8), priority: 0)
        try await acknowledge(delivery)
    }

    public func release(_ deliveries: [Delivery]) async throws {
        for delivery in deliveries {
            guard let (generation, tag) = parseTag(delivery.tag) else { continue }
            consumer.nack(generation: generation, tag: tag, requeue: true)
        }
    }

    /// RabbitMQ keeps unacknowledged messages for as long as the consuming connection lives; heartbeats keep it alive.
    public func extendLeases(workerID: String, leaseUntil: Date) async throws {}

    /// Messages cannot be removed from the middle of a RabbitMQ queue. The run is marked revoked instead, and a
    /// worker that receives the message acknowledges it without running it.
    public func revoke(taskID: String) async throws -> Bool { true }

    /// Dead letters are not addressable by task id here; the caller publishes a fresh copy.
    public func requeueDead(taskID: String, as next: TaskMessage) async throws -> Bool { false }

    /// Ready, dead and delayed counts come from RabbitMQ; in flight is what live workers last reported running from
    /// the queue (RabbitMQ tells unacknowledged counts only through its management plugin).
    public func stats() async throws -> [QueueStats] {
        var result: [QueueStats] = []
        let workers = try await runs.liveWorkers(since: clock.now().addingTimeInterval(-30))
        for queue in try await runs.knownQueues() {
            let ready = try await publisher.count(queue)
            let dead = try await publisher.count("\(queue).dead")
            let delayed = try await publisher.count("\(queue).delay")
            let inFlight = workers.reduce(0) { $0 + ($1.busyByQueue[queue] ?? 0) }
            result.append(QueueStats(queue: queue, ready: ready, inFlight: inFlight, dead: dead, delayed: delayed))
        }
        return result
    }

    static func object(_ message: TaskMessage) -> [String: JSONValue] {
        [
            "id": .string(message.id), "name": .string(message.name), "args": message.arguments, "queue": .string(message.queue),
            "priority": .number(Double(message.priority)), "attempt": .number(Double(message.attempt)),
            "enqueued_at": .number(message.enqueuedAt.timeIntervalSince1970),
            "integration": message.integrationID.map(JSONValue.string) ?? .null,
            "schedule": message.scheduleID.map(JSONValue.string) ?? .null,
            "max_attempts": message.maxAttempts.map { .number(Double($0)) } ?? .null,
        ]
    }

    static func encode(_ message: TaskMessage) -> [UInt8] {
        Array(JSONValue.object(object(message)).encodedString().utf8)
    }

    static func decode(_ body: [UInt8]) -> TaskMessage? {
        guard let value = try? JSONValue.parse(body), let id = value["id"]?.stringValue, let name = value["name"]?.stringValue,
            let queue = value["queue"]?.stringValue, let priority = value["priority"]?.intValue,
            let attempt = value["attempt"]?.intValue, let enqueued = value["enqueued_at"]?.doubleValue
        else { return nil }
        return TaskMessage(
            id: id, name: name, arguments: value["args"] ?? .object([:]), queue: queue, priority: priority, attempt: attempt,
            enqueuedAt: Date(timeIntervalSince1970: enqueued), integrationID: value["integration"]?.stringValue,
            scheduleID: value["schedule"]?.stringValue, maxAttempts: value["max_attempts"]?.intValue)
    }
}

// The RabbitMQ broker: durable priority queues, persistent mandatory messages with publisher confirms, manual acks,
// a prefetch equal to the worker's slots, per-queue dead-letter and delay queues, and delivery counts in the store.
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// A broker on RabbitMQ. One connection publishes (and waits for confirms), another consumes, and a third, opened
/// for the first statistics request, inspects queues; each has its own thread. They reconnect with backoff after the
/// server restarts and declare their queues again.
///
/// For every task queue `q` it declares `q` (with `x-max-priority`, dead-lettering to `q.dead`), `q.dead` (dead
/// letters: tasks that ran out of attempts, and messages a worker cannot read) and `q.delay` (retries wait there
/// with a per-message expiration, then dead-letter back into `q`).
///
/// Run it as a service (see ``BrokerService``), or call ``stop()`` when done: either way pending acknowledgements go
/// out before the connections close.
public final class RabbitMQBroker: BrokerService {
    let publisher: AMQPConnection
    let consumer: AMQPConnection
    let endpoint: AMQPEndpoint
    let maxPriority: Int
    /// How long a publish waits for RabbitMQ's confirm unless its caller sets a deadline.
    public let publishTimeout: Duration
    let runs: TaskRunStore
    let deliveryCounts: DeliveryCountStore
    let queueNames: QueueNameStore
    let clock: any TimeSource
    let logger: Logger
    private let inspector = Mutex<(connection: AMQPConnection?, stopped: Bool)>((nil, false))
    /// Queues declared on each connection, as "p:<queue>" (publisher) and "c:<queue>" (consumer).
    private let declaredQueues = Mutex<Set<String>>([])
    private let consumedQueues = Mutex<[String]?>(nil)
    private let lastPrune = Mutex<ContinuousClock.Instant?>(nil)

    /// - Parameters:
    ///   - url: `amqp://user:password@host:port/vhost`.
    ///   - maxPriority: `x-max-priority` of the task queues (priorities above it are capped by RabbitMQ).
    ///   - publishTimeout: how long ``publish(_:)`` waits for RabbitMQ to confirm a message (a memory or disk alarm
    ///     holds confirms back) before it fails.
    public init(
        url: Secret, runs: TaskRunStore, clock: any TimeSource = SystemTimeSource(), maxPriority: Int = 10,
        publishTimeout: Duration = .seconds(10), logger: Logger
    ) throws(ConfigurationError) {
        let endpoint = try AMQPEndpoint(url: url)
        self.endpoint = endpoint
        self.publisher = AMQPConnection(role: .publisher, endpoint: endpoint, logger: logger)
        self.consumer = AMQPConnection(role: .consumer, endpoint: endpoint, logger: logger)
        self.maxPriority = maxPriority
        self.publishTimeout = publishTimeout
        self.runs = runs
        self.deliveryCounts = DeliveryCountStore(database: runs.database)
        self.queueNames = QueueNameStore(database: runs.database)
        self.clock = clock
        self.logger = logger
    }

    // MARK: Lifecycle

    /// Waits for the service group's graceful shutdown, then stops (see ``stop()``).
    public func run() async throws {
        try? await gracefulShutdown()
        await stop()
    }

    /// Begins closing the connections and returns at once: acknowledgements already handed over still go out,
    /// unacknowledged messages go back to their queues. ``stop()`` also waits until the threads have ended.
    public func shutdown() {
        publisher.shutdown()
        consumer.shutdown()
        let inspector = inspector.withLock { state -> AMQPConnection? in
            state.stopped = true
            return state.connection
        }
        inspector?.shutdown()
    }

    /// Closes the connections, flushing pending acknowledgements first, and returns once their threads have ended.
    public func stop() async {
        shutdown()
        await publisher.waitUntilFinished()
        await consumer.waitUntilFinished()
        if let inspector = inspector.withLock({ $0.connection }) { await inspector.waitUntilFinished() }
    }

    /// Why RabbitMQ blocks publishing right now (a memory or disk alarm), or `nil`.
    public var publishingBlockedReason: String? { publisher.blockedReason }

    // MARK: Publishing

    private func specs(for queue: String) -> [AMQPQueueSpec] {
        [
            AMQPQueueSpec(name: "\(queue).dead", maxPriority: 0),
            AMQPQueueSpec(name: queue, maxPriority: maxPriority, deadLetterTo: "\(queue).dead"),
            AMQPQueueSpec(name: "\(queue).delay", maxPriority: 0, deadLetterTo: queue),
        ]
    }

    private func declaredKey(_ queue: String, on connection: AMQPConnection) -> String {
        "\(connection.role == .publisher ? "p" : "c"):\(queue)"
    }

    private func ensureDeclared(_ queue: String, on connection: AMQPConnection, deadline: ContinuousClock.Instant) async throws {
        let key = declaredKey(queue, on: connection)
        if declaredQueues.withLock({ $0.contains(key) }) { return }
        for spec in specs(for: queue) { try await connection.declare(spec, deadline: deadline) }
        declaredQueues.withLock { _ = $0.insert(key) }
    }

    /// Publishes with the broker's ``publishTimeout``.
    public func publish(_ message: TaskMessage) async throws {
        try await publish(message, timeout: publishTimeout)
    }

    /// Publishes and returns once RabbitMQ confirmed the message. Fails with an ``AMQPError`` of kind
    /// ``AMQPError/Kind/timeout`` when `timeout` passes first (a memory or disk alarm blocks publishing), of kind
    /// ``AMQPError/Kind/unroutable`` when no queue took it; cancelling the caller ends the wait at once.
    public func publish(_ message: TaskMessage, timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        try await ensureDeclared(message.queue, on: publisher, deadline: deadline)
        try await send(queue: message.queue, body: Self.encode(message), message: message, deadline: deadline, timeout: timeout)
    }

    private func send(
        queue: String, body: [UInt8], message: TaskMessage, expiration: String? = nil, deadline: ContinuousClock.Instant,
        timeout: Duration
    ) async throws {
        do {
            try await publisher.publish(
                queue: queue, body: body, priority: message.priority, expiration: expiration, messageID: message.id, deadline: deadline,
                timeout: timeout)
        } catch let error as AMQPError where error.kind == .unroutable {
            // Someone deleted the queue behind our back: declare it again before the next publish.
            declaredQueues.withLock { _ = $0.remove(declaredKey(message.queue, on: publisher)) }
            throw error
        }
    }

    public func retry(_ delivery: Delivery, as next: TaskMessage, notBefore: Date) async throws {
        let deadline = ContinuousClock.now + publishTimeout
        let delay = notBefore.timeIntervalSince(clock.now())
        try await ensureDeclared(next.queue, on: publisher, deadline: deadline)
        if delay < 0.001 {
            try await send(queue: next.queue, body: Self.encode(next), message: next, deadline: deadline, timeout: publishTimeout)
        } else {
            // Messages leave a queue only from its head, so a long delay can hold back a shorter one behind it
            // until durable timers take over retries.
            try await send(
                queue: "\(next.queue).delay", body: Self.encode(next), message: next, expiration: String(Int((delay * 1000).rounded(.up))),
                deadline: deadline, timeout: publishTimeout)
        }
        try await acknowledge(delivery)
    }

    public func deadLetter(_ delivery: Delivery, reason: String) async throws {
        let deadline = ContinuousClock.now + publishTimeout
        try await ensureDeclared(delivery.message.queue, on: publisher, deadline: deadline)
        var body = Self.object(delivery.message)
        body["dead_reason"] = .string(String(reason.prefix(1000)))
        var parked = delivery.message
        parked.priority = 0
        try await send(
            queue: "\(delivery.message.queue).dead", body: Array(JSONValue.object(body).encodedString().utf8), message: parked,
            deadline: deadline, timeout: publishTimeout)
        try await acknowledge(delivery)
    }

    // MARK: Consuming

    /// RabbitMQ pushes messages to the consumer as they come: an idle worker waits for the first one instead of
    /// sleeping out its poll pause.
    public func waitForMessages(after mark: UInt64, upTo limit: Duration) async -> Bool {
        await consumer.waitForDeliveries(upTo: limit)
    }

    public func claim(queues: [String], limit: Int, workerID: String, leaseUntil: Date) async throws -> [Delivery] {
        let current = consumedQueues.withLock { $0 }
        if current != queues.sorted() {
            let deadline = ContinuousClock.now + publishTimeout
            for queue in queues { try await ensureDeclared(queue, on: consumer, deadline: deadline) }
            // The first claim asks for every free slot: that is the worker's concurrency, and so the prefetch.
            try await consumer.consume(queues: queues, prefetch: limit, deadline: deadline)
            consumedQueues.withLock { $0 = queues.sorted() }
        }
        let received = await consumer.take(limit: limit, wait: .milliseconds(50))
        var readable: [AMQPDelivery] = []
        var deliveries: [Delivery] = []
        var redelivered: [Int] = []
        for raw in received {
            guard let message = Self.decode(raw.body) else {
                // Not a task: rejected without requeueing, RabbitMQ moves it to the queue's dead letters.
                consumer.nack(generation: raw.generation, tag: raw.tag, requeue: false)
                logger.warning(
                    "a message that is not a task was moved to the dead letters",
                    metadata: ["amqp.queue": "\(raw.queue)", "amqp.dead_letter_queue": "\(raw.queue).dead", "amqp.bytes": "\(raw.body.count)"])
                continue
            }
            if raw.redelivered { redelivered.append(deliveries.count) }
            readable.append(raw)
            deliveries.append(Delivery(message: message, tag: "\(raw.generation):\(raw.tag)", deliveries: 1))
        }
        guard !redelivered.isEmpty else { return deliveries }
        // A redelivery means a worker held the message and ended without settling it (perhaps the task killed it):
        // count it before the task runs again, so the worker's max-deliveries guard sees it.
        let keys = redelivered.map { DeliveryKey(taskID: deliveries[$0].message.id, attempt: deliveries[$0].message.attempt) }
        let counts: [DeliveryKey: Int]
        do {
            counts = try await deliveryCounts.recordRedeliveries(keys, at: clock.now())
        } catch {
            // Run nothing uncounted: keep the messages for the next claim, once the database answers.
            consumer.putBack(readable)
            throw error
        }
        for (index, key) in zip(redelivered, keys) { deliveries[index].deliveries = max(2, counts[key] ?? 2) }
        await pruneDeliveryCounts()
        return deliveries
    }

    /// Drops delivery counts untouched for a week, at most once an hour, on the (rare) redelivery path.
    private func pruneDeliveryCounts() async {
        let now = ContinuousClock.now
        let due = lastPrune.withLock { last -> Bool in
            if let last, now - last < .seconds(3600) { return false }
            last = now
            return true
        }
        if due { try? await deliveryCounts.prune(before: clock.now().addingTimeInterval(-7 * 86400)) }
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

    public func release(_ deliveries: [Delivery]) async throws {
        for delivery in deliveries {
            guard let (generation, tag) = parseTag(delivery.tag) else { continue }
            consumer.nack(generation: generation, tag: tag, requeue: true)
        }
    }

    /// RabbitMQ keeps unacknowledged messages for as long as the consuming connection lives; heartbeats keep it alive.
    public func extendLeases(workerID: String, leaseUntil: Date) async throws {}

    // MARK: Statistics

    /// The connection statistics use, opened on first use: a passive declaration of a missing queue closes its channel,
    /// which must never be a channel publishes wait on.
    private func inspectorConnection() throws -> AMQPConnection {
        try inspector.withLock { state in
            if state.stopped { throw AMQPError(.shutDown, message: "the RabbitMQ broker is shut down") }
            if let connection = state.connection { return connection }
            let connection = AMQPConnection(role: .inspector, endpoint: endpoint, logger: logger)
            state.connection = connection
            return connection
        }
    }

    /// Ready, dead and delayed counts come from RabbitMQ, for the queues this broker declared, live workers consume,
    /// and integrations and schedules publish to (queues that do not exist are left out). In flight is what live
    /// workers last reported running from the queue (RabbitMQ tells unacknowledged counts only through its
    /// management plugin).
    public func stats() async throws -> [QueueStats] {
        let workers = try await runs.liveWorkers(since: clock.now().addingTimeInterval(-30))
        var names = Set(declaredQueues.withLock { $0 }.map { String($0.dropFirst(2)) })
        for worker in workers { names.formUnion(worker.queues) }
        names.formUnion(try await queueNames.configuredQueues())
        let inspector = try inspectorConnection()
        let deadline = ContinuousClock.now + publishTimeout
        var result: [QueueStats] = []
        for queue in names.sorted() {
            if let stats = try await Self.stats(of: queue, inspector: inspector, workers: workers, deadline: deadline) { result.append(stats) }
        }
        return result
    }

    /// Any queue RabbitMQ has, including one this process never declared.
    public func stats(of queue: String) async throws -> QueueStats? {
        let workers = try await runs.liveWorkers(since: clock.now().addingTimeInterval(-30))
        return try await Self.stats(of: queue, inspector: try inspectorConnection(), workers: workers, deadline: .now + publishTimeout)
    }

    private static func stats(
        of queue: String, inspector: AMQPConnection, workers: [WorkerInfo], deadline: ContinuousClock.Instant
    ) async throws -> QueueStats? {
        guard let ready = try await inspector.count(queue, deadline: deadline) else { return nil }
        let dead = try await inspector.count("\(queue).dead", deadline: deadline) ?? 0
        let delayed = try await inspector.count("\(queue).delay", deadline: deadline) ?? 0
        let inFlight = workers.reduce(0) { $0 + ($1.busyByQueue[queue] ?? 0) }
        return QueueStats(queue: queue, ready: ready, inFlight: inFlight, dead: dead, delayed: delayed)
    }

    /// Purges the queue and its delay queue (retries waiting there). Messages delivered to a worker and not yet
    /// acknowledged stay: RabbitMQ purges only ready ones.
    public func purge(queue: String) async throws -> Int? {
        let inspector = try inspectorConnection()
        let deadline = ContinuousClock.now + publishTimeout
        guard let ready = try await inspector.purge(queue, deadline: deadline) else { return nil }
        return ready + (try await inspector.purge("\(queue).delay", deadline: deadline) ?? 0)
    }

    // MARK: Message bodies

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

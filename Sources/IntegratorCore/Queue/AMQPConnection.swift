// One AMQP connection owned by one dedicated thread: rabbitmq-c is not thread-safe and its calls block,
// so every call happens on that thread and async callers talk to it through a mailbox.
import CRabbitMQ
import Foundation
import Logging
import Synchronization

/// Where to connect, parsed from an `amqp://` URL.
struct AMQPEndpoint: Sendable {
    var host: String
    var port: Int
    var vhost: String
    var username: String
    var password: Secret

    /// Parses `amqp://user:password@host:port/vhost` (vhost percent-encoded; `/` when absent or `%2f`).
    init(url: Secret) throws(ConfigurationError) {
        guard let components = URLComponents(string: url.reveal()), let host = components.host, !host.isEmpty else {
            throw ConfigurationError(variable: "INTEGRATOR_BROKER_URL", expected: "sql or amqp://USER:PASSWORD@HOST:PORT/VHOST")
        }
        self.host = host
        self.port = components.port ?? 5672
        let path = components.percentEncodedPath
        let rawVhost = path.hasPrefix("/") ? String(path.dropFirst()) : path
        self.vhost = rawVhost.isEmpty ? "/" : (rawVhost.removingPercentEncoding ?? rawVhost)
        self.username = components.user.flatMap { $0.removingPercentEncoding } ?? "guest"
        self.password = Secret(components.password.flatMap { $0.removingPercentEncoding } ?? "guest")
    }

    var redacted: String { "amqp://\(username)@\(host):\(port)/\(vhost == "/" ? "%2f" : vhost)" }
}

/// A message received by a consuming connection.
struct AMQPDelivery: Sendable {
    /// Which connection incarnation received it; acks for an older one are dropped (the broker redelivers those).
    var generation: Int
    var tag: UInt64
    var body: [UInt8]
    var redelivered: Bool
    /// The queue it came from (the consumer tag names it).
    var queue: String
}

/// A queue as Integrator declares it, again on every (re)connection.
struct AMQPQueueSpec: Sendable, Hashable {
    var name: String
    var maxPriority: Int
    /// Where rejected and expired messages go (through the default exchange): `<queue>.dead` for a task queue, the
    /// task queue for its delay queue.
    var deadLetterTo: String?

    /// How Integrator declares it, for an error that says what a conflicting queue should look like.
    var summary: String {
        var parts = ["durable"]
        if maxPriority > 0 { parts.append("x-max-priority \(maxPriority)") }
        if let deadLetterTo { parts.append("dead letters to '\(deadLetterTo)'") }
        return parts.joined(separator: ", ")
    }
}

/// A message to publish, with the reply its publisher waits on.
struct AMQPOutgoing: Sendable {
    var queue: String
    var body: [UInt8]
    var priority: Int
    /// Milliseconds as text, for messages that wait in a delay queue.
    var expiration: String?
    /// Sent as the AMQP message id; matches a returned message to its publish.
    var messageID: String?
    /// How long the publisher allowed, for the error when it passes.
    var timeout: Duration
    var reply: AMQPReply<Void>
}

/// The mailbox between async callers and the connection's thread.
final class AMQPConnection: Sendable {
    enum Role: Sendable {
        /// Confirms every publish.
        case publisher
        /// Consumes queues with a prefetch.
        case consumer
        /// Answers questions about queues (statistics) away from publishing: a passive declaration of a missing queue
        /// closes its channel, which must never be the channel publishes wait on.
        case inspector

        var name: String {
            switch self {
            case .publisher: "publish"
            case .consumer: "consume"
            case .inspector: "inspect"
            }
        }
    }

    enum Command: Sendable {
        case publish(AMQPOutgoing)
        case declare(AMQPQueueSpec, AMQPReply<Void>)
        /// Messages ready in a queue; `nil` when the queue does not exist.
        case count(String, AMQPReply<Int?>)
        case purge(String, AMQPReply<Int?>)
        case consume(queues: [String], prefetch: Int, AMQPReply<Void>)
        case ack(generation: Int, tags: [UInt64])
        case nack(generation: Int, tag: UInt64, requeue: Bool)
    }

    private struct State {
        var commands: [Command] = []
        var deliveries: [AMQPDelivery] = []
        var deliveryWaiter: CheckedContinuation<Void, Never>?
        var stopped = false
        var finished = false
        var finishWaiters: [CheckedContinuation<Void, Never>] = []
        var connected = false
        /// Why RabbitMQ blocks this connection's publishing (a resource alarm), while it does.
        var blockedReason: String?
        /// The kernel's id of the connection's thread, once it runs.
        var threadID: Int32?
    }

    private let state = Mutex(State())
    /// An eventfd the caller side signals when it leaves a command, so the connection's thread, waiting on its
    /// socket, turns to the command at once instead of after its wait.
    let wakeFD: Int32
    let role: Role
    let endpoint: AMQPEndpoint
    let logger: Logger
    /// Heartbeat interval negotiated with RabbitMQ; an idle thread wakes a few times per interval to send its own.
    let heartbeat: Duration

    init(role: Role, endpoint: AMQPEndpoint, logger: Logger, heartbeat: Duration = .seconds(30)) {
        self.role = role
        self.endpoint = endpoint
        self.logger = logger
        self.heartbeat = heartbeat
        self.wakeFD = integrator_amqp_make_wake_fd()
        let thread = Thread { [self] in
            let threadID = integrator_amqp_thread_id()
            state.withLock { $0.threadID = threadID }
            var loop = AMQPConnectionLoop(connection: self)
            loop.run()
            self.markFinished()
        }
        thread.name = "integrator-amqp-\(role.name)"
        thread.start()
    }

    deinit {
        if wakeFD >= 0 { close(wakeFD) }
    }

    var isConnected: Bool { state.withLock { $0.connected } }

    /// The kernel's id of the connection's thread (to find it in /proc, or in a debugger), once it runs.
    var threadID: Int32? { state.withLock { $0.threadID } }

    /// Why RabbitMQ blocks publishing on this connection right now, or `nil`.
    var blockedReason: String? { state.withLock { $0.blockedReason } }

    /// Publishes and returns once the broker confirmed the message. Throws on a nack, a returned (unroutable) message,
    /// a lost connection, or when `deadline` passes first (`timeout` is what the caller allowed, for the error);
    /// cancelling the caller stops the wait at once, and a message not yet written is then never sent.
    func publish(
        queue: String, body: [UInt8], priority: Int, expiration: String? = nil, messageID: String? = nil,
        deadline: ContinuousClock.Instant, timeout: Duration
    ) async throws {
        let reply = AMQPReply<Void>(deadline: deadline)
        let outgoing = AMQPOutgoing(
            queue: queue, body: body, priority: priority, expiration: expiration, messageID: messageID, timeout: timeout, reply: reply)
        try await reply.wait { enqueue(.publish(outgoing)) }
    }

    func declare(_ spec: AMQPQueueSpec, deadline: ContinuousClock.Instant) async throws {
        let reply = AMQPReply<Void>(deadline: deadline)
        try await reply.wait { enqueue(.declare(spec, reply)) }
    }

    /// Messages ready in `queue` (a passive declaration), or `nil` when there is no such queue.
    func count(_ queue: String, deadline: ContinuousClock.Instant) async throws -> Int? {
        let reply = AMQPReply<Int?>(deadline: deadline)
        return try await reply.wait { enqueue(.count(queue, reply)) }
    }

    /// Drops the ready messages of `queue`, returning how many, or `nil` when there is no such queue.
    func purge(_ queue: String, deadline: ContinuousClock.Instant) async throws -> Int? {
        let reply = AMQPReply<Int?>(deadline: deadline)
        return try await reply.wait { enqueue(.purge(queue, reply)) }
    }

    /// Starts consuming; kept across reconnections.
    func consume(queues: [String], prefetch: Int, deadline: ContinuousClock.Instant) async throws {
        let reply = AMQPReply<Void>(deadline: deadline)
        try await reply.wait { enqueue(.consume(queues: queues, prefetch: prefetch, reply)) }
    }

    func ack(generation: Int, tag: UInt64) { enqueue(.ack(generation: generation, tags: [tag])) }
    /// Acknowledges many deliveries; a run of the oldest unacknowledged ones goes out as one `multiple` ack.
    func ack(generation: Int, tags: [UInt64]) { enqueue(.ack(generation: generation, tags: tags)) }
    func nack(generation: Int, tag: UInt64, requeue: Bool) { enqueue(.nack(generation: generation, tag: tag, requeue: requeue)) }

    /// Takes up to `limit` received messages, waiting up to `wait` for the first one.
    func take(limit: Int, wait: Duration) async -> [AMQPDelivery] {
        let taken = takeNow(limit)
        if !taken.isEmpty || wait == .zero { return taken }
        await waitForDeliveries(upTo: wait)
        return takeNow(limit)
    }

    /// Returns once a delivery waits to be taken (at once if one does), after `limit`, or when cancelled; `true` when
    /// one waits. Meant for one caller at a time, the worker that consumes through this connection; a second caller
    /// wakes the first early.
    @discardableResult
    func waitForDeliveries(upTo limit: Duration) async -> Bool {
        if state.withLock({ !$0.deliveries.isEmpty }) { return true }
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                // The group ends only when this child does, so it must end on every path: the limit's wake-up may come
                // before it registers (it then sees the cancellation), and a second waiter replaces it (it is woken).
                await withTaskCancellationHandler {
                    await withCheckedContinuation { continuation in
                        let (resumeNow, replaced) = self.state.withLock { state -> (Bool, CheckedContinuation<Void, Never>?) in
                            if !state.deliveries.isEmpty || state.stopped || Task.isCancelled { return (true, nil) }
                            defer { state.deliveryWaiter = continuation }
                            return (false, state.deliveryWaiter)
                        }
                        replaced?.resume()
                        if resumeNow { continuation.resume() }
                    }
                } onCancel: {
                    self.wakeDeliveryWaiter()
                }
            }
            group.addTask {
                try? await Task.sleep(for: limit)
                self.wakeDeliveryWaiter()
            }
            await group.next()
            self.wakeDeliveryWaiter()
            group.cancelAll()
        }
        return state.withLock { !$0.deliveries.isEmpty }
    }

    /// Hands taken messages back, first in line, for a caller that could not use them yet (they stay unacknowledged).
    func putBack(_ deliveries: [AMQPDelivery]) {
        guard !deliveries.isEmpty else { return }
        state.withLock { $0.deliveries.insert(contentsOf: deliveries, at: 0) }
    }

    private func takeNow(_ limit: Int) -> [AMQPDelivery] {
        state.withLock { state in
            let count = min(limit, state.deliveries.count)
            let taken = Array(state.deliveries.prefix(count))
            state.deliveries.removeFirst(count)
            return taken
        }
    }

    private func wakeDeliveryWaiter() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            defer { state.deliveryWaiter = nil }
            return state.deliveryWaiter
        }
        waiter?.resume()
    }

    /// Begins stopping the thread: acknowledgements already handed over still go out, publishes already sent get a
    /// moment for their confirms, other pending calls fail; then the connection closes. Returns at once.
    func shutdown() {
        state.withLock { $0.stopped = true }
        wake()
        wakeDeliveryWaiter()
    }

    /// Returns once the thread has closed the connection and ended (after ``shutdown()``).
    func waitUntilFinished() async {
        await withCheckedContinuation { continuation in
            let done = state.withLock { state -> Bool in
                if state.finished { return true }
                state.finishWaiters.append(continuation)
                return false
            }
            if done { continuation.resume() }
        }
    }

    private func markFinished() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.finished = true
            defer { state.finishWaiters.removeAll() }
            return state.finishWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    private func enqueue(_ command: Command) {
        let (rejected, first) = state.withLock { state -> (Bool, Bool) in
            if state.stopped { return (true, false) }
            state.commands.append(command)
            return (false, state.commands.count == 1)
        }
        if rejected { AMQPConnectionLoop.fail(command, AMQPError(.shutDown, message: "the AMQP connection is shut down")) }
        // One signal per batch of commands: the thread takes them all once it wakes.
        if first { wake() }
    }

    func wake() {
        if wakeFD >= 0 { integrator_amqp_signal(wakeFD) }
    }

    func drainCommands() -> (commands: [Command], stopped: Bool) {
        state.withLock { state in
            defer { state.commands.removeAll(keepingCapacity: true) }
            return (state.commands, state.stopped)
        }
    }

    func hasCommands() -> Bool { state.withLock { !$0.commands.isEmpty } }

    func setConnected(_ connected: Bool) { state.withLock { $0.connected = connected } }

    func setBlocked(_ reason: String?) { state.withLock { $0.blockedReason = reason } }

    func deliver(_ deliveries: [AMQPDelivery]) {
        guard !deliveries.isEmpty else { return }
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.deliveries.append(contentsOf: deliveries)
            defer { state.deliveryWaiter = nil }
            return state.deliveryWaiter
        }
        waiter?.resume()
    }

    /// Received messages of an older connection will be redelivered by the broker; forget them.
    func dropDeliveries(before generation: Int) {
        state.withLock { $0.deliveries.removeAll { $0.generation < generation } }
    }
}

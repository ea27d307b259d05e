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

/// A broker-side failure the caller sees.
public struct AMQPError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

/// A message received by a consuming connection.
struct AMQPDelivery: Sendable {
    /// Which connection incarnation received it; acks for an older one are dropped (the broker redelivers those).
    var generation: Int
    var tag: UInt64
    var body: [UInt8]
    var redelivered: Bool
}

/// A queue and its companions, declared on every (re)connection.
struct AMQPQueueSpec: Sendable, Hashable {
    var name: String
    var maxPriority: Int
    /// For delay queues: where expired messages go.
    var deadLetterTo: String?
}

/// The mailbox between async callers and the connection's thread.
final class AMQPConnection: Sendable {
    enum Role: Sendable {
        /// Confirms every publish.
        case publisher
        /// Consumes queues with a prefetch.
        case consumer
    }

    fileprivate enum Command: Sendable {
        case publish(queue: String, body: [UInt8], priority: Int, expiration: String?, CheckedContinuation<Void, any Error>)
        case declare(AMQPQueueSpec, CheckedContinuation<Void, any Error>)
        case count(String, CheckedContinuation<Int, any Error>)
        case consume(queues: [String], prefetch: Int, CheckedContinuation<Void, any Error>)
        case ack(generation: Int, tags: [UInt64])
        case nack(generation: Int, tag: UInt64, requeue: Bool)
    }

    fileprivate struct State {
        var commands: [Command] = []
        var deliveries: [AMQPDelivery] = []
        var deliveryWaiter: CheckedContinuation<Void, Never>?
        var stopped = false
        var connected = false
    }

    private let state = Mutex(State())
    /// An eventfd the caller side signals when it leaves a command, so the connection's thread, waiting on its
    /// socket, turns to the command at once instead of after its wait.
    fileprivate let wakeFD: Int32
    let role: Role
    let endpoint: AMQPEndpoint
    let logger: Logger

    init(role: Role, endpoint: AMQPEndpoint, logger: Logger) {
        self.role = role
        self.endpoint = endpoint
        self.logger = logger
        self.wakeFD = integrator_amqp_make_wake_fd()
        let thread = Thread { [self] in
            var loop = ConnectionLoop(connection: self)
            loop.run()
        }
        thread.name = "integrator-amqp-\(role == .publisher ? "publish" : "consume")"
        thread.start()
    }

    deinit {
        if wakeFD >= 0 { close(wakeFD) }
    }

    var isConnected: Bool { state.withLock { $0.connected } }

    /// Publishes and returns once the broker confirmed the message; throws on a nack or a lost connection.
    func publish(queue: String, body: [UInt8], priority: Int, expiration: String? = nil) async throws {
        try await withCheckedThrowingContinuation { continuation in
            enqueue(.publish(queue: queue, body: body, priority: priority, expiration: expiration, continuation))
        }
    }

    func declare(_ spec: AMQPQueueSpec) async throws {
        try await withCheckedThrowingContinuation { continuation in enqueue(.declare(spec, continuation)) }
    }

    /// Messages ready in `queue` (passive declare).
    func count(_ queue: String) async throws -> Int {
        try await withCheckedThrowingContinuation { continuation in enqueue(.count(queue, continuation)) }
    }

    /// Starts consuming; kept across reconnections.
    func consume(queues: [String], prefetch: Int) async throws {
        try await withCheckedThrowingContinuation { continuation in
            enqueue(.consume(queues: queues, prefetch: prefetch, continuation))
        }
    }

    func ack(generation: Int, tag: UInt64) { enqueue(.ack(generation: generation, tags: [tag])) }
    /// Acknowledges many deliveries; a run of the oldest unacknowledged ones goes out as one `multiple` ack.
    func ack(generation: Int, tags: [UInt64]) { enqueue(.ack(generation: generation, tags: tags)) }
    func nack(generation: Int, tag: UInt64, requeue: Bool) { enqueue(.nack(generation: generation, tag: tag, requeue: requeue)) }

    /// Takes up to `limit` received messages, waiting up to `wait` for the first one.
    func take(limit: Int, wait: Duration) async -> [AMQPDelivery] {
        let taken = takeNow(limit)
        if !taken.isEmpty || wait == .zero { return taken }
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await withCheckedContinuation { continuation in
                    let resumeNow = self.state.withLock { state -> Bool in
                        if !state.deliveries.isEmpty || state.stopped { return true }
                        state.deliveryWaiter = continuation
                        return false
                    }
                    if resumeNow { continuation.resume() }
                }
            }
            group.addTask {
                try? await Task.sleep(for: wait)
                self.wakeDeliveryWaiter()
            }
            await group.next()
            self.wakeDeliveryWaiter()
            group.cancelAll()
        }
        return takeNow(limit)
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

    /// Stops the thread; pending calls fail.
    func shutdown() {
        state.withLock { $0.stopped = true }
        wake()
        wakeDeliveryWaiter()
    }

    private func enqueue(_ command: Command) {
        let (rejected, first) = state.withLock { state -> (Bool, Bool) in
            if state.stopped { return (true, false) }
            state.commands.append(command)
            return (false, state.commands.count == 1)
        }
        if rejected { ConnectionLoop.fail(command, AMQPError(message: "the AMQP connection is shut down")) }
        // One signal per batch of commands: the thread takes them all once it wakes.
        if first { wake() }
    }

    fileprivate func wake() {
        if wakeFD >= 0 { integrator_amqp_signal(wakeFD) }
    }

    fileprivate func drainCommands() -> (commands: [Command], stopped: Bool) {
        state.withLock { state in
            defer { state.commands.removeAll(keepingCapacity: true) }
            return (state.commands, state.stopped)
        }
    }

    fileprivate func hasCommands() -> Bool { state.withLock { !$0.commands.isEmpty } }

    fileprivate func setConnected(_ connected: Bool) { state.withLock { $0.connected = connected } }

    fileprivate func deliver(_ deliveries: [AMQPDelivery]) {
        guard !deliveries.isEmpty else { return }
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.deliveries.append(contentsOf: deliveries)
            defer { state.deliveryWaiter = nil }
            return state.deliveryWaiter
        }
        waiter?.resume()
    }

    /// Received messages of an older connection will be redelivered by the broker; forget them.
    fileprivate func dropDeliveries(before generation: Int) {
        state.withLock { $0.deliveries.removeAll { $0.generation < generation } }
    }
}

/// The body of the connection's thread. Everything here runs on that one thread.
private struct ConnectionLoop {
    let connection: AMQPConnection
    var handle: amqp_connection_state_t?
    var generation = 0
    var publishSequence: UInt64 = 0
    var unconfirmed: [(sequence: UInt64, continuation: CheckedContinuation<Void, any Error>)] = []
    var declared: [AMQPQueueSpec] = []
    var consuming: (queues: [String], prefetch: Int)?
    /// Delivery tags received and not yet acknowledged or rejected, oldest first (tags grow on a channel).
    var unacknowledged: [UInt64] = []
    var failures = 0
    var errorBuffer = [CChar](repeating: 0, count: 512)

    init(connection: AMQPConnection) { self.connection = connection }

    mutating func run() {
        while true {
            let (commands, stopped) = connection.drainCommands()
            if stopped {
                for command in commands { Self.fail(command, AMQPError(message: "the AMQP connection is shut down")) }
                disconnect(AMQPError(message: "the AMQP connection is shut down"), graceful: true)
                return
            }
            if handle == nil, !connect() {
                // Callers should not wait through an outage: their calls fail now and they retry.
                for command in commands { Self.fail(command, AMQPError(message: lastError)) }
                failures += 1
                usleep(UInt32(min(5_000_000, 100_000 * (1 << min(failures, 6)))))
                continue
            }
            for command in commands where handle != nil {
                execute(command)
            }
            if handle == nil { continue }
            switch connection.role {
            case .publisher: readConfirms()
            case .consumer: readDeliveries()
            }
        }
    }

    var lastError: String {
        errorBuffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    mutating func connect() -> Bool {
        let endpoint = connection.endpoint
        var newHandle: amqp_connection_state_t?
        let status = errorBuffer.withUnsafeMutableBufferPointer { buffer in
            integrator_amqp_connect(
                &newHandle, endpoint.host, Int32(endpoint.port), endpoint.vhost, endpoint.username, endpoint.password.reveal(),
                30, 5000, buffer.baseAddress, buffer.count)
        }
        guard status == 0, let newHandle else {
            if failures == 0 {
                connection.logger.error("cannot reach RabbitMQ; retrying", metadata: ["amqp.endpoint": "\(endpoint.redacted)", "error": "\(lastError)"])
            }
            return false
        }
        handle = newHandle
        generation += 1
        publishSequence = 0
        unacknowledged.removeAll()
        do {
            if connection.role == .publisher { try check(integrator_amqp_confirm_select(newHandle, &errorBuffer, errorBuffer.count)) }
            for spec in declared { try declareNow(spec) }
            if let consuming { try startConsuming(consuming.queues, prefetch: consuming.prefetch) }
        } catch {
            disconnect(error, graceful: false)
            return false
        }
        if failures > 0 { connection.logger.info("reconnected to RabbitMQ", metadata: ["amqp.endpoint": "\(endpoint.redacted)"]) }
        failures = 0
        connection.setConnected(true)
        connection.dropDeliveries(before: generation)
        return true
    }

    mutating func disconnect(_ error: any Error, graceful: Bool) {
        if let handle {
            if graceful { integrator_amqp_close(handle) } else { amqp_destroy_connection(handle) }
        }
        handle = nil
        connection.setConnected(false)
        for pending in unconfirmed { pending.continuation.resume(throwing: error) }
        unconfirmed.removeAll()
    }

    func check(_ status: Int32) throws {
        if status != 0 { throw AMQPError(message: lastError.isEmpty ? "AMQP error \(status)" : lastError) }
    }

    mutating func declareNow(_ spec: AMQPQueueSpec) throws {
        guard let handle else { throw AMQPError(message: "not connected") }
        let status: Int32
        if let target = spec.deadLetterTo {
            status = integrator_amqp_declare(handle, spec.name, 0, Int32(spec.maxPriority), target, nil, nil, &errorBuffer, errorBuffer.count)
        } else {
            status = integrator_amqp_declare(handle, spec.name, 0, Int32(spec.maxPriority), nil, nil, nil, &errorBuffer, errorBuffer.count)
        }
        try check(status)
    }

    mutating func startConsuming(_ queues: [String], prefetch: Int) throws {
        guard let handle else { throw AMQPError(message: "not connected") }
        try check(integrator_amqp_qos(handle, UInt16(clamping: prefetch), &errorBuffer, errorBuffer.count))
        for queue in queues { try check(integrator_amqp_consume(handle, queue, &errorBuffer, errorBuffer.count)) }
    }

    mutating func execute(_ command: AMQPConnection.Command) {
        guard let handle else { return Self.fail(command, AMQPError(message: "not connected")) }
        do {
            switch command {
            case .publish(let queue, let body, let priority, let expiration, let continuation):
                let status = body.withUnsafeBytes { bytes in
                    if let expiration {
                        integrator_amqp_publish(handle, queue, bytes.baseAddress, bytes.count, Int32(priority), expiration)
                    } else {
                        integrator_amqp_publish(handle, queue, bytes.baseAddress, bytes.count, Int32(priority), nil)
                    }
                }
                publishSequence += 1
                unconfirmed.append((publishSequence, continuation))
                if status != 0 { throw AMQPError(message: "publish failed: \(String(cString: amqp_error_string2(status)))") }
            case .declare(let spec, let continuation):
                do {
                    try declareNow(spec)
                    if !declared.contains(spec) { declared.append(spec) }
                    continuation.resume()
                } catch {
                    continuation.resume(throwing: error)
                    throw error
                }
            case .count(let queue, let continuation):
                var messages: UInt32 = 0
                let status = integrator_amqp_declare(handle, queue, 1, 0, nil, &messages, nil, &errorBuffer, errorBuffer.count)
                if status == 0 {
                    continuation.resume(returning: Int(messages))
                } else {
                    continuation.resume(throwing: AMQPError(message: lastError))
                    throw AMQPError(message: lastError)
                }
            case .consume(let queues, let prefetch, let continuation):
                do {
                    try startConsuming(queues, prefetch: prefetch)
                    consuming = (queues, prefetch)
                    continuation.resume()
                } catch {
                    continuation.resume(throwing: error)
                    throw error
                }
            case .ack(let generation, let tags):
                if generation == self.generation { try acknowledge(tags, on: handle) }
            case .nack(let generation, let tag, let requeue):
                if generation == self.generation {
                    unacknowledged.removeAll { $0 == tag }
                    if integrator_amqp_nack(handle, tag, requeue ? 1 : 0) != 0 { throw AMQPError(message: "nack failed") }
                }
            }
        } catch {
            // A failed call leaves the channel closed: start over with a new connection.
            connection.logger.warning("AMQP connection lost", metadata: ["error": "\(error)"])
            disconnect(error, graceful: false)
        }
    }

    /// Acknowledges `tags`: the oldest unacknowledged deliveries among them with one `multiple` ack (it covers every
    /// tag up to its own, so only while no tag in between is still running), the others one by one.
    mutating func acknowledge(_ tags: [UInt64], on handle: amqp_connection_state_t) throws {
        let settling = Set(tags)
        var covered = 0
        while covered < unacknowledged.count, settling.contains(unacknowledged[covered]) { covered += 1 }
        var single = settling
        if covered > 0 {
            let upTo = unacknowledged[covered - 1]
            if integrator_amqp_ack(handle, upTo, covered > 1 ? 1 : 0) != 0 { throw AMQPError(message: "ack failed") }
            for tag in unacknowledged[..<covered] { single.remove(tag) }
        }
        for tag in single.sorted() where integrator_amqp_ack(handle, tag, 0) != 0 { throw AMQPError(message: "ack failed") }
        unacknowledged.removeAll { settling.contains($0) }
    }

    /// Waits up to `milliseconds` for data on the connection; `false` when a command arrived or nothing came.
    func waitForData(_ handle: amqp_connection_state_t, milliseconds: Int32) -> Bool {
        if connection.hasCommands() { return false }
        // Without an eventfd (negative), poll ignores it and the wait only ends on data or the timeout.
        return integrator_amqp_wait(handle, connection.wakeFD, milliseconds) == 1
    }

    /// Reads publisher confirms (ack/nack, possibly `multiple`) and settles the waiting publishes.
    mutating func readConfirms() {
        guard let handle else { return }
        var rounds = 0
        while rounds < 1000 {
            rounds += 1
            var tag: UInt64 = 0
            var multiple: Int32 = 0
            var isAck: Int32 = 0
            let status = integrator_amqp_next_confirm(handle, 0, &tag, &multiple, &isAck, &errorBuffer, errorBuffer.count)
            if status < 0 {
                disconnect(AMQPError(message: "the connection to RabbitMQ was lost: \(lastError)"), graceful: false)
                return
            }
            if status == 0 {
                // Nothing to read: sleep on the socket until data or a command comes (a command wakes us at once).
                if waitForData(handle, milliseconds: 5) { continue }
                return
            }
            let settled = unconfirmed.filter { multiple != 0 ? $0.sequence <= tag : $0.sequence == tag }
            unconfirmed.removeAll { multiple != 0 ? $0.sequence <= tag : $0.sequence == tag }
            for pending in settled {
                if isAck != 0 {
                    pending.continuation.resume()
                } else {
                    pending.continuation.resume(throwing: AMQPError(message: "RabbitMQ refused the message (basic.nack)"))
                }
            }
            if unconfirmed.isEmpty && connection.hasCommands() { return }
        }
    }

    /// Moves arriving messages into the mailbox until the socket is quiet or commands wait. Everything already read
    /// goes into the mailbox at once, so the worker claims a burst of messages as one batch rather than one by one.
    mutating func readDeliveries() {
        guard let handle else { return }
        var received: [AMQPDelivery] = []
        defer { connection.deliver(received) }
        for _ in 0..<256 {
            var envelope = amqp_envelope_t()
            let status = integrator_amqp_next_delivery(handle, 0, &envelope, &errorBuffer, errorBuffer.count)
            if status < 0 {
                disconnect(AMQPError(message: "the connection to RabbitMQ was lost: \(lastError)"), graceful: false)
                return
            }
            if status == 0 {
                connection.deliver(received)
                received.removeAll(keepingCapacity: true)
                if waitForData(handle, milliseconds: 5) { continue }
                return
            }
            let body = [UInt8](UnsafeRawBufferPointer(start: envelope.message.body.bytes, count: envelope.message.body.len))
            unacknowledged.append(envelope.delivery_tag)
            received.append(
                AMQPDelivery(generation: generation, tag: envelope.delivery_tag, body: body, redelivered: envelope.redelivered != 0))
            amqp_destroy_envelope(&envelope)
            if connection.hasCommands() { return }
        }
    }

    static func fail(_ command: AMQPConnection.Command, _ error: any Error) {
        switch command {
        case .publish(_, _, _, _, let continuation): continuation.resume(throwing: error)
        case .declare(_, let continuation): continuation.resume(throwing: error)
        case .count(_, let continuation): continuation.resume(throwing: error)
        case .consume(_, _, let continuation): continuation.resume(throwing: error)
        case .ack, .nack: break
        }
    }
}

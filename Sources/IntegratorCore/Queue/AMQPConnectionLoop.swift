// The body of an AMQP connection's thread: connects (again after an outage), runs the calls left in the mailbox,
// reads confirms, returned messages, alarms and deliveries, and in between sleeps on its socket and its eventfd.
// Everything here runs on that one thread.
import CRabbitMQ
import Foundation
import Logging

/// A publish written to the socket and not yet confirmed.
private struct InFlightPublish {
    var sequence: UInt64
    var outgoing: AMQPOutgoing
    /// Set when RabbitMQ returned the message as unroutable; its confirm then fails the publish.
    var returned: String?
    var confirmed = false
}

struct AMQPConnectionLoop {
    let connection: AMQPConnection
    private var handle: amqp_connection_state_t?
    private var generation = 0
    private var failures = 0
    private var errorBuffer = [CChar](repeating: 0, count: 512)

    private var publishSequence: UInt64 = 0
    /// Publishes in sequence order (sequences are contiguous on a connection); those before `inFlightStart` are settled.
    private var inFlight: [InFlightPublish] = []
    private var inFlightStart = 0
    /// Why RabbitMQ blocks this connection's publishing, while it does.
    private var blockedReason: String?
    /// Calls held while publishing is blocked: RabbitMQ reads nothing more from a blocked connection, so writing them
    /// would only fill the socket (and, once full, stall this thread). They go out when it unblocks.
    private var held: [AMQPConnection.Command] = []
    /// No deadline of a waiting call passes before this; the loop checks them all then.
    private var nextDeadline: ContinuousClock.Instant?

    private var declared: [AMQPQueueSpec] = []
    private var declareChannelOpen = false
    private var consuming: (queues: [String], prefetch: Int)?
    /// Delivery tags received and not yet acknowledged or rejected, oldest first (tags grow on a channel).
    private var unacknowledged: [UInt64] = []
    /// When the server was last heard from (data or a heartbeat frame).
    private var lastHeard = ContinuousClock.now

    init(connection: AMQPConnection) { self.connection = connection }

    private var logger: Logger { connection.logger }

    /// The longest an idle thread sleeps: often enough to send heartbeats in time (rabbitmq-c sends them from reads).
    private var idleWait: Duration { connection.heartbeat / 3 }

    mutating func run() {
        while true {
            let (commands, stopped) = connection.drainCommands()
            if stopped { return finish(commands) }
            if handle == nil, !connect() {
                // Callers should not wait through an outage: their calls fail now and they retry.
                for command in commands { Self.fail(command, AMQPError(message: lastError)) }
                failures += 1
                if !backOff() { return finish([]) }
                continue
            }
            for command in commands {
                if handle != nil {
                    execute(command)
                } else {
                    Self.fail(command, AMQPError(message: "the connection to RabbitMQ was lost"))
                }
            }
            if handle == nil { continue }
            expireOverdue()
            switch connection.role {
            case .consumer: readDeliveries()
            case .publisher, .inspector: readEvents()
            }
        }
    }

    private var lastError: String {
        errorBuffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    // MARK: Connecting

    private mutating func connect() -> Bool {
        let endpoint = connection.endpoint
        var newHandle: amqp_connection_state_t?
        let heartbeatSeconds = Int32(connection.heartbeat.components.seconds)
        let status = errorBuffer.withUnsafeMutableBufferPointer { buffer in
            integrator_amqp_connect(
                &newHandle, endpoint.host, Int32(endpoint.port), endpoint.vhost, endpoint.username, endpoint.password.reveal(),
                heartbeatSeconds, 5000, 30_000, buffer.baseAddress, buffer.count)
        }
        guard status == 0, let newHandle else {
            if failures == 0 {
                logger.error("cannot reach RabbitMQ; retrying", metadata: ["amqp.endpoint": "\(endpoint.redacted)", "error": "\(lastError)"])
            }
            return false
        }
        handle = newHandle
        generation += 1
        publishSequence = 0
        unacknowledged.removeAll()
        declareChannelOpen = false
        lastHeard = .now
        do {
            if connection.role == .publisher { try check(integrator_amqp_confirm_select(newHandle, &errorBuffer, errorBuffer.count)) }
            for spec in declared {
                do {
                    try declareNow(spec)
                } catch let error as AMQPError where error.kind == .declarationRefused {
                    // Someone changed the queue while we were away: say so once, and stop declaring it on reconnection.
                    logger.error("\(error.message)", metadata: ["amqp.queue": "\(spec.name)"])
                    declared.removeAll { $0 == spec }
                }
            }
            if let consuming { try startConsuming(consuming.queues, prefetch: consuming.prefetch) }
        } catch {
            disconnect(error, graceful: false)
            return false
        }
        if failures > 0 { logger.info("reconnected to RabbitMQ", metadata: ["amqp.endpoint": "\(endpoint.redacted)"]) }
        failures = 0
        connection.setConnected(true)
        connection.dropDeliveries(before: generation)
        return true
    }

    /// Pauses before the next connection attempt. Calls arriving meanwhile fail at once; `false` when a shutdown began.
    private mutating func backOff() -> Bool {
        let resumeAt = ContinuousClock.now + .milliseconds(min(5000, 100 * (1 << min(failures, 6))))
        while true {
            let remaining = resumeAt - .now
            if remaining <= .zero { return true }
            _ = integrator_amqp_sleep(connection.wakeFD, Self.milliseconds(remaining))
            let (commands, stopped) = connection.drainCommands()
            for command in commands { Self.fail(command, AMQPError(message: lastError)) }
            if stopped { return false }
        }
    }

    private mutating func disconnect(_ error: any Error, graceful: Bool) {
        if let handle {
            if graceful { integrator_amqp_close(handle) } else { amqp_destroy_connection(handle) }
        }
        handle = nil
        connection.setConnected(false)
        if blockedReason != nil {
            blockedReason = nil
            connection.setBlocked(nil)
        }
        for entry in inFlight[inFlightStart...] where !entry.confirmed { entry.outgoing.reply.fail(error) }
        inFlight.removeAll()
        inFlightStart = 0
        for command in held { Self.fail(command, error) }
        held.removeAll()
        nextDeadline = nil
    }

    /// On shutdown: acknowledgements already handed over go out, publishes already written get a moment for their
    /// confirms, everything else fails; then the connection closes.
    private mutating func finish(_ commands: [AMQPConnection.Command]) {
        let shutDown = AMQPError(.shutDown, message: "the AMQP connection is shut down")
        for command in commands {
            switch command {
            case .ack, .nack: if handle != nil { execute(command) }
            default: Self.fail(command, shutDown)
            }
        }
        for command in held { Self.fail(command, shutDown) }
        held.removeAll()
        let giveUpAt = ContinuousClock.now + .seconds(2)
        while handle != nil, blockedReason == nil, hasUnconfirmed, ContinuousClock.now < giveUpAt {
            expireOverdue()
            readEvents(waitingAtMost: giveUpAt - .now)
        }
        // A blocked connection is not read by RabbitMQ: a polite close would wait for an answer that cannot come.
        disconnect(shutDown, graceful: blockedReason == nil)
    }

    private var hasUnconfirmed: Bool { inFlight[inFlightStart...].contains { !$0.confirmed && !$0.outgoing.reply.isSettled } }

    // MARK: Calls

    private func check(_ status: Int32) throws {
        if status != 0 { throw AMQPError(message: lastError.isEmpty ? "AMQP error \(status)" : lastError) }
    }

    private mutating func openDeclareChannel() throws {
        guard let handle else { throw AMQPError(message: "not connected to RabbitMQ") }
        if declareChannelOpen { return }
        try check(integrator_amqp_open_channel(handle, amqp_channel_t(INTEGRATOR_AMQP_DECLARE_CHANNEL), &errorBuffer, errorBuffer.count))
        declareChannelOpen = true
    }

    private mutating func declareNow(_ spec: AMQPQueueSpec) throws {
        try openDeclareChannel()
        guard let handle else { throw AMQPError(message: "not connected to RabbitMQ") }
        var replyCode: UInt16 = 0
        let status = Self.withOptionalCString(spec.deadLetterTo) { deadLetterTo in
            integrator_amqp_declare(
                handle, amqp_channel_t(INTEGRATOR_AMQP_DECLARE_CHANNEL), spec.name, 0, Int32(spec.maxPriority), deadLetterTo, nil,
                &replyCode, &errorBuffer, errorBuffer.count)
        }
        if status == INTEGRATOR_AMQP_CHANNEL_CLOSED {
            declareChannelOpen = false
            if replyCode == 406 {
                throw AMQPError(
                    .declarationRefused, queue: spec.name,
                    message: """
                        RabbitMQ refused to declare queue '\(spec.name)': it already exists with other arguments (\(lastError)). \
                        Integrator declares it \(spec.summary). Move its messages elsewhere and delete it \
                        (rabbitmqctl delete_queue \(spec.name)); Integrator then declares it again.
                        """)
            }
            throw AMQPError(.declarationRefused, queue: spec.name, message: "RabbitMQ refused to declare queue '\(spec.name)': \(lastError)")
        }
        try check(status)
    }

    /// Messages ready in `queue`, or `nil` when it does not exist.
    /// Ready messages of `queue` (a passive declaration), or `nil` when there is no such queue.
    private mutating func countNow(_ queue: String) throws -> Int? {
        try onDeclareChannel(queue, doing: "inspect") { handle, messages, replyCode, error, capacity in
            integrator_amqp_declare(handle, amqp_channel_t(INTEGRATOR_AMQP_DECLARE_CHANNEL), queue, 1, 0, nil, messages, replyCode, error, capacity)
        }
    }

    /// Drops the ready messages of `queue`, returning how many, or `nil` when there is no such queue.
    private mutating func purgeNow(_ queue: String) throws -> Int? {
        try onDeclareChannel(queue, doing: "purge") { handle, messages, replyCode, error, capacity in
            integrator_amqp_purge(handle, amqp_channel_t(INTEGRATOR_AMQP_DECLARE_CHANNEL), queue, messages, replyCode, error, capacity)
        }
    }

    /// Runs a queue method on the declaration channel, where a refusal closes only that channel: a missing queue is
    /// `nil`, another refusal an error naming the queue.
    private mutating func onDeclareChannel(
        _ queue: String, doing action: String,
        _ call: (amqp_connection_state_t, UnsafeMutablePointer<UInt32>, UnsafeMutablePointer<UInt16>, UnsafeMutablePointer<CChar>, Int) -> Int32
    ) throws -> Int? {
        try openDeclareChannel()
        guard let handle else { throw AMQPError(message: "not connected to RabbitMQ") }
        var messages: UInt32 = 0
        var replyCode: UInt16 = 0
        let capacity = errorBuffer.count
        let status = errorBuffer.withUnsafeMutableBufferPointer { error in call(handle, &messages, &replyCode, error.baseAddress!, capacity) }
        if status == INTEGRATOR_AMQP_CHANNEL_CLOSED {
            declareChannelOpen = false
            if replyCode == 404 { return nil }
            throw AMQPError(.declarationRefused, queue: queue, message: "RabbitMQ refused to \(action) queue '\(queue)': \(lastError)")
        }
        try check(status)
        return Int(messages)
    }

    private mutating func startConsuming(_ queues: [String], prefetch: Int) throws {
        guard let handle else { throw AMQPError(message: "not connected to RabbitMQ") }
        try check(integrator_amqp_qos(handle, UInt16(clamping: prefetch), &errorBuffer, errorBuffer.count))
        for queue in queues { try check(integrator_amqp_consume(handle, queue, &errorBuffer, errorBuffer.count)) }
    }

    private mutating func execute(_ command: AMQPConnection.Command) {
        guard let handle else { return Self.fail(command, AMQPError(message: "not connected to RabbitMQ")) }
        if blockedReason != nil, command.waitsForServer {
            hold(command)
            return
        }
        do {
            switch command {
            case .publish(let outgoing):
                // Cancelled or past its deadline before it was written: never send it.
                if outgoing.reply.isSettled { return }
                if outgoing.reply.deadline <= .now { return outgoing.reply.fail(timeoutError(outgoing)) }
                let status = outgoing.body.withUnsafeBytes { bytes in
                    Self.withOptionalCString(outgoing.expiration) { expiration in
                        Self.withOptionalCString(outgoing.messageID) { messageID in
                            integrator_amqp_publish(
                                handle, outgoing.queue, bytes.baseAddress, bytes.count, Int32(outgoing.priority), expiration, messageID)
                        }
                    }
                }
                publishSequence += 1
                inFlight.append(InFlightPublish(sequence: publishSequence, outgoing: outgoing))
                noteDeadline(outgoing.reply.deadline)
                if status != 0 { throw AMQPError(message: "publish failed: \(String(cString: amqp_error_string2(status)))") }
            case .declare(let spec, let reply):
                if reply.isSettled { return }
                do {
                    try declareNow(spec)
                    if !declared.contains(spec) { declared.append(spec) }
                    reply.succeed(())
                } catch let error as AMQPError where error.kind == .declarationRefused {
                    // Only the declaration channel closed; publishing and consuming go on.
                    reply.fail(error)
                } catch {
                    reply.fail(error)
                    throw error
                }
            case .count(let queue, let reply), .purge(let queue, let reply):
                if reply.isSettled { return }
                do {
                    if case .purge = command { reply.succeed(try purgeNow(queue)) } else { reply.succeed(try countNow(queue)) }
                } catch let error as AMQPError where error.kind == .declarationRefused {
                    reply.fail(error)
                } catch {
                    reply.fail(error)
                    throw error
                }
            case .consume(let queues, let prefetch, let reply):
                do {
                    try startConsuming(queues, prefetch: prefetch)
                    consuming = (queues, prefetch)
                    reply.succeed(())
                } catch {
                    reply.fail(error)
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
            logger.warning("AMQP connection lost", metadata: ["error": "\(error)", "amqp.connection": "\(connection.role.name)"])
            disconnect(error, graceful: false)
        }
    }

    /// Acknowledges `tags`: the oldest unacknowledged deliveries among them with one `multiple` ack (it covers every
    /// tag up to its own, so only while no tag in between is still running), the others one by one.
    private mutating func acknowledge(_ tags: [UInt64], on handle: amqp_connection_state_t) throws {
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

    // MARK: Deadlines and alarms

    private mutating func noteDeadline(_ deadline: ContinuousClock.Instant) {
        if let current = nextDeadline, current <= deadline { return }
        nextDeadline = deadline
    }

    private mutating func hold(_ command: AMQPConnection.Command) {
        held.append(command)
        if let deadline = command.deadline { noteDeadline(deadline) }
    }

    /// Fails the waiting calls whose deadline passed. Publishes already written stay in line for their confirms (which
    /// then settle nothing); held ones are dropped and never sent.
    private mutating func expireOverdue() {
        let now = ContinuousClock.now
        guard let due = nextDeadline, now >= due else { return }
        var earliest: ContinuousClock.Instant?
        func consider(_ deadline: ContinuousClock.Instant) {
            if earliest.map({ deadline < $0 }) ?? true { earliest = deadline }
        }
        for entry in inFlight[inFlightStart...] where !entry.confirmed && !entry.outgoing.reply.isSettled {
            if entry.outgoing.reply.deadline <= now {
                entry.outgoing.reply.fail(timeoutError(entry.outgoing))
            } else {
                consider(entry.outgoing.reply.deadline)
            }
        }
        var stillHeld: [AMQPConnection.Command] = []
        for command in held {
            guard let deadline = command.deadline, deadline <= now else {
                if let deadline = command.deadline { consider(deadline) }
                stillHeld.append(command)
                continue
            }
            switch command {
            case .publish(let outgoing): outgoing.reply.fail(timeoutError(outgoing))
            default: Self.fail(command, AMQPError(.timeout, queue: command.queue, message: "RabbitMQ did not answer in time\(blockedNote)"))
            }
        }
        held = stillHeld
        nextDeadline = earliest
    }

    private var blockedNote: String {
        blockedReason.map { "; RabbitMQ blocks publishing (\($0)) until its memory or disk alarm clears" } ?? ""
    }

    private func timeoutError(_ outgoing: AMQPOutgoing) -> AMQPError {
        AMQPError(
            .timeout, queue: outgoing.queue,
            message: "RabbitMQ did not confirm the message for queue '\(outgoing.queue)' within \(outgoing.timeout)\(blockedNote)")
    }

    // MARK: Reading

    /// Reads confirms, returns and alarms until the socket is quiet, then sleeps on it until data, a command or the
    /// next deadline (at most `waitingAtMost`, and never longer than a third of the heartbeat interval).
    private mutating func readEvents(waitingAtMost limit: Duration? = nil) {
        for _ in 0..<1000 {
            guard let handle else { return }
            var event = integrator_amqp_event_t()
            let status = integrator_amqp_next_event(handle, 0, &event, &errorBuffer, errorBuffer.count)
            if status < 0 {
                disconnect(AMQPError(message: "the connection to RabbitMQ was lost: \(lastError)"), graceful: false)
                return
            }
            if status == 1 {
                lastHeard = .now
                handleEvent(&event)
                if inFlightStart == inFlight.count && connection.hasCommands() { return }
                continue
            }
            if !waitForData(limit) { return }
        }
    }

    private mutating func handleEvent(_ event: inout integrator_amqp_event_t) {
        switch event.kind {
        case INTEGRATOR_AMQP_EVENT_ACK, INTEGRATOR_AMQP_EVENT_NACK:
            settleConfirms(upTo: event.tag, multiple: event.multiple != 0, acknowledged: event.kind == INTEGRATOR_AMQP_EVENT_ACK)
        case INTEGRATOR_AMQP_EVENT_RETURN:
            let routingKey = Self.string(&event.routing_key)
            let messageID = Self.string(&event.message_id)
            noteReturn(queue: routingKey, messageID: messageID.isEmpty ? nil : messageID, reason: "\(event.reply_code) \(Self.string(&event.text))")
        case INTEGRATOR_AMQP_EVENT_BLOCKED:
            // Only a publishing connection is ever held up by an alarm; the others have nothing to wait for.
            guard connection.role == .publisher, blockedReason == nil else { return }
            let reason = Self.string(&event.text)
            blockedReason = reason
            connection.setBlocked(reason)
            logger.warning(
                "RabbitMQ blocked publishing; publishes wait until it unblocks or their deadline passes",
                metadata: ["amqp.blocked_reason": "\(reason)"])
        case INTEGRATOR_AMQP_EVENT_UNBLOCKED:
            guard blockedReason != nil else { return }
            blockedReason = nil
            connection.setBlocked(nil)
            logger.info("RabbitMQ unblocked publishing")
            let waiting = held
            held.removeAll()
            for command in waiting { execute(command) }
        case INTEGRATOR_AMQP_EVENT_CLOSED:
            disconnect(
                AMQPError(message: "RabbitMQ closed the connection: \(event.reply_code) \(Self.string(&event.text))"), graceful: false)
        default:
            break
        }
    }

    private mutating func settleConfirms(upTo tag: UInt64, multiple: Bool, acknowledged: Bool) {
        guard inFlightStart < inFlight.count, let first = inFlight.first else { return }
        let last = tag >= first.sequence ? Int(tag - first.sequence) : -1
        guard last >= inFlightStart else { return }
        let range = multiple ? inFlightStart...min(last, inFlight.count - 1) : last...last
        guard range.upperBound < inFlight.count else { return }
        for index in range where !inFlight[index].confirmed {
            inFlight[index].confirmed = true
            let entry = inFlight[index]
            if !acknowledged {
                entry.outgoing.reply.fail(
                    AMQPError(.refused, queue: entry.outgoing.queue, message: "RabbitMQ refused the message for queue '\(entry.outgoing.queue)' (basic.nack)"))
            } else if let returned = entry.returned {
                entry.outgoing.reply.fail(
                    AMQPError(
                        .unroutable, queue: entry.outgoing.queue,
                        message: "RabbitMQ has no queue '\(entry.outgoing.queue)' to take the message (returned: \(returned)); it was not delivered"))
            } else {
                entry.outgoing.reply.succeed(())
            }
        }
        while inFlightStart < inFlight.count, inFlight[inFlightStart].confirmed { inFlightStart += 1 }
        if inFlightStart == inFlight.count {
            inFlight.removeAll(keepingCapacity: true)
            inFlightStart = 0
        } else if inFlightStart > 1024, inFlightStart * 2 > inFlight.count {
            inFlight.removeFirst(inFlightStart)
            inFlightStart = 0
        }
    }

    /// A returned message comes just before its confirm; mark the oldest unconfirmed publish it can be.
    private mutating func noteReturn(queue: String, messageID: String?, reason: String) {
        for index in inFlightStart..<inFlight.count {
            let entry = inFlight[index]
            if !entry.confirmed, entry.returned == nil, entry.outgoing.queue == queue, entry.outgoing.messageID == messageID {
                inFlight[index].returned = reason
                return
            }
        }
    }

    /// Moves arriving messages into the mailbox until the socket is quiet or commands wait. Everything already read
    /// goes into the mailbox at once, so the worker claims a burst of messages as one batch rather than one by one.
    private mutating func readDeliveries() {
        var received: [AMQPDelivery] = []
        defer { connection.deliver(received) }
        for _ in 0..<256 {
            guard let handle else { return }
            var envelope = amqp_envelope_t()
            var event = integrator_amqp_event_t()
            let status = integrator_amqp_next_delivery(handle, 0, &envelope, &event, &errorBuffer, errorBuffer.count)
            if status < 0 {
                disconnect(AMQPError(message: "the connection to RabbitMQ was lost: \(lastError)"), graceful: false)
                return
            }
            if status == 2 {
                lastHeard = .now
                if event.kind == INTEGRATOR_AMQP_EVENT_CLOSED { handleEvent(&event) }
                continue
            }
            if status == 0 {
                connection.deliver(received)
                received.removeAll(keepingCapacity: true)
                if waitForData(nil) { continue }
                return
            }
            lastHeard = .now
            let body = [UInt8](UnsafeRawBufferPointer(start: envelope.message.body.bytes, count: envelope.message.body.len))
            let queue = String(decoding: UnsafeRawBufferPointer(start: envelope.consumer_tag.bytes, count: envelope.consumer_tag.len), as: UTF8.self)
            unacknowledged.append(envelope.delivery_tag)
            received.append(
                AMQPDelivery(generation: generation, tag: envelope.delivery_tag, body: body, redelivered: envelope.redelivered != 0, queue: queue))
            amqp_destroy_envelope(&envelope)
            if connection.hasCommands() { return }
        }
    }

    /// Sleeps until the connection has data (`true`), or a command arrives, the next deadline or `limit` comes, or a
    /// third of the heartbeat interval passes (`false`). A server silent for two heartbeat intervals is gone.
    private mutating func waitForData(_ limit: Duration?) -> Bool {
        guard let handle else { return false }
        if connection.hasCommands() { return false }
        var timeout = idleWait
        if let limit { timeout = min(timeout, limit) }
        if let nextDeadline { timeout = min(timeout, nextDeadline - .now) }
        // Without an eventfd (negative), poll ignores it and the wait only ends on data or the timeout.
        if integrator_amqp_wait(handle, connection.wakeFD, Self.milliseconds(timeout)) == 1 {
            lastHeard = .now
            return true
        }
        if ContinuousClock.now - lastHeard > connection.heartbeat * 2 + .seconds(5) {
            logger.warning("RabbitMQ went silent; reconnecting", metadata: ["amqp.connection": "\(connection.role.name)"])
            disconnect(AMQPError(message: "RabbitMQ sent nothing, not even heartbeats, for two heartbeat intervals"), graceful: false)
        }
        return false
    }

    // MARK: Helpers

    static func fail(_ command: AMQPConnection.Command, _ error: any Error) {
        switch command {
        case .publish(let outgoing): outgoing.reply.fail(error)
        case .declare(_, let reply): reply.fail(error)
        case .count(_, let reply), .purge(_, let reply): reply.fail(error)
        case .consume(_, _, let reply): reply.fail(error)
        case .ack, .nack: break
        }
    }

    private static func milliseconds(_ duration: Duration) -> Int32 {
        if duration <= .zero { return 0 }
        let (seconds, attoseconds) = duration.components
        return Int32(clamping: seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000)
    }

    private static func withOptionalCString<T>(_ text: String?, _ body: (UnsafePointer<CChar>?) -> T) -> T {
        guard let text else { return body(nil) }
        return text.withCString { body($0) }
    }

    /// A NUL-terminated C character array (imported as a tuple) as a String.
    private static func string<Tuple>(_ tuple: inout Tuple) -> String {
        withUnsafeBytes(of: &tuple) { bytes in
            String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
        }
    }
}

extension AMQPConnection.Command {
    /// Calls RabbitMQ must read and answer; a blocked connection holds them back.
    var waitsForServer: Bool {
        switch self {
        case .publish, .declare, .count, .purge, .consume: true
        case .ack, .nack: false
        }
    }

    var deadline: ContinuousClock.Instant? {
        switch self {
        case .publish(let outgoing): outgoing.reply.deadline
        case .declare(_, let reply): reply.deadline
        case .count(_, let reply), .purge(_, let reply): reply.deadline
        case .consume(_, _, let reply): reply.deadline
        case .ack, .nack: nil
        }
    }

    var queue: String? {
        switch self {
        case .publish(let outgoing): outgoing.queue
        case .declare(let spec, _): spec.name
        case .count(let queue, _), .purge(let queue, _): queue
        case .consume, .ack, .nack: nil
        }
    }
}

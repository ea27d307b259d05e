// The chat buffer's use cases: accept a message (one transaction with its buffer row and the flush timer), flush a
// buffer through the webhooks delivery path, and the webhook URL setting.
import Foundation
import IntegratorCore
import SQLKit
import Synchronization

/// What happened to one message: it is stored in `buffer`, which flushes at `buffer.flushAt`.
struct ChatBufferAccepted: Sendable {
    var message: ChatBufferMessage
    var buffer: ChatBuffer

    /// The seed's answer (`success`, `message`), plus the user, how many messages wait and when they flush.
    var json: JSONValue {
        [
            "success": true, "message": .string(message.savedText), "user": message.fields["user"] ?? .string(buffer.userKey),
            "buffered": .number(Double(buffer.lastSeq)), "flush_at": .string(buffer.flushAt.apiString),
        ]
    }
}

/// What one run of the flush task did.
enum ChatBufferFlushOutcome: Sendable, Equatable {
    /// The buffer's messages became webhook event `eventID` (stored now, or by an earlier run of the same batch).
    case flushed(eventID: String, messages: Int)
    /// Nothing to do: the buffer was flushed already.
    case skipped(String)
    /// Messages pushed the deadline past the timer; the timer now fires at `until`.
    case postponed(until: Date)
    /// No webhook URL is configured; the buffer keeps its messages and tries again at `retryAt`.
    case waiting(retryAt: Date)

    var json: JSONValue {
        switch self {
        case .flushed(let eventID, let messages): ["event_id": .string(eventID), "messages": .number(Double(messages))]
        case .skipped(let reason): ["skipped": .string(reason)]
        case .postponed(let until): ["postponed_until": .string(until.apiString)]
        case .waiting(let retryAt): ["waiting": "no webhook URL is configured", "retry_at": .string(retryAt.apiString)]
        }
    }
}

struct ChatBufferService: Sendable {
    /// The webhook tenant the flushes are events of: its secret signs them, its retry policy retries them.
    static let tenantID = "chat-buffer"
    static let owner = "chat-buffer"
    static let eventType = "chat_buffer.flushed"
    /// How long a buffer waits before trying again when no webhook URL is configured.
    static let urlRetryDelay: TimeInterval = 60

    let environment: PluginEnvironment
    let options: ChatBufferOptions
    let store: ChatBufferStore

    init(environment: PluginEnvironment, options: ChatBufferOptions) {
        self.environment = environment
        self.options = options
        self.store = ChatBufferStore(secrets: environment.secrets)
    }

    /// The id of the user's flush timer: one per user, so the timer is moved rather than added.
    static func timerID(userKey: String) -> String { "chat-buffer:\(userKey)" }

    /// The durable timer that flushes `buffer` at its deadline, under the user's ``timerID(userKey:)``; its arguments
    /// name the buffer, so a fire meant for a flushed buffer does nothing.
    static func timer(for buffer: ChatBuffer, at now: Date) -> DurableTimer {
        DurableTimer(
            id: timerID(userKey: buffer.userKey), dueAt: buffer.flushAt,
            message: TaskMessage(
                name: ChatBufferFlush.taskName, arguments: ["user": .string(buffer.userKey), "buffer": .string(buffer.bufferID)],
                enqueuedAt: now))
    }

    /// The flush's webhook event id, also its `webhook-id` header: one per buffer, so a flush run again after a crash
    /// stores nothing new, and a receiver that saw it drops a repeat.
    static func eventID(for buffer: ChatBuffer) -> String { eventID(bufferID: buffer.bufferID) }
    static func eventID(bufferID: String) -> String { "chat-buffer-\(bufferID)" }

    // MARK: Messages

    /// Stores a message in its user's buffer and moves the buffer's flush timer, in one transaction with the other
    /// messages that arrive meanwhile (``ChatBufferIntake``).
    func accept(_ body: JSONValue) async throws -> ChatBufferAccepted {
        let message = try ChatBufferMessage.parse(body, options: options)
        let store = self.store
        if options.webhookURL == nil {
            // Refused now rather than buffered towards nowhere. A URL seen lately saves a burst of messages the read.
            let seen = environment.shared.object("chat-buffer.configured-url") { RecentlySeen(for: .seconds(5)) }
            if !seen.isRecent {
                let stored = try await environment.database.withSQL { try await store.setting(ChatBufferStore.webhookURLSetting, $0) }
                guard stored != nil else { throw Self.noWebhookURL }
                seen.mark()
            }
        }
        let buffer = try await ChatBufferIntake.shared(in: environment).messages.submit(message)
        return ChatBufferAccepted(message: message, buffer: buffer)
    }

    static let noWebhookURL = ServiceError(
        .unavailable, "no webhook URL is configured for the chat buffer: set WEBHOOK_URL, or PUT /api/v1/chat-buffer/config")

    /// Flushes buffer `bufferID` of the user if its deadline has passed: in one transaction, its messages become one
    /// webhook event (stored through the webhooks path, its first attempt queued or left to the caller) and are
    /// deleted. Before the deadline (a message pushed it later after the timer fired) it sets the timer to the deadline
    /// instead.
    /// - Parameter firstAttempts: who makes the event's first attempt; the flush task makes it itself once this returns.
    /// - Parameter whileTaken: runs inside the transaction once the messages are read (tests hold a flush open here).
    func flush(
        userKey: String, bufferID: String, firstAttempts: WebhookDispatch.FirstAttempts = .queued,
        whileTaken: (@Sendable () async throws -> Void)? = nil
    ) async throws -> ChatBufferFlushOutcome {
        try await flush([FlushRequest(userKey: userKey, bufferID: bufferID)], firstAttempts: firstAttempts, whileTaken: whileTaken)[0]
    }

    /// One buffer to flush: the user's, if it is still buffer `bufferID`.
    struct FlushRequest: Sendable, Hashable {
        var userKey: String
        var bufferID: String
    }

    /// Flushes each buffer as ``flush(userKey:bufferID:firstAttempts:whileTaken:)`` does, all in one transaction of a
    /// few multi-row statements; returns one outcome per request, in order. A request repeated in the list is
    /// skipped after its first.
    func flush(
        _ requests: [FlushRequest], firstAttempts: WebhookDispatch.FirstAttempts, whileTaken: (@Sendable () async throws -> Void)? = nil
    ) async throws -> [ChatBufferFlushOutcome] {
        let store = self.store
        let environment = self.environment
        let options = self.options
        return try await environment.transaction { transaction in
            let now = environment.clock.now()
            let (found, storedURL) = try await store.buffersForFlush(userKeys: Array(Set(requests.map(\.userKey))), transaction.sql)
            // Each request's outcome; nil for the buffers to flush, known once their messages are taken.
            var outcomes: [ChatBufferFlushOutcome?] = []
            var due: [ChatBuffer] = []
            var seen = Set<FlushRequest>()
            var timersToSet: [DurableTimer] = []
            for request in requests {
                guard seen.insert(request).inserted, var buffer = found[request.userKey], buffer.bufferID == request.bufferID else {
                    outcomes.append(.skipped("the buffer was flushed already"))
                    continue
                }
                if buffer.flushAt > now {
                    timersToSet.append(Self.timer(for: buffer, at: now))
                    try await store.timerSet(buffer, dueAt: buffer.flushAt, transaction.sql)
                    outcomes.append(.postponed(until: buffer.flushAt))
                } else if storedURL ?? options.webhookURL == nil {
                    buffer.flushAt = now.addingTimeInterval(Self.urlRetryDelay)
                    try await store.postpone(buffer, to: buffer.flushAt, transaction.sql)
                    timersToSet.append(Self.timer(for: buffer, at: now))
                    outcomes.append(.waiting(retryAt: buffer.flushAt))
                } else {
                    due.append(buffer)
                    outcomes.append(nil)
                }
            }
            if !timersToSet.isEmpty { try await environment.timers.upsert(contentsOf: timersToSet, in: transaction, at: now) }
            guard let url = storedURL ?? options.webhookURL, !due.isEmpty else { return outcomes.compactMap { $0 } }
            let messages = try await store.take(due, transaction.sql)
            try await whileTaken?()
            let deliveries = due.map { buffer in
                WebhookDispatch.Delivery(
                    eventID: Self.eventID(for: buffer), eventType: Self.eventType, targetURL: url,
                    body: ChatBufferWebhookBody.make(messages[buffer.userKey] ?? [], processedAt: now).encodedString())
            }
            try await WebhookDispatch(environment: environment).dispatch(
                deliveries, tenantID: Self.tenantID, owner: Self.owner, firstAttempts: firstAttempts, in: transaction)
            return zip(requests, outcomes).map { request, outcome in
                outcome ?? .flushed(eventID: Self.eventID(bufferID: request.bufferID), messages: messages[request.userKey]?.count ?? 0)
            }
        }
    }

    /// The user's open buffer: how many messages wait and when they flush (never their contents).
    func buffer(userKey: String) async throws -> JSONValue {
        let store = self.store
        guard let buffer = try await environment.database.withSQL({ try await store.buffer(userKey: userKey, $0) }) else {
            throw ServiceError(.notFound, "no messages are buffered for this user")
        }
        return [
            "user": .string(buffer.userKey), "buffered": .number(Double(buffer.lastSeq)),
            "first_message_at": .string(buffer.firstAt.apiString), "flush_at": .string(buffer.flushAt.apiString),
            "event_id": .string(Self.eventID(for: buffer)),
        ]
    }

    // MARK: The webhook URL

    /// `{"webhook_url", "source", "tenant_id", "public"}`: where flushes go now and why.
    func configuration() async throws -> JSONValue {
        let store = self.store
        let stored = try await environment.database.withSQL { try await store.setting(ChatBufferStore.webhookURLSetting, $0) }
        let source: JSONValue = stored != nil ? "api" : options.webhookURL != nil ? "environment" : .null
        return [
            "webhook_url": (stored ?? options.webhookURL).map(JSONValue.string) ?? .null, "source": source,
            "tenant_id": .string(Self.tenantID), "public": .bool(options.isPublic),
        ]
    }

    /// Sets the webhook URL (`{"webhook_url": "https://…"}`), or removes the API's value (`null`) so the
    /// environment's applies again.
    func configure(_ body: JSONValue) async throws -> JSONValue {
        var input = try InputObject(body)
        guard input.has("webhook_url") else {
            input.addIssue("webhook_url", "is required: an http(s) URL, or null to use WEBHOOK_URL again")
            try input.finish()
            return .null
        }
        let url = input.string("webhook_url", length: 1...2048)
        if let url, !WebhookURL.isValid(url) { input.addIssue("webhook_url", "must be an http:// or https:// URL with a host") }
        try input.finish()
        let store = self.store
        let now = environment.clock.now()
        try await environment.transaction { transaction in
            try await store.setSetting(ChatBufferStore.webhookURLSetting, url, at: now, transaction.sql)
        }
        return try await configuration()
    }
}

/// Whether something was seen within the last `period` (per process; see `PluginEnvironment.shared`).
final class RecentlySeen: Sendable {
    private let period: Duration
    private let lastSeen = Mutex<ContinuousClock.Instant?>(nil)

    init(for period: Duration) { self.period = period }

    var isRecent: Bool { lastSeen.withLock { $0.map { ContinuousClock.now - $0 < period } ?? false } }

    func mark() { lastSeen.withLock { $0 = ContinuousClock.now } }
}

/// Stores the messages that arrive at the same time together: one transaction and a few multi-row statements for all
/// of them, instead of five statements each. Under load most of a message's cost was its own statements, and 32 busy
/// clients held as many connections that the flushes then waited for. One batch is written at a time per process;
/// messages that arrive meanwhile form the next.
final class ChatBufferIntake: Sendable {
    /// Each message's buffer as it stands once the message is stored (`lastSeq` is the message's number).
    let messages: BatchCall<ChatBufferMessage, ChatBuffer>

    init(environment: PluginEnvironment) {
        let store = ChatBufferStore(secrets: environment.secrets)
        messages = BatchCall(maxBatch: 256) { messages in try await Self.store(messages, environment: environment, store: store) }
    }

    static func shared(in environment: PluginEnvironment) -> ChatBufferIntake {
        environment.shared.object("chat-buffer.intake") { ChatBufferIntake(environment: environment) }
    }

    /// Stores `messages` (in arrival order) in their users' buffers and sets or moves each user's flush timer, in one
    /// transaction; returns each message's buffer.
    static func store(_ messages: [ChatBufferMessage], environment: PluginEnvironment, store: ChatBufferStore) async throws -> [ChatBuffer] {
        let now = environment.clock.now()
        // Each user's messages, by their index in arrival order.
        let positions = Dictionary(grouping: messages.indices, by: { messages[$0].userKey })
        let arrivals = positions.map { userKey, indices in
            ChatBufferStore.Arrival(
                userKey: userKey, newBufferID: Identifier.make(now: now), count: indices.count,
                deadline: now.addingTimeInterval(TimeInterval(messages[indices.last!].ttl)),
                cap: now.addingTimeInterval(TimeInterval(messages[indices.first!].maxWait)))
        }
        let timers = environment.timers
        return try await environment.transaction { transaction in
            let buffers = try await store.open(arrivals, at: now, transaction.sql)
            // A user's messages take the last numbers of its buffer, in arrival order; each message's answer is its
            // buffer with its own number.
            var placed: [(message: ChatBufferMessage, buffer: ChatBuffer, seq: Int)] = []
            placed.reserveCapacity(messages.count)
            var answers = messages.map { _ in ChatBuffer(userKey: "", bufferID: "", lastSeq: 0, firstAt: now, flushAt: now, timerDue: nil) }
            for (userKey, indices) in positions {
                guard let buffer = buffers[userKey] else { throw ChatBufferStoreError("a buffer's row was not returned") }
                for (offset, index) in indices.enumerated() {
                    let seq = buffer.lastSeq - indices.count + 1 + offset
                    placed.append((messages[index], buffer, seq))
                    answers[index] = buffer
                    answers[index].lastSeq = seq
                }
            }
            try await store.insert(placed, at: now, transaction.sql)

            var timersToSet: [DurableTimer] = []
            var moves: [String: Date] = [:]
            for buffer in buffers.values {
                if buffer.lastSeq == positions[buffer.userKey]?.count || buffer.timerDue == nil {
                    // A new buffer, or a deadline sooner than the timer (or a timer whose due time the row did not
                    // know): the timer is set, which wakes the beat. A new buffer's row records the due time already.
                    timersToSet.append(ChatBufferService.timer(for: buffer, at: now))
                    if buffer.timerDue == nil { try await store.timerSet(buffer, dueAt: buffer.flushAt, transaction.sql) }
                } else {
                    // A deadline pushed later moves the timer along without waking any beat (only a sooner timer needs
                    // that), so a burst of messages costs one fire. A timer that fired already is left alone: its
                    // flush finds the deadline moved and re-arms it.
                    moves[ChatBufferService.timerID(userKey: buffer.userKey)] = buffer.flushAt
                }
            }
            if !timersToSet.isEmpty { try await timers.upsert(contentsOf: timersToSet, in: transaction, at: now) }
            if !moves.isEmpty { try await timers.postpone(moves, in: transaction) }
            return answers
        }
    }
}

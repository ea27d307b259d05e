// The use cases of scheduled messages: each write is one transaction holding the message row and its durable timer,
// and a firing hands the message to the webhooks plugin in the transaction that removes it.
import Foundation
import IntegratorCore

/// Public so the benchmark calls the code behind the routes.
public struct ScheduledMessagesService: Sendable {
    /// The webhooks plugin's tenant that signs and delivers fired messages; its secret is read through
    /// `GET /api/v1/webhooks/config/scheduled-messages/secret`, its retry policy changed with `configure`.
    static let tenantID = "scheduled-messages"
    static let owner = "scheduled-messages"
    /// Each message has one timer, `scheduled-messages:<message id>`: an upsert moves it, a delete removes it.
    static let timerPrefix = "scheduled-messages:"
    static let eventType = "scheduled_message.fired"
    /// Rows per statement and per transaction when many messages are read or deleted at once.
    static let chunkSize = 500

    let environment: PluginEnvironment

    public init(environment: PluginEnvironment) {
        self.environment = environment
    }

    private var store: ScheduledMessageStore { ScheduledMessageStore(engine: environment.database.engine) }

    /// `POST /messages`: stores the message (or replaces the one with its id) and sets its timer, together.
    public func upsert(_ body: JSONValue) async throws -> ScheduledMessage {
        let message = try ScheduledMessageInput.read(body)
        try await upserts.submit(message)
        return message
    }

    /// Upserts that arrive together share one transaction, their rows and timers written in one statement each: at a
    /// thousand a second the transaction per message, not its two rows, is what costs. While they keep coming a
    /// transaction waits a few milliseconds for more (``BatchGathering/stream(window:enough:pause:)``). A failure fails
    /// them all, and none is stored.
    private var upserts: BatchCall<ScheduledMessage, Void> {
        environment.shared.object("scheduled-messages.upsert") {
            BatchCall<ScheduledMessage, Void>(maxBatch: Self.chunkSize, gathering: .stream()) { [environment] messages in
                try await ScheduledMessagesService(environment: environment).store(messages)
                return messages.map { _ in () }
            }
        }
    }

    /// Stores messages and sets their timers together. Of messages sharing an id the last wins, row and timer alike
    /// (as if they had been stored one after the other).
    func store(_ messages: [ScheduledMessage]) async throws {
        let now = environment.clock.now()
        let latest = messages.lastOccurrences(by: \.id)
        let timers = latest.map { Self.timer(for: $0, at: now) }
        guard WebhookDispatch(environment: environment).hasSeenOwnedTenant(Self.tenantID, owner: Self.owner) else {
            // The process's first store makes the delivering tenant in the same transaction.
            try await environment.transaction { transaction in
                try await ensureTenant(in: transaction)
                try await store.upsert(latest, at: now, transaction.sql)
                try await environment.timers.upsert(contentsOf: timers, in: transaction, at: now)
            }
            return
        }
        // On PostgreSQL one statement, rows and timers: a round trip where a transaction took four.
        try await environment.timers.upsert(contentsOf: timers, at: now, writingAlso: store.upsertStatements(latest, at: now))
    }

    /// Makes the delivering tenant with the first message, so its signing secret can be read before anything fires
    /// (checked once per process, see ``WebhookDispatch/ensureOwnedTenant(_:owner:in:)``).
    private func ensureTenant(in transaction: StoreTransaction) async throws {
        try await WebhookDispatch(environment: environment).ensureOwnedTenant(Self.tenantID, owner: Self.owner, in: transaction)
    }

    /// Stores many messages fast, 500 per transaction, and then their timers in bulk (the benchmark's loader).
    /// Unlike ``upsert(_:)`` a message and its timer are not one transaction: a crash in between leaves messages
    /// that never fire until they are written again.
    public func load(_ messages: [ScheduledMessage]) async throws {
        let now = environment.clock.now()
        for chunk in messages.chunks(of: Self.chunkSize) {
            try await environment.database.transaction { sql in try await store.upsert(Array(chunk), at: now, sql) }
        }
        try await environment.timers.upsert(contentsOf: messages.map { Self.timer(for: $0, at: now) }, at: now)
    }

    /// The timer that fires `message`: its task carries the message's version, which also names the task's run.
    static func timer(for message: ScheduledMessage, at now: Date) -> DurableTimer {
        DurableTimer(
            id: timerPrefix + message.id, dueAt: message.dueAt,
            message: TaskMessage(
                id: message.version, name: ScheduledMessageFire.taskName,
                arguments: ["message_id": .string(message.id), "version": .string(message.version)],
                queue: ScheduledMessageFire.queue, priority: ScheduledMessageFire.priority, enqueuedAt: now))
    }

    /// `GET /messages/{id}`.
    func message(_ id: String) async throws -> ScheduledMessage {
        let found = try await environment.database.withSQL { sql in try await store.message(id, sql) }
        guard let found else { throw Self.notFound }
        return found
    }

    /// Pending messages after `after` in id order, passing `filter` when given.
    func page(after: String?, limit: Int = chunkSize, filter: MessageFilter? = nil) async throws -> [ScheduledMessage] {
        try await environment.database.withSQL { sql in try await store.page(after: after, limit: limit, filter: filter, sql) }
    }

    /// `DELETE /messages/{id}`: the message and its timer, together.
    func delete(_ id: String) async throws {
        try await environment.transaction { transaction in
            guard try await store.delete(id, transaction.sql) else { throw Self.notFound }
            try await environment.timers.cancel(id: Self.timerPrefix + id, in: transaction)
        }
    }

    /// `DELETE /messages/bulk`: every message passing `filter`, with its timer, 500 per transaction; their ids.
    func delete(matching filter: MessageFilter) async throws -> [String] {
        var deleted: [String] = []
        while true {
            let ids = try await environment.transaction { transaction in
                let ids = try await store.deleteMatching(filter, limit: Self.chunkSize, transaction.sql)
                try await environment.timers.cancel(ids: ids.map { Self.timerPrefix + $0 }, in: transaction)
                return ids
            }
            deleted.append(contentsOf: ids)
            if ids.count < Self.chunkSize { return deleted.sorted() }
        }
    }

    /// `POST /messages/{id}/run`: fires the message now, whatever its time, and removes its timer; the webhook
    /// event's id.
    func runNow(_ id: String) async throws -> String {
        try await environment.transaction { transaction in
            guard let message = try await store.take(id, transaction.sql) else { throw Self.notFound }
            try await environment.timers.cancel(id: Self.timerPrefix + id, in: transaction)
            try await store.recordFirings([message], at: environment.clock.now(), transaction.sql)
            try await dispatch([message], in: transaction)
            return message.version
        }
    }

    /// The timer's task when a worker runs it (the beat fires most timers itself, see ``ScheduledMessageFire``): fires
    /// the message if it still has the version asked for. Returns the webhook event's id, or nil when the message was
    /// deleted, fired already, or moved by an upsert since this timer was set. Firings that run at the same time share
    /// one transaction.
    func fire(_ request: MessageVersion) async throws -> String? {
        let batch = environment.shared.object("scheduled-messages.fire") {
            BatchCall<MessageVersion, String?>(maxBatch: Self.chunkSize) { [environment] requests in
                try await environment.transaction { transaction in
                    try await ScheduledMessagesService(environment: environment).fire(requests, in: transaction)
                }
            }
        }
        return try await batch.submit(request)
    }

    /// Fires every message that still has the version asked for, in `transaction`; the event id per request.
    func fire(_ requests: [MessageVersion], in transaction: StoreTransaction) async throws -> [String?] {
        let taken = try await store.takeFiring(requests, at: environment.clock.now(), transaction.sql)
        try await dispatch(taken, in: transaction)
        let fired = Set(taken.map { MessageVersion(id: $0.id, version: $0.version) })
        return requests.map { fired.contains($0) ? $0.version : nil }
    }

    /// Hands messages already removed from the pending list (and recorded as fired) to the webhooks plugin, in the
    /// same transaction. An event's id is its message's version: a firing repeated after a crash stores no second event.
    private func dispatch(_ messages: [ScheduledMessage], in transaction: StoreTransaction) async throws {
        guard !messages.isEmpty else { return }
        let deliveries = messages.map { message in
            WebhookDispatch.Delivery(
                eventID: message.version, eventType: Self.eventType, targetURL: message.webhookURL, body: message.payload.encodedString())
        }
        try await WebhookDispatch(environment: environment).dispatch(deliveries, tenantID: Self.tenantID, owner: Self.owner, in: transaction)
    }

    /// `GET /messages/{id}/deliveries`: how messages with this id fired, with their delivery states.
    func firings(of id: String) async throws -> JSONValue {
        let firings = try await environment.database.withSQL { sql in try await store.firings(of: id, sql) }
        let states = try await WebhookDispatch(environment: environment).states(of: firings.map(\.eventID))
        let items: [JSONValue] = firings.map { firing in
            var item = firing.json.objectValue ?? [:]
            item["state"] = states[firing.eventID].map { .string($0.rawValue) } ?? .null
            return .object(item)
        }
        return ["messageId": .string(id), "deliveries": .array(items)]
    }

    static let notFound = ServiceError(.notFound, "Message not found")
}

/// A message as a firing asks for it: the version its timer was set for.
struct MessageVersion: Sendable, Hashable {
    var id: String
    var version: String
}

// The broker protocol: what workers and publishers need from a queue, whichever system carries it.
import Foundation
import ServiceLifecycle
import SQLKit

/// Carries task messages. Implementations: ``SQLBroker`` (tables in the store's database, the default).
public protocol Broker: Sendable {
    /// Stores the message durably before returning.
    func publish(_ message: TaskMessage) async throws
    /// Takes up to `limit` messages from `queues`, highest priority first and FIFO within a priority,
    /// leasing them to `workerID` until `leaseUntil`; a message whose lease runs out is delivered again.
    func claim(queues: [String], limit: Int, workerID: String, leaseUntil: Date) async throws -> [Delivery]
    /// Removes a settled message.
    func acknowledge(_ delivery: Delivery) async throws
    /// Removes settled messages (a worker settles its outcomes in batches).
    func acknowledge(_ deliveries: [Delivery]) async throws
    /// Puts the message back as its next attempt, deliverable from `notBefore`.
    func retry(_ delivery: Delivery, as next: TaskMessage, notBefore: Date) async throws
    /// Moves the message to its queue's dead letters with a reason.
    func deadLetter(_ delivery: Delivery, reason: String) async throws
    /// Hands unfinished messages back at once (graceful shutdown).
    func release(_ deliveries: [Delivery]) async throws
    /// Pushes the leases of `workerID`'s messages to `leaseUntil` (heartbeat of long tasks).
    func extendLeases(workerID: String, leaseUntil: Date) async throws
    /// Per-queue counts.
    func stats() async throws -> [QueueStats]
    /// One queue's counts, or `nil` when there is no such queue.
    func stats(of queue: String) async throws -> QueueStats?
    /// Drops the messages of `queue` that no worker holds, ready or waiting for a retry (dead letters stay), returning
    /// how many, or `nil` when the broker has no such queue. Their task runs are the caller's to settle.
    func purge(queue: String) async throws -> Int?
    /// A mark of the messages this broker has seen arrive, taken by an idle worker before it claims; see
    /// ``waitForMessages(after:upTo:)``.
    var arrivalMark: UInt64 { get }
    /// Waits between two claims of an idle worker: until a message may have arrived since `mark`, or for `limit`.
    /// `true` when news of a message ended the wait (the worker claims at once).
    func waitForMessages(after mark: UInt64, upTo limit: Duration) async -> Bool
    /// Runs beside a worker until cancelled, turning news of messages from other processes into arrivals (see
    /// ``waitForMessages(after:upTo:)``); returns at once where there is no such news.
    func receiveNewsOfArrivals() async
}

extension Broker {
    public var arrivalMark: UInt64 { 0 }

    public func receiveNewsOfArrivals() async {}

    /// Without news of arrivals, the wait is the worker's poll pause.
    public func waitForMessages(after mark: UInt64, upTo limit: Duration) async -> Bool {
        try? await Task.sleep(for: limit)
        return false
    }

    public func acknowledge(_ deliveries: [Delivery]) async throws {
        for delivery in deliveries { try await acknowledge(delivery) }
    }

    public func stats(of queue: String) async throws -> QueueStats? {
        try await stats().first { $0.queue == queue }
    }
}

/// A broker whose messages are rows in the store's own database. Writing, acknowledging or dead-lettering one of its
/// messages can join any transaction, so an enqueue needs no outbox and an outcome commits with its acknowledgement.
/// Check for it once, where a broker is handed over (``Broker/inDatabase``), not at every call.
protocol InDatabaseBroker: Broker {
    /// The statements that insert `messages` (to run with others, see ``Database/writeTogether(_:asOneStatement:)``).
    func insertStatements(_ messages: [TaskMessage], availableAt: (TaskMessage) -> Date) -> [SQLQueryString]
    /// Inserts `messages` inside the caller's transaction.
    func insert(_ messages: [TaskMessage], availableAt: (TaskMessage) -> Date, _ sql: any SQLDatabase) async throws
    /// The statements that acknowledge `deliveries` (to run with their outcomes' records). They remove a message only
    /// while it is still the claim that delivered it, and return the `seq` of each message they removed, so the caller
    /// records outcomes only for deliveries it still held (see ``TaskRunStore/recordOutcomes(_:acknowledgingIn:)``).
    func acknowledgeStatements(_ deliveries: [Delivery]) -> [SQLQueryString]
    /// Acknowledges inside the caller's transaction.
    func acknowledge(_ deliveries: [Delivery], _ sql: any SQLDatabase) async throws
    /// Deletes the messages of `queue` that no worker holds inside the caller's transaction, returning their task ids.
    func removeWaiting(queue: String, at now: Date, _ sql: any SQLDatabase) async throws -> [String]
    /// Messages inserted with ``insertStatements(_:availableAt:)`` have committed: this process's idle workers claim
    /// them now instead of at their next brisk poll.
    func noteCommittedArrivals()
    /// The `NOTIFY` that tells idle workers of other processes of messages queued (their own hear of them through
    /// ``noteCommittedArrivals()``).
    var announcement: QueueAnnouncement { get }
    /// Inside a transaction that queued messages: sends ``announcement`` at its commit.
    func announceArrivals(_ sql: any SQLDatabase) async throws
}

extension Broker {
    /// This broker as one whose messages live in the store's database, or `nil` for an external broker.
    var inDatabase: (any InDatabaseBroker)? { self as? any InDatabaseBroker }
}

/// A broker that holds connections or threads of its own. Run it as a service beside the worker, the beat or the API:
/// on shutdown it flushes what it still owes the broker (acknowledgements, confirms) and stops its threads.
public protocol BrokerService: Broker, Service {}

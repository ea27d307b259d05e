// The broker protocol: what workers and publishers need from a queue, whichever system carries it.
import Foundation

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
    /// Removes a message that no worker holds yet; `false` when it is gone or already taken.
    func revoke(taskID: String) async throws -> Bool
    /// Moves a dead message back to ready as a fresh attempt; `false` when there is no dead message for the task.
    func requeueDead(taskID: String, as next: TaskMessage) async throws -> Bool
    /// Per-queue counts.
    func stats() async throws -> [QueueStats]
}

extension Broker {
    public func acknowledge(_ deliveries: [Delivery]) async throws {
        for delivery in deliveries { try await acknowledge(delivery) }
    }
}

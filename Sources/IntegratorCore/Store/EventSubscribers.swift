// Handing a batch's change events to the plugins' subscribers inside the transaction that stores them.
import Foundation

/// The events of one stored batch, built only for the subscribers that accept their types.
struct LazyEvents: Sendable {
    let types: [String]
    let make: @Sendable (Int) -> ChangeEvent
}

/// The change-event subscribers of a process, with the environment they run in.
struct EventSubscribers: Sendable {
    let subscribers: [any ChangeEventSubscriber]
    let environment: PluginEnvironment

    /// `nil` when no plugin subscribes, so fetches skip the work entirely.
    init?(_ subscribers: [any ChangeEventSubscriber], environment: PluginEnvironment) {
        guard !subscribers.isEmpty else { return nil }
        self.subscribers = subscribers
        self.environment = environment
    }

    /// Calls each subscriber with the events it accepts, in the order they were written. A subscriber's error
    /// rolls the batch back, named after the subscriber.
    func deliver(_ events: LazyEvents, in transaction: StoreTransaction) async throws {
        var decoded: [Int: ChangeEvent] = [:]
        for subscriber in subscribers {
            let wanted = events.types.indices.filter { subscriber.accepts(eventType: events.types[$0]) }
            guard !wanted.isEmpty else { continue }
            let batch = wanted.map { index in
                if let event = decoded[index] { return event }
                let event = events.make(index)
                decoded[index] = event
                return event
            }
            do {
                try await subscriber.handle(batch, in: transaction, environment: environment)
            } catch {
                throw EventSubscriberFailure(subscriber: subscriber.name, underlying: error)
            }
        }
    }
}

/// A change-event subscriber failed, so the events it was given were not stored either.
public struct EventSubscriberFailure: Error, CustomStringConvertible {
    public var subscriber: String
    public var underlying: any Error
    public var description: String { "change-event subscriber '\(subscriber)' failed: \(underlying)" }
}

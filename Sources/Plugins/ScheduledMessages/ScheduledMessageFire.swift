// `scheduled_messages.fire`: what a message's timer runs when it comes due.
import IntegratorCore

struct ScheduledMessageFire: TaskHandler {
    static let taskName = "scheduled_messages.fire"
    /// The queue every worker consumes by default, like the deliveries it leads to.
    static let queue = "default"
    /// Above a delivery's default (5), so due messages are handed over before a backlog of deliveries is worked off.
    static let priority = 6

    let name = Self.taskName

    /// Only the database can fail here; a firing is one short transaction.
    var timeout: Duration { .seconds(60) }
    var retryPolicy: RetryPolicy { RetryPolicy(maxAttempts: 10, baseDelay: 0.5, maxDelay: 30) }

    func run(_ arguments: JSONValue, context: TaskContext) async throws -> JSONValue {
        let environment = try context.requireEnvironment()
        guard let request = Self.request(arguments) else {
            throw PluginError("scheduled_messages.fire needs {\"message_id\": string, \"version\": string}", permanent: true)
        }
        guard let eventID = try await ScheduledMessagesService(environment: environment).fire(request) else {
            return ["skipped": "the message was deleted, fired already or moved since this timer was set"]
        }
        return ["event_id": .string(eventID)]
    }

    static func request(_ arguments: JSONValue) -> MessageVersion? {
        guard let id = arguments["message_id"]?.stringValue, let version = arguments["version"]?.stringValue else { return nil }
        return MessageVersion(id: id, version: version)
    }
}

/// Due messages fire in the beat's transaction, which takes their timers: each is removed from the pending list and
/// handed to the webhooks plugin there, with no task of its own between the beat and its delivery.
extension ScheduledMessageFire: BeatFiredTaskHandler {
    func fire(dueTimers: [DurableTimer], in transaction: StoreTransaction, environment: PluginEnvironment) async throws
        -> [DurableTimer]
    {
        var requests: [MessageVersion] = []
        var unreadable: [DurableTimer] = []
        for timer in dueTimers {
            if let request = Self.request(timer.message.arguments) { requests.append(request) } else { unreadable.append(timer) }
        }
        _ = try await ScheduledMessagesService(environment: environment).fire(requests, in: transaction)
        return unreadable
    }
}

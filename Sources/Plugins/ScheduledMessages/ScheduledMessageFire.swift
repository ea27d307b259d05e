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
        guard let id = arguments["message_id"]?.stringValue, let version = arguments["version"]?.stringValue else {
            throw PluginError("scheduled_messages.fire needs {\"message_id\": string, \"version\": string}", permanent: true)
        }
        guard let eventID = try await ScheduledMessagesService(environment: environment).fire(id, version: version) else {
            return ["skipped": "the message was deleted, fired already or moved since this timer was set"]
        }
        return ["event_id": .string(eventID)]
    }
}

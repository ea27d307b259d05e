// `scheduled_messages.fire`: what a message's timer runs when it comes due.
import IntegratorCore

struct ScheduledMessageFire: TaskHandler {
    static let taskName = "scheduled_messages.fire"
    /// The queue every worker consumes by default, like the deliveries it leads to.
    static let queue = "default"
    /// Above a delivery's default (5), so due messages are handed over before a backlog of deliveries is worked off.
    static let priority = 6

    let name = Self.taskName

    /// A firing is one short transaction, then the webhook's first attempt (up to its tenant's timeout, 120 s at most).
    var timeout: Duration { WebhookDelivery.attemptTimeout }
    var retryPolicy: RetryPolicy { RetryPolicy(maxAttempts: 10, baseDelay: 0.5, maxDelay: 30) }

    func run(_ arguments: JSONValue, context: TaskContext) async throws -> JSONValue {
        let environment = try context.requireEnvironment()
        guard let id = arguments["message_id"]?.stringValue, let version = arguments["version"]?.stringValue else {
            throw PluginError("scheduled_messages.fire needs {\"message_id\": string, \"version\": string}", permanent: true)
        }
        let fired = try await ScheduledMessagesService(environment: environment).fire(id, version: version)
        // The event's id is the version. A run that finds the message gone may be this task again after its worker died
        // between the firing and the attempt: the attempt is made here unless it was (or there is no such event).
        let delivery = try await WebhookDispatch(environment: environment).deliverFirstAttempt(version, logger: context.logger)
        guard let fired else {
            return ["skipped": "the message was deleted, fired already or moved since this timer was set", "delivery": .string(delivery)]
        }
        return ["event_id": .string(fired), "delivery": .string(delivery)]
    }
}

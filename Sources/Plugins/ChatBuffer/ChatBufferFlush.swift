// The task a buffer's timer publishes at its deadline: one flush of one user's buffer.
import IntegratorCore

/// Handles `chat_buffer.flush` with `{"user", "buffer"}`, the user's key and the buffer's id, then makes the flush's
/// first webhook attempt. Running it twice is harmless: the second run finds the buffer gone, and makes the attempt
/// only if the first run died before making it.
struct ChatBufferFlush: TaskHandler {
    static let taskName = "chat_buffer.flush"

    let name = Self.taskName
    let options: ChatBufferOptions

    /// For the flush's own transaction failing (the database unreachable); delivery retries are the webhook tenant's.
    var retryPolicy: RetryPolicy { RetryPolicy(maxAttempts: 10, baseDelay: 1, maxDelay: 60) }
    /// The flush's transaction, then the webhook's first attempt (up to its tenant's timeout, 120 s at most).
    var timeout: Duration { WebhookDelivery.attemptTimeout }

    func run(_ arguments: JSONValue, context: TaskContext) async throws -> JSONValue {
        let environment = try context.requireEnvironment()
        guard let user = arguments["user"]?.stringValue, let buffer = arguments["buffer"]?.stringValue else {
            throw PluginError("\(Self.taskName) needs the arguments user and buffer", permanent: true)
        }
        let outcome = try await ChatBufferService(environment: environment, options: options).flush(
            userKey: user, bufferID: buffer, firstAttempts: .byCaller)
        switch outcome {
        case .flushed(let eventID, let messages):
            context.logger.debug("chat buffer flushed", metadata: ["webhook.event_id": "\(eventID)", "messages": "\(messages)"])
            fallthrough
        case .skipped:
            // After a flush, and in a run that finds the buffer gone (perhaps this task again, its worker having died
            // between the flush and the attempt): the attempt is made here unless it was.
            try await WebhookDispatch(environment: environment).deliverFirstAttempt(
                ChatBufferService.eventID(bufferID: buffer), logger: context.logger)
        case .waiting(let retryAt):
            context.logger.warning(
                "a chat buffer cannot flush: no webhook URL is configured (set WEBHOOK_URL or PUT /api/v1/chat-buffer/config)",
                metadata: ["chat_buffer.buffer": "\(buffer)", "retry_at": "\(retryAt.apiString)"])
        case .postponed:
            break
        }
        return outcome.json
    }
}

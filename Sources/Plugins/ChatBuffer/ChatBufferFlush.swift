// The task a buffer's timer publishes at its deadline: one flush of one user's buffer.
import IntegratorCore

/// Handles `chat_buffer.flush` with `{"user", "buffer"}`, the user's key and the buffer's id. Running it twice is
/// harmless: the second run finds the buffer gone.
struct ChatBufferFlush: TaskHandler {
    static let taskName = "chat_buffer.flush"

    let name = Self.taskName
    let options: ChatBufferOptions

    /// For the flush's own transaction failing (the database unreachable); delivery retries are the webhook tenant's.
    var retryPolicy: RetryPolicy { RetryPolicy(maxAttempts: 10, baseDelay: 1, maxDelay: 60) }
    var timeout: Duration { .seconds(60) }

    func run(_ arguments: JSONValue, context: TaskContext) async throws -> JSONValue {
        let environment = try context.requireEnvironment()
        guard let user = arguments["user"]?.stringValue, let buffer = arguments["buffer"]?.stringValue else {
            throw PluginError("\(Self.taskName) needs the arguments user and buffer", permanent: true)
        }
        let outcome = try await ChatBufferService(environment: environment, options: options).flush(userKey: user, bufferID: buffer)
        switch outcome {
        case .flushed(let eventID, let messages):
            context.logger.debug("chat buffer flushed", metadata: ["webhook.event_id": "\(eventID)", "messages": "\(messages)"])
        case .waiting(let retryAt):
            context.logger.warning(
                "a chat buffer cannot flush: no webhook URL is configured (set WEBHOOK_URL or PUT /api/v1/chat-buffer/config)",
                metadata: ["chat_buffer.buffer": "\(buffer)", "retry_at": "\(retryAt.apiString)"])
        case .skipped, .postponed:
            break
        }
        return outcome.json
    }
}

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
        let outcome = try await ChatBufferFlushes.shared(in: environment, options: options).flushes.submit(
            ChatBufferService.FlushRequest(userKey: user, bufferID: buffer)
        ).get()
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

/// Flush tasks that run at the same time share one transaction: at a burst of deadlines (users who wrote at the same
/// time), five statements per flush kept the worker's slots busy while more flushes came due.
final class ChatBufferFlushes: Sendable {
    let flushes: BatchCall<ChatBufferService.FlushRequest, Result<ChatBufferFlushOutcome, any Error>>

    init(service: ChatBufferService) {
        flushes = BatchCall(maxBatch: 128) { requests in await Self.flush(requests, service: service) }
    }

    /// Flushes the buffers together; one outcome per request, in order. When that fails, each is tried on its own: a
    /// buffer that cannot be flushed (a message that does not open) must not hold back the others, and only its own
    /// task fails.
    static func flush(
        _ requests: [ChatBufferService.FlushRequest], service: ChatBufferService
    ) async -> [Result<ChatBufferFlushOutcome, any Error>] {
        do {
            return try await service.flush(requests, firstAttempts: .byCaller).map { .success($0) }
        } catch {
            guard requests.count > 1 else { return [.failure(error)] }
        }
        var results: [Result<ChatBufferFlushOutcome, any Error>] = []
        for request in requests {
            do {
                results.append(.success(try await service.flush([request], firstAttempts: .byCaller)[0]))
            } catch {
                results.append(.failure(error))
            }
        }
        return results
    }

    static func shared(in environment: PluginEnvironment, options: ChatBufferOptions) -> ChatBufferFlushes {
        environment.shared.object("chat-buffer.flushes") { ChatBufferFlushes(service: ChatBufferService(environment: environment, options: options)) }
    }
}

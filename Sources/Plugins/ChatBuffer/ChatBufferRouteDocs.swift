// The OpenAPI declarations of the chat buffer plugin's routes (the Redis Message Queue's `POST /api/message`).
import IntegratorCore

extension APIOperation {
    private typealias S = OpenAPISchema
    private static let tag = "chat-buffer"
    private static let seconds = S.integer(1...86_400)
    private static let configuration = S.record([
        "webhook_url": S.nullable(S.string), "source": S.nullable(S.string(oneOf: ["api", "environment"])), "tenant_id": S.string,
        "public": S.boolean,
    ])

    static let chatBufferMessage = APIOperation(
        "Buffer a user's message", tag: tag,
        description:
            "The user's messages are posted together once the user has been quiet for `ttl` seconds (at most `max_wait` after the first).",
        body: APIRequestBody(
            S.object(
                [
                    "user": ["anyOf": [S.string(minLength: 1), S.integer]], "message": S.any, "ttl": seconds, "max_wait": seconds,
                ], required: ["user", "message"], description: "Other fields are kept and sent with the flush.")),
        responses: [
            .ok(
                "Buffered.",
                S.record([
                    "success": S.boolean, "message": S.string, "user": ["anyOf": [S.string, S.number]], "buffered": S.integer,
                    "flush_at": S.dateTime,
                ]))
        ], errors: [503], links: [APILink("/api/v1/chat-buffer/buffers/{user}", parameter: "user", from: "/user")])
    static let chatBufferBuffer = APIOperation(
        "A user's buffer that has not been flushed yet", tag: tag,
        parameters: [.path("user", "The user, percent-encoded.", schema: S.string(minLength: 1))],
        responses: [
            .ok(
                "The buffer (never its messages).",
                S.record([
                    "user": S.string, "buffered": S.integer, "first_message_at": S.dateTime, "flush_at": S.dateTime,
                    "event_id": S.string,
                ]))
        ])
    static let chatBufferConfig = APIOperation(
        "Where flushes go", tag: tag, responses: [.ok("The webhook URL and where it came from.", configuration)])
    static let chatBufferConfigure = APIOperation(
        "Set or remove the webhook URL", tag: tag,
        body: APIRequestBody(
            S.object(["webhook_url": S.nullable(S.httpURL(maxLength: 2048))], required: ["webhook_url"], closed: true)),
        responses: [.ok("The configuration.", configuration)])
}

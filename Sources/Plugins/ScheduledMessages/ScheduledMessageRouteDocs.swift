// The OpenAPI declarations of the scheduled messages plugin's routes (the Scheduler API's paths).
import IntegratorCore

extension APIOperation {
    private typealias S = OpenAPISchema
    private static let tag = "scheduled-messages"
    private static let messageID = APIParameter.path(
        "message_id", "The message's id, percent-encoded (`%2B55…` for `+55…`).", schema: S.string(minLength: 1))
    private static let message = S.record(["id": S.string, "scheduleTo": S.string, "payload": S.any, "webhookUrl": S.string])
    private static let filter: [APIParameter] = [
        .query("prefix", "Ids that start with this (`prefix` or `contains` is required)."),
        .query("contains", "Ids that contain this."),
    ]
    private static let deleted = S.record(["deleted": S.integer, "messageIds": S.array(S.string)])

    static let scheduledMessageUpsert = APIOperation(
        "Schedule a message (or replace the one with this id)", tag: tag,
        body: APIRequestBody(
            S.object(
                [
                    "id": S.string(minLength: 1, maxLength: 512),
                    "scheduleTo": S.string(format: "date-time", description: "ISO 8601."),
                    "payload": S.any, "webhookUrl": S.httpURL(maxLength: 2048),
                ], required: ["id", "scheduleTo", "payload", "webhookUrl"])),
        responses: [.ok("Scheduled.", S.record(["status": S.string(oneOf: ["scheduled"]), "messageId": S.string]))], errors: [503],
        links: [APILink("/messages/{message_id}", parameter: "message_id", from: "/messageId")])
    static let scheduledMessageList = APIOperation(
        "Every pending message", tag: tag,
        responses: [
            .ok(
                "The messages and how many.",
                S.record([
                    "scheduledJobs": S.array(S.record(["messageId": S.string, "nextRun": S.string, "job": S.string])),
                    "count": S.integer,
                ]))
        ])
    static let scheduledMessageSearch = APIOperation(
        "Pending messages whose id matches", tag: tag, parameters: filter,
        responses: [
            .ok(
                "The matches and how many.",
                S.record(["messages": S.array(S.record(["nextRun": S.string], optional: [])), "count": S.integer]))
        ])
    static let scheduledMessageBulkDelete = APIOperation(
        "Delete pending messages whose id matches", tag: tag, parameters: filter, responses: [.ok("What was deleted.", deleted)])
    static let scheduledMessageBulkDeleteByPost = APIOperation(
        "Delete pending messages whose id matches (POST, for proxies that block DELETE)", tag: tag, parameters: filter,
        responses: [.ok("What was deleted.", deleted)])
    static let scheduledMessageGet = APIOperation(
        "One pending message", tag: tag, parameters: [messageID], responses: [.ok("The message.", message)], errors: [400])
    static let scheduledMessageDelete = APIOperation(
        "Delete a pending message", tag: tag, parameters: [messageID],
        responses: [.ok("Deleted.", S.record(["status": S.string(oneOf: ["deleted"]), "messageId": S.string]))], errors: [400])
    static let scheduledMessageRun = APIOperation(
        "Fire a pending message now", tag: tag, parameters: [messageID],
        responses: [
            .accepted("Fired.", S.record(["status": S.string(oneOf: ["fired"]), "messageId": S.string, "eventId": S.string]))
        ], errors: [400, 409, 503])
    static let scheduledMessageDeliveries = APIOperation(
        "The webhook events that delivered messages with this id", tag: tag, parameters: [messageID],
        responses: [
            .ok(
                "The firings, each with its delivery state.",
                S.record([
                    "messageId": S.string,
                    "deliveries": S.array(
                        S.record([
                            "eventId": S.string, "scheduleTo": S.string, "webhookUrl": S.string, "firedAt": S.dateTime,
                            "event": S.string,
                            "state": S.nullable(S.string),
                        ])),
                ]))
        ], errors: [400])
}

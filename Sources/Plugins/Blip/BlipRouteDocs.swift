// The OpenAPI declarations of the BLiP plugin's routes.
import IntegratorCore

extension APIOperation {
    private typealias S = OpenAPISchema
    private static let tag = "blip"
    private static let notification = S.record(
        [
            "id": S.string, "integration": S.nullable(S.string), "external_id": S.nullable(S.string), "phone": S.string,
            "template": S.string,
            "namespace": S.string, "language": S.string, "parameters": S.array(S.string),
            "status": S.string(oneOf: BlipStatus.allCases.map(\.rawValue)), "message_id": S.string, "attempts": S.integer,
            "last_error": S.nullable(S.string), "next_attempt_at": S.nullable(S.dateTime), "sent_at": S.nullable(S.dateTime),
            "delivered_at": S.nullable(S.dateTime), "read_at": S.nullable(S.dateTime), "created_at": S.dateTime,
            "updated_at": S.dateTime,
            "duplicate": S.boolean,
        ], optional: ["duplicate"])
    private static let notificationInput = S.object(
        [
            "phone": S.string(
                minLength: 1, maxLength: 40, description: "A Brazilian number, in any usual writing.",
                examples: ["+55 11 98765-4321", "(21) 3456-7890"]),
            "template": S.string(minLength: 1, maxLength: 512),
            "namespace": S.string(minLength: 1, maxLength: 200), "language": S.string(minLength: 2, maxLength: 20),
            "parameters": ["type": "array", "items": S.string, "maxItems": .number(Double(BlipService.maxParameters))],
            "integration": S.string(minLength: 1, maxLength: 100),
            "external_id": S.string(
                minLength: 1, maxLength: 200, description: "A second notification with the same id is a duplicate."),
        ], required: ["phone", "template", "namespace"], closed: true)

    static let blipCreate = APIOperation(
        "Queue a WhatsApp template notification", tag: tag, body: APIRequestBody(notificationInput),
        responses: [
            .created("Queued.", notification),
            .ok("A duplicate of an earlier notification (same external_id): that one.", notification),
        ], links: [.id(under: "/api/v1/notifications")])
    static let blipCreateBulk = APIOperation(
        "Queue many notifications (all or none)", tag: tag,
        body: APIRequestBody(
            S.object(
                [
                    "notifications": [
                        "type": "array", "items": notificationInput, "minItems": 1,
                        "maxItems": .number(Double(BlipService.maxBulk)),
                    ]
                ],
                required: ["notifications"], closed: true)),
        responses: [.created("Queued, in order.", S.items(notification))])
    static let blipList = APIOperation(
        "List notifications", tag: tag,
        parameters: [
            .query("status", "Only notifications in this status.", schema: S.string(oneOf: BlipStatus.allCases.map(\.rawValue))),
            .query("phone", "Only notifications to this phone."),
        ] + APIParameter.paging,
        responses: [.ok("A page of notifications.", S.page(of: notification))])
    static let blipGet = APIOperation("One notification", tag: tag, responses: [.ok("The notification.", notification)])
    static let blipStatus = APIOperation(
        "BLiP's message status callback", tag: tag,
        description: "Authenticated by the `blip` credentials' status secret (`X-Blip-Secret` or `?secret=`), not by a token.",
        parameters: [
            .query("credentials", "The id of the `blip` credentials whose status secret is sent."),
            .header("X-Blip-Secret", "The credentials' status secret."),
            .query("secret", "The status secret, when the header cannot be set."),
        ],
        body: APIRequestBody(
            S.object(
                [
                    "id": S.string(minLength: 1, maxLength: 200), "event": S.string(oneOf: BlipService.events.sorted()),
                    "reason": S.any,
                ],
                required: ["id", "event"])),
        responses: [
            .ok(
                "The notification's status now, or null for a message this plugin did not send.",
                S.record(["message_id": S.string, "event": S.string, "status": S.nullable(S.string)]))
        ], errors: [401])
}

// The OpenAPI declarations of the webhooks plugin's routes (WebhooksPlugin.swift registers each with one of these).
import IntegratorCore

extension APIOperation {
    private typealias S = OpenAPISchema
    private static let tag = "webhooks"

    static let webhookTenant = S.record(
        [
            "tenant_id": S.string, "base_url": S.string, "secret_key": S.string(description: "Always masked."),
            "previous_secret_expires_at": S.nullable(S.dateTime),
            "default_headers": ["type": "object", "additionalProperties": S.string],
            "retry_policy": webhookRetryPolicy, "timeout_seconds": S.integer, "enabled_events": S.array(S.string),
            "active": S.boolean, "disabled_reason": S.nullable(S.string),
            "auth_config": S.nullable(S.record(["auth_type": S.string, "token": S.string, "header_name": S.nullable(S.string)])),
        ], description: "A tenant's configuration, secrets masked.")
    private static let webhookRetryPolicy = S.record([
        "max_retries": S.integer, "initial_delay_seconds": S.number, "backoff_multiplier": S.number, "max_delay_seconds": S.number,
        "jitter": S.boolean,
    ])
    private static let webhookEvent = S.record([
        "id": S.string, "tenant_id": S.string, "event_type": S.string, "payload": S.any, "severity": S.string, "context": S.any,
        "target_url": S.nullable(S.string), "created_at": S.dateTime,
    ])
    private static let webhookAttempt = S.record([
        "attempt": S.integer, "attempted_at": S.dateTime, "status_code": S.nullable(S.integer), "duration_ms": S.number,
        "response_body": S.nullable(S.string), "error": S.nullable(S.string),
    ])
    private static let sendResult = S.record(
        ["event_id": S.string, "deliveries": S.integer, "reason": S.string, "duplicate": S.boolean],
        optional: ["reason", "duplicate"])
    private static func range(_ range: ClosedRange<Double>) -> JSONValue {
        ["type": "number", "minimum": .number(range.lowerBound), "maximum": .number(range.upperBound)]
    }
    private static let tenantID = APIParameter.path("tenant_id", "The tenant's id.")
    private static let eventID = APIParameter.path("event_id", "The webhook event's id (its `webhook-id`).")
    private static let headers: JSONValue = ["type": "object", "additionalProperties": S.string(maxLength: 4096)]
    static let sendBody = S.object(
        [
            "tenant_id": S.string(minLength: 1), "event_type": S.string(minLength: 1, maxLength: 200), "payload": S.any,
            "target_url": S.httpURL(maxLength: 2000), "custom_headers": headers,
            "severity": S.string(oneOf: WebhookSeverity.allCases.map(\.rawValue)), "context": S.anyObject,
            "event_id": S.string(description: "An idempotency key when no Idempotency-Key header is sent."),
        ], required: ["tenant_id", "event_type", "payload"], closed: true)

    static let webhooksConfigure = APIOperation(
        "Create or replace a tenant's configuration", tag: tag,
        body: APIRequestBody(
            S.object(
                [
                    "tenant_id": S.string(minLength: 1, maxLength: 200, pattern: "^[A-Za-z0-9._:-]+$"),
                    "base_url": S.httpURL(maxLength: 2000),
                    "secret_key": S.string(minLength: 1, maxLength: 500, description: "Required when the tenant is new."),
                    "default_headers": headers,
                    "retry_policy": S.object(
                        [
                            "max_retries": S.integer(WebhookConfiguration.maxRetries),
                            "initial_delay_seconds": range(WebhookConfiguration.delaySeconds),
                            "backoff_multiplier": range(WebhookConfiguration.backoffMultipliers),
                            "max_delay_seconds": range(WebhookConfiguration.delaySeconds), "jitter": S.boolean,
                        ], closed: true),
                    "timeout_seconds": S.integer(WebhookConfiguration.timeoutSeconds),
                    "enabled_events": S.array(S.string(minLength: 1, maxLength: 200)),
                    "active": S.boolean,
                    "auth_config": S.nullable(
                        S.object(
                            [
                                "auth_type": S.string(oneOf: ["Bearer", "ApiKey", "Basic"]), "token": S.string,
                                "header_name": S.string,
                            ],
                            closed: true)),
                ], required: ["tenant_id", "base_url"], closed: true)),
        responses: [.ok("The configuration, secrets masked.", webhookTenant)], errors: [409],
        links: [
            APILink("/api/v1/webhooks/config/{tenant_id}", parameter: "tenant_id", from: "/tenant_id"),
            APILink("/api/v1/webhooks/metrics/{tenant_id}", parameter: "tenant_id", from: "/tenant_id"),
        ])
    static let webhooksConfigs = APIOperation(
        "List tenants' configurations", tag: tag, parameters: APIParameter.paging,
        responses: [.ok("A page of configurations.", S.page(of: webhookTenant))])
    static let webhooksDeleteTenant = APIOperation(
        "Delete a tenant with its events", tag: tag, parameters: [tenantID], responses: [.noContent("Deleted.")], errors: [409])
    static let webhooksTenantSecret = APIOperation(
        "A tenant's signing secret", tag: tag, description: "For receivers that verify signatures.", parameters: [tenantID],
        responses: [.ok("The secret.", S.record(["tenant_id": S.string, "secret_key": S.string]))])
    static let webhooksSend = APIOperation(
        "Send an event to a tenant", tag: tag,
        parameters: [
            .header(
                "Idempotency-Key", "Sends with the same key within the window are one event.",
                schema: S.string(minLength: 1, maxLength: 200))
        ],
        body: APIRequestBody(sendBody),
        responses: [.accepted("Stored and enqueued.", sendResult), .ok("A duplicate of an earlier send: that event.", sendResult)],
        errors: [404, 409, 503],
        links: [
            APILink("/api/v1/webhooks/events/{event_id}", parameter: "event_id", from: "/event_id"),
            APILink("/api/v1/webhooks/retry/{event_id}", parameter: "event_id", from: "/event_id"),
        ])
    static let webhooksSendBatch = APIOperation(
        "Send many events", tag: tag,
        body: APIRequestBody(S.object(["events": S.array(sendBody)], required: ["events"], closed: true)),
        responses: [
            .accepted(
                "One result per event, in order: a send result or an error.",
                S.record(["results": S.array(["anyOf": [sendResult, S.ref("Error")]])]))
        ], errors: [404, 409, 503])
    static let webhooksEvent = APIOperation(
        "An event with its delivery and every attempt", tag: tag, parameters: [eventID],
        responses: [
            .ok(
                "The event.",
                S.record([
                    "event": webhookEvent,
                    "deliveries": S.array(
                        S.record([
                            "id": S.string, "url": S.nullable(S.string), "state": S.string, "attempt_count": S.integer,
                            "next_attempt_at": S.nullable(S.dateTime), "failure_reason": S.nullable(S.string),
                            "attempts": S.array(webhookAttempt),
                        ])),
                ]))
        ])
    static let webhooksMetrics = APIOperation(
        "A tenant's delivery figures", tag: tag, parameters: [tenantID],
        responses: [
            .ok(
                "The figures.",
                S.record([
                    "total_events": S.integer, "successful_events": S.integer, "failed_events": S.integer,
                    "pending_retries": S.integer,
                    "dead_letter_count": S.integer, "avg_response_time_ms": S.number, "last_updated": S.dateTime,
                ]))
        ])
    static let webhooksDeadLetters = APIOperation(
        "A tenant's dead letters", tag: tag,
        parameters: [.query("tenant_id", "The tenant.", schema: S.string(minLength: 1), required: true)] + APIParameter.paging,
        responses: [
            .ok(
                "A page of dead events.",
                S.page(
                    of: S.record([
                        "event": webhookEvent, "attempts": S.array(webhookAttempt), "failed_at": S.nullable(S.dateTime),
                        "failure_reason": S.nullable(S.string), "can_retry": S.boolean,
                    ])))
        ], errors: [404])
    static let webhooksRetry = APIOperation(
        "Redrive one dead event", tag: tag, parameters: [eventID],
        responses: [.accepted("Pending again.", S.record(["event_id": S.string, "state": S.string]))], errors: [409, 503])
    static let webhooksRedrive = APIOperation(
        "Redrive a tenant's dead events", tag: tag,
        body: APIRequestBody(
            S.object(
                [
                    "tenant_id": S.string(minLength: 1),
                    "since": S.string(format: "date-time", description: "Only events that died since."),
                ],
                required: ["tenant_id"], closed: true)),
        responses: [.accepted("How many were redriven.", S.record(["redriven": S.integer]))], errors: [404, 409, 503])
    static let webhooksReceive = APIOperation(
        "Verify a received webhook's signatures", tag: tag,
        description:
            "Checks `X-Webhook-Signature`, or `webhook-id`, `webhook-timestamp` and `webhook-signature`, over the raw body.",
        parameters: [
            .header("X-Tenant-ID", "The tenant whose secret signed the body (or `?tenant_id=`)."),
            .query("tenant_id", "The tenant, when X-Tenant-ID is not sent."),
            .header("X-Webhook-Signature", "`sha256=<hex>` over the body."), .header("webhook-id", "Standard Webhooks id."),
            .header("webhook-timestamp", "Standard Webhooks timestamp."),
            .header("webhook-signature", "Standard Webhooks signatures."),
        ],
        body: APIRequestBody(S.any, description: "The body exactly as received."),
        responses: [
            .ok(
                "The verdict.",
                S.record([
                    "valid": S.boolean, "tenant_id": S.string,
                    "schemes": S.record(["sha256": S.nullable(S.boolean), "standard_webhooks": S.nullable(S.boolean)]),
                ]))
        ], errors: [404])
}

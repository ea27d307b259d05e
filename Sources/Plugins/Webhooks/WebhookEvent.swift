// One event sent to one tenant, with its delivery state, and the record of each attempt.
import Foundation
import IntegratorCore

/// The seed's `severity`; it sets the delivery task's priority.
enum WebhookSeverity: String, Sendable, CaseIterable {
    case low = "Low"
    case medium = "Medium"
    case high = "High"
    case critical = "Critical"

    var priority: Int {
        switch self {
        case .low: 2
        case .medium: 5
        case .high: 7
        case .critical: 9
        }
    }
}

enum WebhookDeliveryState: String, Sendable {
    /// Waiting for its first attempt or a retry.
    case pending
    case succeeded
    /// Retries spent, the endpoint gone (410) or inactive: in the dead-letter list until redriven.
    case dead
    /// Stored but not delivered: no `enabled_events` pattern matched.
    case skipped
}

struct WebhookEvent: Sendable {
    var id: String
    var tenantID: String
    var eventType: String
    var severity: WebhookSeverity
    var targetURL: String?
    var customHeaders: [String: String]
    /// The exact bytes every attempt posts (and signs), fixed when the event is stored.
    var body: String
    /// The `Idempotency-Key` (or `event_id`) it was sent under, while its window lasts.
    var idempotencyKey: String? = nil
    var state: WebhookDeliveryState
    var attemptCount: Int
    /// Attempts since the event was sent or last redriven: what the retry budget counts.
    var roundAttempts: Int
    var nextAttemptAt: Date?
    var failureReason: String?
    var failedAt: Date?
    var createdAt: Date
    var updatedAt: Date

    /// The body of a new event: what the receiver gets, in the seed's terms.
    static func body(
        id: String, tenantID: String, eventType: String, severity: WebhookSeverity, payload: JSONValue, context: JSONValue,
        createdAt: Date
    ) -> String {
        JSONValue.object([
            "event_id": .string(id), "event_type": .string(eventType), "tenant_id": .string(tenantID),
            "timestamp": .string(createdAt.apiString), "severity": .string(severity.rawValue), "payload": payload,
            "context": context,
        ]).encodedString()
    }

    /// The event as the API shows it.
    var json: JSONValue {
        let sent = (try? JSONValue.parse(body)) ?? .null
        return [
            "id": .string(id), "tenant_id": .string(tenantID), "event_type": .string(eventType),
            "payload": sent["payload"] ?? .null, "severity": .string(severity.rawValue), "context": sent["context"] ?? .null,
            "target_url": targetURL.map(JSONValue.string) ?? .null, "created_at": .string(createdAt.apiString),
        ]
    }
}

/// One POST to the endpoint and how it ended.
struct WebhookAttempt: Sendable {
    var attempt: Int
    var attemptedAt: Date
    /// `nil` when no response came (connection refused, timeout, refused address).
    var statusCode: Int?
    var durationMs: Double
    /// The start of the response body (at most ``WebhookAttempt/bodyLimit`` bytes).
    var responseBody: String?
    var error: String?

    static let bodyLimit = 4096

    var json: JSONValue {
        [
            "attempt": .number(Double(attempt)), "attempted_at": .string(attemptedAt.apiString),
            "status_code": statusCode.map { .number(Double($0)) } ?? .null, "duration_ms": .number((durationMs * 1000).rounded() / 1000),
            "response_body": responseBody.map(JSONValue.string) ?? .null, "error": error.map(JSONValue.string) ?? .null,
        ]
    }

    /// The first ``bodyLimit`` bytes of `data` as text, cut at a character boundary.
    static func excerpt(_ data: Data) -> String? {
        guard !data.isEmpty else { return nil }
        var end = min(data.count, bodyLimit)
        // A UTF-8 continuation byte (10xxxxxx) at the cut means a character was split; back up to its start.
        while end < data.count, end > 0, data[data.startIndex + end] & 0xC0 == 0x80 { end -= 1 }
        return String(decoding: data.prefix(end), as: UTF8.self)
    }
}

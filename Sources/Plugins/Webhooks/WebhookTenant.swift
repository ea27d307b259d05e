// One tenant's webhook endpoint: where deliveries go, how they are signed and authenticated, and how they are retried.
import Foundation
import IntegratorCore

/// How failed deliveries of one tenant are retried (the seed's `retry_policy`).
struct WebhookRetryPolicy: Sendable, Equatable {
    /// Retries after the first attempt: 2 means at most 3 attempts.
    var maxRetries = 5
    var initialDelay: Double = 1
    var backoffMultiplier: Double = 2
    var maxDelay: Double = 300
    /// Full jitter: each delay is drawn uniformly from zero to the computed one, so endpoints that failed together do
    /// not get their retries all at once.
    var jitter = true

    /// Seconds before retry number `retry` (1 for the first retry). An endpoint's `Retry-After` wins over the backoff
    /// (without jitter: it asked for that moment), capped like the backoff at ``maxDelay``.
    /// - Parameter unit: a number in 0..<1 drawn by the caller, so tests can fix it.
    func delay(beforeRetry retry: Int, retryAfter: Double?, unit: Double) -> Double {
        if let retryAfter { return min(max(retryAfter, 0), maxDelay) }
        let exponential = initialDelay * pow(backoffMultiplier, Double(max(retry - 1, 0)))
        let capped = min(exponential.isFinite ? exponential : maxDelay, maxDelay)
        return jitter ? capped * unit : capped
    }

    var json: JSONValue {
        [
            "max_retries": .number(Double(maxRetries)), "initial_delay_seconds": .number(initialDelay),
            "backoff_multiplier": .number(backoffMultiplier), "max_delay_seconds": .number(maxDelay), "jitter": .bool(jitter),
        ]
    }
}

/// The seed's `auth_config.auth_type`.
enum WebhookAuthType: String, Sendable, CaseIterable {
    case bearer = "Bearer"
    case apiKey = "ApiKey"
    case basic = "Basic"
}

/// The secret parts of a tenant, stored sealed in one column and never shown: printing one (or a tenant holding it)
/// shows masks.
struct WebhookTenantSecrets: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible {
    var secretKey: String
    /// The key before the last change, still signing until ``WebhookTenant/previousSecretExpiresAt``.
    var previousSecretKey: String?
    var authToken: String?

    var description: String { "WebhookTenantSecrets(\(Secret.mask))" }
    var debugDescription: String { description }

    var values: [String: JSONValue] {
        var values: [String: JSONValue] = ["secret_key": .string(secretKey)]
        if let previousSecretKey { values["previous_secret_key"] = .string(previousSecretKey) }
        if let authToken { values["auth_token"] = .string(authToken) }
        return values
    }

    init(secretKey: String, previousSecretKey: String? = nil, authToken: String? = nil) {
        self.secretKey = secretKey
        self.previousSecretKey = previousSecretKey
        self.authToken = authToken
    }

    init(values: [String: JSONValue]) throws {
        guard let secretKey = values["secret_key"]?.stringValue else {
            throw PluginError("a stored webhook tenant has no secret key", permanent: true)
        }
        self.init(
            secretKey: secretKey, previousSecretKey: values["previous_secret_key"]?.stringValue,
            authToken: values["auth_token"]?.stringValue)
    }
}

struct WebhookTenant: Sendable {
    var tenantID: String
    var baseURL: String
    var defaultHeaders: [String: String]
    var retry: WebhookRetryPolicy
    var timeoutSeconds: Int
    var enabledEvents: [String]
    var active: Bool
    /// Why the endpoint was deactivated (410 Gone, or failing for days); cleared when it is activated again.
    var disabledReason: String?
    var authType: WebhookAuthType?
    var authHeaderName: String?
    var secrets: WebhookTenantSecrets
    var previousSecretExpiresAt: Date?
    /// When the current run of failed deliveries began; `nil` after a success.
    var failingSince: Date?
    /// The plugin whose events this tenant carries (see ``WebhookDispatch``), or `nil` for a tenant configured through
    /// the API. An owned tenant is never switched off by its deliveries' failures: each event has its own URL.
    var owner: String? = nil
    var createdAt: Date
    var updatedAt: Date

    /// The secrets that sign a delivery at `now`: the current one, and the previous one during its grace period.
    func signingSecrets(at now: Date) -> [String] {
        guard let previous = secrets.previousSecretKey, let expires = previousSecretExpiresAt, now < expires,
            previous != secrets.secretKey
        else { return [secrets.secretKey] }
        return [secrets.secretKey, previous]
    }

    /// Whether an event of `type` is delivered to this tenant.
    func accepts(eventType type: String) -> Bool {
        EventPattern.matches(enabledEvents, type)
    }

    /// The API's view: secrets masked.
    var json: JSONValue {
        var auth: JSONValue = .null
        if let authType {
            auth = [
                "auth_type": .string(authType.rawValue), "token": .string(Secret.mask),
                "header_name": authHeaderName.map(JSONValue.string) ?? .null,
            ]
        }
        return [
            "tenant_id": .string(tenantID),
            "base_url": .string(baseURL),
            "secret_key": .string(Secret.mask),
            "previous_secret_expires_at": previousSecretExpiresAt.map { .string($0.apiString) } ?? .null,
            "default_headers": .object(defaultHeaders.mapValues(JSONValue.string)),
            "retry_policy": retry.json,
            "timeout_seconds": .number(Double(timeoutSeconds)),
            "enabled_events": .array(enabledEvents.map(JSONValue.string)),
            "active": .bool(active),
            "disabled_reason": disabledReason.map(JSONValue.string) ?? .null,
            "auth_config": auth,
            "owner": owner.map(JSONValue.string) ?? .null,
            "created_at": .string(createdAt.apiString),
            "updated_at": .string(updatedAt.apiString),
        ]
    }
}

/// `enabled_events` patterns: `*` matches every type, `user.*` every type that starts with `user.`, anything else
/// only itself.
enum EventPattern {
    static func matches(_ patterns: [String], _ type: String) -> Bool {
        patterns.contains { matches($0, type) }
    }

    static func matches(_ pattern: String, _ type: String) -> Bool {
        if pattern == "*" { return true }
        if pattern.hasSuffix(".*") { return type.hasPrefix(pattern.dropLast()) }
        return pattern == type
    }
}

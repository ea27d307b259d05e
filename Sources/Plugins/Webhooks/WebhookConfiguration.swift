// Reading `POST /api/v1/webhooks/configure`: the seed's fields, its defaults, and every problem named by field.
import Foundation
import IntegratorCore

enum WebhookConfiguration {
    static let maxRetries = 0...50
    static let delaySeconds = 0.0...86_400
    static let backoffMultipliers = 1.0...10
    static let timeoutSeconds = 1...120
    /// A changed secret keeps signing beside the new one this long, so receivers can switch without dropping deliveries.
    static let secretGracePeriod: TimeInterval = 24 * 3600

    /// The `tenant_id` of a configure body, read first to find the tenant it updates.
    static func tenantID(in body: JSONValue) throws(ValidationFailure) -> String {
        var input = try InputObject(body)
        let id = input.string("tenant_id", required: true)
        if let id, !isWellFormedTenantID(id) { input.addIssue("tenant_id", tenantIDRule) }
        guard let id, input.issues.isEmpty else { throw ValidationFailure(input.issues) }
        return id
    }

    static let tenantIDRule = "must be 1 to 200 letters, digits, '.', '_', ':' or '-'"

    static func isWellFormedTenantID(_ id: String) -> Bool {
        (1...200).contains(id.utf8.count)
            && id.unicodeScalars.allSatisfy { $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "._:-".unicodeScalars.contains($0)) }
    }

    /// The tenant `body` describes. Omitted fields take the seed's defaults, except the secrets: on an update, an
    /// omitted `secret_key` (or `auth_config.token` with the same `auth_type`) keeps the stored one.
    static func tenant(from body: JSONValue, existing: WebhookTenant?, now: Date) throws(ValidationFailure) -> WebhookTenant {
        var input = try InputObject(body)
        let tenantID = input.string("tenant_id", required: true) ?? ""
        let baseURL = input.string("base_url", required: true, length: 1...2000)
        if let baseURL, let problem = urlProblem(baseURL) { input.addIssue("base_url", problem) }
        let secretKey = input.string("secret_key", required: existing == nil, length: 1...500)
        let defaultHeaders = headers(input.raw("default_headers"), field: "default_headers", into: &input)
        let retry = retryPolicy(input.raw("retry_policy"), into: &input)
        let timeout = input.integer("timeout_seconds", range: timeoutSeconds) ?? 30
        let enabledEvents = patterns(input.raw("enabled_events"), into: &input)
        let active = input.bool("active") ?? true
        let auth = authentication(input.raw("auth_config"), existing: existing, into: &input)
        try input.finish()

        var secrets = WebhookTenantSecrets(
            secretKey: secretKey ?? existing?.secrets.secretKey ?? "", previousSecretKey: existing?.secrets.previousSecretKey,
            authToken: auth?.token)
        var previousExpires = existing?.previousSecretExpiresAt
        if let existing, let secretKey, secretKey != existing.secrets.secretKey {
            secrets.previousSecretKey = existing.secrets.secretKey
            previousExpires = now.addingTimeInterval(secretGracePeriod)
        }
        // Activating an endpoint again (the way back after a 410 or days of failures) clears why it was off.
        let keepsReason = existing.map { !$0.active && !active } ?? false
        return WebhookTenant(
            tenantID: tenantID, baseURL: baseURL ?? "", defaultHeaders: defaultHeaders, retry: retry, timeoutSeconds: timeout,
            enabledEvents: enabledEvents, active: active,
            disabledReason: keepsReason ? existing?.disabledReason : nil,
            authType: auth?.type, authHeaderName: auth?.headerName, secrets: secrets, previousSecretExpiresAt: previousExpires,
            failingSince: active && existing?.active == false ? nil : existing?.failingSince, owner: existing?.owner,
            createdAt: existing?.createdAt ?? now, updatedAt: now)
    }

    /// Why `text` is not an http(s) URL with a host, or `nil` when it is one.
    static func urlProblem(_ text: String) -> String? {
        guard !text.contains(where: \.isWhitespace), let components = URLComponents(string: text), let scheme = components.scheme
        else { return "must be an absolute http or https URL" }
        guard ["http", "https"].contains(scheme.lowercased()) else { return "must use http or https, not \(scheme)" }
        guard let host = components.host, !host.isEmpty else { return "must name a host" }
        return nil
    }

    /// A JSON object of header names to string values. Names must be HTTP tokens and values free of line breaks, so a
    /// header can never smuggle another one in.
    static func headers(_ value: JSONValue?, field: String, into input: inout InputObject) -> [String: String] {
        guard let value, value != .null else { return [:] }
        guard let members = value.objectValue else {
            input.addIssue(field, "must be an object of header names to strings, got \(value.typeName)")
            return [:]
        }
        var headers: [String: String] = [:]
        for (name, headerValue) in members.sorted(by: { $0.key < $1.key }) {
            guard isToken(name) else {
                input.addIssue("\(field).\(name)", "is not a valid header name")
                continue
            }
            guard let text = headerValue.stringValue, isHeaderValue(text), text.utf8.count <= 4096 else {
                input.addIssue("\(field).\(name)", "must be a string of at most 4096 bytes without line breaks or control characters")
                continue
            }
            headers[name] = text
        }
        if headers.count > 50 { input.addIssue(field, "must have at most 50 headers") }
        return headers
    }

    /// Checked by Unicode scalar: `"\r\n"` is one `Character` in Swift, so a per-character test for `"\n"` misses it.
    static func isHeaderValue(_ text: String) -> Bool {
        !text.unicodeScalars.contains { ($0.value < 0x20 && $0 != "\t") || $0.value == 0x7F }
    }

    static func isToken(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 200
            && name.unicodeScalars.allSatisfy { $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "!#$%&'*+-.^_`|~".unicodeScalars.contains($0)) }
    }

    private static func retryPolicy(_ value: JSONValue?, into input: inout InputObject) -> WebhookRetryPolicy {
        var policy = WebhookRetryPolicy()
        guard let value, value != .null else { return policy }
        guard value.objectValue != nil, var nested = try? InputObject(value, path: "retry_policy") else {
            input.addIssue("retry_policy", "must be an object, got \(value.typeName)")
            return policy
        }
        policy.maxRetries = nested.integer("max_retries", range: maxRetries) ?? policy.maxRetries
        policy.initialDelay = number(&nested, "initial_delay_seconds", in: delaySeconds) ?? policy.initialDelay
        policy.backoffMultiplier = number(&nested, "backoff_multiplier", in: backoffMultipliers) ?? policy.backoffMultiplier
        policy.maxDelay = number(&nested, "max_delay_seconds", in: delaySeconds) ?? policy.maxDelay
        policy.jitter = nested.bool("jitter") ?? policy.jitter
        do { try nested.finish() } catch { input.add(error.issues) }
        return policy
    }

    private static func number(_ input: inout InputObject, _ key: String, in range: ClosedRange<Double>) -> Double? {
        guard let value = input.raw(key), value != .null else { return nil }
        guard let number = value.doubleValue else {
            input.addIssue(key, "must be a number, got \(value.typeName)")
            return nil
        }
        guard range.contains(number) else {
            input.addIssue(key, "must be from \(format(range.lowerBound)) to \(format(range.upperBound))")
            return nil
        }
        return number
    }

    private static func format(_ number: Double) -> String {
        number == number.rounded() ? String(Int(number)) : String(number)
    }

    private static func patterns(_ value: JSONValue?, into input: inout InputObject) -> [String] {
        guard let value, value != .null else { return ["*"] }
        guard let items = value.arrayValue, !items.isEmpty else {
            input.addIssue("enabled_events", "must be a non-empty array of event types or patterns such as \"user.*\"")
            return []
        }
        var patterns: [String] = []
        for (index, item) in items.enumerated() {
            guard let text = item.stringValue, (1...200).contains(text.count), !text.contains(where: \.isWhitespace) else {
                input.addIssue("enabled_events.\(index)", "must be an event type or pattern of 1 to 200 characters without spaces")
                continue
            }
            if text.dropLast(text.hasSuffix(".*") ? 2 : 0).contains("*") && text != "*" {
                input.addIssue("enabled_events.\(index)", "may use '*' only alone or as a final \".*\"")
                continue
            }
            patterns.append(text)
        }
        return patterns
    }

    private struct Authentication {
        var type: WebhookAuthType
        var headerName: String?
        var token: String
    }

    private static func authentication(_ value: JSONValue?, existing: WebhookTenant?, into input: inout InputObject) -> Authentication? {
        guard let value, value != .null else { return nil }
        guard value.objectValue != nil, var nested = try? InputObject(value, path: "auth_config") else {
            input.addIssue("auth_config", "must be an object, got \(value.typeName)")
            return nil
        }
        let typeName = nested.string("auth_type", required: true)
        let type = typeName.flatMap(WebhookAuthType.init(rawValue:))
        if typeName != nil, type == nil {
            nested.addIssue("auth_type", "must be one of \(WebhookAuthType.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let keepsToken = type != nil && existing?.authType == type && existing?.secrets.authToken != nil
        let token = nested.string("token", required: !keepsToken, length: 1...2000) ?? (keepsToken ? existing?.secrets.authToken : nil)
        let headerName = nested.string("header_name")
        if let headerName, !isToken(headerName) { nested.addIssue("header_name", "is not a valid header name") }
        if type == .apiKey, headerName == nil { nested.addIssue("header_name", "is required for ApiKey (the header that carries the key)") }
        if type == .basic, let token, !token.contains(":") { nested.addIssue("token", "must be user:password for Basic") }
        if let token, !isHeaderValue(token) { nested.addIssue("token", "must not contain line breaks or control characters") }
        do { try nested.finish() } catch { input.add(error.issues) }
        guard let type, let token else { return nil }
        return Authentication(type: type, headerName: headerName, token: token)
    }
}

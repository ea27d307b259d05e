// The webhooks use cases behind the API (and the benchmark): tenants, sends, the event log, metrics, dead letters.
import Foundation
import IntegratorCore
import SQLKit

/// Settings of the webhooks plugin that are not per tenant.
public struct WebhooksOptions: Sendable {
    /// An endpoint that has failed every delivery this long is deactivated. Default 5 days.
    public var disableAfter: TimeInterval
    /// The largest `payload` a send accepts, encoded as JSON. Default 256 KiB.
    public var maxPayloadBytes: Int
    /// How long an `Idempotency-Key` (or `event_id`) answers with its first send. Default 24 hours.
    public var idempotencyWindow: TimeInterval

    public init(disableAfter: TimeInterval = 5 * 86_400, maxPayloadBytes: Int = 256 << 10, idempotencyWindow: TimeInterval = 86_400) {
        self.disableAfter = disableAfter
        self.maxPayloadBytes = maxPayloadBytes
        self.idempotencyWindow = idempotencyWindow
    }

    /// From `INTEGRATOR_WEBHOOKS_DISABLE_AFTER_DAYS` (a positive number of days), defaults otherwise.
    public static func fromEnvironment(_ variables: [String: String] = ProcessInfo.processInfo.environment) throws -> WebhooksOptions {
        var options = WebhooksOptions()
        if let text = variables["INTEGRATOR_WEBHOOKS_DISABLE_AFTER_DAYS"] {
            guard let days = Double(text), days > 0, days <= 365 else {
                throw ConfigurationError(variable: "INTEGRATOR_WEBHOOKS_DISABLE_AFTER_DAYS", expected: "a number of days greater than 0 and at most 365, such as 5")
            }
            options.disableAfter = days * 86_400
        }
        return options
    }
}

/// What a send did.
public struct WebhookSendResult: Sendable, Equatable {
    public var eventID: String
    /// 1, or 0 when none of the tenant's `enabled_events` matches the type (then ``reason`` says so).
    public var deliveries: Int
    public var reason: String?
    /// The same idempotency key was sent before within the window: this is that first send's event, sent once.
    public var duplicate: Bool

    public var json: JSONValue {
        var object: [String: JSONValue] = ["event_id": .string(eventID), "deliveries": .number(Double(deliveries))]
        if let reason { object["reason"] = .string(reason) }
        if duplicate { object["duplicate"] = true }
        return .object(object)
    }
}

public struct WebhooksService: Sendable {
    let environment: PluginEnvironment
    let options: WebhooksOptions
    let store: WebhookStore

    public init(environment: PluginEnvironment, options: WebhooksOptions = WebhooksOptions()) {
        self.environment = environment
        self.options = options
        self.store = WebhookStore(secrets: environment.secrets)
    }

    // MARK: Tenants

    /// Creates or replaces a tenant's configuration; returns its view (secrets masked).
    public func configure(_ body: JSONValue) async throws -> JSONValue {
        let tenantID = try WebhookConfiguration.tenantID(in: body)
        let now = environment.clock.now()
        let store = self.store
        return try await environment.transaction { transaction in
            let existing = try await store.tenant(tenantID, transaction.sql)
            let tenant = try WebhookConfiguration.tenant(from: body, existing: existing, now: now)
            try await store.save(tenant, transaction.sql)
            return tenant.json
        }
    }

    public func tenants(page: PageRequest) async throws -> Page<JSONValue> {
        let store = self.store
        let tenants = try await environment.database.withSQL { sql in
            try await store.tenants(after: page.after, limit: page.limit + 1, sql)
        }
        return Page(overfetched: tenants, limit: page.limit, key: \.tenantID).map(\.json)
    }

    public func deleteTenant(_ tenantID: String) async throws {
        let store = self.store
        let timers = environment.timers
        let deleted = try await environment.transaction { transaction in
            if let owner = try await store.tenant(tenantID, transaction.sql)?.owner {
                throw ServiceError(
                    .conflict, "webhook tenant '\(tenantID)' carries the \(owner) plugin's deliveries and cannot be deleted; configure it instead")
            }
            let pending = try await store.pendingEventIDs(tenantID: tenantID, transaction.sql)
            try await timers.cancel(ids: pending.map { WebhookDelivery.retryTimerPrefix + $0 }, in: transaction)
            return try await store.deleteTenant(tenantID, transaction.sql)
        }
        guard deleted else { throw Self.unknownTenant(tenantID) }
    }

    /// The tenant's current signing secret, for a receiver that verifies signatures (admins only).
    public func signingSecret(_ tenantID: String) async throws -> JSONValue {
        let store = self.store
        guard let tenant = try await environment.database.withSQL({ try await store.tenant(tenantID, $0) }) else {
            throw Self.unknownTenant(tenantID)
        }
        return ["tenant_id": .string(tenant.tenantID), "secret_key": .string(tenant.secrets.secretKey)]
    }

    static func unknownTenant(_ tenantID: String) -> ServiceError {
        ServiceError(.notFound, "no webhook tenant '\(tenantID)'; configure it with POST /api/v1/webhooks/configure")
    }

    static func inactiveTenant(_ tenant: WebhookTenant) -> ServiceError {
        ServiceError(
            .conflict,
            "webhook tenant '\(tenant.tenantID)' is inactive (\(tenant.disabledReason ?? "turned off")); configure it with \"active\": true first")
    }

    static func unknownEvent(_ eventID: String) -> ServiceError {
        ServiceError(.notFound, "no webhook event '\(eventID)'")
    }

    // MARK: Sending

    /// Stores the event and enqueues its delivery in one transaction, so an accepted send is never lost.
    /// - Parameter idempotencyKey: the `Idempotency-Key` header; a body's `event_id` serves when it is absent.
    ///
    /// Sends that arrive together share one transaction (a group commit), each with its own answer: an unknown or
    /// inactive tenant fails its own send only.
    public func send(_ body: JSONValue, idempotencyKey: String?) async throws -> WebhookSendResult {
        let input = try SendInput(body, idempotencyKey: idempotencyKey, maxPayloadBytes: options.maxPayloadBytes)
        let service = self
        let batching = environment.shared.object("webhooks.sends") {
            BatchCall<SendInput, Result<WebhookSendResult, ServiceError>>(maxBatch: 200) { inputs in
                try await service.send(inputs, eachOnItsOwn: true)
            }
        }
        return try await batching.submit(input).get()
    }

    /// The most events one batch send takes.
    public static let maxBatch = 500

    /// Sends many events in one transaction (one write for all of them and their deliveries): all are accepted, or
    /// none. An `event_id` in an item makes that item idempotent, as in a single send.
    public func send(contentsOf bodies: [JSONValue]) async throws -> [WebhookSendResult] {
        guard (1...Self.maxBatch).contains(bodies.count) else {
            throw ValidationFailure([FieldIssue(field: "events", message: "must hold 1 to \(Self.maxBatch) events")])
        }
        var inputs: [SendInput] = []
        var issues: [FieldIssue] = []
        for (index, body) in bodies.enumerated() {
            do {
                inputs.append(try SendInput(body, idempotencyKey: nil, maxPayloadBytes: options.maxPayloadBytes, path: "events.\(index)"))
            } catch {
                issues += error.issues
            }
        }
        guard issues.isEmpty else { throw ValidationFailure(issues) }
        return try await send(inputs, eachOnItsOwn: false).map { try $0.get() }
    }

    /// Stores `inputs` in one transaction. With `eachOnItsOwn`, an input the service refuses (unknown or inactive
    /// tenant, an `event_id` used before) fails alone; otherwise it fails them all, and nothing is stored.
    private func send(_ inputs: [SendInput], eachOnItsOwn: Bool) async throws -> [Result<WebhookSendResult, ServiceError>] {
        do {
            return try await store(inputs, eachOnItsOwn: eachOnItsOwn)
        } catch let error where inputs.contains(where: { $0.idempotencyKey != nil }) && !(error is ServiceError) {
            // Two sends with one key at once: the loser's insert breaks the unique key. Its transaction rolled back
            // whole, so trying again answers its keyed items with the winner's events.
            return try await store(inputs, eachOnItsOwn: eachOnItsOwn)
        }
    }

    private func store(_ inputs: [SendInput], eachOnItsOwn: Bool) async throws -> [Result<WebhookSendResult, ServiceError>] {
        let now = environment.clock.now()
        let store = self.store
        let environment = self.environment
        let window = options.idempotencyWindow
        return try await environment.transaction { transaction in
            let sql = transaction.sql
            var tenants: [String: WebhookTenant] = [:]
            var firstSends: [String: WebhookSendResult] = [:]
            var results: [Result<WebhookSendResult, ServiceError>] = []
            var events: [WebhookEvent] = []
            var firstAttempts: [(id: String, severity: WebhookSeverity)] = []
            var newIDs = Set<String>()
            for input in inputs {
                do {
                    let tenant: WebhookTenant
                    if let known = tenants[input.tenantID] {
                        tenant = known
                    } else {
                        guard let found = try await store.tenant(input.tenantID, sql) else { throw Self.unknownTenant(input.tenantID) }
                        tenants[input.tenantID] = found
                        tenant = found
                    }
                    guard tenant.active else { throw Self.inactiveTenant(tenant) }
                    if let key = input.idempotencyKey {
                        if let first = firstSends[tenant.tenantID + "\u{0}" + key] {
                            results.append(.success(WebhookSendResult(eventID: first.eventID, deliveries: first.deliveries, reason: nil, duplicate: true)))
                            continue
                        }
                        if let first = try await store.event(tenantID: tenant.tenantID, idempotencyKey: key, sql) {
                            if now.timeIntervalSince(first.createdAt) < window {
                                results.append(
                                    .success(WebhookSendResult(eventID: first.id, deliveries: first.state == .skipped ? 0 : 1, reason: nil, duplicate: true)))
                                continue
                            }
                            try await store.releaseIdempotencyKey(eventID: first.id, sql)
                        }
                    }
                    let eventID = input.eventID ?? Identifier.make(now: now)
                    if input.eventID != nil, try await store.event(eventID, sql) != nil || newIDs.contains(eventID) {
                        throw ServiceError(.conflict, "event_id '\(eventID)' was already used; send a new one (or repeat within 24 hours for the first answer)")
                    }
                    newIDs.insert(eventID)
                    let deliverable = tenant.accepts(eventType: input.eventType)
                    events.append(
                        WebhookEvent(
                            id: eventID, tenantID: tenant.tenantID, eventType: input.eventType, severity: input.severity,
                            targetURL: input.targetURL, customHeaders: input.customHeaders,
                            body: WebhookEvent.body(
                                id: eventID, tenantID: tenant.tenantID, eventType: input.eventType, severity: input.severity,
                                payload: input.payload, context: input.context, createdAt: now),
                            idempotencyKey: input.idempotencyKey, state: deliverable ? .pending : .skipped, attemptCount: 0,
                            roundAttempts: 0, createdAt: now, updatedAt: now))
                    let result: WebhookSendResult
                    if deliverable {
                        firstAttempts.append((eventID, input.severity))
                        result = WebhookSendResult(eventID: eventID, deliveries: 1, reason: nil, duplicate: false)
                    } else {
                        result = WebhookSendResult(
                            eventID: eventID, deliveries: 0,
                            reason: "event type '\(input.eventType)' matches none of the tenant's enabled_events (\(tenant.enabledEvents.joined(separator: ", ")))",
                            duplicate: false)
                    }
                    if let key = input.idempotencyKey { firstSends[tenant.tenantID + "\u{0}" + key] = result }
                    results.append(.success(result))
                } catch let refused as ServiceError where eachOnItsOwn {
                    results.append(.failure(refused))
                }
            }
            if !events.isEmpty { try await store.insert(events, sql) }
            try await environment.tasks.enqueue(contentsOf: WebhookDelivery.firstAttempts(firstAttempts, at: now), in: transaction)
            return results
        }
    }

    // MARK: Reading

    /// The event, its delivery and every attempt.
    public func event(_ eventID: String) async throws -> JSONValue {
        let store = self.store
        let (event, attempts, tenant) = try await environment.database.withSQL { sql in
            guard let event = try await store.event(eventID, sql) else { throw Self.unknownEvent(eventID) }
            return (event, try await store.attempts(eventID: eventID, sql), try await store.tenant(event.tenantID, sql))
        }
        return ["event": event.json, "deliveries": [Self.delivery(event, attempts: attempts, tenant: tenant)]]
    }

    static func delivery(_ event: WebhookEvent, attempts: [WebhookAttempt], tenant: WebhookTenant?) -> JSONValue {
        [
            "id": .string(event.id), "url": (event.targetURL ?? tenant?.baseURL).map(JSONValue.string) ?? .null,
            "state": .string(event.state.rawValue), "attempt_count": .number(Double(event.attemptCount)),
            "next_attempt_at": event.state == .pending ? event.nextAttemptAt.map { .string($0.apiString) } ?? .null : .null,
            "failure_reason": event.failureReason.map(JSONValue.string) ?? .null,
            "attempts": .array(attempts.map(\.json)),
        ]
    }

    public func metrics(tenantID: String) async throws -> JSONValue {
        let store = self.store
        let now = environment.clock.now()
        return try await environment.database.withSQL { sql in
            guard try await store.tenant(tenantID, sql) != nil else { throw Self.unknownTenant(tenantID) }
            return try await store.metrics(tenantID: tenantID, now: now, sql)
        }
    }

    /// The tenant's dead letters in the seed's shape.
    public func deadLetters(tenantID: String, page: PageRequest) async throws -> Page<JSONValue> {
        let store = self.store
        return try await environment.database.withSQL { sql in
            guard let tenant = try await store.tenant(tenantID, sql) else { throw Self.unknownTenant(tenantID) }
            let events = try await store.deadEvents(tenantID: tenantID, after: page.after, limit: page.limit + 1, sql)
            let attempts = try await store.attempts(eventIDs: events.map(\.id), sql)
            return Page(overfetched: events, limit: page.limit, key: \.id).map { event in
                [
                    "event": event.json, "attempts": .array((attempts[event.id] ?? []).map(\.json)),
                    "failed_at": event.failedAt.map { .string($0.apiString) } ?? .null,
                    "failure_reason": event.failureReason.map(JSONValue.string) ?? .null,
                    "can_retry": .bool(tenant.active),
                ]
            }
        }
    }

    // MARK: Redrive

    /// Sends a dead event again with a fresh retry budget.
    public func redrive(eventID: String) async throws -> JSONValue {
        let count = try await redrive { store, sql in
            guard let event = try await store.event(eventID, sql) else { throw Self.unknownEvent(eventID) }
            guard event.state == .dead else {
                throw ServiceError(.conflict, "webhook event '\(eventID)' is \(event.state.rawValue), not in the dead-letter list")
            }
            return (event.tenantID, [eventID])
        }
        guard count == 1 else { throw ServiceError(.conflict, "webhook event '\(eventID)' left the dead-letter list meanwhile") }
        return ["event_id": .string(eventID), "state": .string(WebhookDeliveryState.pending.rawValue)]
    }

    /// Sends every dead event of a tenant again (those that died at or after `since`, when given); returns how many.
    public func redrive(_ body: JSONValue) async throws -> Int {
        var input = try InputObject(body)
        let tenantID = input.string("tenant_id", required: true)
        var since: Date?
        if let text = input.string("since", length: 1...64) {
            since = Date(iso8601: text)
            if since == nil { input.addIssue("since", Date.iso8601Expectation) }
        }
        try input.finish()
        guard let tenantID else { return 0 }
        let diedSince = since
        return try await redrive { store, sql in
            (tenantID, try await store.deadEventIDs(tenantID: tenantID, since: diedSince, sql))
        }
    }

    /// Revives the events `select` names (after checking the tenant can take them) and enqueues their deliveries,
    /// in one transaction.
    private func redrive(
        _ select: @escaping @Sendable (WebhookStore, any SQLDatabase) async throws -> (tenantID: String, eventIDs: [String])
    ) async throws -> Int {
        let store = self.store
        let environment = self.environment
        let now = environment.clock.now()
        return try await environment.transaction { transaction in
            let (tenantID, eventIDs) = try await select(store, transaction.sql)
            guard let tenant = try await store.tenant(tenantID, transaction.sql) else { throw Self.unknownTenant(tenantID) }
            guard tenant.active else { throw Self.inactiveTenant(tenant) }
            var revived = 0
            for chunk in eventIDs.chunks(of: 500) {
                let taken = try await store.revive(eventIDs: Array(chunk), at: now, transaction.sql)
                try await environment.tasks.enqueue(
                    contentsOf: taken.map { WebhookDelivery.message(eventID: $0.id, attempt: $0.attempt, severity: $0.severity, at: now) },
                    in: transaction)
                revived += taken.count
            }
            return revived
        }
    }

    // MARK: Verification

    /// Checks a received webhook's signatures against the tenant's secrets, as a receiver would.
    /// - Parameter header: reads one request header by name (case-insensitive).
    public func verify(tenantID: String, body: Data, header: (String) -> String?) async throws -> JSONValue {
        let store = self.store
        guard let tenant = try await environment.database.withSQL({ sql in try await store.tenant(tenantID, sql) }) else {
            throw Self.unknownTenant(tenantID)
        }
        let now = environment.clock.now()
        let secrets = tenant.signingSecrets(at: now)
        let seed = header("X-Webhook-Signature").map { WebhookSignature.verifySeed(header: $0, body: body, secrets: secrets) }
        var standard: Bool?
        if let signature = header("webhook-signature") {
            if let id = header("webhook-id"), let timestamp = header("webhook-timestamp") {
                standard = WebhookSignature.verifyStandard(id: id, timestamp: timestamp, header: signature, body: body, secrets: secrets, now: now)
            } else {
                standard = false
            }
        }
        guard seed != nil || standard != nil else {
            throw ValidationFailure([
                FieldIssue(field: "headers", message: "need X-Webhook-Signature, or webhook-id, webhook-timestamp and webhook-signature")
            ])
        }
        return [
            "valid": .bool(seed != false && standard != false), "tenant_id": .string(tenantID),
            "schemes": ["sha256": seed.map(JSONValue.bool) ?? .null, "standard_webhooks": standard.map(JSONValue.bool) ?? .null],
        ]
    }
}

/// A send body, read and checked.
struct SendInput: Sendable {
    var tenantID: String
    var eventType: String
    var payload: JSONValue
    var targetURL: String?
    var customHeaders: [String: String]
    var severity: WebhookSeverity
    var context: JSONValue
    var eventID: String?
    var idempotencyKey: String?

    init(_ body: JSONValue, idempotencyKey: String?, maxPayloadBytes: Int, path: String = "") throws(ValidationFailure) {
        var input = try InputObject(body, path: path)
        let tenantID = input.string("tenant_id", required: true)
        let eventType = input.string("event_type", required: true)
        if let eventType, eventType.contains(where: { $0.isWhitespace || $0 == "*" }) {
            input.addIssue("event_type", "must not contain spaces or '*'")
        }
        let payload = input.raw("payload")
        if payload == nil || payload == .null {
            input.addIssue("payload", "is required")
        } else if let payload, payload.encodedString().utf8.count > maxPayloadBytes {
            input.addIssue("payload", "is larger than \(maxPayloadBytes / 1024) KiB")
        }
        let targetURL = input.string("target_url", length: 1...2000)
        if let targetURL, let problem = WebhookConfiguration.urlProblem(targetURL) { input.addIssue("target_url", problem) }
        let headers = WebhookConfiguration.headers(input.raw("custom_headers"), field: "custom_headers", into: &input)
        var severity = WebhookSeverity.medium
        if let name = input.string("severity") {
            if let known = WebhookSeverity(rawValue: name) {
                severity = known
            } else {
                input.addIssue("severity", "must be one of \(WebhookSeverity.allCases.map(\.rawValue).joined(separator: ", "))")
            }
        }
        let context = input.object("context") ?? .object([:])
        let eventID = input.string("event_id")
        if let eventID, !WebhookConfiguration.isWellFormedTenantID(eventID) {
            input.addIssue("event_id", WebhookConfiguration.tenantIDRule)
        }
        if let idempotencyKey, !(1...200).contains(idempotencyKey.utf8.count) {
            input.addIssue("Idempotency-Key", "must be 1 to 200 bytes")
        }
        try input.finish()
        self.tenantID = tenantID ?? ""
        self.eventType = eventType ?? ""
        self.payload = payload ?? .null
        self.targetURL = targetURL
        self.customHeaders = headers
        self.severity = severity
        self.context = context
        self.eventID = eventID
        self.idempotencyKey = idempotencyKey ?? eventID
    }
}

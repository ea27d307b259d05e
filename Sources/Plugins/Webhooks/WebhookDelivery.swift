// `webhooks.deliver`: one attempt to POST an event to its tenant's endpoint, signed, and what follows from the answer:
// done, a retry as a durable timer, or the dead-letter list.
import Foundation
import IntegratorCore
import Logging
import SQLKit

struct WebhookDelivery: TaskHandler {
    static let taskName = "webhooks.deliver"
    /// Retry timers are named by event: an event has at most one pending retry, and deleting its tenant finds it.
    static let retryTimerPrefix = "webhooks.retry:"
    /// The queue deliveries run on: the one every worker consumes by default.
    static let queue = "default"
    /// Headers only the plugin sets: the signatures and what they sign, so neither `default_headers` nor
    /// `custom_headers` can forge or drop them.
    static let protectedHeaders: Set<String> = [
        "content-type", "x-webhook-signature", "x-event-type", "x-event-id", "x-tenant-id", "x-timestamp", "webhook-id",
        "webhook-timestamp", "webhook-signature",
    ]

    let name = Self.taskName
    let options: WebhooksOptions

    /// The longest endpoint timeout (120 s) and the writes around it.
    static let attemptTimeout: Duration = .seconds(180)
    var timeout: Duration { Self.attemptTimeout }
    /// For the task itself failing (the database unreachable while recording); the endpoint's failures are retried
    /// by the tenant's own policy, as timers.
    var retryPolicy: RetryPolicy { RetryPolicy(maxAttempts: 10, baseDelay: 1, maxDelay: 60) }

    /// The most first attempts one task makes. One task per event cost as much as the delivery itself (a queue row,
    /// a run record, a claim and an acknowledgement); a task per batch shares that across the batch.
    static let batchSize = 100
    /// How many of a batch's events one task delivers at a time.
    static let deliveriesInFlightPerTask = 16

    static func message(eventID: String, attempt: Int, severity: WebhookSeverity, at now: Date) -> TaskMessage {
        TaskMessage(
            name: taskName, arguments: ["event_id": .string(eventID), "attempt": .number(Double(attempt))], queue: queue,
            priority: severity.priority, enqueuedAt: now)
    }

    /// Tasks making the first attempt of `events`: one per ``batchSize`` events of one severity (its priority).
    static func firstAttempts(_ events: [(id: String, severity: WebhookSeverity)], at now: Date) -> [TaskMessage] {
        var bySeverity: [WebhookSeverity: [String]] = [:]
        for event in events { bySeverity[event.severity, default: []].append(event.id) }
        return WebhookSeverity.allCases.reversed().flatMap { severity in
            (bySeverity[severity] ?? []).chunks(of: batchSize).map { ids in
                // A chunk is a slice of the severity's list: its first index is where the chunk starts, not 0.
                ids.count == 1
                    ? message(eventID: ids[ids.startIndex], attempt: 1, severity: severity, at: now)
                    : TaskMessage(
                        name: taskName, arguments: ["event_ids": .array(ids.map(JSONValue.string)), "attempt": 1], queue: queue,
                        priority: severity.priority, enqueuedAt: now)
            }
        }
    }

    /// Makes attempt `attempt` of one event (`event_id`) or of several (`event_ids`), each fenced on its own: an event
    /// whose attempt was made already (a re-run after a crash) is skipped, the others go ahead.
    func run(_ arguments: JSONValue, context: TaskContext) async throws -> JSONValue {
        let environment = try context.requireEnvironment()
        guard let attempt = arguments["attempt"]?.intValue, attempt >= 1 else { throw Self.malformed }
        if let eventID = arguments["event_id"]?.stringValue {
            let state = try await deliverOne(eventID, attempt: attempt, environment: environment, logger: context.logger)
            return ["event_id": .string(eventID), "attempt": .number(Double(attempt)), "state": .string(state)]
        }
        guard let listed = arguments["event_ids"]?.arrayValue?.compactMap(\.stringValue), !listed.isEmpty else { throw Self.malformed }
        let ids = Array(Set(listed))
        let states = try await deliverAll(ids, attempt: attempt, environment: environment, logger: context.logger)
        return [
            "events": .number(Double(ids.count)), "attempt": .number(Double(attempt)),
            "states": .object(states.mapValues { .number(Double($0)) }),
        ]
    }

    /// Makes attempt `attempt` of one event; its row is loaded together with those of concurrent deliveries. Returns the
    /// state written (or why it was skipped).
    func deliverOne(_ eventID: String, attempt: Int, environment: PluginEnvironment, logger: Logger) async throws -> String {
        let batching = WebhookBatching.shared(in: environment)
        return try await deliver(
            eventID, loaded: try await batching.loads.submit(eventID), attempt: attempt, environment: environment, batching: batching,
            logger: logger)
    }

    /// Makes attempt `attempt` of each of `ids`, a window of them at a time; counts the states written. Every delivery
    /// finishes before a failure is thrown: a retry of the task then skips what was recorded.
    func deliverAll(_ ids: [String], attempt: Int, environment: PluginEnvironment, logger: Logger) async throws -> [String: Int] {
        let batching = WebhookBatching.shared(in: environment)
        let store = WebhookStore(secrets: environment.secrets)
        let loaded = try await environment.database.withSQL { sql in try await store.deliveries(ids, sql) }
        return try await withThrowingTaskGroup(of: String.self) { group in
            // A window of deliveries at a time: a child task per event of every claimed batch at once cost memory
            // (thousands of suspended tasks) without going faster than the process's limit on requests in flight.
            var pending = ids[...]
            func startNext() {
                guard let id = pending.popFirst() else { return }
                group.addTask {
                    try await deliver(id, loaded: loaded[id], attempt: attempt, environment: environment, batching: batching, logger: logger)
                }
            }
            for _ in 0..<Self.deliveriesInFlightPerTask { startNext() }
            var states: [String: Int] = [:]
            var failure: (any Error)?
            while let next = await group.nextResult() {
                switch next {
                case .success(let state): states[state, default: 0] += 1
                case .failure(let error): failure = failure ?? error
                }
                startNext()
            }
            if let failure { throw failure }
            return states
        }
    }

    private static let malformed = PluginError(
        "webhooks.deliver needs {\"event_id\": string} or {\"event_ids\": [string]}, and \"attempt\": integer ≥ 1", permanent: true)

    /// One event's attempt, from its loaded row to its recorded result; returns the state written (or why it was skipped).
    private func deliver(
        _ eventID: String, loaded: WebhookBatching.Loaded, attempt: Int, environment: PluginEnvironment, batching: WebhookBatching,
        logger: Logger
    ) async throws -> String {
        guard let (event, tenant) = loaded else { return "skipped: the event no longer exists" }
        guard event.state == .pending, event.attemptCount == attempt - 1 else { return "skipped: attempt \(attempt) was already made" }
        guard let tenant else { return "skipped: the tenant no longer exists" }
        let store = WebhookStore(secrets: environment.secrets)
        let now = environment.clock.now()
        guard tenant.active else {
            let reason = "the endpoint is inactive" + (tenant.disabledReason.map { ": \($0)" } ?? "")
            _ = try await environment.database.withSQL { sql in
                try await store.kill(eventID: event.id, expectedAttempts: event.attemptCount, reason: reason, at: now, sql)
            }
            return WebhookDeliveryState.dead.rawValue
        }
        let (outcome, record) = try await batching.requests.withPermit {
            await send(event, to: tenant, attempt: attempt, keyring: batching.keyring, environment: environment, logger: logger)
        }
        let state = try await settle(
            event, tenant: tenant, record: record, outcome: outcome, environment: environment, store: store, batching: batching, logger: logger)
        IntegratorMetrics.shared.webhookDelivered(outcome: Self.metricOutcome(state), seconds: record.durationMs / 1000)
        return state
    }

    /// The outcome label of an attempt's written state: `pending` means a retry waits.
    static func metricOutcome(_ state: String) -> String {
        state == WebhookDeliveryState.pending.rawValue ? "retrying" : state
    }

    /// How an attempt ended, as far as what happens next is concerned.
    enum Outcome {
        case delivered
        /// 410 Gone: the endpoint asked never to be called again.
        case gone
        /// Retrying cannot help (the address is refused by the outbound guard, the URL is unusable).
        case rejected(String)
        case failed(String, retryAfter: Double?)
    }

    /// Posts the event once and measures it. Never throws for what the endpoint does: that is the attempt's result.
    private func send(
        _ event: WebhookEvent, to tenant: WebhookTenant, attempt: Int, keyring: WebhookSignature.Keyring, environment: PluginEnvironment,
        logger: Logger
    ) async -> (Outcome, WebhookAttempt) {
        let now = environment.clock.now()
        let request = Self.request(for: event, tenant: tenant, at: now, keyring: keyring)
        var client = environment.outbound.client(logger: logger)
        client.retry = RetryPolicy(maxAttempts: 1)
        client.timeout = Double(tenant.timeoutSeconds)
        client.headers = []
        client.maxResponseSize = 4 << 20
        let started = ContinuousClock.now
        var record = WebhookAttempt(attempt: attempt, attemptedAt: now, statusCode: nil, durationMs: 0, responseBody: nil, error: nil)
        let outcome: Outcome
        do {
            let response = try await client.send(request)
            record.statusCode = response.status
            record.responseBody = WebhookAttempt.excerpt(response.body)
            switch response.status {
            case 200..<300: outcome = .delivered
            case 410: outcome = .gone
            default:
                let retryAfter = RetryAfter.seconds(from: response.header("retry-after"), now: now)
                outcome = .failed("the endpoint answered \(response.status)", retryAfter: retryAfter)
            }
        } catch let error as OutboundError {
            record.error = error.description
            outcome = error.isRefusedAsConfigured ? .rejected(error.description) : .failed(error.description, retryAfter: nil)
        } catch {
            record.error = "\(error)"
            outcome = .failed("\(error)", retryAfter: nil)
        }
        record.durationMs = (ContinuousClock.now - started).seconds * 1000
        return (outcome, record)
    }

    /// The signed POST for one attempt. Headers are collected by lowercased name (a custom header replaces a default
    /// one of the same name, authentication replaces both) without re-scanning the list per header: this runs for
    /// every delivery.
    static func request(
        for event: WebhookEvent, tenant: WebhookTenant, at now: Date, keyring: WebhookSignature.Keyring = WebhookSignature.Keyring()
    ) -> OutboundRequest {
        let body = Data(event.body.utf8)
        let timestamp = Int(now.timeIntervalSince1970)
        let keys = tenant.signingSecrets(at: now).map(keyring.key(for:))
        var chosen: [String: (name: String, value: String)] = [:]
        for (name, value) in tenant.defaultHeaders { chosen[name.lowercased()] = (name, value) }
        for (name, value) in event.customHeaders { chosen[name.lowercased()] = (name, value) }
        if let type = tenant.authType, let token = tenant.secrets.authToken {
            let header: (name: String, value: String) =
                switch type {
                case .bearer: (tenant.authHeaderName ?? "Authorization", "Bearer \(token)")
                case .apiKey: (tenant.authHeaderName ?? "X-API-Key", token)
                case .basic: ("Authorization", "Basic " + Data(token.utf8).base64EncodedString())
                }
            chosen[header.name.lowercased()] = header
        }
        var headers = chosen.filter { !protectedHeaders.contains($0.key) }.values.sorted { $0.name < $1.name }
        headers.append(("content-type", "application/json"))
        headers.append(("X-Webhook-Signature", keys.map { WebhookSignature.seed(body: body, key: $0) }.joined(separator: " ")))
        headers.append(("X-Event-Type", event.eventType))
        headers.append(("X-Event-ID", event.id))
        headers.append(("X-Tenant-ID", event.tenantID))
        headers.append(("X-Timestamp", String(timestamp)))
        headers.append(("webhook-id", event.id))
        headers.append(("webhook-timestamp", String(timestamp)))
        headers.append(
            ("webhook-signature", keys.map { WebhookSignature.standard(id: event.id, timestamp: timestamp, body: body, key: $0) }.joined(separator: " ")))
        return OutboundRequest(method: "POST", event.targetURL ?? tenant.baseURL, headers: headers, body: body)
    }

    /// Stores the attempt and what follows it, together: the event's new state, a retry timer, the tenant switched off.
    /// Returns the event's state as written (or `skipped` when another copy of this attempt got there first).
    private func settle(
        _ event: WebhookEvent, tenant: WebhookTenant, record: WebhookAttempt, outcome: Outcome, environment: PluginEnvironment,
        store: WebhookStore, batching: WebhookBatching, logger: Logger
    ) async throws -> String {
        let now = environment.clock.now()
        let engine = environment.database.engine
        if case .delivered = outcome, tenant.failingSince == nil {
            // The common case joins the successes of concurrent deliveries in one write.
            let written = try await batching.successes.submit(WebhookBatching.Success(event: event, attempt: record, at: now))
            logger.debug("webhook delivered", metadata: ["webhook.event_id": "\(event.id)", "http.status": "\(record.statusCode ?? 0)"])
            return written ? WebhookDeliveryState.succeeded.rawValue : "skipped"
        }
        let policy = tenant.retry
        let disableAfter = options.disableAfter
        return try await environment.transaction { transaction in
            let sql = transaction.sql
            var state = WebhookDeliveryState.dead
            var reason: String?
            var retryAt: Date?
            switch outcome {
            case .delivered:
                state = .succeeded
                try await store.noteSuccess(tenant.tenantID, sql)
            case .gone where tenant.owner != nil:
                reason = "the endpoint answered 410 Gone"
            case .gone:
                reason = "the endpoint answered 410 Gone; it was deactivated"
                try await store.deactivate(tenant.tenantID, reason: "the endpoint answered 410 Gone at \(now.apiString)", at: now, sql)
            case .rejected(let why):
                reason = "cannot be delivered: \(why)"
            case .failed(let why, let retryAfter):
                // An owned tenant's events go to many URLs: one failing says nothing about the others.
                let failingSince = tenant.owner == nil ? try await store.noteFailure(tenant.tenantID, at: now, sql) ?? now : now
                if tenant.owner == nil, now.timeIntervalSince(failingSince) >= disableAfter {
                    let since = "every delivery has failed since \(failingSince.apiString)"
                    try await store.deactivate(tenant.tenantID, reason: since, at: now, sql)
                    reason = "\(why); the endpoint was deactivated: \(since)"
                } else if event.roundAttempts + 1 <= policy.maxRetries {
                    state = .pending
                    let delay = policy.delay(beforeRetry: event.roundAttempts + 1, retryAfter: retryAfter, unit: Double.random(in: 0..<1))
                    retryAt = now.addingTimeInterval(delay)
                    reason = why
                } else {
                    let attempts = event.roundAttempts + 1
                    reason = "gave up after \(attempts) attempt\(attempts == 1 ? "" : "s") (max_retries \(policy.maxRetries)): \(why)"
                }
            }
            guard try await store.record(record, of: event, state: state, nextAttemptAt: retryAt, failureReason: reason, at: now, sql, engine: engine)
            else { return "skipped" }
            if let retryAt {
                let message = Self.message(eventID: event.id, attempt: record.attempt + 1, severity: event.severity, at: now)
                try await environment.timers.upsert(
                    DurableTimer(id: Self.retryTimerPrefix + event.id, dueAt: retryAt, message: message), in: transaction, at: now)
            }
            let metadata: Logger.Metadata = [
                "webhook.event_id": "\(event.id)", "webhook.tenant_id": "\(event.tenantID)", "webhook.attempt": "\(record.attempt)",
                "reason": "\(reason ?? "")",
            ]
            switch state {
            case .pending: logger.warning("webhook delivery failed; will retry", metadata: metadata.merging(["retry_at": "\(retryAt?.apiString ?? "")"]) { $1 })
            case .dead: logger.warning("webhook delivery moved to the dead-letter list", metadata: metadata)
            default: logger.debug("webhook delivered", metadata: metadata)
            }
            return state.rawValue
        }
    }
}

// Reads and writes the webhooks tables: tenants (secrets sealed), events with their delivery state, and attempts.
import Foundation
import IntegratorCore
import SQLKit

struct WebhookStore: Sendable {
    let secrets: SecretBox

    /// What binds a tenant's sealed secrets to its row, so an envelope copied to another tenant does not open.
    private static func secretBinding(_ tenantID: String) -> String { "webhook-tenant:\(tenantID)" }

    // MARK: Tenants

    /// Whether the tenant exists and which plugin owns it (`nil`: configured through the API), without opening its
    /// secrets.
    func ownership(of tenantID: String, _ sql: any SQLDatabase) async throws -> (exists: Bool, owner: String?) {
        guard let row = try await sql.raw("SELECT owner FROM webhooks_tenants WHERE tenant_id = \(bind: tenantID)").first() else {
            return (false, nil)
        }
        return (true, try row.decode(column: "owner", as: String?.self))
    }

    func tenant(_ tenantID: String, _ sql: any SQLDatabase) async throws -> WebhookTenant? {
        try await sql.raw("SELECT * FROM webhooks_tenants WHERE tenant_id = \(bind: tenantID)").first().map(tenant)
    }

    /// Every tenant, a page at a time in id order.
    func tenants(after: String?, limit: Int, _ sql: any SQLDatabase) async throws -> [WebhookTenant] {
        let rows = try await sql.raw(
            "SELECT * FROM webhooks_tenants WHERE tenant_id > \(bind: after ?? "") ORDER BY tenant_id LIMIT \(bind: limit)"
        ).all()
        return try rows.map(tenant)
    }

    /// The active tenants' ids and patterns: all a fan-out needs to choose recipients, without opening secrets. A
    /// tenant a plugin owns is left out: it has no URL of its own and delivers only what its plugin dispatches.
    func activeSubscriptions(_ sql: any SQLDatabase) async throws -> [(tenantID: String, patterns: [String])] {
        try await sql.raw(
            "SELECT tenant_id, enabled_events FROM webhooks_tenants WHERE active = \(bind: true) AND owner IS NULL ORDER BY tenant_id"
        ).all()
            .map { row in
                (try row.decode(column: "tenant_id", as: String.self), try Self.strings(row, "enabled_events"))
            }
    }

    func save(_ tenant: WebhookTenant, _ sql: any SQLDatabase) async throws {
        let sealed = try secrets.seal(tenant.secrets.values, boundTo: Self.secretBinding(tenant.tenantID))
        let retry = tenant.retry
        try await sql.raw(
            """
            INSERT INTO webhooks_tenants (tenant_id, base_url, default_headers, max_retries, initial_delay_seconds,
                backoff_multiplier, max_delay_seconds, jitter, timeout_seconds, enabled_events, active, disabled_reason,
                auth_type, auth_header_name, secrets, previous_secret_expires_at, failing_since, owner, created_at, updated_at)
            VALUES (\(bind: tenant.tenantID), \(bind: tenant.baseURL), \(bind: Self.encode(tenant.defaultHeaders)),
                \(bind: retry.maxRetries), \(bind: retry.initialDelay), \(bind: retry.backoffMultiplier), \(bind: retry.maxDelay),
                \(bind: retry.jitter), \(bind: tenant.timeoutSeconds), \(bind: Self.encode(tenant.enabledEvents)),
                \(bind: tenant.active), \(bind: tenant.disabledReason), \(bind: tenant.authType?.rawValue),
                \(bind: tenant.authHeaderName), \(bind: sealed), \(bind: tenant.previousSecretExpiresAt),
                \(bind: tenant.failingSince), \(bind: tenant.owner), \(bind: tenant.createdAt), \(bind: tenant.updatedAt))
            ON CONFLICT (tenant_id) DO UPDATE SET base_url = excluded.base_url, default_headers = excluded.default_headers,
                max_retries = excluded.max_retries, initial_delay_seconds = excluded.initial_delay_seconds,
                backoff_multiplier = excluded.backoff_multiplier, max_delay_seconds = excluded.max_delay_seconds,
                jitter = excluded.jitter, timeout_seconds = excluded.timeout_seconds, enabled_events = excluded.enabled_events,
                active = excluded.active, disabled_reason = excluded.disabled_reason, auth_type = excluded.auth_type,
                auth_header_name = excluded.auth_header_name, secrets = excluded.secrets,
                previous_secret_expires_at = excluded.previous_secret_expires_at, failing_since = excluded.failing_since,
                updated_at = excluded.updated_at
            """
        ).run()
    }

    /// Ids of the tenant's events still waiting for an attempt (their retry timers may be pending).
    func pendingEventIDs(tenantID: String, _ sql: any SQLDatabase) async throws -> [String] {
        try await sql.raw(
            "SELECT id FROM webhooks_events WHERE tenant_id = \(bind: tenantID) AND state = \(bind: WebhookDeliveryState.pending.rawValue)"
        ).all().map { try $0.decode(column: "id", as: String.self) }
    }

    /// Removes the tenant with its events and their attempts; `false` when there was none.
    func deleteTenant(_ tenantID: String, _ sql: any SQLDatabase) async throws -> Bool {
        try await sql.raw("DELETE FROM webhooks_attempts WHERE tenant_id = \(bind: tenantID)").run()
        try await sql.raw("DELETE FROM webhooks_events WHERE tenant_id = \(bind: tenantID)").run()
        return !(try await sql.raw("DELETE FROM webhooks_tenants WHERE tenant_id = \(bind: tenantID) RETURNING tenant_id").all()).isEmpty
    }

    /// Turns the endpoint off, saying why; sends are refused and pending deliveries go to the dead-letter list.
    func deactivate(_ tenantID: String, reason: String, at now: Date, _ sql: any SQLDatabase) async throws {
        try await sql.raw(
            """
            UPDATE webhooks_tenants SET active = \(bind: false), disabled_reason = \(bind: reason), updated_at = \(bind: now)
            WHERE tenant_id = \(bind: tenantID) AND active = \(bind: true)
            """
        ).run()
    }

    /// Notes a failed delivery; returns when the current run of failures began.
    func noteFailure(_ tenantID: String, at now: Date, _ sql: any SQLDatabase) async throws -> Date? {
        try await sql.raw(
            """
            UPDATE webhooks_tenants SET failing_since = COALESCE(failing_since, \(bind: now))
            WHERE tenant_id = \(bind: tenantID) RETURNING failing_since
            """
        ).first()?.decode(column: "failing_since", as: Date?.self)
    }

    func noteSuccess(_ tenantID: String, _ sql: any SQLDatabase) async throws {
        try await sql.raw(
            "UPDATE webhooks_tenants SET failing_since = NULL WHERE tenant_id = \(bind: tenantID) AND failing_since IS NOT NULL"
        ).run()
    }

    private func tenant(_ row: any SQLRow) throws -> WebhookTenant { try tenant(row, prefix: "") }

    /// A tenant from a row whose tenant columns carry `prefix` (`t_` in a join with events).
    private func tenant(_ row: any SQLRow, prefix: String) throws -> WebhookTenant {
        let tenantID = try row.decode(column: prefix + "tenant_id", as: String.self)
        let sealed = try row.decode(column: prefix + "secrets", as: String.self)
        let headers = try JSONValue.parse(try row.decode(column: prefix + "default_headers", as: String.self)).objectValue ?? [:]
        return WebhookTenant(
            tenantID: tenantID,
            baseURL: try row.decode(column: prefix + "base_url", as: String.self),
            defaultHeaders: headers.compactMapValues(\.stringValue),
            retry: WebhookRetryPolicy(
                maxRetries: try row.decode(column: prefix + "max_retries", as: Int.self),
                initialDelay: try row.decode(column: prefix + "initial_delay_seconds", as: Double.self),
                backoffMultiplier: try row.decode(column: prefix + "backoff_multiplier", as: Double.self),
                maxDelay: try row.decode(column: prefix + "max_delay_seconds", as: Double.self),
                jitter: try row.decode(column: prefix + "jitter", as: Bool.self)),
            timeoutSeconds: try row.decode(column: prefix + "timeout_seconds", as: Int.self),
            enabledEvents: try Self.strings(row, prefix + "enabled_events"),
            active: try row.decode(column: prefix + "active", as: Bool.self),
            disabledReason: try row.decode(column: prefix + "disabled_reason", as: String?.self),
            authType: try row.decode(column: prefix + "auth_type", as: String?.self).flatMap(WebhookAuthType.init(rawValue:)),
            authHeaderName: try row.decode(column: prefix + "auth_header_name", as: String?.self),
            secrets: try WebhookTenantSecrets(values: try secrets.open(sealed, boundTo: Self.secretBinding(tenantID))),
            previousSecretExpiresAt: try row.decode(column: prefix + "previous_secret_expires_at", as: Date?.self),
            failingSince: try row.decode(column: prefix + "failing_since", as: Date?.self),
            owner: try row.decode(column: prefix + "owner", as: String?.self),
            createdAt: try row.decode(column: prefix + "created_at", as: Date.self),
            updatedAt: try row.decode(column: prefix + "updated_at", as: Date.self))
    }

    static let tenantColumns = [
        "tenant_id", "base_url", "default_headers", "max_retries", "initial_delay_seconds", "backoff_multiplier",
        "max_delay_seconds", "jitter", "timeout_seconds", "enabled_events", "active", "disabled_reason", "auth_type",
        "auth_header_name", "secrets", "previous_secret_expires_at", "failing_since", "owner", "created_at", "updated_at",
    ]
    private static let joinedTenantColumns = tenantColumns.map { "t.\($0) AS t_\($0)" }.joined(separator: ", ")

    /// Events with their tenants (`nil` when the tenant is gone), in one query: the delivery tasks' one read.
    func deliveries(_ eventIDs: [String], _ sql: any SQLDatabase) async throws -> [String: (event: WebhookEvent, tenant: WebhookTenant?)] {
        guard !eventIDs.isEmpty else { return [:] }
        let rows = try await sql.raw(
            """
            SELECT e.*, \(unsafeRaw: Self.joinedTenantColumns) FROM webhooks_events AS e
            LEFT JOIN webhooks_tenants AS t ON t.tenant_id = e.tenant_id WHERE e.id \(SQLQueryString.isOneOf(eventIDs, on: sql))
            """
        ).all()
        var found: [String: (event: WebhookEvent, tenant: WebhookTenant?)] = [:]
        // Most of a batch goes to a few tenants: each is decoded (and its secrets opened) once.
        var tenants: [String: WebhookTenant] = [:]
        for row in rows {
            let event = try Self.event(row)
            var tenant: WebhookTenant?
            if try row.decode(column: "t_tenant_id", as: String?.self) != nil {
                if let known = tenants[event.tenantID] {
                    tenant = known
                } else {
                    let decoded = try self.tenant(row, prefix: "t_")
                    tenants[event.tenantID] = decoded
                    tenant = decoded
                }
            }
            found[event.id] = (event, tenant)
        }
        return found
    }

    // MARK: Events

    func insert(_ events: [WebhookEvent], _ sql: any SQLDatabase) async throws {
        for insertion in Self.insertions(events, sql) { try await sql.raw(insertion).run() }
    }

    /// Inserts the events whose ids are not stored yet and leaves the others as they are; returns the ids inserted.
    /// `events` must not name an id twice.
    func insertUnlessStored(_ events: [WebhookEvent], _ sql: any SQLDatabase) async throws -> Set<String> {
        var inserted = Set<String>()
        for insertion in Self.insertions(events, sql) {
            for row in try await sql.raw("\(insertion) ON CONFLICT (id) DO NOTHING RETURNING id").all() {
                inserted.insert(try row.decode(column: "id", as: String.self))
            }
        }
        return inserted
    }

    /// The `INSERT`s that store `events`. On PostgreSQL one, whatever the count, with one array parameter per column: a
    /// hundred events are a dozen parameters rather than twelve hundred, each of which costs encoding here and parsing
    /// on the server. On SQLite one `VALUES` list per 500 events, since its statements hold at most a few thousand
    /// parameters.
    private static func insertions(_ events: [WebhookEvent], _ sql: any SQLDatabase) -> [SQLQueryString] {
        guard !events.isEmpty else { return [] }
        guard sql.dialect.name == "postgresql" else { return events.chunks(of: 500).map { valuesInsertion(Array($0)) } }
        return [arrayInsertion(events)]
    }

    private static let insertedColumns = """
        webhooks_events (id, tenant_id, event_type, severity, target_url, custom_headers, body, idempotency_key, state,
            attempt_count, round_attempts, created_at, updated_at)
        """

    /// One `INSERT … SELECT … FROM unnest(…)` of new events (PostgreSQL).
    private static func arrayInsertion(_ events: [WebhookEvent]) -> SQLQueryString {
        // Arrays hold no NULL: an absent target URL or idempotency key travels as '' (neither can be empty when present).
        return """
            INSERT INTO \(unsafeRaw: insertedColumns)
            SELECT id, tenant_id, event_type, severity, NULLIF(target_url, ''), custom_headers, body, NULLIF(idempotency_key, ''),
                state, 0, 0, created_at, created_at
            FROM unnest(\(bind: events.map(\.id))::text[], \(bind: events.map(\.tenantID))::text[], \(bind: events.map(\.eventType))::text[],
                \(bind: events.map(\.severity.rawValue))::text[], \(bind: events.map { $0.targetURL ?? "" })::text[],
                \(bind: events.map { encode($0.customHeaders) })::text[], \(bind: events.map(\.body))::text[],
                \(bind: events.map { $0.idempotencyKey ?? "" })::text[], \(bind: events.map(\.state.rawValue))::text[],
                \(bind: events.map(\.createdAt))::timestamptz[])
                AS v(id, tenant_id, event_type, severity, target_url, custom_headers, body, idempotency_key, state, created_at)
            """
    }

    /// One multi-row `INSERT … VALUES` of new events.
    private static func valuesInsertion(_ events: [WebhookEvent]) -> SQLQueryString {
        let rows = events.map { event -> SQLQueryString in
            """
            (\(bind: event.id), \(bind: event.tenantID), \(bind: event.eventType), \(bind: event.severity.rawValue),
             \(bind: event.targetURL), \(bind: encode(event.customHeaders)), \(bind: event.body), \(bind: event.idempotencyKey),
             \(bind: event.state.rawValue), 0, 0, \(bind: event.createdAt), \(bind: event.createdAt))
            """
        }
        return "INSERT INTO \(unsafeRaw: insertedColumns) VALUES \(rows.joined(separator: ", "))"
    }

    /// The delivery state of each of `ids` that names a stored event, in one query per 500.
    func eventStates(_ ids: [String], _ sql: any SQLDatabase) async throws -> [String: WebhookDeliveryState] {
        var states: [String: WebhookDeliveryState] = [:]
        for chunk in ids.chunks(of: 500) {
            for row in try await sql.raw("SELECT id, state FROM webhooks_events WHERE id IN (\(binds: Array(chunk)))").all() {
                // Read as `event(_:)` reads it.
                states[try row.decode(column: "id", as: String.self)] =
                    WebhookDeliveryState(rawValue: try row.decode(column: "state", as: String.self)) ?? .pending
            }
        }
        return states
    }

    func event(_ id: String, _ sql: any SQLDatabase) async throws -> WebhookEvent? {
        try await sql.raw("SELECT * FROM webhooks_events WHERE id = \(bind: id)").first().map(Self.event)
    }

    /// The event a tenant sent before under `key`, with when.
    func event(tenantID: String, idempotencyKey key: String, _ sql: any SQLDatabase) async throws -> WebhookEvent? {
        try await sql.raw(
            "SELECT * FROM webhooks_events WHERE tenant_id = \(bind: tenantID) AND idempotency_key = \(bind: key)"
        ).first().map(Self.event)
    }

    /// Frees an idempotency key whose window passed, so it can name a new send.
    func releaseIdempotencyKey(eventID: String, _ sql: any SQLDatabase) async throws {
        try await sql.raw("UPDATE webhooks_events SET idempotency_key = NULL WHERE id = \(bind: eventID)").run()
    }

    func attempts(eventID: String, _ sql: any SQLDatabase) async throws -> [WebhookAttempt] {
        try await sql.raw("SELECT * FROM webhooks_attempts WHERE event_id = \(bind: eventID) ORDER BY attempt").all().map(Self.attempt)
    }

    /// Attempts of several events, by event id.
    func attempts(eventIDs: [String], _ sql: any SQLDatabase) async throws -> [String: [WebhookAttempt]] {
        guard !eventIDs.isEmpty else { return [:] }
        let rows = try await sql.raw(
            "SELECT * FROM webhooks_attempts WHERE event_id IN (\(binds: eventIDs)) ORDER BY event_id, attempt"
        ).all()
        var attempts: [String: [WebhookAttempt]] = [:]
        for row in rows { attempts[try row.decode(column: "event_id", as: String.self), default: []].append(try Self.attempt(row)) }
        return attempts
    }

    /// A tenant's dead events in id order (the order they were sent in), a page at a time; `after` is the last event
    /// id of the previous page. `failed_at IS NOT NULL` (set exactly on dead events) lets the dead-letter index serve it.
    func deadEvents(tenantID: String, after: String?, limit: Int, _ sql: any SQLDatabase) async throws -> [WebhookEvent] {
        try await sql.raw(
            """
            SELECT * FROM webhooks_events WHERE tenant_id = \(bind: tenantID) AND failed_at IS NOT NULL
                AND state = \(bind: WebhookDeliveryState.dead.rawValue) AND id > \(bind: after ?? "") ORDER BY id LIMIT \(bind: limit)
            """
        ).all().map(Self.event)
    }

    /// Puts dead events back in line with a fresh retry budget; returns the ids it took (only events still dead).
    func revive(eventIDs: [String], at now: Date, _ sql: any SQLDatabase) async throws -> [(id: String, attempt: Int, severity: WebhookSeverity)] {
        guard !eventIDs.isEmpty else { return [] }
        return try await sql.raw(
            """
            UPDATE webhooks_events SET state = \(bind: WebhookDeliveryState.pending.rawValue), round_attempts = 0,
                next_attempt_at = \(bind: now), failure_reason = NULL, failed_at = NULL, updated_at = \(bind: now)
            WHERE id IN (\(binds: eventIDs)) AND state = \(bind: WebhookDeliveryState.dead.rawValue)
            RETURNING id, attempt_count, severity
            """
        ).all().map { row in
            (
                try row.decode(column: "id", as: String.self), try row.decode(column: "attempt_count", as: Int.self) + 1,
                WebhookSeverity(rawValue: try row.decode(column: "severity", as: String.self)) ?? .medium
            )
        }
    }

    /// Ids of a tenant's dead events that died at or after `since`.
    func deadEventIDs(tenantID: String, since: Date?, _ sql: any SQLDatabase) async throws -> [String] {
        let since: SQLQueryString = since.map { "AND failed_at >= \(bind: $0)" } ?? ""
        return try await sql.raw(
            """
            SELECT id FROM webhooks_events WHERE tenant_id = \(bind: tenantID) AND failed_at IS NOT NULL
                AND state = \(bind: WebhookDeliveryState.dead.rawValue) \(since) ORDER BY id
            """
        ).all().map { try $0.decode(column: "id", as: String.self) }
    }

    // MARK: Attempts

    /// Stores attempt `attempt` of an event and the event's new state, if the event still waits for exactly that
    /// attempt: a duplicate or late copy of the delivery task finds it taken and writes nothing. Returns whether it wrote.
    func record(
        _ attempt: WebhookAttempt, of event: WebhookEvent, state: WebhookDeliveryState, nextAttemptAt: Date?, failureReason: String?,
        at now: Date, _ sql: any SQLDatabase, engine: Database.Engine
    ) async throws -> Bool {
        let update: SQLQueryString = """
            UPDATE webhooks_events SET state = \(bind: state.rawValue), attempt_count = \(bind: attempt.attempt),
                round_attempts = round_attempts + 1, next_attempt_at = \(bind: nextAttemptAt),
                failure_reason = \(bind: failureReason), failed_at = \(bind: state == .dead ? now : nil), updated_at = \(bind: now)
            WHERE id = \(bind: event.id) AND state = \(bind: WebhookDeliveryState.pending.rawValue)
                AND attempt_count = \(bind: attempt.attempt - 1)
            """
        let columns: SQLQueryString = """
            \(bind: event.id), \(bind: attempt.attempt), \(bind: event.tenantID), \(bind: attempt.attemptedAt),
            \(bind: attempt.statusCode), \(bind: attempt.durationMs), \(bind: attempt.responseBody), \(bind: attempt.error)
            """
        let insert: SQLQueryString =
            "INSERT INTO webhooks_attempts (event_id, attempt, tenant_id, attempted_at, status_code, duration_ms, response_body, error)"
        if engine == .postgres {
            // One round trip: the attempt is inserted only when the fenced update took the event.
            return !(try await sql.raw(
                "WITH taken AS (\(update) RETURNING id) \(insert) SELECT \(columns) FROM taken RETURNING event_id"
            ).all()).isEmpty
        }
        guard !(try await sql.raw("\(update) RETURNING id").all()).isEmpty else { return false }
        try await sql.raw("\(insert) VALUES (\(columns))").run()
        return true
    }

    /// Records successful attempts of many events in one statement (PostgreSQL), each fenced like ``record``; returns
    /// the ids of the events it wrote. `items` must not name an event twice.
    func recordSuccesses(_ items: [WebhookBatching.Success], _ sql: any SQLDatabase) async throws -> Set<String> {
        guard !items.isEmpty else { return [] }
        let rows = try await sql.raw(Self.successWrite(items)).all()
        return Set(try rows.map { try $0.decode(column: "event_id", as: String.self) })
    }

    /// ``recordSuccesses(_:_:)``'s statement. Its state check is ``SQLQueryString/statusIsOneOf(_:_:)``: with a plain
    /// one, statistics from an idle spell made PostgreSQL join a scan of the whole table against every event of the
    /// batch (seconds a batch).
    static func successWrite(_ items: [WebhookBatching.Success]) -> SQLQueryString {
        """
        WITH input AS (
            SELECT * FROM unnest(\(bind: items.map(\.event.id))::text[], \(bind: items.map(\.attempt.attempt))::int8[],
                \(bind: items.map(\.event.tenantID))::text[], \(bind: items.map(\.attempt.attemptedAt))::timestamptz[],
                \(bind: items.map { $0.attempt.statusCode ?? 0 })::int8[], \(bind: items.map(\.attempt.durationMs))::float8[],
                \(bind: items.map { $0.attempt.responseBody ?? "" })::text[], \(bind: items.map(\.at))::timestamptz[])
                AS i(id, attempt, tenant_id, attempted_at, status_code, duration_ms, response_body, recorded_at)
        ), taken AS (
            UPDATE webhooks_events AS e SET state = \(bind: WebhookDeliveryState.succeeded.rawValue), attempt_count = i.attempt,
                round_attempts = e.round_attempts + 1, next_attempt_at = NULL, failure_reason = NULL, failed_at = NULL,
                updated_at = i.recorded_at
            FROM input AS i
            WHERE e.id = i.id AND e.attempt_count = i.attempt - 1
                AND \(SQLQueryString.statusIsOneOf("e.state", [WebhookDeliveryState.pending.rawValue]))
            RETURNING e.id
        )
        INSERT INTO webhooks_attempts (event_id, attempt, tenant_id, attempted_at, status_code, duration_ms, response_body, error)
        SELECT i.id, i.attempt, i.tenant_id, i.attempted_at, i.status_code, i.duration_ms, NULLIF(i.response_body, ''), NULL
        FROM input AS i JOIN taken USING (id)
        RETURNING event_id
        """
    }

    /// Ends a pending event without an attempt (its endpoint was turned off); fenced like ``record``.
    func kill(eventID: String, expectedAttempts: Int, reason: String, at now: Date, _ sql: any SQLDatabase) async throws -> Bool {
        !(try await sql.raw(
            """
            UPDATE webhooks_events SET state = \(bind: WebhookDeliveryState.dead.rawValue), next_attempt_at = NULL,
                failure_reason = \(bind: reason), failed_at = \(bind: now), updated_at = \(bind: now)
            WHERE id = \(bind: eventID) AND state = \(bind: WebhookDeliveryState.pending.rawValue)
                AND attempt_count = \(bind: expectedAttempts) RETURNING id
            """
        ).all()).isEmpty
    }

    // MARK: Metrics

    /// The seed's metrics object, computed from what is stored.
    func metrics(tenantID: String, now: Date, _ sql: any SQLDatabase) async throws -> JSONValue {
        let pending = WebhookDeliveryState.pending.rawValue
        let counts = try await sql.raw(
            """
            SELECT COUNT(*) AS total,
                COALESCE(SUM(CASE WHEN state = \(bind: WebhookDeliveryState.succeeded.rawValue) THEN 1 ELSE 0 END), 0) AS succeeded,
                COALESCE(SUM(CASE WHEN state = \(bind: WebhookDeliveryState.dead.rawValue) THEN 1 ELSE 0 END), 0) AS dead,
                COALESCE(SUM(CASE WHEN state = \(bind: pending) AND round_attempts > 0 THEN 1 ELSE 0 END), 0) AS retrying,
                MAX(updated_at) AS last_updated
            FROM webhooks_events WHERE tenant_id = \(bind: tenantID)
            """
        ).first()
        let average = try await sql.raw(
            "SELECT AVG(duration_ms) AS average FROM webhooks_attempts WHERE tenant_id = \(bind: tenantID) AND status_code IS NOT NULL"
        ).first()?.decode(column: "average", as: Double?.self)
        let retrying = try counts?.decode(column: "retrying", as: Int.self) ?? 0
        let dead = try counts?.decode(column: "dead", as: Int.self) ?? 0
        let lastUpdated = try counts?.decode(column: "last_updated", as: Date?.self) ?? now
        return [
            "total_events": .number(Double(try counts?.decode(column: "total", as: Int.self) ?? 0)),
            "successful_events": .number(Double(try counts?.decode(column: "succeeded", as: Int.self) ?? 0)),
            "failed_events": .number(Double(retrying + dead)),
            "pending_retries": .number(Double(retrying)),
            "dead_letter_count": .number(Double(dead)),
            "avg_response_time_ms": .number(((average ?? 0) * 10).rounded() / 10),
            "last_updated": .string(lastUpdated.apiString),
        ]
    }

    // MARK: Rows

    static func event(_ row: any SQLRow) throws -> WebhookEvent {
        let headers = try JSONValue.parse(try row.decode(column: "custom_headers", as: String.self)).objectValue ?? [:]
        return WebhookEvent(
            id: try row.decode(column: "id", as: String.self),
            tenantID: try row.decode(column: "tenant_id", as: String.self),
            eventType: try row.decode(column: "event_type", as: String.self),
            severity: WebhookSeverity(rawValue: try row.decode(column: "severity", as: String.self)) ?? .medium,
            targetURL: try row.decode(column: "target_url", as: String?.self),
            customHeaders: headers.compactMapValues(\.stringValue),
            body: try row.decode(column: "body", as: String.self),
            idempotencyKey: try row.decode(column: "idempotency_key", as: String?.self),
            state: WebhookDeliveryState(rawValue: try row.decode(column: "state", as: String.self)) ?? .pending,
            attemptCount: try row.decode(column: "attempt_count", as: Int.self),
            roundAttempts: try row.decode(column: "round_attempts", as: Int.self),
            nextAttemptAt: try row.decode(column: "next_attempt_at", as: Date?.self),
            failureReason: try row.decode(column: "failure_reason", as: String?.self),
            failedAt: try row.decode(column: "failed_at", as: Date?.self),
            createdAt: try row.decode(column: "created_at", as: Date.self),
            updatedAt: try row.decode(column: "updated_at", as: Date.self))
    }

    static func attempt(_ row: any SQLRow) throws -> WebhookAttempt {
        WebhookAttempt(
            attempt: try row.decode(column: "attempt", as: Int.self),
            attemptedAt: try row.decode(column: "attempted_at", as: Date.self),
            statusCode: try row.decode(column: "status_code", as: Int?.self),
            durationMs: try row.decode(column: "duration_ms", as: Double.self),
            responseBody: try row.decode(column: "response_body", as: String?.self),
            error: try row.decode(column: "error", as: String?.self))
    }

    static func encode(_ headers: [String: String]) -> String {
        JSONValue.object(headers.mapValues(JSONValue.string)).encodedString()
    }

    static func encode(_ strings: [String]) -> String {
        JSONValue.array(strings.map(JSONValue.string)).encodedString()
    }

    static func strings(_ row: any SQLRow, _ column: String) throws -> [String] {
        (try JSONValue.parse(try row.decode(column: column, as: String.self)).arrayValue ?? []).compactMap(\.stringValue)
    }
}

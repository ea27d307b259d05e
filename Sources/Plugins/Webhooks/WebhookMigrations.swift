// The webhooks plugin's own tables, versioned under the plugin id `webhooks`.
import IntegratorCore

enum WebhookMigrations {
    static let all: [PluginMigration] = [tables, owners, keyedIdempotency, stateOutOfIndexes]

    static let tables = PluginMigration(version: 1, name: "tenants_events_attempts") { facts in
        let double = facts.engine == .postgres ? "DOUBLE PRECISION" : "REAL"
        return [
            """
            CREATE TABLE webhooks_tenants (
                tenant_id TEXT PRIMARY KEY,
                base_url TEXT NOT NULL,
                default_headers \(facts.json) NOT NULL,
                max_retries INTEGER NOT NULL,
                initial_delay_seconds \(double) NOT NULL,
                backoff_multiplier \(double) NOT NULL,
                max_delay_seconds \(double) NOT NULL,
                jitter \(facts.boolean) NOT NULL,
                timeout_seconds INTEGER NOT NULL,
                enabled_events \(facts.json) NOT NULL,
                active \(facts.boolean) NOT NULL,
                disabled_reason TEXT,
                auth_type TEXT,
                auth_header_name TEXT,
                secrets TEXT NOT NULL,
                previous_secret_expires_at \(facts.timestamp),
                failing_since \(facts.timestamp),
                created_at \(facts.timestamp) NOT NULL,
                updated_at \(facts.timestamp) NOT NULL
            )
            """,
            // One row per event and tenant; it is also the event's delivery (state, attempts, next retry).
            """
            CREATE TABLE webhooks_events (
                id TEXT PRIMARY KEY,
                tenant_id TEXT NOT NULL,
                event_type TEXT NOT NULL,
                severity TEXT NOT NULL,
                target_url TEXT,
                custom_headers \(facts.json) NOT NULL,
                body TEXT NOT NULL,
                idempotency_key TEXT,
                state TEXT NOT NULL,
                attempt_count INTEGER NOT NULL,
                round_attempts INTEGER NOT NULL,
                next_attempt_at \(facts.timestamp),
                failure_reason TEXT,
                failed_at \(facts.timestamp),
                created_at \(facts.timestamp) NOT NULL,
                updated_at \(facts.timestamp) NOT NULL
            )
            """,
            "CREATE UNIQUE INDEX webhooks_events_idempotency ON webhooks_events (tenant_id, idempotency_key)",
            "CREATE INDEX webhooks_events_tenant_state ON webhooks_events (tenant_id, state, failed_at)",
            """
            CREATE TABLE webhooks_attempts (
                event_id TEXT NOT NULL,
                attempt INTEGER NOT NULL,
                tenant_id TEXT NOT NULL,
                attempted_at \(facts.timestamp) NOT NULL,
                status_code INTEGER,
                duration_ms \(double) NOT NULL,
                response_body TEXT,
                error TEXT,
                PRIMARY KEY (event_id, attempt)
            )
            """,
            "CREATE INDEX webhooks_attempts_tenant ON webhooks_attempts (tenant_id)",
        ]
    }

    /// Tenants another plugin owns (scheduled messages, the chat buffer): their events carry their own URLs, so one
    /// URL's failures never switch the tenant off.
    static let owners = PluginMigration(version: 2, name: "tenant_owners") { _ in
        ["ALTER TABLE webhooks_tenants ADD COLUMN owner TEXT"]
    }

    /// The idempotency index holds only events sent with a key. Most events have none (every scheduled message and chat
    /// flush, sends without `Idempotency-Key`), and each cost an index entry when stored and another when its delivery
    /// was recorded. Uniqueness is unchanged: NULL keys never collided. A lookup by key (`idempotency_key = …`) implies
    /// the index's condition, so both databases still use it.
    static let keyedIdempotency = PluginMigration(version: 3, name: "idempotency_index_keyed_only") { _ in
        [
            "DROP INDEX webhooks_events_idempotency",
            """
            CREATE UNIQUE INDEX webhooks_events_idempotency ON webhooks_events (tenant_id, idempotency_key)
            WHERE idempotency_key IS NOT NULL
            """,
        ]
    }

    /// No index of the events holds `state`. With `(tenant_id, state, failed_at)`, statistics taken while every event
    /// had succeeded (an idle spell) put pending events at one row, and the batched success write then read the
    /// events through that index, all pending events once per event written: seconds per batch, and deliveries
    /// stalled while a backlog lasted. Now an event is only ever found by its id, its tenant, or — dead ones — the
    /// dead-letter index, whose condition (`failed_at` set, exactly when the event is dead) a success leaves alone.
    /// A success then changes no indexed column, so PostgreSQL rewrites the row in place (a HOT update, with room kept
    /// free in each page for it) instead of adding an entry to every index.
    static let stateOutOfIndexes = PluginMigration(version: 4, name: "state_out_of_indexes") { facts in
        var statements = [
            "UPDATE webhooks_events SET failed_at = updated_at WHERE state = 'dead' AND failed_at IS NULL",
            "DROP INDEX webhooks_events_tenant_state",
            "CREATE INDEX webhooks_events_tenant ON webhooks_events (tenant_id, id)",
            "CREATE INDEX webhooks_events_dead ON webhooks_events (tenant_id, id) WHERE failed_at IS NOT NULL",
        ]
        if facts.engine == .postgres { statements.append("ALTER TABLE webhooks_events SET (fillfactor = 70)") }
        return statements
    }
}

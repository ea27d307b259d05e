// Versioned schema changes and the runner that applies the missing ones, once, under a lock.
import Foundation
import SQLKit

/// One schema change. Versions only grow; a released migration is never edited, a new one is added instead.
public struct Migration: Sendable {
    public var version: Int
    public var name: String
    /// The statements, spelled for the engine at hand.
    public var statements: @Sendable (SQLDialectFacts) -> [String]

    public init(version: Int, name: String, statements: @escaping @Sendable (SQLDialectFacts) -> [String]) {
        self.version = version
        self.name = name
        self.statements = statements
    }
}

/// Applies migrations. Running it again changes nothing; two processes running it at once apply each migration once.
public struct Migrator: Sendable {
    public let migrations: [Migration]
    /// Plugins whose own migrations are applied after the engine's (see ``PluginMigration``).
    public let plugins: [Plugin]

    public init(migrations: [Migration] = Migration.all, plugins: [Plugin] = []) {
        self.migrations = migrations.sorted { $0.version < $1.version }
        self.plugins = plugins
    }

    /// Applies every migration not yet recorded, the engine's and then the plugins', and returns the engine
    /// versions it applied (``migrateReporting(_:)`` also tells the plugins' ones).
    @discardableResult
    public func migrate(_ database: Database) async throws -> [Int] {
        try await migrateReporting(database).engine
    }

    /// Applies every missing migration and returns what it applied: engine versions, and plugin ones as `plugin:version`.
    public func migrateReporting(_ database: Database) async throws -> (engine: [Int], plugins: [String]) {
        let facts = database.facts
        let migrations = self.migrations
        let plugins = self.plugins
        return try await database.transaction { sql in
            if facts.engine == .postgres {
                // Serialises concurrent migrators across processes; released at commit.
                try await sql.raw("SELECT pg_advisory_xact_lock(7242001)").run()
            }
            try await sql.raw(
                """
                CREATE TABLE IF NOT EXISTS schema_migrations (
                    version INTEGER PRIMARY KEY,
                    name TEXT NOT NULL,
                    applied_at \(unsafeRaw: facts.timestamp) NOT NULL
                )
                """
            ).run()
            let applied = Set(try await sql.raw("SELECT version FROM schema_migrations").all().map {
                try $0.decode(column: "version", as: Int.self)
            })
            var done: [Int] = []
            for migration in migrations where !applied.contains(migration.version) {
                for statement in migration.statements(facts) {
                    try await sql.raw(SQLQueryString(statement)).run()
                }
                try await sql.raw(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (\(bind: migration.version), \(bind: migration.name), \(bind: Date()))"
                ).run()
                done.append(migration.version)
            }
            let pluginsDone = try await Self.applyPluginMigrations(plugins, facts: facts, sql)
            return (done, pluginsDone)
        }
    }

    /// Versions recorded as applied, ascending.
    public func appliedVersions(_ database: Database) async throws -> [Int] {
        try await database.withSQL { sql in
            try await sql.raw("SELECT version FROM schema_migrations ORDER BY version").all().map {
                try $0.decode(column: "version", as: Int.self)
            }
        }
    }
}

extension Migration {
    /// Every migration of the engine, in order.
    public static let all: [Migration] = [foundation, queues, attemptOverrides, schedules, fetchPipeline, queueUpkeep, workerQueueLoad, deliveryCounts, beatIsolation, beatStatus, adminSessions]

    /// Users, API tokens, credentials and integrations.
    static let foundation = Migration(version: 1, name: "foundation") { facts in
        [
            """
            CREATE TABLE users (
                id TEXT PRIMARY KEY,
                username TEXT NOT NULL UNIQUE,
                role TEXT NOT NULL,
                password_hash TEXT NOT NULL,
                created_at \(facts.timestamp) NOT NULL,
                updated_at \(facts.timestamp) NOT NULL
            )
            """,
            """
            CREATE TABLE api_tokens (
                id TEXT PRIMARY KEY,
                user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                name TEXT NOT NULL,
                token_hash TEXT NOT NULL UNIQUE,
                created_at \(facts.timestamp) NOT NULL,
                last_used_at \(facts.timestamp)
            )
            """,
            "CREATE INDEX api_tokens_user ON api_tokens (user_id)",
            """
            CREATE TABLE credentials (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL UNIQUE,
                type TEXT NOT NULL,
                public_data \(facts.json) NOT NULL,
                secret_data TEXT NOT NULL,
                created_at \(facts.timestamp) NOT NULL,
                updated_at \(facts.timestamp) NOT NULL
            )
            """,
            "CREATE INDEX credentials_type ON credentials (type)",
            """
            CREATE TABLE integrations (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL UNIQUE,
                provider TEXT NOT NULL,
                credentials_id TEXT REFERENCES credentials(id) ON DELETE RESTRICT,
                config \(facts.json) NOT NULL,
                active \(facts.boolean) NOT NULL,
                queue TEXT NOT NULL,
                priority INTEGER NOT NULL,
                created_at \(facts.timestamp) NOT NULL,
                updated_at \(facts.timestamp) NOT NULL
            )
            """,
            "CREATE INDEX integrations_provider ON integrations (provider)",
            "CREATE INDEX integrations_credentials ON integrations (credentials_id)",
        ]
    }

    /// Integrations (and the messages they enqueue) may override a handler's number of attempts.
    static let attemptOverrides = Migration(version: 3, name: "attempt_overrides") { _ in
        [
            "ALTER TABLE integrations ADD COLUMN max_attempts INTEGER",
            "ALTER TABLE task_queue ADD COLUMN max_attempts INTEGER",
        ]
    }

    /// The SQL queue, task runs with their attempts, and worker heartbeats.
    static let queues = Migration(version: 2, name: "queues") { facts in
        [
            """
            CREATE TABLE task_queue (
                seq \(facts.autoincrementKey),
                task_id TEXT NOT NULL UNIQUE,
                task_name TEXT NOT NULL,
                arguments \(facts.json) NOT NULL,
                queue TEXT NOT NULL,
                priority INTEGER NOT NULL,
                attempt INTEGER NOT NULL,
                enqueued_at \(facts.timestamp) NOT NULL,
                available_at \(facts.timestamp) NOT NULL,
                lease_until \(facts.timestamp),
                leased_by TEXT,
                deliveries INTEGER NOT NULL,
                dead \(facts.boolean) NOT NULL,
                dead_reason TEXT,
                integration_id TEXT,
                schedule_id TEXT
            )
            """,
            "CREATE INDEX task_queue_claim ON task_queue (queue, dead, priority DESC, seq)",
            "CREATE INDEX task_queue_worker ON task_queue (leased_by)",
            """
            CREATE TABLE task_runs (
                id TEXT PRIMARY KEY,
                task_name TEXT NOT NULL,
                arguments \(facts.json) NOT NULL,
                queue TEXT NOT NULL,
                priority INTEGER NOT NULL,
                state TEXT NOT NULL,
                attempt INTEGER NOT NULL,
                worker_id TEXT,
                enqueued_at \(facts.timestamp) NOT NULL,
                started_at \(facts.timestamp),
                finished_at \(facts.timestamp),
                duration_ms \(facts.bigint),
                error TEXT,
                result \(facts.json),
                integration_id TEXT,
                schedule_id TEXT,
                updated_at \(facts.timestamp) NOT NULL
            )
            """,
            "CREATE INDEX task_runs_state ON task_runs (state)",
            "CREATE INDEX task_runs_name ON task_runs (task_name)",
            "CREATE INDEX task_runs_enqueued ON task_runs (enqueued_at)",
            "CREATE INDEX task_runs_integration ON task_runs (integration_id)",
            "CREATE INDEX task_runs_schedule ON task_runs (schedule_id)",
            """
            CREATE TABLE task_run_attempts (
                task_id TEXT NOT NULL REFERENCES task_runs(id) ON DELETE CASCADE,
                attempt INTEGER NOT NULL,
                state TEXT NOT NULL,
                worker_id TEXT,
                deliveries INTEGER NOT NULL,
                started_at \(facts.timestamp),
                finished_at \(facts.timestamp),
                duration_ms \(facts.bigint),
                error TEXT,
                PRIMARY KEY (task_id, attempt)
            )
            """,
            """
            CREATE TABLE workers (
                id TEXT PRIMARY KEY,
                host TEXT NOT NULL,
                queues TEXT NOT NULL,
                concurrency INTEGER NOT NULL,
                busy INTEGER NOT NULL,
                started_at \(facts.timestamp) NOT NULL,
                last_seen \(facts.timestamp) NOT NULL
            )
            """,
        ]
    }
}

// Plugins' own migrations: versioned per plugin id and recorded apart from the engine's, so plugins never collide.
import Foundation
import SQLKit

extension Migrator {
    /// Applies the plugins' missing migrations inside the migrator's transaction (after the engine's own, under the
    /// same lock) and returns them as `plugin:version`.
    static func applyPluginMigrations(
        _ plugins: [Plugin], facts: SQLDialectFacts, _ sql: any SQLDatabase
    ) async throws -> [String] {
        try await sql.raw(
            """
            CREATE TABLE IF NOT EXISTS plugin_migrations (
                plugin TEXT NOT NULL,
                version INTEGER NOT NULL,
                name TEXT NOT NULL,
                applied_at \(unsafeRaw: facts.timestamp) NOT NULL,
                PRIMARY KEY (plugin, version)
            )
            """
        ).run()
        var applied: Set<String> = []
        for row in try await sql.raw("SELECT plugin, version FROM plugin_migrations").all() {
            applied.insert("\(try row.decode(column: "plugin", as: String.self)):\(try row.decode(column: "version", as: Int.self))")
        }
        var done: [String] = []
        for plugin in plugins {
            for migration in plugin.migrations.sorted(by: { $0.version < $1.version }) {
                let key = "\(plugin.id):\(migration.version)"
                guard !applied.contains(key) else { continue }
                for statement in migration.statements(facts) {
                    try await sql.raw(SQLQueryString(statement)).run()
                }
                try await sql.raw(
                    """
                    INSERT INTO plugin_migrations (plugin, version, name, applied_at)
                    VALUES (\(bind: plugin.id), \(bind: migration.version), \(bind: migration.name), \(bind: Date()))
                    """
                ).run()
                done.append(key)
            }
        }
        return done
    }

    /// Applied plugin migrations as `plugin:version`, in plugin then version order.
    public func appliedPluginMigrations(_ database: Database) async throws -> [String] {
        try await database.withSQL { sql in
            try await sql.raw("SELECT plugin, version FROM plugin_migrations ORDER BY plugin, version").all().map {
                "\(try $0.decode(column: "plugin", as: String.self)):\(try $0.decode(column: "version", as: Int.self))"
            }
        }
    }
}

// The scheduled messages plugin's own tables, versioned under the plugin id `scheduled-messages`.
import IntegratorCore

enum ScheduledMessageMigrations {
    static let all: [PluginMigration] = [tables]

    static let tables = PluginMigration(version: 1, name: "messages_fired") { facts in
        // Ids compare by code point (UTF-8 bytes) on both engines: PostgreSQL's "C" collation, SQLite's default. A
        // prefix is then a range of the primary key, and the primary key's index serves prefix search.
        let idType = facts.engine == .postgres ? #"TEXT COLLATE "C""# : "TEXT"
        return [
            // Pending messages only: a message leaves this table in the transaction that hands it to the webhooks
            // plugin. Its durable timer (`scheduled-messages:<id>`) is the schedule; nothing here is scanned for due rows.
            """
            CREATE TABLE scheduled_messages (
                id \(idType) PRIMARY KEY,
                version TEXT NOT NULL,
                schedule_to TEXT NOT NULL,
                due_at \(facts.timestamp) NOT NULL,
                payload \(facts.json) NOT NULL,
                webhook_url TEXT NOT NULL,
                created_at \(facts.timestamp) NOT NULL,
                updated_at \(facts.timestamp) NOT NULL
            )
            """,
            // One row per firing: which webhook event carries it, so its delivery log can be found by message id.
            """
            CREATE TABLE scheduled_messages_fired (
                event_id TEXT PRIMARY KEY,
                message_id \(idType) NOT NULL,
                schedule_to TEXT NOT NULL,
                due_at \(facts.timestamp) NOT NULL,
                webhook_url TEXT NOT NULL,
                fired_at \(facts.timestamp) NOT NULL
            )
            """,
            "CREATE INDEX scheduled_messages_fired_message ON scheduled_messages_fired (message_id, fired_at)",
        ]
    }
}

// The BLiP plugin's own tables, versioned under the plugin id `blip`.
import IntegratorCore

enum BlipMigrations {
    static let all: [PluginMigration] = [tables]

    static let tables = PluginMigration(version: 1, name: "notifications_identities") { facts in
        [
            // One row per notification; it is also its delivery: status, attempts, the next try, BLiP's message id.
            // `message_id` is chosen when the row is made, so every send of it (a retry, a send repeated after a
            // crash) carries the same id and BLiP sees one message.
            """
            CREATE TABLE blip_notifications (
                id TEXT PRIMARY KEY,
                integration_id TEXT,
                external_id TEXT,
                phone TEXT NOT NULL,
                template TEXT NOT NULL,
                namespace TEXT NOT NULL,
                language TEXT NOT NULL,
                parameters \(facts.json) NOT NULL,
                status TEXT NOT NULL,
                message_id TEXT NOT NULL,
                attempts INTEGER NOT NULL,
                last_error TEXT,
                next_attempt_at \(facts.timestamp) NOT NULL,
                claimed_until \(facts.timestamp),
                sent_at \(facts.timestamp),
                delivered_at \(facts.timestamp),
                read_at \(facts.timestamp),
                created_at \(facts.timestamp) NOT NULL,
                updated_at \(facts.timestamp) NOT NULL
            )
            """,
            "CREATE UNIQUE INDEX blip_notifications_external_id ON blip_notifications (external_id)",
            "CREATE UNIQUE INDEX blip_notifications_message_id ON blip_notifications (message_id)",
            "CREATE INDEX blip_notifications_due ON blip_notifications (status, next_attempt_at)",
            "CREATE INDEX blip_notifications_phone ON blip_notifications (phone)",
            // WhatsApp accounts found by the lookup, per credentials (one bot may see other accounts than another).
            """
            CREATE TABLE blip_identities (
                credentials_id TEXT NOT NULL,
                phone TEXT NOT NULL,
                account TEXT NOT NULL,
                looked_up_at \(facts.timestamp) NOT NULL,
                PRIMARY KEY (credentials_id, phone)
            )
            """,
        ]
    }
}

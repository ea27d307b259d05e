// The chat buffer's own tables, versioned under the plugin id `chat-buffer`.
import IntegratorCore

enum ChatBufferMigrations {
    static let all: [PluginMigration] = [tables, timerDue]

    static let tables = PluginMigration(version: 1, name: "buffers_messages_settings") { facts in
        [
            // One row per user with an open buffer: the row every message and the flush lock, so a user's messages
            // and its flush take turns. `buffer_id` names this buffer (and its webhook event); `last_seq` counts its
            // messages; `cap_at` is the first message's time plus max_wait.
            """
            CREATE TABLE chat_buffer_users (
                user_key TEXT PRIMARY KEY,
                buffer_id TEXT NOT NULL,
                last_seq INTEGER NOT NULL,
                first_at \(facts.timestamp) NOT NULL,
                cap_at \(facts.timestamp) NOT NULL,
                flush_at \(facts.timestamp) NOT NULL,
                updated_at \(facts.timestamp) NOT NULL
            )
            """,
            // `fields` is the message as sent, sealed with the process's key ring: it holds `token` and
            // `token_seguranca`.
            """
            CREATE TABLE chat_buffer_messages (
                user_key TEXT NOT NULL,
                seq INTEGER NOT NULL,
                fields TEXT NOT NULL,
                received_at \(facts.timestamp) NOT NULL,
                PRIMARY KEY (user_key, seq)
            )
            """,
            """
            CREATE TABLE chat_buffer_settings (
                name TEXT PRIMARY KEY,
                value TEXT NOT NULL,
                updated_at \(facts.timestamp) NOT NULL
            )
            """,
        ]
    }

    /// When the user's flush timer is due. A message that pushes the deadline later moves the timer without waking a
    /// beat; one that brings it sooner sets it again (and wakes the beat). NULL: unknown, so the next message sets the
    /// timer.
    static let timerDue = PluginMigration(version: 2, name: "timer_due") { facts in
        ["ALTER TABLE chat_buffer_users ADD COLUMN timer_due \(facts.timestamp)"]
    }
}

// Schema for a beat that isolates failures: outbox rows claimed by one publisher at a time, and unreadable schedules,
// timers and outbox rows set aside instead of stopping their batch.
import SQLKit

extension Migration {
    /// `claimed_until` lets a publisher take outbox rows in one short statement and publish them after its commit: other
    /// flushers skip the rows until then, and take them over if the publisher died.
    ///
    /// `set_aside_reason` marks a row the beat could not read (bad JSON, an unknown time zone, a cron expression that
    /// no longer parses): it stays stored, with the reason, and no longer holds up the rows behind it. Timers due are
    /// found through a partial index of the rows not set aside, so a set-aside timer costs the beat nothing.
    static let beatIsolation = Migration(version: 9, name: "beat_isolation") { facts in
        [
            "ALTER TABLE task_outbox ADD COLUMN claimed_until \(facts.timestamp)",
            "ALTER TABLE task_outbox ADD COLUMN set_aside_reason TEXT",
            "ALTER TABLE schedules ADD COLUMN set_aside_reason TEXT",
            "ALTER TABLE timers ADD COLUMN set_aside_reason TEXT",
            "DROP INDEX timers_due",
            "CREATE INDEX timers_due ON timers (due_at, id) WHERE set_aside_reason IS NULL",
        ]
    }
}

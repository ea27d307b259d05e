// Schema for the beat: periodic schedules, durable one-shot timers, the outbox and the beat's leader lease.
import SQLKit

extension Migration {
    /// Schedules, timers, the outbox and the beat lease.
    static let schedules = Migration(version: 4, name: "schedules") { facts in
        [
            """
            CREATE TABLE schedules (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL UNIQUE,
                task_name TEXT NOT NULL,
                arguments \(facts.json) NOT NULL,
                kind TEXT NOT NULL,
                every_seconds \(facts.bigint),
                cron_expression TEXT,
                timezone TEXT,
                clocked_at \(facts.timestamp),
                enabled \(facts.boolean) NOT NULL,
                one_off \(facts.boolean) NOT NULL,
                start_time \(facts.timestamp),
                expires \(facts.timestamp),
                queue TEXT NOT NULL,
                priority INTEGER NOT NULL,
                misfire TEXT NOT NULL,
                misfire_grace_seconds INTEGER NOT NULL,
                overlap TEXT NOT NULL,
                integration_id TEXT,
                anchor \(facts.timestamp) NOT NULL,
                next_run_at \(facts.timestamp),
                last_run_at \(facts.timestamp),
                last_task_id TEXT,
                total_run_count \(facts.bigint) NOT NULL,
                created_at \(facts.timestamp) NOT NULL,
                updated_at \(facts.timestamp) NOT NULL
            )
            """,
            // The beat's one question: which enabled schedules are due first.
            "CREATE INDEX schedules_due ON schedules (next_run_at) WHERE enabled = \(facts.engine == .postgres ? "TRUE" : "1")",
            """
            CREATE TABLE timers (
                id TEXT PRIMARY KEY,
                due_at \(facts.timestamp) NOT NULL,
                task_id TEXT NOT NULL,
                task_name TEXT NOT NULL,
                arguments \(facts.json) NOT NULL,
                queue TEXT NOT NULL,
                priority INTEGER NOT NULL,
                attempt INTEGER NOT NULL,
                max_attempts INTEGER,
                integration_id TEXT,
                schedule_id TEXT,
                created_at \(facts.timestamp) NOT NULL
            )
            """,
            "CREATE INDEX timers_due ON timers (due_at, id)",
            // Messages committed with their task runs but not yet confirmed by an external broker.
            """
            CREATE TABLE task_outbox (
                seq \(facts.autoincrementKey),
                task_id TEXT NOT NULL,
                task_name TEXT NOT NULL,
                arguments \(facts.json) NOT NULL,
                queue TEXT NOT NULL,
                priority INTEGER NOT NULL,
                attempt INTEGER NOT NULL,
                max_attempts INTEGER,
                enqueued_at \(facts.timestamp) NOT NULL,
                integration_id TEXT,
                schedule_id TEXT,
                due_at \(facts.timestamp)
            )
            """,
            "ALTER TABLE task_runs ADD COLUMN scheduled_for \(facts.timestamp)",
            // The last line of defence against a fire time published twice, whatever happens to the beats.
            "CREATE UNIQUE INDEX task_runs_schedule_fire ON task_runs (schedule_id, scheduled_for)",
            // SQLite has no advisory locks; the beat leads by holding this row's lease.
            """
            CREATE TABLE beat_lease (
                name TEXT PRIMARY KEY,
                holder TEXT NOT NULL,
                expires_at \(facts.timestamp) NOT NULL
            )
            """,
        ]
    }
}

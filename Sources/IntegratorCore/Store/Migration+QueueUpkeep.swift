// Upkeep for the busiest tables: fewer indexes to write on the task hot path, and a queue table PostgreSQL cleans often.
import SQLKit

extension Migration {
    /// Drops `task_runs_schedule`: the unique index on (schedule_id, scheduled_for) answers lookups by schedule too,
    /// and every index is one more write per recorded run.
    ///
    /// On PostgreSQL, `task_queue` rows live for seconds and are deleted at the rate tasks finish. Autovacuum's
    /// defaults (a pass after 20 % of the table changed, an analyze after 10 %) let deleted rows pile up in the claim
    /// index, so the queue table gets passes after a fixed number of changes instead.
    static let queueUpkeep = Migration(version: 6, name: "queue_upkeep") { facts in
        var statements = ["DROP INDEX task_runs_schedule"]
        if facts.engine == .postgres {
            statements.append(
                """
                ALTER TABLE task_queue SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000,
                    autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 10000)
                """)
        }
        return statements
    }

    /// Workers report their running tasks per queue, so a queue's in-flight count does not depend on runs being
    /// recorded `started` (short tasks are not, see `WorkerOptions.recordStartedAfter`).
    static let workerQueueLoad = Migration(version: 7, name: "worker_queue_load") { facts in
        ["ALTER TABLE workers ADD COLUMN busy_by_queue \(facts.json)"]
    }
}

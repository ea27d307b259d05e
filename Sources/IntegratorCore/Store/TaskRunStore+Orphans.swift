// Runs left waiting with nothing behind them: recorded queued, but no queue row, outbox row or timer will deliver them.
import Foundation
import SQLKit

extension TaskRunStore {
    /// Inside a transaction: up to `limit` runs queued or waiting to retry since before `cutoff` that no queue row,
    /// outbox row or timer will deliver, locked (skipping rows others hold on PostgreSQL). Only meaningful with the SQL
    /// queue, where every pending message is a row of the same database.
    func lockOrphans(before cutoff: Date, limit: Int, _ transaction: StoreTransaction) async throws -> [TaskRun] {
        let waiting = [TaskState.queued, .retrying].map(\.rawValue)
        let lock: SQLQueryString = transaction.engine == .postgres ? "FOR UPDATE OF r SKIP LOCKED" : ""
        return try await transaction.sql.raw(
            """
            SELECT r.* FROM task_runs r
            WHERE r.state IN (\(binds: waiting)) AND r.updated_at < \(bind: cutoff)
              AND NOT EXISTS (SELECT 1 FROM task_queue q WHERE q.task_id = r.id)
              AND NOT EXISTS (SELECT 1 FROM task_outbox o WHERE o.task_id = r.id)
              AND NOT EXISTS (SELECT 1 FROM timers t WHERE t.task_id = r.id)
            ORDER BY r.updated_at LIMIT \(bind: limit) \(lock)
            """
        ).all().map(Self.run)
    }
}

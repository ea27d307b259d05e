// Runs recorded by the beat's schedule fires: a fire time that already has a run is skipped, not an error.
import Foundation
import SQLKit

extension TaskRunStore {
    /// Inside the caller's transaction: records each fire as a queued run unless its schedule already has a run for
    /// that fire time (the unique index on `(schedule_id, scheduled_for)` says so), and returns the task ids it
    /// recorded. A fire is new work with a fresh task id, so any conflict means "already fired" and the row is skipped
    /// (`ON CONFLICT DO NOTHING`): one stale fire time costs nothing, where an error would roll back the whole batch
    /// and fail again on every retry.
    func insertFires(_ batch: [QueuedRun], at now: Date, _ sql: any SQLDatabase) async throws -> Set<String> {
        let entries = batch.lastOccurrences(by: \.message.id)
        guard !entries.isEmpty else { return [] }
        let queued = TaskState.queued.rawValue
        var recorded: Set<String> = []
        if database.engine == .postgres {
            let rows = TaskMessage.unnested(
                entries.map(\.message),
                extra: [
                    ("has_fire_time", "\(bind: entries.map { $0.scheduledFor != nil })::bool[]"),
                    ("scheduled_for", "\(bind: entries.map { $0.scheduledFor ?? now })::timestamptz[]"),
                ])
            let inserted = try await sql.raw(
                """
                INSERT INTO task_runs (id, task_name, arguments, queue, priority, state, attempt, enqueued_at, integration_id,
                                       schedule_id, scheduled_for, updated_at)
                SELECT task_id, task_name, arguments, queue, priority, \(bind: queued), attempt, enqueued_at, NULLIF(integration_id, ''),
                       NULLIF(schedule_id, ''), CASE WHEN has_fire_time THEN scheduled_for END, \(bind: now)
                FROM \(rows)
                ON CONFLICT DO NOTHING
                RETURNING id
                """
            ).all()
            for row in inserted { recorded.insert(try row.decode(column: "id", as: String.self)) }
            return recorded
        }
        for chunk in entries.chunks(of: 400) {
            let rows = chunk.map { entry -> SQLQueryString in
                let message = entry.message
                return """
                    (\(bind: message.id), \(bind: message.name), \(bind: message.arguments.encodedString()), \(bind: message.queue),
                     \(bind: message.priority), \(bind: queued), \(bind: message.attempt), \(bind: message.enqueuedAt),
                     \(bind: message.integrationID), \(bind: message.scheduleID), \(bind: entry.scheduledFor), \(bind: now))
                    """
            }
            let inserted = try await sql.raw(
                """
                INSERT INTO task_runs (id, task_name, arguments, queue, priority, state, attempt, enqueued_at, integration_id,
                                       schedule_id, scheduled_for, updated_at)
                VALUES \(rows.joined(separator: ", "))
                ON CONFLICT DO NOTHING
                RETURNING id
                """
            ).all()
            for row in inserted { recorded.insert(try row.decode(column: "id", as: String.self)) }
        }
        return recorded
    }
}

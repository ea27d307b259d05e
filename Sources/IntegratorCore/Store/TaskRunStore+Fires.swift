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
        var recorded: Set<String> = []
        for statement in queuedRunInserts(batch, at: now, ending: "ON CONFLICT DO NOTHING RETURNING id") {
            for row in try await sql.raw(statement).all() { recorded.insert(try row.decode(column: "id", as: String.self)) }
        }
        return recorded
    }
}

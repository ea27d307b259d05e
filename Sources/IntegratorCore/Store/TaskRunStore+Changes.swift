// Changing one run by hand (retry, revoke) in one transaction with the messages that would publish it.
import Foundation
import SQLKit

extension TaskRunStore {
    /// The run, locked against concurrent changes until the transaction ends (PostgreSQL; SQLite's write transaction
    /// already excludes other writers).
    func lockedForChange(id: String, _ transaction: StoreTransaction) async throws -> TaskRun? {
        let lock: SQLQueryString = transaction.engine == .postgres ? "FOR UPDATE" : ""
        return try await transaction.sql.raw("SELECT * FROM task_runs WHERE id = \(bind: id) \(lock)").first().map(Self.run)
    }

    /// Removes the task's dead-lettered messages from the SQL queue (a retry stages a fresh one).
    func removeDeadMessages(taskID: String, _ transaction: StoreTransaction) async throws {
        try await transaction.sql.raw("DELETE FROM task_queue WHERE task_id = \(bind: taskID) AND dead = \(bind: true)").run()
    }

    /// Removes whatever would still publish or deliver the task and no worker holds: its retry timers, its outbox rows
    /// and, with `includingQueue`, its unleased SQL queue rows. Returns whether anything was removed.
    func removePendingMessages(
        taskID: String, at now: Date, includingQueue: Bool, _ transaction: StoreTransaction
    ) async throws -> Bool {
        let sql = transaction.sql
        var removed = try await !sql.raw("DELETE FROM timers WHERE task_id = \(bind: taskID) RETURNING id").all().isEmpty
        removed = try await !sql.raw("DELETE FROM task_outbox WHERE task_id = \(bind: taskID) RETURNING task_id").all().isEmpty || removed
        if includingQueue {
            let queueRows = try await sql.raw(
                """
                DELETE FROM task_queue WHERE task_id = \(bind: taskID) AND dead = \(bind: false)
                  AND (lease_until IS NULL OR lease_until < \(bind: now)) RETURNING seq
                """
            ).all()
            removed = removed || !queueRows.isEmpty
        }
        return removed
    }

    /// Marks the run revoked inside the caller's transaction.
    func markRevoked(taskID: String, at now: Date, _ transaction: StoreTransaction) async throws {
        try await transaction.sql.update("task_runs").set("state", to: TaskState.revoked.rawValue).set("finished_at", to: now)
            .set("updated_at", to: now).where("id", .equal, taskID).run()
    }

    /// Marks revoked every run of `queue` that has not started, returning how many it marked.
    func markRevoked(queue: String, at now: Date, _ transaction: StoreTransaction) async throws -> Int {
        try await transaction.sql.raw(
            """
            UPDATE task_runs SET state = \(bind: TaskState.revoked.rawValue), finished_at = \(bind: now), updated_at = \(bind: now)
            WHERE queue = \(bind: queue) AND state IN (\(binds: Self.waitingStates)) RETURNING id
            """
        ).all().count
    }

    /// Removes what would still publish `queue`'s tasks: the retry timers of its runs that have not started and its
    /// outbox rows. Other timers (a plugin's future messages, say) stay. Returns the task ids removed.
    func removePendingMessages(queue: String, _ transaction: StoreTransaction) async throws -> [String] {
        let sql = transaction.sql
        let timers = try await sql.raw(
            """
            DELETE FROM timers WHERE queue = \(bind: queue) AND task_id IN (
                SELECT id FROM task_runs WHERE queue = \(bind: queue) AND state IN (\(binds: Self.waitingStates)))
            RETURNING task_id
            """
        ).all()
        let outbox = try await sql.raw("DELETE FROM task_outbox WHERE queue = \(bind: queue) RETURNING task_id").all()
        return try (timers + outbox).map { try $0.decode(column: "task_id", as: String.self) }
    }

    /// Marks revoked those of `taskIDs` whose runs have not started, returning how many it marked.
    func markRevoked(taskIDs: [String], at now: Date, _ transaction: StoreTransaction) async throws -> Int {
        var marked = 0
        for chunk in Array(Set(taskIDs)).sorted().chunks(of: 500) {
            marked += try await transaction.sql.raw(
                """
                UPDATE task_runs SET state = \(bind: TaskState.revoked.rawValue), finished_at = \(bind: now), updated_at = \(bind: now)
                WHERE id IN (\(binds: Array(chunk))) AND \(SQLQueryString.statusIsOneOf("state", Self.waitingStates)) RETURNING id
                """
            ).all().count
        }
        return marked
    }

    private static let waitingStates = TaskState.waiting.map(\.rawValue)
}

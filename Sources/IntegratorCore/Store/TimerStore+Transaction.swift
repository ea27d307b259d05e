// Setting and cancelling durable timers inside a caller's transaction.
import Foundation
import SQLKit

extension TimerStore {
    /// Creates the timer (or moves the one with the same id) inside `transaction`; the beat is woken once it commits.
    public func upsert(_ timer: DurableTimer, in transaction: StoreTransaction, at now: Date) async throws {
        try await upsert(timer, at: now, transaction.sql)
        let wakeup = self.wakeup
        transaction.afterCommit { wakeup.notify(dueAt: timer.dueAt) }
    }

    /// Creates many timers (or moves existing ones) inside `transaction`, in multi-row statements; of timers sharing an
    /// id the last wins. The beat is woken once it commits, for the earliest of them.
    public func upsert(contentsOf timers: [DurableTimer], in transaction: StoreTransaction, at now: Date) async throws {
        guard let earliest = timers.map(\.dueAt).min() else { return }
        let chunks = timers.chunks(of: Self.chunkSize)
        for (index, chunk) in chunks.enumerated() {
            // The last statement wakes the beats of other processes (on SQLite, which has no notifications, nothing).
            try await upsert(Array(chunk), at: now, transaction.sql, wakingBeatsFor: index == chunks.count - 1 ? earliest : nil)
        }
        let wakeup = self.wakeup
        transaction.afterCommit { wakeup.notify(dueAt: earliest) }
    }

    /// Moves a timer that has not fired to a later due time, inside `transaction`, without waking any beat: a beat that
    /// wakes for the old time finds nothing due and reads the new earliest time before it sleeps again. `false` when
    /// there is no such timer (it fired already) or it is due at `dueAt` or later; the caller then handles the fire.
    @discardableResult
    public func postpone(id: String, to dueAt: Date, in transaction: StoreTransaction) async throws -> Bool {
        try await postpone([id: dueAt], in: transaction).contains(id)
    }

    /// Moves many timers, by id, as ``postpone(id:to:in:)`` moves one, in one statement per 1,000; returns the ids of
    /// those moved. The others had fired already or were due at their new time or later; the caller handles those.
    @discardableResult
    public func postpone(_ moves: [String: Date], in transaction: StoreTransaction) async throws -> Set<String> {
        var moved = Set<String>()
        for chunk in moves.sorted(by: { $0.key < $1.key }).chunks(of: 1000) {
            let rows = chunk.map { move -> SQLQueryString in "(\(bind: move.key), \(bind: move.value))" }
            // Both engines name the columns of a VALUES list column1, column2, …
            let returned = try await transaction.sql.raw(
                """
                UPDATE timers SET due_at = moved.column2 FROM (VALUES \(rows.joined(separator: ", "))) AS moved
                WHERE timers.id = moved.column1 AND timers.due_at < moved.column2 RETURNING id
                """
            ).all()
            for row in returned { moved.insert(try row.decode(column: "id", as: String.self)) }
        }
        return moved
    }

    /// Removes a timer that has not fired, inside `transaction`; `false` when there is none with that id.
    @discardableResult
    public func cancel(id: String, in transaction: StoreTransaction) async throws -> Bool {
        try await cancel(ids: [id], in: transaction) == 1
    }

    /// Removes the timers with these ids that have not fired, inside `transaction`; returns how many there were.
    @discardableResult
    public func cancel(ids: [String], in transaction: StoreTransaction) async throws -> Int {
        var removed = 0
        for chunk in ids.chunks(of: 500) {
            removed += try await transaction.sql.raw("DELETE FROM timers WHERE id IN (\(binds: Array(chunk))) RETURNING id").all().count
        }
        return removed
    }
}

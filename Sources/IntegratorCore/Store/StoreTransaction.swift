// A database transaction that plugins can join: their writes, enqueued tasks and timers commit together or not at all.
import Foundation
import SQLKit
import Synchronization

/// One open transaction. Everything written through it commits together; work that must only happen once the
/// commit succeeded (publishing staged task messages, waking the beat) is registered with ``afterCommit(_:)``.
///
/// Get one from ``Database/withTransaction(_:)`` or ``PluginEnvironment/transaction(_:)``. Enqueue tasks into it with
/// ``TasksService/enqueue(_:in:)`` and set or cancel timers with ``TimerStore/upsert(_:in:)`` and
/// ``TimerStore/cancel(id:in:)``; change-event subscribers receive the one that writes their events.
public final class StoreTransaction: Sendable {
    /// Run your own statements here; they join the transaction.
    public let sql: any SQLDatabase
    /// For the few statements that differ between the engines.
    public let engine: Database.Engine
    private let committedActions = Mutex<[@Sendable () async -> Void]>([])

    init(sql: any SQLDatabase, engine: Database.Engine) {
        self.sql = sql
        self.engine = engine
    }

    /// Runs `action` after the transaction committed, in registration order; never when it rolled back.
    public func afterCommit(_ action: @escaping @Sendable () async -> Void) {
        committedActions.withLock { $0.append(action) }
    }

    /// The actions registered so far, emptied.
    func takeCommittedActions() -> [@Sendable () async -> Void] {
        committedActions.withLock { actions in
            defer { actions = [] }
            return actions
        }
    }
}

extension Database {
    /// Runs `body` in a transaction that plugins' and the engine's writers can join, then, once it committed, the
    /// actions they registered with ``StoreTransaction/afterCommit(_:)``. Rolled back when `body` throws.
    public func withTransaction<T: Sendable>(_ body: @escaping @Sendable (StoreTransaction) async throws -> T) async throws -> T {
        let engine = self.engine
        let (value, actions) = try await transaction { sql in
            let transaction = StoreTransaction(sql: sql, engine: engine)
            let value = try await body(transaction)
            return (value, transaction.takeCommittedActions())
        }
        for action in actions { await action() }
        return value
    }
}

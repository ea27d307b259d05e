// Finds runs recorded as waiting that nothing will ever deliver, and puts their messages back.
import Foundation
import Logging
import ServiceLifecycle

/// With the SQL queue a run and its message are written in one transaction, so a run without a message means
/// something went wrong outside the engine's normal path: a row deleted by hand, a process of an older version that
/// recorded and published in two steps and died in between, a restore from a backup taken between two tables. Such a
/// run would stay `queued` forever, and `integration.fetch_all` would skip its integration for good. The reaper
/// stages a fresh message for it (same task id and attempt) and logs a warning per run.
///
/// With an external broker the engine cannot see what the broker holds, so a queued run with no outbox row is
/// normal (it waits in RabbitMQ); there the outbox is what keeps runs and messages together, and the reaper is idle.
public struct OrphanedRunReaper: Service {
    let database: Database
    let runs: TaskRunStore
    let dispatcher: TaskDispatcher
    let inDatabaseQueue: Bool
    let clock: any TimeSource
    let logger: Logger
    /// How long a run must have waited with nothing behind it; longer than any write takes to commit.
    public var grace: TimeInterval
    /// Time between looks.
    public var interval: Duration

    public init(runtime: Runtime, grace: TimeInterval = 300, interval: Duration = .seconds(60)) {
        self.database = runtime.database
        self.runs = runtime.runs
        self.dispatcher = runtime.dispatcher
        self.inDatabaseQueue = runtime.broker.inDatabase != nil
        self.clock = runtime.clock
        self.logger = runtime.logger
        self.grace = grace
        self.interval = interval
    }

    public func run() async throws {
        guard inDatabaseQueue else {
            // Nothing to do, but a service that returns early would stop the whole group.
            try? await gracefulShutdown()
            return
        }
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    try await reap()
                } catch is CancellationError {
                    return
                } catch {
                    logger.warning("could not look for orphaned task runs", metadata: ["error": "\(error)"])
                }
                try? await Task.sleep(for: interval)
            }
        }
    }

    /// Requeues every run that waited longer than ``grace`` with nothing to deliver it; returns their ids.
    @discardableResult
    public func reap() async throws -> [String] {
        guard inDatabaseQueue else { return [] }
        var reaped: [String] = []
        while true {
            let now = clock.now()
            let runs = self.runs
            let dispatcher = self.dispatcher
            let batch = try await database.withTransaction { transaction in
                let orphans = try await runs.lockOrphans(before: now.addingTimeInterval(-grace), limit: 500, transaction)
                // No fire time: the run row keeps its own, and the message is not a new fire of its schedule.
                let messages = orphans.map { run in
                    QueuedRun(
                        message: TaskMessage(
                            id: run.id, name: run.name, arguments: run.arguments, queue: run.queue, priority: run.priority,
                            attempt: run.attempt, enqueuedAt: now, integrationID: run.integrationID, scheduleID: run.scheduleID))
                }
                try await dispatcher.stage(messages, at: now, transaction.sql)
                return orphans.map(\.id)
            }
            if !batch.isEmpty { dispatcher.queue?.noteCommittedArrivals() }
            for id in batch {
                logger.warning("requeued a task run that had no message behind it", metadata: ["task.id": "\(id)"])
            }
            reaped += batch
            if batch.count < 500 { return reaped }
        }
    }
}

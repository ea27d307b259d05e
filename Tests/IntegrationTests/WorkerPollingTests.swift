// When an idle worker claims: at once for tasks it hears of, rarely while it hears of every task, briskly for a while
// after a poll found a task nobody announced (queued by another process).
import Foundation
@testable import IntegratorCore
import Synchronization
import Testing

/// The SQL queue, counting the claims made on it and noting when each task was claimed.
private final class ClaimCountingBroker: Broker {
    let base: SQLBroker
    private let count = Mutex(0)
    private let finished = Mutex(0)
    private let claimedAt = Mutex<[String: ContinuousClock.Instant]>([:])

    init(_ base: SQLBroker) { self.base = base }

    var claims: Int { count.withLock { $0 } }
    /// Claims that have returned (``claims`` counts them when they begin).
    var finishedClaims: Int { finished.withLock { $0 } }

    /// When the task `id` was first claimed, if it was.
    func claimed(_ id: String) -> ContinuousClock.Instant? { claimedAt.withLock { $0[id] } }

    func claim(queues: [String], limit: Int, workerID: String, leaseUntil: Date) async throws -> [Delivery] {
        count.withLock { $0 += 1 }
        let deliveries = try await base.claim(queues: queues, limit: limit, workerID: workerID, leaseUntil: leaseUntil)
        defer { finished.withLock { $0 += 1 } }
        let now = ContinuousClock.now
        claimedAt.withLock { claimed in
            for delivery in deliveries where claimed[delivery.message.id] == nil { claimed[delivery.message.id] = now }
        }
        return deliveries
    }

    func publish(_ message: TaskMessage) async throws { try await base.publish(message) }
    func acknowledge(_ delivery: Delivery) async throws { try await base.acknowledge(delivery) }
    func acknowledge(_ deliveries: [Delivery]) async throws { try await base.acknowledge(deliveries) }
    func retry(_ delivery: Delivery, as next: TaskMessage, notBefore: Date) async throws {
        try await base.retry(delivery, as: next, notBefore: notBefore)
    }
    func deadLetter(_ delivery: Delivery, reason: String) async throws { try await base.deadLetter(delivery, reason: reason) }
    func release(_ deliveries: [Delivery]) async throws { try await base.release(deliveries) }
    func extendLeases(workerID: String, leaseUntil: Date) async throws { try await base.extendLeases(workerID: workerID, leaseUntil: leaseUntil) }
    func stats() async throws -> [QueueStats] { try await base.stats() }
    func stats(of queue: String) async throws -> QueueStats? { try await base.stats(of: queue) }
    func purge(queue: String) async throws -> Int? { try await base.purge(queue: queue) }
    var arrivalMark: UInt64 { base.arrivalMark }
    func waitForMessages(after mark: UInt64, upTo limit: Duration) async -> Bool {
        await base.waitForMessages(after: mark, upTo: limit)
    }
    func receiveNewsOfArrivals() async { await base.receiveNewsOfArrivals() }
}

@Suite("When idle workers claim")
struct WorkerPollingTests {
    /// Runs a worker on `default` over a claim-counting SQL queue for the duration of `body`.
    private func withCountingWorker(
        _ app: TestApp, maxPollInterval: Duration, _ body: @Sendable (ClaimCountingBroker) async throws -> Void
    ) async throws {
        let broker = try #require(app.runtime.broker as? SQLBroker)
        let counting = ClaimCountingBroker(broker)
        let worker = Worker(
            options: WorkerOptions(queues: ["default"], concurrency: 4, maxPollInterval: maxPollInterval), broker: counting,
            runs: app.runtime.runs, registry: app.runtime.registry, timers: app.runtime.timers, environment: app.runtime.environment,
            clock: app.runtime.clock, logger: app.runtime.logger)
        let running = Task { try await worker.run() }
        defer { running.cancel() }
        // Its first claim follows no news, so a task it finds makes it poll briskly: the tests queue only after it returned.
        #expect(try await eventually { counting.finishedClaims > 0 }, "the worker made its first claim")
        try await body(counting)
        running.cancel()
        _ = try? await running.value
    }

    private func noop(_ app: TestApp) -> TaskMessage {
        TaskMessage(name: "core.noop", arguments: [:], queue: "default", priority: 0, enqueuedAt: app.runtime.clock.now())
    }

    /// Queues `message` as another process would: stored, but no worker of this process hears of it.
    private func queueUnannounced(_ message: TaskMessage, _ app: TestApp) async throws {
        let broker = try #require(app.runtime.broker as? SQLBroker)
        let now = app.runtime.clock.now()
        try await app.runtime.database.writeTogether(
            app.runtime.runs.queuedStatements([QueuedRun(message: message)], at: now)
                + broker.insertStatements([message], availableAt: \.enqueuedAt))
    }

    private func succeeded(_ id: String, _ app: TestApp) async throws -> Bool {
        try await app.runtime.runs.find(id: id)?.state == .succeeded
    }

    @Test("a task this process queues is claimed at once, though the worker polls only every 30 s")
    func announcedTaskIsClaimedAtOnce() async throws {
        try await TestApp.run { app in
            try await withCountingWorker(app, maxPollInterval: .seconds(30)) { _ in
                let message = try await app.runtime.tasks.enqueue(noop(app))
                #expect(try await eventually(10) { try await succeeded(message.id, app) })
            }
        }
    }

    @Test("an idle worker that hears of every task claims about once per poll interval, not every few milliseconds")
    func idleWorkerPollsRarely() async throws {
        try await TestApp.run { app in
            try await withCountingWorker(app, maxPollInterval: .milliseconds(200)) { counting in
                let message = try await app.runtime.tasks.enqueue(noop(app))
                #expect(try await eventually { try await succeeded(message.id, app) })
                let before = counting.claims
                try await Task.sleep(for: .seconds(1))
                // One claim per 200 ms is 5; brisk polling (every 5 ms) would be about 25 in the first 100 ms alone.
                #expect(counting.claims - before <= 10, "claims in an idle second: \(counting.claims - before)")
            }
        }
    }

    @Test(
        "after a poll found a task nobody announced, the next such task waits for a brisk poll, not the slow one",
        arguments: [false, true])
    func unannouncedTaskStartsBriskPolling(queuedBeforeTheWorkerStarted: Bool) async throws {
        try await TestApp.run { app in
            // A task queued before the worker started is found by its first claim, which no news preceded either.
            let first = noop(app)
            if queuedBeforeTheWorkerStarted { try await queueUnannounced(first, app) }
            try await withCountingWorker(app, maxPollInterval: .seconds(5)) { counting in
                if !queuedBeforeTheWorkerStarted { try await queueUnannounced(first, app) }
                // The second goes in as soon as the first was claimed: brisk polls back off after 100 ms of empty
                // claims, and on a loaded machine the first's run and its record can take longer than that.
                #expect(try await eventually(30) { counting.claimed(first.id) != nil })
                let second = noop(app)
                let queuedAt = ContinuousClock.now
                try await queueUnannounced(second, app)
                #expect(try await eventually(30) { counting.claimed(second.id) != nil })
                let waited = try #require(counting.claimed(second.id)) - queuedAt
                #expect(waited < .milliseconds(2500), "took \(waited); the slow poll is every 5 s")
                #expect(try await eventually(30) { try await succeeded(second.id, app) })
            }
        }
    }
}

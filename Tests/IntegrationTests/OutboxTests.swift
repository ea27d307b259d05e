// The beat publishing through the outbox to a real RabbitMQ: nothing lost when the broker refuses, a republished copy
// runs once.
import Foundation
@testable import IntegratorCore
import Testing

extension RabbitMQTests {
    /// Nested in the RabbitMQ suite, which runs its tests one at a time: other tests there block or restart the node.
    @Suite("Outbox to RabbitMQ")
    struct Outbox {}
}

extension RabbitMQTests.Outbox {
    @Test("timers fired by the beat go through the outbox and arrive once; a copy published twice runs once")
    func outbox() async throws {
        let url = try RabbitMQTests.url()
        try await TestApp.run(realClock: true) { app in
            let broker = try RabbitMQBroker(url: url, runs: app.runtime.runs, logger: TestDatabase.logger)
            defer { broker.shutdown() }
            let queue = "outbox-\(UUID().uuidString.prefix(8).lowercased())"
            let dispatcher = TaskDispatcher(database: app.runtime.database, broker: broker, runs: app.runtime.runs)
            #expect(dispatcher.usesOutbox)
            let beat = Beat(
                database: app.runtime.database, schedules: ScheduleStore(database: app.runtime.database), timers: app.runtime.timers,
                dispatcher: dispatcher, wakeup: app.runtime.wakeup, clock: SystemTimeSource(), logger: TestDatabase.logger)
            let message = TaskMessage(name: "core.noop", arguments: ["k": "v"], queue: queue, enqueuedAt: Date())
            try await app.runtime.timers.upsert(DurableTimer(dueAt: Date(), message: message), at: Date())
            let pass = try await beat.pass()
            #expect(pass.timersFired == 1 && pass.published == 1)
            #expect(try await dispatcher.outboxCount() == 0)
            let delivered = try await claimAll(broker, queue: queue, expecting: 1)
            #expect(delivered.map(\.message.id) == [message.id] && delivered.first?.message.arguments == ["k": "v"])

            // The same message published again (as after a crash between the broker's confirm and the outbox delete):
            // the worker runs the first copy and drops the second.
            try await broker.publish(message)
            let worker = Worker(
                options: WorkerOptions(queues: [queue], concurrency: 1), broker: broker, runs: app.runtime.runs,
                registry: app.runtime.registry, logger: TestDatabase.logger)
            try await broker.release(delivered)
            let running = Task { try await worker.run() }
            defer { running.cancel() }
            #expect(try await eventually(20) { try await app.runtime.runs.find(id: message.id)?.state == .succeeded })
            #expect(try await eventually(20) { try await broker.stats().first { $0.queue == queue }.map { $0.ready + $0.inFlight } == 0 })
            running.cancel()
            _ = try? await running.value
            let attempts = try await app.runtime.runs.attempts(taskID: message.id)
            #expect(attempts.count == 1 && attempts.first?.state == .succeeded, "one attempt, run once")
        }
    }

    @Test("copies of one message claimed together run once: the others are acknowledged while it runs")
    func copiesClaimedTogether() async throws {
        let url = try RabbitMQTests.url()
        let counter = ExecutionCounter()
        try await TestApp.run(extraPlugins: [.notes(counter: counter)], realClock: true) { app in
            let broker = try RabbitMQBroker(url: url, runs: app.runtime.runs, logger: TestDatabase.logger)
            defer { broker.shutdown() }
            let queue = "copies-\(UUID().uuidString.prefix(8).lowercased())"
            let message = TaskMessage(name: "notes.count", queue: queue, enqueuedAt: Date())
            try await app.runtime.runs.recordQueued(message, at: Date())
            // Three copies in the queue before any worker looks: one claim takes them all.
            for _ in 0..<3 { try await broker.publish(message) }
            let worker = Worker(
                options: WorkerOptions(queues: [queue], concurrency: 8), broker: broker, runs: app.runtime.runs,
                registry: app.runtime.registry, environment: app.runtime.environment, logger: TestDatabase.logger)
            let running = Task { try await worker.run() }
            defer { running.cancel() }
            let succeeded = try await eventually(20) { try await app.runtime.runs.find(id: message.id)?.state == .succeeded }
            let emptied = try await eventually(20) { try await broker.stats().first { $0.queue == queue }.map { $0.ready + $0.inFlight } == 0 }
            running.cancel()
            _ = try? await running.value
            #expect(succeeded && emptied)
            #expect(counter.count(message.id) == 1, "ran \(counter.count(message.id)) times")
        }
    }

    func claimAll(_ broker: RabbitMQBroker, queue: String, expecting count: Int) async throws -> [Delivery] {
        var deliveries: [Delivery] = []
        let deadline = ContinuousClock.now + .seconds(10)
        while deliveries.count < count, ContinuousClock.now < deadline {
            deliveries += try await broker.claim(queues: [queue], limit: 10, workerID: "test", leaseUntil: Date().addingTimeInterval(60))
        }
        return deliveries
    }
}

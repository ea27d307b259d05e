// The RabbitMQ broker against a real RabbitMQ node (scripts/test.sh starts one and sets AMQP_TEST_URL).
import Foundation
import IntegratorCore
import Testing

@Suite("RabbitMQ broker", .serialized)
struct RabbitMQTests {
    static func url() throws -> Secret {
        guard let url = ProcessInfo.processInfo.environment["AMQP_TEST_URL"] else {
            throw TestSetupError("AMQP_TEST_URL is not set; run the suite with `make test`, which starts RabbitMQ")
        }
        return Secret(url)
    }

    /// Runs `body` with a RabbitMQ broker on the test app's store, and a queue name no other test uses.
    func withBroker<T: Sendable>(
        extraPlugins: [Plugin] = [], _ body: @Sendable (TestApp, RabbitMQBroker, String) async throws -> T
    ) async throws -> T {
        let url = try Self.url()
        return try await TestApp.run(extraPlugins: extraPlugins, realClock: true) { app in
            let broker = try RabbitMQBroker(url: url, runs: app.runtime.runs, logger: TestDatabase.logger)
            defer { broker.shutdown() }
            return try await body(app, broker, "test-\(UUID().uuidString.prefix(8).lowercased())")
        }
    }

    func worker(_ app: TestApp, _ broker: RabbitMQBroker, queue: String, concurrency: Int) -> Worker {
        Worker(
            options: WorkerOptions(queues: [queue], concurrency: concurrency), broker: broker, runs: app.runtime.runs,
            registry: app.runtime.registry, logger: TestDatabase.logger)
    }

    func enqueue(_ app: TestApp, _ broker: RabbitMQBroker, _ message: TaskMessage) async throws {
        try await app.runtime.runs.recordQueued(message, at: Date())
        try await broker.publish(message)
    }

    @Test("published tasks are confirmed, consumed, run and recorded once each")
    func roundTrip() async throws {
        try await withBroker { app, broker, queue in
            for index in 0..<200 {
                try await enqueue(app, broker, TaskMessage(name: "core.noop", arguments: ["i": .number(Double(index))], queue: queue, priority: index % 10, enqueuedAt: Date()))
            }
            let worker = worker(app, broker, queue: queue, concurrency: 8)
            let running = Task { try await worker.run() }
            defer { running.cancel() }
            let done = try await eventually(30) { try await app.runtime.runs.count(state: .succeeded, queue: queue) == 200 }
            #expect(done)
            running.cancel()
            _ = try? await running.value
            #expect(try await app.runtime.runs.countByState() == [.succeeded: 200])
            let stats = try await broker.stats()
            #expect(stats.first { $0.queue == queue }?.ready == 0)
        }
    }

    @Test("with one slot, a high-priority task published after low ones runs next")
    func priority() async throws {
        try await withBroker { app, broker, queue in
            var low: [String] = []
            for _ in 0..<5 {
                let message = TaskMessage(name: "core.noop", queue: queue, priority: 1, enqueuedAt: Date())
                try await enqueue(app, broker, message)
                low.append(message.id)
            }
            let high = TaskMessage(name: "core.noop", queue: queue, priority: 9, enqueuedAt: Date())
            try await enqueue(app, broker, high)
            var order: [String] = []
            for _ in 0..<6 {
                var claimed: [Delivery] = []
                for _ in 0..<100 where claimed.isEmpty {
                    claimed = try await broker.claim(queues: [queue], limit: 1, workerID: "w", leaseUntil: Date())
                }
                let delivery = try #require(claimed.first)
                order.append(delivery.message.id)
                try await broker.acknowledge(delivery)
            }
            #expect(order == [high.id] + low)
        }
    }

    @Test("a queue's in-flight count comes from the workers' heartbeats, also for tasks not recorded started")
    func inFlightFromHeartbeats() async throws {
        try await withBroker(extraPlugins: [.testTasks]) { app, broker, queue in
            let gate = UUID().uuidString
            try await enqueue(app, broker, TaskMessage(name: "test.gate", arguments: ["gate": .string(gate)], queue: queue, enqueuedAt: Date()))
            let worker = Worker(
                options: WorkerOptions(queues: [queue], concurrency: 2, heartbeatInterval: .milliseconds(50), recordStartedAfter: .seconds(60)),
                broker: broker, runs: app.runtime.runs, registry: app.runtime.registry, logger: TestDatabase.logger)
            let running = Task { try await worker.run() }
            defer { running.cancel() }
            let inFlight = try await eventually(20) { try await broker.stats().first { $0.queue == queue }?.inFlight == 1 }
            #expect(inFlight)
            #expect(try await app.runtime.runs.countByState() == [.queued: 1], "a start is recorded only after a minute here")
            let reported = try await app.runtime.runs.liveWorkers(since: Date().addingTimeInterval(-30)).first { $0.id == worker.id }
            #expect(reported?.busyByQueue == [queue: 1])
            WaitsForGate.open.withLock { _ = $0.insert(gate) }
            #expect(try await eventually(20) { try await app.runtime.runs.countByState() == [.succeeded: 1] })
            #expect(try await eventually(20) { try await broker.stats().first { $0.queue == queue }?.inFlight == 0 })
            running.cancel()
            _ = try? await running.value
        }
    }

    @Test("a task that always fails goes through the delay queue and ends dead in <queue>.dead")
    func deadLetters() async throws {
        try await withBroker(extraPlugins: [.testTasks]) { app, broker, queue in
            let message = TaskMessage(name: "test.fail", queue: queue, enqueuedAt: Date())
            try await enqueue(app, broker, message)
            let worker = worker(app, broker, queue: queue, concurrency: 2)
            let running = Task { try await worker.run() }
            defer { running.cancel() }
            let dead = try await eventually(30) { try await app.runtime.runs.find(id: message.id)?.state == .dead }
            #expect(dead)
            running.cancel()
            _ = try? await running.value
            let attempts = try await app.runtime.runs.attempts(taskID: message.id)
            #expect(attempts.map(\.state) == [.failed, .failed, .dead])
            let deadCount = try await eventually(10) { try await broker.stats().first { $0.queue == queue }?.dead == 1 }
            #expect(deadCount)
        }
    }

    @Test("a revoked task is acknowledged without running")
    func revoke() async throws {
        try await withBroker { app, broker, queue in
            let tasks = TasksService(broker: broker, runs: app.runtime.runs, registry: app.runtime.registry, clock: SystemTimeSource())
            let message = try await tasks.enqueue(TaskMessage(name: "core.noop", queue: queue, enqueuedAt: Date()))
            try await tasks.revoke(id: message.id)
            let worker = worker(app, broker, queue: queue, concurrency: 1)
            let running = Task { try await worker.run() }
            defer { running.cancel() }
            let drained = try await eventually(10) { try await broker.stats().first { $0.queue == queue }?.ready == 0 }
            #expect(drained)
            try await Task.sleep(for: .milliseconds(200))
            running.cancel()
            _ = try? await running.value
            #expect(try await app.runtime.runs.find(id: message.id)?.state == .revoked)
        }
    }

    @Test("publishers and consumers recover when RabbitMQ restarts, and nothing is lost")
    func brokerRestart() async throws {
        try await withBroker { app, broker, queue in
            let worker = worker(app, broker, queue: queue, concurrency: 4)
            let running = Task { try await worker.run() }
            defer { running.cancel() }
            for _ in 0..<50 { try await enqueue(app, broker, TaskMessage(name: "core.noop", queue: queue, enqueuedAt: Date())) }
            try rabbitmqctl("stop_app")
            try rabbitmqctl("start_app")
            // Publishing during the outage fails visibly; once the broker is back the same publish succeeds.
            var published = 0
            var failures = 0
            while published < 50, failures < 600 {
                do {
                    try await broker.publish(TaskMessage(name: "core.noop", queue: queue, enqueuedAt: Date()).recorded(in: app))
                    published += 1
                } catch {
                    failures += 1
                    try await Task.sleep(for: .milliseconds(100))
                }
            }
            #expect(published == 50)
            let done = try await eventually(60) { try await app.runtime.runs.count(state: .succeeded, queue: queue) == 100 }
            #expect(done)
            running.cancel()
            _ = try? await running.value
        }
    }
}

extension TaskMessage {
    /// Records the message as queued (so a run row exists) and returns it, for tests that publish directly.
    func recorded(in app: TestApp) async throws -> TaskMessage {
        if try await app.runtime.runs.find(id: id) == nil { try await app.runtime.runs.recordQueued(self, at: Date()) }
        return self
    }
}

/// Runs the test node's rabbitmqctl with `arguments` (the command comes from `AMQP_TEST_CTL`, which `make test` sets);
/// throws when it fails.
func rabbitmqctl(_ arguments: String) throws {
    guard let control = ProcessInfo.processInfo.environment["AMQP_TEST_CTL"] else {
        throw TestSetupError("AMQP_TEST_CTL is not set; run the suite with `make test`")
    }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/sh")
    process.arguments = ["-c", "\(control) \(arguments)"]
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else { throw TestSetupError("rabbitmqctl \(arguments) failed (\(process.terminationStatus))") }
}

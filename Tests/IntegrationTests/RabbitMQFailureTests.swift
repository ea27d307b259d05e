// The RabbitMQ broker when things go wrong, against the real test node: nothing is dropped silently, a poison message
// ends dead, statistics never disturb publishing, and a memory alarm neither hangs a publisher nor outlasts itself.
import Foundation
@testable import IntegratorCore
import ServiceLifecycle
import Synchronization
import Testing

extension RabbitMQTests {
    /// Nested in the RabbitMQ suite, which runs its tests one at a time: these raise alarms and delete queues on the
    /// shared node, and that suite restarts it.
    @Suite("RabbitMQ failures")
    struct Failures {}
}

extension RabbitMQTests.Failures {
    /// Runs `body` with a RabbitMQ broker (logging to `log`) on a fresh test app, and a queue name no other test uses;
    /// the broker is stopped afterwards.
    func withBroker<T: Sendable>(
        log: CapturedLog = CapturedLog(), _ body: @Sendable (TestApp, RabbitMQBroker, String) async throws -> T
    ) async throws -> T {
        let url = try RabbitMQTests.url()
        return try await TestApp.run(realClock: true) { app in
            let broker = try RabbitMQBroker(url: url, runs: app.runtime.runs, logger: log.logger)
            do {
                let value = try await body(app, broker, "failure-\(UUID().uuidString.prefix(8).lowercased())")
                await broker.stop()
                return value
            } catch {
                await broker.stop()
                throw error
            }
        }
    }

    func makeBroker(_ app: TestApp) throws -> RabbitMQBroker {
        try RabbitMQBroker(url: try RabbitMQTests.url(), runs: app.runtime.runs, logger: TestDatabase.logger)
    }


    /// Deletes a task queue and its companions, so tests leave no messages on the shared node.
    static func deleteQueues(_ queue: String) {
        for name in [queue, "\(queue).dead", "\(queue).delay"] { try? rabbitmqctl("delete_queue '\(name)'") }
    }

    func worker(_ app: TestApp, _ broker: RabbitMQBroker, queue: String, maxDeliveries: Int = 5) -> Worker {
        Worker(
            options: WorkerOptions(queues: [queue], concurrency: 2, maxDeliveries: maxDeliveries), broker: broker, runs: app.runtime.runs,
            registry: app.runtime.registry, logger: TestDatabase.logger)
    }

    /// Claims until one delivery arrives (or ten seconds pass).
    func claimOne(_ broker: RabbitMQBroker, queue: String) async throws -> Delivery {
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            if let delivery = try await broker.claim(queues: [queue], limit: 1, workerID: "test", leaseUntil: Date()).first {
                return delivery
            }
        }
        throw TestSetupError("nothing was delivered from \(queue)")
    }

    @Test("a message that is not a task lands in <queue>.dead, and the worker logs it with the queue's name")
    func undecodableMessage() async throws {
        let log = CapturedLog()
        try await withBroker(log: log) { app, broker, queue in
            defer { Self.deleteQueues(queue) }
            let task = try await TaskMessage(name: "core.noop", queue: queue, enqueuedAt: Date()).recorded(in: app)
            try await broker.publish(task)
            try await broker.publisher.publish(
                queue: queue, body: Array("{\"not\": \"a task\"}".utf8), priority: 0, deadline: .now + .seconds(10), timeout: .seconds(10))
            let worker = worker(app, broker, queue: queue)
            let running = Task { try await worker.run() }
            defer { running.cancel() }
            #expect(try await eventually(20) { try await app.runtime.runs.find(id: task.id)?.state == .succeeded })
            #expect(try await eventually(10) { try await broker.stats().first { $0.queue == queue }?.dead == 1 })
            let stats = try await broker.stats().first { $0.queue == queue }
            #expect(stats?.ready == 0)
            running.cancel()
            _ = try? await running.value
            let lines = log.texts.filter { $0.contains("not a task") }
            #expect(lines.count == 1)
            #expect(lines.first?.contains(queue) == true)
        }
    }

    @Test("a message whose consumer dies holding it every time is counted, and ends dead after the maximum deliveries")
    func poisonMessage() async throws {
        try await TestApp.run(realClock: true) { app in
            let queue = "poison-\(UUID().uuidString.prefix(8).lowercased())"
            defer { Self.deleteQueues(queue) }
            let message = try await TaskMessage(name: "core.noop", queue: queue, enqueuedAt: Date()).recorded(in: app)
            var broker = try makeBroker(app)
            try await broker.publish(message)
            // Each consumer takes the message and goes away without settling it; RabbitMQ delivers it again.
            var counts: [Int] = []
            for _ in 0..<3 {
                let delivery = try await claimOne(broker, queue: queue)
                #expect(delivery.message.id == message.id)
                counts.append(delivery.deliveries)
                await broker.stop()
                broker = try makeBroker(app)
            }
            #expect(counts == [1, 2, 3])
            // The fourth delivery is one too many: the worker dead-letters it instead of running it.
            let last = broker
            let worker = worker(app, last, queue: queue, maxDeliveries: 3)
            let running = Task { try await worker.run() }
            let dead = try await eventually(20) { try await app.runtime.runs.find(id: message.id)?.state == .dead }
            running.cancel()
            _ = try? await running.value
            #expect(dead)
            let run = try await app.runtime.runs.find(id: message.id)
            #expect(run?.error?.contains("delivered 4 times") == true, "error: \(run?.error ?? "none")")
            #expect(try await eventually(10) { try await last.stats().first { $0.queue == queue }?.dead == 1 })
            await last.stop()
        }
    }

    @Test("a publish that no queue takes fails with an error naming the queue; the next one declares it again")
    func unroutablePublish() async throws {
        try await withBroker { app, broker, queue in
            defer { Self.deleteQueues(queue) }
            try await broker.publish(try await TaskMessage(name: "core.noop", queue: queue, enqueuedAt: Date()).recorded(in: app))
            // Deleted behind the broker's back: it still believes the queue exists and publishes without declaring.
            try rabbitmqctl("delete_queue '\(queue)'")
            let lost = try await TaskMessage(name: "core.noop", queue: queue, enqueuedAt: Date()).recorded(in: app)
            do {
                try await broker.publish(lost)
                Issue.record("a message to a deleted queue was confirmed as if delivered")
            } catch let error as AMQPError {
                #expect(error.kind == .unroutable)
                #expect(error.queue == queue)
                #expect(error.message.contains("'\(queue)'"))
            }
            try await broker.publish(lost)
            #expect(try await eventually(10) { try await broker.stats().first { $0.queue == queue }?.ready == 1 })
        }
    }

    @Test("queue statistics in a tight loop, with a missing queue among them, while 10,000 tasks publish: no publish fails")
    func statisticsDuringPublishing() async throws {
        try await withBroker { app, broker, queue in
            defer { Self.deleteQueues(queue) }
            // A worker that consumes a queue that does not exist: every round of statistics asks RabbitMQ about it,
            // which closes the asking channel.
            let missing = "missing-\(UUID().uuidString.prefix(8).lowercased())"
            try await app.runtime.runs.heartbeat(
                WorkerInfo(id: "ghost", host: "test", queues: [missing], concurrency: 1, busy: 0, startedAt: Date(), lastSeen: Date()))
            try await broker.publish(TaskMessage(name: "core.noop", queue: queue, enqueuedAt: Date()))
            let publishing = StillRunning()
            let statistics = Task {
                var rounds = 0
                var failures = 0
                while publishing.value {
                    do {
                        let stats = try await broker.stats()
                        if stats.contains(where: { $0.queue == missing }) { failures += 1 }
                        rounds += 1
                    } catch {
                        failures += 1
                    }
                }
                return (rounds, failures)
            }
            let failed = try await withThrowingTaskGroup(of: Int.self) { group in
                for lane in 0..<50 {
                    group.addTask {
                        var failed = 0
                        for index in 0..<200 {
                            do {
                                try await broker.publish(
                                    TaskMessage(name: "core.noop", arguments: ["n": .number(Double(lane * 200 + index))], queue: queue, enqueuedAt: Date()))
                            } catch {
                                failed += 1
                            }
                        }
                        return failed
                    }
                }
                return try await group.reduce(0, +)
            }
            publishing.stop()
            let (rounds, statisticsFailures) = await statistics.value
            #expect(failed == 0)
            #expect(rounds > 0)
            #expect(statisticsFailures == 0)
            #expect(try await eventually(10) { try await broker.stats().first { $0.queue == queue }?.ready == 10_001 })
        }
    }

    @Test("a memory alarm fails a publish at its deadline instead of hanging it; publishing resumes once the alarm clears")
    func memoryAlarm() async throws {
        let log = CapturedLog()
        try await withBroker(log: log) { app, broker, queue in
            defer { Self.deleteQueues(queue) }
            try await broker.publish(TaskMessage(name: "core.noop", queue: queue, enqueuedAt: Date()))
            var restored = false
            // Whatever happens below, the shared node must not stay in alarm.
            defer { if !restored { try? rabbitmqctl("set_vm_memory_high_watermark 0.4") } }
            // Another suite ("Beat and a blocked RabbitMQ") may raise and clear the same node's alarm meanwhile: a
            // publish that succeeds where the alarm should hold it means someone cleared it; raise it and look again.
            var waited: Duration?
            var attempts = 0
            while waited == nil, attempts < 5 {
                attempts += 1
                try rabbitmqctl("set_vm_memory_high_watermark 0")
                let started = ContinuousClock.now
                do {
                    try await broker.publish(TaskMessage(name: "core.noop", queue: queue, enqueuedAt: Date()), timeout: .milliseconds(1500))
                    continue
                } catch let error as AMQPError where error.kind == .timeout {
                    #expect(error.message.contains("'\(queue)'"))
                    #expect(error.message.contains("blocks publishing"), "\(error.message)")
                }
                let took = ContinuousClock.now - started
                // Blocked now: a second publish is held back, not written, and fails at its own deadline too.
                guard try await eventually(2, { broker.publishingBlockedReason != nil }) else { continue }
                do {
                    try await broker.publish(TaskMessage(name: "core.noop", queue: queue, enqueuedAt: Date()), timeout: .milliseconds(300))
                    continue
                } catch let error as AMQPError where error.kind == .timeout {}
                waited = took
            }
            let timedOutAfter = try #require(waited, "no publish was held up by the alarm in \(attempts) attempts")
            #expect(timedOutAfter >= .milliseconds(1400) && timedOutAfter < .seconds(3), "waited \(timedOutAfter)")
            // A caller that gives up (its task is cancelled) gets its answer at once, not when the alarm clears.
            let patient = Task {
                try await broker.publish(TaskMessage(name: "core.noop", queue: queue, enqueuedAt: Date()), timeout: .seconds(60))
            }
            let cancelledAt = ContinuousClock.now
            patient.cancel()
            let outcome = await patient.result
            #expect(ContinuousClock.now - cancelledAt < .seconds(1))
            #expect(throws: CancellationError.self) { try outcome.get() }
            try rabbitmqctl("set_vm_memory_high_watermark 0.4")
            restored = true
            try await broker.publish(TaskMessage(name: "core.noop", queue: queue, enqueuedAt: Date()), timeout: .seconds(10))
            #expect(try await eventually(5) { broker.publishingBlockedReason == nil })
            // Each outage is logged once as it starts, with its reason, and once as it ends.
            let lines = log.texts
            let blocked = lines.filter { $0.contains("RabbitMQ blocked publishing") }
            let unblocked = lines.filter { $0.contains("RabbitMQ unblocked publishing") }
            #expect(blocked.count >= 1 && blocked.count == unblocked.count && blocked.count <= attempts)
            #expect(blocked.allSatisfy { $0.contains("memory") })
        }
    }
}

extension RabbitMQTests.Failures {
    @Test("a task queue that exists with other arguments is a clear error naming it, and publishing elsewhere goes on")
    func conflictingQueue() async throws {
        try await withBroker { app, broker, queue in
            defer { Self.deleteQueues(queue) }
            // Declared by someone else (an older Integrator) without dead-lettering and with another priority limit.
            let other = AMQPConnection(role: .publisher, endpoint: broker.endpoint, logger: TestDatabase.logger)
            try await other.declare(AMQPQueueSpec(name: queue, maxPriority: 3), deadline: .now + .seconds(10))
            other.shutdown()
            for _ in 0..<2 {
                let started = ContinuousClock.now
                do {
                    try await broker.publish(TaskMessage(name: "core.noop", queue: queue, enqueuedAt: Date()))
                    Issue.record("published to a queue declared with other arguments")
                } catch let error as AMQPError {
                    #expect(error.kind == .declarationRefused)
                    #expect(error.queue == queue)
                    #expect(error.message.contains("'\(queue)'") && error.message.contains("delete_queue"), "\(error.message)")
                }
                #expect(ContinuousClock.now - started < .seconds(2), "refused at once, not after a hang")
            }
            // Only the declaring channel was closed: the publishing one still works.
            let elsewhere = "\(queue)-other"
            defer { Self.deleteQueues(elsewhere) }
            try await broker.publish(TaskMessage(name: "core.noop", queue: elsewhere, enqueuedAt: Date()))
            #expect(broker.publisher.isConnected)
        }
    }

    @Test("as a service the broker stops with its group: acknowledgements go out first, later calls fail as shut down")
    func brokerAsService() async throws {
        try await TestApp.run(realClock: true) { app in
            let queue = "service-\(UUID().uuidString.prefix(8).lowercased())"
            defer { Self.deleteQueues(queue) }
            let broker = try makeBroker(app)
            try await broker.publish(TaskMessage(name: "core.noop", queue: queue, enqueuedAt: Date()))
            let group = ServiceGroup(configuration: .init(services: [broker], logger: TestDatabase.logger))
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await group.run() }
                let delivery = try await claimOne(broker, queue: queue)
                try await broker.acknowledge(delivery)
                await group.triggerGracefulShutdown()
                try await tasks.waitForAll()
            }
            #expect(!broker.publisher.isConnected && !broker.consumer.isConnected)
            await #expect(throws: AMQPError.self) {
                try await broker.publish(TaskMessage(name: "core.noop", queue: queue, enqueuedAt: Date()))
            }
            // Had the acknowledgement been dropped, closing the connection would have put the message back.
            let inspector = AMQPConnection(role: .inspector, endpoint: broker.endpoint, logger: TestDatabase.logger)
            defer { inspector.shutdown() }
            #expect(try await inspector.count(queue, deadline: .now + .seconds(10)) == 0)
        }
    }
}

extension RabbitMQTests.Failures {
    /// How often the kernel switched away from a thread because it waited (each wait that ended counts one).
    static func voluntarySwitches(thread: Int32) throws -> Int {
        let status = try String(contentsOfFile: "/proc/self/task/\(thread)/status", encoding: .utf8)
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("voluntary_ctxt_switches:") }),
            let count = Int(line.split(separator: ":")[1].trimmingCharacters(in: .whitespaces))
        else { throw TestSetupError("no voluntary_ctxt_switches for thread \(thread)") }
        return count
    }

    @Test("idle connection threads sleep on their socket and eventfd instead of waking every few milliseconds")
    func idleThreadsSleep() async throws {
        try await withBroker { app, broker, queue in
            defer { Self.deleteQueues(queue) }
            try await broker.publish(TaskMessage(name: "core.noop", queue: queue, enqueuedAt: Date()))
            _ = try await broker.claim(queues: [queue], limit: 4, workerID: "test", leaseUntil: Date())
            let threads = [broker.publisher.threadID, broker.consumer.threadID].compactMap { $0 }
            #expect(threads.count == 2)
            let before = try threads.map(Self.voluntarySwitches)
            // A thread polling every 5 ms wakes about 200 times in this second; one sleeping on its descriptors, not at all.
            try await Task.sleep(for: .seconds(1))
            let after = try threads.map(Self.voluntarySwitches)
            for (start, end) in zip(before, after) { #expect(end - start < 20, "woke \(end - start) times in a second") }
            // Asleep is not deaf: a publish still goes out and is confirmed at once.
            let started = ContinuousClock.now
            try await broker.publish(TaskMessage(name: "core.noop", queue: queue, enqueuedAt: Date()))
            #expect(ContinuousClock.now - started < .seconds(1))
        }
    }
}

/// A flag one task clears to end another's loop.
final class StillRunning: Sendable {
    private let running = Mutex(true)
    var value: Bool { running.withLock { $0 } }
    func stop() { running.withLock { $0 = false } }
}

extension RabbitMQTests.Failures {
    @Test("a consumer's wait for deliveries always ends, also when its limit passes before it begins to wait or it is cancelled")
    func deliveryWaitAlwaysEnds() async throws {
        try await withBroker { _, broker, _ in
            let connection = AMQPConnection(role: .consumer, endpoint: broker.endpoint, logger: TestDatabase.logger)
            defer { connection.shutdown() }
            let rounds = Atomic(0)
            let finished = Atomic(false)
            // A zero limit wakes the wait as it starts: before the fix, the wake-up could come before the wait was
            // registered, and the wait (and its worker's consume loop) never ended.
            let waiting = Task {
                for _ in 0..<2_000 {
                    await connection.waitForDeliveries(upTo: .zero)
                    rounds.add(1, ordering: .relaxed)
                }
                let cancelled = Task { await connection.waitForDeliveries(upTo: .seconds(600)) }
                cancelled.cancel()
                _ = await cancelled.value
                finished.store(true, ordering: .relaxed)
            }
            defer { waiting.cancel() }
            let allEnded = try await eventually(30) { finished.load(ordering: .relaxed) }
            #expect(allEnded, "\(rounds.load(ordering: .relaxed)) of 2,000 waits ended; a cancelled one must end too")
        }
    }
}

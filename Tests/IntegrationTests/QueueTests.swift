// The SQL broker and the worker against the real database: priority, leases, retries, dead letters, revocation, shutdown.
import Foundation
import IntegratorCore
import ServiceLifecycle
import Synchronization
import Testing

/// Task handlers that exist only in tests.
struct AlwaysFails: TaskHandler {
    let name = "test.fail"
    var retryPolicy: RetryPolicy { RetryPolicy(maxAttempts: 3, baseDelay: 0.01, maxDelay: 0.02) }
    func run(_ arguments: JSONValue, context: TaskContext) async throws -> JSONValue {
        throw PluginError("upstream answered 503 on attempt \(context.attempt)")
    }
}

struct FailsPermanently: TaskHandler {
    let name = "test.permanent"
    func run(_ arguments: JSONValue, context: TaskContext) async throws -> JSONValue {
        throw PluginError("the record does not exist", permanent: true)
    }
}

struct Sleeps: TaskHandler {
    let name = "test.sleep"
    var timeout: Duration { .milliseconds(300) }
    func run(_ arguments: JSONValue, context: TaskContext) async throws -> JSONValue {
        try await Task.sleep(for: .milliseconds(arguments["ms"]?.intValue ?? 100))
        return ["slept": true]
    }
}

/// How often each task's handler ran, by task id: what "exactly once" means (the store's rows are upserted per
/// attempt, so they could not show a task that ran twice).
enum Executions {
    private static let counts = Mutex<[String: Int]>([:])

    static func record(_ taskID: String) { counts.withLock { $0[taskID, default: 0] += 1 } }
    static func count(_ taskID: String) -> Int { counts.withLock { $0[taskID] ?? 0 } }

    /// The ids of `taskIDs` that did not run exactly once, with how often they ran.
    static func notExactlyOnce(_ taskIDs: [String]) -> [String: Int] {
        counts.withLock { counts in
            var wrong: [String: Int] = [:]
            for id in taskIDs where counts[id] != 1 { wrong[id] = counts[id] ?? 0 }
            return wrong
        }
    }
}

/// Counts its runs in ``Executions`` and returns its arguments.
struct CountedTask: TaskHandler {
    let name = "test.count"
    func run(_ arguments: JSONValue, context: TaskContext) async throws -> JSONValue {
        Executions.record(context.taskID)
        return arguments
    }
}

/// Tasks the test holds open. The nth run of a task held by it opens `running(n)`, then waits until the test opens
/// `release(n)`; cancellation ends the wait unless the hold ignores it (a handler that does not cooperate).
final class Hold: Sendable {
    private struct State {
        var runs = 0
        var latches: [Int: (running: Latch, release: Latch)] = [:]
        var releasedAll = false
    }

    let id = UUID().uuidString
    let ignoresCancellation: Bool
    /// Opened when a run of the held task sees its cancellation.
    let cancelled = Latch()
    private let state = Mutex(State())
    private static let all = Mutex<[String: Hold]>([:])

    init(ignoresCancellation: Bool = false) {
        self.ignoresCancellation = ignoresCancellation
        Self.all.withLock { $0[id] = self }
    }

    static func named(_ id: String) -> Hold? { all.withLock { $0[id] } }

    /// Arguments that make `test.hold` wait on this hold.
    var arguments: JSONValue { ["hold": .string(id)] }

    func running(_ run: Int = 1) -> Latch { latches(run).running }
    func release(_ run: Int = 1) -> Latch { latches(run).release }

    /// Lets every run, present and future, finish (so a failed expectation does not leave a worker waiting).
    func releaseAll() {
        let releases = state.withLock { state in
            state.releasedAll = true
            return state.latches.values.map(\.release)
        }
        for release in releases { release.open() }
    }

    private func latches(_ run: Int) -> (running: Latch, release: Latch) {
        let (pair, releasedAll) = state.withLock { state in
            if let pair = state.latches[run] { return (pair, state.releasedAll) }
            let pair = (running: Latch(), release: Latch())
            state.latches[run] = pair
            return (pair, state.releasedAll)
        }
        if releasedAll { pair.release.open() }
        return pair
    }

    func held(taskID: String) async throws {
        Executions.record(taskID)
        let run = state.withLock { state in
            state.runs += 1
            return state.runs
        }
        running(run).open()
        let release = release(run)
        try await withTaskCancellationHandler {
            if ignoresCancellation {
                // An unstructured task does not inherit the cancellation: the wait goes on until the test releases it.
                try await Task { try await release.wait() }.value
            } else {
                try await release.wait()
            }
        } onCancel: {
            cancelled.open()
        }
    }
}

/// Runs until the test opens the gate named by its `gate` argument (or 10 s pass). Prefer ``Hold``, which needs no
/// polling; RabbitMQTests still opens gates.
struct WaitsForGate: TaskHandler {
    let name = "test.gate"
    static let open = Mutex<Set<String>>([])
    func run(_ arguments: JSONValue, context: TaskContext) async throws -> JSONValue {
        let gate = arguments["gate"]?.stringValue ?? ""
        let deadline = ContinuousClock.now + .seconds(10)
        while !Self.open.withLock({ $0.contains(gate) }), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        return ["gate": .string(gate)]
    }
}

/// Runs until the test releases the ``Hold`` named by its `hold` argument, so a test can look at a running task.
struct WaitsForRelease: TaskHandler {
    let name = "test.hold"
    func run(_ arguments: JSONValue, context: TaskContext) async throws -> JSONValue {
        guard let id = arguments["hold"]?.stringValue, let hold = Hold.named(id) else {
            throw PluginError("no hold named by the argument 'hold'", permanent: true)
        }
        try await hold.held(taskID: context.taskID)
        return ["released": true]
    }
}

struct CallsRefusedAddress: TaskHandler {
    let name = "test.refused"
    func run(_ arguments: JSONValue, context: TaskContext) async throws -> JSONValue {
        throw OutboundError(.refusedAddress, request: "GET http://169.254.169.254/latest", detail: "refused: link-local address")
    }
}

extension Plugin {
    static let testTasks = Plugin(
        id: "test-tasks", name: "Test tasks", taskHandlers: [
            AlwaysFails(), FailsPermanently(), Sleeps(), CallsRefusedAddress(), WaitsForRelease(), CountedTask(), WaitsForGate(),
        ])
}

/// Polls `condition` every 20 ms for up to `seconds`. Only for states that last once reached (a count that only grows,
/// a final state); a state that passes must be held open with a ``Hold`` instead. The default minute only matters when
/// the condition never comes: the whole suite runs on 2 cores at once, and 20 s was too short for the largest drains.
func eventually(_ seconds: Double = 60, _ condition: @Sendable () async throws -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + .seconds(seconds)
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try await Task.sleep(for: .milliseconds(20))
    }
    return try await condition()
}

/// Runs a worker, and a beat for its retries, for the duration of `body`, then cancels both.
func withWorker<T: Sendable>(
    _ app: TestApp, _ options: WorkerOptions, id: String? = nil, _ body: @Sendable (Worker) async throws -> T
) async throws -> T {
    let worker = app.runtime.makeWorker(options, id: id)
    let beat = app.runtime.makeBeat()
    let running = Task { try await worker.run() }
    let beating = Task { try await beat.run() }
    defer {
        running.cancel()
        beating.cancel()
    }
    let value = try await body(worker)
    running.cancel()
    beating.cancel()
    _ = try? await running.value
    _ = try? await beating.value
    return value
}

@Suite("Queues and workers")
struct QueueTests {
    func message(_ app: TestApp, priority: Int, name: String = "core.noop", queue: String = "default") -> TaskMessage {
        TaskMessage(name: name, arguments: ["p": .number(Double(priority))], queue: queue, priority: priority, enqueuedAt: app.runtime.clock.now())
    }

    @Test("the highest priority comes first, FIFO within a priority, only from the asked queues")
    func priorityOrder() async throws {
        try await TestApp.run { app in
            var low: [String] = []
            for _ in 0..<5 { low.append(try await app.runtime.tasks.enqueue(message(app, priority: 1)).id) }
            let high = try await app.runtime.tasks.enqueue(message(app, priority: 9)).id
            _ = try await app.runtime.tasks.enqueue(message(app, priority: 9, queue: "other"))
            let leaseUntil = app.clock.now().addingTimeInterval(60)
            let first = try await app.runtime.broker.claim(queues: ["default"], limit: 1, workerID: "w", leaseUntil: leaseUntil)
            #expect(first.map(\.message.id) == [high])
            let rest = try await app.runtime.broker.claim(queues: ["default"], limit: 10, workerID: "w", leaseUntil: leaseUntil)
            #expect(rest.map(\.message.id) == low)
            #expect(try await app.runtime.broker.claim(queues: ["default"], limit: 10, workerID: "w", leaseUntil: leaseUntil).isEmpty)
        }
    }

    @Test("a lease that runs out makes the task deliverable again, with the same id")
    func leaseExpiry() async throws {
        try await TestApp.run { app in
            let id = try await app.runtime.tasks.enqueue(message(app, priority: 5)).id
            let broker = app.runtime.broker
            let first = try await broker.claim(queues: ["default"], limit: 5, workerID: "dead-worker", leaseUntil: app.clock.now().addingTimeInterval(60))
            #expect(first.count == 1)
            #expect(try await broker.claim(queues: ["default"], limit: 5, workerID: "other", leaseUntil: app.clock.now().addingTimeInterval(60)).isEmpty)
            let stats = try await broker.stats()
            #expect(stats == [QueueStats(queue: "default", ready: 0, inFlight: 1, dead: 0, delayed: 0)])
            app.clock.advance(by: 61)
            let again = try await broker.claim(queues: ["default"], limit: 5, workerID: "other", leaseUntil: app.clock.now().addingTimeInterval(60))
            #expect(again.map(\.message.id) == [id])
            #expect(again.first?.deliveries == 2)
        }
    }

    @Test("a message that keeps coming back without an outcome is dead-lettered after too many deliveries")
    func poisonMessage() async throws {
        try await TestApp.run { app in
            let id = try await app.runtime.tasks.enqueue(message(app, priority: 5)).id
            for _ in 0..<5 {
                let claimed = try await app.runtime.broker.claim(
                    queues: ["default"], limit: 1, workerID: "crashing", leaseUntil: app.clock.now().addingTimeInterval(60))
                #expect(claimed.count == 1)
                app.clock.advance(by: 61)
            }
            try await withWorker(app, WorkerOptions(queues: ["default"], concurrency: 1, maxDeliveries: 5)) { _ in
                let dead = try await eventually { try await app.runtime.runs.find(id: id)?.state == .dead }
                #expect(dead)
            }
            #expect(try await app.runtime.runs.find(id: id)?.error?.hasPrefix("delivered 6 times") == true)
            #expect(try await app.runtime.broker.stats().first?.dead == 1)
        }
    }

    @Test("a worker runs every task once and records each run before acknowledging")
    func drainsQueue() async throws {
        try await TestApp.run(extraPlugins: [.testTasks], realClock: true) { app in
            var ids: [String] = []
            for index in 0..<300 {
                ids.append(try await app.runtime.tasks.enqueue(message(app, priority: index % 10, name: "test.count")).id)
            }
            try await withWorker(app, WorkerOptions(queues: ["default"], concurrency: 8)) { _ in
                let done = try await eventually { try await app.runtime.runs.countByState()[.succeeded] == 300 }
                #expect(done)
            }
            #expect(Executions.notExactlyOnce(ids).isEmpty)
            #expect(try await app.runtime.runs.countByState() == [.succeeded: 300])
            #expect(try await app.runtime.broker.stats().isEmpty)
            let page = try await app.runtime.runs.list(TaskRunFilter(state: .succeeded), page: PageRequest(limit: 1))
            let run = try #require(page.items.first)
            #expect(run.result == run.arguments)
            #expect(run.workerID != nil)
            #expect(run.durationMilliseconds != nil)
        }
    }

    @Test("batch and concurrent enqueues share writes; a worker settling in batches records every run once")
    func batchedEnqueueAndSettle() async throws {
        try await TestApp.run(extraPlugins: [.testTasks], realClock: true) { app in
            // More than one statement's worth of parameters: written in one transaction instead.
            let batch = (0..<1150).map { message(app, priority: $0 % 10, name: "test.count") }
            try await app.runtime.tasks.enqueue(contentsOf: batch)
            let concurrent = (0..<150).map { message(app, priority: $0 % 10, name: "test.count") }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for message in concurrent { group.addTask { try await app.runtime.tasks.enqueue(message) } }
                try await group.waitForAll()
            }
            #expect(try await app.runtime.runs.countByState() == [.queued: 1300])
            #expect(try await app.runtime.broker.stats().map(\.ready) == [1300])
            try await withWorker(app, WorkerOptions(queues: ["default"], concurrency: 32)) { _ in
                let done = try await eventually { try await app.runtime.runs.countByState()[.succeeded] == 1300 }
                #expect(done)
            }
            #expect(Executions.notExactlyOnce((batch + concurrent).map(\.id)).isEmpty)
            #expect(try await app.runtime.runs.countByState() == [.succeeded: 1300])
            #expect(try await app.runtime.broker.stats().isEmpty)
            let page = try await app.runtime.runs.list(TaskRunFilter(), page: PageRequest(limit: 20))
            for run in page.items {
                let attempts = try await app.runtime.runs.attempts(taskID: run.id)
                #expect(attempts.map(\.state) == [.succeeded])
                #expect(attempts.first?.workerID != nil && attempts.first?.startedAt != nil && attempts.first?.finishedAt != nil)
                #expect(run.result == run.arguments)
            }
        }
    }

    @Test("a task that always fails is retried with backoff and ends dead, every attempt recorded")
    func deadAfterAttempts() async throws {
        try await TestApp.run(extraPlugins: [.testTasks], realClock: true) { app in
            let id = try await app.runtime.tasks.enqueue(message(app, priority: 5, name: "test.fail")).id
            try await withWorker(app, WorkerOptions(queues: ["default"], concurrency: 2)) { _ in
                let dead = try await eventually { try await app.runtime.runs.find(id: id)?.state == .dead }
                #expect(dead)
            }
            let (run, attempts) = try await app.runtime.tasks.get(id: id)
            #expect(run.attempt == 3)
            #expect(run.error == "upstream answered 503 on attempt 3")
            #expect(attempts.map(\.attempt) == [1, 2, 3])
            #expect(attempts.map(\.state) == [.failed, .failed, .dead])
            #expect(attempts[0].error == "upstream answered 503 on attempt 1")
            let deadLettered = try await eventually {
                try await app.runtime.broker.stats() == [QueueStats(queue: "default", ready: 0, inFlight: 0, dead: 1, delayed: 0)]
            }
            #expect(deadLettered)

            // A dead task can be retried by hand: it comes back as attempt 4 with the same id.
            let retried = try await app.call(.post, "/api/v1/tasks/\(id)/retry")
            #expect(retried.status == .accepted)
            #expect(retried.json["attempt"] == 4)
            #expect(retried.json["state"] == "queued")
            #expect(try await app.runtime.broker.stats().first?.ready == 1)
        }
    }

    @Test("a message's max_attempts overrides the handler's retry policy")
    func attemptOverride() async throws {
        try await TestApp.run(extraPlugins: [.testTasks], realClock: true) { app in
            var message = message(app, priority: 5, name: "test.fail")
            message.maxAttempts = 1
            let id = try await app.runtime.tasks.enqueue(message).id
            try await withWorker(app, WorkerOptions(queues: ["default"], concurrency: 1)) { _ in
                let dead = try await eventually { try await app.runtime.runs.find(id: id)?.state == .dead }
                #expect(dead)
            }
            #expect(try await app.runtime.runs.attempts(taskID: id).map(\.state) == [.dead])
        }
    }

    @Test("a permanent error fails at once; a timeout counts as a failure; unknown task names are dead-lettered")
    func failures() async throws {
        try await TestApp.run(extraPlugins: [.testTasks], realClock: true) { app in
            let permanent = try await app.runtime.tasks.enqueue(message(app, priority: 5, name: "test.permanent")).id
            let refused = try await app.runtime.tasks.enqueue(message(app, priority: 5, name: "test.refused")).id
            let slow = try await app.runtime.tasks.enqueue(
                TaskMessage(name: "test.sleep", arguments: ["ms": 5000], enqueuedAt: Date()))
            let unknown = message(app, priority: 5, name: "nobody.handles.this")
            try await app.runtime.runs.recordQueued(unknown, at: Date())
            try await app.runtime.broker.publish(unknown)
            let ids = [permanent, slow.id, unknown.id, refused]
            try await withWorker(app, WorkerOptions(queues: ["default"], concurrency: 4)) { _ in
                let settled = try await eventually {
                    let states = try await ids.asyncMap { try await app.runtime.runs.find(id: $0)?.state }
                    // The slow task times out on every attempt: retrying, or dead once its attempts are used up.
                    return states[0] == .failed && [.retrying, .dead].contains(states[1]) && states[2] == .dead && states[3] == .failed
                }
                #expect(settled)
            }
            let (failed, failedAttempts) = try await app.runtime.tasks.get(id: permanent)
            #expect(failed.error == "the record does not exist")
            #expect(failedAttempts.count == 1)
            #expect(try await app.runtime.runs.attempts(taskID: refused).count == 1, "an address the guard refused is not retried")
            #expect(try await app.runtime.runs.find(id: slow.id)?.error == "timed out after 0.3 seconds")
            #expect(try await app.runtime.runs.find(id: unknown.id)?.error == "unknown task name 'nobody.handles.this'")
        }
    }

    @Test("a task is recorded started once it has run for recordStartedAfter; a start recorded late never hides an outcome")
    func lazyStart() async throws {
        try await TestApp.run(extraPlugins: [.testTasks], realClock: true) { app in
            let hold = Hold()
            let slow = try await app.runtime.tasks.enqueue(TaskMessage(name: "test.hold", arguments: hold.arguments, enqueuedAt: Date()))
            let options = WorkerOptions(queues: ["default"], concurrency: 2, recordStartedAfter: .milliseconds(50))
            try await withWorker(app, options, id: "lazy-worker") { _ in
                #expect(await hold.running().wait(upTo: .seconds(20)))
                // Held open until released, so the start record, once written, stays to be seen.
                let started = try await eventually { try await app.runtime.runs.find(id: slow.id)?.state == .started }
                #expect(started, "still running after 50 ms: recorded started")
                let running = try #require(try await app.runtime.runs.find(id: slow.id))
                #expect(running.workerID == "lazy-worker" && running.startedAt != nil)
                #expect(try await app.runtime.runs.attempts(taskID: slow.id).map(\.state) == [.started])
                hold.release().open()
                #expect(try await eventually { try await app.runtime.runs.find(id: slow.id)?.state == .succeeded })
            }
            let finished = try #require(try await app.runtime.runs.find(id: slow.id))
            #expect(finished.workerID == "lazy-worker" && finished.finishedAt != nil)
            #expect(try await app.runtime.runs.attempts(taskID: slow.id).map(\.state) == [.succeeded])

            // A start written after the outcome (a slow write racing a fast task) changes nothing.
            let late = Delivery(message: slow, tag: "late", deliveries: 1)
            try await app.runtime.runs.markStarted([late], workerID: "another-worker", at: Date())
            #expect(try await app.runtime.runs.find(id: slow.id)?.state == .succeeded)
            #expect(try await app.runtime.runs.find(id: slow.id)?.workerID == "lazy-worker")
            #expect(try await app.runtime.runs.attempts(taskID: slow.id).map(\.state) == [.succeeded])
        }
    }

    @Test("a delivery may start unless its task was revoked, a later attempt exists, or its attempt already ended")
    func startableRules() async throws {
        try await TestApp.run { app in
            let runs = app.runtime.runs
            let now = Date()
            func delivery(_ message: TaskMessage, attempt: Int) -> Delivery {
                var copy = message
                copy.attempt = attempt
                return Delivery(message: copy, tag: "\(attempt)", deliveries: 1)
            }
            var second = TaskMessage(name: "core.noop", enqueuedAt: now)
            second.attempt = 2
            try await runs.recordQueued(second, at: now)
            let finished = TaskMessage(name: "core.noop", enqueuedAt: now)
            try await runs.recordQueued(finished, at: now)
            try await runs.recordOutcome(
                delivery(finished, attempt: 1), state: .succeeded, workerID: "w", error: nil, result: nil, startedAt: now, finishedAt: now)
            let revoked = TaskMessage(name: "core.noop", enqueuedAt: now)
            try await runs.recordQueued(revoked, at: now)
            try await runs.recordRevoked(taskID: revoked.id, at: now)
            let unknown = TaskMessage(name: "core.noop", enqueuedAt: now)

            let verdicts = try await runs.startable([
                delivery(second, attempt: 1), delivery(second, attempt: 2), delivery(finished, attempt: 1),
                delivery(finished, attempt: 2), delivery(revoked, attempt: 1), delivery(unknown, attempt: 1),
            ])
            #expect(verdicts == [false, true, false, true, false, true])
        }
    }

    @Test("a claim from the SQL queue on PostgreSQL brings the runs along, and the start check uses them without a read")
    func claimReadsRuns() async throws {
        try await TestApp.run { app in
            let runs = app.runtime.runs
            let now = app.clock.now()
            let plain = try await app.runtime.tasks.enqueue(TaskMessage(name: "core.noop", enqueuedAt: now))
            let revoked = try await app.runtime.tasks.enqueue(TaskMessage(name: "core.noop", enqueuedAt: now))
            try await runs.recordRevoked(taskID: revoked.id, at: now)
            let finished = try await app.runtime.tasks.enqueue(TaskMessage(name: "core.noop", enqueuedAt: now))
            try await runs.recordOutcome(
                Delivery(message: finished, tag: "earlier", deliveries: 1), state: .succeeded, workerID: "w", error: nil, result: nil,
                startedAt: now, finishedAt: now)
            let claimed = try await app.runtime.broker.claim(
                queues: ["default"], limit: 10, workerID: "claiming-worker", leaseUntil: now.addingTimeInterval(60))
            let byID = Dictionary(uniqueKeysWithValues: claimed.map { ($0.message.id, $0) })
            #expect(Set(byID.keys) == [plain.id, revoked.id, finished.id])
            let ordered = try [plain.id, revoked.id, finished.id].map { try #require(byID[$0]) }
            if app.runtime.database.engine == .postgres {
                #expect(ordered.map(\.runAtClaim) == [
                    .found(state: .queued, attempt: 1), .found(state: .revoked, attempt: 1), .found(state: .succeeded, attempt: 1),
                ])
            } else {
                #expect(ordered.allSatisfy { $0.runAtClaim == nil }, "SQLite claims read no runs")
            }
            #expect(try await runs.startable(ordered) == [true, false, false])
            // What the claim found decides, not a later read: a run found revoked is refused whatever the table says
            // now, and a run found missing starts.
            var foundRevoked = ordered[0]
            foundRevoked.runAtClaim = .found(state: .revoked, attempt: 1)
            var foundMissing = ordered[1]
            foundMissing.runAtClaim = .missing
            #expect(try await runs.startable([foundRevoked, foundMissing]) == [false, true])
        }
    }

    @Test("graceful shutdown lets running tasks finish")
    func gracefulShutdown() async throws {
        try await TestApp.run(extraPlugins: [.testTasks], realClock: true) { app in
            let hold = Hold()
            let id = try await app.runtime.tasks.enqueue(TaskMessage(name: "test.hold", arguments: hold.arguments, enqueuedAt: Date())).id
            let worker = app.runtime.makeWorker(WorkerOptions(queues: ["default"], concurrency: 1), id: "finishing-worker")
            let group = ServiceGroup(configuration: .init(services: [worker], logger: TestDatabase.logger))
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await group.run() }
                defer { hold.releaseAll() }
                #expect(await hold.running().wait(upTo: .seconds(20)))
                await group.triggerGracefulShutdown()
                // Shutting down, the worker still holds the running task: not handed back, not delivered elsewhere.
                #expect(try await app.runtime.broker.stats() == [QueueStats(queue: "default", ready: 0, inFlight: 1, dead: 0, delayed: 0)])
                #expect(try await app.runtime.runs.find(id: id)?.state.isFinal == false)
                hold.release().open()
                try await tasks.waitForAll()
            }
            let run = try #require(try await app.runtime.runs.find(id: id))
            #expect(run.state == .succeeded)
            #expect(run.workerID == "finishing-worker")
            #expect(Executions.count(id) == 1)
            #expect(hold.cancelled.isOpen == false, "finished within the grace period, never cancelled")
            #expect(try await app.runtime.broker.stats().isEmpty)
        }
    }

    @Test("tasks API: operators enqueue and revoke, viewers watch queues and workers")
    func tasksAPI() async throws {
        try await TestApp.run(realClock: true) { app in
            let viewer = try await app.token(for: .viewer)
            let operatorToken = try await app.token(for: .operator)
            #expect(try await app.call(.post, "/api/v1/tasks", body: ["task": "core.noop"], token: viewer).status == .forbidden)
            let bad = try await app.call(.post, "/api/v1/tasks", body: ["task": "nope", "priority": 12], token: operatorToken)
            #expect(Set(bad.errorFields) == ["task", "priority"])
            let created = try await app.call(
                .post, "/api/v1/tasks", body: ["task": "core.noop", "args": ["x": 1], "queue": "high", "priority": 7], token: operatorToken)
            #expect(created.status == .accepted)
            #expect(created.json["state"] == "queued")
            let id = try #require(created.json["id"]?.stringValue)

            let queues = try await app.call(.get, "/api/v1/queues", token: viewer)
            #expect(queues.json["items"] == [["queue": "high", "ready": 1, "in_flight": 0, "dead": 0, "delayed": 0]])
            #expect(try await app.call(.delete, "/api/v1/tasks/\(id)", token: operatorToken).status == .noContent)
            #expect(try await app.call(.get, "/api/v1/tasks/\(id)", token: viewer).json["state"] == "revoked")
            #expect(try await app.call(.delete, "/api/v1/tasks/\(id)", token: operatorToken).status == .conflict)

            let second = try await app.call(.post, "/api/v1/tasks", body: ["task": "core.noop", "queue": "high"], token: operatorToken)
            let secondID = try #require(second.json["id"]?.stringValue)
            try await withWorker(app, WorkerOptions(queues: ["high"], concurrency: 2, heartbeatInterval: .milliseconds(50)), id: "worker-one") { _ in
                let succeeded = try await eventually { try await app.call(.get, "/api/v1/tasks/\(secondID)").json["state"] == "succeeded" }
                #expect(succeeded)
                let workers = try await app.call(.get, "/api/v1/workers", token: viewer)
                #expect(workers.json["items"]?.arrayValue?.first?["id"] == "worker-one")
                #expect(workers.json["items"]?.arrayValue?.first?["queues"] == ["high"])
            }
            let detail = try await app.call(.get, "/api/v1/tasks/\(secondID)", token: viewer)
            #expect(detail.json["attempts"]?.arrayValue?.count == 1)
            #expect(detail.json["attempts"]?.arrayValue?.first?["state"] == "succeeded")
            let listed = try await app.call(.get, "/api/v1/tasks?state=succeeded&task=core.noop", token: viewer)
            #expect(listed.json["items"]?.arrayValue?.map { $0["id"] } == [.string(secondID)])
            #expect(try await app.call(.get, "/api/v1/tasks?state=nope", token: viewer).errorFields == ["state"])
            #expect(try await app.call(.get, "/api/v1/tasks?since=yesterday", token: viewer).errorFields == ["since"])
        }
    }
}

extension Array {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var result: [T] = []
        for element in self { result.append(try await transform(element)) }
        return result
    }
}

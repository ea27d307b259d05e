// Workers that lose their leases or are stopped: a task longer than its lease keeps it, a late outcome is fenced off,
// and shutdown hands a task back only once it has ended.
import Foundation
import IntegratorCore
import Logging
import ServiceLifecycle
import SQLKit
import Synchronization
import Testing

@Suite("Worker isolation")
struct WorkerIsolationTests {
    /// A worker on the test's runtime whose log lines land in `log`.
    func worker(
        _ app: TestApp, _ options: WorkerOptions, id: String, log: CapturedLog, onRecorded: WorkerOutcomeObserver? = nil
    ) -> Worker {
        Worker(
            options: options, broker: app.runtime.broker, runs: app.runtime.runs, registry: app.runtime.registry,
            timers: app.runtime.timers, environment: app.runtime.environment, clock: app.runtime.clock, logger: log.logger, id: id,
            onRecorded: onRecorded)
    }

    /// Runs `worker` for the duration of `body`, then cancels it and waits for it to stop.
    func running<T: Sendable>(_ worker: Worker, _ body: @Sendable () async throws -> T) async throws -> T {
        let task = Task { try await worker.run() }
        defer { task.cancel() }
        let value = try await body()
        task.cancel()
        _ = try? await task.value
        return value
    }

    /// Which worker holds the task's queue message, if any.
    func leaseHolder(_ app: TestApp, taskID: String) async throws -> String? {
        try await app.runtime.database.withSQL { sql in
            try await sql.raw("SELECT leased_by FROM task_queue WHERE task_id = \(bind: taskID)").first()?
                .decode(column: "leased_by", as: String?.self)
        }
    }

    func enqueueHeld(_ app: TestApp, _ hold: Hold) async throws -> String {
        try await app.runtime.tasks.enqueue(TaskMessage(name: "test.hold", arguments: hold.arguments, enqueuedAt: app.runtime.clock.now())).id
    }

    @Test("a task longer than its lease runs once: heartbeats at a third of the lease keep it while another worker polls")
    func longTaskKeepsItsLease() async throws {
        try await TestApp.run(extraPlugins: [.testTasks], realClock: true) { app in
            let hold = Hold()
            defer { hold.releaseAll() }
            let id = try await enqueueHeld(app, hold)
            // The default heartbeat interval (5 s) is longer than this lease: only beating at a third of the lease keeps it.
            let options = WorkerOptions(queues: ["default"], concurrency: 2, lease: 3)
            let log = CapturedLog()
            let holder = worker(app, options, id: "holder", log: log)
            let poller = worker(app, options, id: "poller", log: log)
            try await running(holder) {
                #expect(await hold.running().wait(upTo: .seconds(20)))
                try await running(poller) {
                    // Three lease lengths while the poller asks for work every 200 ms at most: a lease that ran out
                    // even once would hand it the held task.
                    try await Task.sleep(for: .seconds(9))
                    #expect(Executions.count(id) == 1)
                    let stillHeld = try await leaseHolder(app, taskID: id) == "holder"
                    #expect(stillHeld)
                    hold.release().open()
                    let succeeded = try await eventually { try await app.runtime.runs.find(id: id)?.state == .succeeded }
                    #expect(succeeded)
                }
            }
            #expect(Executions.count(id) == 1)
            let ranOnHolder = try await app.runtime.runs.find(id: id)?.workerID == "holder"
            #expect(ranOnHolder)
            let attempts = try await app.runtime.runs.attempts(taskID: id)
            #expect(attempts.map(\.deliveries) == [1])
            #expect(!log.text.contains("heartbeat failed"))
        }
    }

    @Test(
        "a late outcome from a worker that lost its lease neither removes the newer delivery nor overwrites its outcome",
        arguments: [true, false])
    func lateOutcomeIsFencedOff(lateOutcomeFirst: Bool) async throws {
        // The hand-driven clock makes the first worker's lease run out at once, with no heartbeat in between.
        try await TestApp.run(extraPlugins: [.testTasks]) { app in
            let hold = Hold()
            defer { hold.releaseAll() }
            let id = try await enqueueHeld(app, hold)
            let options = WorkerOptions(queues: ["default"], concurrency: 1, lease: 60)
            let log = CapturedLog()
            let recordedByFirst = Mutex<[TaskState]>([])
            let first = worker(app, options, id: "first", log: log) { states in recordedByFirst.withLock { $0 += states } }
            let second = worker(app, options, id: "second", log: CapturedLog())
            let runs = app.runtime.runs
            let lateWarning = "outcome not recorded: the task was delivered again after this worker's lease ran out"
            try await running(first) {
                #expect(await hold.running(1).wait(upTo: .seconds(20)))
                // Its first heartbeat is written once its row exists; the next one comes a third of the lease later.
                let beat = try await eventually { try await runs.liveWorkers(since: .distantPast).contains { $0.id == "first" } }
                #expect(beat)
                app.clock.advance(by: 61)
                try await running(second) {
                    #expect(await hold.running(2).wait(upTo: .seconds(20)), "the expired lease let the second worker take the task")
                    if lateOutcomeFirst {
                        hold.release(1).open()
                        let warned = try await eventually { log.text.contains(lateWarning) }
                        #expect(warned)
                        // The newer delivery's message and run are untouched.
                        let secondHolds = try await leaseHolder(app, taskID: id) == "second"
                        #expect(secondHolds)
                        let unfinished = try await runs.find(id: id)?.state.isFinal == false
                        #expect(unfinished)
                        hold.release(2).open()
                        let succeeded = try await eventually { try await runs.find(id: id)?.state == .succeeded }
                        #expect(succeeded)
                    } else {
                        hold.release(2).open()
                        let succeeded = try await eventually { try await runs.find(id: id)?.state == .succeeded }
                        #expect(succeeded)
                        hold.release(1).open()
                        let warned = try await eventually { log.text.contains(lateWarning) }
                        #expect(warned)
                    }
                }
            }
            let run = try #require(try await runs.find(id: id))
            #expect(run.state == .succeeded)
            #expect(run.workerID == "second")
            let attempts = try await runs.attempts(taskID: id)
            #expect(attempts.count == 1)
            #expect(attempts.first?.state == .succeeded)
            #expect(attempts.first?.workerID == "second")
            #expect(attempts.first?.deliveries == 2)
            #expect(try await app.runtime.broker.stats().isEmpty)
            #expect(Executions.count(id) == 2, "the first worker lost its lease while running, so the task ran twice")
            #expect(recordedByFirst.withLock { $0 }.isEmpty, "a fenced-off outcome is not reported as recorded")
        }
    }

    @Test("shutdown cancels a task after the grace period and hands it back only once it has ended")
    func shutdownHandsBackEndedTasks() async throws {
        try await TestApp.run(extraPlugins: [.testTasks], realClock: true) { app in
            let hold = Hold()
            defer { hold.releaseAll() }
            let id = try await enqueueHeld(app, hold)
            let log = CapturedLog()
            let options = WorkerOptions(
                queues: ["default"], concurrency: 1, shutdownGrace: .milliseconds(100), cancellationWait: .seconds(20))
            let group = ServiceGroup(
                configuration: .init(services: [worker(app, options, id: "stopping", log: log)], logger: TestDatabase.logger))
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await group.run() }
                #expect(await hold.running().wait(upTo: .seconds(20)))
                await group.triggerGracefulShutdown()
                try await tasks.waitForAll()
            }
            #expect(hold.cancelled.isOpen)
            #expect(log.text.contains("handing back unfinished tasks"))
            #expect(try await app.runtime.broker.stats() == [QueueStats(queue: "default", ready: 1, inFlight: 0, dead: 0, delayed: 0)])
            let handedBack = try await leaseHolder(app, taskID: id) == nil
            #expect(handedBack)
            let unfinished = try await app.runtime.runs.find(id: id)?.state.isFinal == false
            #expect(unfinished)
            #expect(Executions.count(id) == 1)

            // Handed back, it runs again elsewhere.
            hold.release(2).open()
            try await withWorker(app, WorkerOptions(queues: ["default"], concurrency: 1)) { _ in
                let succeeded = try await eventually { try await app.runtime.runs.find(id: id)?.state == .succeeded }
                #expect(succeeded)
            }
            #expect(Executions.count(id) == 2)
        }
    }

    @Test("a task that ignores its cancellation keeps its lease after the wait, and its outcome is recorded when it ends")
    func stubbornTaskKeepsItsLease() async throws {
        try await TestApp.run(extraPlugins: [.testTasks], realClock: true) { app in
            let hold = Hold(ignoresCancellation: true)
            defer { hold.releaseAll() }
            let id = try await enqueueHeld(app, hold)
            let log = CapturedLog()
            let options = WorkerOptions(
                queues: ["default"], concurrency: 1, shutdownGrace: .milliseconds(100), cancellationWait: .milliseconds(300))
            let group = ServiceGroup(
                configuration: .init(services: [worker(app, options, id: "stubborn", log: log)], logger: TestDatabase.logger))
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await group.run() }
                #expect(await hold.running().wait(upTo: .seconds(20)))
                await group.triggerGracefulShutdown()
                #expect(await hold.cancelled.wait(upTo: .seconds(20)), "cancelled once the grace period passed")
                let gaveUpWaiting = try await eventually { log.text.contains("tasks still running after cancellation") }
                #expect(gaveUpWaiting)
                // Past the wait, still running: the message stays this worker's, so nobody else can run the task now.
                let stillHeld = try await leaseHolder(app, taskID: id) == "stubborn"
                #expect(stillHeld)
                #expect(!log.text.contains("handing back unfinished tasks"))
                hold.release().open()
                try await tasks.waitForAll()
            }
            // It finished its work despite the cancellation: the outcome stands and the message is gone.
            let succeeded = try await app.runtime.runs.find(id: id)?.state == .succeeded
            #expect(succeeded)
            #expect(try await app.runtime.broker.stats().isEmpty)
            #expect(Executions.count(id) == 1)
        }
    }

    @Test("a failing heartbeat is a warning, said once per streak of failures")
    func heartbeatFailuresAreWarnings() async throws {
        try await TestApp.run(realClock: true) { app in
            let broker = LeasesFailBroker()
            let logs = CapturedLog()
            let worker = Worker(
                options: WorkerOptions(queues: ["default"], concurrency: 1, lease: 1.5), broker: broker, runs: app.runtime.runs,
                registry: app.runtime.registry, logger: logs.logger, id: "beating")
            @Sendable func failureWarnings() -> Int {
                logs.lines(at: .warning).filter { $0.message.hasPrefix("heartbeat failed") }.count
            }
            try await running(worker) {
                let failedThrice = try await eventually { broker.failedExtensions.withLock { $0 } >= 3 }
                #expect(failedThrice)
                #expect(failureWarnings() == 1, "three failures in a row, one warning")
                broker.failing.withLock { $0 = false }
                let recovered = try await eventually { logs.lines(at: .info).contains { $0.message == "heartbeat recovered" } }
                #expect(recovered)
                broker.failing.withLock { $0 = true }
                let warnedAgain = try await eventually { failureWarnings() == 2 }
                #expect(warnedAgain, "a new streak is warned about again")
            }
        }
    }
}

/// A broker with no messages whose lease extensions fail while `failing` is set, like a database that stops answering.
final class LeasesFailBroker: Broker {
    let failing = Mutex(true)
    let failedExtensions = Mutex(0)

    struct Unreachable: Error {}

    func extendLeases(workerID: String, leaseUntil: Date) async throws {
        guard failing.withLock({ $0 }) else { return }
        failedExtensions.withLock { $0 += 1 }
        throw Unreachable()
    }

    func publish(_ message: TaskMessage) async throws {}
    func claim(queues: [String], limit: Int, workerID: String, leaseUntil: Date) async throws -> [Delivery] { [] }
    func acknowledge(_ delivery: Delivery) async throws {}
    func retry(_ delivery: Delivery, as next: TaskMessage, notBefore: Date) async throws {}
    func deadLetter(_ delivery: Delivery, reason: String) async throws {}
    func release(_ deliveries: [Delivery]) async throws {}
    func stats() async throws -> [QueueStats] { [] }
    func purge(queue: String) async throws -> Int? { nil }
}

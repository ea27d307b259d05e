// Task handlers that fire their timers in the beat's transaction: they run there once each and leave no task, their
// failures are undone and handed to the workers as ordinary tasks, and timers they decline are queued. Executions are
// counted by the handler, in the beat and on the worker apart.
import Foundation
@testable import IntegratorCore
import Logging
import Synchronization
import Testing

/// Counts in-beat firings and worker runs per `key`; keys listed in ``failing`` make the in-beat firing throw after it
/// wrote, keys in ``declined`` are handed back to the beat unhandled.
struct FiresInBeat: BeatFiredTaskHandler {
    let name = "beat-fired-test.note"

    struct Counts {
        var inBeat: [String: Int] = [:]
        var committed: [String: Int] = [:]
        var onWorker: [String: Int] = [:]
    }

    static let counts = Mutex(Counts())
    static let failing = Mutex<Set<String>>([])
    static let declined = Mutex<Set<String>>([])

    /// The timer each firing writes, so a test can see whether the write was kept.
    static func markerID(_ key: String) -> String { "beat-fired-test-marker:\(key)" }

    static func key(_ timer: DurableTimer) -> String { timer.message.arguments["key"]?.stringValue ?? "" }

    func fire(dueTimers: [DurableTimer], in transaction: StoreTransaction, environment: PluginEnvironment) async throws
        -> [DurableTimer]
    {
        let declined = Self.declined.withLock { set in dueTimers.filter { set.contains(Self.key($0)) } }
        let handled = dueTimers.filter { !declined.contains($0) }
        let now = environment.clock.now()
        for timer in handled {
            let key = Self.key(timer)
            Self.counts.withLock { $0.inBeat[key, default: 0] += 1 }
            let marker = TaskMessage(name: "beat-test.count", arguments: ["key": .string("marker-\(key)")], queue: "nobody", enqueuedAt: now)
            try await environment.timers.upsert(
                DurableTimer(id: Self.markerID(key), dueAt: now.addingTimeInterval(86_400), message: marker), in: transaction, at: now)
            transaction.afterCommit { Self.counts.withLock { $0.committed[key, default: 0] += 1 } }
        }
        if let failing = handled.first(where: { key in Self.failing.withLock { $0.contains(Self.key(key)) } }) {
            throw TestSetupError("refusing \(Self.key(failing)) on purpose")
        }
        return declined
    }

    func run(_ arguments: JSONValue, context: TaskContext) async throws -> JSONValue {
        let key = arguments["key"]?.stringValue ?? ""
        Self.counts.withLock { $0.onWorker[key, default: 0] += 1 }
        return [:]
    }
}

extension Plugin {
    static let beatFiredTest = Plugin(id: "beat-fired-test", name: "Beat-fired test tasks", taskHandlers: [FiresInBeat()])
}

@Suite("Timers fired in the beat")
struct BeatFiredTimerTests {
    /// A beat with the app's plugins whose log goes to `logs`; it tries a failed in-beat firing again after 300 ms.
    static func beat(_ app: TestApp, logs: CapturedLog, retryInterval: Duration = .milliseconds(300)) -> Beat {
        let database = app.runtime.database
        var options = BeatOptions()
        options.retryInterval = retryInterval
        return Beat(
            database: database, schedules: ScheduleStore(database: database), timers: app.runtime.timers,
            dispatcher: app.runtime.dispatcher, wakeup: app.runtime.wakeup, clock: app.clock, logger: logs.logger,
            options: options, environment: app.runtime.environment)
    }

    /// Timers of the in-beat task, one per key, due in one second; their task ids by key.
    static func timers(_ app: TestApp, keys: [String]) async throws -> [String: String] {
        let now = app.clock.now()
        var ids: [String: String] = [:]
        for key in keys {
            let message = TaskMessage(name: "beat-fired-test.note", arguments: ["key": .string(key)], queue: "default", enqueuedAt: now)
            try await app.runtime.timers.upsert(DurableTimer(id: "in-beat:\(key)", dueAt: now.addingTimeInterval(1), message: message), at: now)
            ids[key] = message.id
        }
        return ids
    }

    static func counts(_ key: String) -> (inBeat: Int, committed: Int, onWorker: Int) {
        FiresInBeat.counts.withLock { ($0.inBeat[key] ?? 0, $0.committed[key] ?? 0, $0.onWorker[key] ?? 0) }
    }

    @Test("due timers of a beat-fired task run once in the beat and leave no task; other timers of the batch are queued")
    func firesInBeat() async throws {
        try await TestApp.run(extraPlugins: [.beatTest, .beatFiredTest]) { app in
            let logs = CapturedLog()
            let keys = (0..<3).map { "in-beat-\($0)-\(UUID().uuidString)" }
            let taskIDs = try await Self.timers(app, keys: keys)
            let otherKey = "queued-\(UUID().uuidString)"
            let other = try await BeatIsolationTests.timer(app, id: "other-\(otherKey)", key: otherKey, in: 1)

            let beat = Self.beat(app, logs: logs)
            #expect(try await beat.pass().timersFired == 0, "nothing is due yet")
            app.clock.advance(by: 1)
            #expect(try await beat.pass().timersFired == 4)
            for key in keys {
                #expect(Self.counts(key) == (1, 1, 0), "fired once in the beat, committed, not queued")
                #expect(try await app.runtime.timers.find(id: FiresInBeat.markerID(key)) != nil, "its write committed")
                #expect(try await app.runtime.runs.find(id: taskIDs[key]!) == nil, "no task run for a timer fired in the beat")
            }
            #expect(try await app.runtime.runs.find(id: other.id)?.state == .queued, "the other task's timer was queued")
            #expect(try await beat.pass().timersFired == 0, "each timer fires once")

            try await BeatIsolationTests.runQueuedTasks(app, taskIDs: [other.id])
            #expect(CountsExecutions.count(otherKey) == 1)
            for key in keys { #expect(Self.counts(key).onWorker == 0) }
            #expect(logs.errors.isEmpty, "\(logs.errors)")
        }
    }

    @Test("a beat-fired handler that throws has its batch's writes and after-commit actions undone; its timers run once as tasks")
    func failureFallsBackToTasks() async throws {
        try await TestApp.run(extraPlugins: [.beatFiredTest]) { app in
            let logs = CapturedLog()
            let keys = (0..<2).map { "failing-\($0)-\(UUID().uuidString)" }
            FiresInBeat.failing.withLock { $0.formUnion(keys) }
            defer { FiresInBeat.failing.withLock { $0.subtract(keys) } }
            var taskIDs = try await Self.timers(app, keys: keys)

            // The handler rests for 10 s of the test's clock after failing.
            let beat = Self.beat(app, logs: logs, retryInterval: .seconds(10))
            app.clock.advance(by: 1)
            let pass = try await beat.pass()
            #expect(pass.timersFired == 2 && pass.failed.isEmpty, "the beat itself did not fail: it took the batch again")
            for key in keys {
                #expect(Self.counts(key) == (1, 0, 0), "tried in the beat once; its after-commit action never ran")
                #expect(try await app.runtime.timers.find(id: FiresInBeat.markerID(key)) == nil, "its write was rolled back")
                #expect(try await app.runtime.runs.find(id: taskIDs[key]!)?.state == .queued, "queued as a task instead")
            }

            // Within the retry interval the handler is not tried: its timers go straight to the queue.
            let resting = ["resting-\(UUID().uuidString)"]
            taskIDs.merge(try await Self.timers(app, keys: resting)) { first, _ in first }
            app.clock.advance(by: 1)
            #expect(try await beat.pass().timersFired == 1)
            #expect(Self.counts(resting[0]) == (0, 0, 0), "not tried in the beat while resting")

            // Tried again after it and still failing: one error in all, not one per try.
            app.clock.advance(by: 10)
            let again = ["failing-again-\(UUID().uuidString)"]
            FiresInBeat.failing.withLock { $0.formUnion(again) }
            defer { FiresInBeat.failing.withLock { $0.subtract(again) } }
            taskIDs.merge(try await Self.timers(app, keys: again)) { first, _ in first }
            app.clock.advance(by: 1)
            #expect(try await beat.pass().timersFired == 1)
            #expect(Self.counts(again[0]) == (1, 0, 0), "tried again after the interval")
            #expect(logs.errors.count == 1 && logs.errors[0].contains("beat-fired-test.note"), "\(logs.errors)")

            try await BeatIsolationTests.runQueuedTasks(app, taskIDs: Array(taskIDs.values))
            for key in keys + resting + again { #expect(Self.counts(key).onWorker == 1, "the worker ran \(key) once") }

            // Working again after the interval: fired in the beat, and the recovery is logged.
            app.clock.advance(by: 10)
            let healthy = ["healthy-\(UUID().uuidString)"]
            _ = try await Self.timers(app, keys: healthy)
            app.clock.advance(by: 1)
            #expect(try await beat.pass().timersFired == 1)
            #expect(Self.counts(healthy[0]) == (1, 1, 0))
            #expect(logs.lines(at: .info).contains { $0.message.contains("fires timers of this task itself again") })
        }
    }

    @Test("with no retry interval, a failing handler is still left out when the beat takes its batch again: the pass ends")
    func failingWithoutRetryIntervalEnds() async throws {
        try await TestApp.run(extraPlugins: [.beatFiredTest]) { app in
            let keys = ["no-interval-\(UUID().uuidString)"]
            FiresInBeat.failing.withLock { $0.formUnion(keys) }
            defer { FiresInBeat.failing.withLock { $0.subtract(keys) } }
            let taskIDs = try await Self.timers(app, keys: keys)
            let database = app.runtime.database
            var options = BeatOptions()
            options.retryInterval = .zero
            let beat = Beat(
                database: database, schedules: ScheduleStore(database: database), timers: app.runtime.timers,
                dispatcher: app.runtime.dispatcher, wakeup: app.runtime.wakeup, clock: app.clock, logger: CapturedLog().logger,
                options: options, environment: app.runtime.environment)
            app.clock.advance(by: 1)
            let passing = Task { try await beat.pass() }
            let ended = Task {
                try await Task.sleep(for: .seconds(20))
                passing.cancel()
            }
            let pass = try? await passing.value
            ended.cancel()
            #expect(pass?.timersFired == 1, "the pass ended by itself with the timer fired")
            #expect(Self.counts(keys[0]) == (1, 0, 0), "tried in the beat once")
            #expect(try await app.runtime.runs.find(id: taskIDs[keys[0]]!)?.state == .queued)
        }
    }

    @Test("timers a beat-fired handler declines are queued as tasks and run once on a worker")
    func declinedTimersAreQueued() async throws {
        try await TestApp.run(extraPlugins: [.beatFiredTest]) { app in
            let logs = CapturedLog()
            let declined = "declined-\(UUID().uuidString)"
            let taken = "taken-\(UUID().uuidString)"
            FiresInBeat.declined.withLock { _ = $0.insert(declined) }
            defer { FiresInBeat.declined.withLock { _ = $0.remove(declined) } }
            let taskIDs = try await Self.timers(app, keys: [declined, taken])

            app.clock.advance(by: 1)
            #expect(try await Self.beat(app, logs: logs).pass().timersFired == 2)
            #expect(Self.counts(taken) == (1, 1, 0))
            #expect(Self.counts(declined) == (0, 0, 0))
            #expect(try await app.runtime.runs.find(id: taskIDs[taken]!) == nil)
            try await BeatIsolationTests.runQueuedTasks(app, taskIDs: [taskIDs[declined]!])
            #expect(Self.counts(declined).onWorker == 1)
            #expect(Self.counts(taken).onWorker == 0)
            #expect(logs.errors.isEmpty, "\(logs.errors)")
        }
    }
}

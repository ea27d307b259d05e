// The beat against the real database: firing schedules and timers by the injected clock, waking on writes, one leader.
import Foundation
@testable import IntegratorCore
import Synchronization
import Testing

@Suite("Beat")
struct BeatTests {
    func runs(_ app: TestApp, schedule: String) async throws -> [TaskRun] {
        try await app.runtime.runs.list(TaskRunFilter(scheduleID: schedule), page: PageRequest(limit: 500)).items
    }

    /// Messages the beat put on the SQL queue for `schedule`: one per fire it published, whatever the run records say.
    func queuedMessages(_ app: TestApp, schedule: String) async throws -> Int {
        try await app.runtime.database.withSQL { sql in
            try await sql.raw("SELECT COUNT(*) AS n FROM task_queue WHERE schedule_id = \(bind: schedule)").first()?
                .decode(column: "n", as: Int.self) ?? 0
        }
    }

    /// Messages on the SQL queue for one task.
    func queuedMessages(_ app: TestApp, task: String) async throws -> Int {
        try await app.runtime.database.withSQL { sql in
            try await sql.raw("SELECT COUNT(*) AS n FROM task_queue WHERE task_id = \(bind: task)").first()?
                .decode(column: "n", as: Int.self) ?? 0
        }
    }

    /// A beat on the runtime whose log goes to `logs`.
    func makeBeat(_ app: TestApp, logs: CapturedLog, identity: String? = nil) -> Beat {
        let runtime = app.runtime
        return Beat(
            database: runtime.database, schedules: ScheduleStore(database: runtime.database), timers: runtime.timers,
            dispatcher: runtime.dispatcher, wakeup: runtime.wakeup, clock: runtime.clock, logger: logs.logger, identity: identity)
    }

    func createSchedule(_ app: TestApp, _ body: JSONValue) async throws -> String {
        let created = try await app.call(.post, "/api/v1/schedules", body: body)
        guard created.status == .created, let id = created.json["id"]?.stringValue else {
            throw TestSetupError("creating the schedule failed: \(created.text)")
        }
        return id
    }

    @Test("an interval schedule fires on time, once per fire time, and catches up once after downtime")
    func intervalFiring() async throws {
        try await TestApp.run { app in
            let id = try await createSchedule(app, ["name": "m", "task": "core.noop", "interval": ["every": 60], "overlap": "allow"])
            let logs = CapturedLog()
            let beat = makeBeat(app, logs: logs)
            #expect(try await beat.pass().total == 0)
            app.clock.advance(by: 60)
            #expect(try await beat.pass().schedulesFired == 1)
            #expect(try await beat.pass().total == 0, "a fire time is published once")
            app.clock.advance(by: 3600)
            try await beat.pass()
            let fired = try await runs(app, schedule: id)
            #expect(fired.count == 2, "run_once: downtime gives one catch-up run")
            #expect(Set(fired.compactMap(\.scheduledFor)).count == 2)
            #expect(try await queuedMessages(app, schedule: id) == 2, "one message published per fire time")
            let stored = try await app.runtime.schedules.get(id: id)
            #expect(stored.totalRunCount == 2 && stored.lastRunAt == app.clock.now())
            #expect(stored.nextRunAt == TestApp.startDate.addingTimeInterval(3720))

            let disabled = try await app.call(.patch, "/api/v1/schedules/\(id)", body: ["enabled": false], token: TestApp.apiToken)
            #expect(disabled.status == .ok, "\(disabled.text)")
            app.clock.advance(by: 600)
            try await beat.pass()
            #expect(try await runs(app, schedule: id).count == 2, "a disabled schedule does not fire")
            #expect(try await queuedMessages(app, schedule: id) == 2)
            #expect(logs.errors.isEmpty, "\(logs.errors)")
        }
    }

    @Test("overlap skip waits for the previous run to finish")
    func overlapSkip() async throws {
        try await TestApp.run { app in
            let id = try await createSchedule(app, ["name": "o", "task": "core.noop", "interval": ["every": 10]])
            let beat = app.runtime.makeBeat()
            app.clock.advance(by: 10)
            try await beat.pass()
            app.clock.advance(by: 10)
            try await beat.pass()
            #expect(try await runs(app, schedule: id).count == 1, "the first run is still queued")
            let first = try #require(try await runs(app, schedule: id).first)
            try await app.runtime.runs.recordOutcome(
                Delivery(message: TaskMessage(id: first.id, name: first.name, enqueuedAt: first.enqueuedAt), tag: "", deliveries: 1),
                state: .succeeded, error: nil, result: nil, startedAt: app.clock.now(), finishedAt: app.clock.now())
            app.clock.advance(by: 10)
            try await beat.pass()
            #expect(try await runs(app, schedule: id).count == 2)
        }
    }

    @Test("clocked and one-off schedules fire once and disable themselves")
    func clockedOnce() async throws {
        try await TestApp.run { app in
            let at = TestApp.startDate.addingTimeInterval(30)
            let clocked = try await createSchedule(
                app, ["name": "c", "task": "core.noop", "clocked": ["at": .string(at.formatted(.iso8601WithMilliseconds))]])
            let oneOff = try await createSchedule(app, ["name": "one", "task": "core.noop", "interval": ["every": 5], "one_off": true])
            let beat = app.runtime.makeBeat()
            app.clock.advance(by: 40)
            try await beat.pass()
            app.clock.advance(by: 40)
            try await beat.pass()
            #expect(try await runs(app, schedule: clocked).map(\.scheduledFor) == [at])
            #expect(try await runs(app, schedule: oneOff).count == 1)
            #expect(try await app.runtime.schedules.get(id: clocked).enabled == false)
            #expect(try await app.runtime.schedules.get(id: oneOff).enabled == false)
        }
    }

    @Test("timers fire once at their due time; an upsert moves one, a cancel removes it")
    func timers() async throws {
        try await TestApp.run { app in
            let now = app.clock.now()
            let timers = app.runtime.timers
            let message = TaskMessage(name: "core.noop", arguments: ["n": 1], queue: "default", enqueuedAt: now)
            try await timers.upsert(DurableTimer(id: "debounce:user-1", dueAt: now.addingTimeInterval(5), message: message), at: now)
            try await timers.upsert(DurableTimer(id: "debounce:user-1", dueAt: now.addingTimeInterval(9), message: message), at: now)
            try await timers.upsert(DurableTimer(id: "gone", dueAt: now.addingTimeInterval(1), message: TaskMessage(name: "core.noop", enqueuedAt: now)), at: now)
            #expect(try await timers.cancel(id: "gone"))
            #expect(try await timers.cancel(id: "gone") == false)
            let logs = CapturedLog()
            let beat = makeBeat(app, logs: logs)
            app.clock.advance(by: 5)
            #expect(try await beat.pass().timersFired == 0, "the debounce pushed the timer back")
            app.clock.advance(by: 4)
            #expect(try await beat.pass().timersFired == 1)
            #expect(try await beat.pass().timersFired == 0)
            let run = try #require(try await app.runtime.runs.find(id: message.id))
            #expect(run.state == .queued && run.scheduledFor == now.addingTimeInterval(9) && run.arguments == ["n": 1])
            #expect(try await timers.count() == 0)
            #expect(try await queuedMessages(app, task: message.id) == 1, "the timer's task was published once")
            #expect(logs.errors.isEmpty, "\(logs.errors)")
        }
    }

    @Test("a running beat fires a timer created after it went to sleep, on time")
    func wakesOnWrite() async throws {
        try await TestApp.run(realClock: true) { app in
            var options = BeatOptions()
            options.pollInterval = .seconds(30)
            let published = Mutex<[(Date, Date)]>([])
            let beat = app.runtime.makeBeat(options) { due, at in
                published.withLock { $0.append(contentsOf: due.map { ($0, at) }) }
            }
            let running = Task { try await beat.run() }
            defer { running.cancel() }
            try await Task.sleep(for: .milliseconds(300))
            let due = Date().addingTimeInterval(0.2)
            let message = TaskMessage(name: "core.noop", enqueuedAt: Date())
            try await app.runtime.timers.upsert(DurableTimer(dueAt: due, message: message), at: Date())
            #expect(try await eventually(20) { try await app.runtime.runs.find(id: message.id) != nil })
            // The beat reports a fire just after its commit, so the run can be seen a moment before the report.
            #expect(try await eventually(5) { published.withLock { !$0.isEmpty } })
            let lateness = try #require(published.withLock { $0.first }).1.timeIntervalSince(due)
            // Well under the 30 s poll even on a loaded machine: the write woke the beat.
            #expect(lateness >= 0 && lateness < 10, "fired \(lateness) s after due, not at the 30 s poll")

            let id = try await createSchedule(app, ["name": "fast", "task": "core.noop", "interval": ["every": 1], "overlap": "allow"])
            #expect(try await eventually(5) { try await runs(app, schedule: id).count >= 2 }, "a new schedule is seen without a restart")
        }
    }

    @Test("of two beats one leads; when it stops the other takes over and nothing fires twice")
    func leadership() async throws {
        try await TestApp.run(realClock: true) { app in
            let id = try await createSchedule(app, ["name": "tick", "task": "core.noop", "interval": ["every": 1], "overlap": "allow"])
            let logs = CapturedLog()
            let first = makeBeat(app, logs: logs, identity: "beat-one")
            let second = makeBeat(app, logs: logs, identity: "beat-two")
            let runningFirst = Task { try await first.run() }
            try await Task.sleep(for: .milliseconds(500))
            let runningSecond = Task { try await second.run() }
            defer { runningSecond.cancel() }
            try await Task.sleep(for: .seconds(2.5))
            runningFirst.cancel()
            _ = try? await runningFirst.value
            let before = try await runs(app, schedule: id).count
            #expect(try await eventually(10) { try await runs(app, schedule: id).count >= before + 2 }, "the standby took over")
            let fired = try await runs(app, schedule: id)
            let times = fired.compactMap(\.scheduledFor)
            #expect(times.count == fired.count && Set(times).count == times.count, "no fire time recorded twice")
            runningSecond.cancel()
            _ = try? await runningSecond.value
            // Counted apart from the runs (whose unique index would hide a second fire): messages published, and
            // fires the beats attempted for a time that already had its run.
            let recorded = try await runs(app, schedule: id).count
            #expect(try await queuedMessages(app, schedule: id) == recorded, "one message per fire time")
            #expect(!logs.warnings.contains { $0.contains("already had its run") }, "\(logs.warnings)")
            #expect(logs.errors.isEmpty, "\(logs.errors)")
        }
    }
}

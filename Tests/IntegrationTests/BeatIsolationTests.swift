// The beat isolates failures: an edit racing a fire, unreadable rows, and a broker that refuses or blocks stop nothing
// else, and nothing fires or runs twice. Executions are counted by a handler, and the beat's error log is captured.
import Foundation
@testable import IntegratorCore
import Logging
import Synchronization
import Testing

/// Counts how often tasks ran, by their `key` argument.
struct CountsExecutions: TaskHandler {
    let name = "beat-test.count"
    static let counts = Mutex<[String: Int]>([:])

    static func count(_ key: String) -> Int { counts.withLock { $0[key] ?? 0 } }

    func run(_ arguments: JSONValue, context: TaskContext) async throws -> JSONValue {
        let key = arguments["key"]?.stringValue ?? ""
        Self.counts.withLock { $0[key, default: 0] += 1 }
        return [:]
    }
}

extension Plugin {
    static let beatTest = Plugin(id: "beat-test", name: "Beat test tasks", taskHandlers: [CountsExecutions()])
}

/// A broker that accepts, refuses or blocks on demand, and records what it accepted.
final class SwitchableBroker: Broker {
    enum Mode: Sendable {
        case accept
        /// Every publish fails at once.
        case refuse
        /// Every publish waits — ignoring cancellation, as a blocked socket would — until ``unblock()``, then fails.
        case block
    }

    private let state = Mutex<(mode: Mode, published: [String], waiters: [CheckedContinuation<Void, Never>])>((.accept, [], []))

    var published: [String] { state.withLock { $0.published } }

    func set(_ mode: Mode) {
        let waiters = state.withLock { state in
            state.mode = mode
            defer { state.waiters = [] }
            return mode == .block ? [] : state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    func publish(_ message: TaskMessage) async throws {
        switch state.withLock({ $0.mode }) {
        case .accept:
            state.withLock { $0.published.append(message.id) }
        case .refuse:
            throw TestSetupError("connection refused")
        case .block:
            await withCheckedContinuation { continuation in
                let blocked = state.withLock { state in
                    guard state.mode == .block else { return false }
                    state.waiters.append(continuation)
                    return true
                }
                if !blocked { continuation.resume() }
            }
            throw TestSetupError("connection closed while blocked")
        }
    }

    func claim(queues: [String], limit: Int, workerID: String, leaseUntil: Date) async throws -> [Delivery] { [] }
    func acknowledge(_ delivery: Delivery) async throws {}
    func retry(_ delivery: Delivery, as next: TaskMessage, notBefore: Date) async throws {}
    func deadLetter(_ delivery: Delivery, reason: String) async throws {}
    func release(_ deliveries: [Delivery]) async throws {}
    func extendLeases(workerID: String, leaseUntil: Date) async throws {}
    func stats() async throws -> [QueueStats] { [] }
    func purge(queue: String) async throws -> Int? { nil }
}

@Suite("Beat isolates failures")
struct BeatIsolationTests {
    /// A beat on the app's database whose log goes to `logs`.
    static func beat(_ app: TestApp, logs: CapturedLog, dispatcher: TaskDispatcher? = nil, options: BeatOptions = BeatOptions()) -> Beat {
        let database = app.runtime.database
        return Beat(
            database: database, schedules: ScheduleStore(database: database), timers: app.runtime.timers,
            dispatcher: dispatcher ?? app.runtime.dispatcher, wakeup: app.runtime.wakeup, clock: app.clock, logger: logs.logger,
            options: options)
    }

    static func createSchedule(_ app: TestApp, _ body: JSONValue) async throws -> String {
        let created = try await app.call(.post, "/api/v1/schedules", body: body)
        guard created.status == .created, let id = created.json["id"]?.stringValue else {
            throw TestSetupError("creating the schedule failed: \(created.text)")
        }
        return id
    }

    static func runs(_ app: TestApp, schedule: String) async throws -> [TaskRun] {
        try await app.runtime.runs.list(TaskRunFilter(scheduleID: schedule), page: PageRequest(limit: 500)).items
    }

    /// A timer running the counting task under `key`, due `seconds` from now.
    static func timer(_ app: TestApp, id: String, key: String, in seconds: TimeInterval) async throws -> TaskMessage {
        let now = app.clock.now()
        let message = TaskMessage(name: "beat-test.count", arguments: ["key": .string(key)], queue: "default", enqueuedAt: now)
        try await app.runtime.timers.upsert(DurableTimer(id: id, dueAt: now.addingTimeInterval(seconds), message: message), at: now)
        return message
    }

    /// Runs a worker until every run of `taskIDs` and of `schedules` succeeded.
    static func runQueuedTasks(_ app: TestApp, schedules: [String] = [], taskIDs: [String] = []) async throws {
        let worker = app.runtime.makeWorker(WorkerOptions(queues: ["default"], concurrency: 4))
        let running = Task { try await worker.run() }
        defer { running.cancel() }
        let done = try await eventually(30) {
            for schedule in schedules where try await runs(app, schedule: schedule).contains(where: { $0.state != .succeeded }) {
                return false
            }
            for id in taskIDs where try await app.runtime.runs.find(id: id)?.state != .succeeded { return false }
            return true
        }
        #expect(done, "the worker ran every queued task")
        running.cancel()
        _ = try? await running.value
    }

    @Test("an edit racing a fire writes no stale next fire time; a fire time that already ran is skipped, not retried forever")
    func editRacingFire() async throws {
        try await TestApp.run(extraPlugins: [.beatTest]) { app in
            let logs = CapturedLog()
            let key = "race-\(UUID().uuidString)"
            let id = try await Self.createSchedule(
                app, [
                    "name": "race", "task": "beat-test.count", "args": ["key": .string(key)], "interval": ["every": 10], "overlap": "allow",
                    // An edit holding the row makes the beat skip it for that pass; every fire time still runs after.
                    "misfire": "run_all",
                ])
            let beat = Self.beat(app, logs: logs)
            let store = ScheduleStore(database: app.runtime.database)

            // The edit reads the schedule, then the beat fires, then the edit saves what it read plus its change.
            let readByEdit = try #require(try await store.find(id: id))
            app.clock.advance(by: 10)
            #expect(try await beat.pass().schedulesFired == 1)
            var edit = readByEdit
            edit.priority = 9
            let edited = edit
            let now = app.clock.now()
            let saved = try #require(try await store.update(id: id) { current in
                SchedulesService.applying(edited, readFrom: readByEdit, to: current, at: now)
            })
            #expect(saved.priority == 9)
            #expect(saved.nextRunAt == TestApp.startDate.addingTimeInterval(20), "the fire's next time survives the edit")
            #expect(saved.totalRunCount == 1)

            // Whatever writes a stale time back (here raw SQL), the beat skips the fire time that already ran.
            let timerKey = "race-timer-\(UUID().uuidString)"
            let timerMessage = try await Self.timer(app, id: "race-timer", key: timerKey, in: 1)
            try await app.runtime.database.withSQL { sql in
                try await sql.raw("UPDATE schedules SET next_run_at = \(bind: TestApp.startDate.addingTimeInterval(10)) WHERE id = \(bind: id)").run()
            }
            app.clock.advance(by: 1)
            let afterStale = try await beat.pass()
            #expect(afterStale.failed.isEmpty && afterStale.timersFired == 1, "the timer fires beside the stale schedule")
            #expect(try await Self.runs(app, schedule: id).count == 1, "no second run for the fire time that already ran")
            let repaired = try await app.runtime.schedules.get(id: id)
            #expect(repaired.nextRunAt == TestApp.startDate.addingTimeInterval(20) && repaired.totalRunCount == 1)

            // Edits through the API while the beat fires, concurrently.
            let editing = Task {
                for priority in 0..<20 {
                    let patched = try await app.call(.patch, "/api/v1/schedules/\(id)", body: ["priority": .number(Double(priority % 10))])
                    #expect(patched.status == .ok, "\(patched.text)")
                }
            }
            for _ in 0..<8 {
                app.clock.advance(by: 10)
                let pass = try await beat.pass()
                #expect(pass.failed.isEmpty)
            }
            try await editing.value
            app.clock.advance(by: 10)
            try await beat.pass()

            // Fire times 10, 20, …, 100: ten, each run once.
            let fired = try await Self.runs(app, schedule: id)
            #expect(Set(fired.compactMap(\.scheduledFor)).count == fired.count)
            #expect(fired.count == 10, "\(fired.compactMap(\.scheduledFor))")
            try await Self.runQueuedTasks(app, schedules: [id], taskIDs: [timerMessage.id])
            #expect(CountsExecutions.count(key) == 10, "each fire time ran once")
            #expect(CountsExecutions.count(timerKey) == 1)
            #expect(logs.errors.isEmpty, "\(logs.errors)")
            #expect(logs.warnings.filter { $0.contains("already had its run") }.count == 1, "\(logs.warnings)")
        }
    }

    @Test("unreadable schedules are set aside with one error each; other schedules and timers keep firing")
    func poisonedSchedule() async throws {
        try await TestApp.run(extraPlugins: [.beatTest]) { app in
            let logs = CapturedLog()
            let key = "healthy-\(UUID().uuidString)"
            let healthy = try await Self.createSchedule(
                app, ["name": "healthy", "task": "beat-test.count", "args": ["key": .string(key)], "interval": ["every": 10], "overlap": "allow"])
            let badJSON = try await Self.createSchedule(app, ["name": "bad-json", "task": "core.noop", "interval": ["every": 10]])
            let badZone = try await Self.createSchedule(
                app, ["name": "bad-zone", "task": "core.noop", "crontab": ["expression": "* * * * *", "timezone": "UTC"]])
            let badCron = try await Self.createSchedule(
                app, ["name": "bad-cron", "task": "core.noop", "crontab": ["expression": "* * * * *"]])
            try await app.runtime.database.withSQL { sql in
                try await sql.raw("UPDATE schedules SET arguments = '{\"oops\": ' WHERE id = \(bind: badJSON)").run()
                try await sql.raw("UPDATE schedules SET timezone = 'Mars/Olympus_Mons' WHERE id = \(bind: badZone)").run()
                try await sql.raw("UPDATE schedules SET cron_expression = '61 * * * *' WHERE id = \(bind: badCron)").run()
            }
            let timerKey = "timer-\(UUID().uuidString)"
            let timerMessage = try await Self.timer(app, id: "beside-poison", key: timerKey, in: 30)
            let beat = Self.beat(app, logs: logs)
            var fired = 0
            for _ in 0..<6 {
                app.clock.advance(by: 10)
                let pass = try await beat.pass()
                #expect(pass.failed.isEmpty)
                fired += pass.timersFired
            }
            #expect(fired == 1, "the timer fired")
            #expect(try await Self.runs(app, schedule: healthy).count == 6, "the healthy schedule fired every time")
            let store = ScheduleStore(database: app.runtime.database)
            for poisoned in [badJSON, badZone, badCron] {
                #expect(try await store.setAsideReason(id: poisoned) != nil)
                #expect(try await Self.runs(app, schedule: poisoned).isEmpty)
                let enabled = try await app.runtime.database.withSQL { sql in
                    try await sql.raw("SELECT enabled FROM schedules WHERE id = \(bind: poisoned)").first()?.decode(column: "enabled", as: Bool.self)
                }
                #expect(enabled == false, "a set-aside schedule is disabled, and still stored")
            }
            #expect(logs.errors.count == 3, "one error per unreadable schedule, not one per pass: \(logs.errors)")
            try await Self.runQueuedTasks(app, schedules: [healthy], taskIDs: [timerMessage.id])
            #expect(CountsExecutions.count(key) == 6)
            #expect(CountsExecutions.count(timerKey) == 1)
        }
    }

    @Test("a take reads when the earliest timer it leaves is due: past the ones it took, none when it took the last")
    func takeReadsNextDue() async throws {
        try await TestApp.run(extraPlugins: [.beatTest]) { app in
            let key = "next-due-\(UUID().uuidString)"
            let start = app.clock.now()
            for (id, seconds) in [("a", 1.0), ("b", 2.0), ("c", 3.0), ("d", 30.0)] {
                _ = try await Self.timer(app, id: id, key: key, in: seconds)
            }
            let database = app.runtime.database
            // Databases keep microseconds; the clock has more.
            func due(_ taken: TimerStore.Taken, in seconds: TimeInterval) -> Bool {
                taken.nextDue.map { abs($0.timeIntervalSince(start.addingTimeInterval(seconds))) < 0.001 } ?? false
            }
            func take(at now: Date, limit: Int) async throws -> TimerStore.Taken {
                try await database.withTransaction { transaction in
                    try await app.runtime.timers.takeDue(at: now, limit: limit, transaction.sql, engine: database.engine)
                }
            }
            let full = try await take(at: start.addingTimeInterval(5), limit: 2)
            #expect(full.timers.map(\.id) == ["a", "b"])
            #expect(due(full, in: 3), "a full batch leaves a timer that is due already")
            let short = try await take(at: start.addingTimeInterval(5), limit: 10)
            #expect(short.timers.map(\.id) == ["c"])
            #expect(due(short, in: 30), "the first timer not yet due")
            let empty = try await take(at: start.addingTimeInterval(5), limit: 10)
            #expect(empty.timers.isEmpty && due(empty, in: 30), "nothing due: still the next due time")
            let last = try await take(at: start.addingTimeInterval(40), limit: 10)
            #expect(last.timers.map(\.id) == ["d"] && last.nextDue == nil, "nothing left")
            #expect(try await app.runtime.timers.count() == 0)
        }
    }

    @Test(
        "on PostgreSQL the take deletes the timers it picked by id from an array: no join against the table is planned",
        .enabled(if: TestDatabase.engine == .postgres))
    func takePlansNoJoin() async throws {
        try await TestApp.run(extraPlugins: [.beatTest]) { app in
            let key = "plan-\(UUID().uuidString)"
            for index in 0..<50 { _ = try await Self.timer(app, id: "t\(index)", key: key, in: Double(index)) }
            let statement = TimerStore.postgresTake(
                at: app.clock.now().addingTimeInterval(10), limit: 20,
                companions: TimerStore.TakeCompanions(
                    commitWithoutWaitingForFlush: true, announceOn: QueueAnnouncement(channel: "take_plan_test", sender: "plan")))
            let plan = try await app.runtime.database.withTransaction { transaction in
                try await transaction.sql.raw("ANALYZE timers").run()
                return try await transaction.sql.raw("EXPLAIN \(statement)").all()
                    .map { try $0.decode(column: "QUERY PLAN", as: String.self) }.joined(separator: "\n")
            }
            // The delete as a semi-join of its own pick (a join of the subquery's rows, "ANY_subquery", with the table)
            // made planning cost as much as running the take.
            #expect(!plan.contains("ANY_subquery") && !plan.contains("Semi Join"), "\(plan)")
            #expect(plan.contains("(id = ANY ($"), "\(plan)")
        }
    }

    @Test(
        "on PostgreSQL the take also turns synchronous commit off and announces on a channel at commit, only when it took a timer",
        .enabled(if: TestDatabase.engine == .postgres))
    func takeCompanions() async throws {
        try await TestApp.run(extraPlugins: [.beatTest]) { app in
            let key = "companions-\(UUID().uuidString)"
            let start = app.clock.now()
            _ = try await Self.timer(app, id: "due", key: key, in: 1)
            let database = app.runtime.database
            let channel = "take_test_\(UUID().uuidString.prefix(8).lowercased())"
            let heard = Mutex(0)
            let senders = Mutex<[String]>([])
            let listening = Task {
                try await database.listen(channel: channel) { sender in
                    senders.withLock { $0.append(sender) }
                    heard.withLock { $0 += 1 }
                }
            }
            defer { listening.cancel() }
            // LISTEN takes effect once its connection has run it; a NOTIFY sent until then goes unheard.
            try await Task.sleep(for: .milliseconds(300))
            func take(companions: TimerStore.TakeCompanions) async throws -> (taken: Int, commitMode: String?) {
                try await database.withTransaction { transaction in
                    let sql = transaction.sql
                    try await sql.raw("SET LOCAL synchronous_commit = on").run()
                    let taken = try await app.runtime.timers.takeDue(
                        at: start.addingTimeInterval(5), limit: 10, sql, engine: database.engine, companions: companions)
                    let mode = try await sql.raw("SELECT current_setting('synchronous_commit') AS mode").first()?
                        .decode(column: "mode", as: String.self)
                    return (taken.timers.count, mode)
                }
            }
            let both = TimerStore.TakeCompanions(
                commitWithoutWaitingForFlush: true, announceOn: QueueAnnouncement(channel: channel, sender: "beat-under-test"))
            let first = try await take(companions: both)
            #expect(first.taken == 1 && first.commitMode == "off")
            #expect(try await eventually(5) { heard.withLock { $0 } == 1 }, "the take's announcement arrives after its commit")
            #expect(senders.withLock { $0 } == ["beat-under-test"], "the announcement names its sender")
            let empty = try await take(companions: both)
            #expect(empty.taken == 0 && empty.commitMode == "off", "the commit mode is set even when nothing is due")
            let plain = try await take(companions: TimerStore.TakeCompanions())
            #expect(plain.commitMode == "on")
            try await Task.sleep(for: .milliseconds(300))
            #expect(heard.withLock { $0 } == 1, "a take that took nothing announces nothing")
        }
    }

    @Test("an unreadable timer is set aside with one error; the timers around it fire, and setting it again takes it back")
    func poisonedTimer() async throws {
        try await TestApp.run(extraPlugins: [.beatTest]) { app in
            let logs = CapturedLog()
            let key = "timers-\(UUID().uuidString)"
            let first = try await Self.timer(app, id: "first", key: key, in: 1)
            _ = try await Self.timer(app, id: "poisoned", key: key, in: 2)
            let third = try await Self.timer(app, id: "third", key: key, in: 3)
            let later = try await Self.timer(app, id: "later", key: key, in: 20)
            try await app.runtime.database.withSQL { sql in
                try await sql.raw("UPDATE timers SET arguments = 'not json' WHERE id = 'poisoned'").run()
            }
            let scheduleKey = "beside-\(UUID().uuidString)"
            let schedule = try await Self.createSchedule(
                app, ["name": "beside", "task": "beat-test.count", "args": ["key": .string(scheduleKey)], "interval": ["every": 5], "overlap": "allow"])
            let beat = Self.beat(app, logs: logs)
            app.clock.advance(by: 5)
            let pass = try await beat.pass()
            #expect(pass.failed.isEmpty && pass.timersFired == 2 && pass.schedulesFired == 1)
            #expect(try await app.runtime.timers.setAsideReason(id: "poisoned") != nil)
            #expect(try await app.runtime.timers.count() == 2, "the unreadable timer stays stored, beside the later one")
            app.clock.advance(by: 20)
            #expect(try await beat.pass().timersFired == 1, "later timers fire")
            #expect(logs.errors.count == 1, "\(logs.errors)")

            let replaced = try await Self.timer(app, id: "poisoned", key: key, in: 1)
            #expect(try await app.runtime.timers.setAsideReason(id: "poisoned") == nil)
            app.clock.advance(by: 1)
            #expect(try await beat.pass().timersFired == 1, "a timer set again replaces the unreadable one")

            try await Self.runQueuedTasks(app, schedules: [schedule], taskIDs: [first.id, third.id, later.id, replaced.id])
            #expect(CountsExecutions.count(key) == 4)
            #expect(logs.errors.count == 1, "\(logs.errors)")
        }
    }

    @Test("a broker that refuses or blocks: the pass returns by the deadline, timers still fire, all is published once after")
    func refusingBroker() async throws {
        try await TestApp.run { app in
            let logs = CapturedLog()
            let broker = SwitchableBroker()
            let deadline = Duration.milliseconds(300)
            let dispatcher = TaskDispatcher(
                database: app.runtime.database, broker: broker, runs: app.runtime.runs, publishTimeout: deadline, logger: logs.logger)
            let beat = Self.beat(app, logs: logs, dispatcher: dispatcher)
            var expected: [String] = []

            broker.set(.refuse)
            expected.append(try await Self.timer(app, id: "refused", key: "r", in: 1).id)
            app.clock.advance(by: 1)
            var pass = try await beat.pass()
            #expect(pass.timersFired == 1 && pass.published == 0 && pass.failed == [.outbox])

            broker.set(.block)
            for index in 0..<3 {
                expected.append(try await Self.timer(app, id: "blocked-\(index)", key: "b", in: 1).id)
                app.clock.advance(by: 1)
                let started = ContinuousClock.now
                pass = try await beat.pass()
                let took = ContinuousClock.now - started
                // A blocked publish would hold the pass forever; the margin is for a machine the whole suite shares.
                #expect(took < deadline + .seconds(5), "the pass gave up at the publish deadline (took \(took))")
                #expect(pass.timersFired == 1 && pass.failed == [.outbox])
            }
            // An enqueue staged for its caller to publish: the caller is not held past the deadline either.
            let message = TaskMessage(name: "core.noop", queue: "default", enqueuedAt: app.clock.now())
            expected.append(message.id)
            let staged = try await app.runtime.database.transaction { sql in try await dispatcher.stage(message, at: app.clock.now(), sql) }
            let started = ContinuousClock.now
            await dispatcher.publishStaged(staged)
            #expect(ContinuousClock.now - started < deadline + .seconds(2))
            #expect(try await dispatcher.outboxCount() == expected.count, "everything waits in the outbox")
            #expect(broker.published.isEmpty)

            // The blocked publishes end (failing) once the broker takes messages again; then the flush goes through.
            broker.set(.accept)
            let flushed = Mutex(0)
            let recovered = try await eventually(10) {
                let pass = try await beat.pass()
                flushed.withLock { $0 += pass.published }
                let waiting = try await dispatcher.outboxCount()
                return pass.failed.isEmpty && waiting == 0
            }
            #expect(recovered)
            #expect(flushed.withLock { $0 } == expected.count)
            #expect(broker.published.sorted() == expected.sorted(), "each staged message published once")
            #expect(logs.warnings.filter { $0.contains("broker blocked or unavailable") }.count == 1, "\(logs.warnings)")
            #expect(logs.errors.isEmpty, "\(logs.errors)")
            #expect(logs.lines(at: .info).contains { $0.message.contains("outbox resumes") })
        }
    }

    @Test("a running beat keeps firing timers on time while the broker blocks, and publishes them once when it is back")
    func runningBeatWithBlockedBroker() async throws {
        try await TestApp.run(realClock: true) { app in
            let logs = CapturedLog()
            let broker = SwitchableBroker()
            broker.set(.block)
            let dispatcher = TaskDispatcher(
                database: app.runtime.database, broker: broker, runs: app.runtime.runs, publishTimeout: .milliseconds(200),
                logger: logs.logger)
            var options = BeatOptions()
            options.pollInterval = .milliseconds(100)
            options.retryInterval = .milliseconds(100)
            options.longestBrokerRetry = .milliseconds(300)
            let database = app.runtime.database
            let beat = Beat(
                database: database, schedules: ScheduleStore(database: database), timers: app.runtime.timers, dispatcher: dispatcher,
                wakeup: app.runtime.wakeup, clock: SystemTimeSource(), logger: logs.logger, options: options)
            let running = Task { try await beat.run() }
            defer { running.cancel() }
            var ids: [String] = []
            for index in 0..<5 {
                let message = TaskMessage(name: "core.noop", queue: "default", enqueuedAt: Date())
                ids.append(message.id)
                try await app.runtime.timers.upsert(
                    DurableTimer(dueAt: Date().addingTimeInterval(0.2 * Double(index)), message: message), at: Date())
            }
            let fired = ids
            #expect(try await eventually(10) {
                for id in fired where try await app.runtime.runs.find(id: id) == nil { return false }
                return true
            }, "every timer fired while the broker blocked")
            #expect(broker.published.isEmpty)
            broker.set(.accept)
            #expect(try await eventually(10) { try await dispatcher.outboxCount() == 0 }, "published once the broker is back")
            running.cancel()
            _ = try? await running.value
            #expect(broker.published.sorted() == ids.sorted(), "each published once")
            #expect(logs.warnings.filter { $0.contains("broker blocked or unavailable") }.count == 1, "\(logs.warnings)")
            #expect(logs.errors.isEmpty, "\(logs.errors)")
        }
    }

    @Test("messages staged by a caller are published once, by the caller or, if it died, by the beat")
    func stagedByCaller() async throws {
        try await TestApp.run { app in
            let logs = CapturedLog()
            let broker = SwitchableBroker()
            let dispatcher = TaskDispatcher(database: app.runtime.database, broker: broker, runs: app.runtime.runs, logger: logs.logger)
            let beat = Self.beat(app, logs: logs, dispatcher: dispatcher)
            func stage(_ count: Int) async throws -> ([String], StagedMessages) {
                let messages = (0..<count).map { _ in TaskMessage(name: "core.noop", queue: "default", enqueuedAt: app.clock.now()) }
                let staged = try await app.runtime.database.transaction { sql in
                    try await dispatcher.stage(messages.map { QueuedRun(message: $0) }, at: app.clock.now(), sql)
                }
                return (messages.map(\.id), staged)
            }
            let (published, staged) = try await stage(5)
            #expect(staged.count == 5)
            await dispatcher.publishStaged(staged, at: app.clock.now())
            #expect(broker.published.sorted() == published.sorted())
            #expect(try await beat.pass().published == 0, "nothing left for the beat")

            // The beat's flush got there first (as when the caller died before publishing): the caller publishes nothing.
            let (flushed, late) = try await stage(3)
            // Staged rows are claimed for their caller; the beat takes them over once that claim has run out.
            #expect(try await beat.pass().published == 0)
            app.clock.advance(by: 61)
            #expect(try await beat.pass().published == 3)
            await dispatcher.publishStaged(late, at: app.clock.now())
            #expect(broker.published.sorted() == (published + flushed).sorted(), "each message published once")
            #expect(try await dispatcher.outboxCount() == 0)
            #expect(logs.errors.isEmpty && logs.warnings.isEmpty, "\(logs.errors) \(logs.warnings)")
        }
    }
}

extension RabbitMQTests {
    /// Nested in the RabbitMQ suite, which runs its tests one at a time: the alarm blocks every publisher on the shared
    /// node, and that suite restarts it.
    @Suite("Beat and a blocked RabbitMQ")
    struct BeatAlarm {}
}

extension RabbitMQTests.BeatAlarm {
    @Test("a memory alarm blocks publishing: the beat neither hangs nor holds a transaction, and publishes after it clears")
    func memoryAlarm() async throws {
        let url = try RabbitMQTests.url()
        try await TestApp.run(realClock: true) { app in
            let logs = CapturedLog()
            let broker = try RabbitMQBroker(url: url, runs: app.runtime.runs, logger: TestDatabase.logger)
            defer { broker.shutdown() }
            let queue = "alarm-\(UUID().uuidString.prefix(8).lowercased())"
            let deadline = Duration.seconds(1)
            let dispatcher = TaskDispatcher(
                database: app.runtime.database, broker: broker, runs: app.runtime.runs, publishTimeout: deadline, logger: logs.logger)
            let database = app.runtime.database
            let beat = Beat(
                database: database, schedules: ScheduleStore(database: database), timers: app.runtime.timers, dispatcher: dispatcher,
                wakeup: app.runtime.wakeup, clock: SystemTimeSource(), logger: logs.logger)
            // Connected and declared before the alarm, as a running beat would be.
            let warmUp = TaskMessage(name: "core.noop", queue: queue, enqueuedAt: Date())
            try await app.runtime.timers.upsert(DurableTimer(dueAt: Date(), message: warmUp), at: Date())
            #expect(try await eventually(20) {
                try await beat.pass()
                return try await dispatcher.outboxCount() == 0
            }, "published before the alarm")

            let staged = Mutex<[String]>([warmUp.id])
            // Whether each pass's outbox flush failed, in order: another test may toggle the shared node's alarm too,
            // so the log is checked against the outages seen, not a fixed count.
            let outboxFailed = Mutex<[Bool]>([])
            @Sendable func fireOne() async throws -> (BeatPass, Duration) {
                let message = TaskMessage(name: "core.noop", queue: queue, enqueuedAt: Date())
                staged.withLock { $0.append(message.id) }
                try await app.runtime.timers.upsert(DurableTimer(dueAt: Date(), message: message), at: Date())
                let started = ContinuousClock.now
                let pass = try await beat.pass()
                outboxFailed.withLock { $0.append(pass.failed.contains(.outbox)) }
                return (pass, ContinuousClock.now - started)
            }
            try rabbitmqctl("set_vm_memory_high_watermark 0")
            do {
                defer { try? rabbitmqctl("set_vm_memory_high_watermark 0.4") }
                // The alarm takes effect when the node next checks its memory.
                #expect(try await eventually(20) { try await fireOne().0.failed.contains(.outbox) }, "publishing blocked")
                for _ in 0..<3 {
                    let (pass, took) = try await fireOne()
                    #expect(pass.timersFired == 1 && pass.failed.isSubset(of: [.outbox]), "timers fire while the broker blocks: \(pass)")
                    #expect(took < deadline + .seconds(3), "the pass gave up at the publish deadline (took \(took))")
                }
                #expect(try await Self.openTransactions(database) == 0, "no transaction stays open while the broker blocks")
                // On SQLite a transaction left open would hold the one connection: a write must go through at once.
                let written = Task { try await app.runtime.timers.upsert(DurableTimer(dueAt: Date().addingTimeInterval(3600), message: warmUp), at: Date()) }
                #expect(try await eventually(3) { try await app.runtime.timers.count() == 1 })
                _ = try await written.value
            }
            let published = try await eventually(60) {
                let pass = try await beat.pass()
                outboxFailed.withLock { $0.append(pass.failed.contains(.outbox)) }
                return try await dispatcher.outboxCount() == 0
            }
            #expect(published, "the outbox emptied after the alarm cleared")
            let passes = outboxFailed.withLock { $0 }
            let outages = zip([false] + passes, passes).filter { !$0 && $1 }.count
            let warned = logs.warnings.filter { $0.contains("broker blocked or unavailable") }.count
            #expect(passes.filter { $0 }.count > outages, "some outage lasted several passes")
            #expect(warned >= 1 && warned <= outages, "one warning per outage, not per pass: \(warned) for \(outages): \(logs.warnings)")
            let expected = Set(staged.withLock { $0 })
            var delivered: Set<String> = []
            let until = ContinuousClock.now + .seconds(20)
            while !expected.isSubset(of: delivered), ContinuousClock.now < until {
                let claimed = try await broker.claim(queues: [queue], limit: 10, workerID: "alarm-test", leaseUntil: Date().addingTimeInterval(60))
                delivered.formUnion(claimed.map(\.message.id))
                try await broker.acknowledge(claimed)
            }
            #expect(expected.isSubset(of: delivered), "every message staged during the alarm arrived")
            #expect(logs.errors.isEmpty, "\(logs.errors)")
        }
    }

    /// Transactions left open on the test database (PostgreSQL); 0 on SQLite, where the write above checks instead.
    static func openTransactions(_ database: Database) async throws -> Int {
        guard database.engine == .postgres else { return 0 }
        return try await database.withSQL { sql in
            try await sql.raw(
                "SELECT COUNT(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'"
            ).first()?.decode(column: "n", as: Int.self) ?? 0
        }
    }
}

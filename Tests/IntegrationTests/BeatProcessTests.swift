// Two real `integrator beat` processes on one database: one leads, the leader is SIGKILLed, the other takes over,
// and no fire time is published twice or lost.
import Foundation
import IntegratorCore
import Testing

@Suite("Beat processes", .serialized)
struct BeatProcessTests {
    /// A beat process whose log goes to a file the test reads.
    struct BeatProcess {
        let process: Process
        let log: URL

        var logText: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

        static func start(
            name: String, database: String, key: String, in directory: URL, arguments: [String] = []
        ) throws -> BeatProcess {
            let log = directory.appendingPathComponent("\(name).log")
            _ = FileManager.default.createFile(atPath: log.path, contents: nil)
            let process = Process()
            process.executableURL = CLITests.binary
            process.arguments = ["beat"] + arguments
            process.currentDirectoryURL = directory
            process.environment = [
                "PATH": "/usr/bin:/bin", "HOME": directory.path, "INTEGRATOR_DATABASE_URL": database,
                "INTEGRATOR_SECRET_KEY": key, "LOG_LEVEL": "info",
            ]
            let handle = try FileHandle(forWritingTo: log)
            process.standardOutput = handle
            process.standardError = handle
            try process.run()
            return BeatProcess(process: process, log: log)
        }
    }

    /// How long both beats run before the leader is killed; raise it for a soak run.
    static let soakSeconds = Double(ProcessInfo.processInfo.environment["INTEGRATOR_BEAT_SOAK_SECONDS"] ?? "") ?? 5

    @Test("SIGKILL the leading beat: the standby leads within 10 s; each fire time and timer is published exactly once")
    func failover() async throws {
        let directory = try CLITests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try await TestApp.run(realClock: true) { app in
            let created = try await app.call(
                .post, "/api/v1/schedules",
                body: ["name": "tick", "task": "core.noop", "interval": ["every": 1], "overlap": "allow", "misfire": "run_all"])
            let scheduleID = try #require(created.json["id"]?.stringValue)
            let start = Date()
            let timerCount = 300
            let timerSpan = Self.soakSeconds + 12
            for index in 0..<timerCount {
                let due = start.addingTimeInterval(timerSpan * Double(index) / Double(timerCount))
                try await app.runtime.timers.upsert(
                    DurableTimer(id: "t-\(index)", dueAt: due, message: TaskMessage(name: "core.noop", queue: "timers", enqueuedAt: start)),
                    at: start)
            }
            let database = CLITests.url(for: app.runtime.database.location)
            let key = SecretKeyRing.generateEncodedKey()
            let first = try BeatProcess.start(name: "first", database: database, key: key, in: directory)
            defer { if first.process.isRunning { first.process.terminate() } }
            #expect(try await eventually(30) { first.logText.contains("this beat leads") }, "\(first.logText)")
            // A long poll, so on PostgreSQL only NOTIFY can make the timers below fire on time.
            let second = try BeatProcess.start(
                name: "second", database: database, key: key, in: directory, arguments: ["--poll-interval", "30"])
            defer { if second.process.isRunning { second.process.terminate() } }
            #expect(try await eventually(30) { second.logText.contains("another beat leads") }, "\(second.logText)")

            try await Task.sleep(for: .seconds(Self.soakSeconds))
            kill(first.process.processIdentifier, SIGKILL)
            first.process.waitUntilExit()
            let killedAt = ContinuousClock.now
            #expect(try await eventually(10) { second.logText.contains("this beat leads") }, "\(second.logText)")
            let takeover = ContinuousClock.now - killedAt
            #expect(takeover < .seconds(10), "took over after \(takeover)")

            let timersDone = try await eventually(timerSpan + 10) {
                try await app.runtime.runs.count(state: .queued, queue: "timers") == timerCount
            }
            #expect(timersDone)
            #expect(try await app.runtime.timers.count() == 0)
            if app.runtime.database.engine == .postgres {
                // Created in this process while the beat process sleeps: NOTIFY wakes it.
                for index in 0..<3 {
                    let due = Date().addingTimeInterval(0.3)
                    let message = TaskMessage(name: "core.noop", queue: "notify", enqueuedAt: Date())
                    try await app.runtime.timers.upsert(DurableTimer(id: "n-\(index)", dueAt: due, message: message), at: Date())
                    #expect(try await eventually(5) { try await app.runtime.runs.find(id: message.id) != nil })
                    let fired = try #require(try await app.runtime.runs.find(id: message.id)).enqueuedAt
                    #expect(fired.timeIntervalSince(due) < 3, "fired \(fired.timeIntervalSince(due)) s after due, not at the 30 s poll")
                }
            }
            try await Task.sleep(for: .seconds(2))
            second.process.terminate()
            second.process.waitUntilExit()
            #expect(second.process.terminationStatus == 0, "\(second.logText)")

            var fireTimes: [Date] = []
            var page = PageRequest(limit: 500)
            while true {
                let listed = try await app.runtime.runs.list(TaskRunFilter(scheduleID: scheduleID), page: page)
                fireTimes += listed.items.compactMap(\.scheduledFor)
                guard let cursor = listed.nextCursor, let after = PageRequest.decodeCursor(cursor) else { break }
                page.after = after
            }
            fireTimes.sort()
            #expect(Set(fireTimes).count == fireTimes.count, "no fire time recorded twice")
            // Counted apart from the runs, whose unique index would hide a second fire: the messages published, and
            // the fires a beat attempted for a time that already had its run.
            let published = try await app.runtime.database.withSQL { sql in
                try await sql.raw("SELECT COUNT(*) AS n FROM task_queue WHERE schedule_id = \(bind: scheduleID)").first()?
                    .decode(column: "n", as: Int.self) ?? 0
            }
            #expect(published == fireTimes.count, "one message per fire time")
            let timerMessages = try await app.runtime.database.withSQL { sql in
                try await sql.raw("SELECT COUNT(*) AS n FROM task_queue WHERE queue = 'timers'").first()?.decode(column: "n", as: Int.self) ?? 0
            }
            #expect(timerMessages == timerCount, "one message per timer")
            for beat in [first, second] {
                let lines = beat.logText.split(separator: "\n")
                #expect(!lines.contains { $0.contains(" error ") || $0.contains("already had its run") }, "\(beat.logText)")
            }
            let steps = zip(fireTimes, fireTimes.dropFirst()).map { $1.timeIntervalSince($0) }
            #expect(steps.allSatisfy { abs($0 - 1) < 0.001 }, "run_all: every second from the first fire to the last, none lost in the gap")
            #expect(fireTimes.count >= Int(Self.soakSeconds) + 8, "\(fireTimes.count) fire times")
        }
    }
}

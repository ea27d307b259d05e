// A fleet without a beat stalls silently unless someone says so: /ready reports a missing beat, and a worker warns
// once a minute while timers are due with no beat to fire them.
import Foundation
@testable import IntegratorCore
import Testing

@Suite("No silent stalls")
struct BeatStallTests {
    @Test("/ready says the beat is missing until one leads, and again 30 s after it stopped")
    func readyReportsTheBeat() async throws {
        try await TestApp.run { app in
            let before = try await app.call(.get, "/ready", token: "")
            #expect(before.status == .ok, "the API itself is ready without a beat")
            #expect(before.json["beat"] == "missing")
            #expect(before.json["warnings"]?.arrayValue?.first?.stringValue?.contains("no beat has led ever") == true, "\(before.text)")

            let beat = app.runtime.makeBeat()
            let beating = Task { try await beat.run() }
            let leading = try await eventually { try await app.call(.get, "/ready", token: "").json["beat"] == "leading" }
            #expect(leading)
            #expect(try await app.call(.get, "/ready", token: "").json["warnings"] == nil)
            beating.cancel()
            _ = try? await beating.value

            // Its last report is 31 s old by the runtime's clock.
            app.clock.advance(by: 31)
            let after = try await app.call(.get, "/ready", token: "")
            #expect(after.json["beat"] == "missing")
            #expect(after.json["warnings"]?.arrayValue?.first?.stringValue?.contains("(31 s)") == true, "\(after.text)")
        }
    }

    @Test("a worker warns once a minute while a timer is overdue and no beat reports, and not when one does")
    func workerWarnsOfStalledTimers() async throws {
        try await TestApp.run { app in
            let log = CapturedLog()
            var options = WorkerOptions(queues: ["stall-check"], concurrency: 1)
            options.heartbeatInterval = .milliseconds(20)
            let worker = Worker(
                options: options, broker: app.runtime.broker, runs: app.runtime.runs, registry: app.runtime.registry,
                timers: app.runtime.timers, environment: app.runtime.environment, clock: app.clock, logger: log.logger)
            let running = Task { try await worker.run() }
            defer { running.cancel() }
            // The minute counts from the heartbeat loop's start: wait for its first report before moving the clock.
            #expect(try await eventually { try await app.runtime.runs.liveWorkers(since: .distantPast).contains { $0.id == worker.id } })
            let retry = TaskMessage(name: "core.noop", arguments: [:], queue: "stall-check", enqueuedAt: app.clock.now())
            try await app.runtime.timers.upsert(DurableTimer(id: "stalled", dueAt: app.clock.now(), message: retry), at: app.clock.now())
            @Sendable func stallWarnings() -> [String] { log.warnings.filter { $0.contains("nothing fires them") } }

            // Under a minute since the worker started: no check yet.
            app.clock.advance(by: 40)
            try await Task.sleep(for: .milliseconds(200))
            #expect(stallWarnings().isEmpty)

            app.clock.advance(by: 21)
            #expect(try await eventually(10) { stallWarnings().count == 1 })
            #expect(stallWarnings().first?.contains("timers.overdue_s") == true, "\(stallWarnings())")
            try await Task.sleep(for: .milliseconds(200))
            #expect(stallWarnings().count == 1, "once a minute, not once a heartbeat")

            // A beat reporting now: the next minute's check stays quiet.
            try await BeatStatusStore(database: app.runtime.database).report(holder: "test-beat", since: app.clock.now(), at: app.clock.now().addingTimeInterval(61))
            app.clock.advance(by: 61)
            // Heartbeats come every 20 ms; a few of them have made the check by now.
            try await Task.sleep(for: .milliseconds(300))
            #expect(stallWarnings().count == 1)
            running.cancel()
            _ = try? await running.value
        }
    }
}

// Webhook deliveries by real `integrator worker` processes: one is killed with SIGKILL part-way through 2,000 events,
// a second one finishes, and every event reaches the receiver at least once and ends succeeded.
import Crypto
import Foundation
import IntegratorCore
import Testing

@Suite("Webhooks worker processes", .serialized)
struct WebhooksProcessTests {
    static let concurrency = 16

    /// Starts `integrator worker` on the test's database, with the test runtime's secret key (the tenant's secret is
    /// encrypted with it) and loopback allowed for outbound requests (the receiver is on 127.0.0.1).
    static func startWorker(database: String, secretKey: String, in directory: URL, withBeat: Bool = false) throws -> Process {
        let process = Process()
        process.executableURL = CLITests.binary
        process.arguments = ["worker", "--queues", "default", "--concurrency", "\(concurrency)", "--lease", "5"] + (withBeat ? ["--beat"] : [])
        process.currentDirectoryURL = directory
        process.environment = [
            "PATH": "/usr/bin:/bin", "HOME": directory.path, "INTEGRATOR_DATABASE_URL": database, "INTEGRATOR_BROKER_URL": "sql",
            "INTEGRATOR_SECRET_KEY": secretKey, "INTEGRATOR_OUTBOUND_ALLOW_CIDRS": "127.0.0.0/8", "LOG_LEVEL": "warning",
        ]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        return process
    }

    @Test("2,000 sends, a worker SIGKILLed part-way and replaced: every event reaches the receiver and ends succeeded")
    func killedWorker() async throws {
        let directory = try CLITests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let total = 2_000
        let receiver = WebhookReceiver()
        // The first request of every 25th event fails, so some deliveries wait on retry timers that the beat fires.
        receiver.script(
            WebhookReceiver.Script { hit, attempt in
                attempt == 1 && (hit.json["payload"]?["i"]?.intValue ?? 1) % 25 == 0 ? .status(500) : .ok
            })
        try await receiver.run { baseURL in
            try await TestApp.run(realClock: true) { app in
                let keyRing = try #require(app.runtime.settings.secretKeys)
                let secretKey = keyRing.current.key.withUnsafeBytes { Data($0) }.base64EncodedString()
                let secret = "kill-secret-0001"
                try await WebhooksTests.configure(
                    app, "bulk", url: "\(baseURL)/bulk", secret: secret,
                    [
                        "retry_policy": [
                            "max_retries": 10, "initial_delay_seconds": 0.05, "backoff_multiplier": 2.0, "max_delay_seconds": 0.5,
                            "jitter": false,
                        ]
                    ])
                let ids = try await withThrowingTaskGroup(of: [String].self) { group in
                    for sender in 0..<8 {
                        group.addTask {
                            var ids: [String] = []
                            for index in stride(from: sender, to: total, by: 8) {
                                ids.append(try await WebhooksTests.send(app, "bulk", "bulk.item", payload: ["i": .number(Double(index))]))
                            }
                            return ids
                        }
                    }
                    return try await group.reduce(into: []) { $0 += $1 }
                }
                #expect(Set(ids).count == total)

                // Retries are timers; the beat that fires them runs here, beside the worker processes.
                let beat = app.runtime.makeBeat()
                let beating = Task { try await beat.run() }
                defer { beating.cancel() }
                let databaseURL = CLITests.url(for: app.runtime.database.location)
                let first = try Self.startWorker(database: databaseURL, secretKey: secretKey, in: directory)
                let quarter = try await eventually(120) { receiver.distinctEventIDs.count >= total / 4 }
                #expect(quarter)
                kill(first.processIdentifier, SIGKILL)
                first.waitUntilExit()
                #expect(first.terminationReason == .uncaughtSignal)
                let reachedAtKill = receiver.distinctEventIDs.count
                #expect(reachedAtKill < total, "the kill came after the last delivery and shows nothing")

                let second = try Self.startWorker(database: databaseURL, secretKey: secretKey, in: directory)
                defer {
                    if second.isRunning { second.terminate() }
                    second.waitUntilExit()
                }
                let everything = try await eventually(300) {
                    guard receiver.distinctEventIDs.count == total else { return false }
                    return try await WebhooksTests.metrics(app, "bulk")["successful_events"] == .number(Double(total))
                }
                #expect(everything)
                second.terminate()
                second.waitUntilExit()
                #expect(second.terminationStatus == 0)
                beating.cancel()
                _ = try? await beating.value

                #expect(receiver.distinctEventIDs == Set(ids), "every event reached the receiver, and only those")
                let metrics = try await WebhooksTests.metrics(app, "bulk")
                #expect(metrics["total_events"] == .number(Double(total)))
                #expect(metrics["successful_events"] == .number(Double(total)))
                #expect(metrics["failed_events"] == 0)
                #expect(metrics["pending_retries"] == 0)
                #expect(metrics["dead_letter_count"] == 0)

                // Requests beyond those the script asked for (a scripted failure and its retry) come only from
                // deliveries the killed worker had in flight.
                var perEvent: [String: [WebhookReceiver.Hit]] = [:]
                for hit in receiver.hits { perEvent[hit.eventID ?? "", default: []].append(hit) }
                let scripted = Set(
                    perEvent.filter { $0.value.first?.json["payload"]?["i"]?.intValue.map { $0 % 25 == 0 } == true }.keys)
                #expect(scripted.count == total / 25)
                let repeated = perEvent.filter { $0.value.count > (scripted.contains($0.key) ? 2 : 1) }
                #expect(repeated.count <= Self.concurrency, "\(repeated.count) events were sent more often than scripted")
                for (id, hits) in repeated {
                    #expect(Set(hits.compactMap { $0.header("webhook-id") }) == [id])
                    #expect(Set(hits.map(\.body)).count == 1)
                    #expect(try await WebhooksTests.delivery(app, id)?["state"] == "succeeded")
                }
                // Each scripted failure was retried and then succeeded. Its failed attempt is on record unless the kill
                // fell between that request and its outcome (then the receiver's 500 was never recorded).
                var recordedFailures = 0
                for id in scripted {
                    let delivery = try await WebhooksTests.delivery(app, id)
                    let statuses = delivery?["attempts"]?.arrayValue?.map { $0["status_code"]?.intValue ?? 0 } ?? []
                    #expect(delivery?["state"] == "succeeded", "\(id): \(statuses)")
                    #expect(statuses.last == 200, "\(id): \(statuses)")
                    if statuses.first == 500 { recordedFailures += 1 }
                }
                #expect(recordedFailures >= scripted.count - Self.concurrency, "\(recordedFailures) of \(scripted.count) failures recorded")
                let sample = try #require(receiver.hits.first)
                #expect(WebhookSignatures.seedMatches(sample, secrets: [secret]) == [secret])
            }
        }
    }

    @Test("integrator worker --beat: with no other beat anywhere, a failed delivery's retry timer fires and the event arrives")
    func workerWithBeat() async throws {
        let directory = try CLITests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let receiver = WebhookReceiver()
        receiver.script(.failing(2, with: .status(503)))
        try await receiver.run { baseURL in
            try await TestApp.run(realClock: true) { app in
                let keyRing = try #require(app.runtime.settings.secretKeys)
                let secretKey = keyRing.current.key.withUnsafeBytes { Data($0) }.base64EncodedString()
                try await WebhooksTests.configure(app, "lonely", url: "\(baseURL)/lonely", ["retry_policy": WebhooksTests.quickRetries()])
                let id = try await WebhooksTests.send(app, "lonely")
                let worker = try Self.startWorker(
                    database: CLITests.url(for: app.runtime.database.location), secretKey: secretKey, in: directory, withBeat: true)
                defer {
                    if worker.isRunning { worker.terminate() }
                    worker.waitUntilExit()
                }
                #expect(try await receiver.waitForHits(event: id, count: 3, upTo: 60), "two failures, then the retry that succeeds")
                #expect(try await WebhooksTests.waitForState(app, id, "succeeded", attempts: 3))
                worker.terminate()
                worker.waitUntilExit()
                #expect(worker.terminationStatus == 0)
                #expect(receiver.hits(event: id).count == 3)
            }
        }
    }
}

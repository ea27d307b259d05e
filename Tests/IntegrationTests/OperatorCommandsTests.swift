// `integrator status`, `integrator tasks retry|revoke`, `integrator queues purge` and `integrator backup` as an operator
// runs them, against the test's database (SQLite or PostgreSQL) and, for status and purge, both brokers.
import Foundation
@testable import IntegratorCore
import Testing

@Suite("Operator commands", .serialized)
struct OperatorCommandsTests {
    /// What an operator's shell has: the fleet's environment file (these commands read no secret, but share its key).
    static func environment(_ app: TestApp, broker: String = "sql") -> [String: String] {
        [
            "INTEGRATOR_DATABASE_URL": CLITests.url(for: app.runtime.database.location), "INTEGRATOR_BROKER_URL": broker,
            "INTEGRATOR_SECRET_KEY": SecretKeyRing.generateEncodedKey(), "LOG_LEVEL": "error",
        ]
    }

    func statusShowsTheFleet(broker: String, publish: @escaping @Sendable (TestApp, [TaskMessage]) async throws -> Void) async throws {
        let directory = try CLITests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try await TestApp.run(realClock: true) { app in
            let queue = "status-\(UUID().uuidString.prefix(8).lowercased())"
            let bare = try CLITests.run(["status"], environment: Self.environment(app, broker: broker), in: directory)
            #expect(bare.status == 0, "\(bare.stderr)")
            #expect(bare.stdout.contains("beat: MISSING — no beat has led ever"), "\(bare.stdout)")
            #expect(bare.stdout.contains("no live workers"))

            // Three tasks waiting on a queue, a worker that consumes it reporting (busy elsewhere), and a beat leading.
            try await publish(app, (0..<3).map { TaskMessage(name: "core.noop", arguments: ["i": .number(Double($0))], queue: queue, enqueuedAt: Date()) })
            try await app.runtime.runs.heartbeat(
                WorkerInfo(id: "worker-a", host: "host-a", queues: [queue], concurrency: 64, busy: 5, startedAt: Date(), lastSeen: Date()))
            try await BeatStatusStore(database: app.runtime.database).report(holder: "beat-a", since: Date(), at: Date())

            let shown = try CLITests.run(["status", "--json"], environment: Self.environment(app, broker: broker), in: directory)
            #expect(shown.status == 0, "\(shown.stderr)")
            let status = try JSONValue.parse(shown.stdout)
            #expect(status["beat"]?["state"] == "leading" && status["beat"]?["leader"] == "beat-a")
            #expect(status["warnings"] == [])
            let row = status["queues"]?.arrayValue?.first { $0["queue"]?.stringValue == queue }
            #expect(row?["ready"] == 3 && row?["in_flight"] == 0 && row?["dead"] == 0, "\(shown.stdout)")
            let worker = status["workers"]?.arrayValue?.first { $0["id"] == "worker-a" }
            #expect(worker?["slots"] == 64 && worker?["busy"] == 5 && worker?["host"] == "host-a")
            #expect((worker?["heartbeat_age_s"]?.doubleValue ?? 99) < 30)

            let table = try CLITests.run(["status"], environment: Self.environment(app, broker: broker), in: directory)
            #expect(table.stdout.contains("beat: beat-a leads since"))
            #expect(table.stdout.split(separator: "\n").contains { $0.hasPrefix(queue) && $0.contains("3") }, "\(table.stdout)")
        }
    }

    @Test("status on the SQL queue: beat missing, then leading; queue depths; workers with slots, busy and heartbeat age")
    func statusOnSQL() async throws {
        try await statusShowsTheFleet(broker: "sql") { app, messages in
            for message in messages { try await app.runtime.broker.publish(message) }
        }
    }

    @Test("status on RabbitMQ: queue depths come from the broker")
    func statusOnRabbitMQ() async throws {
        let url = try RabbitMQTests.url()
        try await statusShowsTheFleet(broker: url.reveal()) { app, messages in
            let broker = try RabbitMQBroker(url: url, runs: app.runtime.runs, logger: TestDatabase.logger)
            defer { broker.shutdown() }
            for message in messages { try await broker.publish(message) }
        }
    }

    @Test("tasks retry runs a dead task again as attempt 2; tasks revoke cancels it before it starts; bad ids are named")
    func retryAndRevoke() async throws {
        let directory = try CLITests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try await TestApp.run(realClock: true) { app in
            let unknown = TaskMessage(name: "nobody.handles.this", arguments: [:], queue: "default", enqueuedAt: Date())
            try await app.runtime.runs.recordQueued(unknown, at: Date())
            try await app.runtime.broker.publish(unknown)
            try await withWorker(app, WorkerOptions(queues: ["default"], concurrency: 2)) { _ in
                let dead = try await eventually { try await app.runtime.runs.find(id: unknown.id)?.state == .dead }
                #expect(dead)
            }
            let environment = Self.environment(app)
            let retried = try CLITests.run(["tasks", "retry", unknown.id], environment: environment, in: directory)
            #expect(retried.status == 0, "\(retried.stderr)")
            #expect(retried.stdout.contains("attempt 2"))
            let queued = try await app.runtime.runs.find(id: unknown.id)
            #expect(queued?.state == .queued && queued?.attempt == 2)

            let again = try CLITests.run(["tasks", "retry", unknown.id], environment: environment, in: directory)
            #expect(again.status != 0 && again.stderr.contains("only failed or dead tasks can be retried"), "\(again.stderr)")

            let revoked = try CLITests.run(["tasks", "revoke", unknown.id], environment: environment, in: directory)
            #expect(revoked.status == 0, "\(revoked.stderr)")
            #expect(try await app.runtime.runs.find(id: unknown.id)?.state == .revoked)
            #expect(try await app.runtime.broker.stats().first { $0.queue == "default" }?.ready ?? 0 == 0, "its message is gone")

            let missing = try CLITests.run(["tasks", "revoke", "no-such-task"], environment: environment, in: directory)
            #expect(missing.status != 0 && missing.stderr.contains("no-such-task"), "\(missing.stderr)")
        }
    }

    /// Four waiting tasks on a fresh queue, one more whose retry waits on a timer, and a plugin's future timer on the
    /// same queue, which is not a waiting task and must survive.
    static func fillQueue(_ app: TestApp, _ queue: String, publish: (TaskMessage) async throws -> Void) async throws -> [TaskMessage] {
        let now = Date()
        let waiting = (0..<4).map { TaskMessage(name: "core.noop", arguments: ["i": .number(Double($0))], queue: queue, enqueuedAt: now) }
        for message in waiting {
            try await app.runtime.runs.recordQueued(message, at: now)
            try await publish(message)
        }
        let retrying = TaskMessage(name: "core.noop", arguments: [:], queue: queue, attempt: 2, enqueuedAt: now)
        try await app.runtime.runs.recordQueued(retrying, at: now)
        try await app.runtime.database.withSQL { sql in
            try await sql.raw("UPDATE task_runs SET state = 'retrying' WHERE id = \(bind: retrying.id)").run()
        }
        try await app.runtime.environment.timers.upsert(DurableTimer(id: "retry-\(queue)", dueAt: now + 3600, message: retrying), at: now)
        let future = TaskMessage(name: "core.noop", arguments: [:], queue: queue, enqueuedAt: now)
        try await app.runtime.environment.timers.upsert(DurableTimer(id: "future-\(queue)", dueAt: now + 3600, message: future), at: now)
        return waiting + [retrying]
    }

    /// Checks what purging `queue` through the command did: asked first, then every waiting run revoked and its
    /// messages gone, the unrelated timer kept; an unknown queue is named.
    static func purgeThroughCommand(
        _ app: TestApp, broker: String, queue: String, waiting: [TaskMessage], expectedMessages: Int, in directory: URL
    ) async throws {
        let environment = Self.environment(app, broker: broker)
        let asked = try CLITests.run(["queues", "purge", queue], environment: environment, in: directory)
        #expect(asked.status == 2 && asked.stderr.contains("4 ready") && asked.stderr.contains("--yes"), "\(asked.stderr)")
        let untouched = try await app.runtime.runs.find(id: waiting[0].id)?.state
        #expect(untouched == .queued, "without --yes nothing changes")

        let purged = try CLITests.run(["queues", "purge", queue, "--yes"], environment: environment, in: directory)
        #expect(purged.status == 0, "\(purged.stderr)")
        #expect(purged.stdout.contains("\(expectedMessages) messages dropped, 5 runs revoked"), "\(purged.stdout)")
        for message in waiting {
            let state = try await app.runtime.runs.find(id: message.id)?.state
            #expect(state == .revoked)
        }
        let timers = try await app.runtime.database.withSQL { sql in
            try await sql.raw("SELECT id FROM timers WHERE queue = \(bind: queue)").all().map { try $0.decode(column: "id", as: String.self) }
        }
        #expect(timers == ["future-\(queue)"], "the retry's timer is gone, the plugin's future timer stays")

        let unknown = try CLITests.run(["queues", "purge", "no-such-queue", "--yes"], environment: environment, in: directory)
        #expect(unknown.status != 0 && unknown.stderr.contains("no queue named 'no-such-queue'"), "\(unknown.stderr)")
    }

    @Test("queues purge on the SQL queue: asks first, drops waiting tasks and retry timers, keeps the task a worker holds")
    func purgeOnSQL() async throws {
        let directory = try CLITests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try await TestApp.run(realClock: true) { app in
            let broker = app.runtime.broker
            let queue = "purge-\(UUID().uuidString.prefix(8).lowercased())"
            // A worker holds a task of the queue: it is running, so it stays.
            let held = TaskMessage(name: "core.noop", arguments: [:], queue: queue, enqueuedAt: Date())
            try await app.runtime.runs.recordQueued(held, at: Date())
            try await broker.publish(held)
            let holds = try await broker.claim(queues: [queue], limit: 1, workerID: "holder", leaseUntil: Date() + 600)
            #expect(holds.map(\.message.id) == [held.id])
            let waiting = try await Self.fillQueue(app, queue) { try await broker.publish($0) }

            try await Self.purgeThroughCommand(app, broker: "sql", queue: queue, waiting: waiting, expectedMessages: 4, in: directory)
            let heldState = try await app.runtime.runs.find(id: held.id)?.state
            #expect(heldState == .queued, "the task a worker holds is not revoked")
            let stats = try await broker.stats().first { $0.queue == queue }
            #expect(stats?.ready == 0 && stats?.inFlight == 1, "\(String(describing: stats))")
            #expect(try await broker.claim(queues: [queue], limit: 10, workerID: "other", leaseUntil: Date() + 600).isEmpty)
            try await broker.acknowledge(holds)
        }
    }

    @Test("queues purge on RabbitMQ: the queue is emptied and every waiting run revoked")
    func purgeOnRabbitMQ() async throws {
        let url = try RabbitMQTests.url()
        let directory = try CLITests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try await TestApp.run(realClock: true) { app in
            let broker = try RabbitMQBroker(url: url, runs: app.runtime.runs, logger: TestDatabase.logger)
            defer { broker.shutdown() }
            let queue = "purge-\(UUID().uuidString.prefix(8).lowercased())"
            let waiting = try await Self.fillQueue(app, queue) { try await broker.publish($0) }
            let before = try await broker.stats().first { $0.queue == queue }
            #expect(before?.ready == 4)
            try await Self.purgeThroughCommand(app, broker: url.reveal(), queue: queue, waiting: waiting, expectedMessages: 4, in: directory)
            let after = try await broker.stats().first { $0.queue == queue }
            #expect(after?.ready == 0, "\(String(describing: after))")
        }
    }

    @Test("backup copies the SQLite store while it is open; on PostgreSQL it points to pg_dump")
    func backup() async throws {
        let directory = try CLITests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try await TestApp.run { app in
            let target = directory.appendingPathComponent("copy.sqlite")
            let result = try CLITests.run(["backup", target.path], environment: Self.environment(app), in: directory)
            guard case .sqlite = app.runtime.database.location else {
                #expect(result.status == 2 && result.stderr.contains("pg_dump"), "\(result.stderr)")
                #expect(!FileManager.default.fileExists(atPath: target.path))
                return
            }
            #expect(result.status == 0, "\(result.stderr)")
            // The copy is a whole database: the admin the test app made is in it.
            let users = try await Database.withDatabase(.sqlite(path: target.path), logger: TestDatabase.logger) { copy in
                try await copy.withSQL { sql in
                    try await sql.raw("SELECT username FROM users").all().map { try $0.decode(column: "username", as: String.self) }
                }
            }
            #expect(users == ["admin"])
            let twice = try CLITests.run(["backup", target.path], environment: Self.environment(app), in: directory)
            #expect(twice.status != 0 && twice.stderr.contains("exists"), "an existing file is never overwritten")
        }
    }
}

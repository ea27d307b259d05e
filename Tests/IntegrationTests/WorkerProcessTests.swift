// Real `integrator worker` processes: one is killed with SIGKILL mid-run, another one finishes, and no task is lost or run
// twice except those the kill interrupted.
import Foundation
import IntegratorCore
import SQLKit
import Testing

@Suite("Worker processes", .serialized)
struct WorkerProcessTests {
    static let concurrency = 16

    /// Starts `integrator worker`; every `core.noop` it runs appends its task id to `executionLog`.
    static func startWorker(database: String, broker: String, queue: String, executionLog: URL, in directory: URL) throws -> Process {
        let process = Process()
        process.executableURL = CLITests.binary
        process.arguments = ["worker", "--queues", queue, "--concurrency", "\(concurrency)", "--lease", "5"]
        process.currentDirectoryURL = directory
        process.environment = [
            "PATH": "/usr/bin:/bin", "HOME": directory.path, "INTEGRATOR_DATABASE_URL": database, "INTEGRATOR_BROKER_URL": broker,
            "INTEGRATOR_SECRET_KEY": SecretKeyRing.generateEncodedKey(), "LOG_LEVEL": "warning",
            "INTEGRATOR_NOOP_EXECUTION_LOG": executionLog.path,
        ]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        return process
    }

    /// The task ids in the execution log, one per run, in order.
    static func executions(_ log: URL) throws -> [String] {
        guard FileManager.default.fileExists(atPath: log.path) else { return [] }
        return try String(contentsOf: log, encoding: .utf8).split(separator: "\n").map(String.init)
    }

    func killAndRecover(broker: @escaping @Sendable (TestApp) throws -> (url: String, instance: any Broker)) async throws {
        let directory = try CLITests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try await TestApp.run(realClock: true) { app in
            let (brokerURL, broker) = try broker(app)
            let queue = "kill-\(UUID().uuidString.prefix(8).lowercased())"
            let total = 10_000
            let tasks = TasksService(broker: broker, runs: app.runtime.runs, registry: app.runtime.registry, clock: SystemTimeSource())
            let ids = try await withThrowingTaskGroup(of: [String].self) { group in
                for publisher in 0..<8 {
                    group.addTask {
                        var ids: [String] = []
                        for index in stride(from: publisher, to: total, by: 8) {
                            ids.append(
                                try await tasks.enqueue(
                                    TaskMessage(
                                        name: "core.noop", arguments: ["i": .number(Double(index))], queue: queue, priority: index % 10,
                                        enqueuedAt: Date())
                                ).id)
                        }
                        return ids
                    }
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }
            #expect(Set(ids).count == total)
            // With RabbitMQ, what the broker did not take at once (another suite may hold an alarm on the shared node)
            // waits in the outbox; the beat would publish it, and here the test does, as the beat's flush does.
            let outbox = TaskDispatcher(database: app.runtime.database, broker: broker, runs: app.runtime.runs)
            let published = try await eventually(120) {
                _ = try? await outbox.flushOutbox()
                return try await outbox.outboxCount() == 0
            }
            #expect(published)
            let executionLog = directory.appendingPathComponent("executions.log")
            let databaseURL = CLITests.url(for: app.runtime.database.location)
            let first = try Self.startWorker(
                database: databaseURL, broker: brokerURL, queue: queue, executionLog: executionLog, in: directory)
            let halfway = try await eventually(120) { try await app.runtime.runs.count(state: .succeeded, queue: queue) >= total / 4 }
            #expect(halfway)
            kill(first.processIdentifier, SIGKILL)
            first.waitUntilExit()
            #expect(first.terminationReason == .uncaughtSignal)
            // A COMMIT the worker sent just before it died is still carried out by its server process; let that land
            // before reading what the worker had settled, or a task it did settle counts as in flight.
            try await Task.sleep(for: .seconds(1))
            let killedAt = try await app.runtime.runs.count(state: .succeeded, queue: queue)
            #expect(killedAt < total)
            // What the killed worker ran, and which of those had no outcome recorded: the tasks it had in flight.
            let ranBeforeKill = try Self.executions(executionLog)
            #expect(Set(ranBeforeKill).count == ranBeforeKill.count, "no task ran twice before the kill")
            let succeededBeforeKill = try await app.runtime.database.withSQL { sql in
                Set(
                    try await sql.raw("SELECT id FROM task_runs WHERE state = \(bind: TaskState.succeeded.rawValue)").all()
                        .map { try $0.decode(column: "id", as: String.self) })
            }
            let inFlightAtKill = Set(ranBeforeKill).subtracting(succeededBeforeKill)
            #expect(inFlightAtKill.count <= Self.concurrency)

            let second = try Self.startWorker(
                database: databaseURL, broker: brokerURL, queue: queue, executionLog: executionLog, in: directory)
            defer {
                if second.isRunning { second.terminate() }
                second.waitUntilExit()
            }
            let finished = try await eventually(300) { try await app.runtime.runs.count(state: .succeeded, queue: queue) == total }
            #expect(finished)
            second.terminate()
            second.waitUntilExit()
            #expect(second.terminationStatus == 0)

            #expect(try await app.runtime.runs.countByState() == [.succeeded: total])
            // Every task ran; a task ran twice only if the kill interrupted it (at least once, never lost).
            var runs: [String: Int] = [:]
            for id in try Self.executions(executionLog) { runs[id, default: 0] += 1 }
            #expect(ids.filter { runs[$0] == nil }.isEmpty, "every task ran")
            #expect(runs.count == total, "only the enqueued tasks ran")
            let twice = Set(runs.filter { $0.value > 1 }.keys)
            #expect(runs.values.allSatisfy { $0 <= 2 })
            #expect(twice.isSubset(of: inFlightAtKill), "only tasks in flight at the kill ran again")
            let attempts = try await app.runtime.database.withSQL { sql in
                try await sql.raw("SELECT task_id, state, deliveries FROM task_run_attempts").all().map {
                    (id: try $0.decode(column: "task_id", as: String.self), state: try $0.decode(column: "state", as: String.self),
                     deliveries: try $0.decode(column: "deliveries", as: Int.self))
                }
            }
            #expect(attempts.count == total)
            #expect(attempts.allSatisfy { $0.state == "succeeded" })
            // Each task the killed worker ran without its outcome being recorded was delivered a second time. (A kill
            // that falls between two batches leaves none in flight; then nothing is delivered twice.)
            let deliveries = Dictionary(attempts.map { ($0.id, $0.deliveries) }, uniquingKeysWith: max)
            #expect(inFlightAtKill.allSatisfy { (deliveries[$0] ?? 0) >= 2 })
            #expect(deliveries.filter { $0.value >= 2 }.count >= inFlightAtKill.count)
        }
    }

    @Test("SQL queue: 10,000 tasks, a worker killed with SIGKILL and replaced; every task succeeded, only those it had in flight ran twice")
    func sqlQueue() async throws {
        try await killAndRecover { app in ("sql", app.runtime.broker) }
    }

    @Test("RabbitMQ: 10,000 tasks, a worker killed with SIGKILL and replaced; every task succeeded, only those it had in flight ran twice")
    func rabbitMQ() async throws {
        let url = try RabbitMQTests.url()
        try await killAndRecover { app in
            (url.reveal(), try RabbitMQBroker(url: url, runs: app.runtime.runs, logger: TestDatabase.logger))
        }
    }

    @Test("a worker whose RabbitMQ is down says so in one line and keeps retrying instead of exiting")
    func brokerDown() async throws {
        let directory = try CLITests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let port = try FreePort.make()
        try await TestDatabase.withEmptyLocation { location in
            let database = CLITests.url(for: location)
            let environment = ["INTEGRATOR_DATABASE_URL": database, "INTEGRATOR_SECRET_KEY": SecretKeyRing.generateEncodedKey()]
            #expect(try CLITests.run(["migrate"], environment: environment, in: directory).status == 0)
            let process = Process()
            process.executableURL = CLITests.binary
            process.arguments = ["worker", "--queues", "default"]
            process.currentDirectoryURL = directory
            process.environment = environment.merging(
                ["PATH": "/usr/bin:/bin", "HOME": directory.path, "INTEGRATOR_BROKER_URL": "amqp://guest:secret-pw@127.0.0.1:\(port)/%2f"]
            ) { _, new in new }
            let stderrFile = directory.appendingPathComponent("stderr.txt")
            _ = FileManager.default.createFile(atPath: stderrFile.path, contents: nil)
            process.standardOutput = FileHandle.nullDevice
            process.standardError = try FileHandle(forWritingTo: stderrFile)
            try process.run()
            defer {
                if process.isRunning { process.terminate() }
                process.waitUntilExit()
            }
            @Sendable func complaints() throws -> [Substring] {
                try String(contentsOf: stderrFile, encoding: .utf8).split(separator: "\n").filter { $0.contains("cannot reach RabbitMQ; retrying") }
            }
            // However slowly the process starts, it says so once per connection...
            #expect(try await eventually(30) { try complaints().count >= 2 })
            // ...and, retrying for a few more seconds (several attempts each), says nothing more and does not exit.
            try await Task.sleep(for: .seconds(3))
            #expect(process.isRunning)
            process.terminate()
            process.waitUntilExit()
            let log = try String(contentsOf: stderrFile, encoding: .utf8)
            let complaints = try complaints()
            #expect(complaints.count == 2)  // one per connection: publishing and consuming
            #expect(complaints.allSatisfy { $0.contains("127.0.0.1:\(port)") })
            #expect(!log.contains("secret-pw"))
        }
    }
}

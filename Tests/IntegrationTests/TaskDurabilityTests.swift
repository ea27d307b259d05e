// One durable way in for every enqueue: runs and messages commit together, retry and revoke are single transactions,
// and a run left with nothing behind it is found and delivered.
import Foundation
import IntegratorCore
import SQLKit
import Testing

/// `durable.count`: counts its executions per task id.
struct CountingTask: TaskHandler {
    let name = "durable.count"
    let counter: ExecutionCounter
    func run(_ arguments: JSONValue, context: TaskContext) async throws -> JSONValue {
        counter.record(context.taskID)
        return arguments
    }
}

/// `durable.fail`: always fails permanently.
struct FailingTask: TaskHandler {
    let name = "durable.fail"
    func run(_ arguments: JSONValue, context: TaskContext) async throws -> JSONValue {
        throw PluginError("this task always fails", permanent: true)
    }
}

extension Plugin {
    static func durable(_ counter: ExecutionCounter) -> Plugin {
        Plugin(id: "durable", name: "Durability tests", taskHandlers: [CountingTask(counter: counter), FailingTask()])
    }
}

/// Thrown by a test to roll its transaction back.
struct Abort: Error {}

@Suite("Durable enqueue path")
struct TaskDurabilityTests {
    static func count(_ app: TestApp, _ query: SQLQueryString) async throws -> Int {
        try await app.runtime.database.withSQL { sql in try await sql.raw(query).first()?.decode(column: "n", as: Int.self) ?? 0 }
    }

    @Test("a run recorded without its message (a crash between the two) is requeued by the reaper and runs once")
    func reaperRecoversOrphans() async throws {
        let counter = ExecutionCounter()
        try await TestApp.run(extraPlugins: [.durable(counter)]) { app in
            // What a process that recorded and then published in two steps left behind when it died in between.
            let orphan = TaskMessage(name: "durable.count", arguments: ["n": 1], enqueuedAt: app.clock.now())
            try await app.runtime.runs.recordQueued(orphan, at: app.clock.now())
            // A healthy task next to it, whose message is in the queue.
            let healthy = try await app.runtime.tasks.enqueue(
                TaskMessage(name: "durable.count", arguments: ["n": 2], enqueuedAt: app.clock.now()))
            let reaper = OrphanedRunReaper(runtime: app.runtime, grace: 300)
            #expect(try await reaper.reap().isEmpty)  // not yet past the grace period
            app.clock.advance(by: 301)
            #expect(try await reaper.reap() == [orphan.id])
            #expect(try await reaper.reap().isEmpty)
            #expect(try await Self.count(app, "SELECT COUNT(*) AS n FROM task_queue WHERE task_id = \(bind: orphan.id)") == 1)

            let worker = app.runtime.makeWorker(WorkerOptions(queues: ["default"], concurrency: 4, maxPollInterval: .milliseconds(10)))
            let running = Task { try await worker.run() }
            defer { running.cancel() }
            let done = try await eventually {
                let orphanState = try await app.runtime.runs.find(id: orphan.id)?.state
                let healthyState = try await app.runtime.runs.find(id: healthy.id)?.state
                return orphanState == .succeeded && healthyState == .succeeded
            }
            running.cancel()
            _ = try? await running.value
            #expect(done)
            #expect(counter.count(orphan.id) == 1)
            #expect(counter.count(healthy.id) == 1)
        }
    }

    @Test("a task enqueued in a transaction that rolls back leaves no run and no message")
    func rolledBackEnqueue() async throws {
        try await TestApp.run(extraPlugins: [.durable(ExecutionCounter())]) { app in
            let message = TaskMessage(name: "durable.count", arguments: [:], enqueuedAt: app.clock.now())
            await #expect(throws: Abort.self) {
                try await app.runtime.environment.transaction { transaction in
                    try await app.runtime.tasks.enqueue(message, in: transaction)
                    throw Abort()
                }
            }
            let run = try await app.runtime.runs.find(id: message.id)
            #expect(run == nil)
            #expect(try await Self.count(app, "SELECT COUNT(*) AS n FROM task_queue") == 0)
        }
    }

    @Test("two retries of one dead task at once make one new attempt; the other is a conflict")
    func concurrentRetries() async throws {
        let counter = ExecutionCounter()
        try await TestApp.run(extraPlugins: [.durable(counter)], realClock: true) { app in
            let task = try await app.runtime.tasks.enqueue(TaskMessage(name: "durable.fail", arguments: [:], enqueuedAt: Date()))
            let failed = try await withWorker(app, WorkerOptions(queues: ["default"], concurrency: 2, maxPollInterval: .milliseconds(10))) { _ in
                try await eventually { try await app.runtime.runs.find(id: task.id)?.state == .failed }
            }
            #expect(failed)
            let outcomes = await withTaskGroup(of: Bool.self) { group in
                for _ in 0..<2 {
                    group.addTask { (try? await app.runtime.tasks.retry(id: task.id)) != nil }
                }
                return await group.reduce(into: [Bool]()) { $0.append($1) }
            }
            #expect(outcomes.filter { $0 }.count == 1)
            let run = try #require(try await app.runtime.runs.find(id: task.id))
            #expect(run.attempt == 2)
            #expect(run.state == .queued)
            #expect(try await Self.count(app, "SELECT COUNT(*) AS n FROM task_queue WHERE task_id = \(bind: task.id)") == 1)
        }
    }

    @Test("revoking a task that waits for its retry removes the retry timer, so it never runs again")
    func revokeWaitingRetry() async throws {
        let counter = ExecutionCounter()
        try await TestApp.run(extraPlugins: [.durable(counter)]) { app in
            let message = TaskMessage(name: "durable.count", arguments: [:], attempt: 2, enqueuedAt: app.clock.now())
            try await app.runtime.runs.recordQueued(message, at: app.clock.now())
            try await app.runtime.database.withSQL { sql in
                try await sql.raw("UPDATE task_runs SET state = 'retrying' WHERE id = \(bind: message.id)").run()
            }
            try await app.runtime.timers.upsert(
                DurableTimer(id: "retry:\(message.id):2", dueAt: app.clock.now().addingTimeInterval(60), message: message),
                at: app.clock.now())
            let revoked = try await app.call(.delete, "/api/v1/tasks/\(message.id)")
            #expect(revoked.status == .noContent, "\(revoked.status) \(revoked.text)")
            #expect(try await app.runtime.runs.find(id: message.id)?.state == .revoked)
            #expect(try await app.runtime.timers.find(id: "retry:\(message.id):2") == nil)
            // Nothing to revoke twice.
            #expect(try await app.call(.delete, "/api/v1/tasks/\(message.id)").status == .conflict)
        }
    }
}

/// `secret.post`: posts to the URL in its arguments, as a webhook delivery would.
struct PostToURLTask: TaskHandler {
    let name = "secret.post"
    func run(_ arguments: JSONValue, context: TaskContext) async throws -> JSONValue {
        let environment = try context.requireEnvironment()
        let client = environment.outbound.client(logger: context.logger)
        _ = try await client.send(.get(arguments["url"]?.stringValue ?? ""))
        return [:]
    }
}

@Suite("Secrets in outbound URLs")
struct OutboundSecretTests {
    @Test("a secret in a URL path appears in no run error and no log line")
    func secretPathStaysOut() async throws {
        let log = CapturedLog()
        let plugin = Plugin(id: "secret-post", name: "Secret post", taskHandlers: [PostToURLTask()])
        try await TestApp.run(extraPlugins: [plugin], realClock: true) { app in
            // The SSRF guard refuses this address before any connection is made.
            let task = try await app.runtime.tasks.enqueue(
                TaskMessage(
                    name: "secret.post", arguments: ["url": "http://10.0.0.1:8080/hooks/SECRET-IN-PATH/deliver?sig=SECRET-IN-QUERY"],
                    enqueuedAt: Date()))
            let worker = Worker(
                options: WorkerOptions(queues: ["default"], concurrency: 2, maxPollInterval: .milliseconds(10)),
                broker: app.runtime.broker, runs: app.runtime.runs, registry: app.runtime.registry, timers: app.runtime.timers,
                environment: app.runtime.environment, logger: log.logger)
            let running = Task { try await worker.run() }
            let ended = try await eventually { try await app.runtime.runs.find(id: task.id)?.state.isFinal == true }
            running.cancel()
            _ = try? await running.value
            #expect(ended)
            let run = try #require(try await app.runtime.runs.find(id: task.id))
            #expect(run.state == .failed)
            let error = try #require(run.error)
            #expect(error.contains("http://10.0.0.1:8080"))
            #expect(!error.contains("SECRET"))
            #expect(!log.text.contains("SECRET"))
            #expect(log.text.contains("10.0.0.1"))
        }
    }
}

/// Credentials whose connection test `GET`s the URL in their public field `url`.
struct URLCheckCredentials: ConnectionTesting {
    let id = "url-check"
    let name = "URL check"
    let publicFields: FieldSet = [.string("url", title: "URL", required: true)]
    let secretFields: FieldSet = [.secret("token", title: "Token")]

    func testConnection(_ credentials: CredentialValues, context: PluginContext) async throws -> ConnectionTestResult {
        _ = try await context.http.get(credentials.publicValues["url"]?.stringValue ?? "")
        return .success("reached")
    }
}

@Suite("Connection tests that cannot reach their service")
struct ConnectionTestErrorTests {
    @Test("a refused address is a 400 and an unreachable service a 502, never a 500, and the token stays out")
    func outboundErrors() async throws {
        let plugin = Plugin(id: "url-check", name: "URL check", credentialsTypes: [URLCheckCredentials()])
        try await TestApp.run(extraPlugins: [plugin]) { app in
            func test(_ url: String) async throws -> JSONResponse {
                let created = try await app.call(
                    .post, "/api/v1/credentials",
                    body: ["name": .string("c-\(Identifier.make())"), "type": "url-check", "public": ["url": .string(url)],
                           "secret": ["token": "SECRET-TOKEN"]])
                let id = try #require(created.json["id"]?.stringValue)
                return try await app.call(.post, "/api/v1/credentials/\(id)/test")
            }
            let refused = try await test("http://10.0.0.1/hooks/SECRET-PATH")
            #expect(refused.status == .badRequest)
            #expect(refused.text.contains("10.0.0.1"))
            #expect(!refused.text.contains("SECRET"))
            // Nothing listens on port 1 of the loopback address (allowed in tests): the connection is refused.
            let unreachable = try await test("http://127.0.0.1:1/SECRET-PATH")
            #expect(unreachable.status == .badGateway)
            #expect(unreachable.errorCode == "upstream_error")
            #expect(!unreachable.text.contains("SECRET"))
        }
    }
}

// Plugins on the engine's environment: their own tables, routes with roles, transactions that enqueue and set timers,
// change-event subscribers inside the events' transaction, and task handlers that reach the environment.
import Foundation
import Hummingbird
import IntegratorCore
import Plugins
import SQLKit
import Synchronization
import Testing

/// Counts how often each task id ran.
final class ExecutionCounter: Sendable {
    private let counts = Mutex<[String: Int]>([:])
    func record(_ id: String) { counts.withLock { $0[id, default: 0] += 1 } }
    func count(_ id: String) -> Int { counts.withLock { $0[id] ?? 0 } }
    var total: Int { counts.withLock { $0.values.reduce(0, +) } }
    var all: [String: Int] { counts.withLock { $0 } }
}

/// `notes.count`: counts its executions, and through the plugin environment reads how many notes are stored.
struct CountingNotesTask: TaskHandler {
    let name = "notes.count"
    let counter: ExecutionCounter

    func run(_ arguments: JSONValue, context: TaskContext) async throws -> JSONValue {
        counter.record(context.taskID)
        let environment = try context.requireEnvironment()
        let stored = try await environment.database.withSQL { sql in
            try await sql.raw("SELECT COUNT(*) AS n FROM notes_items").first()?.decode(column: "n", as: Int.self) ?? 0
        }
        return ["notes": .number(Double(stored))]
    }
}

/// Writes one row per change event it accepts into the plugin's own table, in the events' transaction.
struct NoteEverySubscriber: ChangeEventSubscriber {
    let name = "notes.every-event"
    /// Fails once it has seen this many events in total, to test that the batch rolls back with it.
    let failAfter: Int?
    let seen = ExecutionCounter()

    func accepts(eventType: String) -> Bool { eventType.hasSuffix(".created") }

    func handle(_ events: [ChangeEvent], in transaction: StoreTransaction, environment: PluginEnvironment) async throws {
        for event in events { seen.record(event.id) }
        let total = seen.total
        for event in events {
            try await transaction.sql.raw(
                "INSERT INTO notes_items (id, text) VALUES (\(bind: "event-" + event.id), \(bind: event.type))").run()
        }
        if let failAfter, total > failAfter { throw PluginError("the subscriber gave up") }
    }
}

extension Plugin {
    /// A plugin with a table, routes, a task and a subscriber.
    static func notes(counter: ExecutionCounter, subscriberFailsAfter: Int? = nil) -> Plugin {
        Plugin(
            id: "notes", name: "Notes",
            taskHandlers: [CountingNotesTask(counter: counter)],
            migrations: [
                PluginMigration(version: 1, name: "notes") { _ in ["CREATE TABLE notes_items (id TEXT PRIMARY KEY, text TEXT NOT NULL)"] },
                PluginMigration(version: 2, name: "notes_tag") { _ in ["ALTER TABLE notes_items ADD COLUMN tag TEXT"] },
            ],
            routes: [
                // Stores a note, enqueues `notes.count` and sets a timer, all in one transaction; `"fail": true`
                // throws after all three, so none of them may remain.
                PluginRoute(.post, "/notes/items", access: .role(.operator)) { request, _, environment in
                    let body = try await environment.readJSON(request)
                    let id = body["id"]?.stringValue ?? Identifier.make()
                    let taskID = try await environment.transaction { transaction in
                        try await transaction.sql.raw(
                            "INSERT INTO notes_items (id, text) VALUES (\(bind: id), \(bind: body["text"]?.stringValue ?? ""))").run()
                        let message = TaskMessage(name: "notes.count", arguments: [:], enqueuedAt: environment.clock.now())
                        try await environment.tasks.enqueue(message, in: transaction)
                        try await environment.timers.upsert(
                            DurableTimer(
                                id: "notes-reminder:\(id)", dueAt: environment.clock.now().addingTimeInterval(3600),
                                message: TaskMessage(name: "notes.count", arguments: [:], enqueuedAt: environment.clock.now())),
                            in: transaction, at: environment.clock.now())
                        if body["fail"]?.boolValue == true { throw APIError.badRequest("asked to fail", code: "asked_to_fail") }
                        return message.id
                    }
                    return JSONValue.object(["id": .string(id), "task": .string(taskID)]).response(status: .created)
                },
                PluginRoute(.get, "/notes/open/{id}", access: .open) { _, context, _ in
                    JSONValue.object(["echo": .string(try context.parameters.require("id"))]).response()
                },
            ],
            eventSubscribers: [NoteEverySubscriber(failAfter: subscriberFailsAfter)])
    }
}

@Suite("Plugin environment")
struct PluginEnvironmentTests {
    static func count(_ app: TestApp, _ query: String) async throws -> Int {
        try await app.runtime.database.withSQL { sql in
            try await sql.raw(SQLQueryString(query)).first()?.decode(column: "n", as: Int.self) ?? 0
        }
    }

    @Test("plugin migrations are applied once, recorded under the plugin's id")
    func migrations() async throws {
        let counter = ExecutionCounter()
        try await TestApp.run(extraPlugins: [.notes(counter: counter)]) { app in
            let builtin = BuiltinPlugins.all.flatMap { plugin in plugin.migrations.map { "\(plugin.id):\($0.version)" } }
            let applied = try await app.runtime.migrator.appliedPluginMigrations(app.runtime.database)
            #expect(applied == (["notes:1", "notes:2"] + builtin).sorted(), "\(applied)")
            let again = try await app.runtime.migrator.migrateReporting(app.runtime.database)
            #expect(again.engine.isEmpty && again.plugins.isEmpty)
            try await app.runtime.database.withSQL { sql in
                try await sql.raw("INSERT INTO notes_items (id, text, tag) VALUES ('a', 'b', 'c')").run()
            }
        }
    }

    @Test("the registry refuses migration gaps and routes declared twice")
    func registryChecks() throws {
        let gap = Plugin(id: "gap", name: "Gap", migrations: [PluginMigration(version: 2, name: "two") { _ in [] }])
        let route = PluginRoute(.get, "/same/{id}", access: .open) { _, _, _ in Response(status: .ok) }
        let twin = PluginRoute(.get, "/same/{name}", access: .open) { _, _, _ in Response(status: .ok) }
        do {
            _ = try PluginRegistry([gap, Plugin(id: "a", name: "A", routes: [route]), Plugin(id: "b", name: "B", routes: [twin])])
            Issue.record("the registry accepted an inconsistent plugin set")
        } catch {
            #expect(error.problems.contains { $0.contains("plugin 'gap': migration versions must be 1, 2, 3") })
            #expect(error.problems.contains { $0.contains("route GET /same/{name} is declared by both 'a' and 'b'") })
        }
    }

    @Test("a plugin route's transaction stores its row, task and timer together, or none of them")
    func transactionalRoute() async throws {
        let counter = ExecutionCounter()
        try await TestApp.run(extraPlugins: [.notes(counter: counter)]) { app in
            let created = try await app.call(.post, "/notes/items", body: ["id": "n1", "text": "hello"])
            #expect(created.status == .created)
            let taskID = try #require(created.json["task"]?.stringValue)
            #expect(try await app.runtime.runs.find(id: taskID)?.state == .queued)
            #expect(try await Self.count(app, "SELECT COUNT(*) AS n FROM task_queue WHERE task_id = '\(taskID)'") == 1)
            #expect(try await app.runtime.timers.find(id: "notes-reminder:n1") != nil)

            let failed = try await app.call(.post, "/notes/items", body: ["id": "n2", "text": "gone", "fail": true])
            #expect(failed.status == .badRequest)
            #expect(failed.errorCode == "asked_to_fail")
            #expect(try await Self.count(app, "SELECT COUNT(*) AS n FROM notes_items WHERE id = 'n2'") == 0)
            #expect(try await app.runtime.timers.find(id: "notes-reminder:n2") == nil)
            #expect(try await Self.count(app, "SELECT COUNT(*) AS n FROM task_runs WHERE task_name = 'notes.count'") == 1)
            #expect(try await Self.count(app, "SELECT COUNT(*) AS n FROM task_queue") == 1)
        }
    }

    @Test("timers set with a plugin's own writes (one statement on PostgreSQL) take effect with them, or not at all")
    func timersWritingAlso() async throws {
        try await TestApp.run(extraPlugins: [.notes(counter: ExecutionCounter())]) { app in
            let timers = app.runtime.timers
            let now = app.clock.now()
            func timer(_ id: String) -> DurableTimer {
                DurableTimer(id: id, dueAt: now.addingTimeInterval(3600), message: TaskMessage(name: "notes.count", enqueuedAt: now))
            }
            func text(_ id: String) async throws -> String? {
                try await app.runtime.database.withSQL { sql in
                    try await sql.raw("SELECT text FROM notes_items WHERE id = \(bind: id)").first()?.decode(column: "text", as: String.self)
                }
            }
            try await timers.upsert(
                contentsOf: [timer("together:1"), timer("together:2")], at: now,
                writingAlso: ["INSERT INTO notes_items (id, text) VALUES (\(bind: "w1"), \(bind: "with timers"))"])
            #expect(try await text("w1") == "with timers")
            #expect(try await timers.find(id: "together:1") != nil)
            #expect(try await timers.find(id: "together:2") != nil)

            // The note exists: the write fails, and the timer beside it is not set.
            await #expect(throws: (any Error).self) {
                try await timers.upsert(
                    contentsOf: [timer("together:3")], at: now,
                    writingAlso: ["INSERT INTO notes_items (id, text) VALUES (\(bind: "w1"), \(bind: "again"))"])
            }
            #expect(try await timers.find(id: "together:3") == nil)
            #expect(try await text("w1") == "with timers")

            // Writes without timers are made all the same.
            try await timers.upsert(contentsOf: [], at: now, writingAlso: ["INSERT INTO notes_items (id, text) VALUES ('w2', 'alone')"])
            #expect(try await text("w2") == "alone")
        }
    }

    @Test("plugin routes check roles; open routes need no token")
    func routeAccess() async throws {
        try await TestApp.run(extraPlugins: [.notes(counter: ExecutionCounter())]) { app in
            #expect(try await app.call(.post, "/notes/items", body: ["text": "x"], token: "").status == .unauthorized)
            let viewer = try await app.token(for: .viewer)
            let refused = try await app.call(.post, "/notes/items", body: ["text": "x"], token: viewer)
            #expect(refused.status == .forbidden)
            let open = try await app.call(.get, "/notes/open/abc", token: "")
            #expect(open.status == .ok)
            #expect(open.json["echo"]?.stringValue == "abc")
        }
    }

    @Test("a task handler reaches the environment through its context, and runs once")
    func handlerEnvironment() async throws {
        let counter = ExecutionCounter()
        try await TestApp.run(extraPlugins: [.notes(counter: counter)], realClock: true) { app in
            let created = try await app.call(.post, "/notes/items", body: ["id": "n1", "text": "hello"])
            let taskID = try #require(created.json["task"]?.stringValue)
            let succeeded = try await withWorker(
                app, WorkerOptions(queues: ["default"], concurrency: 2, maxPollInterval: .milliseconds(20))
            ) { _ in
                try await eventually { try await app.runtime.runs.find(id: taskID)?.state == .succeeded }
            }
            #expect(succeeded)
            #expect(counter.count(taskID) == 1)
            #expect(try await app.runtime.runs.find(id: taskID)?.result == ["notes": 1])
        }
    }

    @Test("change-event subscribers write in the events' transaction; a failing one rolls the batch back")
    func subscribers() async throws {
        try await TestApp.run(extraPlugins: [.notes(counter: ExecutionCounter())]) { app in
            let id = try await FetchPipelineTests.integration(
                app, ["name": "demo-sub", "provider": "demo", "config": ["records": 120, "page_size": 50]])
            _ = try await FetchPipelineTests.fetch(app, id)
            let events = try await Self.count(app, "SELECT COUNT(*) AS n FROM events WHERE type LIKE '%.created'")
            #expect(events == 120)
            #expect(try await Self.count(app, "SELECT COUNT(*) AS n FROM notes_items WHERE id LIKE 'event-%'") == 120)
        }
        try await TestApp.run(extraPlugins: [.notes(counter: ExecutionCounter(), subscriberFailsAfter: 0)]) { app in
            let id = try await FetchPipelineTests.integration(
                app, ["name": "demo-fail", "provider": "demo", "config": ["records": 30, "page_size": 10]])
            await #expect(throws: (any Error).self) { _ = try await FetchPipelineTests.fetch(app, id) }
            #expect(try await Self.count(app, "SELECT COUNT(*) AS n FROM events") == 0)
            #expect(try await Self.count(app, "SELECT COUNT(*) AS n FROM records") == 0)
            #expect(try await Self.count(app, "SELECT COUNT(*) AS n FROM notes_items") == 0)
        }
    }

    @Test("GET /api/v1/plugins lists the same plugins as the registry, the fetch pipeline among them")
    func pluginsAgree() async throws {
        try await TestApp.run { app in
            let listed = try await app.call(.get, "/api/v1/plugins")
            let ids = listed.json["items"]?.arrayValue?.compactMap { $0["id"]?.stringValue } ?? []
            #expect(ids == BuiltinPlugins.all.map(\.id))
            #expect(ids.contains("fetch"))
            let fetch = listed.json["items"]?.arrayValue?.first { $0["id"]?.stringValue == "fetch" }
            #expect(fetch?["tasks"] == ["integration.fetch", "integration.fetch_all"])
        }
    }
}

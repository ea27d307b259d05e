// The fetch pipeline against the real database: records stored and diffed, change events, state, the API, the tasks.
import Foundation
import IntegratorCore
import Plugins
import Testing

@Suite("Fetch pipeline")
struct FetchPipelineTests {
    /// Creates an integration through the API and returns its id.
    static func integration(_ app: TestApp, _ body: JSONValue) async throws -> String {
        let created = try await app.call(.post, "/api/v1/integrations", body: body)
        guard created.status == .created, let id = created.json["id"]?.stringValue else {
            throw TestSetupError("creating the integration failed: \(created.text)")
        }
        return id
    }

    static func fetch(_ app: TestApp, _ id: String) async throws -> FetchSummary {
        try await app.runtime.fetches.run(integrationID: id, logger: TestDatabase.logger)
    }

    /// Every item of a list endpoint, following `next_cursor` with pages of `limit`.
    static func all(_ app: TestApp, _ path: String, limit: Int = 500) async throws -> [JSONValue] {
        var items: [JSONValue] = []
        var cursor: String?
        let separator = path.contains("?") ? "&" : "?"
        repeat {
            let page = try await app.call(.get, "\(path)\(separator)limit=\(limit)" + (cursor.map { "&cursor=\($0)" } ?? ""))
            guard page.status == .ok else { throw TestSetupError("\(path): \(page.status) \(page.text)") }
            items += page.json["items"]?.arrayValue ?? []
            cursor = page.json["next_cursor"]?.stringValue
        } while cursor != nil
        return items
    }

    static func iso(_ date: Date) -> String { date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true)) }

    @Test("a demo fetch stores every record with one created event; the next run updates only the changed fraction")
    func demoRuns() async throws {
        try await TestApp.run { app in
            let id = try await Self.integration(
                app, ["name": "shop", "provider": "demo", "config": ["records": 120, "change_fraction": 0.25, "page_size": 50]])
            let first = try await Self.fetch(app, id)
            #expect(first.records == RecordCounts(new: 120, updated: 0, unchanged: 0))
            #expect(first.pages == 3)
            #expect(first.received == 120)
            #expect(first.json["streams"] == ["items": ["new": 120, "updated": 0, "unchanged": 0]])
            #expect(try await app.runtime.records.count(integrationID: id) == 120)
            let created = try await Self.all(app, "/api/v1/events?integration=\(id)")
            #expect(created.count == 120)
            #expect(Set(created.compactMap { $0["type"]?.stringValue }) == ["demo.items.created"])
            #expect(Set(created.compactMap { $0["external_id"]?.stringValue }).count == 120)

            app.clock.advance(by: 60)
            let changed = (1...120).filter { DemoProvider.changes(index: $0, run: 2, changeFraction: 0.25) }
            #expect(changed.count > 10 && changed.count < 50)
            let second = try await Self.fetch(app, id)
            #expect(second.records == RecordCounts(new: 0, updated: changed.count, unchanged: 120 - changed.count))
            let updated = try await Self.all(app, "/api/v1/events?type=demo.items.updated")
            #expect(updated.compactMap { $0["external_id"]?.stringValue } == changed.map { "demo-\($0)" })
            #expect(updated.allSatisfy { $0["data"]?["revision"] == 2 })
            #expect(try await Self.all(app, "/api/v1/events").count == 120 + changed.count)

            // A record keeps its id and first sighting; both runs saw it; only a change moves updated_at.
            let records = try await Self.all(app, "/api/v1/integrations/\(id)/records")
            #expect(records.count == 120)
            let start = Self.iso(TestApp.startDate)
            let later = Self.iso(TestApp.startDate.addingTimeInterval(60))
            #expect(records.allSatisfy { $0["first_seen_at"] == .string(start) && $0["last_seen_at"] == .string(later) })
            let changedSet = Set(changed.map { "demo-\($0)" })
            for record in records {
                let wasChanged = changedSet.contains(record["external_id"]?.stringValue ?? "")
                #expect(record["updated_at"] == .string(wasChanged ? later : start))
            }
            let recordIDs: Set<String> = Set(records.compactMap { $0["id"]?.stringValue })
            let updatedRecordIDs: Set<String> = Set(updated.compactMap { $0["record_id"]?.stringValue })
            #expect(updatedRecordIDs.isSubset(of: recordIDs))
        }
    }

    @Test("state is saved per stream, shown by the API, and deleting it makes the next fetch read everything again")
    func stateAPI() async throws {
        try await TestApp.run(extraPlugins: [.fetchTesting]) { app in
            let id = try await Self.integration(
                app, ["name": "paged", "provider": "paged-test", "config": ["pages": 3, "streams": ["rows", "extras"]]])
            let first = try await Self.fetch(app, id)
            #expect(first.records.new == 60)
            #expect(first.pages == 6)
            let state = try await app.call(.get, "/api/v1/integrations/\(id)/state")
            #expect(state.status == .ok)
            #expect(state.json["streams"]?.arrayValue?.map { $0["stream"] } == ["extras", "rows"])
            #expect(state.json["streams"]?.arrayValue?.map { $0["cursor"] } == [["page": 3], ["page": 3]])

            // Incremental: the saved cursors say everything was read.
            #expect(try await Self.fetch(app, id).received == 0)

            let viewer = try await app.token(for: .viewer)
            #expect(try await app.call(.delete, "/api/v1/integrations/\(id)/state", token: viewer).status == .forbidden)
            #expect(try await app.call(.delete, "/api/v1/integrations/\(id)/state?stream=extras").status == .noContent)
            let afterOne = try await Self.fetch(app, id)
            #expect(afterOne.streams == ["extras": RecordCounts(new: 0, updated: 0, unchanged: 30)])
            #expect(try await app.call(.delete, "/api/v1/integrations/\(id)/state").status == .noContent)
            #expect(try await app.call(.get, "/api/v1/integrations/\(id)/state").json["streams"] == [])
            #expect(try await Self.fetch(app, id).records == RecordCounts(new: 0, updated: 0, unchanged: 60))

            let unknown = Identifier.make()
            #expect(try await app.call(.get, "/api/v1/integrations/\(unknown)/state").status == .notFound)
            #expect(try await app.call(.delete, "/api/v1/integrations/\(unknown)/state").status == .notFound)
            #expect(try await app.call(.get, "/api/v1/integrations/nope/state").status == .notFound)
        }
    }

    @Test("records and events APIs filter and page, and name every bad parameter")
    func readAPIs() async throws {
        try await TestApp.run(extraPlugins: [.fetchTesting]) { app in
            let paged = try await Self.integration(
                app, ["name": "paged", "provider": "paged-test", "config": ["pages": 4, "page_size": 10, "streams": ["rows", "extras"]]])
            let demo = try await Self.integration(app, ["name": "demo", "provider": "demo", "config": ["records": 7]])
            _ = try await Self.fetch(app, paged)
            _ = try await Self.fetch(app, demo)

            // Pages of 15 over 80 records: every record once, in id order, normalized.
            let all = try await Self.all(app, "/api/v1/integrations/\(paged)/records", limit: 15)
            #expect(all.count == 80)
            let ids = all.compactMap { $0["id"]?.stringValue }
            #expect(ids == ids.sorted() && Set(ids).count == 80)
            #expect(all.first?["data"]?["position"] == 1 && all.first?["data"]?["item"] == nil)
            #expect(all.first?["content_hash"]?.stringValue?.count == 64)
            let extras = try await Self.all(app, "/api/v1/integrations/\(paged)/records?stream=extras")
            #expect(extras.count == 40 && extras.allSatisfy { $0["stream"] == "extras" })

            let record = try await app.call(.get, "/api/v1/records/\(ids[0])")
            #expect(record.status == .ok)
            #expect(record.json == all[0])
            #expect(try await app.call(.get, "/api/v1/records/\(Identifier.make())").status == .notFound)
            #expect(try await app.call(.get, "/api/v1/records/not-an-id").status == .notFound)
            #expect(try await app.call(.get, "/api/v1/integrations/\(Identifier.make())/records").status == .notFound)

            // A later change shows up in updated_since and as updated events; earlier ones do not.
            app.clock.advance(by: 120)
            let cutoff = Self.iso(app.clock.now())
            #expect(try await app.call(.patch, "/api/v1/integrations/\(paged)", body: ["config": ["label": "two"]]).status == .ok)
            #expect(try await app.call(.delete, "/api/v1/integrations/\(paged)/state?stream=rows").status == .noContent)
            let refetch = try await Self.fetch(app, paged)
            #expect(refetch.records == RecordCounts(new: 0, updated: 40, unchanged: 0))
            let changed = try await Self.all(app, "/api/v1/integrations/\(paged)/records?updated_since=\(cutoff)")
            #expect(changed.count == 40 && changed.allSatisfy { $0["stream"] == "rows" && $0["data"]?["label"] == "two" })
            let changedInStream = try await Self.all(app, "/api/v1/integrations/\(paged)/records?stream=extras&updated_since=\(cutoff)")
            #expect(changedInStream.isEmpty)

            let updates = try await Self.all(app, "/api/v1/events?type=paged-test.rows.updated&integration=\(paged)")
            #expect(updates.count == 40)
            #expect(try await Self.all(app, "/api/v1/events?since=\(cutoff)").count == 40)
            #expect(try await Self.all(app, "/api/v1/events?integration=\(demo)").count == 7)
            #expect(try await Self.all(app, "/api/v1/events?type=demo.items.created&integration=\(paged)").isEmpty)
            let firstPage = try await app.call(.get, "/api/v1/events?limit=5")
            #expect(firstPage.json["items"]?.arrayValue?.count == 5)
            #expect(firstPage.json["next_cursor"]?.stringValue != nil)

            let badRecords = try await app.call(.get, "/api/v1/integrations/\(paged)/records?updated_since=yesterday&limit=0&strem=rows")
            #expect(badRecords.status == .badRequest)
            #expect(Set(badRecords.errorFields) == ["strem", "updated_since", "limit"])
            #expect(try await app.call(.get, "/api/v1/records/\(ids[0])?verbose=1").errorFields == ["verbose"])
            let badEvents = try await app.call(.get, "/api/v1/events?integration=abc&since=2026-13-01&cursor=zzz")
            #expect(badEvents.status == .badRequest)
            #expect(Set(badEvents.errorFields) == ["integration", "since", "cursor"])
        }
    }

    @Test("POST …/run enqueues integration.fetch on the integration's queue; a worker runs it to succeeded with the summary")
    func runEndpoint() async throws {
        try await TestApp.run(realClock: true) { app in
            #expect(app.runtime.registry.taskHandler("integration.fetch") != nil)
            #expect(app.runtime.registry.taskHandler("integration.fetch_all") != nil)
            let id = try await Self.integration(
                app, ["name": "demo", "provider": "demo", "queue": "high", "priority": 8, "max_attempts": 2, "config": ["records": 30]])
            let viewer = try await app.token(for: .viewer)
            #expect(try await app.call(.post, "/api/v1/integrations/\(id)/run", token: viewer).status == .forbidden)
            #expect(try await app.call(.post, "/api/v1/integrations/\(Identifier.make())/run").status == .notFound)
            let operatorToken = try await app.token(for: .operator)
            let run = try await app.call(.post, "/api/v1/integrations/\(id)/run", token: operatorToken)
            #expect(run.status == .accepted)
            #expect(run.json["task"] == "integration.fetch")
            #expect(run.json["args"] == ["integration_id": .string(id)])
            #expect(run.json["queue"] == "high")
            #expect(run.json["priority"] == 8)
            #expect(run.json["integration"] == .string(id))
            let taskID = try #require(run.json["id"]?.stringValue)
            try await withWorker(app, WorkerOptions(queues: ["high"], concurrency: 2)) { _ in
                let done = try await eventually { try await app.runtime.runs.find(id: taskID)?.state == .succeeded }
                #expect(done)
            }
            let task = try await app.call(.get, "/api/v1/tasks/\(taskID)")
            #expect(task.json["result"]?["new"] == 30)
            #expect(task.json["result"]?["pages"] == 1)
            #expect(task.json["result"]?["integration"] == .string(id))
            #expect(task.json["result"]?["elapsed_ms"]?.doubleValue != nil)

            #expect(try await app.call(.patch, "/api/v1/integrations/\(id)", body: ["active": false]).status == .ok)
            let inactive = try await app.call(.post, "/api/v1/integrations/\(id)/run")
            #expect(inactive.status == .conflict)
            #expect(inactive.json["error"]?["message"]?.stringValue?.contains("inactive") == true)
        }
    }

    @Test("a task for an unknown or inactive integration fails permanently, with no retry")
    func permanentFailures() async throws {
        try await TestApp.run(realClock: true) { app in
            let id = try await Self.integration(app, ["name": "off", "provider": "demo", "active": false])
            let unknown = try await app.runtime.tasks.enqueue(
                TaskMessage(name: "integration.fetch", arguments: ["integration_id": .string(Identifier.make())], enqueuedAt: Date()))
            let inactive = try await app.runtime.tasks.enqueue(
                TaskMessage(name: "integration.fetch", arguments: ["integration_id": .string(id)], enqueuedAt: Date()))
            let noArguments = try await app.runtime.tasks.enqueue(TaskMessage(name: "integration.fetch", enqueuedAt: Date()))
            try await withWorker(app, WorkerOptions(queues: ["default"], concurrency: 3)) { _ in
                let settled = try await eventually {
                    let states = try await [unknown, inactive, noArguments].asyncMap { try await app.runtime.runs.find(id: $0.id)?.state }
                    return states.allSatisfy { $0 == .failed }
                }
                #expect(settled)
            }
            #expect(try await app.runtime.runs.find(id: unknown.id)?.error?.hasPrefix("no integration with id") == true)
            #expect(try await app.runtime.runs.find(id: inactive.id)?.error?.contains("'off' is inactive") == true)
            #expect(try await app.runtime.runs.find(id: noArguments.id)?.error?.contains("integration_id") == true)
            #expect(try await app.runtime.runs.attempts(taskID: inactive.id).count == 1)
        }
    }

    @Test("integration.fetch_all enqueues one fetch per active integration on its queue, and skips ones still pending")
    func fetchAll() async throws {
        try await TestApp.run(realClock: true) { app in
            let high = try await Self.integration(app, ["name": "a", "provider": "demo", "queue": "high", "priority": 9, "max_attempts": 4])
            let low = try await Self.integration(app, ["name": "b", "provider": "demo", "queue": "low", "priority": 1])
            _ = try await Self.integration(app, ["name": "c", "provider": "demo", "active": false])
            let enqueued = try await app.call(.post, "/api/v1/tasks", body: ["task": "integration.fetch_all"])
            #expect(enqueued.status == .accepted)
            let fanOutID = try #require(enqueued.json["id"]?.stringValue)
            try await withWorker(app, WorkerOptions(queues: ["default"], concurrency: 1)) { _ in
                let done = try await eventually { try await app.runtime.runs.find(id: fanOutID)?.state == .succeeded }
                #expect(done)
            }
            let fanOut = try #require(try await app.runtime.runs.find(id: fanOutID))
            #expect(fanOut.result?["enqueued"] == 2)
            #expect(fanOut.result?["skipped"] == [])
            let fetches = try await app.runtime.runs.list(TaskRunFilter(name: "integration.fetch"), page: PageRequest()).items
            #expect(fetches.count == 2)
            let byIntegration = Dictionary(uniqueKeysWithValues: fetches.map { ($0.integrationID ?? "", $0) })
            #expect(byIntegration[high]?.queue == "high" && byIntegration[high]?.priority == 9)
            #expect(byIntegration[low]?.queue == "low" && byIntegration[low]?.priority == 1)
            #expect(byIntegration[high]?.arguments == ["integration_id": .string(high)])
            #expect(fanOut.result?["tasks"]?.arrayValue?.compactMap(\.stringValue).sorted() == fetches.map(\.id).sorted())
            let queued = try await app.runtime.broker.claim(queues: ["high"], limit: 5, workerID: "probe", leaseUntil: Date().addingTimeInterval(60))
            #expect(queued.first?.message.maxAttempts == 4)
            try await app.runtime.broker.release(queued)

            // Both fetches are still queued: a second fan-out leaves them be.
            let again = try await app.runtime.fetches.enqueueAllActive()
            #expect(again.enqueued.isEmpty)
            #expect(Set(again.skipped) == [high, low])
        }
    }

    @Test("a fetch that fails mid-page keeps what it read and the next run resumes from the last checkpoint")
    func resumesFromCheckpoint() async throws {
        try await TestApp.run(extraPlugins: [.fetchTesting]) { app in
            let id = try await Self.integration(
                app, ["name": "flaky", "provider": "paged-test", "config": ["pages": 5, "page_size": 10, "fail_on_page": 3]])
            let failure = try await #require(throws: FetchFailure.self) { try await Self.fetch(app, id) }
            #expect(failure.message == "the source answered 503 on page 3")
            #expect(!failure.isPermanent)
            #expect(failure.progress.pages == 2)
            #expect(failure.description.contains("stopped after 2 pages and 25 stored records: 25 new"))
            #expect(try await app.call(.get, "/api/v1/integrations/\(id)/state").json["streams"]?.arrayValue?.first?["cursor"] == ["page": 2])
            #expect(try await app.runtime.records.count(integrationID: id) == 25)

            #expect(try await app.call(.patch, "/api/v1/integrations/\(id)", body: ["config": ["fail_on_page": nil]]).status == .ok)
            let resumed = try await Self.fetch(app, id)
            // Pages 3–5 only: half of page 3 was stored before the failure.
            #expect(resumed.received == 30)
            #expect(resumed.records == RecordCounts(new: 25, updated: 0, unchanged: 5))
            #expect(try await app.runtime.records.count(integrationID: id) == 50)
            #expect(try await Self.all(app, "/api/v1/events?integration=\(id)").count == 50)
        }
    }

    @Test("records and checkpoints from concurrent child tasks are all stored, each record once, each cursor the last")
    func concurrentEmitters() async throws {
        try await TestApp.run(extraPlugins: [.fetchTesting]) { app in
            let id = try await Self.integration(app, ["name": "parallel", "provider": "concurrent-test", "config": ["parts": 4, "per_part": 300]])
            let summary = try await Self.fetch(app, id)
            #expect(summary.received == 2400)
            #expect(summary.pages == 12)
            #expect(summary.records.new == 1200)
            #expect(summary.records.total == 1200 + summary.records.unchanged)
            #expect(summary.streams.keys.sorted() == ["part-1", "part-2", "part-3", "part-4"])
            #expect(try await app.runtime.records.count(integrationID: id) == 1200)
            #expect(try await Self.all(app, "/api/v1/events?integration=\(id)").count == 1200)
            let state = try await app.call(.get, "/api/v1/integrations/\(id)/state")
            #expect(state.json["streams"]?.arrayValue?.map { $0["cursor"] } == Array(repeating: ["done": 300], count: 4))
        }
    }

    @Test("a failed fetch through a worker is recorded with its progress; secrets never reach logs or errors")
    func secretsStayOut() async throws {
        try await TestApp.run(extraPlugins: [.fetchTesting], realClock: true) { app in
            let token = "tok-SECRET-0123456789"
            let credentials = try await app.call(
                .post, "/api/v1/credentials", body: ["name": "bearer", "type": "http-bearer", "secret": ["token": .string(token)]])
            let credentialsID = try #require(credentials.json["id"]?.stringValue)
            let id = try await Self.integration(app, ["name": "leaky", "provider": "leaky", "credentials": .string(credentialsID)])

            let log = CapturedLog()
            let failure = try await #require(throws: FetchFailure.self) {
                try await app.runtime.fetches.run(integrationID: id, logger: log.logger)
            }
            #expect(failure.message == "the service refused token ********")
            #expect(failure.isPermanent)
            #expect(log.text.contains("calling the service with token ********"))
            #expect(log.text.contains("Bearer ********"))
            #expect(!log.text.contains(token))

            let run = try await app.call(.post, "/api/v1/integrations/\(id)/run")
            let taskID = try #require(run.json["id"]?.stringValue)
            try await withWorker(app, WorkerOptions(queues: ["default"], concurrency: 1)) { _ in
                let failed = try await eventually { try await app.runtime.runs.find(id: taskID)?.state == .failed }
                #expect(failed)
            }
            let task = try await app.call(.get, "/api/v1/tasks/\(taskID)")
            #expect(task.json["error"] == "the service refused token ********")
            #expect(!task.text.contains(token))
        }
    }
}

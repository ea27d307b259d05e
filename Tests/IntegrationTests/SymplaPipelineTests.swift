// Sympla end to end: credentials and an integration through the API, integration.fetch on a worker against FakeSympla,
// records and change events through the API.
import Foundation
import IntegratorCore
import Testing

@Suite("Sympla through the fetch pipeline")
struct SymplaPipelineTests {
    @Test("a Sympla integration run by a worker stores events, orders and participants; a change becomes one updated event")
    func endToEnd() async throws {
        let fake = FakeSympla()
        fake.seed(events: 3, orders: 2, participants: 2)
        try await fake.run { baseURL in
            try await TestApp.run(realClock: true) { app in
                let credentials = try await app.call(
                    .post, "/api/v1/credentials",
                    body: ["name": "sympla", "type": "sympla", "public": ["base_url": .string(baseURL)], "secret": ["api_key": .string(fake.token)]])
                let credentialsID = try #require(credentials.json["id"]?.stringValue)
                let id = try await FetchPipelineTests.integration(
                    app,
                    [
                        "name": "sympla", "provider": "sympla", "credentials": .string(credentialsID),
                        "config": ["streams": ["events", "orders", "participants"], "page_size": 2],
                    ])

                func runTask() async throws -> TaskRun {
                    let run = try await app.call(.post, "/api/v1/integrations/\(id)/run")
                    let taskID = try #require(run.json["id"]?.stringValue)
                    return try await withWorker(app, WorkerOptions(queues: ["default"], concurrency: 1)) { _ in
                        let settled = try await eventually { try await app.runtime.runs.find(id: taskID)?.state.isFinal == true }
                        #expect(settled)
                        return try #require(try await app.runtime.runs.find(id: taskID))
                    }
                }

                let first = try await runTask()
                #expect(first.state == .succeeded, "\(first.error ?? "")")
                #expect(first.result?["new"] == 15)
                #expect(first.result?["streams"] == [
                    "events": ["new": 3, "updated": 0, "unchanged": 0], "orders": ["new": 6, "updated": 0, "unchanged": 0],
                    "participants": ["new": 6, "updated": 0, "unchanged": 0],
                ])
                #expect(!fake.requests.isEmpty && fake.requests.allSatisfy { $0.token == fake.token })
                let events = try await FetchPipelineTests.all(app, "/api/v1/integrations/\(id)/records?stream=events")
                #expect(events.compactMap { $0["external_id"]?.stringValue }.sorted() == ["1001", "1002", "1003"])
                // Stored in the normalized shape: private_event becomes private, flags become booleans.
                #expect(events.first?["data"]?["private"] == false && events.first?["data"]?["private_event"] == nil)
                #expect(try await FetchPipelineTests.all(app, "/api/v1/events?type=sympla.orders.created").count == 6)

                let unchanged = try await runTask()
                #expect(unchanged.result?["new"] == 0 && unchanged.result?["updated"] == 0 && unchanged.result?["unchanged"] == 15)
                #expect(try await FetchPipelineTests.all(app, "/api/v1/events?integration=\(id)").count == 15, "no events for unchanged records")

                fake.updateEvent(1002, "name", to: "Renamed show")
                let second = try await runTask()
                #expect(second.state == .succeeded)
                #expect(second.result?["new"] == 0 && second.result?["updated"] == 1 && second.result?["unchanged"] == 14)
                let updated = try await FetchPipelineTests.all(app, "/api/v1/events?type=sympla.events.updated&integration=\(id)")
                #expect(updated.count == 1)
                #expect(updated.first?["external_id"] == "1002" && updated.first?["data"]?["name"] == "Renamed show")

                // A wrong key: a clear, permanent failure that names the credentials and never the key.
                let wrongKey = "wrong-key-do-not-print-42"
                let patched = try await app.call(.patch, "/api/v1/credentials/\(credentialsID)", body: ["secret": ["api_key": .string(wrongKey)]])
                #expect(patched.status == .ok)
                let refused = try await runTask()
                #expect(refused.state == .failed)
                #expect(refused.error?.contains("Sympla refused the API key") == true)
                #expect(refused.error?.contains(wrongKey) == false && refused.error?.contains(fake.token) == false)
                #expect(try await app.runtime.runs.attempts(taskID: refused.id).count == 1)
            }
        }
    }
}

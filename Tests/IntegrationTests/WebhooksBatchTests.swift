// Sending many events at once: concurrent single sends share a transaction yet fail one by one; the batch endpoint
// stores all of its events or none.
import Foundation
import IntegratorCore
import Testing

@Suite("Webhooks batches")
struct WebhooksBatchTests {
    @Test("concurrent single sends: each gets its own answer; an unknown tenant fails only its own send")
    func concurrentSends() async throws {
        let receiver = WebhookReceiver()
        try await receiver.run { baseURL in
            try await TestApp.run(realClock: true) { app in
                try await WebhooksTests.configure(app, "together", url: baseURL + "/together")
                let answers = try await withThrowingTaskGroup(of: (Int, JSONResponse).self) { group in
                    for index in 0..<40 {
                        group.addTask {
                            let tenant = index == 17 ? "nobody" : "together"
                            let body: JSONValue = ["tenant_id": .string(tenant), "event_type": "user.created", "payload": ["i": .number(Double(index))]]
                            return (index, try await app.callConcurrently(.post, "/api/v1/webhooks/send", body: body))
                        }
                    }
                    return try await group.reduce(into: [Int: JSONResponse]()) { $0[$1.0] = $1.1 }
                }
                #expect(answers[17]?.status == .notFound)
                let accepted = answers.filter { $0.key != 17 }
                #expect(accepted.allSatisfy { $0.value.status == .accepted }, "\(accepted.values.map(\.status))")
                let ids = Set(accepted.compactMap { $0.value.json["event_id"]?.stringValue })
                #expect(ids.count == 39)
                let arrived = try await withWorker(app, WorkerOptions(queues: ["default"], concurrency: 8)) { _ in
                    try await receiver.waitForHits(path: "/together", count: 39)
                }
                #expect(arrived)
                #expect(receiver.distinctEventIDs == ids)
                #expect(receiver.hits.count == 39)
            }
        }
    }

    @Test("the batch endpoint delivers each event once, and refuses a batch with a bad event whole")
    func batchEndpoint() async throws {
        let receiver = WebhookReceiver()
        try await receiver.run { baseURL in
            try await TestApp.run(realClock: true) { app in
                try await WebhooksTests.configure(app, "bulk", url: baseURL + "/bulk", ["enabled_events": ["order.*"]])
                let events: [JSONValue] = [
                    ["tenant_id": "bulk", "event_type": "order.created", "payload": ["n": 1]],
                    ["tenant_id": "bulk", "event_type": "order.paid", "payload": ["n": 2], "event_id": "order-2"],
                    ["tenant_id": "bulk", "event_type": "user.created", "payload": ["n": 3]],
                    ["tenant_id": "bulk", "event_type": "order.paid", "payload": ["n": 2], "event_id": "order-2"],
                ]
                let sent = try await app.call(.post, "/api/v1/webhooks/send/batch", body: ["events": .array(events)])
                #expect(sent.status == .accepted, "\(sent.text)")
                let results = sent.json["results"]?.arrayValue ?? []
                #expect(results.map { $0["deliveries"]?.intValue } == [1, 1, 0, 1])
                #expect(results[1]["event_id"] == "order-2")
                #expect(results[3]["duplicate"] == true && results[3]["event_id"] == "order-2")
                #expect(results[2]["reason"]?.stringValue?.contains("enabled_events") == true)

                // A bad event names itself and nothing of the batch is stored; neither is a batch to an unknown tenant.
                let bad = try await app.call(
                    .post, "/api/v1/webhooks/send/batch",
                    body: ["events": [["tenant_id": "bulk", "event_type": "order.x", "payload": 1], ["tenant_id": "bulk", "event_type": "", "payload": 1]]])
                #expect(bad.status == .badRequest)
                #expect(bad.errorFields == ["events.1.event_type"])
                let unknown = try await app.call(
                    .post, "/api/v1/webhooks/send/batch",
                    body: ["events": [["tenant_id": "bulk", "event_type": "order.y", "payload": 1], ["tenant_id": "ghost", "event_type": "order.z", "payload": 1]]])
                #expect(unknown.status == .notFound)
                let empty = try await app.call(.post, "/api/v1/webhooks/send/batch", body: ["events": []])
                #expect(empty.errorFields == ["events"])
                #expect(try await WebhooksTests.metrics(app, "bulk")["total_events"] == 3)

                let settled = try await withWorker(app, WorkerOptions(queues: ["default"], concurrency: 4)) { _ in
                    let arrived = try await receiver.waitForHits(path: "/bulk", count: 2)
                    let drained = try await WebhooksTests.drained(app)
                    return arrived && drained
                }
                #expect(settled)
                #expect(receiver.hits.map { $0.header("X-Event-Type") ?? "" }.sorted() == ["order.created", "order.paid"])
            }
        }
    }
}

// Other plugins sending through the webhooks delivery path: raw bodies to their own URLs, signed with an owned tenant's
// secret that an admin can read, a repeated dispatch stored once, and failures that never switch the tenant off.
import Foundation
import Hummingbird
import IntegratorCore
@testable import Plugins
import Testing

@Suite("Webhook dispatch for other plugins")
struct WebhookDispatchTests {
    static let tenantID = "dispatch-tests"

    /// A plugin whose one route dispatches `{"id", "url", "body"}` (body: any JSON, posted as sent) in a transaction.
    static let dispatcher = Plugin(
        id: "dispatcher", name: "Dispatcher", summary: "Dispatches webhook events for tests.",
        routes: [
            PluginRoute(.post, "/dispatch", access: .role(.operator)) { request, _, environment in
                let body = try await environment.readJSON(request)
                let delivery = WebhookDispatch.Delivery(
                    eventID: body["id"]?.stringValue ?? "", eventType: "test.dispatched", targetURL: body["url"]?.stringValue ?? "",
                    body: (body["body"] ?? .null).encodedString())
                let stored = try await environment.transaction { transaction in
                    try await WebhookDispatch(environment: environment).dispatch(
                        [delivery], tenantID: tenantID, owner: "dispatcher", in: transaction)
                }
                return JSONValue.object(["stored": .array(stored.map(JSONValue.string))]).response(status: .accepted)
            }
        ])

    @Test("a dispatched body arrives as sent, signed with the owned tenant's secret; a repeat is stored once; 410 leaves the tenant on")
    func dispatchedDeliveries() async throws {
        let receiver = WebhookReceiver()
        receiver.script(.always(.status(410)), for: "/gone")
        try await receiver.run { baseURL in
            try await TestApp.run(extraPlugins: [Self.dispatcher], realClock: true) { app in
                try await withWorker(app, WorkerOptions(queues: ["default"], concurrency: 4)) { _ in
                    let body: JSONValue = ["text": "olá", "n": 1]
                    let first = try await app.call(.post, "/dispatch", body: ["id": "evt-1", "url": .string("\(baseURL)/hooks"), "body": body])
                    #expect(first.status == .accepted && first.json["stored"] == ["evt-1"], "\(first.text)")
                    let again = try await app.call(.post, "/dispatch", body: ["id": "evt-1", "url": .string("\(baseURL)/hooks"), "body": body])
                    #expect(again.json["stored"] == [], "a repeated id stores nothing: \(again.text)")
                    #expect(try await receiver.waitForHits(event: "evt-1"))

                    let secret = try await app.call(.get, "/api/v1/webhooks/config/\(Self.tenantID)/secret")
                    let key = try #require(secret.json["secret_key"]?.stringValue, "\(secret.text)")
                    #expect(key.hasPrefix("whsec_"))
                    let hit = try #require(receiver.hits(event: "evt-1").first)
                    #expect(hit.path == "/hooks")
                    #expect(try JSONValue.parse(String(decoding: hit.body, as: UTF8.self)) == body, "the body is posted as dispatched")
                    #expect(WebhookSignatures.standardMatches(hit, secrets: [key]) == [key])
                    let viewer = try await app.token(for: .viewer)
                    #expect(try await app.call(.get, "/api/v1/webhooks/config/\(Self.tenantID)/secret", token: viewer).status == .forbidden)

                    let gone = try await app.call(.post, "/dispatch", body: ["id": "evt-gone", "url": .string("\(baseURL)/gone"), "body": body])
                    #expect(gone.status == .accepted)
                    #expect(try await WebhooksTests.waitForState(app, "evt-gone", "dead"))
                    let after = try await app.call(.post, "/dispatch", body: ["id": "evt-2", "url": .string("\(baseURL)/hooks"), "body": body])
                    #expect(after.status == .accepted)
                    #expect(try await receiver.waitForHits(event: "evt-2"), "one URL's 410 does not switch the owned tenant off")
                    #expect(try await WebhooksTests.drained(app))
                    #expect(receiver.hits(event: "evt-1").count == 1)

                    let config = try #require(try await WebhooksTests.config(app, Self.tenantID))
                    #expect(config["owner"] == "dispatcher" && config["active"] == true && config["secret_key"] == WebhooksTests.masked)
                    let delete = try await app.call(.delete, "/api/v1/webhooks/config/\(Self.tenantID)")
                    #expect(delete.status == .conflict, "\(delete.text)")
                }
            }
        }
    }

    @Test("fetched records fan out to configured tenants only: an owned tenant (no URL of its own) gets none of them")
    func ownedTenantsGetNoRecordEvents() async throws {
        let receiver = WebhookReceiver()
        try await receiver.run { baseURL in
            try await TestApp.run(extraPlugins: [Self.dispatcher], realClock: true) { app in
                try await WebhooksTests.configure(app, "records", url: "\(baseURL)/records", ["enabled_events": ["demo.*"]])
                let made = try await app.call(.post, "/dispatch", body: ["id": "evt-owned", "url": .string("\(baseURL)/owned"), "body": ["n": 1]])
                #expect(made.status == .accepted)
                let integration = try await FetchPipelineTests.integration(app, ["name": "shop", "provider": "demo", "config": ["records": 3]])
                try await withWorker(app, WorkerOptions(queues: ["default"], concurrency: 4)) { _ in
                    let summary = try await FetchPipelineTests.fetch(app, integration)
                    #expect(summary.records.new == 3)
                    #expect(try await receiver.waitForHits(path: "/records", count: 3))
                    #expect(try await WebhooksTests.drained(app))
                }
                let owned = try await app.runtime.database.withSQL { sql in
                    try await sql.raw("SELECT event_type FROM webhooks_events WHERE tenant_id = \(bind: Self.tenantID)").all()
                        .map { try $0.decode(column: "event_type", as: String.self) }
                }
                #expect(owned == ["test.dispatched"], "only what its plugin dispatched")
                #expect(receiver.hits(path: "/owned").count == 1)
            }
        }
    }

    @Test("a tenant configured through the API is not taken over by a plugin of the same id")
    func configuredTenantIsNotTakenOver() async throws {
        try await TestApp.run(extraPlugins: [Self.dispatcher]) { app in
            try await WebhooksTests.configure(app, Self.tenantID, url: "http://127.0.0.1:9/hooks")
            let response = try await app.call(.post, "/dispatch", body: ["id": "evt-1", "url": "http://127.0.0.1:9/x", "body": 1])
            #expect(response.status == .conflict, "\(response.text)")
            let event = try await WebhooksTests.event(app, "evt-1")
            #expect(event.status == .notFound, "nothing was stored")
        }
    }
}

// The BLiP plugin against a fake BLiP on 127.0.0.1: the outbox API, runs of a blip-notifications integration, retries,
// a worker dying between send and status write, status callbacks, and secrets kept out of logs, answers and the file.
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import IntegratorCore
import NIOCore
import Logging
import Testing

@testable import Plugins

@Suite("BLiP notifications")
struct BlipTests {
    static let statusSecret = "status-secret-for-blip-tests-0123"

    /// `blip` credentials pointing at the fake, and a blip-notifications integration using them.
    static func setUp(
        _ app: TestApp, _ fake: FakeBlip, _ baseURL: String, key: String? = nil, config: JSONValue = [:]
    ) async throws -> (credentials: String, integration: String) {
        let credentials = try await app.call(
            .post, "/api/v1/credentials",
            body: [
                "name": "blip", "type": "blip", "public": ["base_url": .string(baseURL)],
                "secret": ["key": .string(key ?? fake.key), "status_secret": .string(statusSecret)],
            ])
        let credentialsID = try #require(credentials.json["id"]?.stringValue, "\(credentials.text)")
        let integration = try await app.call(
            .post, "/api/v1/integrations",
            body: ["name": "whatsapp", "provider": "blip-notifications", "credentials": .string(credentialsID), "config": config])
        let integrationID = try #require(integration.json["id"]?.stringValue, "\(integration.text)")
        return (credentialsID, integrationID)
    }

    /// The fake BLiP and a test API, alive while `body` runs; `body` gets the fake's base URL.
    static func withApp(_ fake: FakeBlip, _ body: @Sendable (TestApp, String) async throws -> Void) async throws {
        try await fake.run { baseURL in try await TestApp.run { app in try await body(app, baseURL) } }
    }

    /// A run that plays a worker dying between the sends and the write of their outcomes.
    static func dyingRun(_ app: TestApp, credentialsID: String, integrationID: String) async throws -> BlipRun {
        let credentials = try await app.runtime.environment.credentials.decrypted(id: credentialsID)
        let http = app.runtime.environment.outbound.client(for: credentials, credentialsID: credentialsID, type: BlipCredentials(), logger: Logger(label: "test"))
        return BlipRun(
            environment: app.runtime.environment, integrationID: integrationID, credentialsID: credentialsID, http: http,
            settings: BlipSendSettings(), logger: Logger(label: "test"), afterSend: { throw WorkerDied() })
    }

    struct WorkerDied: Error {}

    static func notify(_ app: TestApp, _ phone: String, externalID: String? = nil, parameters: [String] = ["Ana"]) async throws -> JSONValue {
        var body: [String: JSONValue] = [
            "phone": .string(phone), "template": "pedido_pronto", "namespace": "ns_loja", "parameters": .array(parameters.map(JSONValue.string)),
        ]
        if let externalID { body["external_id"] = .string(externalID) }
        // The machine token: tests move the clock past an access token's life.
        let created = try await app.call(.post, "/api/v1/notifications", body: .object(body), token: TestApp.apiToken)
        #expect(created.status == .created || created.status == .ok, "\(created.text)")
        return created.json
    }

    static func notification(_ app: TestApp, _ id: String?) async throws -> JSONValue {
        try await app.call(.get, "/api/v1/notifications/\(id ?? "")", token: TestApp.apiToken).json
    }

    /// A run of the integration in this process, as `integration.fetch` makes it.
    @discardableResult
    static func run(_ app: TestApp, _ integrationID: String, logger: Logger = Logger(label: "test")) async throws -> FetchSummary {
        try await app.runtime.fetches.run(integrationID: integrationID, logger: logger)
    }

    // MARK: The outbox API

    @Test("creating notifications: the phone normalised, defaults filled, an external id answered with the first one")
    func create() async throws {
        try await TestApp.run { app in
            let created = try await Self.notify(app, "(11) 8765-4321", externalID: "order-42")
            #expect(created["phone"] == "+5511987654321")
            #expect(created["status"] == "pending" && created["language"] == "pt_BR" && created["attempts"] == 0)
            #expect(created["parameters"] == ["Ana"] && created["message_id"]?.stringValue?.count == 36)
            let again = try await app.call(
                .post, "/api/v1/notifications", body: ["phone": "11 98765 4321", "template": "outro", "namespace": "ns", "external_id": "order-42"])
            #expect(again.status == .ok)
            #expect(again.json["id"] == created["id"] && again.json["duplicate"] == true && again.json["template"] == "pedido_pronto")

            let bulk = try await app.call(
                .post, "/api/v1/notifications/bulk",
                body: ["notifications": [
                    ["phone": "+55 21 3456-7890", "template": "t", "namespace": "ns", "external_id": "b-1"],
                    ["phone": "21 99876 5432", "template": "t", "namespace": "ns", "external_id": "order-42"],
                ]])
            #expect(bulk.status == .created)
            let items = bulk.json["items"]?.arrayValue ?? []
            #expect(items.count == 2 && items[1]["id"] == created["id"] && items[1]["duplicate"] == true)

            let filtered = try await app.call(.get, "/api/v1/notifications?status=pending&phone=(21)%203456-7890")
            #expect(filtered.json["items"]?.arrayValue?.map { $0["external_id"] } == ["b-1"])
            let all = try await app.call(.get, "/api/v1/notifications?limit=1")
            #expect(all.json["items"]?.arrayValue?.count == 1 && all.json["next_cursor"]?.stringValue != nil)
            #expect(try await app.call(.get, "/api/v1/notifications/nope").status == .notFound)
            #expect(try await app.call(.get, "/api/v1/notifications?status=lost").errorFields == ["status"])
            #expect(try await app.call(.get, "/api/v1/notifications", token: "").status == .unauthorized)
        }
    }

    @Test("bad input is a 400 naming each field, and nothing is stored")
    func badInput() async throws {
        try await TestApp.run { app in
            let missing = try await app.call(.post, "/api/v1/notifications", body: ["namespace": "ns", "parameters": [1]])
            #expect(missing.status == .badRequest)
            #expect(Set(missing.errorFields) == ["phone", "template", "parameters.0"])
            let badPhone = try await app.call(.post, "/api/v1/notifications", body: ["phone": "(20) 98765-4321", "template": "t", "namespace": "ns"])
            #expect(badPhone.errorFields == ["phone"])
            #expect(badPhone.text.contains("area code") && !badPhone.text.contains("98765"))
            let tooMany = try await app.call(
                .post, "/api/v1/notifications",
                body: ["phone": "11987654321", "template": "t", "namespace": "ns", "parameters": .array((0...20).map { .string("p\($0)") })])
            #expect(tooMany.errorFields == ["parameters"])
            let unknownIntegration = try await app.call(
                .post, "/api/v1/notifications", body: ["phone": "11987654321", "template": "t", "namespace": "ns", "integration": "x", "colour": 1])
            #expect(Set(unknownIntegration.errorFields) == ["integration", "colour"])
            let bulk = try await app.call(
                .post, "/api/v1/notifications/bulk",
                body: ["notifications": [["phone": "11987654321", "template": "t", "namespace": "ns"], ["phone": "123", "template": "t", "namespace": "ns"]]])
            #expect(bulk.errorFields == ["notifications.1.phone"])
            #expect(try await app.call(.post, "/api/v1/notifications/bulk", body: ["notifications": []]).errorFields == ["notifications"])
            #expect(try await app.call(.get, "/api/v1/notifications").json["items"] == [])
        }
    }

    // MARK: Runs

    @Test("a run looks each phone up once, sends the template with the Key header, and fails only the unknown number")
    func run() async throws {
        let fake = FakeBlip()
        fake.unknown("+5511912345678")
        try await Self.withApp(fake) { app, baseURL in
            let (_, integration) = try await Self.setUp(app, fake, baseURL)
            let first = try await Self.notify(app, "11 98765-4321", parameters: ["Ana", "42"])
            let second = try await Self.notify(app, "+55 (11) 98765-4321", parameters: ["Ana", "43"])
            let unknown = try await Self.notify(app, "11 91234-5678")
            let landline = try await Self.notify(app, "(21) 3456-7890")
            let summary = try await Self.run(app, integration)
            #expect(summary.records.new == 0, "a push provider stores no records")

            let sent = try await Self.notification(app, first["id"]?.stringValue)
            #expect(sent["status"] == "sent" && sent["attempts"] == 1 && sent["last_error"] == .null && sent["sent_at"] != .null)
            #expect(try await Self.notification(app, second["id"]?.stringValue)["status"] == "sent")
            #expect(try await Self.notification(app, landline["id"]?.stringValue)["status"] == "sent")
            let failed = try await Self.notification(app, unknown["id"]?.stringValue)
            #expect(failed["status"] == "failed")
            #expect(failed["last_error"] == "WhatsApp has no account for this number (67 Resource not found)")

            // One lookup per phone, in BLiP's command shape.
            #expect(fake.lookups.count == 3)
            let lookup = try #require(fake.lookups.first { $0.body["uri"] == "lime://wa.gw.msging.net/accounts/+5511987654321" })
            #expect(lookup.body["method"] == "get" && lookup.body["to"] == "postmaster@wa.gw.msging.net")
            #expect(lookup.body["id"]?.stringValue?.isEmpty == false)
            #expect(fake.requests.allSatisfy { $0.authorization == "Key \(fake.key)" })
            // One message each, sent with the id the notification shows, to the looked-up account.
            #expect(fake.messages.count == 3)
            let message = try #require(fake.messages.first { $0.body["id"] == sent["message_id"] })
            #expect(message.body["to"] == "5511987654321@wa.gw.msging.net" && message.body["type"] == "application/json")
            #expect(message.body["content"]?["template"]?["name"] == "pedido_pronto")
            #expect(message.body["content"]?["template"]?["namespace"] == "ns_loja")
            let parameters = message.body["content"]?["template"]?["components"]?.arrayValue?.first?["parameters"]
            #expect(parameters == [["type": "text", "text": "Ana"], ["type": "text", "text": "42"]])

            // A second run sends nothing again; a new notification to a known phone needs no lookup.
            try await Self.run(app, integration)
            #expect(fake.messages.count == 3)
            _ = try await Self.notify(app, "11987654321")
            try await Self.run(app, integration)
            #expect(fake.messages.count == 4 && fake.lookups.count == 3)
            // After the cache's 7 days, the phone is looked up again.
            app.clock.advance(by: 7 * 86_400 + 1)
            _ = try await Self.notify(app, "11987654321")
            try await Self.run(app, integration)
            #expect(fake.lookups.count == 4)
        }
    }

    @Test("a 429 with Retry-After is waited out on the injected clock and the message goes once")
    func rateLimited() async throws {
        let fake = FakeBlip()
        fake.fail("/messages", status: 429, headers: ["Retry-After": "7"])
        try await Self.withApp(fake) { app, baseURL in
            let created = try await Self.notify(app, "11987654321")
            let sleeper = ManualSleeper()
            let outbound = OutboundHTTP(options: .init(allowedRanges: [IPAddressRange("127.0.0.0/8")!], sleeper: sleeper), logger: Logger(label: "test"))
            let credentials = CredentialValues(typeID: "blip", publicValues: ["base_url": .string(baseURL)], secretValues: ["key": Secret(fake.key)])
            let run = BlipRun(
                environment: app.runtime.environment, integrationID: "i1", credentialsID: "c1",
                http: outbound.client(for: credentials, credentialsID: "c1", type: BlipCredentials(), logger: Logger(label: "test")),
                settings: BlipSendSettings(), logger: Logger(label: "test"))
            let summary = try await run.sendOutbox()
            await outbound.shutdown()
            #expect(summary.sent == 1)
            #expect(sleeper.waits == [7])
            #expect(fake.messages.count == 2 && fake.messageIDs == [created["message_id"]?.stringValue ?? ""])
            #expect(try await Self.notification(app, created["id"]?.stringValue)["status"] == "sent")
        }
    }

    @Test("a 5xx leaves the notification pending with its error until its backoff passes; the next try reuses its id")
    func serverError() async throws {
        let fake = FakeBlip()
        fake.fail("/messages", status: 503)
        try await Self.withApp(fake) { app, baseURL in
            let (_, integration) = try await Self.setUp(app, fake, baseURL, config: ["max_attempts": 2])
            let created = try await Self.notify(app, "11987654321")
            let id = created["id"]?.stringValue
            try await Self.run(app, integration)
            let waiting = try await Self.notification(app, id)
            #expect(waiting["status"] == "pending" && waiting["attempts"] == 1)
            #expect(waiting["last_error"] == "BLiP failed on the message (HTTP 503)")
            #expect(waiting["next_attempt_at"] == .string(app.clock.now().addingTimeInterval(30).apiString))
            try await Self.run(app, integration)
            #expect(fake.messages.count == 1, "not due yet")
            app.clock.advance(by: 31)
            try await Self.run(app, integration)
            #expect(try await Self.notification(app, id)["status"] == "sent")
            #expect(fake.messages.count == 2 && fake.messageIDs.count == 1)

            // Out of tries: failed for good, with how many.
            fake.fail("/messages", status: 500, times: 2)
            let doomed = try await Self.notify(app, "11987654322")
            try await Self.run(app, integration)
            app.clock.advance(by: 31)
            try await Self.run(app, integration)
            let failed = try await Self.notification(app, doomed["id"]?.stringValue)
            #expect(failed["status"] == "failed" && failed["last_error"] == "gave up after 2 attempts: BLiP failed on the message (HTTP 500)")
        }
    }

    @Test("a worker that dies between the send and the status write does not send twice")
    func crashBetweenSendAndWrite() async throws {
        let fake = FakeBlip()
        try await Self.withApp(fake) { app, baseURL in
            let (credentialsID, integration) = try await Self.setUp(app, fake, baseURL)
            var created: [JSONValue] = []
            for index in 0..<20 { created.append(try await Self.notify(app, "1198765\(String(format: "%04d", index))")) }
            let dying = try await Self.dyingRun(app, credentialsID: credentialsID, integrationID: integration)
            await #expect(throws: WorkerDied.self) { try await dying.sendOutbox() }
            #expect(fake.messages.count == 20)
            for item in created { #expect(try await Self.notification(app, item["id"]?.stringValue)["status"] == "pending") }

            // The claim holds until its lease ends: a run now takes nothing.
            try await Self.run(app, integration)
            #expect(fake.messages.count == 20)
            app.clock.advance(by: 601)
            try await Self.run(app, integration)
            for item in created { #expect(try await Self.notification(app, item["id"]?.stringValue)["status"] == "sent") }
            // Posted again after the crash, but with the same ids: BLiP received 20 messages, one per phone.
            #expect(fake.messages.count == 40)
            #expect(fake.messageIDs == Set(created.compactMap { $0["message_id"]?.stringValue }))
            for index in 0..<20 { #expect(fake.messageIDs(to: "551198765\(String(format: "%04d", index))@wa.gw.msging.net").count == 1) }
        }
    }

    @Test("two runs at once never take the same notification")
    func concurrentRuns() async throws {
        let fake = FakeBlip()
        try await Self.withApp(fake) { app, baseURL in
            let (_, integration) = try await Self.setUp(app, fake, baseURL, config: ["batch_size": 100])
            let bodies: [JSONValue] = (0..<300).map { index in
                ["phone": .string("119\(String(format: "%08d", index))"), "template": "t", "namespace": "ns"]
            }
            #expect(try await app.call(.post, "/api/v1/notifications/bulk", body: ["notifications": .array(bodies)]).status == .created)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<4 { group.addTask { try await Self.run(app, integration) } }
                try await group.waitForAll()
            }
            #expect(fake.messages.count == 300, "each notification posted once")
            #expect(fake.messageIDs.count == 300)
            let sent = try await app.call(.get, "/api/v1/notifications?status=sent&limit=500")
            #expect(sent.json["items"]?.arrayValue?.count == 300)
        }
    }

    @Test("a refused key fails the notification for good, stops the run, and appears nowhere")
    func refusedKey() async throws {
        let fake = FakeBlip()
        let wrongKey = "d3Jvbmcta2V5LXRoYXQtbXVzdC1ub3QtbGVhaw=="
        try await Self.withApp(fake) { app, baseURL in
            let (credentialsID, integration) = try await Self.setUp(app, fake, baseURL, key: wrongKey)
            let created = try await Self.notify(app, "11987654321")
            let log = CapturedLog()
            await #expect(throws: FetchFailure.self) { try await Self.run(app, integration, logger: log.logger) }
            let failed = try await Self.notification(app, created["id"]?.stringValue)
            #expect(failed["status"] == "failed")
            #expect(failed["last_error"] == "BLiP refused the key (HTTP 401); check the credentials' key")
            let tested = try await app.call(.post, "/api/v1/credentials/\(credentialsID)/test")
            #expect(tested.json["ok"] == false)
            let shown = try await app.call(.get, "/api/v1/credentials/\(credentialsID)")
            for text in [log.text, tested.text, shown.text, failed.encodedString()] {
                #expect(!text.contains(wrongKey) && !text.contains(Self.statusSecret))
            }
        }
    }

    @Test("the provider offers a schedule every 5 minutes; creating an integration answers with it, ready to post")
    func suggestedSchedule() async throws {
        let fake = FakeBlip()
        try await Self.withApp(fake) { app, baseURL in
            let provider = try await app.call(.get, "/api/v1/providers/blip-notifications")
            #expect(provider.json["suggested_schedule"] == "*/5 * * * *")
            #expect(try await app.call(.get, "/api/v1/providers/sympla").json["suggested_schedule"] == nil)

            let credentials = try await app.call(
                .post, "/api/v1/credentials",
                body: ["name": "blip", "type": "blip", "public": ["base_url": .string(baseURL)], "secret": ["key": .string(fake.key)]])
            let created = try await app.call(
                .post, "/api/v1/integrations",
                body: ["name": "whatsapp", "provider": "blip-notifications", "credentials": credentials.json["id"] ?? .null])
            #expect(created.status == .created, "\(created.text)")
            let offer = try #require(created.json["suggested_schedule"], "\(created.text)")
            #expect(offer["method"] == "POST" && offer["path"] == "/api/v1/schedules")
            let body = try #require(offer["body"])
            #expect(body["integration"] == created.json["id"] && body["crontab"]?["expression"] == "*/5 * * * *")
            // Posting the offer as it is creates the schedule.
            let schedule = try await app.call(.post, "/api/v1/schedules", body: body)
            #expect(schedule.status == .created, "\(schedule.text)")
            #expect(schedule.json["integration"] == created.json["id"] || schedule.json["integration_id"] == created.json["id"], "\(schedule.text)")

            let demo = try await app.call(.post, "/api/v1/integrations", body: ["name": "demo-1", "provider": "demo"])
            #expect(demo.status == .created && demo.json["suggested_schedule"] == nil)
        }
    }

    @Test("the connection test reads the bot's account")
    func connectionTest() async throws {
        let fake = FakeBlip()
        try await Self.withApp(fake) { app, baseURL in
            let (credentialsID, _) = try await Self.setUp(app, fake, baseURL)
            let tested = try await app.call(.post, "/api/v1/credentials/\(credentialsID)/test")
            #expect(tested.json == ["ok": true, "message": "connected as Loja Teste"])
            #expect(fake.requests.last?.body["uri"] == "/account" && fake.requests.last?.authorization == "Key \(fake.key)")
        }
    }

    // MARK: Status callbacks

    @Test("status callbacks move a notification forward only, and need the credentials' secret")
    func statusCallbacks() async throws {
        let fake = FakeBlip()
        try await Self.withApp(fake) { app, baseURL in
            let (credentialsID, integration) = try await Self.setUp(app, fake, baseURL)
            let created = try await Self.notify(app, "11987654321")
            let id = created["id"]?.stringValue
            let messageID = try #require(created["message_id"]?.stringValue)
            try await Self.run(app, integration)

            func callback(_ event: String, secret: String? = BlipTests.statusSecret, reason: JSONValue? = nil) async throws -> JSONResponse {
                var body: [String: JSONValue] = ["id": .string(messageID), "from": "5511987654321@wa.gw.msging.net", "to": "loja@msging.net", "event": .string(event)]
                if let reason { body["reason"] = reason }
                let query = "credentials=\(credentialsID)" + (secret.map { "&secret=\($0)" } ?? "")
                return try await app.call(.post, "/api/v1/blip/status?\(query)", body: .object(body), token: "")
            }
            #expect(try await callback("received", secret: nil).status == .unauthorized)
            #expect(try await callback("received", secret: "not-the-secret-at-all").status == .unauthorized)
            #expect(try await Self.notification(app, id)["status"] == "sent")

            #expect(try await callback("accepted").json["status"] == "sent")
            #expect(try await callback("received").json["status"] == "delivered")
            #expect(try await callback("consumed").json["status"] == "read")
            // Late and out of order: nothing moves back.
            #expect(try await callback("received").json["status"] == "read")
            #expect(try await callback("failed", reason: ["code": 42, "description": "late"]).json["status"] == "read")
            let read = try await Self.notification(app, id)
            #expect(read["status"] == "read" && read["delivered_at"] != .null && read["read_at"] != .null)
            #expect(try await callback("lost").errorFields == ["event"])

            // A failure reported for a sent message fails it, with BLiP's reason.
            let other = try await Self.notify(app, "11987654322")
            try await Self.run(app, integration)
            let body: JSONValue = ["id": other["message_id"] ?? .null, "event": "failed", "reason": ["code": 42, "description": "Destination not found"]]
            let header = try await app.client.execute(
                uri: "/api/v1/blip/status?credentials=\(credentialsID)", method: .post,
                headers: [.contentType: "application/json", HTTPField.Name("X-Blip-Secret")!: Self.statusSecret],
                body: ByteBuffer(string: body.encodedString()))
            #expect(header.status == .ok && String(buffer: header.body).contains(#""status":"failed""#))
            #expect(try await Self.notification(app, other["id"]?.stringValue)["last_error"] == "BLiP reported the message failed (42 Destination not found)")
            #expect(try await callback("received").status == .ok)
            let unknown = try await app.call(
                .post, "/api/v1/blip/status?credentials=\(credentialsID)&secret=\(Self.statusSecret)", body: ["id": "someone-else", "event": "received"],
                token: "")
            #expect(unknown.status == .ok && unknown.json["status"] == .null)
        }
    }

    // MARK: Secrets

    @Test("the key and the status secret never reach answers, logs or the database file")
    func secretsStayHidden() async throws {
        let fake = FakeBlip(key: "c2VjcmV0LWJsaXAta2V5LXRoYXQtbXVzdC1oaWRl")
        try await Self.withApp(fake) { app, baseURL in
            let (credentialsID, integration) = try await Self.setUp(app, fake, baseURL)
            _ = try await Self.notify(app, "11987654321")
            let log = CapturedLog()
            try await Self.run(app, integration, logger: log.logger)
            #expect(log.text.contains("blip notifications run finished"))
            let texts = [
                log.text, try await app.call(.get, "/api/v1/credentials/\(credentialsID)").text,
                try await app.call(.get, "/api/v1/notifications").text, try await app.call(.get, "/api/v1/integrations/\(integration)").text,
            ]
            for text in texts {
                #expect(!text.contains(fake.key) && !text.contains(Self.statusSecret))
            }
            if case .sqlite(let path) = app.runtime.database.location {
                for file in [path, path + "-wal"] {
                    guard let bytes = FileManager.default.contents(atPath: file) else { continue }
                    #expect(bytes.range(of: Data(fake.key.utf8)) == nil && bytes.range(of: Data(Self.statusSecret.utf8)) == nil, "\(file)")
                }
            }
        }
    }
}

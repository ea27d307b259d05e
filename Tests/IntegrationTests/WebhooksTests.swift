// The outbound webhooks plugin through its API, a real worker and beat, and a real receiver on 127.0.0.1: both
// signature schemes checked by an implementation of our own, auth headers, retries, dead letters and redrive,
// Retry-After on the manual clock, 410 Gone, idempotency, event patterns, bad input, secrets, roles, engine events.
import Crypto
import Foundation
import HTTPTypes
import IntegratorCore
import NIOCore
import SQLKit
import Testing

/// Signature checks written from the two specifications, independent of the plugin's code.
enum WebhookSignatures {
    /// The Standard Webhooks key: the base64-decoded part after `whsec_`, or the secret's UTF-8 bytes.
    static func standardKey(_ secret: String) -> SymmetricKey {
        if secret.hasPrefix("whsec_"), let decoded = Data(base64Encoded: String(secret.dropFirst("whsec_".count))) {
            return SymmetricKey(data: decoded)
        }
        return SymmetricKey(data: Data(secret.utf8))
    }

    /// base64 HMAC-SHA256 of "{id}.{timestamp}.{body}".
    static func standard(id: String, timestamp: String, body: [UInt8], secret: String) -> String {
        var signed = Data("\(id).\(timestamp).".utf8)
        signed.append(contentsOf: body)
        return Data(HMAC<SHA256>.authenticationCode(for: signed, using: standardKey(secret))).base64EncodedString()
    }

    /// `sha256=` and the lowercase hex HMAC-SHA256 of the raw body, keyed with the secret's UTF-8 bytes.
    static func seed(body: [UInt8], secret: String) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: Data(secret.utf8)))
        return "sha256=" + mac.map { String(format: "%02x", $0) }.joined()
    }

    /// For each `v1,<base64>` entry of the hit's `webhook-signature` header, the first of `secrets` it verifies
    /// with (nil when none does, or when the entry is not a v1 signature).
    static func standardMatches(_ hit: WebhookReceiver.Hit, secrets: [String]) -> [String?] {
        guard let header = hit.header("webhook-signature"), let id = hit.header("webhook-id"),
            let timestamp = hit.header("webhook-timestamp")
        else { return [] }
        return header.split(separator: " ").map { entry in
            let parts = entry.split(separator: ",", maxSplits: 1)
            guard parts.count == 2, parts[0] == "v1", let given = Data(base64Encoded: String(parts[1])) else { return nil }
            return secrets.first { secret in
                Data(base64Encoded: standard(id: id, timestamp: timestamp, body: hit.body, secret: secret)) == given
            }
        }
    }

    /// For each `sha256=<hex>` entry of the hit's `X-Webhook-Signature` header, the first of `secrets` it verifies with.
    static func seedMatches(_ hit: WebhookReceiver.Hit, secrets: [String]) -> [String?] {
        guard let header = hit.header("X-Webhook-Signature") else { return [] }
        return header.split(separator: " ").map { entry in
            secrets.first { seed(body: hit.body, secret: $0) == entry.lowercased() }
        }
    }
}

@Suite("Webhooks")
struct WebhooksTests {
    /// Retries quick enough for the real clock: 50 ms, then 100 ms, … at most 1 s, no jitter.
    static func quickRetries(maxRetries: Int = 5) -> JSONValue {
        [
            "max_retries": .number(Double(maxRetries)), "initial_delay_seconds": 0.05, "backoff_multiplier": 2.0,
            "max_delay_seconds": 1, "jitter": false,
        ]
    }

    static let masked: JSONValue = "********"

    /// Configures a tenant (upsert) and insists on 200; `fields` are added to (or replace) the required ones.
    @discardableResult
    static func configure(
        _ app: TestApp, _ tenant: String, url: String, secret: String? = "tenant-secret-0001", _ fields: [String: JSONValue] = [:]
    ) async throws -> JSONValue {
        var body: [String: JSONValue] = ["tenant_id": .string(tenant), "base_url": .string(url)]
        if let secret { body["secret_key"] = .string(secret) }
        body.merge(fields) { _, new in new }
        let response = try await app.call(.post, "/api/v1/webhooks/configure", body: .object(body))
        guard response.status == .ok else { throw TestSetupError("configuring \(tenant) failed: \(response.status) \(response.text)") }
        return response.json
    }

    /// Sends an event and insists on 202 with one delivery; returns its id.
    static func send(
        _ app: TestApp, _ tenant: String, _ type: String = "user.created", payload: JSONValue = ["user_id": "usr_1"],
        _ fields: [String: JSONValue] = [:]
    ) async throws -> String {
        var body: [String: JSONValue] = ["tenant_id": .string(tenant), "event_type": .string(type), "payload": payload]
        body.merge(fields) { _, new in new }
        let response = try await app.call(.post, "/api/v1/webhooks/send", body: .object(body))
        guard response.status == .accepted, response.json["deliveries"] == 1, let id = response.json["event_id"]?.stringValue else {
            throw TestSetupError("sending \(type) to \(tenant) failed: \(response.status) \(response.text)")
        }
        return id
    }

    /// A request with headers of the test's choosing and a raw body; as the admin unless `token` says otherwise
    /// (the empty string sends none).
    static func post(
        _ app: TestApp, _ path: String, headers: [String: String] = [:], body: [UInt8], token: String? = nil
    ) async throws -> JSONResponse {
        var fields: HTTPFields = [.contentType: "application/json"]
        let bearer = token ?? app.adminToken
        if !bearer.isEmpty { fields[.authorization] = "Bearer \(bearer)" }
        for (name, value) in headers { fields[HTTPField.Name(name)!] = value }
        let response = try await app.client.execute(uri: path, method: .post, headers: fields, body: ByteBuffer(bytes: body))
        return JSONResponse(status: response.status, headers: response.headers, text: String(buffer: response.body))
    }

    static func event(_ app: TestApp, _ id: String) async throws -> JSONResponse {
        try await app.call(.get, "/api/v1/webhooks/events/\(id)")
    }

    /// The event's (only) delivery, as GET events/{id} shows it.
    static func delivery(_ app: TestApp, _ id: String) async throws -> JSONValue? {
        try await event(app, id).json["deliveries"]?.arrayValue?.first
    }

    static func waitForState(_ app: TestApp, _ id: String, _ state: String, attempts: Int? = nil, upTo seconds: Double = 20) async throws -> Bool {
        try await eventually(seconds) {
            let delivery = try await delivery(app, id)
            return delivery?["state"]?.stringValue == state && (attempts == nil || delivery?["attempt_count"]?.intValue == attempts)
        }
    }

    static func metrics(_ app: TestApp, _ tenant: String) async throws -> JSONValue {
        try await app.call(.get, "/api/v1/webhooks/metrics/\(tenant)").json
    }

    static func config(_ app: TestApp, _ tenant: String) async throws -> JSONValue? {
        let page = try await app.call(.get, "/api/v1/webhooks/configs?limit=200")
        return page.json["items"]?.arrayValue?.first { $0["tenant_id"]?.stringValue == tenant }
    }

    /// Waits until no delivery task is queued or running: every request the worker was going to make has been made.
    static func drained(_ app: TestApp) async throws -> Bool {
        try await eventually { try await app.runtime.broker.stats().allSatisfy { $0.ready == 0 && $0.inFlight == 0 } }
    }

    static func date(_ value: JSONValue?) -> Date? { value?.stringValue.flatMap { Date(iso8601: $0) } }

    // MARK: 1. Signatures

    @Test("both signatures verify with a plain secret and a whsec_ secret; a rotated secret signs with both for a while")
    func signaturesVerify() async throws {
        let receiver = WebhookReceiver()
        try await receiver.run { baseURL in
            try await TestApp.run(realClock: true) { app in
                let plain = "plain-sécret-with-ünicode-42"
                let whsec = "whsec_" + Data((0..<32).map { UInt8(($0 * 37 + 11) % 256) }).base64EncodedString()
                let wrong = "not-the-secret"
                try await Self.configure(app, "plain", url: "\(baseURL)/plain", secret: plain)
                try await Self.configure(app, "standard", url: "\(baseURL)/standard", secret: whsec)
                let payload: JSONValue = ["user_id": "usr_12345", "name": "João Silva", "n": 3]
                try await withWorker(app, WorkerOptions(queues: ["default"], concurrency: 4)) { _ in
                    for (tenant, secret) in [("plain", plain), ("standard", whsec)] {
                        let id = try await Self.send(app, tenant, payload: payload, ["context": ["source": "api_v1"]])
                        #expect(try await receiver.waitForHits(event: id))
                        let hit = try #require(receiver.hits(event: id).first)
                        #expect(hit.path == "/\(tenant)")
                        #expect(hit.count(of: "X-Webhook-Signature") == 1 && hit.count(of: "webhook-signature") == 1)
                        #expect(WebhookSignatures.seedMatches(hit, secrets: [wrong, secret]) == [secret], "\(tenant): sha256")
                        #expect(WebhookSignatures.standardMatches(hit, secrets: [wrong, secret]) == [secret], "\(tenant): Standard Webhooks")
                        // The identity headers agree with each other and with the body.
                        #expect(hit.header("webhook-id") == id && hit.header("X-Event-ID") == id)
                        #expect(hit.header("X-Tenant-ID") == tenant && hit.header("X-Event-Type") == "user.created")
                        #expect(hit.header("content-type")?.hasPrefix("application/json") == true)
                        let timestamp = try #require(hit.header("webhook-timestamp").flatMap(Double.init))
                        #expect(hit.header("X-Timestamp") == hit.header("webhook-timestamp"))
                        #expect(abs(timestamp - Date().timeIntervalSince1970) < 300)
                        let body = hit.json
                        #expect(body["event_id"] == .string(id) && body["tenant_id"] == .string(tenant))
                        #expect(body["event_type"] == "user.created" && body["severity"] == "Medium")
                        #expect(body["payload"] == payload && body["context"] == ["source": "api_v1"])
                        #expect(Self.date(body["timestamp"]) != nil)
                    }

                    // Rotation: the new secret signs, and the previous one still does beside it.
                    let first = "rotation-secret-A"
                    let second = "rotation-secret-B"
                    try await Self.configure(app, "rotating", url: "\(baseURL)/rotating", secret: first)
                    let before = try await Self.send(app, "rotating")
                    #expect(try await receiver.waitForHits(event: before))
                    let beforeHit = try #require(receiver.hits(event: before).first)
                    #expect(WebhookSignatures.seedMatches(beforeHit, secrets: [first, second]) == [first])
                    #expect(WebhookSignatures.standardMatches(beforeHit, secrets: [first, second]) == [first])

                    let rotated = try await Self.configure(app, "rotating", url: "\(baseURL)/rotating", secret: second)
                    #expect(rotated["secret_key"] == Self.masked)
                    let after = try await Self.send(app, "rotating")
                    #expect(try await receiver.waitForHits(event: after))
                    let afterHit = try #require(receiver.hits(event: after).first)
                    let seedMatches = WebhookSignatures.seedMatches(afterHit, secrets: [first, second])
                    let standardMatches = WebhookSignatures.standardMatches(afterHit, secrets: [first, second])
                    #expect(
                        seedMatches.count == 2 && Set(seedMatches.compactMap { $0 }) == [first, second],
                        "\(afterHit.header("X-Webhook-Signature") ?? "none")")
                    #expect(
                        standardMatches.count == 2 && Set(standardMatches.compactMap { $0 }) == [first, second],
                        "\(afterHit.header("webhook-signature") ?? "none")")
                }
            }
        }
    }

    // MARK: 2. Auth and headers

    @Test("each auth type arrives as configured; default and custom headers arrive; none replaces the signature headers")
    func authAndHeaders() async throws {
        let receiver = WebhookReceiver()
        try await receiver.run { baseURL in
            try await TestApp.run(realClock: true) { app in
                let secret = "headers-secret-0001"
                let tenants: [(String, JSONValue)] = [
                    ("bearer", ["auth_type": "Bearer", "token": "bearer-token-1"]),
                    ("bearer-named", ["auth_type": "Bearer", "token": "bearer-token-2", "header_name": "X-Auth"]),
                    ("apikey", ["auth_type": "ApiKey", "token": "api-key-3", "header_name": "X-API-Key"]),
                    ("basic", ["auth_type": "Basic", "token": "ana:pa:ss word"]),
                ]
                for (tenant, auth) in tenants {
                    let view = try await Self.configure(app, tenant, url: "\(baseURL)/\(tenant)", secret: secret, ["auth_config": auth])
                    #expect(view["auth_config"]?["auth_type"] == auth["auth_type"])
                    #expect(view["auth_config"]?["token"] == Self.masked)
                }
                try await Self.configure(
                    app, "headers", url: "\(baseURL)/headers", secret: secret,
                    ["default_headers": ["X-API-Version": "v2", "User-Agent": "PyTake-Webhook/1.0"]])
                try await withWorker(app, WorkerOptions(queues: ["default"], concurrency: 4)) { _ in
                    var ids: [String: String] = [:]
                    for (tenant, _) in tenants { ids[tenant] = try await Self.send(app, tenant) }
                    let headersID = try await Self.send(
                        app, "headers", "order.created",
                        [
                            "custom_headers": [
                                "X-Event-Priority": "high", "X-Webhook-Signature": "sha256=forged", "webhook-signature": "v1,Zm9yZ2Vk",
                                "X-Event-ID": "forged-id", "webhook-id": "forged-id", "X-Tenant-ID": "someone-else",
                            ]
                        ])
                    ids["headers"] = headersID
                    for id in ids.values { #expect(try await receiver.waitForHits(event: id)) }

                    let bearer = try #require(receiver.hits(path: "/bearer").first)
                    #expect(bearer.header("Authorization") == "Bearer bearer-token-1")
                    let named = try #require(receiver.hits(path: "/bearer-named").first)
                    #expect(named.header("X-Auth") == "Bearer bearer-token-2")
                    #expect(named.header("Authorization") == nil)
                    let apiKey = try #require(receiver.hits(path: "/apikey").first)
                    #expect(apiKey.header("X-API-Key") == "api-key-3")
                    #expect(apiKey.header("Authorization") == nil)
                    let basic = try #require(receiver.hits(path: "/basic").first)
                    #expect(basic.header("Authorization") == "Basic " + Data("ana:pa:ss word".utf8).base64EncodedString())
                    for hit in [bearer, named, apiKey, basic] {
                        #expect(WebhookSignatures.seedMatches(hit, secrets: [secret]) == [secret])
                    }

                    let headers = try #require(receiver.hits(path: "/headers").first)
                    #expect(headers.header("X-API-Version") == "v2")
                    #expect(headers.header("User-Agent") == "PyTake-Webhook/1.0")
                    #expect(headers.header("X-Event-Priority") == "high")
                    #expect(headers.header("Authorization") == nil)
                    // The identity and signature headers are the plugin's, each sent once, whatever custom_headers said.
                    for name in ["X-Webhook-Signature", "webhook-signature", "X-Event-ID", "webhook-id", "X-Tenant-ID"] {
                        #expect(headers.count(of: name) == 1, "\(name): \(headers.header(name) ?? "none")")
                    }
                    #expect(WebhookSignatures.seedMatches(headers, secrets: [secret]) == [secret])
                    #expect(WebhookSignatures.standardMatches(headers, secrets: [secret]) == [secret])
                    #expect(headers.header("X-Event-ID") == headersID && headers.header("webhook-id") == headersID)
                    #expect(headers.header("X-Tenant-ID") == "headers")
                    #expect(headers.header("X-Event-Type") == "order.created")
                }
            }
        }
    }

    // MARK: 3. Retries

    @Test("a receiver failing twice then answering 200 gets exactly three requests with one webhook-id and one body")
    func failsTwiceThenSucceeds() async throws {
        let receiver = WebhookReceiver()
        receiver.script(.failing(2, with: .status(500)))
        try await receiver.run { baseURL in
            try await TestApp.run(realClock: true) { app in
                let secret = "retry-secret-0001"
                try await Self.configure(app, "flaky", url: "\(baseURL)/flaky", secret: secret, ["retry_policy": Self.quickRetries()])
                try await withWorker(app, WorkerOptions(queues: ["default"], concurrency: 4)) { _ in
                    let id = try await Self.send(app, "flaky")
                    #expect(try await Self.waitForState(app, id, "succeeded"))
                    // Succeeded is recorded after the third answer, so no request can still be on its way.
                    #expect(try await Self.drained(app))
                    let hits = receiver.hits(event: id)
                    #expect(hits.count == 3)
                    #expect(Set(hits.compactMap { $0.header("webhook-id") }) == [id])
                    #expect(Set(hits.map(\.body)).count == 1, "the body is byte-identical on every attempt")
                    #expect(hits.allSatisfy { WebhookSignatures.standardMatches($0, secrets: [secret]) == [secret] })
                    // Without jitter the delays are 50 ms then 100 ms; a retry never comes early.
                    if hits.count == 3 {
                        #expect(hits[1].receivedAt.timeIntervalSince(hits[0].receivedAt) >= 0.045)
                        #expect(hits[2].receivedAt.timeIntervalSince(hits[1].receivedAt) >= 0.095)
                    }

                    let shown = try await Self.event(app, id).json
                    #expect(shown["event"]?["id"] == .string(id) && shown["event"]?["tenant_id"] == "flaky")
                    #expect(shown["event"]?["event_type"] == "user.created" && shown["event"]?["severity"] == "Medium")
                    #expect(shown["event"]?["payload"] == ["user_id": "usr_1"])
                    #expect(Self.date(shown["event"]?["created_at"]) != nil)
                    let delivery = try #require(shown["deliveries"]?.arrayValue?.first)
                    #expect(delivery["id"] == .string(id))
                    #expect(delivery["url"] == .string("\(baseURL)/flaky"))
                    #expect(delivery["state"] == "succeeded")
                    #expect(delivery["attempt_count"] == 3)
                    #expect(delivery["next_attempt_at"] == .null)
                    let attempts = delivery["attempts"]?.arrayValue ?? []
                    #expect(attempts.map { $0["attempt"] } == [1, 2, 3])
                    #expect(attempts.map { $0["status_code"] } == [500, 500, 200])
                    #expect(attempts.allSatisfy { $0["duration_ms"]?.doubleValue != nil && Self.date($0["attempted_at"]) != nil })
                    #expect(attempts.first?["response_body"]?.stringValue?.contains("received") == true)

                    let metrics = try await Self.metrics(app, "flaky")
                    #expect(metrics["total_events"] == 1)
                    #expect(metrics["successful_events"] == 1)
                    #expect(metrics["failed_events"] == 0)
                    #expect(metrics["pending_retries"] == 0)
                    #expect(metrics["dead_letter_count"] == 0)
                    #expect((metrics["avg_response_time_ms"]?.doubleValue ?? -1) >= 0)
                    #expect(Self.date(metrics["last_updated"]) != nil)
                }
            }
        }
    }

    @Test("a redirect is a failure and is not followed; an answer slower than timeout_seconds is a failure")
    func redirectAndTimeout() async throws {
        let receiver = WebhookReceiver()
        receiver.script(.always(.status(302, headers: ["Location": "/elsewhere"])), for: "/moved")
        receiver.script(.always(Reply(status: 200, delay: .milliseconds(1500))), for: "/slow")
        try await receiver.run { baseURL in
            try await TestApp.run(realClock: true) { app in
                try await Self.configure(
                    app, "odd", url: "\(baseURL)/moved", ["retry_policy": Self.quickRetries(maxRetries: 0), "timeout_seconds": 1])
                try await withWorker(app, WorkerOptions(queues: ["default"], concurrency: 4)) { _ in
                    let moved = try await Self.send(app, "odd")
                    let slow = try await Self.send(app, "odd", "user.created", ["target_url": .string("\(baseURL)/slow")])
                    #expect(try await Self.waitForState(app, moved, "dead"))
                    #expect(try await Self.waitForState(app, slow, "dead"))
                    #expect(try await Self.drained(app))
                    #expect(receiver.hits(path: "/moved").count == 1)
                    #expect(receiver.hits(path: "/elsewhere").isEmpty)
                    #expect(receiver.hits(path: "/slow").count == 1)
                    let movedAttempt = try await Self.delivery(app, moved)?["attempts"]?.arrayValue?.first
                    #expect(movedAttempt?["status_code"] == 302)
                    let slowAttempt = try await Self.delivery(app, slow)?["attempts"]?.arrayValue?.first
                    #expect(slowAttempt?["status_code"] == .null)
                    #expect(slowAttempt?["error"]?.stringValue?.isEmpty == false)
                    #expect(try await Self.metrics(app, "odd")["dead_letter_count"] == 2)
                }
            }
        }
    }

    // MARK: 4. Dead letters, retry and redrive

    @Test("an always-failing receiver gets 1 + max_retries requests, then the event is dead; retry and bulk redrive deliver it")
    func deadLetterAndRedrive() async throws {
        let receiver = WebhookReceiver()
        receiver.script(.always(.status(500)))
        try await receiver.run { baseURL in
            try await TestApp.run(realClock: true) { app in
                try await Self.configure(app, "down", url: "\(baseURL)/down", ["retry_policy": Self.quickRetries(maxRetries: 2)])
                try await withWorker(app, WorkerOptions(queues: ["default"], concurrency: 4)) { _ in
                    let first = try await Self.send(app, "down")
                    #expect(try await Self.waitForState(app, first, "dead"))
                    #expect(try await Self.drained(app))
                    #expect(receiver.hits(event: first).count == 3)
                    #expect(try await app.runtime.timers.find(id: "webhooks.retry:\(first)") == nil)

                    let deadLetter = try await app.call(.get, "/api/v1/webhooks/dead-letter?tenant_id=down")
                    #expect(deadLetter.status == .ok)
                    let entries = deadLetter.json["items"]?.arrayValue ?? []
                    #expect(entries.count == 1)
                    let entry = try #require(entries.first)
                    #expect(entry["event"]?["id"] == .string(first))
                    #expect(entry["event"]?["tenant_id"] == "down")
                    #expect(entry["attempts"]?.arrayValue?.map { $0["status_code"] } == [500, 500, 500])
                    #expect(entry["can_retry"] == true)
                    #expect(entry["failure_reason"]?.stringValue?.isEmpty == false)
                    #expect(Self.date(entry["failed_at"]) != nil)
                    let metrics = try await Self.metrics(app, "down")
                    #expect(metrics["dead_letter_count"] == 1)
                    #expect(metrics["failed_events"] == 1)
                    #expect(metrics["successful_events"] == 0)
                    #expect(metrics["pending_retries"] == 0)

                    // A retry while the receiver is still down gets a fresh budget: three more attempts, numbered on.
                    let again = try await app.call(.post, "/api/v1/webhooks/retry/\(first)")
                    #expect(again.status == .accepted)
                    #expect(again.json["event_id"] == .string(first) && again.json["state"] == "pending")
                    #expect(try await Self.waitForState(app, first, "dead", attempts: 6))
                    #expect(try await Self.drained(app))
                    #expect(receiver.hits(event: first).count == 6)

                    receiver.script(.ok)
                    #expect(try await app.call(.post, "/api/v1/webhooks/retry/\(first)").status == .accepted)
                    #expect(try await Self.waitForState(app, first, "succeeded"))
                    let hits = receiver.hits(event: first)
                    #expect(hits.count == 7)
                    #expect(Set(hits.compactMap { $0.header("webhook-id") }) == [first])
                    let delivered = try #require(try await Self.delivery(app, first))
                    #expect(delivered["attempts"]?.arrayValue?.map { $0["attempt"] } == [1, 2, 3, 4, 5, 6, 7])
                    #expect(delivered["attempts"]?.arrayValue?.last?["status_code"] == 200)
                    #expect(try await app.call(.post, "/api/v1/webhooks/retry/\(first)").status == .conflict)
                    #expect(try await app.call(.post, "/api/v1/webhooks/retry/\(Identifier.make())").status == .notFound)
                    #expect(try await app.call(.get, "/api/v1/webhooks/dead-letter?tenant_id=down").json["items"] == [])

                    // Bulk redrive: a second event dies, `since` in the future redrives nothing, without it the event goes out.
                    receiver.script(.always(.status(500)))
                    let second = try await Self.send(app, "down")
                    #expect(try await Self.waitForState(app, second, "dead"))
                    #expect(try await Self.drained(app))
                    #expect(receiver.hits(event: second).count == 3)
                    receiver.script(.ok)
                    let future = FetchPipelineTests.iso(Date().addingTimeInterval(3600))
                    let none = try await app.call(.post, "/api/v1/webhooks/dead-letter/redrive", body: ["tenant_id": "down", "since": .string(future)])
                    #expect(none.status == .accepted)
                    #expect(none.json["redriven"] == 0)
                    let redrive = try await app.call(.post, "/api/v1/webhooks/dead-letter/redrive", body: ["tenant_id": "down"])
                    #expect(redrive.status == .accepted)
                    #expect(redrive.json["redriven"] == 1)
                    #expect(try await Self.waitForState(app, second, "succeeded"))
                    #expect(try await Self.drained(app))
                    #expect(receiver.hits(event: second).count == 4)
                    #expect(receiver.hits(event: first).count == 7, "the delivered event was not redriven")
                    let after = try await Self.metrics(app, "down")
                    #expect(after["successful_events"] == 2 && after["dead_letter_count"] == 0 && after["failed_events"] == 0)
                }

                #expect(try await app.call(.get, "/api/v1/webhooks/dead-letter").status == .badRequest)
                #expect(try await app.call(.get, "/api/v1/webhooks/dead-letter?tenant_id=nobody").status == .notFound)
            }
        }
    }

    // MARK: 5. Retry-After on the manual clock

    @Test("Retry-After: 120 schedules the retry exactly 120 s after the attempt; over max_delay_seconds it is capped")
    func retryAfter() async throws {
        let receiver = WebhookReceiver()
        receiver.script(.failing(1, with: .status(503, headers: ["Retry-After": "120"])), for: "/later")
        receiver.script(.failing(1, with: .status(503, headers: ["Retry-After": "1000"])), for: "/capped")
        try await receiver.run { baseURL in
            try await TestApp.run { app in
                try await Self.configure(
                    app, "busy", url: "\(baseURL)/later",
                    [
                        "retry_policy": [
                            "max_retries": 3, "initial_delay_seconds": 1, "backoff_multiplier": 2.0, "max_delay_seconds": 300, "jitter": true,
                        ]
                    ])
                // Only this worker runs; the beat is driven by hand so nothing fires before the clock says so.
                let worker = app.runtime.makeWorker(WorkerOptions(queues: ["default"], concurrency: 4))
                let running = Task { try await worker.run() }
                defer { running.cancel() }
                let beat = app.runtime.makeBeat()

                let id = try await Self.send(app, "busy")
                #expect(try await Self.waitForState(app, id, "pending", attempts: 1))
                #expect(receiver.hits(event: id).count == 1)
                let delivery = try #require(try await Self.delivery(app, id))
                let attemptedAt = try #require(Self.date(delivery["attempts"]?.arrayValue?.first?["attempted_at"]))
                let nextAttempt = try #require(Self.date(delivery["next_attempt_at"]))
                #expect(abs(nextAttempt.timeIntervalSince(attemptedAt) - 120) < 0.001)
                #expect(delivery["attempts"]?.arrayValue?.first?["status_code"] == 503)
                let timer = try #require(try await app.runtime.timers.find(id: "webhooks.retry:\(id)"))
                #expect(abs(timer.dueAt.timeIntervalSince(attemptedAt) - 120) < 0.001)
                let waiting = try await Self.metrics(app, "busy")
                #expect(waiting["pending_retries"] == 1)
                #expect(waiting["failed_events"] == 1)
                #expect(waiting["dead_letter_count"] == 0)

                app.clock.advance(by: 119)
                let early = try await beat.pass()
                #expect(early.timersFired == 0)
                #expect(try await Self.drained(app))
                #expect(receiver.hits(event: id).count == 1)

                app.clock.advance(by: 2)
                let due = try await beat.pass()
                #expect(due.timersFired == 1)
                #expect(try await receiver.waitForHits(event: id, count: 2))
                #expect(try await Self.waitForState(app, id, "succeeded", attempts: 2))

                // Retry-After: 1000 against max_delay_seconds 300.
                let capped = try await Self.send(app, "busy", "user.created", ["target_url": .string("\(baseURL)/capped")])
                #expect(try await Self.waitForState(app, capped, "pending", attempts: 1))
                #expect(receiver.hits(path: "/capped").count == 1)
                let cappedDelivery = try #require(try await Self.delivery(app, capped))
                #expect(cappedDelivery["url"] == .string("\(baseURL)/capped"))
                let cappedAttempt = try #require(Self.date(cappedDelivery["attempts"]?.arrayValue?.first?["attempted_at"]))
                let cappedNext = try #require(Self.date(cappedDelivery["next_attempt_at"]))
                #expect(abs(cappedNext.timeIntervalSince(cappedAttempt) - 300) < 0.001)

                // Deleting the tenant removes its events and the retry still waiting.
                #expect(try await app.call(.delete, "/api/v1/webhooks/config/busy").status == .noContent)
                #expect(try await app.runtime.timers.find(id: "webhooks.retry:\(capped)") == nil)
                #expect(try await Self.event(app, capped).status == .notFound)
                #expect(try await app.call(.delete, "/api/v1/webhooks/config/busy").status == .notFound)
                running.cancel()
                _ = try? await running.value
            }
        }
    }

    // MARK: 6. 410 Gone

    @Test("410 Gone deactivates the tenant at once and dead-letters the event; sends get 409 until it is reactivated")
    func goneDeactivates() async throws {
        let receiver = WebhookReceiver()
        receiver.script(.always(.status(410)), for: "/gone")
        try await receiver.run { baseURL in
            try await TestApp.run(realClock: true) { app in
                let secret = "gone-secret-0001"
                try await Self.configure(app, "gone", url: "\(baseURL)/gone", secret: secret, ["retry_policy": Self.quickRetries()])
                try await withWorker(app, WorkerOptions(queues: ["default"], concurrency: 4)) { _ in
                    let id = try await Self.send(app, "gone")
                    #expect(try await Self.waitForState(app, id, "dead"))
                    #expect(try await Self.drained(app))
                    #expect(receiver.hits(event: id).count == 1, "a 410 is not retried")
                    #expect(try await app.runtime.timers.find(id: "webhooks.retry:\(id)") == nil)
                    let config = try #require(try await Self.config(app, "gone"))
                    #expect(config["active"] == false)
                    #expect(config["disabled_reason"]?.stringValue?.isEmpty == false)
                    let deadLetter = try await app.call(.get, "/api/v1/webhooks/dead-letter?tenant_id=gone")
                    #expect(deadLetter.json["items"]?.arrayValue?.compactMap { $0["event"]?["id"]?.stringValue } == [id])

                    let refused = try await app.call(
                        .post, "/api/v1/webhooks/send", body: ["tenant_id": "gone", "event_type": "user.created", "payload": [:]])
                    #expect(refused.status == .conflict)
                    #expect(refused.errorCode == "conflict")

                    // Reactivated without repeating the secret: the stored one still signs.
                    receiver.script(.ok, for: "/gone")
                    let back = try await Self.configure(app, "gone", url: "\(baseURL)/gone", secret: nil, ["active": true])
                    #expect(back["active"] == true)
                    #expect(back["disabled_reason"] == .null)
                    let next = try await Self.send(app, "gone")
                    #expect(try await Self.waitForState(app, next, "succeeded"))
                    let hit = try #require(receiver.hits(event: next).first)
                    #expect(WebhookSignatures.seedMatches(hit, secrets: [secret]) == [secret])
                }
            }
        }
    }

    // MARK: 7. Idempotency

    @Test("a repeated Idempotency-Key or event_id answers 200 duplicate with the first event id and sends nothing again")
    func idempotency() async throws {
        let receiver = WebhookReceiver()
        try await receiver.run { baseURL in
            try await TestApp.run(realClock: true) { app in
                try await Self.configure(app, "idem", url: "\(baseURL)/idem")
                let body = Array(#"{"tenant_id": "idem", "event_type": "payment.completed", "payload": {"amount": 10}}"#.utf8)
                try await withWorker(app, WorkerOptions(queues: ["default"], concurrency: 4)) { _ in
                    let first = try await Self.post(app, "/api/v1/webhooks/send", headers: ["Idempotency-Key": "key-1"], body: body)
                    #expect(first.status == .accepted)
                    let id = try #require(first.json["event_id"]?.stringValue)
                    #expect(try await receiver.waitForHits(event: id))
                    let repeated = try await Self.post(app, "/api/v1/webhooks/send", headers: ["Idempotency-Key": "key-1"], body: body)
                    #expect(repeated.status == .ok)
                    #expect(repeated.json["event_id"] == .string(id))
                    #expect(repeated.json["duplicate"] == true)
                    let other = try await Self.post(app, "/api/v1/webhooks/send", headers: ["Idempotency-Key": "key-2"], body: body)
                    #expect(other.status == .accepted)
                    let otherID = try #require(other.json["event_id"]?.stringValue)
                    #expect(otherID != id)

                    let withEventID: JSONValue = ["tenant_id": "idem", "event_type": "payment.completed", "payload": [:], "event_id": "order-42-paid"]
                    let byBody = try await app.call(.post, "/api/v1/webhooks/send", body: withEventID)
                    #expect(byBody.status == .accepted)
                    let bodyID = try #require(byBody.json["event_id"]?.stringValue)
                    let byBodyAgain = try await app.call(.post, "/api/v1/webhooks/send", body: withEventID)
                    #expect(byBodyAgain.status == .ok)
                    #expect(byBodyAgain.json["event_id"] == .string(bodyID))
                    #expect(byBodyAgain.json["duplicate"] == true)

                    #expect(try await receiver.waitForHits(event: otherID))
                    #expect(try await receiver.waitForHits(event: bodyID))
                    #expect(try await Self.drained(app))
                    #expect(receiver.hits(event: id).count == 1)
                    #expect(receiver.hits(event: bodyID).count == 1)
                    #expect(receiver.hits.count == 3)
                    #expect(try await Self.metrics(app, "idem")["total_events"] == 3)
                }
            }
        }
    }

    @Test("the idempotency index holds only events sent with a key, and a lookup by key still uses it")
    func idempotencyIndexIsKeyedOnly() async throws {
        try await TestApp.run { app in
            let database = app.runtime.database
            let lookup = "SELECT * FROM webhooks_events WHERE tenant_id = 'idem' AND idempotency_key = 'key-1'"
            let (definition, plan) = try await database.transaction { sql -> (String, String) in
                if database.engine == .postgres {
                    // On a table this small the planner would scan it whatever the indexes: this asks which index it can use.
                    try await sql.raw("SET LOCAL enable_seqscan = off").run()
                    let definition = try await sql.raw("SELECT indexdef FROM pg_indexes WHERE indexname = 'webhooks_events_idempotency'")
                        .first()?.decode(column: "indexdef", as: String.self)
                    let plan = try await sql.raw("EXPLAIN \(unsafeRaw: lookup)").all().map { try $0.decode(column: "QUERY PLAN", as: String.self) }
                    return (definition ?? "", plan.joined(separator: "\n"))
                }
                let definition = try await sql.raw("SELECT sql FROM sqlite_master WHERE name = 'webhooks_events_idempotency'")
                    .first()?.decode(column: "sql", as: String.self)
                let plan = try await sql.raw("EXPLAIN QUERY PLAN \(unsafeRaw: lookup)").all().map { try $0.decode(column: "detail", as: String.self) }
                return (definition ?? "", plan.joined(separator: "\n"))
            }
            // PostgreSQL writes the condition back in parentheses.
            let condition = definition.uppercased().filter { $0 != "(" && $0 != ")" }
            #expect(condition.contains("WHERE IDEMPOTENCY_KEY IS NOT NULL"), "\(definition)")
            #expect(plan.contains("webhooks_events_idempotency"), "\(plan)")
        }
    }

    // MARK: 8. Event patterns

    @Test("enabled_events patterns: user.* takes user.x only; exact patterns match exactly; others are stored, not sent")
    func patterns() async throws {
        let receiver = WebhookReceiver()
        try await receiver.run { baseURL in
            try await TestApp.run(realClock: true) { app in
                try await Self.configure(app, "picky", url: "\(baseURL)/picky", ["enabled_events": ["user.*", "payment.completed"]])
                try await withWorker(app, WorkerOptions(queues: ["default"], concurrency: 4)) { _ in
                    var skipped: [String] = []
                    for type in ["order.created", "user", "users.created", "payment.completed.late", "payment"] {
                        let response = try await app.call(
                            .post, "/api/v1/webhooks/send", body: ["tenant_id": "picky", "event_type": .string(type), "payload": ["n": 1]])
                        #expect(response.status == .accepted, "\(type)")
                        #expect(response.json["deliveries"] == 0, "\(type)")
                        #expect(response.json["reason"]?.stringValue?.isEmpty == false, "\(type)")
                        if let id = response.json["event_id"]?.stringValue { skipped.append(id) }
                    }
                    let user = try await Self.send(app, "picky", "user.x", ["severity": "Critical"])
                    let payment = try await Self.send(app, "picky", "payment.completed")
                    #expect(try await receiver.waitForHits(event: user))
                    #expect(try await receiver.waitForHits(event: payment))
                    #expect(try await Self.drained(app))
                    #expect(receiver.hits.count == 2)
                    #expect(Set(receiver.hits.compactMap { $0.header("X-Event-Type") }) == ["user.x", "payment.completed"])
                    #expect(receiver.hits(event: user).first?.json["severity"] == "Critical")
                    // Severity sets the delivery task's priority: Critical 9, Medium (the default) 5.
                    let runs = try await app.runtime.runs.list(TaskRunFilter(name: "webhooks.deliver"), page: PageRequest()).items
                    #expect(runs.map(\.priority).sorted() == [5, 9])
                    #expect(runs.allSatisfy { $0.queue == "default" })
                    // Stored, never delivered.
                    for id in skipped {
                        let event = try await Self.event(app, id)
                        #expect(event.status == .ok)
                        #expect(event.json["deliveries"]?.arrayValue?.allSatisfy { $0["state"] == "skipped" } == true)
                    }
                }
            }
        }
    }

    // MARK: 9. Bad input

    @Test("bad configure and send input is a 4xx naming the field, and changes nothing stored")
    func badInput() async throws {
        try await TestApp.run { app in
            let url = "http://127.0.0.1:9/hook"
            try await Self.configure(
                app, "existing", url: url,
                ["retry_policy": Self.quickRetries(), "auth_config": ["auth_type": "Bearer", "token": "existing-token"]])
            let before = try #require(try await Self.config(app, "existing"))

            func policy(_ field: String, _ value: JSONValue) -> JSONValue {
                var policy = Self.quickRetries().objectValue ?? [:]
                policy[field] = value
                return ["retry_policy": .object(policy)]
            }
            let valid: [String: JSONValue] = ["tenant_id": "fresh", "base_url": .string(url), "secret_key": "fresh-secret"]
            let configureCases: [(JSONValue, String)] = [
                (["base_url": "ftp://example.com/hook"], "base_url"),
                (["base_url": "not a url"], "base_url"),
                (["base_url": "http://"], "base_url"),
                (["base_url": .null], "base_url"),
                (["secret_key": .null], "secret_key"),
                (["secret_key": ""], "secret_key"),
                (["secret_key": .string(String(repeating: "s", count: 501))], "secret_key"),
                (["tenant_id": "bad tenant!"], "tenant_id"),
                (["tenant_id": .string(String(repeating: "t", count: 201))], "tenant_id"),
                (["tenant_id": ""], "tenant_id"),
                (["auth_config": ["auth_type": "Digest", "token": "x"]], "auth_config.auth_type"),
                (["auth_config": ["auth_type": "Basic", "token": "no-colon-here"]], "auth_config.token"),
                (["auth_config": ["auth_type": "ApiKey", "token": "k"]], "auth_config.header_name"),
                (["auth_config": ["auth_type": "Bearer"]], "auth_config.token"),
                (policy("max_retries", 51), "retry_policy.max_retries"),
                (policy("max_retries", -1), "retry_policy.max_retries"),
                (policy("max_retries", "five"), "retry_policy.max_retries"),
                (policy("initial_delay_seconds", 86401), "retry_policy.initial_delay_seconds"),
                (policy("initial_delay_seconds", -0.5), "retry_policy.initial_delay_seconds"),
                (policy("max_delay_seconds", 86401), "retry_policy.max_delay_seconds"),
                (policy("max_delay_seconds", -1), "retry_policy.max_delay_seconds"),
                (policy("backoff_multiplier", 0.5), "retry_policy.backoff_multiplier"),
                (policy("backoff_multiplier", 11), "retry_policy.backoff_multiplier"),
                (["timeout_seconds": 121], "timeout_seconds"),
                (["timeout_seconds": 0], "timeout_seconds"),
                (["timeout_seconds": -5], "timeout_seconds"),
                (["enabled_events": []], "enabled_events"),
            ]
            for (change, field) in configureCases {
                var body = valid
                for (key, value) in change.objectValue ?? [:] {
                    if value == .null { body[key] = nil } else { body[key] = value }
                }
                let response = try await app.call(.post, "/api/v1/webhooks/configure", body: .object(body))
                #expect(response.status == .badRequest, "\(field) in \(change): \(response.text)")
                #expect(response.errorCode == "validation_failed", "\(field) in \(change)")
                #expect(response.errorFields == [field], "\(change): \(response.text)")
            }
            let emptyPattern = try await app.call(
                .post, "/api/v1/webhooks/configure", body: .object(valid.merging(["enabled_events": ["user.*", ""]]) { _, new in new }))
            #expect(emptyPattern.status == .badRequest)
            #expect(emptyPattern.errorFields.count == 1 && emptyPattern.errorFields.allSatisfy { $0.hasPrefix("enabled_events") })

            // A failed update leaves the stored tenant as it was.
            let badUpdates: [JSONValue] = [
                ["tenant_id": "existing", "base_url": "ftp://example.com"],
                ["tenant_id": "existing", "base_url": .string(url), "retry_policy": ["max_retries": 51]],
                ["tenant_id": "existing", "base_url": .string(url), "timeout_seconds": 121, "active": false],
                ["tenant_id": "existing", "base_url": "http://127.0.0.1:9/other", "auth_config": ["auth_type": "Basic", "token": "nocolon"]],
                ["tenant_id": "existing", "base_url": "http://127.0.0.1:9/other", "auth_config": ["auth_type": "ApiKey"]],
            ]
            for update in badUpdates {
                let response = try await app.call(.post, "/api/v1/webhooks/configure", body: update)
                #expect(response.status == .badRequest, "\(update): \(response.text)")
                #expect(response.errorFields.isEmpty == false, "\(update)")
            }
            let after = try await Self.config(app, "existing")
            #expect(after == before)
            let tenants = try await app.call(.get, "/api/v1/webhooks/configs").json["items"]?.arrayValue ?? []
            #expect(tenants.compactMap { $0["tenant_id"]?.stringValue } == ["existing"])

            // Sends.
            try await Self.configure(app, "sleeping", url: url, ["active": false])
            let sendCases: [(JSONValue, String)] = [
                (["tenant_id": "existing", "event_type": "", "payload": [:]], "event_type"),
                (["tenant_id": "existing", "payload": [:]], "event_type"),
                (["tenant_id": "existing", "event_type": "user.created", "payload": [:], "target_url": "ftp://example.com"], "target_url"),
                (["tenant_id": "existing", "event_type": "user.created", "payload": [:], "target_url": "nope"], "target_url"),
                (["tenant_id": "existing", "event_type": "user.created", "payload": [:], "severity": "Urgent"], "severity"),
            ]
            for (body, field) in sendCases {
                let response = try await app.call(.post, "/api/v1/webhooks/send", body: body)
                #expect(response.status == .badRequest, "\(body): \(response.text)")
                #expect(response.errorFields == [field], "\(body): \(response.text)")
            }
            let big: JSONValue = [
                "tenant_id": "existing", "event_type": "user.created", "payload": ["blob": .string(String(repeating: "x", count: 300 * 1024))],
            ]
            let tooBig = try await app.call(.post, "/api/v1/webhooks/send", body: big)
            #expect(tooBig.status == .badRequest || tooBig.status == .contentTooLarge, "\(tooBig.status)")
            let unknown = try await app.call(.post, "/api/v1/webhooks/send", body: ["tenant_id": "nobody", "event_type": "user.created", "payload": [:]])
            #expect(unknown.status == .notFound)
            let inactive = try await app.call(
                .post, "/api/v1/webhooks/send", body: ["tenant_id": "sleeping", "event_type": "user.created", "payload": [:]])
            #expect(inactive.status == .conflict)
            #expect(inactive.errorCode == "conflict")
            let firstPage = try await app.call(.get, "/api/v1/webhooks/configs?limit=1")
            let cursor = try #require(firstPage.json["next_cursor"]?.stringValue)
            let secondPage = try await app.call(.get, "/api/v1/webhooks/configs?limit=1&cursor=\(cursor)")
            let paged = (firstPage.json["items"]?.arrayValue ?? []) + (secondPage.json["items"]?.arrayValue ?? [])
            #expect(Set(paged.compactMap { $0["tenant_id"]?.stringValue }) == ["existing", "sleeping"])
            #expect(paged.count == 2)
            #expect(secondPage.json["next_cursor"] == .null)
            #expect(try await Self.metrics(app, "existing")["total_events"] == 0)
            #expect(try await Self.metrics(app, "sleeping")["total_events"] == 0)
            #expect(try await app.call(.get, "/api/v1/webhooks/metrics/nobody").status == .notFound)
            #expect(try await app.runtime.broker.stats().allSatisfy { $0.ready == 0 })
        }
    }

    // MARK: 10. Secrets

    @Test("the secret and the auth token appear in no response, no log line and no stored column")
    func secretsStayHidden() async throws {
        let receiver = WebhookReceiver()
        receiver.script(Script { hit, _ in hit.header("X-Event-Type") == "fail.me" ? .status(500) : .ok })
        try await receiver.run { baseURL in
            try await TestApp.run(realClock: true) { app in
                let secret = "sk-SECRET-signing-0123456789"
                let token = "tok-SECRET-auth-0123456789"
                let secrets = [secret, token, Data(secret.utf8).base64EncodedString(), Data(token.utf8).base64EncodedString()]
                var texts: [String] = []
                let configured = try await app.call(
                    .post, "/api/v1/webhooks/configure",
                    body: [
                        "tenant_id": "hidden", "base_url": .string("\(baseURL)/hidden"), "secret_key": .string(secret),
                        "retry_policy": Self.quickRetries(maxRetries: 0), "auth_config": ["auth_type": "Bearer", "token": .string(token)],
                    ])
                #expect(configured.status == .ok)
                #expect(configured.json["secret_key"] == Self.masked)
                #expect(configured.json["auth_config"]?["token"] == Self.masked)
                texts.append(configured.text)

                let log = CapturedLog()
                let worker = Worker(
                    options: WorkerOptions(queues: ["default"], concurrency: 4), broker: app.runtime.broker, runs: app.runtime.runs,
                    registry: app.runtime.registry, timers: app.runtime.timers, environment: app.runtime.environment,
                    clock: app.runtime.clock, logger: log.logger)
                let running = Task { try await worker.run() }
                defer { running.cancel() }
                let delivered = try await Self.send(app, "hidden")
                let failed = try await Self.send(app, "hidden", "fail.me")
                #expect(try await Self.waitForState(app, delivered, "succeeded"))
                #expect(try await Self.waitForState(app, failed, "dead"))
                #expect(receiver.hits(event: delivered).first?.header("Authorization") == "Bearer \(token)")

                for path in [
                    "/api/v1/webhooks/configs", "/api/v1/webhooks/events/\(delivered)", "/api/v1/webhooks/events/\(failed)",
                    "/api/v1/webhooks/dead-letter?tenant_id=hidden", "/api/v1/webhooks/metrics/hidden",
                ] {
                    let response = try await app.call(.get, path)
                    #expect(response.status == .ok, "\(path)")
                    texts.append(response.text)
                }
                let deadLetter = try await app.call(.get, "/api/v1/webhooks/dead-letter?tenant_id=hidden")
                #expect(deadLetter.json["items"]?.arrayValue?.count == 1)
                let retried = try await app.call(.post, "/api/v1/webhooks/retry/\(failed)")
                texts.append(retried.text)
                let updated = try await app.call(
                    .post, "/api/v1/webhooks/configure", body: ["tenant_id": "hidden", "base_url": .string("\(baseURL)/hidden"), "timeout_seconds": 10])
                #expect(updated.status == .ok)
                texts.append(updated.text)
                #expect(try await Self.drained(app))
                running.cancel()
                _ = try? await running.value

                for text in texts {
                    for hidden in secrets { #expect(!text.contains(hidden), "a response carries a secret: \(text)") }
                }
                let logText = log.text
                // The capture saw the deliveries (the dead one is logged with its tenant), so its silence means something.
                #expect(logText.contains("hidden"))
                for hidden in secrets { #expect(!logText.contains(hidden), "the log carries a secret") }

                // At rest: no column of the tenant's row holds either secret in a readable form.
                let columns = try await app.runtime.database.withSQL { sql in
                    try await sql.raw("SELECT * FROM webhooks_tenants").all().map { row in
                        row.allColumns.map { column -> String in
                            if let text = try? row.decode(column: column, as: String.self) { return text }
                            if let bytes = try? row.decode(column: column, as: Data.self) { return String(decoding: bytes, as: UTF8.self) }
                            return ""
                        }
                    }
                }
                #expect(columns.count == 1)
                #expect(columns.first?.contains("hidden") == true, "the row's columns were read")
                for value in columns.flatMap({ $0 }) {
                    for hidden in secrets { #expect(!value.contains(hidden), "a stored column holds a secret") }
                }
                switch app.runtime.database.location {
                case .sqlite(let path):
                    // The whole file and its write-ahead log, as someone who copied them would read them.
                    #expect(FileManager.default.fileExists(atPath: path))
                    for file in [path, path + "-wal"] {
                        guard let bytes = FileManager.default.contents(atPath: file) else { continue }
                        for hidden in secrets { #expect(bytes.range(of: Data(hidden.utf8)) == nil, "\(file) holds a secret") }
                    }
                case .postgres:
                    let rows = try await app.runtime.database.withSQL { sql in
                        try await sql.raw("SELECT row_to_json(t)::text AS r FROM webhooks_tenants t").all()
                            .map { try $0.decode(column: "r", as: String.self) }
                    }
                    #expect(rows.count == 1)
                    let hexes = [secret, token].map { Data($0.utf8).map { String(format: "%02x", $0) }.joined() }
                    for row in rows {
                        for hidden in secrets + hexes { #expect(!row.contains(hidden), "a stored column holds a secret") }
                    }
                }
            }
        }
    }

    // MARK: 11. /receive

    @Test("/receive verifies both schemes for plain and whsec_ secrets, rejects a tampered body, and needs signature headers")
    func receive() async throws {
        try await TestApp.run { app in
            let plain = "receive-secret-0001"
            let whsec = "whsec_" + Data((0..<24).map { UInt8($0 * 7 % 256) }).base64EncodedString()
            try await Self.configure(app, "plain", url: "http://127.0.0.1:9/plain", secret: plain)
            try await Self.configure(app, "standard", url: "http://127.0.0.1:9/standard", secret: whsec)
            let body = Array(#"{"event_id":"evt_1","event_type":"user.created","payload":{"a":1}}"#.utf8)
            let tampered = Array(#"{"event_id":"evt_1","event_type":"user.created","payload":{"a":2}}"#.utf8)
            for (tenant, secret) in [("plain", plain), ("standard", whsec)] {
                let timestamp = String(Int(app.clock.now().timeIntervalSince1970))
                let seed = WebhookSignatures.seed(body: body, secret: secret)
                let standard = "v1," + WebhookSignatures.standard(id: "evt_1", timestamp: timestamp, body: body, secret: secret)
                let both = [
                    "X-Tenant-ID": tenant, "X-Webhook-Signature": seed, "webhook-id": "evt_1", "webhook-timestamp": timestamp,
                    "webhook-signature": standard,
                ]
                let valid = try await Self.post(app, "/api/v1/webhooks/receive", headers: both, body: body, token: "")
                #expect(valid.status == .ok, "\(tenant): \(valid.text)")
                #expect(valid.json["valid"] == true, "\(tenant)")
                #expect(valid.json["tenant_id"] == .string(tenant))
                #expect(valid.json["schemes"] == ["sha256": true, "standard_webhooks": true], "\(tenant)")

                let seedOnly = try await Self.post(
                    app, "/api/v1/webhooks/receive", headers: ["X-Tenant-ID": tenant, "X-Webhook-Signature": seed], body: body, token: "")
                #expect(seedOnly.json["valid"] == true)
                #expect(seedOnly.json["schemes"] == ["sha256": true, "standard_webhooks": nil])
                var standardHeaders = both
                standardHeaders["X-Webhook-Signature"] = nil
                let standardOnly = try await Self.post(app, "/api/v1/webhooks/receive", headers: standardHeaders, body: body, token: "")
                #expect(standardOnly.json["valid"] == true)
                #expect(standardOnly.json["schemes"] == ["sha256": nil, "standard_webhooks": true])

                let forged = try await Self.post(app, "/api/v1/webhooks/receive", headers: both, body: tampered, token: "")
                #expect(forged.status == .ok)
                #expect(forged.json["valid"] == false, "\(tenant)")
                #expect(forged.json["schemes"] == ["sha256": false, "standard_webhooks": false])

                // A correct signature over a timestamp ten minutes old is refused.
                let stale = String(Int(app.clock.now().timeIntervalSince1970) - 600)
                var staleHeaders = standardHeaders
                staleHeaders["webhook-timestamp"] = stale
                staleHeaders["webhook-signature"] = "v1," + WebhookSignatures.standard(id: "evt_1", timestamp: stale, body: body, secret: secret)
                let old = try await Self.post(app, "/api/v1/webhooks/receive", headers: staleHeaders, body: body, token: "")
                #expect(old.json["valid"] == false)
                #expect(old.json["schemes"]?["standard_webhooks"] == false)

                // One good scheme does not cover a bad one.
                var mixed = both
                mixed["X-Webhook-Signature"] = WebhookSignatures.seed(body: body, secret: "other")
                #expect(try await Self.post(app, "/api/v1/webhooks/receive", headers: mixed, body: body, token: "").json["valid"] == false)
            }
            let unsigned = try await Self.post(app, "/api/v1/webhooks/receive", headers: ["X-Tenant-ID": "plain"], body: body, token: "")
            #expect(unsigned.status == .badRequest)
            let noTenant = try await Self.post(
                app, "/api/v1/webhooks/receive", headers: ["X-Webhook-Signature": WebhookSignatures.seed(body: body, secret: plain)], body: body,
                token: "")
            #expect(noTenant.status == .badRequest)
            let unknown = try await Self.post(
                app, "/api/v1/webhooks/receive",
                headers: ["X-Tenant-ID": "nobody", "X-Webhook-Signature": WebhookSignatures.seed(body: body, secret: plain)], body: body, token: "")
            #expect(unknown.status == .notFound)
        }
    }

    // MARK: 12. Roles

    @Test("viewers read, operators send and retry, only admins configure and delete; no token is 401")
    func roles() async throws {
        try await TestApp.run { app in
            let viewer = try await app.token(for: .viewer)
            let operatorToken = try await app.token(for: .operator)
            let tenant: JSONValue = ["tenant_id": "roles", "base_url": "http://127.0.0.1:9/roles", "secret_key": "roles-secret"]
            #expect(try await app.call(.post, "/api/v1/webhooks/configure", body: tenant, token: viewer).status == .forbidden)
            #expect(try await app.call(.post, "/api/v1/webhooks/configure", body: tenant, token: operatorToken).status == .forbidden)
            #expect(try await app.call(.post, "/api/v1/webhooks/configure", body: tenant, token: "").status == .unauthorized)
            #expect(try await Self.config(app, "roles") == nil)

            let created = try await app.call(.post, "/api/v1/webhooks/configure", body: tenant)
            #expect(created.status == .ok)
            // The defaults of the contract fill what was left out.
            #expect(
                created.json["retry_policy"]
                    == ["max_retries": 5, "initial_delay_seconds": 1, "backoff_multiplier": 2, "max_delay_seconds": 300, "jitter": true])
            #expect(created.json["timeout_seconds"] == 30)
            #expect(created.json["enabled_events"] == ["*"])
            #expect(created.json["active"] == true)
            #expect(created.json["default_headers"] == [:])
            #expect(created.json["auth_config"] == .null)
            #expect(created.json["disabled_reason"] == .null)
            #expect(created.json["secret_key"] == Self.masked)

            let send: JSONValue = ["tenant_id": "roles", "event_type": "user.created", "payload": [:]]
            #expect(try await app.call(.post, "/api/v1/webhooks/send", body: send, token: viewer).status == .forbidden)
            #expect(try await app.call(.post, "/api/v1/webhooks/send", body: send, token: "").status == .unauthorized)
            let sent = try await app.call(.post, "/api/v1/webhooks/send", body: send, token: operatorToken)
            #expect(sent.status == .accepted)
            let id = try #require(sent.json["event_id"]?.stringValue)

            // No worker runs: the event waits with no attempt, so it is neither failed nor a pending retry.
            let untried = try await app.call(.get, "/api/v1/webhooks/metrics/roles", token: viewer).json
            #expect(untried["total_events"] == 1 && untried["failed_events"] == 0 && untried["pending_retries"] == 0)
            #expect(untried["avg_response_time_ms"] == 0)
            for path in [
                "/api/v1/webhooks/configs", "/api/v1/webhooks/events/\(id)", "/api/v1/webhooks/metrics/roles",
                "/api/v1/webhooks/dead-letter?tenant_id=roles",
            ] {
                #expect(try await app.call(.get, path, token: viewer).status == .ok, "\(path)")
                #expect(try await app.call(.get, path, token: "").status == .unauthorized, "\(path)")
            }
            #expect(try await app.call(.post, "/api/v1/webhooks/retry/\(id)", token: viewer).status == .forbidden)
            #expect(try await app.call(.post, "/api/v1/webhooks/retry/\(id)", token: operatorToken).status == .conflict)
            #expect(try await app.call(.post, "/api/v1/webhooks/dead-letter/redrive", body: ["tenant_id": "roles"], token: viewer).status == .forbidden)
            let redrive = try await app.call(.post, "/api/v1/webhooks/dead-letter/redrive", body: ["tenant_id": "roles"], token: operatorToken)
            #expect(redrive.status == .accepted)
            #expect(try await app.call(.delete, "/api/v1/webhooks/config/roles", token: viewer).status == .forbidden)
            #expect(try await app.call(.delete, "/api/v1/webhooks/config/roles", token: operatorToken).status == .forbidden)
            #expect(try await app.call(.delete, "/api/v1/webhooks/config/roles").status == .noContent)
            #expect(try await Self.config(app, "roles") == nil)
            #expect(try await Self.event(app, id).status == .notFound)
        }
    }

    // MARK: 13. Engine events

    @Test("a tenant subscribed to demo.* gets each fetched record as an event; a tenant subscribed elsewhere gets nothing")
    func engineEvents() async throws {
        let receiver = WebhookReceiver()
        try await receiver.run { baseURL in
            try await TestApp.run(realClock: true) { app in
                let secret = "engine-secret-0001"
                try await Self.configure(app, "subscriber", url: "\(baseURL)/demo", secret: secret, ["enabled_events": ["demo.*"]])
                try await Self.configure(app, "elsewhere", url: "\(baseURL)/elsewhere", ["enabled_events": ["sympla.*"]])
                let integration = try await FetchPipelineTests.integration(app, ["name": "shop", "provider": "demo", "config": ["records": 3]])
                try await withWorker(app, WorkerOptions(queues: ["default"], concurrency: 4)) { _ in
                    let summary = try await FetchPipelineTests.fetch(app, integration)
                    #expect(summary.records.new == 3)
                    #expect(try await receiver.waitForHits(path: "/demo", count: 3))
                    #expect(try await Self.drained(app))
                }
                let hits = receiver.hits(path: "/demo")
                #expect(hits.count == 3)
                #expect(receiver.hits(path: "/elsewhere").isEmpty)
                let records = try await FetchPipelineTests.all(app, "/api/v1/integrations/\(integration)/records")
                let changes = try await FetchPipelineTests.all(app, "/api/v1/events?integration=\(integration)")
                #expect(records.count == 3)
                for hit in hits {
                    let body = hit.json
                    let context = body["context"]
                    let externalID = context?["external_id"]?.stringValue
                    let record = try #require(records.first { $0["external_id"]?.stringValue == externalID }, "\(body)")
                    #expect(body["event_type"] == "demo.items.created")
                    #expect(hit.header("X-Event-Type") == "demo.items.created")
                    #expect(body["tenant_id"] == "subscriber")
                    #expect(body["payload"] == record["data"])
                    #expect(context?["integration_id"] == .string(integration))
                    #expect(context?["record_id"] == record["id"])
                    let change = changes.first { $0["id"] == context?["change_event_id"] }
                    #expect(change?["type"] == "demo.items.created")
                    #expect(change?["external_id"]?.stringValue == externalID)
                    #expect(WebhookSignatures.standardMatches(hit, secrets: [secret]) == [secret])
                }
                #expect(Set(hits.compactMap { $0.json["context"]?["external_id"]?.stringValue }).count == 3)
                #expect(try await Self.metrics(app, "subscriber")["successful_events"] == 3)
            }
        }
    }
}

extension WebhooksTests {
    typealias Script = WebhookReceiver.Script
    typealias Reply = WebhookReceiver.Reply
}

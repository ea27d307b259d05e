// The webhooks plugin's pure parts: patterns, backoff, signatures against known vectors, configuration rules.
import Crypto
import Foundation
import IntegratorCore
import Testing

@testable import Plugins

@Suite("Webhooks plugin, units")
struct WebhookUnitTests {
    @Test("patterns: * matches all, prefix.* matches the prefix and a dot, anything else only itself")
    func patterns() {
        #expect(EventPattern.matches(["*"], "anything.at.all"))
        #expect(EventPattern.matches(["user.*"], "user.created"))
        #expect(EventPattern.matches(["user.*"], "user.profile.updated"))
        #expect(!EventPattern.matches(["user.*"], "users.created"))
        #expect(!EventPattern.matches(["user.*"], "user"))
        #expect(EventPattern.matches(["payment.completed"], "payment.completed"))
        #expect(!EventPattern.matches(["payment.completed"], "payment.completed.late"))
        #expect(EventPattern.matches(["order.*", "payment.failed"], "payment.failed"))
        #expect(!EventPattern.matches(["order.*", "payment.failed"], "payment.completed"))
    }

    @Test("backoff doubles up to the cap; jitter draws below it; Retry-After wins, capped")
    func backoff() {
        let policy = WebhookRetryPolicy(maxRetries: 5, initialDelay: 1, backoffMultiplier: 2, maxDelay: 10, jitter: false)
        #expect((1...6).map { policy.delay(beforeRetry: $0, retryAfter: nil, unit: 0.5) } == [1, 2, 4, 8, 10, 10])
        var jittered = policy
        jittered.jitter = true
        #expect(jittered.delay(beforeRetry: 3, retryAfter: nil, unit: 0.25) == 1)
        #expect(jittered.delay(beforeRetry: 3, retryAfter: nil, unit: 0) == 0)
        #expect(policy.delay(beforeRetry: 1, retryAfter: 7, unit: 0.5) == 7)
        #expect(policy.delay(beforeRetry: 1, retryAfter: 120, unit: 0.5) == 10)
        let huge = WebhookRetryPolicy(maxRetries: 50, initialDelay: 86_400, backoffMultiplier: 10, maxDelay: 86_400, jitter: false)
        #expect(huge.delay(beforeRetry: 50, retryAfter: nil, unit: 0.5) == 86_400)
    }

    @Test("the seed's signature matches HMAC-SHA256 hex computed elsewhere")
    func seedSignature() {
        let body = Data(#"{"event":"test","data":"example"}"#.utf8)
        let signature = WebhookSignature.seed(body: body, secret: "minha-chave-secreta")
        // Computed with Python's hmac module.
        #expect(signature == "sha256=03382a7e8ca995742aed2fb773bc1d04a4015d986cf1b0ec80905c73ae503c0f")
        #expect(WebhookSignature.verifySeed(header: signature, body: body, secrets: ["minha-chave-secreta"]))
        #expect(WebhookSignature.verifySeed(header: "sha256=00 " + signature, body: body, secrets: ["other", "minha-chave-secreta"]))
        #expect(!WebhookSignature.verifySeed(header: signature, body: body + Data("x".utf8), secrets: ["minha-chave-secreta"]))
        #expect(!WebhookSignature.verifySeed(header: "sha256=zz", body: body, secrets: ["minha-chave-secreta"]))
    }

    @Test("Standard Webhooks: the specification's example vector, and verification with a timestamp window")
    func standardSignature() {
        let body = Data(#"{"test": 2432232314}"#.utf8)
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        let signature = WebhookSignature.standard(id: "msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp: 1_614_265_330, body: body, secret: secret)
        #expect(signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        let sentAt = Date(timeIntervalSince1970: 1_614_265_330)
        #expect(
            WebhookSignature.verifyStandard(
                id: "msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp: "1614265330", header: "v1,bm90LXRoaXM= " + signature, body: body,
                secrets: [secret], now: sentAt.addingTimeInterval(60)))
        #expect(
            !WebhookSignature.verifyStandard(
                id: "msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp: "1614265330", header: signature, body: body, secrets: [secret],
                now: sentAt.addingTimeInterval(301)), "too old")
        #expect(
            !WebhookSignature.verifyStandard(
                id: "msg_other", timestamp: "1614265330", header: signature, body: body, secrets: [secret], now: sentAt))
    }

    @Test("a keyring's keys sign message after message as freshly keyed ones do, each secret keyed once")
    func keyringReuse() {
        let keyring = WebhookSignature.Keyring()
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        #expect(
            WebhookSignature.standard(
                id: "msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp: 1_614_265_330, body: Data(#"{"test": 2432232314}"#.utf8),
                key: keyring.key(for: secret)) == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        // A keyed state used for one message must come back unchanged for the next (and the same message twice).
        for body in ["first", "second", "first", String(repeating: "long body ", count: 500)] {
            for plain in ["minha-chave-secreta", secret] {
                let data = Data(body.utf8)
                let key = keyring.key(for: plain)
                #expect(WebhookSignature.seed(body: data, key: key) == WebhookSignature.seed(body: data, secret: plain), "\(body)")
                #expect(
                    WebhookSignature.standard(id: "msg_1", timestamp: 1_700_000_000, body: data, key: key)
                        == WebhookSignature.standard(id: "msg_1", timestamp: 1_700_000_000, body: data, secret: plain), "\(body)")
            }
        }
        #expect(
            WebhookSignature.seed(body: Data("first".utf8), key: keyring.key(for: "minha-chave-secreta"))
                != WebhookSignature.seed(body: Data("second".utf8), key: keyring.key(for: "minha-chave-secreta")))
        #expect(
            WebhookSignature.seed(body: Data(#"{"event":"test","data":"example"}"#.utf8), key: keyring.key(for: "minha-chave-secreta"))
                == "sha256=03382a7e8ca995742aed2fb773bc1d04a4015d986cf1b0ec80905c73ae503c0f")
    }

    @Test("a keyed hash gives HMAC-SHA256's code for keys shorter than, as long as and longer than a block")
    func keyedHashIsHMAC() {
        var generator = SystemRandomNumberGenerator()
        for keyLength in [1, 20, 32, 63, 64, 65, 131, 200] {
            let key = Data((0..<keyLength).map { _ in UInt8.random(in: .min ... .max, using: &generator) })
            let keyed = WebhookSignature.KeyedHash(key: key)
            for messageLength in [0, 1, 55, 56, 64, 1000] {
                let message = Data((0..<messageLength).map { _ in UInt8.random(in: .min ... .max, using: &generator) })
                let expected = Data(HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: key)))
                #expect(keyed.code(of: message).withUnsafeBytes { Data($0) } == expected, "key \(keyLength), message \(messageLength)")
                // Parts hash as if joined.
                let split = message.count / 3
                #expect(
                    keyed.code(of: message.prefix(split), message.dropFirst(split)).withUnsafeBytes { Data($0) } == expected,
                    "key \(keyLength), message \(messageLength) in two parts")
            }
        }
    }

    @Test("hex decoding refuses odd lengths and non-hex characters")
    func hex() {
        #expect(Data(hex: "00ff10Ab") == Data([0x00, 0xFF, 0x10, 0xAB]))
        #expect(Data(hex: "abc") == nil)
        #expect(Data(hex: "zz") == nil)
        #expect(Hex.lowercase(Data([0x00, 0xFF, 0x10, 0xAB])) == "00ff10ab")
    }

    @Test("configure: the seed's defaults fill what is omitted")
    func defaults() throws {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let tenant = try WebhookConfiguration.tenant(
            from: ["tenant_id": "t-1", "base_url": "https://example.com/hooks", "secret_key": "s"], existing: nil, now: now)
        #expect(tenant.retry == WebhookRetryPolicy(maxRetries: 5, initialDelay: 1, backoffMultiplier: 2, maxDelay: 300, jitter: true))
        #expect(tenant.timeoutSeconds == 30)
        #expect(tenant.enabledEvents == ["*"])
        #expect(tenant.active)
        #expect(tenant.authType == nil)
        #expect(tenant.signingSecrets(at: now) == ["s"])
    }

    @Test("configure: a changed secret signs beside the old one for 24 hours; an omitted one is kept")
    func rotation() throws {
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        let first = try WebhookConfiguration.tenant(
            from: ["tenant_id": "t-1", "base_url": "https://example.com", "secret_key": "old",
                   "auth_config": ["auth_type": "ApiKey", "token": "k", "header_name": "X-Key"]],
            existing: nil, now: start)
        let later = start.addingTimeInterval(60)
        let rotated = try WebhookConfiguration.tenant(
            from: ["tenant_id": "t-1", "base_url": "https://example.com", "secret_key": "new",
                   "auth_config": ["auth_type": "ApiKey", "header_name": "X-Key"]],
            existing: first, now: later)
        #expect(rotated.signingSecrets(at: later) == ["new", "old"])
        #expect(rotated.signingSecrets(at: later.addingTimeInterval(86_401)) == ["new"])
        #expect(rotated.secrets.authToken == "k", "an omitted token of the same auth type is kept")
        #expect(rotated.createdAt == start)
        let unchanged = try WebhookConfiguration.tenant(
            from: ["tenant_id": "t-1", "base_url": "https://example.org"], existing: rotated, now: later)
        #expect(unchanged.secrets.secretKey == "new")
        #expect(unchanged.authType == nil, "an omitted auth_config means none")
    }

    @Test("configure: each bad field is named", arguments: [
        (["base_url": "ftp://example.com"], "base_url"),
        (["base_url": "not a url"], "base_url"),
        (["base_url": "https://"], "base_url"),
        (["retry_policy": ["max_retries": 51]], "retry_policy.max_retries"),
        (["retry_policy": ["max_retries": -1]], "retry_policy.max_retries"),
        (["retry_policy": ["initial_delay_seconds": 86_401]], "retry_policy.initial_delay_seconds"),
        (["retry_policy": ["max_delay_seconds": -1]], "retry_policy.max_delay_seconds"),
        (["retry_policy": ["backoff_multiplier": 0.5]], "retry_policy.backoff_multiplier"),
        (["retry_policy": ["jitter": "yes"]], "retry_policy.jitter"),
        (["timeout_seconds": 121], "timeout_seconds"),
        (["timeout_seconds": 0], "timeout_seconds"),
        (["enabled_events": []], "enabled_events"),
        (["enabled_events": ["user.*.x"]], "enabled_events.0"),
        (["auth_config": ["auth_type": "Digest", "token": "x"]], "auth_config.auth_type"),
        (["auth_config": ["auth_type": "Basic", "token": "no-colon"]], "auth_config.token"),
        (["auth_config": ["auth_type": "ApiKey", "token": "k"]], "auth_config.header_name"),
        (["auth_config": ["auth_type": "Bearer"]], "auth_config.token"),
        (["default_headers": ["Bad Name": "x"]], "default_headers.Bad Name"),
        (["default_headers": ["X-Ok": "line\r\nInjected: yes"]], "default_headers.X-Ok"),
        (["tenant_id": "has space"], "tenant_id"),
        (["colour": "blue"], "colour"),
    ] as [([String: JSONValue], String)])
    func badFields(_ change: [String: JSONValue], _ field: String) throws {
        var body: [String: JSONValue] = ["tenant_id": "t-1", "base_url": "https://example.com", "secret_key": "s"]
        body.merge(change) { $1 }
        let failure = #expect(throws: ValidationFailure.self) {
            if change["tenant_id"] != nil { _ = try WebhookConfiguration.tenantID(in: .object(body)) }
            _ = try WebhookConfiguration.tenant(from: .object(body), existing: nil, now: Date())
        }
        #expect(failure?.issues.map(\.field).contains(field) == true, "\(failure?.issues ?? [])")
    }

    @Test("send input: empty type, oversized payload, bad severity and target are named")
    func sendInput() {
        let failure = #expect(throws: ValidationFailure.self) {
            _ = try SendInput(
                ["tenant_id": "t", "event_type": "", "payload": .string(String(repeating: "x", count: 300)), "severity": "Urgent",
                 "target_url": "javascript:alert(1)"],
                idempotencyKey: nil, maxPayloadBytes: 256)
        }
        #expect(Set(failure?.issues.map(\.field) ?? []) == ["event_type", "payload", "severity", "target_url"])
    }

    @Test("INTEGRATOR_WEBHOOKS_DISABLE_AFTER_DAYS: days, or a clear error")
    func options() throws {
        #expect(try WebhooksOptions.fromEnvironment([:]).disableAfter == 5 * 86_400)
        #expect(try WebhooksOptions.fromEnvironment(["INTEGRATOR_WEBHOOKS_DISABLE_AFTER_DAYS": "0.5"]).disableAfter == 43_200)
        #expect(throws: ConfigurationError.self) { try WebhooksOptions.fromEnvironment(["INTEGRATOR_WEBHOOKS_DISABLE_AFTER_DAYS": "soon"]) }
    }

    @Test("a request carries both signatures over the stored body, auth, and headers that cannot override them")
    func request() throws {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        var tenant = try WebhookConfiguration.tenant(
            from: ["tenant_id": "t-1", "base_url": "https://example.com/in", "secret_key": "s",
                   "default_headers": ["X-Webhook-Signature": "forged", "X-Api-Version": "v2"],
                   "auth_config": ["auth_type": "Basic", "token": "user:pa:ss"]],
            existing: nil, now: now)
        tenant.secrets.previousSecretKey = "p"
        tenant.previousSecretExpiresAt = now.addingTimeInterval(10)
        let event = WebhookEvent(
            id: "evt-1", tenantID: "t-1", eventType: "user.created", severity: .high, targetURL: nil,
            customHeaders: ["webhook-id": "forged", "X-Trace": "abc"], body: #"{"a":1}"#, state: .pending, attemptCount: 0,
            roundAttempts: 0, createdAt: now, updatedAt: now)
        let request = WebhookDelivery.request(for: event, tenant: tenant, at: now)
        let body = Data(#"{"a":1}"#.utf8)
        #expect(request.target == "https://example.com/in")
        #expect(request.body == body)
        #expect(request.header("X-Webhook-Signature") == "\(WebhookSignature.seed(body: body, secret: "s")) \(WebhookSignature.seed(body: body, secret: "p"))")
        #expect(request.header("webhook-id") == "evt-1")
        #expect(request.header("webhook-timestamp") == "1800000000")
        #expect(request.header("X-Timestamp") == "1800000000")
        #expect(request.header("X-Api-Version") == "v2")
        #expect(request.header("X-Trace") == "abc")
        #expect(request.header("Authorization") == "Basic " + Data("user:pa:ss".utf8).base64EncodedString())
        #expect(request.headers.filter { $0.name.lowercased() == "webhook-id" }.count == 1)
    }

    @Test("first attempts: one task per 100 events of one severity, at its priority; a lone event keeps the single form")
    func firstAttemptBatches() {
        let now = Date(timeIntervalSince1970: 1_790_000_000)
        let events = (0..<250).map { (id: "evt-\($0)", severity: WebhookSeverity.medium) } + [("evt-critical", .critical)]
        let messages = WebhookDelivery.firstAttempts(events, at: now)
        #expect(messages.map(\.priority) == [9, 5, 5, 5], "the critical one first, then the medium ones in three batches")
        #expect(messages[0].arguments["event_id"] == "evt-critical" && messages[0].arguments["attempt"] == 1)
        let batches = messages.dropFirst().map { $0.arguments["event_ids"]?.arrayValue?.compactMap(\.stringValue) ?? [] }
        #expect(batches.map(\.count) == [100, 100, 50])
        #expect(batches.flatMap { $0 } == events.prefix(250).map(\.id), "every event once, in order")
        #expect(messages.allSatisfy { $0.name == "webhooks.deliver" && $0.queue == "default" })

        // A lone event left after full batches is a slice that starts at 100, not at 0.
        let oneOver = WebhookDelivery.firstAttempts((0..<101).map { (id: "evt-\($0)", severity: WebhookSeverity.medium) }, at: now)
        #expect(oneOver.count == 2)
        #expect(oneOver.last?.arguments["event_id"] == "evt-100")
    }
}

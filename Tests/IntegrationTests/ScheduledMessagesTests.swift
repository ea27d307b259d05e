// The scheduled messages plugin as the Scheduler API's clients use it (seed 000): the seed's exact requests and
// answers, bad input, and firing through a real worker, beat and receiver — once, at the time, after upserts, deletes,
// two beats and a restart.
import Foundation
import HTTPTypes
import IntegratorCore
@testable import Plugins
import Testing

@Suite("Scheduled messages (Scheduler API)")
struct ScheduledMessagesTests {
    /// The seed's clients send the static token as a bearer token.
    static let seedToken = TestApp.apiToken

    static func body(_ id: String, _ scheduleTo: String, url: String, payload: JSONValue = ["data": "your webhook payload"]) -> JSONValue {
        ["id": .string(id), "scheduleTo": .string(scheduleTo), "payload": payload, "webhookUrl": .string(url)]
    }

    /// Schedules a message with the seed's token and insists on the seed's answer.
    static func schedule(_ app: TestApp, _ body: JSONValue) async throws {
        let response = try await app.call(.post, "/messages", body: body, token: seedToken)
        guard response.status == .ok, response.json == ["status": "scheduled", "messageId": body["id"] ?? .null] else {
            throw TestSetupError("scheduling failed: \(response.status) \(response.text)")
        }
    }

    static func timer(_ app: TestApp, _ id: String) async throws -> DurableTimer? {
        try await app.runtime.timers.find(id: ScheduledMessagesService.timerPrefix + id)
    }

    static func ids(_ list: JSONValue?, key: String = "id") -> [String] {
        list?.arrayValue?.compactMap { $0[key]?.stringValue } ?? []
    }

    // MARK: The seed's requests and answers

    @Test("the seed's requests get the seed's answers field by field: upsert, get, list, search, delete, bulk delete, health")
    func seedContract() async throws {
        try await TestApp.run { app in
            let hook = "https://your-webhook-endpoint.com"
            let first = Self.body("unique-message-id", "2027-12-25T10:30:05Z", url: hook)
            try await Self.schedule(app, first)
            let fetched = try await app.call(.get, "/messages/unique-message-id", token: Self.seedToken)
            #expect(fetched.status == .ok)
            #expect(fetched.json == first, "the stored message, scheduleTo as sent: \(fetched.text)")
            let listed = try await app.call(.get, "/messages", token: Self.seedToken)
            #expect(
                listed.json
                    == [
                        "scheduledJobs": [["messageId": "unique-message-id", "nextRun": "2027-12-25T10:30:05+00:00", "job": .string("POST \(hook)")]],
                        "count": 1,
                    ], "\(listed.text)")
            let secret = try await app.call(.get, "/api/v1/webhooks/config/\(ScheduledMessagesService.tenantID)/secret")
            #expect(secret.json["secret_key"]?.stringValue?.hasPrefix("whsec_") == true, "readable before anything fires: \(secret.status)")
            let timer = try #require(try await Self.timer(app, "unique-message-id"))
            #expect(timer.dueAt == Date(iso8601: "2027-12-25T10:30:05Z"))

            let phone = "123_5511999999999"
            for suffix in ["_2h", "_12h", "_24h"] {
                try await Self.schedule(app, Self.body(phone + suffix, "2027-12-25T08:30:00-03:00", url: "https://example.com/hook"))
            }
            try await Self.schedule(app, Self.body("123_5511888888888_24h", "2027-12-25T08:30:00.250Z", url: "https://example.com/hook"))
            try await Self.schedule(app, Self.body("+5511999999999_2h", "2027-12-25T08:30:00Z", url: "https://example.com/hook"))

            let byPrefix = try await app.call(.get, "/messages/search?prefix=\(phone)", token: Self.seedToken)
            #expect(byPrefix.status == .ok)
            #expect(byPrefix.json["count"] == 3)
            #expect(Self.ids(byPrefix.json["messages"]) == [phone + "_12h", phone + "_24h", phone + "_2h"])
            #expect(
                byPrefix.json["messages"]?.arrayValue?.first
                    == [
                        "id": .string(phone + "_12h"), "scheduleTo": "2027-12-25T08:30:00-03:00", "payload": ["data": "your webhook payload"],
                        "webhookUrl": "https://example.com/hook", "nextRun": "2027-12-25T11:30:00+00:00",
                    ])
            let byContains = try await app.call(.get, "/messages/search?contains=_24h", token: Self.seedToken)
            #expect(Self.ids(byContains.json["messages"]) == ["123_5511888888888_24h", phone + "_24h"])
            #expect(byContains.json["messages"]?.arrayValue?.first?["nextRun"] == "2027-12-25T08:30:00.250+00:00")
            let both = try await app.call(.get, "/messages/search?prefix=123_&contains=_2h", token: Self.seedToken)
            #expect(Self.ids(both.json["messages"]) == [phone + "_2h"])
            // The seed's tip: a leading + sent as %2B. A literal + is kept as a plus sign too.
            let encodedPlus = try await app.call(.get, "/messages/search?prefix=%2B5511", token: Self.seedToken)
            #expect(Self.ids(encodedPlus.json["messages"]) == ["+5511999999999_2h"])
            let literalPlus = try await app.call(.get, "/messages/search?prefix=+5511", token: Self.seedToken)
            #expect(Self.ids(literalPlus.json["messages"]) == ["+5511999999999_2h"])
            let plusInPath = try await app.call(.get, "/messages/%2B5511999999999_2h", token: Self.seedToken)
            #expect(plusInPath.status == .ok && plusInPath.json["id"] == "+5511999999999_2h", "\(plusInPath.text)")
            let none = try await app.call(.get, "/messages/search?prefix=999", token: Self.seedToken)
            #expect(none.json == ["count": 0, "messages": []])

            for path in ["/messages/search", "/messages/search?prefix=", "/messages/search?other=1"] {
                let missing = try await app.call(.get, path, token: Self.seedToken)
                #expect(missing.status == .badRequest && missing.errorFields == ["prefix"], "\(path): \(missing.text)")
            }
            for method in [HTTPRequest.Method.delete, .post] {
                let missing = try await app.call(method, "/messages/bulk", token: Self.seedToken)
                #expect(missing.status == .badRequest, "\(method) bulk without a filter: \(missing.text)")
            }

            let bulk = try await app.call(.delete, "/messages/bulk?prefix=\(phone)", token: Self.seedToken)
            #expect(bulk.status == .ok)
            #expect(bulk.json == ["deleted": 3, "messageIds": [.string(phone + "_12h"), .string(phone + "_24h"), .string(phone + "_2h")]])
            for suffix in ["_2h", "_12h", "_24h"] {
                #expect(try await Self.timer(app, phone + suffix) == nil, "a bulk delete removes the timers")
            }
            let slash = try await app.call(.delete, "/messages/bulk/?contains=_24h", token: Self.seedToken)
            #expect(slash.json == ["deleted": 1, "messageIds": ["123_5511888888888_24h"]], "trailing slash: \(slash.text)")
            let fallback = try await app.call(.post, "/messages/bulk?prefix=%2B55", token: Self.seedToken)
            #expect(fallback.json == ["deleted": 1, "messageIds": ["+5511999999999_2h"]], "POST fallback: \(fallback.text)")

            let deleted = try await app.call(.delete, "/messages/unique-message-id", token: Self.seedToken)
            #expect(deleted.status == .ok && deleted.json == ["status": "deleted", "messageId": "unique-message-id"])
            #expect(try await Self.timer(app, "unique-message-id") == nil)
            #expect(try await app.call(.get, "/messages/unique-message-id", token: Self.seedToken).status == .notFound)
            #expect(try await app.call(.delete, "/messages/unique-message-id", token: Self.seedToken).status == .notFound)
            #expect(try await app.call(.get, "/messages", token: Self.seedToken).json == ["scheduledJobs": [], "count": 0])

            let health = try await app.call(.get, "/health", token: "")
            #expect(health.status == .ok && health.json == ["status": "healthy", "database": "connected"])
        }
    }

    @Test("the static token and user tokens: none is 401, a viewer reads, an operator writes")
    func roles() async throws {
        try await TestApp.run { app in
            let body = Self.body("roles-1", "2027-01-01T00:00:00Z", url: "https://example.com/hook")
            #expect(try await app.call(.post, "/messages", body: body, token: "").status == .unauthorized)
            #expect(try await app.call(.get, "/messages", token: "").status == .unauthorized)
            #expect(try await app.call(.get, "/messages", token: "wrong-token-wrong-token").status == .unauthorized)
            let viewer = try await app.token(for: .viewer)
            #expect(try await app.call(.post, "/messages", body: body, token: viewer).status == .forbidden)
            #expect(try await app.call(.get, "/messages", token: viewer).status == .ok)
            let operatorToken = try await app.token(for: .operator)
            #expect(try await app.call(.post, "/messages", body: body, token: operatorToken).status == .ok)
            #expect(try await app.call(.get, "/messages/roles-1", token: viewer).status == .ok)
            #expect(try await app.call(.delete, "/messages/roles-1", token: viewer).status == .forbidden)
            #expect(try await app.call(.delete, "/messages/bulk?prefix=roles", token: viewer).status == .forbidden)
            #expect(try await app.call(.post, "/messages/roles-1/run", token: viewer).status == .forbidden)
            #expect(try await app.call(.get, "/messages/roles-1", token: viewer).status == .ok, "nothing a viewer tried changed it")
        }
    }

    // MARK: Bad input

    @Test("bad input gets a 400 naming each field, and the stored message is left as it was")
    func badInput() async throws {
        try await TestApp.run(maxBodySize: 4096) { app in
            let good = Self.body("kept", "2027-06-01T12:00:00Z", url: "https://example.com/hook", payload: ["n": 1])
            try await Self.schedule(app, good)
            let cases: [(JSONValue, [String])] = [
                (["id": "kept", "scheduleTo": "25/12/2027 10:30", "payload": 1, "webhookUrl": "https://example.com"], ["scheduleTo"]),
                (["id": "kept", "scheduleTo": "2027-12-25T10:30:05", "payload": 1, "webhookUrl": "https://example.com"], ["scheduleTo"]),
                (["id": "kept", "scheduleTo": "2027-12-25T10:30:05Z", "payload": 1, "webhookUrl": "ftp://example.com/x"], ["webhookUrl"]),
                (["id": "kept", "scheduleTo": "2027-12-25T10:30:05Z", "payload": 1, "webhookUrl": "not a url"], ["webhookUrl"]),
                (["id": "kept", "scheduleTo": "2027-12-25T10:30:05Z", "webhookUrl": "https://example.com"], ["payload"]),
                (["id": "bad\nid", "scheduleTo": "2027-12-25T10:30:05Z", "payload": 1, "webhookUrl": "https://example.com"], ["id"]),
                (["id": .string(String(repeating: "x", count: 513)), "scheduleTo": "2027-12-25T10:30:05Z", "payload": 1, "webhookUrl": "https://e.com"], ["id"]),
                (["id": "", "scheduleTo": 5, "payload": 1], ["id", "scheduleTo", "webhookUrl"]),
                ([1, 2], ["body"]),
            ]
            for (body, fields) in cases {
                let response = try await app.call(.post, "/messages", body: body, token: Self.seedToken)
                #expect(response.status == .badRequest, "\(body): \(response.text)")
                #expect(Set(response.errorFields) == Set(fields), "\(body): \(response.text)")
            }
            let malformed = try await app.client.json(.post, "/messages", rawBody: #"{"id": "kept", "#, token: Self.seedToken)
            #expect(malformed.status == .badRequest && malformed.errorCode == "invalid_json")
            let large = Self.body("kept", "2027-12-25T10:30:05Z", url: "https://example.com", payload: .string(String(repeating: "x", count: 5000)))
            #expect(try await app.call(.post, "/messages", body: large, token: Self.seedToken).status == .contentTooLarge)
            #expect(try await app.call(.get, "/messages/bad%ZZ", token: Self.seedToken).status == .badRequest)

            let stored = try await app.call(.get, "/messages/kept", token: Self.seedToken)
            #expect(stored.json == good, "nothing stored changed: \(stored.text)")
            #expect(try await Self.timer(app, "kept")?.dueAt == Date(iso8601: "2027-06-01T12:00:00Z"))
            let unknown = try await app.call(.post, "/messages", body: ["id": "extra", "scheduleTo": "2027-06-01T12:00:00Z", "payload": 1, "webhookUrl": "https://e.com", "priority": 3], token: Self.seedToken)
            #expect(unknown.status == .ok, "members the seed ignores are ignored: \(unknown.text)")
        }
    }

    @Test("concurrent upserts share transactions; of those for one id the last stored wins, its row and its timer alike")
    func concurrentUpserts() async throws {
        try await TestApp.run { app in
            let due = app.clock.now().addingTimeInterval(600)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<60 {
                    group.addTask {
                        try await Self.schedule(
                            app, Self.body("same-\(index % 6)", due.addingTimeInterval(Double(index)).apiString, url: "https://e.com/\(index)"))
                    }
                }
                try await group.waitForAll()
            }
            // Several versions of one id in one call, deterministically.
            let service = ScheduledMessagesService(environment: app.runtime.environment)
            let versions = try (0..<3).map { index in
                try ScheduledMessageInput.read(Self.body("twice", due.addingTimeInterval(Double(index)).apiString, url: "https://e.com/v\(index)"))
            }
            try await service.store(versions)

            let rows = try await app.runtime.database.withSQL { sql in
                try await sql.raw("SELECT id, version, webhook_url FROM scheduled_messages").all().map {
                    (id: try $0.decode(column: "id", as: String.self), version: try $0.decode(column: "version", as: String.self),
                     url: try $0.decode(column: "webhook_url", as: String.self))
                }
            }
            #expect(Set(rows.map(\.id)) == Set((0..<6).map { "same-\($0)" } + ["twice"]))
            #expect(try await app.runtime.timers.count() == 7)
            for row in rows {
                let timer = try #require(try await Self.timer(app, row.id))
                #expect(timer.message.arguments["version"]?.stringValue == row.version, "the timer fires the stored version of \(row.id)")
            }
            #expect(rows.first { $0.id == "twice" }?.url == "https://e.com/v2", "the last of one call wins")
            #expect(try await Self.timer(app, "twice")?.dueAt == versions[2].dueAt)
        }
    }

    // MARK: Firing

    @Test("the beat fires a due message itself: it leaves the pending list at the pass, with no task between it and its delivery")
    func firedByTheBeat() async throws {
        let receiver = WebhookReceiver()
        try await receiver.run { baseURL in
            try await TestApp.run { app in
                let beat = app.runtime.makeBeat()
                try await Self.schedule(app, Self.body("by-beat", app.clock.now().addingTimeInterval(10).apiString, url: "\(baseURL)/hook"))
                app.clock.advance(by: 10)
                #expect(try await beat.pass().timersFired == 1)
                #expect(try await app.call(.get, "/messages/by-beat", token: Self.seedToken).status == .notFound, "fired at the pass")
                let queued = try await app.runtime.runs.list(TaskRunFilter(), page: PageRequest(limit: 50)).items.map(\.name)
                #expect(queued == ["webhooks.deliver"], "only the delivery was queued: \(queued)")
                try await withWorker(app, WorkerOptions(queues: ["default"], concurrency: 4)) { (_: Worker) async throws in
                    #expect(try await receiver.waitForHits(path: "/hook"))
                    #expect(try await WebhooksTests.drained(app))
                }
                #expect(receiver.hits.count == 1)
                #expect(try await beat.pass().timersFired == 0)
            }
        }
    }

    @Test("fires once at its time, signed, after an upsert moved it; a timer that fired before the upsert does nothing")
    func firesAtItsTimeAfterUpsert() async throws {
        let receiver = WebhookReceiver()
        try await receiver.run { baseURL in
            try await TestApp.run { app in
                // A beat without the plugins queues every timer as a task, as the beat does when firing a message
                // itself fails: this is the worker's path, where a task can wait while an upsert moves its message.
                let beat = BeatIsolationTests.beat(app, logs: CapturedLog())
                let start = app.clock.now()
                let due = start.addingTimeInterval(60)
                try await Self.schedule(app, Self.body("order-1", due.apiString, url: "\(baseURL)/first", payload: ["v": 1]))
                app.clock.advance(by: 59)
                #expect(try await beat.pass().timersFired == 0)
                app.clock.advance(by: 2)
                // The timer fires with no worker running: its task waits. Then an upsert moves the message.
                #expect(try await beat.pass().timersFired == 1)
                let moved = start.addingTimeInterval(120)
                try await Self.schedule(app, Self.body("order-1", moved.apiString, url: "\(baseURL)/second", payload: ["v": 2]))
                #expect(try await Self.timer(app, "order-1")?.dueAt == moved)

                try await withWorker(app, WorkerOptions(queues: ["default"], concurrency: 4)) { _ in
                    // The stale task ran and did nothing: the message is still pending.
                    #expect(try await eventually { try await app.runtime.broker.stats().allSatisfy { $0.ready == 0 && $0.inFlight == 0 } })
                    #expect(try await app.call(.get, "/messages/order-1", token: Self.seedToken).json["payload"] == ["v": 2])
                    #expect(receiver.hits.isEmpty, "the old time never fires")

                    app.clock.advance(by: 60)
                    #expect(try await receiver.waitForHits(path: "/second"))
                    let hit = try #require(receiver.hits.first)
                    #expect(hit.json == ["v": 2], "the payload is the body")
                    let secret = try await app.call(.get, "/api/v1/webhooks/config/\(ScheduledMessagesService.tenantID)/secret")
                    let key = try #require(secret.json["secret_key"]?.stringValue, "\(secret.text)")
                    #expect(WebhookSignatures.standardMatches(hit, secrets: [key]) == [key])
                    let eventID = try #require(hit.header("webhook-id"))
                    #expect(try await WebhooksTests.waitForState(app, eventID, "succeeded", attempts: 1))
                    #expect(try await WebhooksTests.drained(app))
                    #expect(receiver.hits.count == 1, "delivered once")
                    #expect(receiver.hits(path: "/first").isEmpty)

                    #expect(try await app.call(.get, "/messages/order-1", token: Self.seedToken).status == .notFound)
                    #expect(try await app.call(.get, "/messages", token: Self.seedToken).json["count"] == 0)
                    let deliveries = try await app.call(.get, "/messages/order-1/deliveries", token: Self.seedToken)
                    let delivery = try #require(deliveries.json["deliveries"]?.arrayValue?.first, "\(deliveries.text)")
                    #expect(deliveries.json["deliveries"]?.arrayValue?.count == 1)
                    #expect(delivery["eventId"] == .string(eventID) && delivery["state"] == "succeeded")
                    #expect(delivery["event"] == .string("/api/v1/webhooks/events/\(eventID)"))
                    #expect(delivery["scheduleTo"] == .string(moved.apiString))
                }
            }
        }
    }

    @Test("deleted and bulk-deleted messages never fire; run fires a pending message now; a past time fires at once")
    func deleteStopsFiringAndRunFiresNow() async throws {
        let receiver = WebhookReceiver()
        try await receiver.run { baseURL in
            try await TestApp.run { app in
                let due = app.clock.now().addingTimeInterval(30).apiString
                for id in ["keep", "gone-1", "bulk-a", "bulk-b", "now"] {
                    try await Self.schedule(app, Self.body(id, due, url: "\(baseURL)/\(id)", payload: ["id": .string(id)]))
                }
                try await withWorker(app, WorkerOptions(queues: ["default"], concurrency: 4)) { _ in
                    let run = try await app.call(.post, "/messages/now/run", token: Self.seedToken)
                    #expect(run.status == .accepted && run.json["status"] == "fired" && run.json["messageId"] == "now", "\(run.text)")
                    #expect(try await receiver.waitForHits(path: "/now"))
                    #expect(try await Self.timer(app, "now") == nil, "firing now removes the timer")
                    #expect(try await app.call(.post, "/messages/now/run", token: Self.seedToken).status == .notFound)

                    #expect(try await app.call(.delete, "/messages/gone-1", token: Self.seedToken).status == .ok)
                    #expect(try await app.call(.delete, "/messages/bulk?prefix=bulk-", token: Self.seedToken).json["deleted"] == 2)
                    try await Self.schedule(app, Self.body("late", "2020-01-01T00:00:00Z", url: "\(baseURL)/late"))
                    #expect(try await receiver.waitForHits(path: "/late"), "a time in the past fires at once")
                    #expect(try await WebhooksTests.drained(app))

                    app.clock.advance(by: 31)
                    #expect(try await receiver.waitForHits(path: "/keep"))
                    #expect(try await eventually { try await app.runtime.timers.count() == 0 })
                    #expect(try await WebhooksTests.drained(app))
                    #expect(receiver.hits.map(\.path).sorted() == ["/keep", "/late", "/now"], "\(receiver.hits.map(\.path))")
                }
            }
        }
    }

    @Test("with two beats and two workers on the real clock, every message arrives exactly once")
    func exactlyOnceWithTwoBeats() async throws {
        let receiver = WebhookReceiver()
        try await receiver.run { baseURL in
            try await TestApp.run(realClock: true) { app in
                let secondBeat = app.runtime.makeBeat(identity: "second-beat")
                let secondWorker = app.runtime.makeWorker(WorkerOptions(queues: ["default"], concurrency: 8), id: "second-worker")
                let beating = Task { try await secondBeat.run() }
                let working = Task { try await secondWorker.run() }
                defer {
                    beating.cancel()
                    working.cancel()
                }
                try await withWorker(app, WorkerOptions(queues: ["default"], concurrency: 8)) { _ in
                    let count = 60
                    for index in 0..<count {
                        let due = Date().addingTimeInterval(0.5 + Double(index % 10) * 0.1)
                        try await Self.schedule(app, Self.body("twice-\(index)", due.apiString, url: "\(baseURL)/hook", payload: ["n": .number(Double(index))]))
                    }
                    #expect(try await eventually { receiver.distinctEventIDs.count >= count })
                    #expect(try await WebhooksTests.drained(app))
                    try await Task.sleep(for: .milliseconds(300))
                    let perEvent = Dictionary(grouping: receiver.hits, by: { $0.header("webhook-id") ?? "" })
                    #expect(perEvent.count == count)
                    #expect(perEvent.values.allSatisfy { $0.count == 1 }, "a webhook-id arrived twice")
                    let bodies = Set(receiver.hits.compactMap { $0.json["n"]?.intValue })
                    #expect(bodies == Set(0..<count))
                }
                beating.cancel()
                working.cancel()
                _ = try? await beating.value
                _ = try? await working.value
            }
        }
    }

    @Test("a restart in the middle loses nothing: a new process's beat and worker fire what the old one left, once")
    func restartLosesNothing() async throws {
        let receiver = WebhookReceiver()
        try await receiver.run { baseURL in
            try await TestApp.run { app in
                let start = app.clock.now()
                for index in 0..<6 {
                    let due = start.addingTimeInterval(index < 3 ? 10 : 100)
                    try await Self.schedule(app, Self.body("restart-\(index)", due.apiString, url: "\(baseURL)/hook", payload: ["n": .number(Double(index))]))
                }
                // The first process fires the first three timers and dies before any worker ran their tasks.
                app.clock.advance(by: 11)
                #expect(try await app.runtime.makeBeat().pass().timersFired == 3)
                await app.runtime.shutdown()

                let clock = ManualTimeSource(app.clock.now())
                let restarted = try await Runtime(
                    settings: app.runtime.settings, database: app.runtime.database, registry: app.runtime.registry, clock: clock,
                    logger: TestDatabase.logger)
                let worker = restarted.makeWorker(WorkerOptions(queues: ["default"], concurrency: 4))
                let working = Task { try await worker.run() }
                defer { working.cancel() }
                let beat = restarted.makeBeat()
                #expect(try await eventually { receiver.distinctEventIDs.count == 3 }, "the tasks the old beat queued run")
                #expect(try await eventually { try await restarted.broker.stats().allSatisfy { $0.ready == 0 && $0.inFlight == 0 } })
                clock.advance(by: 90)
                #expect(try await beat.pass().timersFired == 3, "the timers are still there, with no restore scan")
                #expect(try await eventually { receiver.distinctEventIDs.count == 6 })
                #expect(try await eventually { try await restarted.broker.stats().allSatisfy { $0.ready == 0 && $0.inFlight == 0 } })
                #expect(receiver.hits.count == 6, "each once")
                #expect(Set(receiver.hits.compactMap { $0.json["n"]?.intValue }) == Set(0..<6))
                working.cancel()
                _ = try? await working.value
                await restarted.shutdown()
            }
        }
    }

    @Test("neither the bearer token nor a payload reaches a log line, and errors do not echo them")
    func nothingSecretLogged() async throws {
        let receiver = WebhookReceiver()
        try await receiver.run { baseURL in
            try await TestApp.run { app in
                let log = CapturedLog()
                let process = try await Runtime(
                    settings: app.runtime.settings, database: app.runtime.database, registry: app.runtime.registry, clock: app.clock,
                    logger: log.logger, passwordHasher: PasswordHasher(cost: 4))
                let marker = "payload-SECRET-0123456789"
                let answers = try await APIServer.makeApplication(process).test(.router) { client in
                    var answers: [String] = []
                    let body = Self.body("quiet", "2030-01-01T00:00:00Z", url: "\(baseURL)/hook", payload: ["note": .string(marker)])
                    answers.append(try await client.json(.post, "/messages", body: body, token: Self.seedToken).text)
                    answers.append(try await client.json(.post, "/messages", rawBody: #"{"id": "x", "payload": "\#(marker)""#, token: Self.seedToken).text)
                    var bad = body.objectValue ?? [:]
                    bad["scheduleTo"] = .string(marker)
                    answers.append(try await client.json(.post, "/messages", body: .object(bad), token: Self.seedToken).text)
                    answers.append(try await client.json(.get, "/messages", token: Self.seedToken + "-wrong").text)
                    answers.append(try await client.json(.post, "/messages/quiet/run", token: Self.seedToken).text)
                    return answers
                }
                let worker = process.makeWorker(WorkerOptions(queues: ["default"], concurrency: 4))
                let running = Task { try await worker.run() }
                defer { running.cancel() }
                #expect(try await receiver.waitForHits(path: "/hook"))
                #expect(receiver.hits.first?.json == ["note": .string(marker)], "the payload does reach the receiver")
                #expect(try await eventually { try await process.broker.stats().allSatisfy { $0.ready == 0 && $0.inFlight == 0 } })
                running.cancel()
                _ = try? await running.value
                await process.shutdown()

                #expect(log.texts.contains { $0.contains("/messages") }, "requests were logged: \(log.texts.count) lines")
                #expect(log.texts.contains { $0.contains(WebhookDelivery.taskName) }, "the delivery was logged: \(log.texts.count) lines")
                for secret in [Self.seedToken, marker] {
                    #expect(!log.text.contains(secret), "a log line holds a secret or a payload")
                    #expect(!answers[1...].contains { $0.contains(secret) }, "an error answer echoes what was sent")
                }
            }
        }
    }

    @Test("two `integrator worker --beat` processes, one SIGKILLed part-way and replaced: every message fires once")
    func killedProcess() async throws {
        let directory = try CLITests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let total = 600
        let receiver = WebhookReceiver()
        try await receiver.run { baseURL in
            try await TestApp.run(realClock: true) { app in
                let keyRing = try #require(app.runtime.settings.secretKeys)
                let secretKey = keyRing.current.key.withUnsafeBytes { Data($0) }.base64EncodedString()
                let start = Date().addingTimeInterval(2)
                for index in 0..<total {
                    let due = start.addingTimeInterval(Double(index % 60) * 0.05)
                    try await Self.schedule(
                        app, Self.body("proc-\(index)", due.apiString, url: "\(baseURL)/hook", payload: ["n": .number(Double(index))]))
                }
                let databaseURL = CLITests.url(for: app.runtime.database.location)
                let first = try WebhooksProcessTests.startWorker(database: databaseURL, secretKey: secretKey, in: directory, withBeat: true)
                let second = try WebhooksProcessTests.startWorker(database: databaseURL, secretKey: secretKey, in: directory, withBeat: true)
                defer {
                    for process in [first, second] where process.isRunning { process.terminate() }
                }
                #expect(try await eventually(120) { receiver.distinctEventIDs.count >= total / 4 })
                kill(first.processIdentifier, SIGKILL)
                first.waitUntilExit()
                #expect(receiver.distinctEventIDs.count < total, "the kill came after the last delivery and shows nothing")
                let replacement = try WebhooksProcessTests.startWorker(database: databaseURL, secretKey: secretKey, in: directory, withBeat: true)
                defer {
                    if replacement.isRunning { replacement.terminate() }
                    replacement.waitUntilExit()
                }
                #expect(try await eventually(240) { receiver.distinctEventIDs.count >= total })
                #expect(try await eventually(60) { try await app.runtime.broker.stats().allSatisfy { $0.ready == 0 && $0.inFlight == 0 } })
                for process in [second, replacement] {
                    process.terminate()
                    process.waitUntilExit()
                }

                // Each message fired once: one webhook event per message, whatever the kill repeated. A delivery the
                // killed process had in flight may arrive again, with the same webhook-id and body.
                var perEvent: [String: [WebhookReceiver.Hit]] = [:]
                for hit in receiver.hits { perEvent[hit.header("webhook-id") ?? "", default: []].append(hit) }
                #expect(perEvent.count == total)
                let messages = perEvent.values.compactMap { $0.first?.json["n"]?.intValue }
                #expect(messages.count == total && Set(messages) == Set(0..<total), "a message fired as two events, or not at all")
                #expect(perEvent.values.allSatisfy { Set($0.map(\.body)).count == 1 })
                // The killed process held at most `concurrency` delivery tasks of up to `batchSize` events each.
                let repeated = perEvent.values.filter { $0.count > 1 }.count
                #expect(repeated <= WebhooksProcessTests.concurrency * WebhookDelivery.batchSize, "\(repeated) deliveries were repeated")
                let firings = try await app.runtime.database.withSQL { sql in
                    try await sql.raw("SELECT COUNT(*) AS n FROM scheduled_messages_fired").first()?.decode(column: "n", as: Int.self) ?? 0
                }
                #expect(firings == total)
                #expect(try await app.call(.get, "/messages", token: Self.seedToken).json["count"] == 0)
            }
        }
    }

    @Test("lists longer than a page are answered whole, and prefix search pages through the primary key")
    func longLists() async throws {
        try await TestApp.run { app in
            let service = ScheduledMessagesService(environment: app.runtime.environment)
            let due = Date(iso8601: "2027-01-01T00:00:00Z")!
            let messages = (0..<1203).map { index in
                ScheduledMessage(
                    id: String(format: index % 2 == 0 ? "even_%05d" : "odd_%05d", index), scheduleTo: "2027-01-01T00:00:00Z",
                    dueAt: due, payload: ["n": .number(Double(index))], webhookURL: "https://example.com/hook")
            }
            try await service.load(messages)
            #expect(try await app.runtime.timers.count() == 1203)
            let all = try await app.call(.get, "/messages", token: Self.seedToken)
            #expect(all.status == .ok)
            #expect(all.json["count"] == 1203)
            #expect(Set(Self.ids(all.json["scheduledJobs"], key: "messageId")) == Set(messages.map(\.id)))
            let odd = try await app.call(.get, "/messages/search?prefix=odd_", token: Self.seedToken)
            #expect(odd.json["count"] == 601)
            #expect(Self.ids(odd.json["messages"]) == messages.map(\.id).filter { $0.hasPrefix("odd_") }.sorted())
            let deleted = try await app.call(.delete, "/messages/bulk?prefix=even_", token: Self.seedToken)
            #expect(deleted.json["deleted"] == 602)
            #expect(try await app.runtime.timers.count() == 601)
        }
    }
}

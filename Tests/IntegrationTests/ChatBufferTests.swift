// The chat buffer (seed 001) through its API, a real worker, a beat driven on the manual clock and a real receiver:
// the seed's exact request and webhook body, TTL resets, max_wait, ordering, the flush racing new messages, crashes,
// restarts, bad input, roles and secrets.
import Foundation
import HummingbirdTesting
import IntegratorCore
import Logging
@testable import Plugins
import SQLKit
import Synchronization
import Testing

@Suite("Chat buffer")
struct ChatBufferTests {
    /// The seed README's request, byte for byte.
    static let seedRequest = """
        {
            "id_agente": 1,
            "numero_conectado": "+5511999999999",
            "foto": "https://example.com/photo.jpg",
            "phone": "+5511888888888",
            "sender_name": "João Silva",
            "user": "joao.silva",
            "chave": "chave123",
            "instance_id": "inst_123",
            "servidor": "srv1",
            "token": "token123",
            "token_seguranca": "sec_token123",
            "modo": "chat",
            "plataforma_ia": 1,
            "server_url": "https://api.example.com",
            "provider": 1,
            "id_instancia": 1,
            "message": "Sua mensagem aqui",
            "ttl": 30
        }
        """

    static func seedRequest(message: String) -> String {
        seedRequest.replacingOccurrences(of: "Sua mensagem aqui", with: message)
    }

    /// Sets the webhook URL through the API and insists on 200.
    static func configure(_ app: TestApp, url: String) async throws {
        let response = try await app.call(.put, "/api/v1/chat-buffer/config", body: ["webhook_url": .string(url)])
        guard response.status == .ok else { throw TestSetupError("configuring the chat buffer failed: \(response.text)") }
    }

    /// Runs `body` with a receiver and an app whose chat buffer posts to the receiver's `path`.
    static func withReceiver(path: String = "/hook", _ body: @Sendable (TestApp, WebhookReceiver) async throws -> Void) async throws {
        let receiver = WebhookReceiver()
        try await receiver.run { baseURL in
            try await TestApp.run { app in
                try await configure(app, url: baseURL + path)
                try await body(app, receiver)
            }
        }
    }

    static func post(_ app: TestApp, _ body: JSONValue, token: String? = nil) async throws -> JSONResponse {
        try await app.call(.post, "/api/message", body: body, token: token)
    }

    /// Posts and insists on 200; returns the answer.
    @discardableResult
    static func send(_ app: TestApp, user: String, _ message: String, _ extra: [String: JSONValue] = [:]) async throws -> JSONValue {
        var body: [String: JSONValue] = ["user": .string(user), "message": .string(message)]
        body.merge(extra) { _, new in new }
        let response = try await post(app, .object(body))
        guard response.status == .ok else { throw TestSetupError("POST /api/message failed: \(response.status) \(response.text)") }
        return response.json
    }

    /// The pending flush timer of `user`, with the buffer it carries.
    static func flushTimer(_ app: TestApp, user: String) async throws -> (timer: DurableTimer, buffer: String)? {
        guard let timer = try await app.runtime.timers.find(id: "chat-buffer:\(user)"),
            let buffer = timer.message.arguments["buffer"]?.stringValue
        else { return nil }
        return (timer, buffer)
    }

    static func messages(_ hit: WebhookReceiver.Hit) -> [String] {
        hit.json["messages"]?.arrayValue?.compactMap(\.stringValue) ?? []
    }

    static func rowCount(_ app: TestApp, _ table: String) async throws -> Int {
        try await app.runtime.database.withSQL { sql in
            try await sql.raw("SELECT COUNT(*) AS n FROM \(unsafeRaw: table)").first()?.decode(column: "n", as: Int.self) ?? -1
        }
    }

    /// Runs a worker on `default` (the flush and the delivery) while `body` drives the beat by hand.
    static func withWorkerOnly<T: Sendable>(_ app: TestApp, _ body: @Sendable (Beat) async throws -> T) async throws -> T {
        let worker = app.runtime.makeWorker(WorkerOptions(queues: ["default"], concurrency: 4))
        let running = Task { try await worker.run() }
        defer { running.cancel() }
        let value = try await body(app.runtime.makeBeat())
        running.cancel()
        _ = try? await running.value
        return value
    }

    // MARK: The seed's request and webhook

    @Test("the seed's request answers as the seed did; three messages become one webhook in the seed's shape, signed, at the deadline")
    func seedRequestAndWebhook() async throws {
        try await Self.withReceiver(path: "/webhook/process") { app, receiver in
            try await Self.withWorkerOnly(app) { beat in
                let start = app.clock.now()
                for (index, text) in ["Mensagem 1", "Mensagem 2", "Mensagem 3"].enumerated() {
                    if index > 0 { app.clock.advance(by: 5) }
                    let response = try await app.client.json(
                        .post, "/api/message", rawBody: Self.seedRequest(message: text), token: TestApp.apiToken)
                    #expect(response.status == .ok, "\(response.text)")
                    let expected: JSONValue = [
                        "success": true, "message": "Mensagem salva para usuário joao.silva, expira em 30 segundos",
                        "user": "joao.silva", "buffered": .number(Double(index + 1)),
                        "flush_at": .string(app.clock.now().addingTimeInterval(30).apiString),
                    ]
                    #expect(response.json == expected)
                }
                let deadline = start.addingTimeInterval(40)
                let buffered = try await app.call(.get, "/api/v1/chat-buffer/buffers/joao.silva")
                #expect(buffered.json["buffered"] == 3 && buffered.json["flush_at"] == .string(deadline.apiString), "\(buffered.text)")

                // Each message moved the timer the first one set (+30) along with the deadline (+40).
                #expect(try await Self.flushTimer(app, user: "joao.silva")?.timer.dueAt == deadline)
                app.clock.set(deadline.addingTimeInterval(-0.5))
                #expect(try await beat.pass().timersFired == 0)
                #expect(receiver.hits.isEmpty, "each message pushed the flush back by its ttl")

                app.clock.set(deadline)
                #expect(try await beat.pass().timersFired == 1)
                #expect(try await receiver.waitForHits(path: "/webhook/process"))
                #expect(try await WebhooksTests.drained(app))
                let hits = receiver.hits
                #expect(hits.count == 1)
                let hit = try #require(hits.first)

                var expected = try #require(try JSONValue.parse(Self.seedRequest).objectValue)
                expected["message"] = nil
                expected["ttl"] = nil
                expected["user_id"] = "joao.silva"
                expected["messages"] = ["Mensagem 1", "Mensagem 2", "Mensagem 3"]
                expected["processed_at"] = .string(ChatBufferWebhookBody.processedTime(deadline))
                #expect(hit.json == .object(expected), "the seed's webhook body, field by field")
                let processedAt = try #require(hit.json["processed_at"]?.stringValue)
                #expect(processedAt.wholeMatch(of: /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}/) != nil, "\(processedAt)")

                let secret = try await app.call(.get, "/api/v1/webhooks/config/chat-buffer/secret")
                let key = try #require(secret.json["secret_key"]?.stringValue, "\(secret.text)")
                #expect(WebhookSignatures.standardMatches(hit, secrets: [key]) == [key])
                #expect(hit.header("X-Event-Type") == "chat_buffer.flushed")
                let eventID = try #require(hit.header("webhook-id"))
                #expect(eventID == buffered.json["event_id"]?.stringValue)
                #expect(try await WebhooksTests.waitForState(app, eventID, "succeeded"))

                #expect(try await app.call(.get, "/api/v1/chat-buffer/buffers/joao.silva").status == .notFound)
                #expect(try await Self.rowCount(app, "chat_buffer_messages") == 0)
                #expect(try await Self.rowCount(app, "chat_buffer_users") == 0)
            }
        }
    }

    // MARK: TTL, max_wait, order

    @Test("every message resets its user's deadline to now + its ttl (later or sooner); users flush apart; order is arrival order")
    func ttlResetsAndOrder() async throws {
        try await Self.withReceiver { app, receiver in
            try await Self.withWorkerOnly(app) { beat in
                let start = app.clock.now()
                try await Self.send(app, user: "ana", "a1", ["ttl": 10])
                try await Self.send(app, user: "bia", "b1", ["ttl": 60])
                app.clock.advance(by: 8)
                try await Self.send(app, user: "ana", "a2", ["ttl": 10])
                // A shorter ttl brings bia's deadline forward, as the seed's key expiry did.
                let bia = try await Self.send(app, user: "bia", "b2", ["ttl": 5])
                #expect(bia["flush_at"] == .string(start.addingTimeInterval(13).apiString))
                for index in 3...20 { try await Self.send(app, user: "ana", "a\(index)", ["ttl": 10]) }

                // Ana's timer (t+10) moved along with her deadline (t+18); bia's came forward (t+13).
                app.clock.set(start.addingTimeInterval(12.9))
                #expect(try await beat.pass().timersFired == 0)
                #expect(receiver.hits.isEmpty)
                app.clock.set(start.addingTimeInterval(13))
                #expect(try await beat.pass().timersFired == 1)
                #expect(try await receiver.waitForHits(path: "/hook"))
                #expect(try await WebhooksTests.drained(app))
                app.clock.set(start.addingTimeInterval(17.9))
                #expect(try await beat.pass().timersFired == 0, "ana's ttl restarted at her last message (t+8)")
                app.clock.set(start.addingTimeInterval(18))
                #expect(try await beat.pass().timersFired == 1)
                #expect(try await receiver.waitForHits(path: "/hook", count: 2))
                #expect(try await WebhooksTests.drained(app))

                let hits = receiver.hits
                #expect(hits.count == 2)
                #expect(hits.first.map(Self.messages) == ["b1", "b2"])
                #expect(hits.last.map(Self.messages) == (1...20).map { "a\($0)" })
                #expect(hits.last?.json["user"] == "ana" && hits.last?.json["user_id"] == "ana")
                #expect(Set(hits.compactMap { $0.header("webhook-id") }).count == 2)
            }
        }
    }

    @Test("max_wait caps the wait of a user who never goes quiet; the next message opens a new buffer")
    func maxWaitCapsTheWait() async throws {
        try await Self.withReceiver { app, receiver in
            try await Self.withWorkerOnly(app) { beat in
                let start = app.clock.now()
                let first = try await Self.send(app, user: "chatty", "m0", ["ttl": 15, "max_wait": 30])
                #expect(first["flush_at"] == .string(start.addingTimeInterval(15).apiString))
                for step in 1...2 {
                    app.clock.advance(by: 10)
                    let answer = try await Self.send(app, user: "chatty", "m\(step)", ["ttl": 15])
                    try await beat.pass()
                    #expect(try await WebhooksTests.drained(app))
                    #expect(receiver.hits.isEmpty)
                    let expected = min(start.addingTimeInterval(Double(step) * 10 + 15), start.addingTimeInterval(30))
                    #expect(answer["flush_at"] == .string(expected.apiString), "step \(step): \(answer)")
                }
                app.clock.set(start.addingTimeInterval(30))
                #expect(try await beat.pass().timersFired == 1, "30 s after the first message although the last came 10 s ago")
                #expect(try await receiver.waitForHits(path: "/hook"))
                #expect(receiver.hits.first.map(Self.messages) == ["m0", "m1", "m2"])

                let next = try await Self.send(app, user: "chatty", "m3", ["ttl": 15])
                #expect(next["buffered"] == 1, "a new buffer: \(next)")
                app.clock.advance(by: 15)
                #expect(try await beat.pass().timersFired == 1)
                #expect(try await receiver.waitForHits(path: "/hook", count: 2))
                #expect(try await WebhooksTests.drained(app))
                #expect(receiver.hits.count == 2)
                #expect(receiver.hits.last.map(Self.messages) == ["m3"])
            }
        }
    }

    // MARK: Races and crashes

    @Test("a message that arrives while its user's buffer is being flushed waits for the flush and goes into the next one")
    func messageDuringFlush() async throws {
        try await Self.withReceiver { app, receiver in
            try await Self.withWorkerOnly(app) { beat in
                try await Self.send(app, user: "rita", "r1")
                try await Self.send(app, user: "rita", "r2")
                let pending = try #require(try await Self.flushTimer(app, user: "rita"))
                app.clock.advance(by: 15)
                let service = ChatBufferService(environment: app.runtime.environment, options: ChatBufferOptions())
                let inside = Latch()
                let release = Latch()
                let flushing = Task {
                    try await service.flush(userKey: "rita", bufferID: pending.buffer) {
                        inside.open()
                        try await release.wait()
                    }
                }
                #expect(await inside.wait(upTo: .seconds(10)), "the flush took the buffer")
                let answered = Mutex(false)
                let arriving = Task {
                    let answer = try await Self.send(app, user: "rita", "r3")
                    answered.withLock { $0 = true }
                    return answer
                }
                try await Task.sleep(for: .milliseconds(200))
                #expect(!answered.withLock { $0 }, "the new message waits for the flush's transaction")
                release.open()
                let outcome = try await flushing.value
                #expect(outcome == .flushed(eventID: "chat-buffer-\(pending.buffer)", messages: 2))
                let answer = try await arriving.value
                #expect(answer["buffered"] == 1, "the new message opened the next buffer: \(answer)")
                #expect(try await receiver.waitForHits(path: "/hook"))
                #expect(receiver.hits.first.map(Self.messages) == ["r1", "r2"])

                app.clock.advance(by: 15)
                #expect(try await beat.pass().timersFired == 1)
                #expect(try await receiver.waitForHits(path: "/hook", count: 2))
                #expect(try await WebhooksTests.drained(app))
                #expect(receiver.hits.count == 2)
                #expect(receiver.hits.last.map(Self.messages) == ["r3"])
            }
        }
    }

    @Test("a message that pushes the deadline later moves the timer along: one fire and one flush task for the whole burst")
    func laterDeadlineMovesTheTimer() async throws {
        try await Self.withReceiver { app, receiver in
            let beat = app.runtime.makeBeat()
            try await Self.send(app, user: "dora", "d1")
            app.clock.advance(by: 10)
            try await Self.send(app, user: "dora", "d2")
            #expect(try await Self.flushTimer(app, user: "dora")?.timer.dueAt == app.clock.now().addingTimeInterval(15))
            app.clock.advance(by: 6)
            #expect(try await beat.pass().timersFired == 0, "the first deadline has passed, but the timer moved with the second")
            app.clock.advance(by: 10)
            #expect(try await beat.pass().timersFired == 1)
            try await Self.withWorkerOnly(app) { (_: Beat) async throws in
                #expect(try await receiver.waitForHits(path: "/hook"))
                #expect(try await WebhooksTests.drained(app))
            }
            let runs = try await app.runtime.runs.list(TaskRunFilter(name: ChatBufferFlush.taskName), page: PageRequest(limit: 10))
            #expect(runs.items.count == 1, "one flush task")
            #expect(receiver.hits.count == 1)
            #expect(receiver.hits.first.map(Self.messages) == ["d1", "d2"])
        }
    }

    @Test("messages stored together: each user's take the next numbers in arrival order, the last ttl sets the deadline, one timer per user")
    func messagesStoredTogether() async throws {
        try await Self.withReceiver { app, receiver in
            try await Self.send(app, user: "bea", "b1", ["ttl": 5])
            app.clock.advance(by: 1)
            let options = ChatBufferOptions()
            let batch = try [
                ("ana", "a1", 15), ("bea", "b2", 15), ("ana", "a2", 15), ("cid", "c1", 5), ("ana", "a3", 30), ("bea", "b3", 20),
            ].map { user, text, ttl in
                try ChatBufferMessage.parse(["user": .string(user), "message": .string(text), "ttl": .number(Double(ttl))], options: options)
            }
            let environment = app.runtime.environment
            let buffers = try await ChatBufferIntake.store(batch, environment: environment, store: ChatBufferStore(secrets: environment.secrets))
            #expect(buffers.map(\.userKey) == ["ana", "bea", "ana", "cid", "ana", "bea"])
            #expect(buffers.map(\.lastSeq) == [1, 2, 2, 1, 3, 3])
            let now = app.clock.now()
            #expect(buffers.map(\.flushAt) == [30, 20, 30, 5, 30, 20].map { now.addingTimeInterval(TimeInterval($0)) })
            #expect(try await Self.flushTimer(app, user: "ana")?.timer.dueAt == now.addingTimeInterval(30))
            #expect(try await Self.flushTimer(app, user: "bea")?.timer.dueAt == now.addingTimeInterval(20), "bea's timer moved later")
            #expect(try await Self.flushTimer(app, user: "cid")?.timer.dueAt == now.addingTimeInterval(5))
            #expect(try await Self.rowCount(app, "timers") == 3)
            #expect(try await Self.rowCount(app, "chat_buffer_messages") == 7)

            let beat = app.runtime.makeBeat()
            app.clock.advance(by: 30)
            #expect(try await beat.pass().timersFired == 3)
            try await Self.withWorkerOnly(app) { (_: Beat) async throws in
                #expect(try await receiver.waitForHits(path: "/hook", count: 3))
                #expect(try await WebhooksTests.drained(app))
            }
            #expect(receiver.hits.count == 3, "one webhook per user")
            let byUser = Dictionary(receiver.hits.map { ($0.json["user"]?.stringValue ?? "", Self.messages($0)) }) { first, _ in first }
            #expect(byUser == ["ana": ["a1", "a2", "a3"], "bea": ["b1", "b2", "b3"], "cid": ["c1"]])
        }
    }

    @Test("flushes together: due buffers become one event each, a buffer not yet due is postponed, a gone or repeated one is skipped")
    func flushesTogether() async throws {
        try await Self.withReceiver { app, receiver in
            for (user, ttl) in [("ana", 5), ("bea", 5), ("cid", 60)] {
                try await Self.send(app, user: user, "\(user)-1", ["ttl": .number(Double(ttl))])
                try await Self.send(app, user: user, "\(user)-2", ["ttl": .number(Double(ttl))])
            }
            func buffer(_ user: String) async throws -> String { try #require(try await Self.flushTimer(app, user: user)).buffer }
            let ana = try await buffer("ana"), bea = try await buffer("bea"), cid = try await buffer("cid")
            app.clock.advance(by: 10)
            let service = ChatBufferService(environment: app.runtime.environment, options: ChatBufferOptions())
            let requests = [("ana", ana), ("cid", cid), ("bea", bea), ("ana", ana), ("dan", "gone")].map {
                ChatBufferService.FlushRequest(userKey: $0.0, bufferID: $0.1)
            }
            let outcomes = try await service.flush(requests, firstAttempts: .queued)
            #expect(
                outcomes == [
                    .flushed(eventID: ChatBufferService.eventID(bufferID: ana), messages: 2),
                    .postponed(until: app.clock.now().addingTimeInterval(50)),
                    .flushed(eventID: ChatBufferService.eventID(bufferID: bea), messages: 2),
                    .skipped("the buffer was flushed already"), .skipped("the buffer was flushed already"),
                ])
            #expect(try await Self.rowCount(app, "chat_buffer_users") == 1)
            #expect(try await Self.rowCount(app, "chat_buffer_messages") == 2)
            try await Self.withWorkerOnly(app) { (_: Beat) async throws in
                #expect(try await receiver.waitForHits(path: "/hook", count: 2))
                #expect(try await WebhooksTests.drained(app))
            }
            #expect(receiver.hits.count == 2, "one webhook per flushed buffer")
            let byUser = Dictionary(receiver.hits.map { ($0.json["user"]?.stringValue ?? "", Self.messages($0)) }) { first, _ in first }
            #expect(byUser == ["ana": ["ana-1", "ana-2"], "bea": ["bea-1", "bea-2"]])
        }
    }

    @Test("a buffer that cannot be flushed (a message that does not open) fails its own task only; the others of its batch flush")
    func unreadableBufferFailsAlone() async throws {
        try await Self.withReceiver { app, _ in
            for user in ["ana", "bea", "cid"] { try await Self.send(app, user: user, "\(user)-1", ["ttl": 5]) }
            let buffers = try await ["ana", "bea", "cid"].asyncMap { user in
                ChatBufferService.FlushRequest(userKey: user, bufferID: try #require(try await Self.flushTimer(app, user: user)).buffer)
            }
            // bea's message sealed for another row: it no longer opens.
            try await app.runtime.database.withSQL { sql in
                try await sql.raw(
                    "UPDATE chat_buffer_messages SET fields = (SELECT fields FROM chat_buffer_messages WHERE user_key = 'ana') WHERE user_key = 'bea'"
                ).run()
            }
            app.clock.advance(by: 10)
            let service = ChatBufferService(environment: app.runtime.environment, options: ChatBufferOptions())
            let results = await ChatBufferFlushes.flush(buffers, service: service)
            #expect(results.count == 3)
            #expect((try? results[0].get()) == .flushed(eventID: ChatBufferService.eventID(bufferID: buffers[0].bufferID), messages: 1))
            #expect((try? results[1].get()) == nil, "bea's flush fails")
            #expect((try? results[2].get()) == .flushed(eventID: ChatBufferService.eventID(bufferID: buffers[2].bufferID), messages: 1))
            let left = try await app.runtime.database.withSQL { sql in
                try await sql.raw("SELECT user_key FROM chat_buffer_messages").all().map { try $0.decode(column: "user_key", as: String.self) }
            }
            #expect(left == ["bea"], "bea's message stays for a later try")
        }
    }

    @Test("a buffer row that does not know when its timer is due (from before timer_due) has its timer set by the next message")
    func unknownTimerDueIsSetAgain() async throws {
        try await Self.withReceiver { app, _ in
            try await Self.send(app, user: "vera", "v1", ["ttl": 60])
            try await app.runtime.database.withSQL { sql in
                try await sql.raw("UPDATE chat_buffer_users SET timer_due = NULL WHERE user_key = 'vera'").run()
            }
            app.clock.advance(by: 1)
            try await Self.send(app, user: "vera", "v2", ["ttl": 5])
            #expect(
                try await Self.flushTimer(app, user: "vera")?.timer.dueAt == app.clock.now().addingTimeInterval(5),
                "a sooner deadline brings the timer forward even though the row did not know its due time")
            let due = try await app.runtime.database.withSQL { sql in
                try await sql.raw("SELECT timer_due FROM chat_buffer_users WHERE user_key = 'vera'").first()?.decode(column: "timer_due", as: Date?.self)
            }
            #expect(due == app.clock.now().addingTimeInterval(5), "and the row knows it again")
        }
    }

    @Test("a flush whose timer fired before a later message arrived does not flush early; the later timer flushes everything once")
    func firedTimerOvertakenByMessage() async throws {
        try await Self.withReceiver { app, receiver in
            let beat = app.runtime.makeBeat()
            try await Self.send(app, user: "caio", "c1")
            app.clock.advance(by: 15)
            #expect(try await beat.pass().timersFired == 1, "the flush task is queued, no worker runs yet")
            try await Self.send(app, user: "caio", "c2")
            let outcome = try await Self.withWorkerOnly(app) { _ in
                try await WebhooksTests.drained(app)
            }
            #expect(outcome)
            #expect(receiver.hits.isEmpty, "the queued flush saw the later deadline and re-armed the timer for it")
            let run = try await app.runtime.runs.list(TaskRunFilter(name: ChatBufferFlush.taskName), page: PageRequest(limit: 10))
            #expect(run.items.first?.result?["postponed_until"] == .string(app.clock.now().addingTimeInterval(15).apiString))

            app.clock.advance(by: 15)
            try await Self.withWorkerOnly(app) { beat in
                let fired = try await beat.pass().timersFired
                #expect(fired == 1)
                #expect(try await receiver.waitForHits(path: "/hook"))
                #expect(try await WebhooksTests.drained(app))
            }
            #expect(receiver.hits.count == 1)
            #expect(receiver.hits.first.map(Self.messages) == ["c1", "c2"])
        }
    }

    @Test("a flush that dies before committing leaves every message; run again it sends them once, with the buffer's webhook-id")
    func crashedFlushRunsAgain() async throws {
        try await Self.withReceiver { app, receiver in
            try await Self.withWorkerOnly(app) { _ in
                for text in ["x1", "x2", "x3"] { try await Self.send(app, user: "ines", text) }
                let pending = try #require(try await Self.flushTimer(app, user: "ines"))
                app.clock.advance(by: 15)
                let service = ChatBufferService(environment: app.runtime.environment, options: ChatBufferOptions())
                await #expect(throws: SimulatedCrash.self) {
                    try await service.flush(userKey: "ines", bufferID: pending.buffer) { throw SimulatedCrash() }
                }
                #expect(try await Self.rowCount(app, "chat_buffer_messages") == 3, "the rolled-back flush kept the messages")
                #expect(try await WebhooksTests.event(app, "chat-buffer-\(pending.buffer)").status == .notFound)

                let first = try await service.flush(userKey: "ines", bufferID: pending.buffer)
                #expect(first == .flushed(eventID: "chat-buffer-\(pending.buffer)", messages: 3))
                // The task delivered again after it committed (its worker died before acknowledging it).
                let again = try await service.flush(userKey: "ines", bufferID: pending.buffer)
                #expect(again == .skipped("the buffer was flushed already"))
                #expect(try await receiver.waitForHits(path: "/hook"))
                #expect(try await WebhooksTests.drained(app))
                #expect(receiver.hits.count == 1)
                #expect(receiver.hits.first?.header("webhook-id") == "chat-buffer-\(pending.buffer)")
                #expect(receiver.hits.first.map(Self.messages) == ["x1", "x2", "x3"])
            }
        }
    }

    @Test("a flush task whose worker died after the flush committed, before the webhook's first attempt: run again, it makes the attempt once")
    func flushTaskDiedBeforeItsAttempt() async throws {
        try await Self.withReceiver { app, receiver in
            for text in ["y1", "y2"] { try await Self.send(app, user: "olga", text) }
            let pending = try #require(try await Self.flushTimer(app, user: "olga"))
            app.clock.advance(by: 15)
            // The task's transaction, as the flush task commits it; its worker dies before making the attempt.
            let service = ChatBufferService(environment: app.runtime.environment, options: ChatBufferOptions())
            let flushed = try await service.flush(userKey: "olga", bufferID: pending.buffer, firstAttempts: .byCaller)
            let eventID = "chat-buffer-\(pending.buffer)"
            #expect(flushed == .flushed(eventID: eventID, messages: 2))
            #expect(try await app.runtime.broker.stats().allSatisfy { $0.ready == 0 }, "no delivery task was queued")
            #expect(try await WebhooksTests.delivery(app, eventID)?["attempt_count"] == 0)

            try await Self.withWorkerOnly(app) { (_: Beat) async throws in
                let arguments: JSONValue = ["user": "olga", "buffer": .string(pending.buffer)]
                // The task delivered again, then once more (a copy): the first makes the attempt, the second finds it made.
                for _ in 0..<2 {
                    try await app.runtime.tasks.enqueue(TaskMessage(name: ChatBufferFlush.taskName, arguments: arguments, enqueuedAt: app.clock.now()))
                    #expect(try await WebhooksTests.drained(app))
                }
                #expect(try await WebhooksTests.waitForState(app, eventID, "succeeded", attempts: 1))
            }
            #expect(receiver.hits.count == 1)
            #expect(receiver.hits.first?.header("webhook-id") == eventID)
            #expect(receiver.hits.first.map(Self.messages) == ["y1", "y2"])
        }
    }

    struct SimulatedCrash: Error {}

    // MARK: Restarts, public mode, secrets

    /// A second process on the same database: a runtime with its own clock and logger, and `plugins` in place of
    /// the built-in chat buffer when given.
    static func withSecondProcess<T: Sendable>(
        _ app: TestApp, chatBuffer: ChatBufferOptions = ChatBufferOptions(), logger: Logger = TestDatabase.logger,
        _ body: @Sendable (Runtime) async throws -> T
    ) async throws -> T {
        let plugins = BuiltinPlugins.all.filter { $0.id != "chat-buffer" } + [.chatBuffer(options: chatBuffer)]
        let runtime = try await Runtime(
            settings: app.runtime.settings, database: app.runtime.database, registry: try PluginRegistry(plugins),
            clock: app.clock, logger: logger, passwordHasher: PasswordHasher(cost: 4))
        do {
            let value = try await body(runtime)
            await runtime.shutdown()
            return value
        } catch {
            await runtime.shutdown()
            throw error
        }
    }

    @Test("buffers live in the database: messages taken by one process are flushed by another's beat and worker")
    func buffersSurviveRestarts() async throws {
        try await Self.withReceiver { app, receiver in
            try await Self.send(app, user: "leo", "before restart 1")
            try await Self.send(app, user: "leo", "before restart 2")
            app.clock.advance(by: 15)
            try await Self.withSecondProcess(app) { restarted in
                let worker = restarted.makeWorker(WorkerOptions(queues: ["default"], concurrency: 4))
                let running = Task { try await worker.run() }
                defer { running.cancel() }
                let fired = try await restarted.makeBeat().pass().timersFired
                #expect(fired == 1)
                #expect(try await receiver.waitForHits(path: "/hook"))
                #expect(try await WebhooksTests.drained(app))
                running.cancel()
                _ = try? await running.value
            }
            #expect(receiver.hits.count == 1)
            #expect(receiver.hits.first.map(Self.messages) == ["before restart 1", "before restart 2"])
        }
    }

    @Test("INTEGRATOR_CHAT_BUFFER_PUBLIC opens POST /api/message; by default it needs an operator token")
    func publicModeAndRoles() async throws {
        try await TestApp.run { app in
            try await Self.configure(app, url: "http://127.0.0.1:9/hook")
            let body: JSONValue = ["user": "u1", "message": "hi"]
            #expect(try await Self.post(app, body, token: "").status == .unauthorized)
            let viewer = try await app.token(for: .viewer)
            let operatorToken = try await app.token(for: .operator)
            #expect(try await Self.post(app, body, token: viewer).status == .forbidden)
            #expect(try await Self.post(app, body, token: operatorToken).status == .ok)
            #expect(try await Self.post(app, body, token: TestApp.apiToken).status == .ok)
            for token in [viewer, operatorToken] {
                #expect(try await app.call(.get, "/api/v1/chat-buffer/config", token: token).status == .forbidden)
                #expect(try await app.call(.put, "/api/v1/chat-buffer/config", body: ["webhook_url": "http://x.example/"], token: token).status == .forbidden)
            }
            #expect(try await app.call(.get, "/api/v1/chat-buffer/buffers/u1", token: viewer).json["buffered"] == 2)
            try await Self.send(app, user: "+5511999999999@s.whatsapp.net", "oi")
            let encoded = try await app.call(.get, "/api/v1/chat-buffer/buffers/%2B5511999999999%40s.whatsapp.net", token: viewer)
            #expect(encoded.json["user"] == "+5511999999999@s.whatsapp.net", "\(encoded.text)")

            try await Self.withSecondProcess(app, chatBuffer: ChatBufferOptions(isPublic: true)) { open in
                try await APIServer.makeApplication(open).test(.router) { client in
                    let response = try await client.json(.post, "/api/message", body: body)
                    #expect(response.status == .ok, "\(response.text)")
                    #expect(response.json["buffered"] == 3)
                    let config = try await client.json(.get, "/api/v1/chat-buffer/config")
                    #expect(config.status == .unauthorized, "only the seed's endpoint opens")
                }
            }
        }
    }

    @Test("the webhook URL: WEBHOOK_URL applies until one is set through the API, which wins; null goes back to the environment")
    func webhookURLSetting() async throws {
        try await TestApp.run { app in
            let none = try await app.call(.get, "/api/v1/chat-buffer/config")
            #expect(none.json == ["webhook_url": nil, "source": nil, "tenant_id": "chat-buffer", "public": false])
            let refused = try await Self.post(app, ["user": "u", "message": "m"])
            #expect(refused.status == .serviceUnavailable && refused.errorCode == "unavailable", "\(refused.text)")
            #expect(refused.text.contains("WEBHOOK_URL"))

            let fromEnvironment = ChatBufferService(
                environment: app.runtime.environment, options: ChatBufferOptions(webhookURL: "https://env.example/hook"))
            #expect(try await fromEnvironment.configuration()["source"] == "environment")
            let accepted = try await fromEnvironment.accept(["user": "u", "message": "m"])
            #expect(accepted.buffer.lastSeq == 1)
            // The URL went away before the deadline: the buffer keeps its messages and tries again in a minute.
            app.clock.advance(by: 15)
            let withoutURL = ChatBufferService(environment: app.runtime.environment, options: ChatBufferOptions())
            let waiting = try await withoutURL.flush(userKey: "u", bufferID: accepted.buffer.bufferID)
            #expect(waiting == .waiting(retryAt: app.clock.now().addingTimeInterval(60)))
            #expect(try await Self.flushTimer(app, user: "u")?.timer.dueAt == app.clock.now().addingTimeInterval(60))
            #expect(try await Self.rowCount(app, "chat_buffer_messages") == 1)

            let bad = try await app.call(.put, "/api/v1/chat-buffer/config", body: ["webhook_url": "ftp://x.example/"])
            #expect(bad.status == .badRequest && bad.errorFields == ["webhook_url"], "\(bad.text)")
            let unknown = try await app.call(.put, "/api/v1/chat-buffer/config", body: ["url": "https://x.example/"])
            #expect(unknown.status == .badRequest && unknown.errorFields.contains("webhook_url") && unknown.errorFields.contains("url"))
            let set = try await app.call(.put, "/api/v1/chat-buffer/config", body: ["webhook_url": "https://api.example/hook"])
            #expect(set.json["webhook_url"] == "https://api.example/hook" && set.json["source"] == "api", "\(set.text)")
            #expect(try await fromEnvironment.configuration()["webhook_url"] == "https://api.example/hook", "the API's value wins")
            let cleared = try await app.call(.put, "/api/v1/chat-buffer/config", body: ["webhook_url": nil])
            #expect(cleared.json["source"] == .null)
            #expect(try await fromEnvironment.configuration()["source"] == "environment")
        }
    }

    @Test("bad input gets a 400 or 413 naming the field, and nothing is stored")
    func badInput() async throws {
        try await TestApp.run(maxBodySize: 4096) { app in
            try await Self.configure(app, url: "http://127.0.0.1:9/hook")
            let cases: [(body: String, status: Int, fields: [String])] = [
                (#"{"user": "u", "message": "m""#, 400, []),
                ("", 400, []),
                (#"["user", "message"]"#, 400, ["body"]),
                (#"{"message": "m"}"#, 400, ["user"]),
                (#"{"user": "u"}"#, 400, ["message"]),
                (#"{"user": "u", "message": null}"#, 400, ["message"]),
                (#"{}"#, 400, ["user", "message"]),
                (#"{"user": "", "message": "m"}"#, 400, ["user"]),
                (#"{"user": "a\u0000b", "message": "m"}"#, 400, ["user"]),
                (#"{"user": true, "message": "m"}"#, 400, ["user"]),
                (#"{"user": 1.5, "message": "m"}"#, 400, ["user"]),
                (#"{"user": "u", "message": "m", "ttl": 0}"#, 400, ["ttl"]),
                (#"{"user": "u", "message": "m", "ttl": 86401}"#, 400, ["ttl"]),
                (#"{"user": "u", "message": "m", "ttl": "sec_token123"}"#, 400, ["ttl"]),
                (#"{"user": "u", "message": "m", "ttl": 2.5}"#, 400, ["ttl"]),
                (#"{"user": "u", "message": "m", "max_wait": -1}"#, 400, ["max_wait"]),
                (#"{"message": "m", "ttl": -5}"#, 400, ["user", "ttl"]),
                (#"{"user": "u", "message": "\#(String(repeating: "x", count: 5000))"}"#, 413, []),
            ]
            for (body, status, fields) in cases {
                let response = try await app.client.json(.post, "/api/message", rawBody: body, token: app.adminToken)
                #expect(Int(response.status.code) == status, "\(body.prefix(80)): \(response.text)")
                #expect(response.errorFields.sorted() == fields.sorted(), "\(body.prefix(80)): \(response.text)")
                #expect(!response.text.contains("sec_token123"), "an error repeats a value")
            }
            #expect(try await Self.rowCount(app, "chat_buffer_messages") == 0)
            #expect(try await Self.rowCount(app, "chat_buffer_users") == 0)
            #expect(try await app.runtime.timers.count() == 0)
            // The limits themselves pass, and a whole-number user is the same chat as its digits.
            let numeric = try await Self.post(app, ["user": 5511999999999, "message": "m", "ttl": 86400, "max_wait": 1])
            #expect(numeric.status == .ok && numeric.json["user"] == 5511999999999, "\(numeric.text)")
            #expect(numeric.json["message"] == "Mensagem salva para usuário 5511999999999, expira em 86400 segundos")
            let digits = try await Self.send(app, user: "5511999999999", "m2", ["ttl": 1])
            #expect(digits["buffered"] == 2)
        }
    }

    @Test("token and token_seguranca reach the webhook as sent, but no log line, no answer and no stored column in the clear")
    func tokensStayHidden() async throws {
        try await Self.withReceiver { app, receiver in
            let tokens = ["tok-SECRET-chat-0123456789", "seg-SECRET-chat-0123456789"]
            let log = CapturedLog()
            try await Self.withSecondProcess(app, logger: log.logger) { process in
                let texts = try await APIServer.makeApplication(process).test(.router) { client in
                    var texts: [String] = []
                    for text in ["mensagem-sigilosa-1", "mensagem-sigilosa-2"] {
                        let response = try await client.json(
                            .post, "/api/message",
                            body: ["user": "sigilo", "message": .string(text), "token": .string(tokens[0]), "token_seguranca": .string(tokens[1])],
                            token: TestApp.apiToken)
                        #expect(response.status == .ok)
                        texts.append(response.text)
                    }
                    let wrong = try await client.json(
                        .post, "/api/message", body: ["user": "sigilo", "message": "m", "ttl": .string(tokens[0])], token: TestApp.apiToken)
                    #expect(wrong.status == .badRequest)
                    texts.append(wrong.text)
                    texts.append(try await client.json(.get, "/api/v1/chat-buffer/buffers/sigilo", token: TestApp.apiToken).text)
                    return texts
                }
                let stored = try await app.runtime.database.withSQL { sql in
                    try await sql.raw("SELECT fields FROM chat_buffer_messages").all().map { try $0.decode(column: "fields", as: String.self) }
                }
                #expect(stored.count == 2)
                for value in stored {
                    for token in tokens { #expect(!value.contains(token), "a stored message holds a token in the clear") }
                    #expect(!value.contains("mensagem-sigilosa"), "a stored message is readable")
                }

                let worker = process.makeWorker(WorkerOptions(queues: ["default"], concurrency: 4))
                let running = Task { try await worker.run() }
                defer { running.cancel() }
                app.clock.advance(by: 15)
                #expect(try await process.makeBeat().pass().timersFired == 1)
                #expect(try await receiver.waitForHits(path: "/hook"))
                #expect(try await WebhooksTests.drained(app))
                running.cancel()
                _ = try? await running.value

                let hit = try #require(receiver.hits.first)
                #expect(hit.json["token"] == .string(tokens[0]) && hit.json["token_seguranca"] == .string(tokens[1]))
                for text in texts {
                    for token in tokens { #expect(!text.contains(token), "an answer carries a token: \(text)") }
                }
            }
            let logText = log.text
            #expect(logText.contains("/api/message"), "the capture saw the requests, so its silence means something")
            for token in tokens { #expect(!logText.contains(token), "the log carries a token") }
        }
    }
}

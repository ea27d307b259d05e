// The Sympla provider against FakeSympla on 127.0.0.1: paging, streams, the s_token header, 429 with Retry-After,
// resuming after a crash, a bad key, and the connection test through the credentials API.
import Foundation
import IntegratorCore
import Logging
import Plugins
import Synchronization
import Testing

@Suite("Sympla provider against a fake Sympla")
struct SymplaProviderTests {
    /// What one test needs: outbound HTTP that may reach 127.0.0.1 and never really waits.
    struct Harness: Sendable {
        let fake: FakeSympla
        let baseURL: String
        let outbound: OutboundHTTP
        let sleeper: ManualSleeper

        static func run(_ fake: FakeSympla, _ body: @Sendable (Harness) async throws -> Void) async throws {
            try await fake.run { baseURL in
                let sleeper = ManualSleeper()
                let outbound = OutboundHTTP(
                    options: .init(allowedRanges: [IPAddressRange("127.0.0.0/8")!], sleeper: sleeper), logger: TestDatabase.logger)
                do {
                    try await body(Harness(fake: fake, baseURL: baseURL, outbound: outbound, sleeper: sleeper))
                    await outbound.shutdown()
                } catch {
                    await outbound.shutdown()
                    throw error
                }
            }
        }

        func credentials(key: String? = nil) -> CredentialValues {
            CredentialValues(
                typeID: "sympla", publicValues: ["base_url": .string(baseURL)], secretValues: ["api_key": Secret(key ?? fake.token)])
        }

        /// Runs one fetch with `config` (defaults applied) into `sink`, keeping cursors in `state`.
        func fetch(_ config: [String: JSONValue], state: Cursors, sink: Collected, key: String? = nil) async throws {
            let provider = SymplaProvider()
            let credentials = credentials(key: key)
            let http = outbound.client(for: credentials, credentialsID: "cred-1", type: SymplaCredentials(), logger: TestDatabase.logger)
            try await provider.fetch(
                FetchContext(
                    integrationID: "int-1", integrationName: "sympla", config: try provider.configFields.normalize(.object(config), at: "config"),
                    credentials: credentials, state: state, records: sink, logger: TestDatabase.logger, http: http))
        }
    }

    /// Records as a provider yields them; optionally dies after `crashAfter` records, like a killed worker.
    final class Collected: RecordSink {
        let records = Mutex<[RawRecord]>([])
        let crashAfter: Int?

        init(crashAfter: Int? = nil) { self.crashAfter = crashAfter }

        func emit(_ record: RawRecord) async throws {
            try records.withLock { records in
                if let crashAfter, records.count >= crashAfter { throw SimulatedCrash() }
                records.append(record)
            }
        }

        func ids(_ stream: String) -> [String] { records.withLock { $0.filter { $0.stream == stream }.map(\.externalID) } }
    }

    struct SimulatedCrash: Error {}

    /// Cursors kept in memory, as the fetch state table would keep them.
    final class Cursors: FetchState {
        let saved = Mutex<[String: JSONValue]>([:])
        func cursor(for stream: String) async throws -> JSONValue? { saved.withLock { $0[stream] } }
        func checkpoint(_ cursor: JSONValue, for stream: String) async throws { saved.withLock { $0[stream] = cursor } }
        subscript(stream: String) -> JSONValue? { saved.withLock { $0[stream] } }
    }

    @Test("all pages of every stream are fetched, each request signed with s_token and sorted by id")
    func allPagesAndStreams() async throws {
        let fake = FakeSympla()
        fake.seed(events: 5, orders: 3, participants: 4)
        try await Harness.run(fake) { harness in
            let sink = Collected()
            let state = Cursors()
            try await harness.fetch(["streams": ["events", "orders", "participants"], "page_size": 2], state: state, sink: sink)

            #expect(sink.ids("events") == (1001...1005).map(String.init))
            #expect(Set(sink.ids("orders")).count == 15)
            #expect(sink.ids("orders").count == 15)
            #expect(Set(sink.ids("participants")).count == 20)
            let requests = fake.requests
            #expect(requests.allSatisfy { $0.token == fake.token })
            #expect(requests.allSatisfy { $0.query["field_sort"] == "id" && $0.query["sort"] == "ASC" && $0.query["page_size"] == "2" })
            // Events: 3 pages for the events stream, and 3 more for each per-event stream.
            #expect(requests.filter { $0.path == "/events" }.map(\.page) == [1, 2, 3, 1, 2, 3, 1, 2, 3])
            #expect(requests.filter { $0.path == "/events/1003/orders" }.map(\.page) == [1, 2])
            #expect(requests.filter { $0.path == "/events/1005/participants" }.map(\.page) == [1, 2])
            #expect(requests.filter { $0.path == "/events" }.allSatisfy { $0.query["published"] == "true" && $0.query["from"] == nil })
            // Finished streams leave cursors that start the next run over.
            #expect(state["events"]?["next_page"] == 1)
            #expect(state["orders"]?["events_page"] == 1)
            #expect(state["orders"]?["event_id"] == nil)
        }
    }

    @Test("from_date and published go to Sympla as from and published")
    func filters() async throws {
        let fake = FakeSympla()
        fake.seed(events: 4)
        fake.updateEvent(1002, "published", to: 0)
        try await Harness.run(fake) { harness in
            let sink = Collected()
            try await harness.fetch(["from_date": "2024-02-01 00:00:00"], state: Cursors(), sink: sink)
            #expect(fake.requests.last?.query["from"] == "2024-02-01 00:00:00")
            #expect(sink.ids("events") == ["1003", "1004"])

            let all = Collected()
            try await harness.fetch(["published": false], state: Cursors(), sink: all)
            #expect(fake.requests.last?.query["published"] == "false")
            #expect(all.ids("events") == ["1001", "1002", "1003", "1004"])
        }
    }

    @Test("a 429 with Retry-After is waited out on the injected clock, then the page is fetched")
    func retryAfter() async throws {
        let fake = FakeSympla()
        fake.seed(events: 3)
        fake.fail("/events", page: 2, status: 429, headers: ["Retry-After": "60"], body: #"{"error": true, "code": 429, "message": "Too many requests"}"#)
        try await Harness.run(fake) { harness in
            let sink = Collected()
            let started = ContinuousClock.now
            try await harness.fetch(["page_size": 1], state: Cursors(), sink: sink)
            #expect(sink.ids("events") == ["1001", "1002", "1003"])
            #expect(fake.requests.map(\.page) == [1, 2, 2, 3])
            #expect(harness.sleeper.waits.contains(60))
            // Really sleeping the 60 s would take at least 60 s; four local requests take far less, even with the whole
            // suite sharing two cores.
            #expect(ContinuousClock.now - started < .seconds(30))
        }
    }

    @Test("5xx answers are retried with backoff; a page that keeps failing fails the fetch with Sympla's status")
    func serverErrors() async throws {
        let fake = FakeSympla()
        fake.seed(events: 2)
        fake.fail("/events", page: 1, status: 503, times: 2)
        try await Harness.run(fake) { harness in
            let sink = Collected()
            try await harness.fetch(["page_size": 1], state: Cursors(), sink: sink)
            #expect(sink.ids("events") == ["1001", "1002"])
            #expect(harness.sleeper.waits.count == 2)
            #expect(harness.sleeper.waits.allSatisfy { $0 <= 1 })

            fake.fail("/events", status: 502, times: 10)
            let error = await #expect(throws: PluginError.self) {
                try await harness.fetch([:], state: Cursors(), sink: Collected())
            }
            #expect(error?.isPermanent == false)
            #expect(error?.message.contains("HTTP 502") == true)
        }
    }

    @Test("a fetch that dies mid-way resumes from the page it was on")
    func resumesEvents() async throws {
        let fake = FakeSympla()
        fake.seed(events: 6)
        try await Harness.run(fake) { harness in
            let state = Cursors()
            let crashed = Collected(crashAfter: 3)
            await #expect(throws: SimulatedCrash.self) {
                try await harness.fetch(["page_size": 2], state: state, sink: crashed)
            }
            #expect(state["events"]?["next_page"] == 2)
            let before = fake.requests.count

            let resumed = Collected()
            try await harness.fetch(["page_size": 2], state: state, sink: resumed)
            #expect(fake.requests.dropFirst(before).map(\.page) == [2, 3])
            #expect(Set(crashed.ids("events") + resumed.ids("events")) == Set((1001...1006).map(String.init)))
            #expect(state["events"]?["next_page"] == 1)
        }
    }

    @Test("an orders pass that dies mid-event resumes inside that event and skips the finished ones")
    func resumesOrders() async throws {
        let fake = FakeSympla()
        fake.seed(events: 3, orders: 5)
        try await Harness.run(fake) { harness in
            let state = Cursors()
            // Event 1001: pages of 2, 2, 1 orders; event 1002: page 1 (2 orders), then the crash on page 2.
            let crashed = Collected(crashAfter: 8)
            await #expect(throws: SimulatedCrash.self) {
                try await harness.fetch(["streams": ["orders"], "page_size": 2], state: state, sink: crashed)
            }
            #expect(state["orders"]?["event_id"] == 1002)
            #expect(state["orders"]?["next_page"] == 2)
            let before = fake.requests.count

            let resumed = Collected()
            try await harness.fetch(["streams": ["orders"], "page_size": 2], state: state, sink: resumed)
            let again = fake.requests.dropFirst(before).filter { $0.path != "/events" }
            #expect(again.first?.path == "/events/1002/orders")
            #expect(again.first?.page == 2)
            #expect(!again.contains { $0.path == "/events/1001/orders" })
            #expect(Set(crashed.ids("orders") + resumed.ids("orders")).count == 15)
        }
    }

    @Test("a cursor saved under another filter is not resumed")
    func filterChangeRestarts() async throws {
        let fake = FakeSympla()
        fake.seed(events: 4)
        try await Harness.run(fake) { harness in
            let state = Cursors()
            try await state.checkpoint(["next_page": 2, "filter": "published=true;from=2020-01-01 00:00:00"], for: "events")
            let sink = Collected()
            try await harness.fetch(["page_size": 2], state: state, sink: sink)
            #expect(fake.requests.map(\.page) == [1, 2])
            #expect(sink.ids("events").count == 4)
        }
    }

    @Test("a bad key fails at once, permanently, quoting Sympla and never the key")
    func badKey() async throws {
        let fake = FakeSympla()
        fake.seed(events: 2)
        try await Harness.run(fake) { harness in
            let wrongKey = "wrong-key-that-must-not-leak-42"
            let error = await #expect(throws: PluginError.self) {
                try await harness.fetch([:], state: Cursors(), sink: Collected(), key: wrongKey)
            }
            #expect(error?.isPermanent == true)
            #expect(error?.message.contains("HTTP 401") == true)
            #expect(error?.message.contains("Token inválido") == true)
            #expect(error.map { "\($0)" }?.contains(wrongKey) == false)
            #expect(fake.requests.count == 1)
            #expect(harness.sleeper.waits.isEmpty)
        }
    }

    @Test("the connection test lists one event with the stored key, through the credentials API")
    func connectionTest() async throws {
        let fake = FakeSympla()
        fake.seed(events: 3)
        try await fake.run { baseURL in
            try await TestApp.run { app in
                let good = try await app.call(
                    .post, "/api/v1/credentials",
                    body: ["name": "sympla", "type": "sympla", "public": ["base_url": .string(baseURL)], "secret": ["api_key": .string(fake.token)]])
                let goodID = try #require(good.json["id"]?.stringValue)
                let passed = try await app.call(.post, "/api/v1/credentials/\(goodID)/test")
                #expect(passed.json["ok"] == true)
                #expect(fake.requests.last?.query["page_size"] == "1")
                #expect(fake.requests.last?.token == fake.token)

                let bad = try await app.call(
                    .post, "/api/v1/credentials",
                    body: ["name": "wrong", "type": "sympla", "public": ["base_url": .string(baseURL)], "secret": ["api_key": "not-the-key-123"]])
                let failed = try await app.call(.post, "/api/v1/credentials/\(try #require(bad.json["id"]?.stringValue))/test")
                #expect(failed.json["ok"] == false)
                #expect(failed.json["message"]?.stringValue?.contains("HTTP 401") == true)
                #expect(!failed.text.contains("not-the-key-123"))
            }
        }
    }

    @Test("the default base URL is Sympla's, and the credentials API rejects a base_url that is not a URL")
    func credentialsValidation() async throws {
        try await TestApp.run { app in
            let created = try await app.call(.post, "/api/v1/credentials", body: ["name": "s", "type": "sympla", "secret": ["api_key": "k"]])
            #expect(created.json["public"]?["base_url"] == "https://api.sympla.com.br/public/v3")
            let rejected = try await app.call(
                .post, "/api/v1/credentials", body: ["name": "t", "type": "sympla", "public": ["base_url": "nope"], "secret": [:]])
            #expect(rejected.status == .badRequest)
            #expect(Set(rejected.errorFields) == ["public.base_url", "secret.api_key"])
        }
    }
}

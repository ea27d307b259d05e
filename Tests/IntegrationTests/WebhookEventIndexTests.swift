// The events table's indexes: none holds the delivery state, so a success write finds its events by id whatever the
// statistics say, and on PostgreSQL rewrites them in place (HOT) instead of adding index entries. (With the state in an
// index, statistics from an idle spell made each batched success write read every pending event: seconds a batch.)
import Foundation
import IntegratorCore
@testable import Plugins
import SQLKit
import Testing

@Suite("Webhook event indexes")
struct WebhookEventIndexTests {
    static func events(_ count: Int, tenant: String, prefix: String, state: WebhookDeliveryState, at now: Date) -> [WebhookEvent] {
        (0..<count).map { index in
            WebhookEvent(
                id: "\(prefix)-\(String(format: "%05d", index))", tenantID: tenant, eventType: "user.created", severity: .medium,
                targetURL: nil, customHeaders: [:], body: #"{"n":\#(index)}"#, state: state, attemptCount: 0, roundAttempts: 0,
                createdAt: now, updatedAt: now)
        }
    }

    @Test("events stored together read back as written: absent target URLs and idempotency keys stay absent")
    func storedTogether() async throws {
        try await TestApp.run { app in
            _ = try await WebhooksTests.configure(app, "together", url: "http://127.0.0.1:9/hooks")
            let store = WebhookStore(secrets: app.runtime.environment.secrets)
            let now = app.clock.now()
            var written = Self.events(120, tenant: "together", prefix: "mixed", state: .pending, at: now)
            for index in written.indices where index % 3 == 0 {
                written[index].targetURL = "http://127.0.0.1:9/own/\(index)"
                written[index].idempotencyKey = "key-\(index)"
                written[index].customHeaders = ["X-Order": "\(index)"]
                written[index].severity = .critical
            }
            written[7].state = .skipped
            let events = written
            let (loaded, absent) = try await app.runtime.database.withSQL { sql in
                try await store.insert(events, sql)
                let absent = try await sql.raw(
                    "SELECT COUNT(*) AS n FROM webhooks_events WHERE target_url IS NULL AND idempotency_key IS NULL"
                ).first()?.decode(column: "n", as: Int.self)
                return (try await store.deliveries(events.map(\.id), sql), absent)
            }
            #expect(absent == 80)
            #expect(loaded.count == 120)
            for event in events {
                let stored = try #require(loaded[event.id]?.event)
                #expect(stored.targetURL == event.targetURL, "\(event.id)")
                #expect(stored.idempotencyKey == event.idempotencyKey, "\(event.id)")
                #expect(stored.customHeaders == event.customHeaders, "\(event.id)")
                #expect(stored.severity == event.severity && stored.state == event.state, "\(event.id)")
                #expect(stored.body == event.body && stored.createdAt == event.createdAt && stored.attemptCount == 0, "\(event.id)")
                #expect(loaded[event.id]?.tenant?.tenantID == "together")
            }
            let unstored = try await app.runtime.database.withSQL { sql in try await store.deliveries(["mixed-99999"], sql) }
            #expect(unstored.isEmpty)
        }
    }

    @Test("no index of the events holds their state; dead letters and a tenant's events have indexes of their own")
    func stateInNoIndex() async throws {
        try await TestApp.run { app in
            let database = app.runtime.database
            let definitions = try await database.withSQL { sql in
                let query: SQLQueryString =
                    database.engine == .postgres
                    ? "SELECT indexdef AS definition FROM pg_indexes WHERE tablename = 'webhooks_events'"
                    : "SELECT sql AS definition FROM sqlite_master WHERE type = 'index' AND tbl_name = 'webhooks_events' AND sql IS NOT NULL"
                return try await sql.raw(query).all().map { try $0.decode(column: "definition", as: String.self) }
            }
            #expect(definitions.contains { $0.contains("webhooks_events_dead") && $0.contains("failed_at IS NOT NULL") }, "\(definitions)")
            #expect(definitions.contains { $0.contains("webhooks_events_tenant") }, "\(definitions)")
            #expect(!definitions.contains { $0.contains("state") }, "\(definitions)")
        }
    }

    @Test(
        "statistics taken while every event had succeeded: a batch of successes still writes each event once, in place",
        .enabled(if: TestDatabase.engine == .postgres))
    func successesAfterAnIdleSpell() async throws {
        try await TestApp.run { app in
            _ = try await WebhooksTests.configure(app, "idle-spell", url: "http://127.0.0.1:9/hooks")
            let database = app.runtime.database
            let store = WebhookStore(secrets: app.runtime.environment.secrets)
            let now = app.clock.now()
            let pending = Self.events(2000, tenant: "idle-spell", prefix: "new", state: .pending, at: now)
            try await database.withSQL { sql in
                try await store.insert(Self.events(300, tenant: "idle-spell", prefix: "old", state: .succeeded, at: now), sql)
                // What autovacuum would record after an idle spell: no pending event at all.
                try await sql.raw("ANALYZE webhooks_events").run()
                try await store.insert(pending, sql)
            }
            func delivered(_ events: some Sequence<WebhookEvent>) -> [WebhookBatching.Success] {
                events.map { event in
                    WebhookBatching.Success(
                        event: event,
                        attempt: WebhookAttempt(attempt: 1, attemptedAt: now, statusCode: 200, durationMs: 1, responseBody: nil, error: nil),
                        at: now)
                }
            }
            // The planner must not take the statistics' word that no event is pending: with one row expected, it
            // joined a scan of the whole table against every event of the batch.
            let batch = delivered(pending.prefix(256))
            let plan = try await database.withSQL { sql in
                try await sql.raw("EXPLAIN \(WebhookStore.successWrite(batch))").all()
                    .map { try $0.decode(column: "QUERY PLAN", as: String.self) }
            }
            // Every scan of the events other than a lookup by id must expect more than one row (an index scan by
            // id expects one row per id, rightly).
            let scans = plan.filter { $0.contains("Scan") && $0.contains("on webhooks_events e ") }
            let misjudged = scans.filter { !$0.contains("webhooks_events_pkey") }.filter { line in
                (line.components(separatedBy: " rows=").dropFirst().first?.prefix { $0.isNumber }).flatMap { Int($0) } ?? 0 <= 1
            }
            #expect(!scans.isEmpty && misjudged.isEmpty, "\(plan.joined(separator: "\n"))")

            // The first events stored share pages filled when they were inserted: only the room kept free lets their
            // new versions stay there.
            let written = Array(pending.prefix(10))
            let successes = delivered(written)
            let (recorded, updated, inPlace) = try await database.transaction { sql -> (Set<String>, Int, Int) in
                let recorded = try await store.recordSuccesses(successes, sql)
                let row = try await sql.raw(
                    """
                    SELECT pg_stat_get_xact_tuples_updated('webhooks_events'::regclass) AS updated,
                        pg_stat_get_xact_tuples_hot_updated('webhooks_events'::regclass) AS in_place
                    """
                ).first()
                return (recorded, try row?.decode(column: "updated", as: Int.self) ?? -1, try row?.decode(column: "in_place", as: Int.self) ?? -1)
            }
            #expect(recorded == Set(written.map(\.id)))
            #expect(updated == 10)
            #expect(inPlace == 10, "every success is a HOT update: it changes no indexed column and its page has room")
            let states = try await database.withSQL { sql in try await store.eventStates(written.map(\.id) + ["new-00010"], sql) }
            #expect(states.values.filter { $0 == .succeeded }.count == 10 && states["new-00010"] == .pending)
        }
    }
}

// Idle workers of one process hear of the tasks the beat of another queued, through PostgreSQL's NOTIFY.
@testable import IntegratorCore
import Testing

@Suite("Workers hear of tasks queued by other processes", .enabled(if: TestDatabase.engine == .postgres))
struct ArrivalNewsTests {
    @Test("a beat's announcement, committed on another connection, wakes an idle worker's wait long before its limit")
    func announcementWakesWorker() async throws {
        try await TestDatabase.withDatabase { database in
            let broker = SQLBroker(database: database)
            let listener = Task { await broker.receiveNewsOfArrivals() }
            defer { listener.cancel() }
            let mark = broker.arrivalMark
            let waiter = Task { await broker.waitForMessages(after: mark, upTo: .seconds(600)) }
            // The listener starts listening a moment after it starts: announce until the waiter has heard.
            let deadline = ContinuousClock.now + .seconds(30)
            while broker.arrivalMark == mark, ContinuousClock.now < deadline {
                try await database.transaction { sql in try await SQLBroker.announceArrivals(sql) }
                try await Task.sleep(for: .milliseconds(100))
            }
            if broker.arrivalMark == mark { waiter.cancel() }
            #expect(await waiter.value, "woken by the announcement, not by its 600 s limit")
        }
    }
}

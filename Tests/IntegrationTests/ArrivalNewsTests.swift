// Idle workers of one process hear of the tasks the beat of another queued, and beats of timers written elsewhere,
// through PostgreSQL's NOTIFY.
import Foundation
@testable import IntegratorCore
import Synchronization
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

@Suite("Beats hear when timers written by other processes are due", .enabled(if: TestDatabase.engine == .postgres))
struct BeatNotificationTests {
    @Test("a timer's wake-up, committed on another connection, arrives with its due time; a schedule edit's with none")
    func notificationCarriesDueTime() async throws {
        try await TestDatabase.withDatabase { database in
            let heard = Mutex<[String]>([])
            let listener = Task { try await database.listen(channel: BeatWakeup.channel) { payload in heard.withLock { $0.append(payload) } } }
            defer { listener.cancel() }
            let due = Date(timeIntervalSince1970: 1_800_000_000.5)
            // The listener starts listening a moment after it starts: notify until it has heard.
            let deadline = ContinuousClock.now + .seconds(30)
            while heard.withLock({ $0.isEmpty }), ContinuousClock.now < deadline {
                try await database.transaction { sql in
                    try await BeatWakeup.notifyOthers(sql, dueAt: due)
                    try await BeatWakeup.notifyOthers(sql)
                }
                try await Task.sleep(for: .milliseconds(100))
            }
            try await Task.sleep(for: .milliseconds(100))
            let payloads = heard.withLock { $0 }
            #expect(payloads.count >= 2 && payloads.count % 2 == 0, "\(payloads)")
            #expect(payloads.first.flatMap(BeatWakeup.dueTime(fromPayload:)) == Date(timeIntervalSince1970: 1_800_000_000.5))
            #expect(payloads.dropFirst().first.map(BeatWakeup.dueTime(fromPayload:)) == .some(nil), "no time: wake regardless")
        }
    }
}

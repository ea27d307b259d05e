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
        try await Self.listening { database, broker, otherProcess in
            let mark = broker.arrivalMark
            let waiter = Task { await broker.waitForMessages(after: mark, upTo: .seconds(600)) }
            try await Self.announceUntilHeard(by: broker, from: otherProcess, database)
            if broker.arrivalMark == mark { waiter.cancel() }
            #expect(await waiter.value, "woken by the announcement, not by its 600 s limit")
        }
    }

    @Test("a broker's workers skip its own beat's announcements, which the process told them of already")
    func ownAnnouncementSkipped() async throws {
        try await Self.listening { database, broker, otherProcess in
            try await Self.announceUntilHeard(by: broker, from: otherProcess, database)
            // An announcement of that loop may still be on its way.
            try await Task.sleep(for: .milliseconds(200))
            // Notifications reach the one listening connection in commit order: once the other process's last
            // announcement is heard, the three before it have been handled too.
            let mark = broker.arrivalMark
            for _ in 0..<3 { try await database.transaction { sql in try await broker.announceArrivals(sql) } }
            try await database.transaction { sql in try await otherProcess.announceArrivals(sql) }
            #expect(try await eventually(30) { broker.arrivalMark != mark })
            #expect(broker.arrivalMark == mark + 1, "only the other process's announcement was news")
        }
    }

    /// Runs `body` with a broker whose listener hears announcements, and the broker of another process (a broker's own
    /// announcements are not news to its workers).
    static func listening(_ body: @escaping @Sendable (Database, SQLBroker, SQLBroker) async throws -> Void) async throws {
        try await TestDatabase.withDatabase { database in
            let broker = SQLBroker(database: database)
            let listener = Task { await broker.receiveNewsOfArrivals() }
            defer { listener.cancel() }
            try await body(database, broker, SQLBroker(database: database))
        }
    }

    /// The listener starts listening a moment after it starts: `sender` announces until `broker` has heard.
    static func announceUntilHeard(by broker: SQLBroker, from sender: SQLBroker, _ database: Database) async throws {
        let mark = broker.arrivalMark
        let deadline = ContinuousClock.now + .seconds(30)
        while broker.arrivalMark == mark, ContinuousClock.now < deadline {
            try await database.transaction { sql in try await sender.announceArrivals(sql) }
            try await Task.sleep(for: .milliseconds(100))
        }
    }
}

@Suite("Beats hear when timers written by other processes are due", .enabled(if: TestDatabase.engine == .postgres))
struct BeatNotificationTests {
    /// The payloads a listener heard, in order.
    final class Heard: Sendable {
        private let payloads = Mutex<[String]>([])
        func withLock<T>(_ body: (inout [String]) -> T) -> T { payloads.withLock { body(&$0) } }
    }

    /// Runs `body` on a test database while a listener notes every payload on the beats' channel.
    static func listening(_ body: @escaping @Sendable (Database, Heard) async throws -> Void) async throws {
        try await TestDatabase.withDatabase { database in
            let heard = Heard()
            let listener = Task { try await database.listen(channel: BeatWakeup.channel) { payload in heard.withLock { $0.append(payload) } } }
            defer { listener.cancel() }
            try await body(database, heard)
        }
    }

    @Test("a timer's wake-up, committed on another connection, arrives with its due time; a schedule edit's with none")
    func notificationCarriesDueTime() async throws {
        try await Self.listening { database, heard in
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

    @Test("a timer's own statement wakes other processes' beats with its due time when it commits, not when it rolls back")
    func timerWriteNotifies() async throws {
        try await Self.listening { database, heard in
            let timers = TimerStore(database: database, wakeup: BeatWakeup())
            @Sendable func timer(_ id: String, dueAt seconds: TimeInterval) -> DurableTimer {
                DurableTimer(id: id, dueAt: Date(timeIntervalSince1970: seconds), message: TaskMessage(name: "noop", enqueuedAt: Date()))
            }
            let deadline = ContinuousClock.now + .seconds(30)
            while heard.withLock({ $0.isEmpty }), ContinuousClock.now < deadline {
                try await timers.upsert(timer("listening", dueAt: 1_800_000_000), at: Date())
                try await Task.sleep(for: .milliseconds(100))
            }
            struct Abandoned: Error {}
            await #expect(throws: Abandoned.self) {
                try await database.withTransaction { transaction in
                    try await timers.upsert(contentsOf: [timer("rolled-back", dueAt: 1_800_000_100)], in: transaction, at: Date())
                    throw Abandoned()
                }
            }
            try await database.withTransaction { transaction in
                try await timers.upsert(contentsOf: [timer("later", dueAt: 1_800_000_300), timer("earlier", dueAt: 1_800_000_200)], in: transaction, at: Date())
            }
            // With the caller's own writes in the same statement.
            try await timers.upsert(
                contentsOf: [timer("with-write", dueAt: 1_800_000_400)], at: Date(),
                writingAlso: ["DELETE FROM task_queue WHERE task_id = \(bind: "no-such-task")"])
            let expected = BeatWakeup.payload(dueAt: Date(timeIntervalSince1970: 1_800_000_200))
            let expectedWithWrite = BeatWakeup.payload(dueAt: Date(timeIntervalSince1970: 1_800_000_400))
            let heardIt = ContinuousClock.now + .seconds(30)
            while !heard.withLock({ $0.contains(expected) && $0.contains(expectedWithWrite) }), ContinuousClock.now < heardIt {
                try await Task.sleep(for: .milliseconds(20))
            }
            let payloads = heard.withLock { $0 }
            #expect(payloads.contains(expected), "\(payloads)")
            #expect(payloads.contains(expectedWithWrite), "\(payloads)")
            #expect(!payloads.contains(BeatWakeup.payload(dueAt: Date(timeIntervalSince1970: 1_800_000_100))), "\(payloads)")
            #expect(!payloads.contains(BeatWakeup.payload(dueAt: Date(timeIntervalSince1970: 1_800_000_300))), "\(payloads)")
            #expect(try await timers.find(id: "rolled-back") == nil)
            #expect(try await timers.find(id: "earlier")?.dueAt == Date(timeIntervalSince1970: 1_800_000_200))
        }
    }
}

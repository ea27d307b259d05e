// Writers wake a sleeping beat only for timers due before it would wake anyway; anything else still wakes it at once.
import Foundation
@testable import IntegratorCore
import Testing

@Suite("Beat wake-ups")
struct BeatWakeupTests {
    static let planned = Date(timeIntervalSince1970: 1_800_000_000)

    /// Waits on `signal` (600 s limit, planning to wake by ``planned``) while `fire` runs once it is waiting; whether a
    /// fire woke it.
    static func woken(_ signal: WakeSignal, by fire: @escaping @Sendable () -> Void) async throws -> Bool {
        let waiter = Task { await signal.wait(timeout: .seconds(600), wakesBy: planned) }
        try await Task.sleep(for: .milliseconds(20))
        fire()
        let outcome = Task {
            try await Task.sleep(for: .milliseconds(300))
            waiter.cancel()
        }
        let woken = await waiter.value
        outcome.cancel()
        return woken
    }

    @Test("a waiter sleeps on through timers due after it wakes; one due before, or a wake-up naming no time, wakes it")
    func dueTimesDecide() async throws {
        #expect(!(try await Self.woken(WakeSignal()) { }), "nothing fired: cancelled, not woken")
        let later = WakeSignal()
        #expect(!(try await Self.woken(later) { later.fire(dueAt: Self.planned.addingTimeInterval(5)) }), "due after the plan")
        #expect(!(try await Self.woken(later) { later.fire(dueAt: Self.planned) }), "due exactly when it wakes anyway")
        let sooner = WakeSignal()
        #expect(try await Self.woken(sooner) { sooner.fire(dueAt: Self.planned.addingTimeInterval(-0.001)) })
        let unknown = WakeSignal()
        #expect(try await Self.woken(unknown) { unknown.fire() })
    }

    @Test("fires while nobody waits are remembered by their earliest due time and judged against the next wait's plan")
    func pendingFires() async {
        let signal = WakeSignal()
        signal.fire(dueAt: Self.planned.addingTimeInterval(60))
        signal.fire(dueAt: Self.planned.addingTimeInterval(-1))
        #expect(await signal.wait(timeout: .seconds(600), wakesBy: Self.planned), "the earlier of the two is due first")
        signal.fire(dueAt: Self.planned.addingTimeInterval(60))
        #expect(!(await signal.wait(timeout: .milliseconds(50), wakesBy: Self.planned)), "due after the plan: not kept")
        #expect(!(await signal.wait(timeout: .milliseconds(50), wakesBy: .distantFuture)), "and not pending any more")
        signal.fire()
        #expect(await signal.wait(timeout: .seconds(600), wakesBy: Self.planned))
    }

    @Test("a notification's payload carries the due time in milliseconds, never later than it; other payloads wake")
    func payloads() {
        let due = Date(timeIntervalSince1970: 1_800_000_000.123_9)
        let payload = BeatWakeup.payload(dueAt: due)
        #expect(payload == "1800000000123")
        let read = BeatWakeup.dueTime(fromPayload: payload)
        #expect(read.map { $0 <= due && due.timeIntervalSince($0) < 0.001 } == true)
        #expect(BeatWakeup.dueTime(fromPayload: "") == nil)
        #expect(BeatWakeup.dueTime(fromPayload: "soon") == nil)
    }

    @Test("a process's beats hear the due time of every timer written")
    func notifyPassesDueTime() async {
        let wakeup = BeatWakeup()
        let signal = wakeup.subscribe()
        defer { wakeup.unsubscribe(signal) }
        wakeup.notify(dueAt: Self.planned.addingTimeInterval(1))
        #expect(!(await signal.wait(timeout: .milliseconds(50), wakesBy: Self.planned)))
        wakeup.notify(dueAt: Self.planned.addingTimeInterval(-1))
        #expect(await signal.wait(timeout: .seconds(600), wakesBy: Self.planned))
    }
}

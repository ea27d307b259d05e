// How writers of schedules and timers wake the beat, so an edit or a timer due soon is seen at once, not at the next poll.
import Foundation
import SQLKit
import Synchronization

/// Wakes beats: in this process directly, in other processes through PostgreSQL `NOTIFY` (SQLite deployments run
/// one process, and the beat's one-second poll covers anything else).
public final class BeatWakeup: Sendable {
    /// The PostgreSQL channel beats listen on.
    public static let channel = "integrator_beat"

    private let signals = Mutex<[ObjectIdentifier: WakeSignal]>([:])

    public init() {}

    /// Wakes every beat of this process. `dueAt` is when the earliest timer written is due: a beat already set to wake
    /// before then sleeps on (it reads the due times again when it wakes). `nil` (a schedule edit, anything else)
    /// always wakes.
    public func notify(dueAt: Date? = nil) {
        for signal in signals.withLock({ Array($0.values) }) { signal.fire(dueAt: dueAt) }
    }

    /// Inside a transaction: wakes beats of other processes when it commits (PostgreSQL delivers `NOTIFY` at commit),
    /// telling them `dueAt` like ``notify(dueAt:)``.
    static func notifyOthers(_ sql: any SQLDatabase, dueAt: Date? = nil) async throws {
        try await sql.notifyAtCommit(channel, payload: dueAt.map(payload(dueAt:)))
    }

    /// A due time as a notification's payload: Unix milliseconds, rounded down so that a beat never sleeps past it.
    static func payload(dueAt: Date) -> String {
        String(Int64((dueAt.timeIntervalSince1970 * 1000).rounded(.down)))
    }

    /// The due time a notification's payload names; `nil` (wake regardless) for an empty or unknown payload.
    static func dueTime(fromPayload payload: String) -> Date? {
        Int64(payload).map { Date(timeIntervalSince1970: Double($0) / 1000) }
    }

    /// A signal fired by every ``notify()`` until ``unsubscribe(_:)``.
    func subscribe() -> WakeSignal {
        let signal = WakeSignal()
        signals.withLock { $0[ObjectIdentifier(signal)] = signal }
        return signal
    }

    func unsubscribe(_ signal: WakeSignal) {
        _ = signals.withLock { $0.removeValue(forKey: ObjectIdentifier(signal)) }
    }
}

/// A wake-up flag one waiter sleeps on. Fires that come while nobody waits are remembered as one, with the earliest
/// due time among them.
final class WakeSignal: Sendable {
    private struct State {
        /// The earliest due time among fires nobody waited for (`distantPast` when one named none).
        var pending: Date?
        var cancelled = false
        var waiter: CheckedContinuation<Void, Never>?
        /// Fires due at or after this do not wake the waiter: it wakes by then anyway.
        var waiterWakesBy = Date.distantFuture
    }

    private let state = Mutex(State())

    /// Wakes the waiter unless it wakes before `dueAt` anyway; `nil` always wakes it.
    func fire(dueAt: Date? = nil) {
        let due = dueAt ?? .distantPast
        let waiter = state.withLock { state in
            guard let waiter = state.waiter else {
                state.pending = min(state.pending ?? due, due)
                return nil as CheckedContinuation<Void, Never>?
            }
            guard due < state.waiterWakesBy else { return nil }
            state.waiter = nil
            return waiter
        }
        waiter?.resume()
    }

    /// Returns after the next fire (at once if one is pending), after `timeout`, or when the task is cancelled;
    /// `true` when a fire woke it. Fires naming a due time at or after `wakesBy` (the waiter's own plan, in the
    /// fires' clock) neither wake it nor stay pending.
    @discardableResult
    func wait(timeout: Duration, wakesBy: Date = .distantFuture) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                try? await Task.sleep(for: timeout)
                return false
            }
            group.addTask {
                await self.next(wakesBy: wakesBy)
                return !Task.isCancelled
            }
            let woken = await group.next() ?? false
            group.cancelAll()
            return woken
        }
    }

    private func next(wakesBy: Date) async {
        state.withLock { $0.cancelled = false }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state in
                    let pending = state.pending
                    state.pending = nil
                    if let pending, pending < wakesBy { return true }
                    if state.cancelled { return true }
                    state.waiter = continuation
                    state.waiterWakesBy = wakesBy
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { state in
                state.cancelled = true
                let waiter = state.waiter
                state.waiter = nil
                return waiter
            }
            waiter?.resume()
        }
    }
}

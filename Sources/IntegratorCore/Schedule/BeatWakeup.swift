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

    /// Wakes every beat of this process.
    public func notify() {
        for signal in signals.withLock({ Array($0.values) }) { signal.fire() }
    }

    /// Inside a transaction: wakes beats of other processes when it commits (PostgreSQL delivers `NOTIFY` at commit).
    static func notifyOthers(_ sql: any SQLDatabase) async throws {
        try await sql.notifyAtCommit(channel)
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

/// A wake-up flag one waiter sleeps on. Fires that come while nobody waits are remembered as one.
final class WakeSignal: Sendable {
    private struct State {
        var pending = false
        var cancelled = false
        var waiter: CheckedContinuation<Void, Never>?
    }

    private let state = Mutex(State())

    func fire() {
        let waiter = state.withLock { state in
            guard let waiter = state.waiter else {
                state.pending = true
                return nil as CheckedContinuation<Void, Never>?
            }
            state.waiter = nil
            return waiter
        }
        waiter?.resume()
    }

    /// Returns after the next fire (at once if one is pending), after `timeout`, or when the task is cancelled;
    /// `true` when a fire woke it.
    @discardableResult
    func wait(timeout: Duration) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                try? await Task.sleep(for: timeout)
                return false
            }
            group.addTask {
                await self.next()
                return !Task.isCancelled
            }
            let woken = await group.next() ?? false
            group.cancelAll()
            return woken
        }
    }

    private func next() async {
        state.withLock { $0.cancelled = false }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state in
                    if state.pending || state.cancelled {
                        state.pending = false
                        return true
                    }
                    state.waiter = continuation
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

// A FIFO async semaphore: at most `permits` holders at a time, waiters resumed in arrival order.
import Synchronization

/// Limits concurrent async work without blocking threads. With one permit it gives SQLite's single connection one
/// user at a time; plugins use it to bound how much work of one kind runs at once in a process.
public final class AsyncGate: Sendable {
    private struct State {
        var available: Int
        /// Waiters from `head` on; the consumed front is dropped once it is half the array, so resuming stays O(1).
        var waiters: [CheckedContinuation<Void, Never>] = []
        var head = 0
    }

    private let state: Mutex<State>

    public init(permits: Int = 1) {
        precondition(permits >= 1, "an AsyncGate needs at least one permit")
        state = Mutex(State(available: permits))
    }

    public func withPermit<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        await acquire()
        defer { release() }
        return try await body()
    }

    /// Like ``withPermit(_:)``, for a caller with a deadline: a permit that comes after `deadline` is handed on at
    /// once and `timedOut` is thrown. A waiter thus never holds a permit it no longer wants, and while the holders are
    /// stuck (a database that stopped answering), every waiter past its deadline fails as soon as one holder ends.
    public func withPermit<T: Sendable>(
        unlessLaterThan deadline: ContinuousClock.Instant, orThrow timedOut: @autoclosure () -> any Error,
        _ body: @Sendable () async throws -> T
    ) async throws -> T {
        await acquire()
        guard ContinuousClock.now <= deadline else {
            release()
            throw timedOut()
        }
        defer { release() }
        return try await body()
    }

    private func acquire() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumeNow = state.withLock { state -> Bool in
                if state.available == 0 {
                    state.waiters.append(continuation)
                    return false
                }
                state.available -= 1
                return true
            }
            if resumeNow { continuation.resume() }
        }
    }

    private func release() {
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard state.head < state.waiters.count else {
                state.available += 1
                return nil
            }
            // The permit passes straight to the next waiter; `available` stays as it is.
            let next = state.waiters[state.head]
            state.head += 1
            if state.head * 2 >= state.waiters.count {
                state.waiters.removeFirst(state.head)
                state.head = 0
            }
            return next
        }
        next?.resume()
    }
}

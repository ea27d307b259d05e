// A one-way gate for tests: tasks wait on it until the test opens it, so a test sees an intermediate state for as long
// as it needs instead of hoping to catch it inside a sleep's window.
import Synchronization

/// Starts closed; `open()` releases every waiter, present and future. A waiting task that is cancelled stops waiting
/// and throws `CancellationError`, like `Task.sleep`.
final class Latch: Sendable {
    private struct State {
        var isOpen = false
        var nextWaiter = 0
        var waiters: [Int: CheckedContinuation<Void, any Error>] = [:]
    }

    private let state = Mutex(State())

    init() {}

    var isOpen: Bool { state.withLock { $0.isOpen } }

    func open() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, any Error>] in
            state.isOpen = true
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns once the latch is open; throws `CancellationError` if the waiting task is cancelled first.
    func wait() async throws {
        let id = state.withLock { state -> Int in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                enum Now { case wait, resume, cancel }
                let now = state.withLock { state -> Now in
                    if state.isOpen { return .resume }
                    // Cancelled before this point: the cancellation handler already ran and found no waiter.
                    if Task.isCancelled { return .cancel }
                    state.waiters[id] = continuation
                    return .wait
                }
                switch now {
                case .wait: break
                case .resume: continuation.resume()
                case .cancel: continuation.resume(throwing: CancellationError())
                }
            }
        } onCancel: {
            let waiter = state.withLock { $0.waiters.removeValue(forKey: id) }
            waiter?.resume(throwing: CancellationError())
        }
    }

    /// Waits for the latch to open, for at most `limit`; whether it opened. A test that waits for a task to reach a
    /// point fails with a clear expectation instead of hanging when the task never gets there.
    func wait(upTo limit: Duration) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                do {
                    try await self.wait()
                    return true
                } catch {
                    return false
                }
            }
            group.addTask {
                try? await Task.sleep(for: limit)
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first || isOpen
        }
    }
}

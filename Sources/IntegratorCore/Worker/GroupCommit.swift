// Group commit: callers that write at the same time share one write (one transaction) instead of queueing for many.
import Synchronization

/// Coalesces concurrent writes. A caller that arrives while no write is running becomes the leader and writes its
/// own item together with everything that is waiting (up to `maxBatch`); the others wait for the leader's write and
/// return (or throw) with it. When the leader is done and more items arrived meanwhile, the first of their callers
/// leads the next write. No background task: each write is awaited by a caller, and every caller returns only once
/// its item was written.
final class GroupCommit<Item: Sendable>: Sendable {
    private enum Role {
        /// Write your item and the waiting ones.
        case lead
        /// Your item was written by a leader.
        case written
    }

    private struct Waiter {
        var item: Item
        var continuation: CheckedContinuation<Role, any Error>
    }

    private struct State {
        var waiting: [Waiter] = []
        var writing = false
    }

    private let state = Mutex(State())
    private let maxBatch: Int
    /// How often a new leader steps back before it collects the waiting items.
    private let joinWindowYields = 2
    private let write: @Sendable ([Item]) async throws -> Void

    /// - Parameters:
    ///   - maxBatch: the most items one write carries.
    ///   - write: writes a batch; must be all-or-nothing, since every caller of the batch gets its outcome.
    init(maxBatch: Int, write: @escaping @Sendable ([Item]) async throws -> Void) {
        self.maxBatch = max(1, maxBatch)
        self.write = write
    }

    /// Returns once `item` was written; throws what the write of its batch threw.
    func submit(_ item: Item) async throws {
        let role = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Role, any Error>) in
            let leads = state.withLock { state -> Bool in
                if state.writing {
                    state.waiting.append(Waiter(item: item, continuation: continuation))
                    return false
                }
                state.writing = true
                return true
            }
            if leads { continuation.resume(returning: .lead) }
        }
        guard case .lead = role else { return }
        // Callers usually come in bursts (a batch of tasks finishing together): let the rest of the burst join.
        for _ in 0..<joinWindowYields { await Task.yield() }
        let followers = state.withLock { state -> [Waiter] in
            let taken = Array(state.waiting.prefix(maxBatch - 1))
            state.waiting.removeFirst(taken.count)
            return taken
        }
        let outcome: Result<Void, any Error>
        let batch = [item] + followers.map(\.item)
        do {
            // The write belongs to every caller in the batch, so the leader's cancellation must not cut it short.
            // The unstructured task does not inherit it; its value is awaited, so it never outlives the leader.
            try await Task { try await self.write(batch) }.value
            outcome = .success(())
        } catch {
            outcome = .failure(error)
        }
        for follower in followers {
            switch outcome {
            case .success: follower.continuation.resume(returning: .written)
            case .failure(let error): follower.continuation.resume(throwing: error)
            }
        }
        // Hand the lead to the first caller that arrived during the write, or stand down.
        let next = state.withLock { state -> Waiter? in
            guard !state.waiting.isEmpty else {
                state.writing = false
                return nil
            }
            return state.waiting.removeFirst()
        }
        // Its item was not written yet: that caller leads the next write, with the ones behind it.
        next?.continuation.resume(returning: .lead)
        try outcome.get()
    }
}

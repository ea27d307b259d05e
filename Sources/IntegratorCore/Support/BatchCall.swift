// Concurrent callers sharing one call (one query, one write) instead of queueing for many: the batching behind the
// worker's group commit, available to plugins with hot paths of their own.
import Synchronization

/// Runs one call for many concurrent callers. A caller that arrives while no call is running leads: it waits a moment
/// for the rest of its burst, then calls with every waiting input; the others get their outputs from that call. When
/// the call ends and more inputs arrived meanwhile, the first of their callers leads the next one.
public final class BatchCall<Input: Sendable, Output: Sendable>: Sendable {
    private enum Role {
        case lead
        case done(Output)
    }

    private struct Waiter {
        var input: Input
        var continuation: CheckedContinuation<Role, any Error>
    }

    private struct State {
        var waiting: [Waiter] = []
        var running = false
    }

    private let state = Mutex(State())
    private let maxBatch: Int
    /// Returns one output per input, in order.
    private let call: @Sendable ([Input]) async throws -> [Output]

    /// - Parameters:
    ///   - maxBatch: the most inputs one call carries.
    ///   - call: returns one output per input, in order; what it throws, every caller of the batch gets.
    public init(maxBatch: Int, call: @escaping @Sendable ([Input]) async throws -> [Output]) {
        self.maxBatch = max(1, maxBatch)
        self.call = call
    }

    /// Returns `input`'s output once the call that carried it returned.
    public func submit(_ input: Input) async throws -> Output {
        let role = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Role, any Error>) in
            let leads = state.withLock { state -> Bool in
                if state.running {
                    state.waiting.append(Waiter(input: input, continuation: continuation))
                    return false
                }
                state.running = true
                return true
            }
            if leads { continuation.resume(returning: .lead) }
        }
        switch role {
        case .done(let output): return output
        case .lead: return try await lead(with: input)
        }
    }

    private func lead(with input: Input) async throws -> Output {
        // Callers usually come in bursts (tasks finishing together): let the rest of the burst join.
        await Task.yield()
        await Task.yield()
        let followers = state.withLock { state -> [Waiter] in
            let taken = Array(state.waiting.prefix(maxBatch - 1))
            state.waiting.removeFirst(taken.count)
            return taken
        }
        let result: Result<[Output], any Error>
        do {
            // The call serves every caller of the batch, so the leader's cancellation must not cut it short; its value
            // is awaited, so it never outlives the leader.
            let inputs = [input] + followers.map(\.input)
            let call = self.call
            let outputs = try await Task { try await call(inputs) }.value
            guard outputs.count == inputs.count else { throw BatchCallError(inputs: inputs.count, outputs: outputs.count) }
            result = .success(outputs)
        } catch {
            result = .failure(error)
        }
        for (index, follower) in followers.enumerated() {
            switch result {
            case .success(let outputs): follower.continuation.resume(returning: .done(outputs[index + 1]))
            case .failure(let error): follower.continuation.resume(throwing: error)
            }
        }
        let next = state.withLock { state -> Waiter? in
            guard !state.waiting.isEmpty else {
                state.running = false
                return nil
            }
            return state.waiting.removeFirst()
        }
        next?.continuation.resume(returning: .lead)
        return try result.get()[0]
    }
}

/// A batch call returned a different number of outputs than it was given inputs.
public struct BatchCallError: Error, Sendable, CustomStringConvertible {
    public var inputs: Int
    public var outputs: Int
    public var description: String { "a batch call returned \(outputs) results for \(inputs) inputs" }
}

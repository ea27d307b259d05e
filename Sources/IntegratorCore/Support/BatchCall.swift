// Concurrent callers sharing one call (one query, one write) instead of queueing for many: the batching behind the
// worker's group commit, available to plugins with hot paths of their own.
import Synchronization

/// Runs one call for many concurrent callers. A caller that arrives while no call is running leads: it waits a moment
/// for the rest of its burst (see ``BatchGathering``), then calls with every waiting input; the others get their outputs
/// from that call. When the call ends and more inputs arrived meanwhile, the first of their callers leads the next one.
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
        /// When the last call ended.
        var lastEnded: ContinuousClock.Instant?
        /// The leader waiting for `enough` inputs, resumed by the caller that brings them or when its wait is over.
        var gatherer: CheckedContinuation<Void, Never>?
        /// Counts the leaders' waits, so that a wait's timer never ends a later one.
        var gatherings: UInt64 = 0
        /// Counts the inputs that waited for a call, so that a waiting leader sees whether the stream still flows.
        var arrivals: UInt64 = 0
    }

    private let state = Mutex(State())
    private let maxBatch: Int
    private let gathering: BatchGathering
    /// Returns one output per input, in order.
    private let call: @Sendable ([Input]) async throws -> [Output]

    /// - Parameters:
    ///   - maxBatch: the most inputs one call carries.
    ///   - gathering: how long a leader waits for more inputs; ``BatchGathering/burst`` unless callers can wait a little.
    ///   - call: returns one output per input, in order; what it throws, every caller of the batch gets.
    public init(maxBatch: Int, gathering: BatchGathering = .burst, call: @escaping @Sendable ([Input]) async throws -> [Output]) {
        self.maxBatch = max(1, maxBatch)
        self.gathering = gathering
        self.call = call
    }

    /// Returns `input`'s output once the call that carried it returned.
    public func submit(_ input: Input) async throws -> Output {
        let role = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Role, any Error>) in
            let (leads, gatherer) = state.withLock { state -> (Bool, CheckedContinuation<Void, Never>?) in
                if state.running {
                    state.waiting.append(Waiter(input: input, continuation: continuation))
                    state.arrivals &+= 1
                    guard state.waiting.count + 1 >= gathering.enough else { return (false, nil) }
                    defer { state.gatherer = nil }
                    return (false, state.gatherer)
                }
                state.running = true
                return (true, nil)
            }
            gatherer?.resume()
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
        await gatherStream()
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
            state.lastEnded = .now
            guard !state.waiting.isEmpty else {
                state.running = false
                return nil
            }
            return state.waiting.removeFirst()
        }
        next?.continuation.resume(returning: .lead)
        return try result.get()[0]
    }

    /// With ``BatchGathering/stream(window:enough:pause:)``, while calls follow one another: waits until `enough`
    /// inputs are waiting (the leader's own counts), no input came for `pause`, or `window` is over.
    private func gatherStream() async {
        guard gathering.window > .zero else { return }
        let (window, pause) = (gathering.window, gathering.pause)
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let started = state.withLock { state -> (wait: UInt64, arrivals: UInt64)? in
                guard let lastEnded = state.lastEnded, ContinuousClock.now - lastEnded < window,
                    state.waiting.count + 1 < gathering.enough
                else { return nil }
                state.gatherings += 1
                state.gatherer = continuation
                return (state.gatherings, state.arrivals)
            }
            guard let started else { return continuation.resume() }
            Task {
                var seen = started.arrivals
                var waited = Duration.zero
                while waited < window {
                    let step = min(pause, window - waited)
                    try? await Task.sleep(for: step)
                    waited += step
                    let arrivals = self.state.withLock { state -> UInt64? in
                        state.gatherings == started.wait && state.gatherer != nil ? state.arrivals : nil
                    }
                    // Resumed already; or nothing came during the step, and the callers there are may all be waiting
                    // on this leader already.
                    guard let arrivals, arrivals != seen else { break }
                    seen = arrivals
                }
                let gatherer = self.state.withLock { state -> CheckedContinuation<Void, Never>? in
                    guard state.gatherings == started.wait else { return nil }
                    defer { state.gatherer = nil }
                    return state.gatherer
                }
                gatherer?.resume()
            }
        }
    }
}

/// How long a leader waits for more inputs before it calls.
public struct BatchGathering: Sendable {
    let window: Duration
    let enough: Int
    let pause: Duration

    /// Callers come in bursts (tasks finishing together): the leader lets the rest of its burst join, and no more.
    public static let burst = BatchGathering(window: .zero, enough: 1, pause: .zero)

    /// Callers come in a steady stream (one every millisecond or so), so a batch that calls at once carries a few
    /// inputs, and a stream of small batches costs the database a statement each. While calls follow one another
    /// (the last one ended less than `window` ago), a leader with fewer than `enough` inputs waits for more, as
    /// PostgreSQL's `commit_delay` does for commits: until `enough` are there, `window` is over, or no input came for
    /// `pause` (the callers may all be waiting already, as when a worker's every slot waits on its write). After a
    /// quiet spell the first caller calls at once, so a lone caller never waits. Meant for writes nobody waits on in a
    /// hurry (outcomes, recorded successes).
    public static func stream(window: Duration = .milliseconds(6), enough: Int = 32, pause: Duration = .milliseconds(2)) -> BatchGathering {
        BatchGathering(window: window, enough: max(1, enough), pause: max(.microseconds(100), min(pause, window)))
    }
}

/// A batch call returned a different number of outputs than it was given inputs.
public struct BatchCallError: Error, Sendable, CustomStringConvertible {
    public var inputs: Int
    public var outputs: Int
    public var description: String { "a batch call returned \(outputs) results for \(inputs) inputs" }
}

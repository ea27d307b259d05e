// Deliveries that run at the same time share their reads and their writes: one query loads every event a batch of
// concurrent tasks needs, one statement records every success. At thousands of deliveries a second the database's
// work per statement, not the network, is what runs out first.
import Foundation
import IntegratorCore
import SQLKit
import Synchronization

/// Runs one call for many concurrent callers. A caller that arrives while no call is running leads: it waits a moment
/// for the rest of its burst, then calls with every waiting input; the others get their outputs from that call. When
/// the call ends and more inputs arrived meanwhile, the first of their callers leads the next one.
final class BatchCall<Input: Sendable, Output: Sendable>: Sendable {
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

    init(maxBatch: Int, call: @escaping @Sendable ([Input]) async throws -> [Output]) {
        self.maxBatch = max(1, maxBatch)
        self.call = call
    }

    func submit(_ input: Input) async throws -> Output {
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
            guard outputs.count == inputs.count else { throw PluginError("a batch call returned \(outputs.count) results for \(inputs.count) inputs") }
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

/// The delivery task's shared reads and writes, one per process.
final class WebhookBatching: Sendable {
    typealias Loaded = (event: WebhookEvent, tenant: WebhookTenant?)?

    struct Success: Sendable {
        var event: WebhookEvent
        var attempt: WebhookAttempt
        var at: Date
    }

    let loads: BatchCall<String, Loaded>
    let successes: BatchCall<Success, Bool>

    init(environment: PluginEnvironment) {
        let store = WebhookStore(secrets: environment.secrets)
        let database = environment.database
        loads = BatchCall(maxBatch: 256) { ids in
            let found = try await database.withSQL { sql in try await store.deliveries(Array(Set(ids)), sql) }
            return ids.map { found[$0] }
        }
        successes = BatchCall(maxBatch: 256) { items in
            // Two copies of one attempt in a batch: the first one is recorded, the others find it taken.
            var seen = Set<String>()
            let unique = items.filter { seen.insert($0.event.id).inserted }
            let written: Set<String>
            if database.engine == .postgres {
                written = try await database.withSQL { sql in try await store.recordSuccesses(unique, sql) }
            } else {
                written = try await database.transaction { sql in
                    var written = Set<String>()
                    for item in unique
                    where try await store.record(
                        item.attempt, of: item.event, state: .succeeded, nextAttemptAt: nil, failureReason: nil, at: item.at, sql,
                        engine: .sqlite)
                    {
                        written.insert(item.event.id)
                    }
                    return written
                }
            }
            var answered = Set<String>()
            return items.map { item in written.contains(item.event.id) && answered.insert(item.event.id).inserted }
        }
    }

    static func shared(in environment: PluginEnvironment) -> WebhookBatching {
        environment.shared.object("webhooks.batching") { WebhookBatching(environment: environment) }
    }
}

// Deliveries that run at the same time share their reads and their writes: one query loads every event a batch of
// concurrent tasks needs, one statement records every success. At thousands of deliveries a second the database's
// work per statement, not the network, is what runs out first.
import Foundation
import IntegratorCore
import SQLKit

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
    /// Requests in flight in this process. Tasks of 100 events on 64 worker slots would otherwise start thousands of
    /// requests at once, each holding its buffers while it waits for one of the client's connections.
    let requests = AsyncGate(permits: 128)
    let keyring = WebhookSignature.Keyring()

    init(environment: PluginEnvironment) {
        let store = WebhookStore(secrets: environment.secrets)
        let database = environment.database
        loads = BatchCall(maxBatch: 256) { ids in
            let found = try await database.withSQL { sql in try await store.deliveries(Array(Set(ids)), sql) }
            return ids.map { found[$0] }
        }
        successes = BatchCall(maxBatch: 256, gathering: .stream()) { items in
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

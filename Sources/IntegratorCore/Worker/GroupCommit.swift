// Group commit: callers that write at the same time share one write (one transaction) instead of queueing for many.

/// Coalesces concurrent writes (a ``BatchCall`` without outputs). A caller that arrives while no write is running
/// leads: it writes its own item together with everything that is waiting (up to `maxBatch`); the others wait for the
/// leader's write and return (or throw) with it. No background task: each write is awaited by a caller, and every
/// caller returns only once its item was written.
final class GroupCommit<Item: Sendable>: Sendable {
    private let batches: BatchCall<Item, Void>

    /// - Parameters:
    ///   - maxBatch: the most items one write carries.
    ///   - gathering: how long a write waits for more items (see ``BatchGathering``).
    ///   - write: writes a batch; must be all-or-nothing, since every caller of the batch gets its outcome.
    init(maxBatch: Int, gathering: BatchGathering = .burst, write: @escaping @Sendable ([Item]) async throws -> Void) {
        batches = BatchCall(maxBatch: maxBatch, gathering: gathering) { items in
            try await write(items)
            return Array(repeating: (), count: items.count)
        }
    }

    /// Returns once `item` was written; throws what the write of its batch threw.
    func submit(_ item: Item) async throws {
        try await batches.submit(item)
    }
}

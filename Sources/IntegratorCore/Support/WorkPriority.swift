// The worker and the beat go ahead of request handling when one process runs them all (`integrator dev`):
// under a burst of requests, work already accepted (due timers, queued tasks) keeps its pace, and the burst waits
// instead. Each part's priority is its tasks' priority on Swift's shared thread pool. On Linux each priority has its own
// threads, which the kernel time-shares, so requests keep a share of the CPU rather than starving in turn.

/// Where the engine's own loops stand against request handling, which runs at the default priority (`.medium`).
public enum WorkPriority {
    /// The worker (its claims and the tasks it runs) and the beat.
    public static let dueWork: TaskPriority = .high

    /// Runs `body` as a child task at `priority` and returns what it returns. Cancellation passes to it, and so do
    /// task-local values (a graceful shutdown's, a logger's).
    public static func run<T: Sendable>(at priority: TaskPriority, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: T.self) { group in
            group.addTask(priority: priority) { try await body() }
            guard let value = try await group.next() else { throw CancellationError() }
            return value
        }
    }
}

// Where outbound HTTP reads the time and waits. Backoff and rate budgets ask a Sleeper, so tests skip the waiting.
import Foundation
import Synchronization

/// A clock that can also wait. Production sleeps for real; tests use ``ManualSleeper``, which only moves its clock.
public protocol Sleeper: TimeSource {
    /// Suspends for `seconds`. Throws `CancellationError` when the task is cancelled.
    func sleep(seconds: TimeInterval) async throws
}

/// The system clock and `Task.sleep`.
public struct SystemSleeper: Sleeper {
    public init() {}

    public func now() -> Date { Date() }

    public func sleep(seconds: TimeInterval) async throws {
        guard seconds > 0 else { return try Task.checkCancellation() }
        try await Task.sleep(for: .seconds(seconds))
    }
}

/// A sleeper for tests: each wait returns at once, after moving ``clock`` forward and remembering how long it was.
public final class ManualSleeper: Sleeper {
    /// The clock the waits move.
    public let clock: ManualTimeSource
    private let recorded = Mutex<[TimeInterval]>([])

    public init(clock: ManualTimeSource = ManualTimeSource(Date(timeIntervalSince1970: 1_790_000_000))) {
        self.clock = clock
    }

    public func now() -> Date { clock.now() }

    public func sleep(seconds: TimeInterval) async throws {
        try Task.checkCancellation()
        guard seconds > 0 else { return }
        recorded.withLock { $0.append(seconds) }
        clock.advance(by: seconds)
    }

    /// Every wait so far, in order.
    public var waits: [TimeInterval] { recorded.withLock { $0 } }
}

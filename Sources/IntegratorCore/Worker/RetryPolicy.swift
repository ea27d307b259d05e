// When a failed task runs again: exponential backoff with full jitter, capped, for a bounded number of attempts.
import Foundation

/// How a task is retried after an error that is not permanent.
public struct RetryPolicy: Sendable, Equatable {
    /// Total tries, the first included. 1 means never retry.
    public var maxAttempts: Int
    /// The backoff ceiling after the first failure, in seconds; it doubles with each attempt.
    public var baseDelay: TimeInterval
    /// The largest ceiling, in seconds.
    public var maxDelay: TimeInterval

    public init(maxAttempts: Int = 3, baseDelay: TimeInterval = 1, maxDelay: TimeInterval = 300) {
        self.maxAttempts = max(1, maxAttempts)
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
    }

    public static let `default` = RetryPolicy()
    public static let never = RetryPolicy(maxAttempts: 1)

    /// The delay before the attempt after `attempt`, drawn uniformly from zero to the capped exponential ceiling
    /// ("full jitter"), so tasks that failed together do not all come back at the same instant.
    public func nextDelay(after attempt: Int, using generator: inout some RandomNumberGenerator) -> TimeInterval {
        TimeInterval.random(in: 0...ceiling(after: attempt), using: &generator)
    }

    /// The upper bound of ``nextDelay(after:using:)``.
    public func ceiling(after attempt: Int) -> TimeInterval {
        min(maxDelay, baseDelay * pow(2, Double(max(0, attempt - 1))))
    }

    /// Whether another attempt follows `attempt`.
    public func allowsRetry(after attempt: Int) -> Bool { attempt < maxAttempts }
}

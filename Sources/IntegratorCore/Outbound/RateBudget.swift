// Per-credentials request budgets: a token bucket per key, shared by every fetch that uses the same credentials.
import Foundation
import Synchronization

/// How fast requests made with one set of credentials may go: a sustained rate and a burst on top.
public struct RateLimit: Sendable, Equatable {
    /// Sustained requests per second.
    public var requestsPerSecond: Double
    /// Requests that may go at once after a quiet period.
    public var burst: Int

    public init(requestsPerSecond: Double, burst: Int) {
        self.requestsPerSecond = max(requestsPerSecond, 0.001)
        self.burst = max(burst, 1)
    }

    /// 10 requests per second, bursts of 20: polite to most public APIs, fast enough for paging.
    public static let `default` = RateLimit(requestsPerSecond: 10, burst: 20)

    /// `requests` per minute, all of which may go at once.
    public static func perMinute(_ requests: Int) -> RateLimit {
        RateLimit(requestsPerSecond: Double(requests) / 60, burst: requests)
    }
}

/// The buckets of one process, keyed by credentials id.
final class RateBudgets: Sendable {
    private struct Bucket {
        var tokens: Double
        var updatedAt: Date
        /// Set after a 429 with `Retry-After`: nothing goes before then.
        var pausedUntil: Date?
    }

    private let buckets = Mutex<[String: Bucket]>([:])

    /// Takes one request from `key`'s budget and returns how long to wait before sending it. Taking before waiting
    /// (the bucket may go negative) queues concurrent callers fairly instead of letting them race for the next token.
    func reserve(_ key: String, limit: RateLimit, now: Date) -> TimeInterval {
        buckets.withLock { buckets in
            var bucket = buckets[key] ?? Bucket(tokens: Double(limit.burst), updatedAt: now)
            let elapsed = max(0, now.timeIntervalSince(bucket.updatedAt))
            bucket.tokens = min(Double(limit.burst), bucket.tokens + elapsed * limit.requestsPerSecond)
            bucket.updatedAt = now
            bucket.tokens -= 1
            var wait = bucket.tokens < 0 ? -bucket.tokens / limit.requestsPerSecond : 0
            if let pausedUntil = bucket.pausedUntil {
                if pausedUntil > now { wait = max(wait, pausedUntil.timeIntervalSince(now)) } else { bucket.pausedUntil = nil }
            }
            buckets[key] = bucket
            if buckets.count > 10_000 { Self.prune(&buckets, now: now, limit: limit) }
            return wait
        }
    }

    /// Holds every request on `key` until `date` (the server said so with a 429).
    func pause(_ key: String, until date: Date, limit: RateLimit, now: Date) {
        buckets.withLock { buckets in
            var bucket = buckets[key] ?? Bucket(tokens: Double(limit.burst), updatedAt: now)
            bucket.pausedUntil = max(bucket.pausedUntil ?? date, date)
            buckets[key] = bucket
        }
    }

    /// Forgets buckets that have refilled and are not paused: they hold nothing a fresh bucket would not.
    private static func prune(_ buckets: inout [String: Bucket], now: Date, limit: RateLimit) {
        let refillTime = Double(limit.burst) / limit.requestsPerSecond
        buckets = buckets.filter { _, bucket in
            bucket.pausedUntil.map { $0 > now } ?? false || now.timeIntervalSince(bucket.updatedAt) < refillTime
        }
    }
}

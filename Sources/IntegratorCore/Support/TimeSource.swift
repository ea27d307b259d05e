// The injectable clock: production reads the system clock, tests set and advance time by hand.
import Foundation
import Synchronization

/// Where "now" comes from. Everything time-dependent (token expiry, schedules, timers) asks one of these.
public protocol TimeSource: Sendable {
    func now() -> Date
}

/// The system clock.
public struct SystemTimeSource: TimeSource {
    public init() {}
    public func now() -> Date { Date() }
}

/// A clock that only moves when told to, for tests.
public final class ManualTimeSource: TimeSource {
    private let current: Mutex<Date>

    public init(_ start: Date) { current = Mutex(start) }

    public func now() -> Date { current.withLock { $0 } }

    public func advance(by seconds: TimeInterval) {
        current.withLock { $0 = $0.addingTimeInterval(seconds) }
    }

    public func set(_ date: Date) {
        current.withLock { $0 = date }
    }
}

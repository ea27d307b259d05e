// A periodic schedule and the pure rules that decide when it fires: its timing, misfires after downtime, and overlap.
import Foundation

/// When a schedule fires.
public enum ScheduleTiming: Sendable, Equatable {
    /// Every `seconds`, counted from the schedule's anchor (its `start_time`, or its creation). Wall clocks don't matter.
    case interval(seconds: Int)
    /// A 5-field cron expression read in an IANA time zone, DST rules as in ``CronExpression/nextFireTime(after:in:)``.
    case crontab(CronExpression, timeZone: TimeZone)
    /// One instant, fired once.
    case clocked(Date)

    public var kind: String {
        switch self {
        case .interval: "interval"
        case .crontab: "crontab"
        case .clocked: "clocked"
        }
    }

    /// The first fire time strictly after `date`, or `nil` if there is none. `anchor` is where intervals count from.
    public func nextFireTime(after date: Date, anchor: Date) -> Date? {
        switch self {
        case .interval(let seconds):
            let step = Double(seconds)
            guard date >= anchor else { return anchor }
            let elapsed = date.timeIntervalSince(anchor)
            let periods = (elapsed / step).rounded(.down) + 1
            return anchor.addingTimeInterval(periods * step)
        case .crontab(let expression, let timeZone):
            return expression.nextFireTime(after: date, in: timeZone)
        case .clocked(let instant):
            return instant > date ? instant : nil
        }
    }
}

/// What the beat does with fire times that passed while it was not running (or was late by more than the grace).
public enum MisfirePolicy: String, Sendable, CaseIterable {
    /// Drop the missed fire times; wait for the next one.
    case skip
    /// Fire once for all the missed times, then carry on.
    case runOnce = "run_once"
    /// Fire once for every missed time (at most ``Schedule/maximumCatchUp`` per pass).
    case runAll = "run_all"
}

/// What the beat does when a fire time comes while the schedule's previous run is still queued or running.
public enum OverlapPolicy: String, Sendable, CaseIterable {
    case allow
    case skip
}

/// A periodic task as stored.
public struct Schedule: Sendable, Equatable {
    public var id: String
    public var name: String
    public var taskName: String
    public var arguments: JSONValue
    public var timing: ScheduleTiming
    public var enabled: Bool
    /// Disable after the first fire.
    public var oneOff: Bool
    /// No fire before this instant.
    public var startTime: Date?
    /// No fire after this instant.
    public var expires: Date?
    public var queue: String
    public var priority: Int
    public var misfire: MisfirePolicy
    /// A fire time late by at most this much is an ordinary fire, not a misfire.
    public var misfireGraceSeconds: Int
    public var overlap: OverlapPolicy
    /// The integration a fetch schedule runs, so its runs are listed with the integration.
    public var integrationID: String?
    /// Where interval schedules count from.
    public var anchor: Date
    /// The next fire time, or `nil` when the schedule will not fire again.
    public var nextRunAt: Date?
    public var lastRunAt: Date?
    /// The task of the latest fire, for the overlap check.
    public var lastTaskID: String?
    public var totalRunCount: Int
    public var createdAt: Date
    public var updatedAt: Date

    /// How many missed fire times one pass of the beat fires for a `run_all` schedule; the rest follow on the next passes.
    public static let maximumCatchUp = 100
    public static let defaultMisfireGraceSeconds = 60

    /// The first fire time strictly after `date` that respects `start_time` and `expires`.
    public func nextFireTime(after date: Date) -> Date? {
        var from = date
        if let startTime, startTime > from { from = startTime.addingTimeInterval(-0.000_001) }
        guard let next = timing.nextFireTime(after: from, anchor: anchor) else { return nil }
        if let expires, next > expires { return nil }
        return next
    }

    /// The first fire time from now on, for a schedule just created or edited.
    public func firstFireTime(from now: Date) -> Date? {
        guard enabled else { return nil }
        if case .clocked(let instant) = timing {
            // A clocked time in the past still fires once (its misfire policy decides), unless expired.
            if let expires, instant > expires { return nil }
            return instant
        }
        // Strictly after now: an interval anchored at creation first fires one period later (at `start_time` if later).
        return nextFireTime(after: now)
    }

    /// The decision for a schedule whose `nextRunAt` is at or before `now`.
    /// - Parameter previousRunActive: the task of the previous fire is still queued, running or waiting to retry.
    public func plan(at now: Date, previousRunActive: Bool) -> FirePlan {
        guard let due = nextRunAt, due <= now else { return FirePlan(fireTimes: [], nextRunAt: nextRunAt, skippedAny: false) }
        let grace = TimeInterval(misfireGraceSeconds)
        var isClocked = false
        if case .clocked = timing { isClocked = true }
        var next = isClocked ? nil : nextFireTime(after: due)
        var fire: [Date]
        if next.map({ $0 > now }) ?? true {
            // One fire time is due: on time unless later than the grace.
            fire = misfire == .skip && now.timeIntervalSince(due) > grace ? [] : [due]
        } else {
            // Several fire times passed (the beat was down, or the schedule was disabled): the policy decides.
            switch misfire {
            case .runAll:
                fire = [due]
                while let missed = next, missed <= now, fire.count < Self.maximumCatchUp {
                    fire.append(missed)
                    next = nextFireTime(after: missed)
                }
            case .runOnce:
                fire = [due]
                next = nextFireTime(after: now)
            case .skip:
                let recent = nextFireTime(after: now.addingTimeInterval(-grace))
                fire = recent.map { $0 <= now ? [$0] : [] } ?? []
                next = nextFireTime(after: now)
            }
        }
        var skippedAny = fire.isEmpty
        if overlap == .skip {
            if previousRunActive {
                fire = []
                skippedAny = true
            } else if fire.count > 1 {
                // Runs published in one pass would overlap one another.
                fire = [fire.last!]
                skippedAny = true
            }
        }
        if oneOff, !fire.isEmpty { next = nil }
        return FirePlan(fireTimes: fire, nextRunAt: next, skippedAny: skippedAny)
    }
}

/// What one pass of the beat does with a due schedule.
public struct FirePlan: Sendable, Equatable {
    /// The fire times to publish a task for, oldest first.
    public var fireTimes: [Date]
    /// The schedule's next fire time afterwards (`nil`: it is finished).
    public var nextRunAt: Date?
    /// Whether the misfire or overlap policy dropped a fire time.
    public var skippedAny: Bool
}

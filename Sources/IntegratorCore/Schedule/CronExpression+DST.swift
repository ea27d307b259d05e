// When a cron expression fires: the search for the next matching wall-clock minutes in a time zone, with the
// daylight-saving rules of Debian's cron(8).
//
// How it works: between two offset transitions of a zone the UTC offset is constant, so local wall time and real time
// differ by a fixed amount. The search walks those segments (Foundation's TimeZone reports the transitions) and, in
// each, looks for the first matching wall-clock minute with plain calendar arithmetic that jumps over non-matching
// months, days and hours. At a transition it applies the DST rules:
// - spring-forward (the offset grows): wall times in the gap do not exist. A fixed-time schedule whose wall time falls
//   in the gap fires once, at the transition instant (the first instant after the gap); a real-time one does not.
// - fall-back (the offset shrinks): wall times just before the transition run again after it. A real-time schedule
//   fires in both runs; a fixed-time one only in the first, so the search after the transition starts past them.
// Wall-clock arithmetic is done on "local seconds" (the wall time read as if it were UTC), never through
// Calendar.date(from:), whose resolution of skipped and repeated wall times is its own.
import Foundation

extension CronExpression {
    /// How far past the last fire (or the start) the search goes before it decides the expression cannot fire. The
    /// longest possible gap between two fires of a satisfiable expression is eight years (29 February, around a
    /// century that is not a leap year, as 2096 to 2104).
    static let searchHorizon: Int64 = 9 * 366 * 86_400

    /// The next instant strictly after `date` at which the expression fires in `timeZone`, or nil if it never fires
    /// (like `0 0 30 2 *`).
    public func nextFireTime(after date: Date, in timeZone: TimeZone) -> Date? {
        nextFireTimes(after: date, in: timeZone, count: 1).first
    }

    /// The next `count` instants strictly after `date` at which the expression fires, evaluated on the wall clock of
    /// `timeZone` (an IANA zone), in increasing order. Fewer are returned (possibly none) if the expression stops
    /// matching (it never fires, like `0 0 30 2 *`).
    ///
    /// Daylight-saving changes follow Debian's cron(8), see ``followsRealTime``: a real-time schedule (`*/5 * * * *`,
    /// `0 * * * *`) fires in both runs of a repeated hour and not at all for skipped wall times; a fixed-time schedule
    /// (`30 2 * * *`) fires once for a skipped wall time, at the first instant after the gap, and once for a repeated
    /// wall time, at its first run.
    public func nextFireTimes(after date: Date, in timeZone: TimeZone, count: Int) -> [Date] {
        var result: [Date] = []
        guard count > 0 else { return result }
        result.reserveCapacity(min(count, 1024))
        var cursor = date
        while result.count < count, let next = firstFire(after: cursor, in: timeZone) {
            result.append(next)
            cursor = next
        }
        return result
    }

    /// The first fire strictly after `date`.
    private func firstFire(after date: Date, in zone: TimeZone) -> Date? {
        let after = date.timeIntervalSince1970
        // Beyond about 300,000 years either way there is nothing sensible to compute (and Int64 seconds stay safe).
        guard after.isFinite, abs(after) < 1e13 else { return nil }
        // Fires are whole seconds, so "strictly after" means at or after this second.
        let earliest = Int64(after.rounded(.down)) + 1
        let limit = earliest + Self.searchHorizon

        // The segment holding `date` starts at the last transition at or before it; only a recent one matters (it
        // decides whether wall times just after `date` are a repeat or follow a gap), and no offset jump is longer
        // than a day, so looking two days back is enough.
        var segmentStart = earliest - 2 * 86_400
        var startsAtTransition = false
        var probe = Date(timeIntervalSince1970: Double(segmentStart))
        while let transition = zone.nextDaylightSavingTimeTransition(after: probe), transition <= date {
            segmentStart = Int64(transition.timeIntervalSince1970.rounded(.down))
            startsAtTransition = true
            probe = transition
        }

        let fixedTime = !followsRealTime
        while segmentStart < limit {
            let offset = Int64(zone.secondsFromGMT(for: Date(timeIntervalSince1970: Double(segmentStart))))
            let previousOffset = startsAtTransition
                ? Int64(zone.secondsFromGMT(for: Date(timeIntervalSince1970: Double(segmentStart - 1))))
                : offset
            let nextTransition = zone.nextDaylightSavingTimeTransition(after: Date(timeIntervalSince1970: Double(segmentStart)))
                .map { Int64($0.timeIntervalSince1970.rounded(.down)) }
            let segmentEnd = min(nextTransition ?? Int64.max, limit)

            // Spring-forward: a fixed-time schedule fires at the transition for any wall time lost in the gap.
            if fixedTime, startsAtTransition, offset > previousOffset, segmentStart >= earliest,
               firstMatchingWallMinute(from: segmentStart + previousOffset, before: segmentStart + offset) != nil {
                return Date(timeIntervalSince1970: Double(segmentStart))
            }
            var lowestWall = max(segmentStart, earliest) + offset
            // Fall-back: a fixed-time schedule already had its chance at the wall times that repeat.
            if fixedTime, startsAtTransition, offset < previousOffset {
                lowestWall = max(lowestWall, segmentStart + previousOffset)
            }
            if let wall = firstMatchingWallMinute(from: lowestWall, before: segmentEnd + offset) {
                return Date(timeIntervalSince1970: Double(wall - offset))
            }
            guard let nextTransition else { return nil }
            segmentStart = nextTransition
            startsAtTransition = true
        }
        return nil
    }

    /// The first wall-clock minute (in local seconds, a multiple of 60) in `from ..< before` that the expression
    /// matches. Jumps over whole months, days and hours that cannot match.
    func firstMatchingWallMinute(from lower: Int64, before upper: Int64) -> Int64? {
        var minuteNumber = lower.dividedRoundingUp(by: 60)
        while minuteNumber * 60 < upper {
            let dayNumber = minuteNumber.dividedRoundingDown(by: 1440)
            let minuteOfDay = Int(minuteNumber - dayNumber * 1440)
            let date = CivilDate(dayNumber: dayNumber)

            guard month.contains(date.month) else {
                if let nextMonth = month.first(atLeast: date.month + 1) {
                    minuteNumber = CivilDate.dayNumber(year: date.year, month: nextMonth, day: 1) * 1440
                } else {
                    let firstMonth = month.first(atLeast: 1) ?? 1
                    minuteNumber = CivilDate.dayNumber(year: date.year + 1, month: firstMonth, day: 1) * 1440
                }
                continue
            }
            guard matchesDay(date, weekday: CivilDate.weekday(dayNumber: dayNumber)) else {
                minuteNumber = (dayNumber + 1) * 1440
                continue
            }
            let hourOfDay = minuteOfDay / 60
            guard hour.contains(hourOfDay) else {
                if let nextHour = hour.first(atLeast: hourOfDay + 1) {
                    minuteNumber = dayNumber * 1440 + Int64(nextHour * 60)
                } else {
                    minuteNumber = (dayNumber + 1) * 1440
                }
                continue
            }
            let minuteOfHour = minuteOfDay % 60
            guard minute.contains(minuteOfHour) else {
                if let nextMinute = minute.first(atLeast: minuteOfHour + 1), nextMinute < 60 {
                    minuteNumber = dayNumber * 1440 + Int64(hourOfDay * 60 + nextMinute)
                } else {
                    minuteNumber = dayNumber * 1440 + Int64((hourOfDay + 1) * 60)
                }
                continue
            }
            return minuteNumber * 60
        }
        return nil
    }

    /// Vixie cron: if either day field starts with `*`, both must match; otherwise either may.
    func matchesDay(_ date: CivilDate, weekday: Int) -> Bool {
        let byDayOfMonth = dayOfMonth.contains(date.day)
        let byDayOfWeek = dayOfWeek.contains(weekday)
        if dayOfMonth.isStar || dayOfWeek.isStar {
            return byDayOfMonth && byDayOfWeek
        }
        return byDayOfMonth || byDayOfWeek
    }
}

extension CronExpression {
    /// A day of the proleptic Gregorian calendar, converted to and from a day count since 1970-01-01.
    struct CivilDate: Equatable {
        var year: Int64
        var month: Int
        var day: Int

        /// Days since 1970-01-01 (negative before), after Howard Hinnant's `civil_from_days`.
        init(dayNumber: Int64) {
            let shifted = dayNumber + 719_468
            let era = shifted.dividedRoundingDown(by: 146_097)
            let dayOfEra = shifted - era * 146_097
            let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
            let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
            let monthIndex = (5 * dayOfYear + 2) / 153  // 0 = March
            day = Int(dayOfYear - (153 * monthIndex + 2) / 5 + 1)
            month = Int(monthIndex < 10 ? monthIndex + 3 : monthIndex - 9)
            year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        }

        /// The inverse of `init(dayNumber:)`; `day` may run past the month's end (it then counts on).
        static func dayNumber(year: Int64, month: Int, day: Int) -> Int64 {
            let marchYear = month <= 2 ? year - 1 : year
            let era = marchYear.dividedRoundingDown(by: 400)
            let yearOfEra = marchYear - era * 400
            let monthIndex = Int64(month > 2 ? month - 3 : month + 9)
            let dayOfYear = (153 * monthIndex + 2) / 5 + Int64(day) - 1
            let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
            return era * 146_097 + dayOfEra - 719_468
        }

        /// 0 = Sunday … 6 = Saturday; 1970-01-01 was a Thursday.
        static func weekday(dayNumber: Int64) -> Int {
            Int((dayNumber + 4) - (dayNumber + 4).dividedRoundingDown(by: 7) * 7)
        }
    }
}

extension Int64 {
    fileprivate func dividedRoundingDown(by divisor: Int64) -> Int64 {
        let quotient = self / divisor
        return (self % divisor != 0 && (self < 0) != (divisor < 0)) ? quotient - 1 : quotient
    }

    fileprivate func dividedRoundingUp(by divisor: Int64) -> Int64 {
        -(-self).dividedRoundingDown(by: divisor)
    }
}

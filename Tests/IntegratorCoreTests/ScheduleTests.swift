// The pure schedule rules: interval anchoring, start/expiry windows, misfire after downtime, overlap, one-off.
import Foundation
@testable import IntegratorCore
import Testing

@Suite("Schedule rules")
struct ScheduleTests {
    static let anchor = Date(timeIntervalSince1970: 1_790_000_000)

    func schedule(
        _ timing: ScheduleTiming, misfire: MisfirePolicy = .runOnce, grace: Int = 60, overlap: OverlapPolicy = .allow,
        oneOff: Bool = false, startTime: Date? = nil, expires: Date? = nil, nextRunAt: Date? = nil
    ) -> Schedule {
        Schedule(
            id: "s", name: "s", taskName: "core.noop", arguments: .object([:]), timing: timing, enabled: true, oneOff: oneOff,
            startTime: startTime, expires: expires, queue: "default", priority: 5, misfire: misfire, misfireGraceSeconds: grace,
            overlap: overlap, integrationID: nil, anchor: startTime ?? Self.anchor, nextRunAt: nextRunAt, lastRunAt: nil,
            lastTaskID: nil, totalRunCount: 0, createdAt: Self.anchor, updatedAt: Self.anchor)
    }

    func at(_ seconds: TimeInterval) -> Date { Self.anchor.addingTimeInterval(seconds) }

    @Test("interval fire times count from the anchor, strictly after the given time")
    func intervalAnchoring() {
        let every10 = ScheduleTiming.interval(seconds: 10)
        #expect(every10.nextFireTime(after: at(0), anchor: Self.anchor) == at(10))
        #expect(every10.nextFireTime(after: at(15), anchor: Self.anchor) == at(20))
        #expect(every10.nextFireTime(after: at(20), anchor: Self.anchor) == at(30))
        #expect(every10.nextFireTime(after: at(-100), anchor: Self.anchor) == at(0))
    }

    @Test("a new schedule's first fire respects start_time and expires")
    func window() {
        let started = schedule(.interval(seconds: 60), startTime: at(3600))
        #expect(started.firstFireTime(from: at(0)) == at(3600))
        let expiring = schedule(.interval(seconds: 60), expires: at(90))
        #expect(expiring.firstFireTime(from: at(1)) == at(60))
        #expect(expiring.nextFireTime(after: at(60)) == nil)
        let clocked = schedule(.clocked(at(-30)))
        #expect(clocked.firstFireTime(from: at(0)) == at(-30), "a clocked time in the past still fires once")
    }

    @Test("a fire on time publishes once and moves to the next time")
    func onTime() {
        let plan = schedule(.interval(seconds: 60), nextRunAt: at(60)).plan(at: at(60.2), previousRunActive: false)
        #expect(plan == FirePlan(fireTimes: [at(60)], nextRunAt: at(120), skippedAny: false))
        let early = schedule(.interval(seconds: 60), nextRunAt: at(60)).plan(at: at(59), previousRunActive: false)
        #expect(early.fireTimes.isEmpty && early.nextRunAt == at(60))
    }

    @Test("after downtime run_once fires once and resumes after now")
    func runOnce() {
        let plan = schedule(.interval(seconds: 60), nextRunAt: at(60)).plan(at: at(3630), previousRunActive: false)
        #expect(plan.fireTimes == [at(60)])
        #expect(plan.nextRunAt == at(3660))
    }

    @Test("after downtime skip drops missed times unless one is within the grace")
    func skip() {
        let late = schedule(.interval(seconds: 60), misfire: .skip, grace: 10, nextRunAt: at(60))
        let dropped = late.plan(at: at(3630), previousRunActive: false)
        #expect(dropped.fireTimes.isEmpty && dropped.skippedAny)
        #expect(dropped.nextRunAt == at(3660))
        let recent = late.plan(at: at(3605), previousRunActive: false)
        #expect(recent.fireTimes == [at(3600)])
        let single = schedule(.interval(seconds: 3600), misfire: .skip, grace: 10, nextRunAt: at(3600))
        #expect(single.plan(at: at(3700), previousRunActive: false).fireTimes.isEmpty, "one due time later than the grace")
    }

    @Test("after downtime run_all fires every missed time, capped per pass")
    func runAll() {
        let plan = schedule(.interval(seconds: 60), misfire: .runAll, nextRunAt: at(60)).plan(at: at(330), previousRunActive: false)
        #expect(plan.fireTimes == [at(60), at(120), at(180), at(240), at(300)])
        #expect(plan.nextRunAt == at(360))
        let long = schedule(.interval(seconds: 1), misfire: .runAll, nextRunAt: at(1)).plan(at: at(1000), previousRunActive: false)
        #expect(long.fireTimes.count == Schedule.maximumCatchUp)
        #expect(long.nextRunAt == at(Double(Schedule.maximumCatchUp + 1)), "the rest follow on the next pass")
    }

    @Test("overlap skip holds a fire while the previous run is active, and never publishes several at once")
    func overlap() {
        let busy = schedule(.interval(seconds: 60), overlap: .skip, nextRunAt: at(60)).plan(at: at(61), previousRunActive: true)
        #expect(busy.fireTimes.isEmpty && busy.skippedAny && busy.nextRunAt == at(120))
        let allowed = schedule(.interval(seconds: 60), overlap: .allow, nextRunAt: at(60)).plan(at: at(61), previousRunActive: true)
        #expect(allowed.fireTimes == [at(60)])
        let catchUp = schedule(.interval(seconds: 60), misfire: .runAll, overlap: .skip, nextRunAt: at(60))
            .plan(at: at(330), previousRunActive: false)
        #expect(catchUp.fireTimes == [at(300)])
    }

    @Test("one_off and clocked schedules finish after firing")
    func finishing() {
        let oneOff = schedule(.interval(seconds: 60), oneOff: true, nextRunAt: at(60)).plan(at: at(60), previousRunActive: false)
        #expect(oneOff.fireTimes == [at(60)] && oneOff.nextRunAt == nil)
        let clocked = schedule(.clocked(at(60)), nextRunAt: at(60)).plan(at: at(65), previousRunActive: false)
        #expect(clocked.fireTimes == [at(60)] && clocked.nextRunAt == nil)
        let missedClock = schedule(.clocked(at(60)), misfire: .skip, grace: 5, nextRunAt: at(60)).plan(at: at(600), previousRunActive: false)
        #expect(missedClock.fireTimes.isEmpty && missedClock.nextRunAt == nil)
    }

    @Test("a crontab schedule follows its zone: 02:30 New York on the spring-forward day fires at 03:00 EDT")
    func crontabZone() throws {
        let zone = try #require(TimeZone(identifier: "America/New_York"))
        let daily = schedule(.crontab(try CronExpression("30 2 * * *"), timeZone: zone))
        // 2026-03-07T12:00:00Z, the day before the transition.
        let start = Date(timeIntervalSince1970: 1_772_884_800)
        let first = try #require(daily.nextFireTime(after: start))
        let second = try #require(daily.nextFireTime(after: first))
        #expect(first.iso8601(in: zone) == "2026-03-08T03:00:00-04:00")
        #expect(second.iso8601(in: zone) == "2026-03-09T02:30:00-04:00")
    }
}

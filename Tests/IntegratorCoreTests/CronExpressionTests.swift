// The cron engine: parsing and its messages, Vixie day semantics, DST behaviour around the 2026 transitions, and a
// comparison against the independent Python package croniter (run through cron_reference.py).
import Foundation
import IntegratorCore
import Testing

@Suite("Cron expressions")
struct CronExpressionTests {
    // MARK: Parsing

    @Test("valid forms parse and render normalized", arguments: [
        ("* * * * *", "* * * * *"),
        ("*/15 * * * *", "*/15 * * * *"),
        ("10-50/5 * * * *", "10-50/5 * * * *"),
        ("0,15,30,45 * * * *", "0-45/15 * * * *"),
        ("1,2,3,5 * * * *", "1-3,5 * * * *"),
        ("5 4 * * *", "5 4 * * *"),
        ("0 9 * JAN-mar Mon-FRI", "0 9 * 1-3 1-5"),
        ("0 0 * * 7", "0 0 * * 0"),
        ("0 0 * * sun", "0 0 * * 0"),
        ("0 0 * * 5-7", "0 0 * * 0,5,6"),
        ("0 0 1,15 * *", "0 0 1,15 * *"),
        ("  0   12\t* *   * ", "0 12 * * *"),
        ("*/45 */7 * */3 *", "*/45 */7 * */3 *"),
        ("*/15,7 * * * *", "*/60,7,15-45/15 * * * *"),
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
        ("@ANNUALLY", "0 0 1 1 *"),
    ])
    func parsesAndRenders(input: String, normalized: String) throws {
        let expression = try CronExpression(input)
        #expect(expression.description == normalized)
        // The rendering parses back to the same schedule.
        #expect(try CronExpression(expression.description) == expression)
    }

    @Test("fields expand to the values they match")
    func fieldValues() throws {
        let expression = try CronExpression("10-50/20 */6 1-31/10 jan,jul 1-7/3")
        #expect(expression.values(of: .minute) == [10, 30, 50])
        #expect(expression.values(of: .hour) == [0, 6, 12, 18])
        #expect(expression.values(of: .dayOfMonth) == [1, 11, 21, 31])
        #expect(expression.values(of: .month) == [1, 7])
        #expect(expression.values(of: .dayOfWeek) == [0, 1, 4])  // 7 is Sunday
        #expect(try CronExpression("* * * * *").values(of: .dayOfWeek) == Array(0...6))
    }

    @Test("equality is by schedule, and a leading star is part of it")
    func equality() throws {
        #expect(try CronExpression("1,2,3 * * * *") == CronExpression("1-3 * * * *"))
        #expect(try CronExpression("0 0 * * 0") == CronExpression("0 0 * * 7"))
        #expect(try CronExpression("0 0 * * 7") == CronExpression("0 0 * * SUN"))
        #expect(try CronExpression("@daily") == CronExpression("0 0 * * *"))
        #expect(try CronExpression("* * * * *") != CronExpression("0-59 * * * *"))
        #expect(try CronExpression("0 0 */1 * mon") != CronExpression("0 0 1-31 * mon"))
        #expect(try CronExpression("0 * * * *").followsRealTime)
        #expect(try CronExpression("*/5 3 * * *").followsRealTime)
        #expect(try !CronExpression("30 2 * * *").followsRealTime)
        #expect(try !CronExpression("@daily").followsRealTime)
    }

    @Test("errors name the field and the part that is wrong", arguments: [
        ("0 24 * * *", "hour: 24 is out of range 0-23", CronExpression.Field?.some(.hour)),
        ("x * * * *", "minute: 'x' is not a number", .minute),
        ("* * * *", "expected 5 fields, got 4", nil),
        ("* * * * * *", "expected 5 fields, got 6", nil),
        ("", "expected 5 fields, got 0", nil),
        ("60 * * * *", "minute: 60 is out of range 0-59", .minute),
        ("0 0 0 * *", "day-of-month: 0 is out of range 1-31", .dayOfMonth),
        ("0 0 32 * *", "day-of-month: 32 is out of range 1-31", .dayOfMonth),
        ("0 0 L * *", "day-of-month: 'L' is not a number", .dayOfMonth),
        ("0 0 ? * *", "day-of-month: '?' is not a number", .dayOfMonth),
        ("0 0 * 13 *", "month: 13 is out of range 1-12", .month),
        ("0 0 * foo *", "month: 'foo' is not a number or a month name (jan-dec)", .month),
        ("0 0 * january *", "month: 'january' is not a number or a month name (jan-dec)", .month),
        ("0 0 * * 8", "day-of-week: 8 is out of range 0-7", .dayOfWeek),
        ("0 0 * * funday", "day-of-week: 'funday' is not a number or a weekday name (sun-sat)", .dayOfWeek),
        ("0 0 * * mon#2", "day-of-week: 'mon#2' is not a number or a weekday name (sun-sat)", .dayOfWeek),
        ("0 0 * * sat-sun", "day-of-week: range sat-sun goes backwards (6 > 0)", .dayOfWeek),
        ("*/0 * * * *", "minute: step 0 in '*/0' must be at least 1", .minute),
        ("*/x * * * *", "minute: step 'x' in '*/x' is not a number", .minute),
        ("1-5/ * * * *", "minute: step '' in '1-5/' is not a number", .minute),
        ("*/5/2 * * * *", "minute: '*/5/2' has more than one '/'", .minute),
        ("5/15 * * * *", "minute: a step needs a range or '*' before it, as in '*/15', got '5/15'", .minute),
        ("0 5-2 * * *", "hour: range 5-2 goes backwards (5 > 2)", .hour),
        ("0 1-99 * * *", "hour: 99 is out of range 0-23", .hour),
        ("0 99999999999999999999 * * *", "hour: 99999999999999999999 is out of range 0-23", .hour),
        ("1,,2 * * * *", "minute: empty item in the list '1,,2'", .minute),
        ("1, * * * *", "minute: empty item in the list '1,'", .minute),
        ("1-2-3 * * * *", "minute: '1-2-3' is not a valid range (expected low-high)", .minute),
        ("-5 * * * *", "minute: '-5' is not a valid range (expected low-high)", .minute),
        ("@reboot", "unknown macro '@reboot' (expected @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly)", nil),
        ("@daily 5", "a macro stands alone, but '@daily' is followed by 1 more field(s)", nil),
    ])
    func parseErrors(input: String, message: String, field: CronExpression.Field?) {
        do {
            let expression = try CronExpression(input)
            Issue.record("'\(input)' parsed as '\(expression)' but should fail with: \(message)")
        } catch {
            #expect(error.message == message)
            #expect(error.description == message)
            #expect(error.field == field)
            #expect(error.expression == input)
            #expect(error.debugDescription.contains(message))
        }
    }

    // MARK: Fire times

    @Test("fire times are strictly after the start, also for fractional starts")
    func strictlyAfter() throws {
        let every15 = try CronExpression("*/15 * * * *")
        #expect(fires(every15, after: "2026-01-01T00:15:00Z", count: 2) == ["2026-01-01T00:30:00Z", "2026-01-01T00:45:00Z"])
        let justBefore = utc("2026-01-01T00:15:00Z").addingTimeInterval(-0.5)
        #expect(every15.nextFireTime(after: justBefore, in: utcZone).map(iso) == "2026-01-01T00:15:00Z")
        #expect(every15.nextFireTimes(after: justBefore, in: utcZone, count: 0).isEmpty)
        #expect(fires(try CronExpression("59 23 31 12 *"), after: "2026-12-31T23:59:00Z", count: 1) == ["2027-12-31T23:59:00Z"])
    }

    @Test("steps and ranges: uneven steps wrap at the field's end")
    func stepsAndRanges() throws {
        #expect(fires(try CronExpression("*/7 * * * *"), after: "2026-01-01T00:50:00Z", count: 4)
            == ["2026-01-01T00:56:00Z", "2026-01-01T01:00:00Z", "2026-01-01T01:07:00Z", "2026-01-01T01:14:00Z"])
        #expect(fires(try CronExpression("10-50/20 * * * *"), after: "2026-01-01T00:30:00Z", count: 3)
            == ["2026-01-01T00:50:00Z", "2026-01-01T01:10:00Z", "2026-01-01T01:30:00Z"])
        #expect(fires(try CronExpression("0 22-23,1 * * *"), after: "2026-01-01T21:00:00Z", count: 4)
            == ["2026-01-01T22:00:00Z", "2026-01-01T23:00:00Z", "2026-01-02T01:00:00Z", "2026-01-02T22:00:00Z"])
        // Month steps and the year boundary.
        #expect(fires(try CronExpression("0 0 1 */5 *"), after: "2026-06-15T00:00:00Z", count: 3)
            == ["2026-11-01T00:00:00Z", "2027-01-01T00:00:00Z", "2027-06-01T00:00:00Z"])
        // The 31st only in months that have one.
        #expect(fires(try CronExpression("0 12 31 * *"), after: "2026-01-31T12:00:00Z", count: 3)
            == ["2026-03-31T12:00:00Z", "2026-05-31T12:00:00Z", "2026-07-31T12:00:00Z"])
        // 29 February, including the skipped leap day of 2100 (eight years between fires).
        #expect(fires(try CronExpression("0 0 29 2 *"), after: "2026-01-01T00:00:00Z", count: 3)
            == ["2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z", "2036-02-29T00:00:00Z"])
        #expect(fires(try CronExpression("0 0 29 2 *"), after: "2097-01-01T00:00:00Z", count: 1) == ["2104-02-29T00:00:00Z"])
    }

    @Test("a range whose ends are equal is that one value")
    func equalEndsRange() throws {
        #expect(try CronExpression("5 11-11 * * *") == CronExpression("5 11 * * *"))
        #expect(try CronExpression("43-43/8 * * 12-dec 7-7").description == "43 * * 12 0")
        #expect(fires(try CronExpression("5 11-11 * * *"), after: "2026-01-01T00:00:00Z", count: 2)
            == ["2026-01-01T11:05:00Z", "2026-01-02T11:05:00Z"])
    }

    @Test("day-of-week 7, 0 and sun are all Sunday; ranges may end at 7")
    func sunday() throws {
        let expected = ["2026-01-04T12:00:00Z", "2026-01-11T12:00:00Z", "2026-01-18T12:00:00Z"]
        for text in ["0 12 * * 7", "0 12 * * 0", "0 12 * * Sun", "0 12 * * */7"] {
            #expect(fires(try CronExpression(text), after: "2026-01-01T00:00:00Z", count: 3) == expected, "\(text)")
        }
        // 2026-01-02 is a Friday: Friday, Saturday, Sunday, then Friday again.
        #expect(fires(try CronExpression("0 12 * * 5-7"), after: "2026-01-01T00:00:00Z", count: 4)
            == ["2026-01-02T12:00:00Z", "2026-01-03T12:00:00Z", "2026-01-04T12:00:00Z", "2026-01-09T12:00:00Z"])
    }

    @Test("day-of-month OR day-of-week when both are restricted (Vixie cron)")
    func vixieDays() throws {
        // Fridays, and the 13th (a Tuesday in January 2026).
        #expect(fires(try CronExpression("0 0 13 * fri"), after: "2026-01-01T00:00:00Z", count: 4)
            == ["2026-01-02T00:00:00Z", "2026-01-09T00:00:00Z", "2026-01-13T00:00:00Z", "2026-01-16T00:00:00Z"])
        // The 1st, and Mondays, in February only.
        #expect(fires(try CronExpression("0 0 1 feb mon"), after: "2026-01-01T00:00:00Z", count: 4)
            == ["2026-02-01T00:00:00Z", "2026-02-02T00:00:00Z", "2026-02-09T00:00:00Z", "2026-02-16T00:00:00Z"])
        // A day-of-month field that starts with `*` is not a restriction: both must match (Mondays on 1, 11, 21, 31).
        #expect(fires(try CronExpression("0 0 */10 * mon"), after: "2026-01-01T00:00:00Z", count: 4)
            == ["2026-05-11T00:00:00Z", "2026-06-01T00:00:00Z", "2026-08-31T00:00:00Z", "2026-09-21T00:00:00Z"])
        // Only one day field restricted: it alone decides.
        #expect(fires(try CronExpression("0 0 * * mon"), after: "2026-01-01T00:00:00Z", count: 2)
            == ["2026-01-05T00:00:00Z", "2026-01-12T00:00:00Z"])
        #expect(fires(try CronExpression("0 0 13 * *"), after: "2026-01-01T00:00:00Z", count: 2)
            == ["2026-01-13T00:00:00Z", "2026-02-13T00:00:00Z"])
    }

    @Test("an expression that can never fire returns nothing, quickly", arguments: [
        "0 0 30 2 *", "0 0 31 4,6,9,11 *", "*/5 * 31 apr *", "30 2 30 feb *",
    ])
    func neverFires(text: String) throws {
        let expression = try CronExpression(text)
        let started = ContinuousClock.now
        for zone in [utcZone, newYork, london] {
            #expect(expression.nextFireTimes(after: utc("2026-01-01T00:00:00Z"), in: zone, count: 5).isEmpty)
            #expect(expression.nextFireTime(after: utc("2026-01-01T00:00:00Z"), in: zone) == nil)
        }
        #expect(ContinuousClock.now - started < .seconds(2))
    }

    @Test("many fire times of a busy schedule come fast")
    func busySchedule() throws {
        let started = ContinuousClock.now
        let times = try CronExpression("* * * * *").nextFireTimes(after: utc("2026-03-01T00:00:00Z"), in: newYork, count: 20_000)
        #expect(times.count == 20_000)
        // Real time across the spring-forward on 2026-03-08: exactly one minute apart throughout.
        #expect(zip(times, times.dropFirst()).allSatisfy { $1.timeIntervalSince($0) == 60 })
        #expect(ContinuousClock.now - started < .seconds(5))
    }

    // MARK: Daylight-saving time

    struct DSTCase: CustomTestStringConvertible, Sendable {
        let zone: String
        let expression: String
        let after: String
        let expected: [String]
        let why: String
        var testDescription: String { "\(zone) '\(expression)' after \(after): \(why)" }
    }

    static let dstCases: [DSTCase] = [
        // America/New_York, spring forward 2026-03-08 02:00 EST (07:00Z) → 03:00 EDT.
        DSTCase(zone: "America/New_York", expression: "*/30 * * * *", after: "2026-03-08T06:00:00Z",
                expected: ["2026-03-08T06:30:00Z", "2026-03-08T07:00:00Z", "2026-03-08T07:30:00Z", "2026-03-08T08:00:00Z"],
                why: "01:30 EST, then 03:00 EDT: 02:00 and 02:30 do not exist"),
        DSTCase(zone: "America/New_York", expression: "0 * * * *", after: "2026-03-08T05:30:00Z",
                expected: ["2026-03-08T06:00:00Z", "2026-03-08T07:00:00Z", "2026-03-08T08:00:00Z"],
                why: "01:00 EST, 03:00 EDT, 04:00 EDT"),
        DSTCase(zone: "America/New_York", expression: "@hourly", after: "2026-03-08T05:30:00Z",
                expected: ["2026-03-08T06:00:00Z", "2026-03-08T07:00:00Z", "2026-03-08T08:00:00Z"],
                why: "@hourly follows real time"),
        DSTCase(zone: "America/New_York", expression: "30 2 * * *", after: "2026-03-07T00:00:00Z",
                expected: ["2026-03-07T07:30:00Z", "2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"],
                why: "skipped 02:30 fires once at 03:00 EDT"),
        DSTCase(zone: "America/New_York", expression: "30 2 * * *", after: "2026-03-08T06:59:59Z",
                expected: ["2026-03-08T07:00:00Z"],
                why: "the gap fire is strictly after the start"),
        DSTCase(zone: "America/New_York", expression: "30 2 * * *", after: "2026-03-08T07:00:00Z",
                expected: ["2026-03-09T06:30:00Z"],
                why: "starting at the gap fire skips it"),
        DSTCase(zone: "America/New_York", expression: "0,30 2 * * *", after: "2026-03-08T00:00:00Z",
                expected: ["2026-03-08T07:00:00Z", "2026-03-09T06:00:00Z", "2026-03-09T06:30:00Z"],
                why: "two skipped times fire once together"),
        DSTCase(zone: "America/New_York", expression: "0 2,3 * * *", after: "2026-03-08T00:00:00Z",
                expected: ["2026-03-08T07:00:00Z", "2026-03-09T06:00:00Z", "2026-03-09T07:00:00Z"],
                why: "skipped 02:00 and real 03:00 are the same instant, fired once"),
        DSTCase(zone: "America/New_York", expression: "0 1 * * *", after: "2026-03-07T12:00:00Z",
                expected: ["2026-03-08T06:00:00Z", "2026-03-09T05:00:00Z"],
                why: "01:00 exists on both days"),
        // America/New_York, fall back 2026-11-01 02:00 EDT (06:00Z) → 01:00 EST.
        DSTCase(zone: "America/New_York", expression: "*/30 * * * *", after: "2026-11-01T04:45:00Z",
                expected: ["2026-11-01T05:00:00Z", "2026-11-01T05:30:00Z", "2026-11-01T06:00:00Z", "2026-11-01T06:30:00Z",
                           "2026-11-01T07:00:00Z"],
                why: "01:00 and 01:30 fire in EDT and again in EST"),
        DSTCase(zone: "America/New_York", expression: "*/30 * * * *", after: "2026-11-01T06:10:00Z",
                expected: ["2026-11-01T06:30:00Z", "2026-11-01T07:00:00Z"],
                why: "starting inside the repeated hour"),
        DSTCase(zone: "America/New_York", expression: "0 * * * *", after: "2026-11-01T04:30:00Z",
                expected: ["2026-11-01T05:00:00Z", "2026-11-01T06:00:00Z", "2026-11-01T07:00:00Z", "2026-11-01T08:00:00Z"],
                why: "01:00 EDT, 01:00 EST, 02:00 EST, 03:00 EST"),
        DSTCase(zone: "America/New_York", expression: "30 1 * * *", after: "2026-10-31T12:00:00Z",
                expected: ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"],
                why: "repeated 01:30 fires once, in EDT"),
        DSTCase(zone: "America/New_York", expression: "30 1 * * *", after: "2026-11-01T05:45:00Z",
                expected: ["2026-11-02T06:30:00Z"],
                why: "no second run after the first one has passed"),
        DSTCase(zone: "America/New_York", expression: "30 1 * * *", after: "2026-11-01T06:10:00Z",
                expected: ["2026-11-02T06:30:00Z"],
                why: "starting inside the repeated hour, 01:30 EST is not a fire"),
        DSTCase(zone: "America/New_York", expression: "0 1 * * *", after: "2026-10-31T12:00:00Z",
                expected: ["2026-11-01T05:00:00Z", "2026-11-02T06:00:00Z"],
                why: "repeated 01:00 fires once, in EDT"),
        DSTCase(zone: "America/New_York", expression: "30 2 * * *", after: "2026-10-31T12:00:00Z",
                expected: ["2026-11-01T07:30:00Z", "2026-11-02T07:30:00Z"],
                why: "02:30 happens once, in EST"),
        // Europe/London, spring forward 2026-03-29 01:00 GMT (01:00Z) → 02:00 BST.
        DSTCase(zone: "Europe/London", expression: "*/30 * * * *", after: "2026-03-29T00:00:00Z",
                expected: ["2026-03-29T00:30:00Z", "2026-03-29T01:00:00Z", "2026-03-29T01:30:00Z"],
                why: "00:30 GMT, then 02:00 BST: 01:00 and 01:30 do not exist"),
        DSTCase(zone: "Europe/London", expression: "0 * * * *", after: "2026-03-28T23:30:00Z",
                expected: ["2026-03-29T00:00:00Z", "2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z"],
                why: "00:00 GMT, 02:00 BST, 03:00 BST"),
        DSTCase(zone: "Europe/London", expression: "30 1 * * *", after: "2026-03-28T12:00:00Z",
                expected: ["2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"],
                why: "skipped 01:30 fires once at 02:00 BST"),
        DSTCase(zone: "Europe/London", expression: "0 1 * * *", after: "2026-03-28T12:00:00Z",
                expected: ["2026-03-29T01:00:00Z", "2026-03-30T00:00:00Z"],
                why: "skipped 01:00 fires once at 02:00 BST"),
        // Europe/London, fall back 2026-10-25 02:00 BST (01:00Z) → 01:00 GMT.
        DSTCase(zone: "Europe/London", expression: "*/30 * * * *", after: "2026-10-24T23:45:00Z",
                expected: ["2026-10-25T00:00:00Z", "2026-10-25T00:30:00Z", "2026-10-25T01:00:00Z", "2026-10-25T01:30:00Z",
                           "2026-10-25T02:00:00Z"],
                why: "01:00 and 01:30 fire in BST and again in GMT"),
        DSTCase(zone: "Europe/London", expression: "0 * * * *", after: "2026-10-24T23:30:00Z",
                expected: ["2026-10-25T00:00:00Z", "2026-10-25T01:00:00Z", "2026-10-25T02:00:00Z"],
                why: "01:00 BST, 01:00 GMT, 02:00 GMT"),
        DSTCase(zone: "Europe/London", expression: "30 1 * * *", after: "2026-10-24T12:00:00Z",
                expected: ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"],
                why: "repeated 01:30 fires once, in BST"),
        DSTCase(zone: "Europe/London", expression: "0 1 * * *", after: "2026-10-24T12:00:00Z",
                expected: ["2026-10-25T00:00:00Z", "2026-10-26T01:00:00Z"],
                why: "repeated 01:00 fires once, in BST"),
        DSTCase(zone: "Europe/London", expression: "0 1 * * *", after: "2026-10-25T00:30:00Z",
                expected: ["2026-10-26T01:00:00Z"],
                why: "starting between the two runs of 01:00"),
    ]

    @Test("DST transitions of 2026", arguments: dstCases)
    func daylightSaving(_ example: DSTCase) throws {
        let zone = try #require(TimeZone(identifier: example.zone))
        let expression = try CronExpression(example.expression)
        let times = expression.nextFireTimes(after: utc(example.after), in: zone, count: example.expected.count)
        #expect(times.map(iso) == example.expected)
    }

    @Test("agrees with a minute-by-minute oracle around DST transitions of many zones")
    func matchesMinuteOracle() throws {
        let expressions = try ["*/30 * * * *", "0 * * * *", "*/20 1 * * *", "30 2 * * *", "30 1 * * *", "0 0 * * *",
                               "15,45 0-3 * * *", "0 1,2 * * *", "59 23 * * *", "30 0 * * *"].map(CronExpression.init)
        let zones: [(String, String)] = [
            ("America/New_York", "2025-01-01T00:00:00Z"), ("Europe/London", "2025-01-01T00:00:00Z"),
            ("Australia/Lord_Howe", "2025-01-01T00:00:00Z"),  // 30-minute DST
            ("America/Sao_Paulo", "2017-06-01T00:00:00Z"),  // DST changes at midnight
            ("America/Santiago", "2025-01-01T00:00:00Z"), ("Europe/Moscow", "2011-01-01T00:00:00Z"),
            ("Pacific/Apia", "2011-06-01T00:00:00Z"),  // skipped 30 December 2011 entirely
        ]
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = utcZone
        let matchers = expressions.map(OracleMatcher.init)
        var mismatches: [String] = []
        for (name, from) in zones {
            let zone = try #require(TimeZone(identifier: name))
            var transitions: [Date] = []
            var probe = utc(from)
            while transitions.count < 4, let next = zone.nextDaylightSavingTimeTransition(after: probe) {
                transitions.append(next)
                probe = next
            }
            #expect(transitions.count >= 2, "\(name) has transitions")
            for transition in transitions {
                // Scan whole minutes from two days before to two days after; compare fires after one day before.
                let scanStart = (transition.timeIntervalSince1970 / 60).rounded(.down) * 60 - 2 * 86_400
                let compareFrom = scanStart + 86_400
                let end = scanStart + 4 * 86_400
                var oracle = [[String]](repeating: [], count: expressions.count)
                var seen: Set<Int> = []
                var previousWall: Int?
                for instant in stride(from: scanStart, to: end, by: 60) {
                    let wall = Int(instant) + zone.secondsFromGMT(for: Date(timeIntervalSince1970: instant))
                    let skipped = previousWall.map { Array(stride(from: $0 + 60, to: wall, by: 60)) } ?? []
                    let firstRun = seen.insert(wall).inserted
                    previousWall = wall
                    guard instant > compareFrom else { continue }
                    let parts = OracleParts(wall: wall, calendar: calendar)
                    let skippedParts = skipped.map { OracleParts(wall: $0, calendar: calendar) }
                    for (index, matcher) in matchers.enumerated() {
                        let matches = matcher.matches(parts)
                        let fires = matcher.followsRealTime
                            ? matches
                            : (matches && firstRun) || skippedParts.contains(where: matcher.matches)
                        if fires { oracle[index].append(iso(Date(timeIntervalSince1970: instant))) }
                    }
                }
                for (index, expression) in expressions.enumerated() {
                    let actual = expression.nextFireTimes(after: Date(timeIntervalSince1970: compareFrom), in: zone, count: 500)
                        .filter { $0.timeIntervalSince1970 < end }.map(iso)
                    if actual != oracle[index] {
                        mismatches.append("\(name) '\(expression)' around \(iso(transition)): \(actual) vs oracle \(oracle[index])")
                    }
                }
            }
        }
        #expect(mismatches.isEmpty, "\(mismatches.count) differ:\n\(mismatches.prefix(5).joined(separator: "\n"))")
    }

    /// A wall time (local seconds, read as UTC) taken apart by Calendar.
    private struct OracleParts {
        let minute, hour, day, month, weekday: Int
        init(wall: Int, calendar: Calendar) {
            let parts = calendar.dateComponents([.minute, .hour, .day, .month, .weekday], from: Date(timeIntervalSince1970: Double(wall)))
            (minute, hour, day, month, weekday) = (parts.minute!, parts.hour!, parts.day!, parts.month!, parts.weekday! - 1)
        }
    }

    /// Matching rebuilt from the public field values and the written form, independently of the engine's search.
    private struct OracleMatcher {
        let minutes, hours, days, months, weekdays: Set<Int>
        let eitherDay: Bool
        let followsRealTime: Bool
        init(_ expression: CronExpression) {
            minutes = Set(expression.values(of: .minute))
            hours = Set(expression.values(of: .hour))
            days = Set(expression.values(of: .dayOfMonth))
            months = Set(expression.values(of: .month))
            weekdays = Set(expression.values(of: .dayOfWeek))
            let fields = expression.description.split(separator: " ")
            eitherDay = !fields[2].hasPrefix("*") && !fields[4].hasPrefix("*")
            followsRealTime = fields[0].hasPrefix("*") || fields[1].hasPrefix("*")
        }
        func matches(_ parts: OracleParts) -> Bool {
            guard minutes.contains(parts.minute), hours.contains(parts.hour), months.contains(parts.month) else { return false }
            let byDay = days.contains(parts.day), byWeekday = weekdays.contains(parts.weekday)
            return eitherDay ? byDay || byWeekday : byDay && byWeekday
        }
    }

    // MARK: Reference comparison with croniter

    @Test("agrees with croniter on thousands of random expressions (UTC, Asia/Tokyo, America/Sao_Paulo)")
    func matchesCroniter() throws {
        var random = SplitMix64(seed: 0x5EED_C407)
        let zones = ["UTC", "Asia/Tokyo", "America/Sao_Paulo"]
        // Starts between 2020 and 2035: Sao Paulo has had no DST since 2019 and croniter's own DST rules differ.
        let earliest = utc("2020-01-01T00:00:00Z").timeIntervalSince1970
        let latest = utc("2035-12-31T00:00:00Z").timeIntervalSince1970
        var cases: [ReferenceCase] = []
        for _ in 0..<2000 {
            let expression = RandomCron.expression(using: &random)
            for zone in ["UTC", zones[Int.random(in: 1...2, using: &random)]] {
                var start = Double(Int64.random(in: Int64(earliest)...Int64(latest), using: &random))
                switch Int.random(in: 0..<3, using: &random) {
                case 0: start = (start / 60).rounded(.down) * 60  // exactly on a minute, often a fire time
                case 1: start += Double(Int.random(in: 1...999, using: &random)) / 1000
                default: break
                }
                cases.append(ReferenceCase(expression: expression, start: start, zone: zone, count: 5))
            }
        }

        let reference = try runReference(cases)
        try #require(reference.count == cases.count, "cron_reference.py answered \(reference.count) cases for \(cases.count)")
        let formatter = ISO8601DateFormatter()
        var mismatches: [String] = []
        for (example, answer) in zip(cases, reference) {
            guard let expected = answer.times else {
                mismatches.append("croniter failed on '\(example.expression)': \(answer.error ?? "no answer")")
                continue
            }
            let expression: CronExpression
            do { expression = try CronExpression(example.expression) } catch {
                mismatches.append("'\(example.expression)' did not parse: \(error)")
                continue
            }
            let zone = try #require(TimeZone(identifier: example.zone))
            let actual = expression.nextFireTimes(after: Date(timeIntervalSince1970: example.start), in: zone, count: example.count)
                .map(formatter.string(from:))
            if actual != expected {
                mismatches.append("'\(example.expression)' in \(example.zone) after \(example.start): \(actual) vs croniter \(expected)")
            }
        }
        #expect(mismatches.isEmpty, "\(mismatches.count) of \(cases.count) differ, e.g.:\n\(mismatches.prefix(10).joined(separator: "\n"))")
    }

    // MARK: Helpers

    let newYork = TimeZone(identifier: "America/New_York")!
    let london = TimeZone(identifier: "Europe/London")!

    private func fires(_ expression: CronExpression, after start: String, in zone: TimeZone = utcZone, count: Int) -> [String] {
        expression.nextFireTimes(after: utc(start), in: zone, count: count).map(iso)
    }

    struct ReferenceCase: Encodable {
        let expression: String
        let start: Double
        let zone: String
        let count: Int
    }

    struct ReferenceAnswer: Decodable {
        let times: [String]?
        let error: String?
    }

    /// Runs cron_reference.py once for all cases. Throws (failing the test) if python3 or croniter is unavailable.
    func runReference(_ cases: [ReferenceCase]) throws -> [ReferenceAnswer] {
        struct Request: Encodable { let cases: [ReferenceCase] }
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("cron_reference.py")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("cron-reference-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let input = directory.appendingPathComponent("input.json")
        let errors = directory.appendingPathComponent("stderr.txt")
        try JSONEncoder().encode(Request(cases: cases)).write(to: input)
        _ = FileManager.default.createFile(atPath: errors.path, contents: nil)

        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", script.path]
        process.standardInput = try FileHandle(forReadingFrom: input)
        process.standardError = try FileHandle(forWritingTo: errors)
        let output = Pipe()
        process.standardOutput = output
        do {
            try process.run()
        } catch {
            throw ReferenceFailure(message: "cannot start python3 for cron_reference.py: \(error)")
        }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            let stderr = (try? String(contentsOf: errors, encoding: .utf8)) ?? ""
            throw ReferenceFailure(message: """
                cron_reference.py (croniter) failed with status \(process.terminationStatus); the reference comparison \
                cannot run without python3 and the croniter package:
                \(stderr)
                """)
        }
        return try JSONDecoder().decode([ReferenceAnswer].self, from: data)
    }

    struct ReferenceFailure: Error, CustomStringConvertible {
        let message: String
        var description: String { message }
    }
}

/// Random valid expressions in the syntax croniter and Vixie cron read alike. Day fields are either `*` or free of a
/// leading star (croniter treats `*/10` in a day field as a restriction, Vixie cron does not), and a restricted month
/// keeps day-of-month at most 28, so every expression fires.
private enum RandomCron {
    static let months = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    static let weekdays = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]

    static func expression(using random: inout SplitMix64) -> String {
        if Int.random(in: 0..<40, using: &random) == 0 {
            return ["@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually"]
                .randomElement(using: &random)!
        }
        let minute = field(0...59, star: 30, starStep: 20, using: &random)
        let hour = field(0...23, star: 40, starStep: 15, using: &random)
        let month = field(1...12, star: 60, starStep: 10, names: { months[$0 - 1] }, using: &random)
        let dayOfMonth = field(month == "*" ? 1...31 : 1...28, star: 65, starStep: 0, using: &random)
        let dayOfWeek = field(0...7, star: 65, starStep: 0, names: { $0 < 7 ? weekdays[$0] : nil }, using: &random)
        return [minute, hour, dayOfMonth, month, dayOfWeek].joined(separator: " ")
    }

    /// `star` and `starStep` are percentages for `*` and `*/n`; otherwise a list of one to three items.
    static func field(_ bounds: ClosedRange<Int>, star: Int, starStep: Int, names: ((Int) -> String?)? = nil,
                      using random: inout SplitMix64) -> String {
        let roll = Int.random(in: 0..<100, using: &random)
        if roll < star { return "*" }
        if roll < star + starStep {
            return "*/\(Int.random(in: 2...max(2, bounds.count / 2), using: &random))"
        }
        func value(_ number: Int) -> String {
            if let names, Int.random(in: 0..<3, using: &random) == 0, let name = names(number) { return name }
            return String(number)
        }
        let itemCount = [1, 1, 1, 2, 2, 3].randomElement(using: &random)!
        return (0..<itemCount).map { _ in
            let low = Int.random(in: bounds, using: &random)
            // croniter 7 reads a range whose ends are equal (`11-11`) as `*`, so ranges here always span two values
            // or more; `equalEndsRange` pins the cron(8) meaning.
            guard low < bounds.upperBound else { return value(low) }
            switch Int.random(in: 0..<3, using: &random) {
            case 0:
                return value(low)
            case 1:
                let high = Int.random(in: (low + 1)...bounds.upperBound, using: &random)
                return "\(value(low))-\(value(high))"
            default:
                let high = Int.random(in: (low + 1)...bounds.upperBound, using: &random)
                return "\(value(low))-\(value(high))/\(Int.random(in: 1...max(1, bounds.count / 3), using: &random))"
            }
        }.joined(separator: ",")
    }
}

/// A small seeded generator, so random comparisons are the same on every run.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE5_E9B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

private func utc(_ text: String) -> Date {
    guard let date = ISO8601DateFormatter().date(from: text) else { fatalError("bad ISO-8601 date in test: \(text)") }
    return date
}

private func iso(_ date: Date) -> String {
    ISO8601DateFormatter().string(from: date)
}

private let utcZone = TimeZone(identifier: "UTC")!

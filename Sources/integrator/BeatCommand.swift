// `integrator beat`, `integrator schedule preview` and `integrator schedules list|create|delete`.
import ArgumentParser
import Foundation
import IntegratorCore

struct BeatCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "beat",
        abstract: "Fire periodic schedules and durable timers onto their queues. Needs INTEGRATOR_SECRET_KEY.",
        discussion: """
            Run as many as you like: one leads (an advisory lock on PostgreSQL) and the others stand by, taking over \
            within seconds if the leader dies. Schedule and timer edits take effect within a second, without a restart.
            """)

    @Option(help: """
        Longest sleep in seconds between looks at the database (0.05–60). Writers wake the beat at once in its own \
        process and, on PostgreSQL, through NOTIFY; this bounds how late an edit made any other way is seen.
        """)
    var pollInterval = 1.0

    @OptionGroup var options: GlobalOptions
    @OptionGroup var metrics: MetricsOptions

    func validate() throws {
        guard (0.05...60).contains(pollInterval) else { throw ValidationError("--poll-interval must be from 0.05 to 60 seconds") }
    }

    func run() async throws {
        var beatOptions = BeatOptions()
        beatOptions.pollInterval = .milliseconds(Int64(pollInterval * 1000))
        let frozen = beatOptions
        try await reportingErrors {
            try await Server.run(settings: try options.settings(overriding: metrics.overrides), parts: [.beat(frozen)])
        }
    }
}

struct ScheduleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "schedule", abstract: "Work with cron expressions.", subcommands: [PreviewCommand.self])

    struct PreviewCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "preview",
            abstract: "Print the next fire times of a cron expression.",
            discussion: """
                Times are strictly after --from (default: now), one ISO 8601 instant with its UTC offset per line. \
                DST follows Debian cron: expressions whose minute or hour starts with '*' follow real time; fixed \
                times skipped by a spring-forward fire right after the gap, and repeated by a fall-back fire once.
                """)

        @Argument(help: "A 5-field cron expression or a macro such as @daily, in quotes.")
        var expression: String

        @Option(name: .customLong("tz"), help: "IANA time zone the expression is read in.")
        var timeZone = "UTC"

        @Option(help: "How many fire times to print (1–1000).")
        var count = 10

        @Option(help: "Start after this ISO 8601 instant, e.g. 2026-03-08T00:00:00-05:00.")
        var from: String?

        @Flag(help: "Print a JSON array instead of lines.")
        var json = false

        func run() async throws {
            try await reportingErrors {
                let parsed: CronExpression
                do throws(CronParseError) {
                    parsed = try CronExpression(expression)
                } catch {
                    throw ValidationFailure([FieldIssue(field: "expression", message: error.debugDescription)])
                }
                guard let zone = TimeZone(identifier: timeZone) else {
                    throw ValidationFailure([
                        FieldIssue(field: "--tz", message: "unknown time zone '\(timeZone)'; use an IANA name such as America/Sao_Paulo")
                    ])
                }
                guard SchedulesService.previewCounts.contains(count) else {
                    throw ValidationFailure([FieldIssue(field: "--count", message: "must be from 1 to 1000")])
                }
                var start = Date()
                if let from {
                    guard let date = Date(iso8601: from) else {
                        throw ValidationFailure([
                            FieldIssue(field: "--from", message: "must be an ISO 8601 date-time with a zone, such as 2026-11-23T12:00:00Z")
                        ])
                    }
                    start = date
                }
                let lines = parsed.nextFireTimes(after: start, in: zone, count: count).map { $0.iso8601(in: zone) }
                if json {
                    printNow(JSONValue.array(lines.map(JSONValue.string)).encodedString())
                } else {
                    printNow(lines.joined(separator: "\n"))
                }
            }
        }
    }
}

struct SchedulesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "schedules", abstract: "List, create and delete schedules (for admins who script).",
        subcommands: [ListCommand.self, CreateCommand.self, DeleteCommand.self])

    struct ListCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "List schedules.")

        @Flag(help: "Print JSON, one schedule per line.")
        var json = false

        @OptionGroup var options: GlobalOptions

        func run() async throws {
            let json = self.json
            try await reportingErrors {
                try await withRuntime(try options.settings()) { runtime in
                    var page = PageRequest(limit: PageRequest.maximumLimit)
                    while true {
                        let listed = try await runtime.schedules.list(enabled: nil, integrationID: nil, page: page)
                        for schedule in listed.items {
                            printNow(json ? SchedulesCommand.describeJSON(schedule) : SchedulesCommand.describe(schedule))
                        }
                        guard let cursor = listed.nextCursor, let after = PageRequest.decodeCursor(cursor) else { break }
                        page.after = after
                    }
                }
            }
        }
    }

    struct CreateCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "create", abstract: "Create a schedule.",
            discussion: """
                Give --task (with --args) or --integration, and one of --every, --cron or --at. Example: \
                integrator schedules create --name nightly --integration <id> --cron "0 3 * * *" --tz Europe/London
                """)

        @Option(help: "Unique name.") var name: String
        @Option(help: "Task name, such as core.noop.") var task: String?
        @Option(help: "Task arguments as a JSON object.") var args: String?
        @Option(help: "Run this integration's fetch (id).") var integration: String?
        @Option(help: "Fire every N seconds.") var every: Int?
        @Option(help: "Fire on this cron expression.") var cron: String?
        @Option(name: .customLong("tz"), help: "Time zone of --cron (default UTC).") var timeZone: String?
        @Option(help: "Fire once at this ISO 8601 instant.") var at: String?
        @Option(help: "Queue (default: default, or the integration's).") var queue: String?
        @Option(help: "Priority 0–9 (9 first).") var priority: Int?
        @Option(help: "skip, run_once (default) or run_all.") var misfire: String?
        @Option(help: "allow, or skip (default).") var overlap: String?
        @Flag(help: "Create it disabled.") var disabled = false
        @Flag(help: "Disable it after its first fire.") var oneOff = false

        @OptionGroup var options: GlobalOptions

        func run() async throws {
            let body = try body()
            try await reportingErrors {
                try await withRuntime(try options.settings()) { runtime in
                    let schedule = try await runtime.schedules.create(body)
                    printNow(SchedulesCommand.describe(schedule))
                }
            }
        }

        private func body() throws -> JSONValue {
            var body: [String: JSONValue] = ["name": .string(name)]
            body["task"] = task.map(JSONValue.string)
            if let args {
                guard let parsed = try? JSONValue.parse(Array(args.utf8)) else { throw ValidationError("--args is not valid JSON") }
                body["args"] = parsed
            }
            body["integration"] = integration.map(JSONValue.string)
            if let every { body["interval"] = ["every": .number(Double(every))] }
            if let cron {
                body["crontab"] = .object([
                    "expression": .string(cron), "timezone": .string(timeZone ?? "UTC"),
                ])
            }
            if let at { body["clocked"] = ["at": .string(at)] }
            body["queue"] = queue.map(JSONValue.string)
            body["priority"] = priority.map { .number(Double($0)) }
            body["misfire"] = misfire.map(JSONValue.string)
            body["overlap"] = overlap.map(JSONValue.string)
            if disabled { body["enabled"] = false }
            if oneOff { body["one_off"] = true }
            return .object(body)
        }
    }

    struct DeleteCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "delete", abstract: "Delete a schedule by id or name.")

        @Argument(help: "The schedule's id or name.") var schedule: String

        @OptionGroup var options: GlobalOptions

        func run() async throws {
            let schedule = self.schedule
            try await reportingErrors {
                try await withRuntime(try options.settings()) { runtime in
                    let found = try await runtime.schedules.get(idOrName: schedule)
                    try await runtime.schedules.delete(id: found.id)
                    printNow("Deleted schedule \(found.name) (\(found.id)).")
                }
            }
        }
    }

    /// One line: id, name, timing, state and next fire time.
    static func describe(_ schedule: Schedule) -> String {
        let timing: String
        switch schedule.timing {
        case .interval(let seconds): timing = "every \(seconds)s"
        case .crontab(let expression, let zone): timing = "cron '\(expression)' \(zone.identifier)"
        case .clocked(let at): timing = "at \(at.iso8601(in: TimeZone(identifier: "UTC")!))"
        }
        let next = schedule.nextRunAt.map { $0.iso8601(in: schedule.timing.displayZone) } ?? "-"
        return "\(schedule.id)  \(schedule.name)  \(schedule.taskName)  \(timing)  \(schedule.enabled ? "enabled" : "disabled")  next: \(next)"
    }

    static func describeJSON(_ schedule: Schedule) -> String {
        var object: [String: JSONValue] = [
            "id": .string(schedule.id), "name": .string(schedule.name), "task": .string(schedule.taskName),
            "enabled": .bool(schedule.enabled), "kind": .string(schedule.timing.kind),
            "total_run_count": .number(Double(schedule.totalRunCount)),
        ]
        object["next_run_at"] = schedule.nextRunAt.map { .string($0.iso8601(in: schedule.timing.displayZone)) } ?? .null
        return JSONValue.object(object).encodedString()
    }
}

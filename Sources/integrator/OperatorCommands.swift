// Commands for operators of a fleet: `integrator status`, `integrator tasks retry|revoke`, `integrator queues purge`,
// `integrator backup`.
import ArgumentParser
import Foundation
import IntegratorCore

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the beat leader, the queues and the live workers of the fleet on this database.",
        discussion: """
            Reads the database (and the broker for queue depths). A beat that has not reported for 30 seconds is \
            reported as missing: schedules, retries and timers are then not firing.
            """)

    @Flag(help: "Print one JSON object instead of tables.")
    var json = false

    @OptionGroup var options: GlobalOptions

    func run() async throws {
        let json = self.json
        try await reportingErrors {
            try await withRuntime(try options.settings()) { runtime in
                let now = runtime.clock.now()
                let beats = BeatStatusStore(database: runtime.database)
                let beat = try await beats.current()
                let silence = try await beats.silence(at: now)
                let queues = try await runtime.tasks.queues().sorted { $0.queue < $1.queue }
                let workers = try await runtime.tasks.workers().sorted { $0.id < $1.id }
                if json {
                    printNow(FleetStatus.json(beat: beat, silence: silence, queues: queues, workers: workers, now: now).encodedString())
                } else {
                    printNow(FleetStatus.text(beat: beat, silence: silence, queues: queues, workers: workers, now: now))
                }
            }
        }
    }
}

/// How `integrator status` shows the fleet.
enum FleetStatus {
    static func json(beat: BeatStatus?, silence: String?, queues: [QueueStats], workers: [WorkerInfo], now: Date) -> JSONValue {
        var beatObject: [String: JSONValue] = ["state": .string(silence == nil ? "leading" : "missing")]
        if let beat {
            beatObject["leader"] = .string(beat.holder)
            beatObject["led_since"] = .string(beat.ledSince.apiString)
            beatObject["last_seen"] = .string(beat.lastSeen.apiString)
        }
        return [
            "beat": .object(beatObject),
            "queues": .array(
                queues.map {
                    [
                        "queue": .string($0.queue), "ready": .number(Double($0.ready)), "delayed": .number(Double($0.delayed)),
                        "in_flight": .number(Double($0.inFlight)), "dead": .number(Double($0.dead)),
                    ]
                }),
            "workers": .array(
                workers.map {
                    [
                        "id": .string($0.id), "host": .string($0.host), "queues": .array($0.queues.map(JSONValue.string)),
                        "slots": .number(Double($0.concurrency)), "busy": .number(Double($0.busy)),
                        "heartbeat_age_s": .number(max(0, now.timeIntervalSince($0.lastSeen)).rounded()),
                    ]
                }),
            "warnings": .array(silence.map { [JSONValue.string($0)] } ?? []),
        ]
    }

    static func text(beat: BeatStatus?, silence: String?, queues: [QueueStats], workers: [WorkerInfo], now: Date) -> String {
        var lines: [String] = []
        if let silence {
            lines.append("beat: MISSING — \(silence)")
        } else if let beat {
            lines.append("beat: \(beat.holder) leads since \(beat.ledSince.apiString) (last report \(age(beat.lastSeen, now)) ago)")
        }
        lines.append("")
        lines += table(
            ["QUEUE", "READY", "DELAYED", "IN FLIGHT", "DEAD"],
            queues.map { [$0.queue, "\($0.ready)", "\($0.delayed)", "\($0.inFlight)", "\($0.dead)"] }, empty: "no queues")
        lines.append("")
        lines += table(
            ["WORKER", "HOST", "QUEUES", "SLOTS", "BUSY", "HEARTBEAT"],
            workers.map { [$0.id, $0.host, $0.queues.joined(separator: ","), "\($0.concurrency)", "\($0.busy)", age($0.lastSeen, now) + " ago"] },
            empty: "no live workers (none has reported in the last 30 s)")
        return lines.joined(separator: "\n")
    }

    private static func age(_ date: Date, _ now: Date) -> String { "\(Int(max(0, now.timeIntervalSince(date)).rounded())) s" }

    /// Left-aligned columns, two spaces apart.
    private static func table(_ header: [String], _ rows: [[String]], empty: String) -> [String] {
        guard !rows.isEmpty else { return [header.joined(separator: "  "), "(\(empty))"] }
        let widths = header.indices.map { column in ([header] + rows).map { $0[column].count }.max() ?? 0 }
        return ([header] + rows).map { row in
            row.enumerated().map { column, cell in
                column == row.count - 1 ? cell : cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }
    }
}

struct TasksCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tasks", abstract: "Retry or revoke a task by id.", subcommands: [RetryCommand.self, RevokeCommand.self])

    struct RetryCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "retry", abstract: "Run a failed or dead task again, as a new attempt with the same id.")

        @Argument(help: "The task's id.") var id: String
        @OptionGroup var options: GlobalOptions

        func run() async throws {
            let id = self.id
            try await reportingErrors {
                try await withRuntime(try options.settings()) { runtime in
                    let run = try await runtime.tasks.retry(id: id)
                    printNow("Task \(run.id) (\(run.name)) queued again as attempt \(run.attempt) on queue \(run.queue).")
                }
            }
        }
    }

    struct RevokeCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "revoke", abstract: "Cancel a task that has not started: it will not run.")

        @Argument(help: "The task's id.") var id: String
        @OptionGroup var options: GlobalOptions

        func run() async throws {
            let id = self.id
            try await reportingErrors {
                try await withRuntime(try options.settings()) { runtime in
                    try await runtime.tasks.revoke(id: id)
                    printNow("Task \(id) revoked.")
                }
            }
        }
    }
}

struct QueuesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "queues", abstract: "Act on a whole queue.", subcommands: [PurgeCommand.self])

    struct PurgeCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "purge",
            abstract: "Drop every task of a queue that has not started.",
            discussion: """
                Waiting messages (ready, delayed, retries not yet due, and those still in the outbox) leave the broker, \
                and their runs are marked revoked, so a copy a worker receives later is skipped. Tasks running now and \
                dead letters stay. Without --yes it only says what it would drop.
                """)

        @Argument(help: "The queue's name.") var queue: String
        @Flag(help: "Really drop the tasks.") var yes = false
        @OptionGroup var options: GlobalOptions

        func run() async throws {
            let (queue, confirmed) = (self.queue, yes)
            try await reportingErrors {
                try await withRuntime(try options.settings()) { runtime in
                    guard confirmed else {
                        let stats = try await runtime.tasks.queue(named: queue)
                        let waiting = stats.map { "\($0.ready) ready and \($0.delayed) delayed" } ?? "no"
                        FileHandle.standardError.write(
                            Data("integrator: queue '\(queue)' holds \(waiting) tasks; run again with --yes to drop every task of it that has not started\n".utf8))
                        throw ExitCode(2)
                    }
                    let purge = try await runtime.tasks.purge(queue: queue)
                    printNow("Queue \(purge.queue) purged: \(purge.messages) messages dropped, \(purge.revoked) runs revoked.")
                }
            }
        }
    }
}

struct BackupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Copy the embedded SQLite store to a file, consistently, while it is in use.",
        discussion: """
            Uses SQLite's VACUUM INTO: a consistent snapshot even while integrator dev, workers or the beat write. The \
            copy is a complete database; to restore it, stop the processes and put it in place of the old file. For \
            PostgreSQL use pg_dump (see deploy/README.md). Keep INTEGRATOR_SECRET_KEY with the backup: the stored \
            secrets cannot be opened without it.
            """)

    @Argument(help: "Where to write the copy; must not exist yet.") var file: String
    @OptionGroup var options: GlobalOptions

    func run() async throws {
        let file = self.file
        try await reportingErrors {
            let settings = try options.settings()
            guard case .sqlite = settings.database else {
                throw ValidationFailure([
                    FieldIssue(
                        field: "INTEGRATOR_DATABASE_URL",
                        message: "is a PostgreSQL database; back it up with pg_dump --format=custom --file <file> \"$INTEGRATOR_DATABASE_URL\"")
                ])
            }
            let target = URL(fileURLWithPath: file).standardizedFileURL
            guard !FileManager.default.fileExists(atPath: target.path) else {
                throw ValidationFailure([FieldIssue(field: "file", message: "\(target.path) exists; choose a new file")])
            }
            try await withRuntime(settings) { runtime in
                try await runtime.database.withSQL { sql in
                    try await sql.raw("VACUUM INTO \(bind: target.path)").run()
                }
            }
            printNow("Backed up to \(target.path).")
        }
    }
}

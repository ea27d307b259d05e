// `integrator bench beat`: a beat over many schedules and timers — its memory, idle CPU, restart time and lateness.
import ArgumentParser
import Foundation
import IntegratorCore
import Logging
import Plugins
import Synchronization

struct BeatBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "beat",
        abstract: "Load schedules and timers, then measure a beat process and timer lateness.",
        discussion: """
            Applies migrations, then (1) stores --schedules enabled periodic schedules and --timers pending timers, \
            none due during the benchmark; (2) starts `integrator beat` as a child process and reports how long it \
            took to lead and fire a timer that was due when it started (the restart time), its resident memory and \
            its CPU use over --idle-seconds with nothing due; (3) stops it, then runs a beat in this process while \
            --rate timers per second come due for --seconds seconds (created continuously, about a second ahead), and reports lateness (publish time minus due \
            time) p50, p99 and max. Publish time is the commit that records the run and queues the message. \
            Point it at a database of its own (--database-url); the loaded rows stay unless --cleanup.
            """)

    @Option(help: "Enabled periodic schedules to load.") var schedules = 100_000
    @Option(help: "Pending timers to load (due after the benchmark).") var timers = 1_000_000
    @Option(help: "Seconds to watch the idle beat process.") var idleSeconds = 20
    @Option(help: "Timers per second coming due in the lateness phase.") var rate = 1000
    @Option(help: "Seconds the lateness phase lasts.") var seconds = 30
    @Flag(help: "Skip loading (reuse what an earlier run loaded).") var skipLoad = false
    @Flag(help: "Delete the loaded schedules and timers at the end.") var cleanup = false
    @Flag(help: "Print one JSON object instead of text.") var json = false

    @OptionGroup var options: GlobalOptions

    func validate() throws {
        guard (0...10_000_000).contains(schedules), (0...100_000_000).contains(timers) else {
            throw ValidationError("--schedules and --timers must be from 0 to 10000000 / 100000000")
        }
        guard (1...100_000).contains(rate), (1...3600).contains(seconds), (1...3600).contains(idleSeconds) else {
            throw ValidationError("--rate must be 1–100000, --seconds and --idle-seconds 1–3600")
        }
    }

    func run() async throws {
        try await reportingErrors {
            var settings = try options.settings()
            // The beat process this starts reads the same database with the same key.
            var child = ProcessInfo.processInfo.environment
            child["INTEGRATOR_SECRET_KEY"] = try BenchCommand.useEphemeralKeyIfUnset(&settings) ?? child["INTEGRATOR_SECRET_KEY"]
            child["INTEGRATOR_DATABASE_URL"] = options.databaseURL ?? child["INTEGRATOR_DATABASE_URL"]
            let childEnvironment = child
            let plan = self
            let report = try await withRuntime(settings, migrate: true) { runtime in
                try await plan.measure(runtime, childEnvironment: childEnvironment)
            }
            print(json ? report.json.encodedString() : report.text)
        }
    }

    private func measure(_ runtime: Runtime, childEnvironment: [String: String]) async throws -> BeatBenchReport {
        var report = BeatBenchReport(database: runtime.database.engine.rawValue, schedules: schedules, timers: timers)
        let farAway = Date().addingTimeInterval(7 * 86_400)
        if !skipLoad {
            let started = ContinuousClock.now
            try await loadSchedules(runtime)
            try await loadTimers(runtime, after: farAway)
            report.loadSeconds = (ContinuousClock.now - started).seconds
        }
        try await measureProcess(runtime, environment: childEnvironment, into: &report)
        try await measureLateness(runtime, into: &report)
        if cleanup {
            try await runtime.database.withSQL { sql in
                try await sql.raw("DELETE FROM timers WHERE id LIKE 'bench-%'").run()
                try await sql.raw("DELETE FROM schedules WHERE name LIKE 'bench-%'").run()
            }
        }
        return report
    }

    /// Interval and crontab schedules whose fire times all lie after the benchmark.
    private func loadSchedules(_ runtime: Runtime) async throws {
        let start = Date().addingTimeInterval(3 * 86_400)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for lane in 0..<8 {
                group.addTask {
                    for index in stride(from: lane, to: schedules, by: 8) {
                        var body: [String: JSONValue] = [
                            "name": .string("bench-\(index)"), "task": "core.noop", "queue": "bench-beat",
                            "start_time": .string(start.addingTimeInterval(Double(index)).formatted(.iso8601)),
                        ]
                        if index.isMultiple(of: 2) {
                            body["interval"] = ["every": .number(Double(3600 + index % 86_400))]
                        } else {
                            body["crontab"] = .object([
                                "expression": .string("\(index % 60) \(index % 24) * * \(index % 7)"),
                                "timezone": index.isMultiple(of: 3) ? "America/Sao_Paulo" : "Europe/London",
                            ])
                        }
                        _ = try await runtime.schedules.create(.object(body))
                    }
                }
            }
            try await group.waitForAll()
        }
    }

    private func loadTimers(_ runtime: Runtime, after start: Date) async throws {
        let now = Date()
        let batch = 10_000
        for first in stride(from: 0, to: timers, by: batch) {
            let chunk = (first..<min(first + batch, timers)).map { index in
                DurableTimer(
                    id: "bench-\(index)", dueAt: start.addingTimeInterval(Double(index) / 100),
                    message: TaskMessage(name: "core.noop", queue: "bench-beat", enqueuedAt: now))
            }
            try await runtime.timers.upsert(contentsOf: chunk, at: now)
        }
    }

    /// Starts `integrator beat`, times how long until it fired a timer due at its start, then watches it idle.
    private func measureProcess(
        _ runtime: Runtime, environment: [String: String], into report: inout BeatBenchReport
    ) async throws {
        let sentinel = TaskMessage(name: "core.noop", queue: "bench-beat-sentinel", enqueuedAt: Date())
        try await runtime.timers.upsert(DurableTimer(id: "bench-sentinel-\(sentinel.id)", dueAt: Date(), message: sentinel), at: Date())
        let process = Process()
        process.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL
        process.arguments = ["beat", "--log-level", "warning"]
        process.environment = environment
        let started = ContinuousClock.now
        try process.run()
        defer {
            if process.isRunning {
                process.terminate()
                process.waitUntilExit()
            }
        }
        while try await runtime.runs.find(id: sentinel.id) == nil {
            guard process.isRunning else { throw BenchFailure("the beat process exited with status \(process.terminationStatus)") }
            guard ContinuousClock.now - started < .seconds(120) else { throw BenchFailure("the beat did not fire within 120 s") }
            try await Task.sleep(for: .milliseconds(20))
        }
        report.restartSeconds = (ContinuousClock.now - started).seconds
        // Let start-up work settle, then measure a quiet stretch.
        try await Task.sleep(for: .seconds(2))
        let pid = process.processIdentifier
        let cpuBefore = ProcessStats.cpuSeconds(pid)
        let idleStart = ContinuousClock.now
        try await Task.sleep(for: .seconds(idleSeconds))
        let elapsed = (ContinuousClock.now - idleStart).seconds
        report.idleCPUPercent = (ProcessStats.cpuSeconds(pid) - cpuBefore) / elapsed * 100
        report.beatRSSMiB = ProcessStats.residentMiB(pid)
        process.terminate()
        process.waitUntilExit()
    }

    /// Runs a beat here while `rate` timers a second come due; records publish minus due for each. Timers are
    /// created as they would be in production: continuously, each batch about a second before it is due.
    private func measureLateness(_ runtime: Runtime, into report: inout BeatBenchReport) async throws {
        let total = rate * seconds
        let lateness = Mutex<[Double]>([])
        let beat = runtime.makeBeat(identity: "bench-beat") { dueTimes, publishedAt in
            lateness.withLock { values in values.append(contentsOf: dueTimes.map { publishedAt.timeIntervalSince($0) * 1000 }) }
        }
        let running = Task { try await beat.run() }
        defer { running.cancel() }
        let ticks = seconds * 10
        let begin = Date().addingTimeInterval(1.5)
        for tick in 0..<ticks {
            let first = total * tick / ticks
            let last = total * (tick + 1) / ticks
            let now = Date()
            let batch = (first..<last).map { index in
                DurableTimer(
                    id: "bench-late-\(Identifier.make())", dueAt: begin.addingTimeInterval(Double(index) / Double(rate)),
                    message: TaskMessage(name: "core.noop", queue: "bench-beat-late", enqueuedAt: now))
            }
            try await runtime.timers.upsert(contentsOf: batch, at: now)
            // Stay about a second ahead of the due times.
            let next = begin.addingTimeInterval(Double(tick + 1) / 10 - 1)
            let wait = next.timeIntervalSinceNow
            if wait > 0 { try await Task.sleep(for: .milliseconds(Int64(wait * 1000))) }
        }
        let deadline = ContinuousClock.now + .seconds(60)
        while lateness.withLock({ $0.count }) < total, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
        }
        running.cancel()
        _ = try? await running.value
        let values = lateness.withLock { $0 }.sorted()
        guard values.count == total else {
            throw BenchFailure("only \(values.count) of \(total) timers fired within a minute of the last due time")
        }
        report.latenessTimers = total
        report.latenessRate = rate
        report.latenessP50 = QueueBenchPlan.percentile(values, 0.50)
        report.latenessP99 = QueueBenchPlan.percentile(values, 0.99)
        report.latenessMax = values.last ?? 0
    }
}

/// Another process's CPU time and memory, from /proc.
enum ProcessStats {
    /// User plus system CPU seconds.
    static func cpuSeconds(_ pid: Int32) -> Double {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return 0 }
        // Fields after the command name: state is field 3, utime 14, stime 15.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// `VmRSS` in MiB.
    static func residentMiB(_ pid: Int32) -> Double {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return 0 }
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            let kib = line.split(separator: " ").dropFirst().first.flatMap { Double($0) } ?? 0
            return kib / 1024
        }
        return 0
    }
}

struct BeatBenchReport: Sendable {
    var database: String
    var schedules: Int
    var timers: Int
    var loadSeconds = 0.0
    var restartSeconds = 0.0
    var beatRSSMiB = 0.0
    var idleCPUPercent = 0.0
    var latenessTimers = 0
    var latenessRate = 0
    var latenessP50 = 0.0
    var latenessP99 = 0.0
    var latenessMax = 0.0

    var text: String {
        return """
            beat on \(database): \(schedules) schedules, \(timers) pending timers (loaded in \(BenchNumber.text(loadSeconds, 1)) s)
              beat process  restart to first fire \(BenchNumber.text(restartSeconds, 2)) s, RSS \(BenchNumber.text(beatRSSMiB, 1)) MiB, idle CPU \(BenchNumber.text(idleCPUPercent, 2)) % of a core
              lateness      \(latenessTimers) timers at \(latenessRate)/s: p50 \(BenchNumber.text(latenessP50, 1)) ms, p99 \(BenchNumber.text(latenessP99, 1)) ms, max \(BenchNumber.text(latenessMax, 1)) ms
            """
    }

    var json: JSONValue {
        return .object([
            "database": .string(database), "schedules": .number(Double(schedules)), "timers": .number(Double(timers)),
            "load_s": BenchNumber.json(loadSeconds, 2), "restart_s": BenchNumber.json(restartSeconds, 2), "beat_rss_mib": BenchNumber.json(beatRSSMiB, 2),
            "idle_cpu_percent": BenchNumber.json(idleCPUPercent, 2), "lateness_timers": .number(Double(latenessTimers)),
            "lateness_rate": .number(Double(latenessRate)), "lateness_p50_ms": BenchNumber.json(latenessP50, 2),
            "lateness_p99_ms": BenchNumber.json(latenessP99, 2), "lateness_max_ms": BenchNumber.json(latenessMax, 2),
        ])
    }
}

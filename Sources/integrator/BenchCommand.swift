// `integrator bench queue`: publish no-op tasks and measure how fast one in-process worker drains them.
import ArgumentParser
import Foundation
import IntegratorCore
import Logging
import Plugins
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Measure the engine on this machine.", subcommands: [QueueBench.self, FetchBench.self, BeatBench.self, WebhooksBench.self, ScheduledMessagesBench.self, BlipBench.self, ChatBufferBench.self, AdminBench.self])

    /// Benchmarks store no secrets, so without INTEGRATOR_SECRET_KEY they run on a throwaway key; returns it (encoded)
    /// when one was made, for child processes that must share it.
    @discardableResult
    static func useEphemeralKeyIfUnset(_ settings: inout Settings) throws -> String? {
        guard settings.secretKeys == nil else { return nil }
        let key = SecretKeyRing.generateEncodedKey()
        settings.secretKeys = try SecretKeyRing(parsing: key, variable: "INTEGRATOR_SECRET_KEY (ephemeral)")
        return key
    }
}

/// How the benchmarks' reports show numbers.
enum BenchNumber {
    /// As text with `digits` decimals.
    static func text(_ value: Double, _ digits: Int = 0) -> String { String(format: "%.\(digits)f", value) }

    /// As a JSON number rounded to `digits` decimals.
    static func json(_ value: Double, _ digits: Double = 1) -> JSONValue {
        let scale = pow(10, digits)
        return .number((value * scale).rounded() / scale)
    }
}

/// What the queue and webhooks benchmarks share: how long to wait, which broker, and the output format.
struct BenchRunOptions: ParsableArguments {
    @Option(help: "Seconds to wait for the last task of the run before giving up.")
    var timeout = 600

    @Option(name: .customLong("broker-url"), help: "Overrides INTEGRATOR_BROKER_URL: sql or amqp://USER:PASSWORD@HOST:PORT/VHOST.")
    var brokerURL: String?

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    func validate() throws {
        guard timeout >= 1 else { throw ValidationError("--timeout must be at least 1 second") }
    }
}

struct QueueBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "queue",
        abstract: "Publish no-op tasks and measure how fast one in-process worker drains them.",
        discussion: """
            Applies migrations, starts one worker on a queue of its own (bench-…), and has --publishers concurrent \
            publishers enqueue --tasks core.noop tasks in total with priorities 0–9. Reports the publish rate, the \
            drain rate (tasks from the first enqueue until the last run was recorded succeeded), the latency from \
            enqueue to recorded outcome (p50, p99) and the process's peak resident memory. With --prefill the worker \
            starts only after every task was published. Uses a throwaway secret \
            key when INTEGRATOR_SECRET_KEY is not set (the benchmark stores no secrets). Its runs stay in task_runs, \
            so point it at a database of its own (--database-url).
            """)

    @Option(help: "How many tasks to publish in total.")
    var tasks = 10_000

    @Option(help: "How many tasks the worker runs at once.")
    var concurrency = 16

    @Option(help: "How many concurrent publishers share the tasks.")
    var publishers = 4

    @Option(help: """
        How many tasks each publisher hands over per call: 1 enqueues one task at a time (like POST /api/v1/tasks); \
        more uses TasksService.enqueue(contentsOf:), one write for the batch's runs and, on RabbitMQ, its confirms \
        awaited together.
        """)
    var batch = 1

    @Flag(help: """
        Publish every task first and start the worker only then; the drain rate counts from the first to the \
        last recorded success, so it measures the worker alone.
        """)
    var prefill = false

    @OptionGroup var common: BenchRunOptions

    @OptionGroup var options: GlobalOptions

    func validate() throws {
        guard (1...10_000_000).contains(tasks) else { throw ValidationError("--tasks must be from 1 to 10000000") }
        guard (1...1000).contains(concurrency) else { throw ValidationError("--concurrency must be from 1 to 1000") }
        guard (1...256).contains(publishers) else { throw ValidationError("--publishers must be from 1 to 256") }
        guard (1...1000).contains(batch) else { throw ValidationError("--batch must be from 1 to 1000") }
    }

    func run() async throws {
        try await reportingErrors {
            var settings = try options.settings(overriding: common.brokerURL.map { ["INTEGRATOR_BROKER_URL": $0] } ?? [:])
            try BenchCommand.useEphemeralKeyIfUnset(&settings)
            let plan = QueueBenchPlan(
                tasks: tasks, concurrency: concurrency, publishers: publishers, batch: batch, prefill: prefill, timeoutSeconds: common.timeout)
            let report = try await withRuntime(settings, migrate: true) { try await plan.run(on: $0) }
            print(common.json ? report.json.encodedString() : report.text)
        }
    }
}

/// What one benchmark run does.
struct QueueBenchPlan: Sendable {
    var tasks: Int
    var concurrency: Int
    var publishers: Int
    var batch: Int
    var prefill: Bool
    var timeoutSeconds: Int

    func run(on runtime: Runtime) async throws -> QueueBenchReport {
        let queue = "bench-" + Identifier.make().suffix(12).lowercased()
        let recorded = RecordedOutcomes()
        if prefill {
            let publishSeconds = try await publish(runtime, queue: queue)
            return try await withWorker(runtime, queue: queue, recorded: recorded) {
                try await collect(runtime, queue: queue, recorded: recorded, publishSeconds: publishSeconds)
            }
        }
        return try await withWorker(runtime, queue: queue, recorded: recorded) {
            let publishSeconds = try await publish(runtime, queue: queue)
            return try await collect(runtime, queue: queue, recorded: recorded, publishSeconds: publishSeconds)
        }
    }

    /// Runs `body` while one worker consumes `queue`, then stops the worker.
    private func withWorker<T: Sendable>(
        _ runtime: Runtime, queue: String, recorded: RecordedOutcomes, _ body: @Sendable () async throws -> T
    ) async throws -> T {
        let worker = runtime.makeWorker(WorkerOptions(queues: [queue], concurrency: concurrency), onRecorded: recorded.add)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await worker.run() }
            do {
                let value = try await body()
                group.cancelAll()
                do { try await group.waitForAll() } catch is CancellationError {}
                return value
            } catch {
                group.cancelAll()
                throw error
            }
        }
    }

    /// Each publisher enqueues its share, one task (or one --batch) after another, priorities cycling 0–9. Returns the
    /// seconds taken.
    private func publish(_ runtime: Runtime, queue: String) async throws -> Double {
        let clock = ContinuousClock()
        let publishStart = clock.now
        let batch = self.batch
        try await withThrowingTaskGroup(of: Void.self) { group in
            for publisher in 0..<publishers {
                let indices = Array(stride(from: publisher, to: tasks, by: publishers))
                group.addTask {
                    for start in stride(from: 0, to: indices.count, by: batch) {
                        let messages = indices[start..<min(start + batch, indices.count)].map { index in
                            TaskMessage(name: "core.noop", queue: queue, priority: index % 10, enqueuedAt: runtime.clock.now())
                        }
                        if let message = messages.first, messages.count == 1 {
                            try await runtime.tasks.enqueue(message)
                        } else {
                            try await runtime.tasks.enqueue(contentsOf: messages)
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        return (clock.now - publishStart).seconds
    }

    /// Waits until the worker reports every task recorded succeeded, then reads the runs back for the figures. The
    /// worker's own reports are counted rather than the database polled, so waiting adds no load to what is measured.
    private func collect(
        _ runtime: Runtime, queue: String, recorded: RecordedOutcomes, publishSeconds: Double
    ) async throws -> QueueBenchReport {
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(timeoutSeconds)
        while true {
            let (succeeded, broken) = recorded.counts
            if succeeded >= tasks { break }
            if let broken {
                throw BenchFailure(
                    "a benchmark task was recorded \(broken.rawValue) (see the log and task_runs); \(succeeded) of \(tasks) had succeeded")
            }
            if clock.now >= deadline {
                throw BenchFailure(
                    "timed out after \(timeoutSeconds) s: \(succeeded) of \(tasks) tasks were recorded succeeded; "
                        + "is the broker reachable and the worker running?")
            }
            try await Task.sleep(for: .milliseconds(20))
        }

        // Read every run of this queue back: latency per task, the last recorded outcome.
        var latencies: [Double] = []
        latencies.reserveCapacity(tasks)
        var firstEnqueued = Date.distantFuture
        var firstFinished = Date.distantFuture
        var lastFinished = Date.distantPast
        var succeeded = 0
        var after: String?
        repeat {
            let page = try await runtime.runs.list(
                TaskRunFilter(queue: queue), page: PageRequest(limit: PageRequest.maximumLimit, after: after))
            for run in page.items {
                firstEnqueued = min(firstEnqueued, run.enqueuedAt)
                guard run.state == .succeeded, let finished = run.finishedAt else { continue }
                succeeded += 1
                firstFinished = min(firstFinished, finished)
                lastFinished = max(lastFinished, finished)
                latencies.append(finished.timeIntervalSince(run.enqueuedAt) * 1000)
            }
            after = page.nextCursor.flatMap(PageRequest.decodeCursor)
        } while after != nil
        guard succeeded == tasks else {
            throw BenchFailure("expected \(tasks) succeeded runs on queue \(queue), found \(succeeded)")
        }
        latencies.sort()
        // Concurrent: from the first enqueue. Prefilled: from the first success, so the worker's start is not counted
        // (tasks - 1 intervals then, see QueueBenchReport.drainRate).
        let drainSeconds = max(lastFinished.timeIntervalSince(prefill ? firstFinished : firstEnqueued), 1e-9)
        return QueueBenchReport(
            broker: Self.brokerName(runtime.settings.broker), database: runtime.database.engine.rawValue, queue: queue,
            tasks: tasks, concurrency: concurrency, publishers: publishers, batch: batch, prefill: prefill,
            publishSeconds: publishSeconds, drainSeconds: drainSeconds,
            latencyP50: Self.percentile(latencies, 0.50), latencyP99: Self.percentile(latencies, 0.99),
            peakRSSMiB: Self.peakResidentMiB())
    }

    static func brokerName(_ broker: BrokerLocation) -> String {
        switch broker {
        case .sql: "sql"
        case .amqp: "amqp"
        }
    }

    /// Nearest-rank percentile of sorted values.
    static func percentile(_ sorted: [Double], _ fraction: Double) -> Double {
        guard !sorted.isEmpty else { return 0 }
        let rank = Int((fraction * Double(sorted.count)).rounded(.up))
        return sorted[min(sorted.count, max(1, rank)) - 1]
    }

    /// The most resident memory this process has used, in MiB.
    static func peakResidentMiB() -> Double {
        var usage = rusage()
        guard getrusage(Int32(RUSAGE_SELF.rawValue), &usage) == 0 else { return 0 }
        #if canImport(Darwin)
        return Double(usage.ru_maxrss) / 1_048_576  // bytes
        #else
        return Double(usage.ru_maxrss) / 1024  // KiB
        #endif
    }
}

/// The figures of one run.
struct QueueBenchReport: Sendable {
    var broker: String
    var database: String
    var queue: String
    var tasks: Int
    var concurrency: Int
    var publishers: Int
    /// Tasks per enqueue call of each publisher.
    var batch: Int
    var prefill: Bool
    var publishSeconds: Double
    var drainSeconds: Double
    var latencyP50: Double
    var latencyP99: Double
    var peakRSSMiB: Double

    var publishRate: Double { Double(tasks) / max(publishSeconds, 1e-9) }
    var drainRate: Double { Double(prefill ? max(1, tasks - 1) : tasks) / drainSeconds }

    var mode: String { prefill ? "prefill" : "concurrent" }

    var text: String {
        return """
            integrator queue benchmark: broker \(broker), database \(database), queue \(queue)
              tasks \(tasks) core.noop, worker concurrency \(concurrency), publishers \(publishers), batch \(batch), \(mode)
              publish   \(BenchNumber.text(publishRate)) tasks/s  (\(BenchNumber.text(publishSeconds, 2)) s to enqueue all)
              drain     \(BenchNumber.text(drainRate)) tasks/s  (\(BenchNumber.text(drainSeconds, 2)) s from the first \(prefill ? "recorded success" : "enqueue") to the last recorded success)
              latency   p50 \(BenchNumber.text(latencyP50)) ms, p99 \(BenchNumber.text(latencyP99)) ms  (enqueued_at to finished_at of each run)
              peak RSS  \(BenchNumber.text(peakRSSMiB, 1)) MiB  (the whole process: publishers, worker, database client)
            """
    }

    var json: JSONValue {
        return .object([
            "system": "integrator", "broker": .string(broker), "database": .string(database), "queue": .string(queue),
            "tasks": .number(Double(tasks)), "concurrency": .number(Double(concurrency)),
            "publishers": .number(Double(publishers)), "batch": .number(Double(batch)), "mode": .string(mode),
            "publish_seconds": BenchNumber.json(publishSeconds, 3), "publish_rate": BenchNumber.json(publishRate),
            "drain_seconds": BenchNumber.json(drainSeconds, 3), "drain_rate": BenchNumber.json(drainRate),
            "latency_p50_ms": BenchNumber.json(latencyP50), "latency_p99_ms": BenchNumber.json(latencyP99),
            "peak_rss_mib": BenchNumber.json(peakRSSMiB),
        ])
    }
}

/// A benchmark that could not finish; its description is the message shown.
struct BenchFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// What the benchmark's worker reported recording: how many tasks succeeded, and the first other outcome seen.
private final class RecordedOutcomes: Sendable {
    private let state = Mutex((succeeded: 0, broken: TaskState?.none))

    var counts: (succeeded: Int, broken: TaskState?) { state.withLock { $0 } }

    func add(_ states: [TaskState]) {
        state.withLock { state in
            for recorded in states {
                if recorded == .succeeded {
                    state.succeeded += 1
                } else if state.broken == nil {
                    state.broken = recorded
                }
            }
        }
    }
}

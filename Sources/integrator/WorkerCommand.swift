// `integrator worker`: consume queues and run tasks until SIGTERM/SIGINT.
import ArgumentParser
import Foundation
import IntegratorCore
import Logging
import Plugins
import ServiceLifecycle

struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Consume task queues and run the tasks. Needs INTEGRATOR_SECRET_KEY.",
        discussion: """
            Takes tasks from the given queues, highest priority first and FIFO within a priority, never more than \
            --concurrency at once. Every run is recorded before the task is acknowledged; a worker that dies loses \
            nothing (its leases expire and the tasks are delivered again). On SIGTERM or SIGINT it stops taking work, \
            lets running tasks finish for --shutdown-grace seconds, and hands the rest back. Retries and timers need a \
            beat: run `integrator beat` beside the workers, or give one worker --beat.
            """)

    @Option(help: "Comma-separated queues to consume, e.g. high,default.")
    var queues = "default"

    /// Most tasks wait on the network (fetches, webhook deliveries), so slots matter more than cores.
    @Option(help: "How many tasks run at once (1–1000).")
    var concurrency = 64

    @Flag(help: """
        Also run a beat in this process (like celery worker -B). It contends for the same leader lease as every \
        other beat, so any number of workers may have it on.
        """)
    var beat = false

    @Option(help: "Seconds a claimed task stays leased without a heartbeat before another worker may take it.")
    var lease = 60

    @Option(help: "Seconds running tasks get to finish on shutdown before they are handed back.")
    var shutdownGrace = 30

    @Option(
        help: """
            Seconds a task runs before it is recorded as started (it shows as queued until then; its outcome still \
            records its worker and start time). 0 records every start before the task runs, at one more database \
            write per task.
            """)
    var recordStartedAfter = 0.1

    @OptionGroup var options: GlobalOptions
    @OptionGroup var metrics: MetricsOptions

    func validate() throws {
        guard (1...1000).contains(concurrency) else { throw ValidationError("--concurrency must be from 1 to 1000") }
        guard lease >= 5 else { throw ValidationError("--lease must be at least 5 seconds") }
        guard (0...3600).contains(recordStartedAfter) else {
            throw ValidationError("--record-started-after must be from 0 to 3600 seconds")
        }
        guard !queueList.isEmpty else { throw ValidationError("--queues needs at least one queue name") }
    }

    var queueList: [String] {
        queues.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    var workerOptions: WorkerOptions {
        WorkerOptions(
            queues: queueList, concurrency: concurrency, lease: TimeInterval(lease), shutdownGrace: .seconds(shutdownGrace),
            recordStartedAfter: .milliseconds(Int((recordStartedAfter * 1000).rounded())))
    }

    func run() async throws {
        try await reportingErrors {
            let settings = try options.settings(overriding: metrics.overrides)
            try await Server.run(settings: settings, parts: beat ? [.worker(workerOptions), .beat(BeatOptions())] : [.worker(workerOptions)])
        }
    }
}

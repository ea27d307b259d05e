// `integrator bench scheduled-messages`: fire lateness of scheduled messages with a million pending, upsert throughput
// and memory, with the beat, a worker and a receiver in this process.
import ArgumentParser
import Foundation
import IntegratorCore
import Plugins
import Synchronization

struct ScheduledMessagesBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scheduled-messages",
        abstract: "Fire scheduled messages at a local receiver with many pending, and measure how late they arrive.",
        discussion: """
            Applies migrations and loads --pending messages due in 30 days (their rows and timers in bulk; skipped with \
            --skip-load). Then measures upserts: serves the API on 127.0.0.1 and --publishers concurrent HTTP clients \
            send --upserts POST /messages, due far in the future. Then runs a beat, one worker (--concurrency) and a \
            receiver on 127.0.0.1 in this process, and for --seconds upserts --rate messages a second through the \
            service behind POST /messages (which returns the version the receiver sees as webhook-id), each due --lead \
            seconds after it is stored; lateness is the arrival at the receiver minus scheduleTo (p50, p99, max). Uses a \
            throwaway secret key when INTEGRATOR_SECRET_KEY is not set, so runs that reuse a database (--skip-load) need \
            it set, the same each time. Point it at a database of its own (--database-url).
            """)

    @Option(help: "Pending messages to hold, due far in the future.")
    var pending = 1_000_000

    @Flag(help: "Keep the pending messages an earlier run loaded.")
    var skipLoad = false

    @Option(help: "Messages stored in the upsert-throughput phase (0 skips it).")
    var upserts = 20_000

    @Option(help: "Concurrent HTTP clients in the upsert-throughput phase.")
    var publishers = 8

    @Option(help: "Messages a second that come due during the lateness phase.")
    var rate = 1000

    @Option(help: "Seconds of the lateness phase.")
    var seconds = 20

    @Option(help: "Seconds between storing a message and its scheduleTo.")
    var lead = 1.0

    @Option(help: "Tasks the worker runs at once.")
    var concurrency = 64

    @OptionGroup var common: BenchRunOptions

    @OptionGroup var options: GlobalOptions

    func validate() throws {
        guard (0...10_000_000).contains(pending) else { throw ValidationError("--pending must be from 0 to 10000000") }
        guard (0...10_000_000).contains(upserts) else { throw ValidationError("--upserts must be from 0 to 10000000") }
        guard (1...256).contains(publishers) else { throw ValidationError("--publishers must be from 1 to 256") }
        guard (1...100_000).contains(rate) else { throw ValidationError("--rate must be from 1 to 100000") }
        guard (1...3600).contains(seconds) else { throw ValidationError("--seconds must be from 1 to 3600") }
        guard (0...60).contains(lead) else { throw ValidationError("--lead must be from 0 to 60 seconds") }
        guard (1...1000).contains(concurrency) else { throw ValidationError("--concurrency must be from 1 to 1000") }
    }

    func run() async throws {
        try await reportingErrors {
            var overrides = common.brokerURL.map { ["INTEGRATOR_BROKER_URL": $0] } ?? [:]
            overrides["INTEGRATOR_HTTP_HOST"] = "127.0.0.1"
            overrides["INTEGRATOR_HTTP_PORT"] = "0"
            var settings = try options.settings(overriding: overrides)
            if skipLoad, settings.secretKeys == nil {
                throw BenchFailure(
                    "--skip-load reuses a database whose delivery tenant's secret is sealed with a key: set INTEGRATOR_SECRET_KEY, the same in every run")
            }
            try BenchCommand.useEphemeralKeyIfUnset(&settings)
            let token = "bench-" + Identifier.make()
            settings.apiToken = Secret(token)
            let plan = ScheduledMessagesBenchPlan(
                pending: skipLoad ? 0 : pending, upserts: upserts, publishers: publishers, rate: rate, seconds: seconds, lead: lead,
                concurrency: concurrency, token: token, timeoutSeconds: common.timeout)
            let outbound = OutboundHTTP.Options(allowedRanges: [IPAddressRange("127.0.0.0/8")!])
            let report = try await withRuntime(settings, migrate: true, outboundOptions: outbound) { runtime in
                try await BenchReceiver.run { url, arrivals in try await plan.run(on: runtime, receiverURL: url, arrivals: arrivals) }
            }
            print(common.json ? report.json.encodedString() : report.text)
        }
    }
}

struct ScheduledMessagesBenchPlan: Sendable {
    var pending: Int
    var upserts: Int
    var publishers: Int
    var rate: Int
    var seconds: Int
    var lead: Double
    var concurrency: Int
    /// The static API token the upsert phase's HTTP calls carry.
    var token: String
    var timeoutSeconds: Int

    /// Far enough ahead that nothing loaded fires during a run.
    static let farAhead: TimeInterval = 30 * 86_400
    static let payload: JSONValue = ["text": "a reminder, as most scheduled messages are", "account": 123]

    func run(on runtime: Runtime, receiverURL: String, arrivals: EventTimes) async throws -> ScheduledMessagesBenchReport {
        let service = ScheduledMessagesService(environment: runtime.environment)
        let run = Identifier.make().suffix(8).lowercased()
        let clock = ContinuousClock()

        let loadStart = clock.now
        for start in stride(from: 0, to: pending, by: 10_000) {
            let due = Date().addingTimeInterval(Self.farAhead)
            let messages = (start..<min(start + 10_000, pending)).map { index in
                ScheduledMessage(
                    id: String(format: "pending_%08d", index), scheduleTo: due.apiString, dueAt: due, payload: Self.payload,
                    webhookURL: receiverURL)
            }
            try await service.load(messages)
        }
        let loadSeconds = (clock.now - loadStart).seconds

        let upsertSeconds = try await ChatBufferBenchPlan.servingAPI(runtime) { baseURL in
            try await upsertThroughHTTP(runtime, url: baseURL + "/messages", run: run, receiverURL: receiverURL)
        }

        // Arrival instants on the continuous clock, turned into wall-clock times from one reference pair.
        let referenceDate = Date()
        let referenceInstant = clock.now
        let dueByEvent = DueTimes()
        let total = rate * seconds
        arrivals.reserve(total)
        let worker = runtime.makeWorker(WorkerOptions(queues: ["default"], concurrency: concurrency))
        let beat = runtime.makeBeat()
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await worker.run() }
            group.addTask { try await beat.run() }
            defer { group.cancelAll() }
            let firingStart = clock.now
            try await withThrowingTaskGroup(of: Void.self) { senders in
                // Each upsert starts on its own schedule, so a slow one does not delay the next: a fixed offered load.
                let interval = Duration.seconds(1) / rate
                for index in 0..<total {
                    try await Task.sleep(until: firingStart + interval * index, clock: clock)
                    senders.addTask {
                        let due = Date().addingTimeInterval(lead)
                        let message = try await service.upsert(Self.body(id: "due_\(run)_\(index)", due: due, url: receiverURL))
                        dueByEvent.record(message.version, message.dueAt)
                    }
                }
                try await senders.waitForAll()
            }
            let residentAfterScheduling = WebhooksBenchPlan.currentResidentMiB()
            let deadline = clock.now + .seconds(timeoutSeconds)
            while arrivals.count < total {
                if clock.now >= deadline {
                    throw BenchFailure("timed out after \(timeoutSeconds) s: \(arrivals.count) of \(total) messages arrived")
                }
                try await Task.sleep(for: .milliseconds(5))
            }
            let residentAtEnd = WebhooksBenchPlan.currentResidentMiB()
            let dues = dueByEvent.all
            var lateness: [Double] = []
            lateness.reserveCapacity(total)
            for (eventID, instant) in arrivals.all {
                guard let due = dues[eventID] else { continue }
                let arrived = referenceDate.addingTimeInterval((instant - referenceInstant).seconds)
                lateness.append(arrived.timeIntervalSince(due) * 1000)
            }
            lateness.sort()
            return ScheduledMessagesBenchReport(
                database: runtime.database.engine.rawValue, broker: QueueBenchPlan.brokerName(runtime.settings.broker),
                pendingLoaded: pending, loadSeconds: loadSeconds, pendingAtEnd: try await pendingCount(runtime), upserts: upserts,
                publishers: publishers, upsertSeconds: upsertSeconds, rate: rate, seconds: seconds, fired: lateness.count,
                latenessP50: QueueBenchPlan.percentile(lateness, 0.50), latenessP99: QueueBenchPlan.percentile(lateness, 0.99),
                latenessMax: lateness.last ?? 0, peakRSSMiB: QueueBenchPlan.peakResidentMiB(),
                rssAfterSchedulingMiB: residentAfterScheduling, rssAtEndMiB: residentAtEnd)
        }
    }

    /// `POST /messages` from --publishers concurrent HTTP clients over the process's own API, as the seed's clients
    /// call it; the seconds it took.
    private func upsertThroughHTTP(_ runtime: Runtime, url: String, run: String, receiverURL: String) async throws -> Double {
        // The callers' own connection pool, apart from the one the deliveries use.
        let http = OutboundHTTP(options: OutboundHTTP.Options(allowedRanges: [IPAddressRange("127.0.0.0/8")!]), logger: runtime.logger)
        var client = http.client(logger: runtime.logger)
        client.retry = RetryPolicy(maxAttempts: 1)
        client.headers = [("authorization", "Bearer \(token)")]
        let api = client
        let clock = ContinuousClock()
        let start = clock.now
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for publisher in 0..<publishers {
                    group.addTask {
                        for index in stride(from: publisher, to: upserts, by: publishers) {
                            let body = Self.body(id: "upsert_\(run)_\(index)", due: Date().addingTimeInterval(Self.farAhead), url: receiverURL)
                            let answer = try await api.send(try .json(method: "POST", url, body))
                            guard answer.status == 200 else {
                                throw BenchFailure("POST /messages answered HTTP \(answer.status): \(String(decoding: answer.body.prefix(300), as: UTF8.self))")
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
        } catch {
            await http.shutdown()
            throw error
        }
        await http.shutdown()
        return (clock.now - start).seconds
    }

    static func body(id: String, due: Date, url: String) -> JSONValue {
        ["id": .string(id), "scheduleTo": .string(due.apiString), "payload": payload, "webhookUrl": .string(url)]
    }

    private func pendingCount(_ runtime: Runtime) async throws -> Int {
        try await runtime.database.withSQL { sql in
            try await sql.raw("SELECT COUNT(*) AS n FROM scheduled_messages").first()?.decode(column: "n", as: Int.self) ?? 0
        }
    }
}

/// The scheduleTo of each message scheduled in the lateness phase, by its webhook event id (its version).
final class DueTimes: Sendable {
    private let state = Mutex<[String: Date]>([:])

    func record(_ eventID: String, _ due: Date) { state.withLock { $0[eventID] = due } }
    var all: [String: Date] { state.withLock { $0 } }
}

struct ScheduledMessagesBenchReport: Sendable {
    var database: String
    var broker: String
    var pendingLoaded: Int
    var loadSeconds: Double
    /// Pending messages when the report was made (the loaded ones, the upserts, and any earlier run's).
    var pendingAtEnd: Int
    var upserts: Int
    var publishers: Int
    var upsertSeconds: Double
    var rate: Int
    var seconds: Int
    var fired: Int
    var latenessP50: Double
    var latenessP99: Double
    var latenessMax: Double
    var peakRSSMiB: Double
    var rssAfterSchedulingMiB: Double
    var rssAtEndMiB: Double

    var upsertRate: Double { Double(upserts) / max(upsertSeconds, 1e-9) }

    var text: String {
        """
        integrator scheduled messages benchmark: database \(database), broker \(broker)
          load       \(pendingLoaded) pending messages in \(BenchNumber.text(loadSeconds, 1)) s (\(BenchNumber.text(Double(pendingLoaded) / max(loadSeconds, 1e-9))) messages/s, bulk)
          pending    \(pendingAtEnd) messages pending at the end
          upserts    \(BenchNumber.text(upsertRate)) messages/s  (\(upserts) POST /messages over HTTP from \(publishers) concurrent clients)
          lateness   p50 \(BenchNumber.text(latenessP50, 1)) ms, p99 \(BenchNumber.text(latenessP99, 1)) ms, max \(BenchNumber.text(latenessMax, 1)) ms  (arrival − scheduleTo; \(fired) messages, \(rate)/s for \(seconds) s)
          peak RSS   \(BenchNumber.text(peakRSSMiB, 1)) MiB  (the whole process: beat, worker, receiver, callers, database client)
          RSS        \(BenchNumber.text(rssAfterSchedulingMiB, 1)) MiB when all were scheduled, \(BenchNumber.text(rssAtEndMiB, 1)) MiB when all had arrived
        """
    }

    var json: JSONValue {
        [
            "system": "integrator", "benchmark": "scheduled-messages", "database": .string(database), "broker": .string(broker),
            "pending_loaded": .number(Double(pendingLoaded)), "load_seconds": BenchNumber.json(loadSeconds, 2),
            "pending_at_end": .number(Double(pendingAtEnd)), "upserts": .number(Double(upserts)), "publishers": .number(Double(publishers)),
            "upsert_rate": BenchNumber.json(upsertRate), "rate": .number(Double(rate)), "seconds": .number(Double(seconds)),
            "fired": .number(Double(fired)), "lateness_p50_ms": BenchNumber.json(latenessP50), "lateness_p99_ms": BenchNumber.json(latenessP99),
            "lateness_max_ms": BenchNumber.json(latenessMax), "peak_rss_mib": BenchNumber.json(peakRSSMiB),
            "rss_after_scheduling_mib": BenchNumber.json(rssAfterSchedulingMiB), "rss_at_end_mib": BenchNumber.json(rssAtEndMiB),
        ]
    }
}

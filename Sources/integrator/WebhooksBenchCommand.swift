// `integrator bench webhooks`: signed deliveries end to end, from send to a fast local receiver, through the queue.
import ArgumentParser
import Foundation
import Hummingbird
import IntegratorCore
import Plugins
import Synchronization

struct WebhooksBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "webhooks",
        abstract: "Send webhook events to a local receiver and measure signed deliveries end to end.",
        discussion: """
            Applies migrations, starts a receiver on 127.0.0.1 that answers 200 at once, configures a tenant for it and \
            runs one in-process worker. Throughput: --publishers concurrent senders send --events events (each send one \
            transaction that stores the event and enqueues its delivery, as POST /api/v1/webhooks/send does); reports \
            deliveries per second from the first send to the last arrival. With --rate, sends at that fixed rate for \
            --seconds instead and reports the latency from send to arrival (p50, p99). Peak resident memory is the \
            whole process's. Uses a throwaway secret key when INTEGRATOR_SECRET_KEY is not set. Point it at a database \
            of its own (--database-url): its events stay there.
            """)

    @Option(help: "Events to send in throughput mode.")
    var events = 20_000

    @Option(help: "Fixed sends per second (latency mode); 0 for throughput mode.")
    var rate = 0

    @Option(help: "Seconds to send at --rate.")
    var seconds = 10

    @Option(help: "Deliveries the worker runs at once.")
    var concurrency = 64

    @Option(help: "Concurrent senders in throughput mode.")
    var publishers = 8

    @Option(help: "Events per send call in throughput mode: 1 is POST /api/v1/webhooks/send, more is /send/batch.")
    var batch = 1

    @OptionGroup var common: BenchRunOptions

    @OptionGroup var options: GlobalOptions

    func validate() throws {
        guard (1...10_000_000).contains(events) else { throw ValidationError("--events must be from 1 to 10000000") }
        guard (0...100_000).contains(rate) else { throw ValidationError("--rate must be from 0 to 100000") }
        guard (1...3600).contains(seconds) else { throw ValidationError("--seconds must be from 1 to 3600") }
        guard (1...1000).contains(concurrency) else { throw ValidationError("--concurrency must be from 1 to 1000") }
        guard (1...256).contains(publishers) else { throw ValidationError("--publishers must be from 1 to 256") }
        guard (1...WebhooksService.maxBatch).contains(batch) else { throw ValidationError("--batch must be from 1 to \(WebhooksService.maxBatch)") }
    }

    func run() async throws {
        try await reportingErrors {
            var settings = try options.settings(overriding: common.brokerURL.map { ["INTEGRATOR_BROKER_URL": $0] } ?? [:])
            try BenchCommand.useEphemeralKeyIfUnset(&settings)
            let plan = WebhooksBenchPlan(
                events: rate > 0 ? rate * seconds : events, rate: rate, concurrency: concurrency, publishers: publishers,
                batch: rate > 0 ? 1 : batch, timeoutSeconds: common.timeout)
            let outbound = OutboundHTTP.Options(allowedRanges: [IPAddressRange("127.0.0.0/8")!])
            let report = try await withRuntime(settings, migrate: true, outboundOptions: outbound) { runtime in
                try await BenchReceiver.run { url, arrivals in try await plan.run(on: runtime, receiverURL: url, arrivals: arrivals) }
            }
            print(common.json ? report.json.encodedString() : report.text)
        }
    }
}

/// A moment per event id (when its send began, when it first reached the receiver); the first one recorded counts.
///
/// Ids that are UUIDs (every id the engine makes) are kept in their 16 bytes, in a table sized up front: the
/// benchmark's own bookkeeping then grows by about 50 bytes an event instead of about 150, and stays out of the
/// memory figures that show whether the engine's memory grows with the backlog.
final class EventTimes: Sendable {
    private struct Times {
        var byUUID: [UUID: ContinuousClock.Instant] = [:]
        var byText: [String: ContinuousClock.Instant] = [:]
    }

    private let state = Mutex(Times())

    /// Room for `count` events, so the table is not copied to a larger one while the run is measured.
    func reserve(_ count: Int) {
        state.withLock { $0.byUUID.reserveCapacity(count) }
    }

    func record(_ eventID: String, at instant: ContinuousClock.Instant = .now) {
        let uuid = UUID(uuidString: eventID)
        state.withLock { times in
            if let uuid {
                if times.byUUID[uuid] == nil { times.byUUID[uuid] = instant }
            } else if times.byText[eventID] == nil {
                times.byText[eventID] = instant
            }
        }
    }

    var count: Int { state.withLock { $0.byUUID.count + $0.byText.count } }

    /// For every event recorded both here and in `earlier`, this moment minus that one's; and the latest moment
    /// recorded here. Read without copying either table.
    func intervals(after earlier: EventTimes) -> (intervals: [Duration], latest: ContinuousClock.Instant?) {
        let starts = earlier.state.withLock { $0 }
        let ends = state.withLock { $0 }
        var intervals: [Duration] = []
        intervals.reserveCapacity(ends.byUUID.count + ends.byText.count)
        var latest: ContinuousClock.Instant?
        for (uuid, end) in ends.byUUID {
            latest = max(latest ?? end, end)
            if let start = starts.byUUID[uuid] { intervals.append(end - start) }
        }
        for (text, end) in ends.byText {
            latest = max(latest ?? end, end)
            if let start = starts.byText[text] { intervals.append(end - start) }
        }
        return (intervals, latest)
    }

    /// By id; UUIDs written in lowercase, as the engine writes them.
    var all: [String: ContinuousClock.Instant] {
        let times = state.withLock { $0 }
        var all = times.byText
        all.reserveCapacity(times.byUUID.count + times.byText.count)
        for (uuid, instant) in times.byUUID { all[uuid.uuidString.lowercased()] = instant }
        return all
    }
}

struct WebhooksBenchPlan: Sendable {
    var events: Int
    /// Sends per second; 0 sends as fast as the publishers can.
    var rate: Int
    var concurrency: Int
    var publishers: Int
    var batch: Int
    var timeoutSeconds: Int

    func run(on runtime: Runtime, receiverURL: String, arrivals: EventTimes) async throws -> WebhooksBenchReport {
        let service = WebhooksService(environment: runtime.environment)
        let tenantID = "bench-" + Identifier.make().suffix(12).lowercased()
        _ = try await service.configure([
            "tenant_id": .string(tenantID), "base_url": .string(receiverURL),
            "secret_key": .string("whsec_" + Data((0..<24).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()),
            "retry_policy": ["max_retries": 3, "initial_delay_seconds": 1],
        ])
        let sent = EventTimes()
        sent.reserve(events)
        arrivals.reserve(events)
        let worker = runtime.makeWorker(WorkerOptions(queues: ["default"], concurrency: concurrency))
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await worker.run() }
            defer { group.cancelAll() }
            let clock = ContinuousClock()
            let start = clock.now
            let sendSeconds = try await send(service, tenantID: tenantID, sent: sent)
            let residentAfterSending = Self.currentResidentMiB()
            let deadline = clock.now + .seconds(timeoutSeconds)
            while arrivals.count < events {
                if clock.now >= deadline {
                    throw BenchFailure("timed out after \(timeoutSeconds) s: \(arrivals.count) of \(events) events arrived")
                }
                try await Task.sleep(for: .milliseconds(5))
            }
            // Before the copies below: what the run itself left resident.
            let residentAtEnd = Self.currentResidentMiB()
            let (intervals, lastArrival) = arrivals.intervals(after: sent)
            let last = max(start, lastArrival ?? start)
            let latencies = intervals.map { $0.seconds * 1000 }.sorted()
            return WebhooksBenchReport(
                broker: QueueBenchPlan.brokerName(runtime.settings.broker), database: runtime.database.engine.rawValue,
                events: events, rate: rate, concurrency: concurrency, publishers: rate > 0 ? 1 : publishers, batch: batch,
                sendSeconds: sendSeconds, totalSeconds: (last - start).seconds,
                latencyP50: QueueBenchPlan.percentile(latencies, 0.50), latencyP99: QueueBenchPlan.percentile(latencies, 0.99),
                peakRSSMiB: QueueBenchPlan.peakResidentMiB(), rssAfterSendingMiB: residentAfterSending,
                rssAtEndMiB: residentAtEnd)
        }
    }

    /// This process's resident memory now, in MiB (`/proc/self/statm`; 0 where there is none).
    static func currentResidentMiB() -> Double {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = Double(fields[1]) else { return 0 }
        return pages * Double(sysconf(Int32(_SC_PAGESIZE))) / 1_048_576
    }

    /// Sends every event (at the fixed rate, or as fast as the publishers go) and returns the seconds it took.
    private func send(_ service: WebhooksService, tenantID: String, sent: EventTimes) async throws -> Double {
        let clock = ContinuousClock()
        let start = clock.now
        let body: @Sendable (Int) -> JSONValue = { index in
            [
                "tenant_id": .string(tenantID), "event_type": "bench.delivered",
                "payload": ["index": .number(Double(index)), "note": "a small payload, like most webhooks carry"],
            ]
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            if rate > 0 {
                // Each send starts on its own schedule, so a slow one does not delay the next: a fixed offered load.
                let interval = Duration.seconds(1) / rate
                for index in 0..<events {
                    try await Task.sleep(until: start + interval * index, clock: clock)
                    group.addTask {
                        let at = ContinuousClock.now
                        let result = try await service.send(body(index), idempotencyKey: nil)
                        sent.record(result.eventID, at: at)
                    }
                }
            } else {
                for publisher in 0..<publishers {
                    let indices = Array(stride(from: publisher, to: events, by: publishers))
                    group.addTask {
                        for start in stride(from: 0, to: indices.count, by: batch) {
                            let chunk = indices[start..<min(start + batch, indices.count)]
                            let at = ContinuousClock.now
                            if chunk.count == 1, let index = chunk.first {
                                sent.record(try await service.send(body(index), idempotencyKey: nil).eventID, at: at)
                            } else {
                                for result in try await service.send(contentsOf: chunk.map(body)) { sent.record(result.eventID, at: at) }
                            }
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        return (clock.now - start).seconds
    }
}

struct WebhooksBenchReport: Sendable {
    var broker: String
    var database: String
    var events: Int
    var rate: Int
    var concurrency: Int
    var publishers: Int
    var batch: Int
    var sendSeconds: Double
    /// From the first send to the last arrival.
    var totalSeconds: Double
    var latencyP50: Double
    var latencyP99: Double
    var peakRSSMiB: Double
    /// Resident memory when every event was sent (the backlog at its largest when sends outrun deliveries), and when
    /// the last delivery arrived: equal when a backlog costs the process no memory.
    var rssAfterSendingMiB: Double
    var rssAtEndMiB: Double

    var deliveryRate: Double { Double(events) / max(totalSeconds, 1e-9) }
    var mode: String { rate > 0 ? "fixed rate \(rate)/s" : "throughput" }

    var text: String {
        return """
            integrator webhooks benchmark: broker \(broker), database \(database), \(mode)
              events \(events), worker concurrency \(concurrency), senders \(publishers), events per send \(batch)
              send       \(BenchNumber.text(Double(events) / max(sendSeconds, 1e-9))) events/s  (\(BenchNumber.text(sendSeconds, 2)) s to send all)
              delivered  \(BenchNumber.text(deliveryRate)) deliveries/s  (\(BenchNumber.text(totalSeconds, 2)) s from the first send to the last arrival)
              latency    p50 \(BenchNumber.text(latencyP50, 1)) ms, p99 \(BenchNumber.text(latencyP99, 1)) ms  (send call to arrival at the receiver)
              peak RSS   \(BenchNumber.text(peakRSSMiB, 1)) MiB  (the whole process: senders, worker, receiver, database client)
              RSS        \(BenchNumber.text(rssAfterSendingMiB, 1)) MiB when all were sent, \(BenchNumber.text(rssAtEndMiB, 1)) MiB when all had arrived
            """
    }

    var json: JSONValue {
        return [
            "system": "integrator", "benchmark": "webhooks", "broker": .string(broker), "database": .string(database),
            "events": .number(Double(events)), "rate": .number(Double(rate)), "concurrency": .number(Double(concurrency)),
            "publishers": .number(Double(publishers)), "batch": .number(Double(batch)), "send_seconds": BenchNumber.json(sendSeconds, 3),
            "total_seconds": BenchNumber.json(totalSeconds, 3), "delivery_rate": BenchNumber.json(deliveryRate),
            "latency_p50_ms": BenchNumber.json(latencyP50), "latency_p99_ms": BenchNumber.json(latencyP99), "peak_rss_mib": BenchNumber.json(peakRSSMiB),
            "rss_after_sending_mib": BenchNumber.json(rssAfterSendingMiB), "rss_at_end_mib": BenchNumber.json(rssAtEndMiB),
        ]
    }
}

// `integrator bench fetch`: records stored per second and peak memory of the fetch pipeline, from the demo
// provider or from a fake paged HTTP API served in this process.
import ArgumentParser
import Foundation
import Hummingbird
import IntegratorCore
import Logging
import Plugins
import SQLKit
import ServiceLifecycle
import Synchronization

struct FetchBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fetch",
        abstract: "Measure how fast fetches store records, and how much memory they take.",
        discussion: """
            Applies migrations, creates an integration of its own and fetches it --runs times through the same code \
            as the integration.fetch task. The first run stores every record (new); later runs read them all again \
            and find them unchanged, except --change-fraction of them (updated). With --source demo the records come \
            from the demo provider (no network); with --source http from a paged JSON API served on 127.0.0.1 by this \
            process and read through the outbound HTTP client. Reports records per second for each run, the resident \
            memory early in the first run and at its end, and the process's peak. Removes its integration, records \
            and events afterwards unless --keep. Uses a throwaway secret key when INTEGRATOR_SECRET_KEY is not set.
            """)

    enum Source: String, ExpressibleByArgument, CaseIterable {
        case demo
        case http
    }

    @Option(help: "Where the records come from: demo or http.")
    var source: Source = .demo

    @Option(help: "Records per run (default: 1000000 from demo, 100000 from http).")
    var records: Int?

    @Option(help: "Records per page, so per checkpoint (default: 1000 from demo, 100 from http).")
    var pageSize: Int?

    @Option(help: "Records written per transaction.")
    var batchSize = 500

    @Option(help: "How many times to fetch; runs after the first find the records already stored.")
    var runs = 2

    @Option(help: "Share of records that change between runs.")
    var changeFraction = 0.1

    @Flag(help: "Keep the benchmark's integration, records and events.")
    var keep = false

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    @OptionGroup var options: GlobalOptions

    func validate() throws {
        if let records, !(1...1_000_000).contains(records) { throw ValidationError("--records must be from 1 to 1000000") }
        if let pageSize, !(1...100_000).contains(pageSize) { throw ValidationError("--page-size must be from 1 to 100000") }
        guard (1...RecordStore.maximumBatchSize).contains(batchSize) else {
            throw ValidationError("--batch-size must be from 1 to \(RecordStore.maximumBatchSize)")
        }
        guard (1...20).contains(runs) else { throw ValidationError("--runs must be from 1 to 20") }
        guard (0...1).contains(changeFraction) else { throw ValidationError("--change-fraction must be from 0 to 1") }
    }

    func run() async throws {
        try await reportingErrors {
            var settings = try options.settings()
            try BenchCommand.useEphemeralKeyIfUnset(&settings)
            let plan = FetchBenchPlan(
                source: source, records: records ?? (source == .demo ? 1_000_000 : 100_000),
                pageSize: pageSize ?? (source == .demo ? 1000 : 100), batchSize: batchSize, runs: runs,
                changeFraction: changeFraction, keep: keep)
            // The fake API listens on 127.0.0.1, which the outbound guard refuses unless allowed.
            var outbound = OutboundHTTP.Options(allowedRanges: settings.outboundAllowedRanges)
            if let loopback = IPAddressRange("127.0.0.1/32") { outbound.allowedRanges.append(loopback) }
            let report = try await withRuntime(
                settings, migrate: true, registry: try PluginRegistry(BuiltinPlugins.all + [.fetchBench]), outboundOptions: outbound
            ) { try await plan.run(on: $0) }
            print(json ? report.json.encodedString() : report.text)
        }
    }
}

/// What one benchmark does.
struct FetchBenchPlan: Sendable {
    var source: FetchBench.Source
    var records: Int
    var pageSize: Int
    var batchSize: Int
    var runs: Int
    var changeFraction: Double
    var keep: Bool

    func run(on runtime: Runtime) async throws -> FetchBenchReport {
        switch source {
        case .demo:
            return try await measure(
                runtime, provider: "demo",
                config: ["records": .number(Double(records)), "page_size": .number(Double(pageSize)), "change_fraction": .number(changeFraction)])
        case .http:
            let api = FakePagedAPI(records: records, pageSize: pageSize, changeFraction: changeFraction)
            return try await api.serving { baseURL in
                try await measure(
                    runtime, provider: BenchHTTPProvider.providerID,
                    config: ["base_url": .string(baseURL), "page_size": .number(Double(pageSize))], api: api)
            }
        }
    }

    private func measure(
        _ runtime: Runtime, provider: String, config: [String: JSONValue], api: FakePagedAPI? = nil
    ) async throws -> FetchBenchReport {
        let fetches = FetchService(environment: runtime.environment, options: FetchOptions(batchSize: batchSize))
        let integration = try await runtime.integrations.create(
            ["name": .string("bench-fetch-\(Identifier.make().suffix(12))"), "provider": .string(provider), "config": .object(config)])
        var report = FetchBenchReport(
            source: source.rawValue, database: runtime.database.engine.rawValue, records: records, pageSize: pageSize,
            batchSize: batchSize)
        do {
            for run in 1...runs {
                if run > 1 {
                    // The fake API's pages do not move on by themselves: start it over, with some records changed.
                    api?.nextRun()
                    if api != nil { try await runtime.records.resetState(integrationID: integration.id) }
                }
                let memory = MemoryProbe(earlyAt: records / 10)
                let summary = try await fetches.run(
                    integrationID: integration.id, logger: runtime.logger, onProgress: { memory.observe($0.records.total) })
                report.runs.append(summary)
                if run == 1 { (report.earlyRSSMiB, report.endRSSMiB) = (memory.early, ResidentMemory.currentMiB()) }
            }
        } catch {
            if !keep { try? await remove(integration.id, runtime) }
            throw error
        }
        report.peakRSSMiB = ResidentMemory.peakMiB()
        if !keep { try await remove(integration.id, runtime) }
        return report
    }

    /// Deletes the integration (its records and state go with it) and its events.
    private func remove(_ integrationID: String, _ runtime: Runtime) async throws {
        try await runtime.integrations.delete(id: integrationID)
        try await runtime.database.withSQL { sql in
            try await sql.delete(from: "events").where("integration_id", .equal, integrationID).run()
        }
    }
}

/// The figures of one benchmark.
struct FetchBenchReport: Sendable {
    var source: String
    var database: String
    var records: Int
    var pageSize: Int
    var batchSize: Int
    var runs: [FetchSummary] = []
    /// Resident memory after a tenth of the first run, at its end, and the process's peak.
    var earlyRSSMiB = 0.0
    var endRSSMiB = 0.0
    var peakRSSMiB = 0.0

    var text: String {
        var lines = [
            "integrator fetch benchmark: source \(source), database \(database), \(records) records in pages of \(pageSize), \(batchSize) per transaction"
        ]
        for (index, run) in runs.enumerated() {
            let counts = run.records
            lines.append(
                "  run \(index + 1)  \(BenchNumber.text(run.recordsPerSecond)) records/s  (\(counts.new) new, \(counts.updated) updated,"
                    + " \(counts.unchanged) unchanged, \(run.pages) pages in \(BenchNumber.text(run.elapsedSeconds, 2)) s)")
        }
        lines.append(
            "  memory  RSS \(BenchNumber.text(earlyRSSMiB, 1)) MiB after a tenth of run 1, \(BenchNumber.text(endRSSMiB, 1)) MiB at its end; peak \(BenchNumber.text(peakRSSMiB, 1)) MiB")
        return lines.joined(separator: "\n")
    }

    var json: JSONValue {
        return .object([
            "system": "integrator", "benchmark": "fetch", "source": .string(source), "database": .string(database),
            "records": .number(Double(records)), "page_size": .number(Double(pageSize)), "batch_size": .number(Double(batchSize)),
            "runs": .array(runs.map { run in
                var object = run.json.objectValue ?? [:]
                object["records_per_second"] = BenchNumber.json(run.recordsPerSecond)
                object["seconds"] = BenchNumber.json(run.elapsedSeconds, 3)
                object.removeValue(forKey: "integration")
                return .object(object)
            }),
            "rss_mib_early": BenchNumber.json(earlyRSSMiB), "rss_mib_end": BenchNumber.json(endRSSMiB), "peak_rss_mib": BenchNumber.json(peakRSSMiB),
        ])
    }
}

/// Resident memory of this process, from `/proc/self/status` (Linux).
enum ResidentMemory {
    /// `VmRSS`: resident now.
    static func currentMiB() -> Double { field("VmRSS") }
    /// `VmHWM`: the most resident so far.
    static func peakMiB() -> Double { field("VmHWM") }

    private static func field(_ name: String) -> Double {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in status.split(separator: "\n") where line.hasPrefix(name + ":") {
            let kibibytes = line.split(separator: " ").dropFirst().first.flatMap { Double($0) } ?? 0
            return kibibytes / 1024
        }
        return 0
    }
}

/// Notes the resident memory once the fetch has stored a given number of records.
final class MemoryProbe: Sendable {
    private let earlyAt: Int
    private let reading = Mutex<Double?>(nil)

    init(earlyAt: Int) { self.earlyAt = max(1, earlyAt) }

    func observe(_ stored: Int) {
        guard stored >= earlyAt else { return }
        reading.withLock { value in
            if value == nil { value = ResidentMemory.currentMiB() }
        }
    }

    var early: Double { reading.withLock { $0 } ?? 0 }
}

// MARK: - The fake paged API and its provider

/// A JSON API of `records` items in pages, served on 127.0.0.1: `GET /items?page=N&page_size=M` answers
/// `{"data": [...], "page": N, "has_next": true|false}`. Each call of ``nextRun()`` changes a share of the items.
final class FakePagedAPI: Sendable {
    let records: Int
    let pageSize: Int
    let changeFraction: Double
    private let run = Mutex(1)

    init(records: Int, pageSize: Int, changeFraction: Double) {
        self.records = records
        self.pageSize = pageSize
        self.changeFraction = changeFraction
    }

    func nextRun() { run.withLock { $0 += 1 } }

    /// Serves the API while `body` runs; `body` gets its base URL.
    func serving<T: Sendable>(_ body: @Sendable (String) async throws -> T) async throws -> T {
        let router = Router()
        router.get("items") { request, _ -> Response in
            let page = request.uri.queryParameters.get("page", as: Int.self) ?? 1
            let size = request.uri.queryParameters.get("page_size", as: Int.self) ?? self.pageSize
            return self.page(page, size: size)
        }
        return try await LocalServer.serving(router, name: "fake API", body)
    }

    private func page(_ page: Int, size: Int) -> Response {
        let run = self.run.withLock { $0 }
        let first = (page - 1) * size + 1
        let last = min(records, page * size)
        let items: [JSONValue] = first <= last ? (first...last).map { index in
            .object([
                "id": .number(Double(index)),
                "title": .string("Event \(index)"),
                "starts_at": .string("2026-12-\(String(format: "%02d", index % 28 + 1))T20:00:00Z"),
                "revision": .number(Double(DemoProvider.revision(index: index, run: run, changeFraction: changeFraction))),
            ])
        } : []
        let body: JSONValue = ["data": .array(items), "page": .number(Double(page)), "has_next": .bool(last < records)]
        return Response(
            status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: body.canonicalText)))
    }
}

/// Reads every page of a ``FakePagedAPI`` through the outbound client, checkpointing after each page.
struct BenchHTTPProvider: ProviderBackend {
    static let providerID = "bench-http"
    let id = Self.providerID
    let name = "Benchmark: paged HTTP API"
    let category = "testing"
    let allowedCredentialTypes: [String] = []
    let configFields: FieldSet = [
        .string("base_url", title: "Base URL", required: true, format: .url),
        .integer("page_size", title: "Page size", default: 100, range: 1...10_000),
    ]

    func fetch(_ context: FetchContext) async throws {
        let base = context.config["base_url"]?.stringValue ?? ""
        let pageSize = context.config["page_size"]?.intValue ?? 100
        var page = (try await context.state.cursor(for: "events")?["page"]?.intValue ?? 0) + 1
        while true {
            let body = try await context.http.getJSON(
                "\(base)/items",
                query: [URLQueryItem(name: "page", value: String(page)), URLQueryItem(name: "page_size", value: String(pageSize))])
            for item in body["data"]?.arrayValue ?? [] {
                guard let id = item["id"]?.intValue else { continue }
                try await context.records.emit(RawRecord(stream: "events", externalID: String(id), data: item))
            }
            try await context.state.checkpoint(["page": .number(Double(page))], for: "events")
            guard body["has_next"] == true else { return }
            page += 1
        }
    }
}

extension Plugin {
    /// The benchmark's own provider; registered only by `integrator bench fetch`.
    static let fetchBench = Plugin(id: "bench", name: "Benchmark providers", providers: [BenchHTTPProvider()])
}

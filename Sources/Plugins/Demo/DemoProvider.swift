// The demo provider: synthetic records with no network, for the quick start, the docs and the benchmarks.
import Foundation
import IntegratorCore

/// Yields `records` synthetic records on stream `stream`, in pages of `page_size`, checkpointing after each page.
///
/// Ids are stable (`demo-1` …), so repeated runs update the same records; each record's `revision` changes on
/// roughly `change_fraction` of the runs. The cursor is `{"run": n, "next": i}` while run `n` is under way (a
/// crashed run resumes at record `i`) and `{"run": n}` once it finished (the next fetch is run `n + 1`).
public struct DemoProvider: ProviderBackend {
    public let id = "demo"
    public let name = "Demo records"
    public let category = "testing"
    public let allowedCredentialTypes: [String] = []
    public let configFields: FieldSet = [
        .integer(
            "records", title: "Records", help: "How many records each run yields.", default: 100, range: 1...1_000_000),
        .string(
            "stream", title: "Stream", help: "The stream name the records belong to.", default: "items", minLength: 1,
            maxLength: 64),
        .number(
            "change_fraction", title: "Change fraction",
            help: "Share of records whose content changes between runs (0 = never, 1 = every run).", default: 0.1,
            range: 0...1),
        // No declared default, so integrations stored before this field existed read back unchanged.
        .integer(
            "page_size", title: "Page size",
            help: "Records between two checkpoints, as if read a page at a time. 1000 when not set.", range: 1...100_000),
    ]

    public init() {}

    public func fetch(_ context: FetchContext) async throws {
        let count = context.config["records"]?.intValue ?? 100
        let stream = context.config["stream"]?.stringValue ?? "items"
        let changeFraction = context.config["change_fraction"]?.doubleValue ?? 0.1
        let pageSize = context.config["page_size"]?.intValue ?? 1000
        let saved = try await context.state.cursor(for: stream)
        let previousRun = saved?["run"]?.intValue ?? 0
        // An unfinished run goes on where it stopped; a finished one is followed by the next run from the start.
        let (run, first) = saved?["next"]?.intValue.map { (previousRun, $0) } ?? (previousRun + 1, 1)
        if first > 1 { context.logger.info("resuming demo run", metadata: ["demo.run": "\(run)", "demo.next": "\(first)"]) }
        var pageStart = first
        while pageStart <= count {
            let pageEnd = min(pageStart + pageSize - 1, count)
            for index in pageStart...pageEnd {
                try await context.records.emit(Self.record(index: index, run: run, stream: stream, changeFraction: changeFraction))
            }
            try Task.checkCancellation()
            pageStart = pageEnd + 1
            let cursor: JSONValue = pageStart <= count ? ["run": .number(Double(run)), "next": .number(Double(pageStart))] : ["run": .number(Double(run))]
            try await context.state.checkpoint(cursor, for: stream)
        }
        if first > count {
            // Fewer records configured than an unfinished run had reached: that run is complete.
            try await context.state.checkpoint(["run": .number(Double(run))], for: stream)
        }
    }

    /// The record `index` as it looks on run `run`. Pure, so tests and benchmarks can predict it.
    public static func record(index: Int, run: Int, stream: String, changeFraction: Double) -> RawRecord {
        RawRecord(
            stream: stream, externalID: "demo-\(index)",
            data: [
                "id": .number(Double(index)),
                "name": .string("Demo item \(index)"),
                "revision": .number(Double(revision(index: index, run: run, changeFraction: changeFraction))),
            ])
    }

    /// The last run (2…`run`) that changed record `index`, or 0 if none did. A hash of (record, run) decides,
    /// so every process computes the same history; walking back from `run` stops at the first change found.
    public static func revision(index: Int, run: Int, changeFraction: Double) -> Int {
        guard changeFraction > 0 else { return 0 }
        var pass = run
        while pass > 1 {
            if changes(index: index, run: pass, changeFraction: changeFraction) { return pass }
            pass -= 1
        }
        return 0
    }

    /// Whether run `run` changes record `index`.
    public static func changes(index: Int, run: Int, changeFraction: Double) -> Bool {
        var hash = UInt64(truncatingIfNeeded: index) &* 0x9E37_79B9_7F4A_7C15 ^ UInt64(truncatingIfNeeded: run) &* 0xC2B2_AE3D_27D4_EB4F
        hash ^= hash >> 29
        hash = hash &* 0xBF58_476D_1CE4_E5B9
        hash ^= hash >> 32
        return Double(hash % 1_000_000) / 1_000_000 < changeFraction
    }
}

extension Plugin {
    /// The demo provider.
    public static let demo = Plugin(
        id: "demo", name: "Demo", summary: "Synthetic records without network access, for trying things out and benchmarks.",
        providers: [DemoProvider()]
    )
}

// How far a fetch has come: pages, records new/updated/unchanged per stream, elapsed time. Also its final summary.
import Foundation

/// A fetch's counts so far, or at its end. Stored as the `integration.fetch` task's result and printed by `integrator run`.
public struct FetchSummary: Sendable, Equatable {
    public var integrationID: String
    public var integrationName: String
    public var provider: String
    /// Checkpoints saved. Providers checkpoint once per page they read, so this counts pages.
    public var pages = 0
    /// Records the provider yielded, including any it yielded twice within one batch.
    public var received = 0
    /// What the stored records made of them, per stream.
    public var streams: [String: RecordCounts] = [:]
    public var elapsed: Duration = .zero

    public init(integrationID: String, integrationName: String, provider: String) {
        self.integrationID = integrationID
        self.integrationName = integrationName
        self.provider = provider
    }

    /// The counts of every stream together.
    public var records: RecordCounts {
        streams.values.reduce(into: RecordCounts()) { $0 += $1 }
    }

    public var elapsedSeconds: Double { elapsed.seconds }

    /// Records written per second so far.
    public var recordsPerSecond: Double {
        elapsedSeconds > 0 ? Double(records.total) / elapsedSeconds : 0
    }

    /// `{"integration", "provider", "pages", "received", "new", "updated", "unchanged", "elapsed_ms", "streams": {…}}`.
    public var json: JSONValue {
        func counts(_ counts: RecordCounts) -> [String: JSONValue] {
            ["new": .number(Double(counts.new)), "updated": .number(Double(counts.updated)), "unchanged": .number(Double(counts.unchanged))]
        }
        var object: [String: JSONValue] = [
            "integration": .string(integrationID),
            "provider": .string(provider),
            "pages": .number(Double(pages)),
            "received": .number(Double(received)),
            "elapsed_ms": .number((elapsedSeconds * 1000).rounded()),
            "streams": .object(streams.mapValues { .object(counts($0)) }),
        ]
        object.merge(counts(records)) { _, new in new }
        return .object(object)
    }

    /// One line for people: `12 pages, 6000 records: 5000 new, 400 updated, 600 unchanged in 1.3 s`.
    public var line: String {
        let total = records
        let page = pages == 1 ? "page" : "pages"
        return "\(pages) \(page), \(total.total) records: \(total.new) new, \(total.updated) updated, \(total.unchanged) unchanged"
            + " in \(String(format: "%.1f", elapsedSeconds)) s"
    }
}

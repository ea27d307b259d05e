// `integrator bench admin`: how long the admin's task-runs page takes to render with many runs behind it.
import ArgumentParser
import Foundation
import IntegratorCore

struct AdminBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "admin",
        abstract: "Time the admin web UI's task-runs page with many runs in the store.",
        discussion: """
            Applies migrations and writes --runs finished runs (80 % succeeded, 15 % failed, 5 % dead) spread over a day, \
            unless the store holds that many already. Then renders the task-runs page --rounds times for each of: no filter, \
            the failed and dead states, one task and one queue, and the third page of the failed runs: the queries and the \
            templates, as a request gets them, without the socket. Reports p50 and p99 per view. Point it at a database of \
            its own (--database-url); uses a throwaway secret key when INTEGRATOR_SECRET_KEY is not set.
            """)

    @Option(help: "Runs in the store.")
    var runs = 100_000

    @Option(help: "Renders per view.")
    var rounds = 50

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    @OptionGroup var options: GlobalOptions

    func validate() throws {
        guard (1...10_000_000).contains(runs) else { throw ValidationError("--runs must be from 1 to 10000000") }
        guard (1...10_000).contains(rounds) else { throw ValidationError("--rounds must be from 1 to 10000") }
    }

    func run() async throws {
        let (runs, rounds, json) = (self.runs, self.rounds, self.json)
        try await reportingErrors {
            var settings = try options.settings(overriding: [:])
            try BenchCommand.useEphemeralKeyIfUnset(&settings)
            let database = settings.database.redacted
            let report = try await withRuntime(settings, migrate: true) { runtime in
                let existing = try await runtime.runs.countByState().values.reduce(0, +)
                let fillStart = ContinuousClock.now
                if existing < runs { try await AdminBenchmark.fillRuns(runtime, count: runs - existing) }
                let fillSeconds = (ContinuousClock.now - fillStart).seconds
                let templates = try AdminBenchmarkTemplates()
                var views: [(name: String, query: String)] = [
                    ("all runs", ""), ("failed + dead", "state=failed&state=dead"),
                    ("task + queue", "task=webhooks.deliver&queue=low"),
                ]
                // The third page: follow two "next page" links the way a browser would.
                var query = "state=failed"
                for _ in 0..<2 {
                    let html = try await AdminBenchmark.renderTaskRuns(runtime, query: query, templates: templates)
                    guard let cursor = Self.nextCursor(in: html) else { break }
                    query = "state=failed&cursor=\(cursor)"
                }
                views.append(("failed, page 3", query))
                var lines: [AdminBenchView] = []
                for view in views {
                    var samples: [Double] = []
                    var bytes = 0
                    for _ in 0..<rounds {
                        let start = ContinuousClock.now
                        bytes = try await AdminBenchmark.renderTaskRuns(runtime, query: view.query, templates: templates).utf8.count
                        samples.append((ContinuousClock.now - start).seconds * 1000)
                    }
                    samples.sort()
                    lines.append(AdminBenchView(
                        name: view.name, p50: QueueBenchPlan.percentile(samples, 0.50), p99: QueueBenchPlan.percentile(samples, 0.99),
                        bytes: bytes))
                }
                return AdminBenchReport(
                    database: database, runs: max(existing, runs), filled: max(0, runs - existing),
                    fillSeconds: fillSeconds, rounds: rounds, views: lines)
            }
            print(json ? report.json.encodedString() : report.text)
        }
    }

    /// The `cursor` of the page's "next page" link.
    static func nextCursor(in html: String) -> String? {
        guard let next = html.range(of: "rel=\"next\"") else { return nil }
        let before = html[..<next.lowerBound]
        guard let cursor = before.range(of: "cursor=", options: .backwards) else { return nil }
        return String(before[cursor.upperBound...].prefix { $0 != "&" && $0 != "\"" })
    }
}

struct AdminBenchView: Sendable {
    var name: String
    var p50: Double
    var p99: Double
    var bytes: Int
}

struct AdminBenchReport: Sendable {
    var database: String
    var runs: Int
    var filled: Int
    var fillSeconds: Double
    var rounds: Int
    var views: [AdminBenchView]

    var text: String {
        var lines = [
            "integrator admin benchmark: database \(database)",
            "  \(runs) runs in the store (\(filled) written in \(BenchNumber.text(fillSeconds, 1)) s); \(rounds) renders per view",
        ]
        for view in views {
            lines.append(
                "  \(view.name.padding(toLength: 16, withPad: " ", startingAt: 0)) p50 \(BenchNumber.text(view.p50, 1)) ms, p99 \(BenchNumber.text(view.p99, 1)) ms  (\(view.bytes / 1024) KiB of HTML)")
        }
        return lines.joined(separator: "\n")
    }

    var json: JSONValue {
        [
            "system": "integrator", "benchmark": "admin", "database": .string(database), "runs": .number(Double(runs)),
            "rounds": .number(Double(rounds)),
            "views": .array(views.map { view in
                ["view": .string(view.name), "p50_ms": BenchNumber.json(view.p50), "p99_ms": BenchNumber.json(view.p99),
                 "html_bytes": .number(Double(view.bytes))]
            }),
        ]
    }
}

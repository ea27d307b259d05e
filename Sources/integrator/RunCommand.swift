// `integrator run <integration>`: one fetch in the foreground, with live progress and a final summary.
import ArgumentParser
import Foundation
import IntegratorCore
import Synchronization

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Fetch one integration now, in this process, showing progress as it goes.",
        discussion: """
            Runs the integration's provider exactly as a worker runs the integration.fetch task, but in the \
            foreground and without a queue: records are stored and diffed, change events are written, and the fetch \
            goes on from the integration's saved state. Prints a progress line at least every --interval seconds \
            (pages, records new/updated/unchanged, elapsed) and a summary at the end; exits 1 if the fetch fails. \
            Needs INTEGRATOR_SECRET_KEY, or the key `integrator dev` keeps in --data-directory.
            """)

    @Argument(help: "The integration's id or name.")
    var integration: String

    @Option(help: "Seconds between progress lines; 0 prints one after every write.")
    var interval: Double = 1

    @Flag(help: "Print the summary as one JSON object on standard output (progress goes to standard error).")
    var json = false

    @Option(help: "Where `integrator dev` keeps its generated secret key, used when INTEGRATOR_SECRET_KEY is not set.")
    var dataDirectory = "./integrator-data"

    @OptionGroup var options: GlobalOptions

    func validate() throws {
        guard interval >= 0, interval <= 3600 else { throw ValidationError("--interval must be from 0 to 3600 seconds") }
    }

    func run() async throws {
        try await reportingErrors {
            var settings = try options.settings()
            let devKey = URL(fileURLWithPath: dataDirectory).appendingPathComponent("secret.key")
            if settings.secretKeys == nil, FileManager.default.fileExists(atPath: devKey.path) {
                settings.secretKeys = try DevSecretKey.loadOrCreate(in: URL(fileURLWithPath: dataDirectory))
            }
            let (wanted, json) = (integration, self.json)
            let printer = ProgressPrinter(interval: .milliseconds(Int((interval * 1000).rounded())), toStandardError: json)
            try await withRuntime(settings) { runtime in
                let integration = try await runtime.fetches.integration(idOrName: wanted)
                printer.say("Fetching '\(integration.name)' (provider \(integration.provider), integration \(integration.id))")
                let summary: FetchSummary
                do {
                    summary = try await printer.ticking {
                        try await runtime.fetches.run(
                            integrationID: integration.id, logger: runtime.logger, onProgress: printer.update)
                    }
                } catch let failure as FetchFailure {
                    throw RunFailure(description: "fetch of '\(integration.name)' failed: \(failure)")
                }
                if json {
                    print(summary.json.encodedString())
                } else {
                    printer.say("Done: \(summary.line) (\(Int(summary.recordsPerSecond.rounded())) records/s)")
                }
            }
        }
    }
}

/// A failed fetch, told in one line.
private struct RunFailure: Error, CustomStringConvertible {
    var description: String
}

/// Prints progress lines: after a write when the last line is at least `interval` old, and on a timer while
/// nothing is written (a slow page), so the elapsed time keeps moving.
private final class ProgressPrinter: Sendable {
    private struct State {
        var latest: FetchSummary?
        var lastLine: ContinuousClock.Instant?
    }

    private let interval: Duration
    private let toStandardError: Bool
    private let started = ContinuousClock.now
    private let state = Mutex(State())

    init(interval: Duration, toStandardError: Bool) {
        self.interval = interval
        self.toStandardError = toStandardError
    }

    func say(_ text: String) {
        if toStandardError {
            FileHandle.standardError.write(Data((text + "\n").utf8))
        } else {
            printNow(text)
        }
    }

    /// Called after every write of the fetch.
    func update(_ summary: FetchSummary) {
        let now = ContinuousClock.now
        let due = state.withLock { state -> Bool in
            state.latest = summary
            guard state.lastLine.map({ now - $0 >= interval }) ?? true else { return false }
            state.lastLine = now
            return true
        }
        if due { say(Self.line(summary, elapsed: now - started)) }
    }

    /// Runs `body` while a timer prints the latest counts whenever no line was printed for `interval`.
    func ticking<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
        guard interval > .zero else { return try await body() }
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await body() }
            group.addTask {
                while !Task.isCancelled {
                    try await Task.sleep(for: self.interval)
                    self.tick()
                }
                return nil
            }
            defer { group.cancelAll() }
            while let result = try await group.next() {
                if let value = result { return value }
            }
            throw CancellationError()
        }
    }

    private func tick() {
        let now = ContinuousClock.now
        let (due, latest) = state.withLock { state -> (Bool, FetchSummary?) in
            guard state.lastLine.map({ now - $0 >= interval }) ?? true else { return (false, nil) }
            state.lastLine = now
            return (true, state.latest)
        }
        guard due else { return }
        say(latest.map { Self.line($0, elapsed: now - started) } ?? "  \(Self.seconds(now - started))  waiting for the first records")
    }

    private static func line(_ summary: FetchSummary, elapsed: Duration) -> String {
        let counts = summary.records
        return "  \(seconds(elapsed))  \(summary.pages) \(summary.pages == 1 ? "page" : "pages"), \(counts.total) records:"
            + " \(counts.new) new, \(counts.updated) updated, \(counts.unchanged) unchanged"
    }

    private static func seconds(_ duration: Duration) -> String {
        let (whole, fraction) = duration.components
        return String(format: "%6.1f s", Double(whole) + Double(fraction) / 1e18)
    }
}

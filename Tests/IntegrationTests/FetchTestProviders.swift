// Providers that exist only in the fetch pipeline's tests: a paged source that can fail mid-page, and one that leaks its secret.
import IntegratorCore
import Logging
import Synchronization

/// Pages through `pages` pages of `page_size` records per stream, checkpointing `{"page": n}` after each page.
/// With `fail_on_page`, it fails halfway through that page, after yielding its first half.
struct PagedTestProvider: ProviderBackend {
    let id = "paged-test"
    let name = "Paged test source"
    let category = "testing"
    let allowedCredentialTypes: [String] = []
    let configFields: FieldSet = [
        .integer("pages", title: "Pages", default: 5, range: 1...1000),
        .integer("page_size", title: "Page size", default: 10, range: 2...1000),
        .integer("fail_on_page", title: "Fail on page", range: 1...1000),
        .choices("streams", title: "Streams", options: ["rows", "extras"], default: ["rows"]),
        .string("label", title: "Label", help: "Copied into every record, so changing it changes them all.", default: "one"),
    ]

    func fetch(_ context: FetchContext) async throws {
        let pages = context.config["pages"]?.intValue ?? 5
        let pageSize = context.config["page_size"]?.intValue ?? 10
        let failOnPage = context.config["fail_on_page"]?.intValue
        let label = context.config["label"] ?? "one"
        for stream in context.config["streams"]?.arrayValue?.compactMap(\.stringValue) ?? ["rows"] {
            let start = (try await context.state.cursor(for: stream)?["page"]?.intValue ?? 0) + 1
            guard start <= pages else { continue }
            for page in start...pages {
                for item in 1...pageSize {
                    if page == failOnPage, item > pageSize / 2 {
                        throw PluginError("the source answered 503 on page \(page)")
                    }
                    try await context.records.emit(
                        RawRecord(
                            stream: stream, externalID: "\(stream)-\(page)-\(item)",
                            data: ["page": .number(Double(page)), "item": .number(Double(item)), "label": label]))
                }
                try await context.state.checkpoint(["page": .number(Double(page))], for: stream)
            }
        }
    }

    /// Renames `item` to `position`, to show that what is stored is the normalized shape.
    func normalize(_ record: RawRecord) throws -> RawRecord {
        var normalized = record
        normalized.data = ["page": record.data["page"] ?? .null, "position": record.data["item"] ?? .null, "label": record.data["label"] ?? .null]
        return normalized
    }
}

/// Reads `parts` parts of a source at once, from child tasks that emit and checkpoint concurrently, each record of
/// a part twice (as a source with overlapping pages would).
struct ConcurrentTestProvider: ProviderBackend {
    let id = "concurrent-test"
    let name = "Concurrent test source"
    let category = "testing"
    let allowedCredentialTypes: [String] = []
    let configFields: FieldSet = [
        .integer("parts", title: "Parts", default: 4, range: 1...16),
        .integer("per_part", title: "Records per part", default: 300, range: 1...10_000),
    ]

    func fetch(_ context: FetchContext) async throws {
        let parts = context.config["parts"]?.intValue ?? 4
        let perPart = context.config["per_part"]?.intValue ?? 300
        try await withThrowingTaskGroup(of: Void.self) { group in
            for part in 1...parts {
                group.addTask {
                    for item in 1...perPart {
                        let record = RawRecord(
                            stream: "part-\(part)", externalID: String(item), data: ["part": .number(Double(part)), "item": .number(Double(item))])
                        try await context.records.emit(record)
                        try await context.records.emit(record)
                        if item % 100 == 0 { try await context.state.checkpoint(["done": .number(Double(item))], for: "part-\(part)") }
                    }
                }
            }
            try await group.waitForAll()
        }
    }
}

/// Needs bearer credentials, then does everything a careless plugin could do with them: logs the token in the
/// message and in metadata, and fails with it in the error message.
struct LeakyProvider: ProviderBackend {
    let id = "leaky"
    let name = "Leaky test provider"
    let category = "testing"
    let allowedCredentialTypes = ["http-bearer"]
    let configFields: FieldSet = []

    func fetch(_ context: FetchContext) async throws {
        let token = context.credentials?.secret("token")?.reveal() ?? "none"
        var logger = context.logger
        logger[metadataKey: "plugin.token"] = "\(token)"
        logger.warning("calling the service with token \(token)", metadata: ["auth": ["header": "Bearer \(token)"]])
        throw PluginError("the service refused token \(token)", permanent: true)
    }
}

extension Plugin {
    static let fetchTesting = Plugin(
        id: "fetch-testing", name: "Fetch test providers", providers: [PagedTestProvider(), ConcurrentTestProvider(), LeakyProvider()])
}

/// Lines a ``CapturingLogHandler`` kept; shared by every copy of the handler (loggers copy their handler).
final class CapturedLog: Sendable {
    struct Line: Sendable {
        var level: Logger.Level
        var message: String
        var metadata: String

        var text: String { "\(message) \(metadata)" }
    }

    private let captured = Mutex<[Line]>([])

    func record(_ line: Line) { captured.withLock { $0.append(line) } }

    /// Every line as text (message and metadata), oldest first.
    var texts: [String] { captured.withLock { $0.map(\.text) } }
    var text: String { texts.joined(separator: "\n") }

    func lines(at level: Logger.Level) -> [Line] { captured.withLock { $0.filter { $0.level == level } } }

    /// Error and warning lines as text, also for messages of failed expectations.
    var errors: [String] { lines(at: .error).map(\.text) }
    var warnings: [String] { lines(at: .warning).map(\.text) }

    /// A logger at trace level whose every line (message and metadata) lands here.
    var logger: Logger {
        Logger(label: "captured") { _ in CapturingLogHandler(log: self) }
    }
}

struct CapturingLogHandler: LogHandler {
    let log: CapturedLog
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { _, new in new }
        log.record(.init(level: event.level, message: "\(event.message)", metadata: "\(merged)"))
    }
}

// Keeps an integration's secret values out of what a fetch logs and reports, whatever a plugin does with them.
import Logging

/// Replaces every occurrence of known secret values with ``Secret/mask``.
///
/// ``Secret`` already masks itself; this catches the values a plugin revealed (to build a header, say) and then
/// put into a log line or an error message by mistake.
public struct SecretRedactor: Sendable {
    /// Values shorter than this are left alone: masking every "ab" in every line would make logs unreadable
    /// while protecting nothing that deserves the name of a secret.
    public static let minimumLength = 4

    private let values: [String]

    public init(_ secrets: [Secret]) {
        // Longest first, so a secret that contains another is masked whole.
        values = Set(secrets.map { $0.reveal() }.filter { $0.count >= Self.minimumLength }).sorted { $0.count > $1.count }
    }

    /// Redacts the secret values of `credentials` (none when there are no credentials).
    public init(_ credentials: CredentialValues?) {
        self.init(credentials.map { Array($0.secretValues.values) } ?? [])
    }

    public var isEmpty: Bool { values.isEmpty }

    public func redact(_ text: String) -> String {
        var result = text
        for value in values where result.contains(value) {
            result = result.replacingOccurrences(of: value, with: Secret.mask)
        }
        return result
    }

    public func redact(_ value: Logger.MetadataValue) -> Logger.MetadataValue {
        switch value {
        case .string(let text): .string(redact(text))
        case .stringConvertible(let item): .string(redact(item.description))
        case .array(let items): .array(items.map(redact))
        case .dictionary(let members): .dictionary(members.mapValues(redact))
        }
    }

    /// `logger` with a handler that redacts messages and metadata before they reach the real handler.
    public func wrap(_ logger: Logger) -> Logger {
        guard !isEmpty else { return logger }
        var wrapped = logger
        wrapped.handler = RedactingLogHandler(upstream: logger.handler, redactor: self)
        return wrapped
    }
}

/// Passes log events on with secret values masked in the message and in every metadata value, including
/// metadata set on the logger after it was handed out.
struct RedactingLogHandler: LogHandler {
    var upstream: any LogHandler
    let redactor: SecretRedactor
    /// Metadata set through this handler, kept here so it is redacted too (the upstream handler prints its own as is).
    var metadata: Logger.Metadata = [:]

    var logLevel: Logger.Level {
        get { upstream.logLevel }
        set { upstream.logLevel = newValue }
    }

    var metadataProvider: Logger.MetadataProvider? {
        get { upstream.metadataProvider }
        set { upstream.metadataProvider = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] ?? upstream[metadataKey: key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var event = event
        event.message = "\(redactor.redact(event.message.description))"
        let merged = metadata.merging(event.metadata ?? [:]) { _, new in new }
        event.metadata = merged.isEmpty ? nil : merged.mapValues(redactor.redact)
        upstream.log(event: event)
    }
}

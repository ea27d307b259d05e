// Process-wide logging: human-readable text or one JSON object per line, on standard error.
import Foundation
import Logging
import Synchronization

public enum LogSetup {
    /// Installs the log handler once per process. Later calls are ignored (swift-log allows a single bootstrap).
    public static func bootstrap(level: Logger.Level, format: Settings.LogFormat) {
        let once = bootstrapped.withLock { done -> Bool in
            defer { done = true }
            return !done
        }
        guard once else { return }
        LoggingSystem.bootstrap { label in
            var handler: any LogHandler =
                switch format {
                case .text: StreamLogHandler.standardError(label: label)
                case .json: JSONLogHandler(label: label)
                }
            handler.logLevel = level
            return handler
        }
    }

    private static let bootstrapped = Mutex(false)
}

/// Writes `{"ts", "level", "label", "message", …metadata}` lines to standard error.
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    let label: String

    public init(label: String) { self.label = label }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var object: [String: JSONValue] = [
            "ts": .string(Date().formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))),
            "level": .string(event.level.rawValue),
            "label": .string(label),
            "message": .string(event.message.description),
        ]
        for (key, value) in metadata.merging(event.metadata ?? [:], uniquingKeysWith: { _, new in new }) {
            object[key] = .string(value.description)
        }
        FileHandle.standardError.write(Data((JSONValue.object(object).encodedString() + "\n").utf8))
    }
}

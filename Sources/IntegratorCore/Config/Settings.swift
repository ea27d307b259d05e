// Settings from the environment, a `.env` file and command-line flags, checked once at startup.
import Foundation
import Logging

/// Everything a process reads from its environment. Build it with ``Settings/load(environment:dotEnv:overrides:)``.
public struct Settings: Sendable {
    /// Where the store lives. Default: `sqlite://./integrator-data/integrator.sqlite`.
    public var database: DatabaseLocation
    /// Which broker carries tasks: `sql` (default) or an `amqp://` URL.
    public var broker: BrokerLocation
    /// Keys that encrypt secrets and sign tokens; `nil` when none was configured.
    public var secretKeys: SecretKeyRing?
    /// A static admin bearer token for machine clients.
    public var apiToken: Secret?
    /// Default `127.0.0.1`.
    public var httpHost: String
    /// Default `8000`; `0` picks a free port.
    public var httpPort: Int
    /// Largest request body accepted, in bytes. Default 1 MiB.
    public var maxBodySize: Int
    public var logLevel: Logger.Level
    public var logFormat: LogFormat
    /// Private, loopback and other guarded ranges that outbound HTTP may reach anyway. Default none.
    public var outboundAllowedRanges: [IPAddressRange]
    /// Where the API docs pages load Swagger UI's and Redoc's files from: `nil` for their public CDN, else a URL or an
    /// absolute path holding `swagger-ui-bundle.js`, `swagger-ui.css` and `redoc.standalone.js`.
    public var docsAssetsURL: String? = nil
    /// A bearer token that `/metrics` requires (besides the API token); `INTEGRATOR_METRICS_TOKEN`.
    public var metricsToken: Secret? = nil
    /// Where `worker` and `beat` serve `/metrics`; `INTEGRATOR_METRICS_HOST`, default `127.0.0.1`.
    public var metricsHost = "127.0.0.1"
    /// The port of that listener (`0` picks a free one); `nil`, the default, runs none. `INTEGRATOR_METRICS_PORT`.
    public var metricsPort: Int? = nil

    public init(
        database: DatabaseLocation = .defaultSQLite, broker: BrokerLocation = .sql, secretKeys: SecretKeyRing? = nil,
        apiToken: Secret? = nil, httpHost: String = "127.0.0.1", httpPort: Int = 8000, maxBodySize: Int = 1 << 20,
        logLevel: Logger.Level = .info, logFormat: LogFormat = .text, outboundAllowedRanges: [IPAddressRange] = []
    ) {
        self.database = database
        self.broker = broker
        self.secretKeys = secretKeys
        self.apiToken = apiToken
        self.httpHost = httpHost
        self.httpPort = httpPort
        self.maxBodySize = maxBodySize
        self.logLevel = logLevel
        self.logFormat = logFormat
        self.outboundAllowedRanges = outboundAllowedRanges
    }

    /// Log output shape.
    public enum LogFormat: String, Sendable {
        case text
        case json
    }

    /// Reads settings. Later sources win: `.env`, then the process environment, then `overrides` (command-line flags).
    /// - Throws: ``ConfigurationError`` naming the first variable with a bad value and what it expected.
    public static func load(
        environment: [String: String] = ProcessInfo.processInfo.environment,
        dotEnv: URL? = URL(fileURLWithPath: ".env"),
        overrides: [String: String] = [:]
    ) throws(ConfigurationError) -> Settings {
        var values: [String: String] = [:]
        if let dotEnv, let text = try? String(contentsOf: dotEnv, encoding: .utf8) {
            values.merge(try DotEnv.parse(text), uniquingKeysWith: { _, new in new })
        }
        values.merge(environment, uniquingKeysWith: { _, new in new })
        values.merge(overrides, uniquingKeysWith: { _, new in new })
        return try Settings(values: values)
    }

    /// Parses already merged values.
    public init(values: [String: String]) throws(ConfigurationError) {
        func value(_ name: String) -> String? {
            guard let text = values[name]?.trimmingCharacters(in: .whitespaces), !text.isEmpty else { return nil }
            return text
        }
        self.init()
        if let text = value("INTEGRATOR_DATABASE_URL") {
            database = try DatabaseLocation(parsing: text, variable: "INTEGRATOR_DATABASE_URL")
        }
        if let text = value("INTEGRATOR_BROKER_URL") {
            broker = try BrokerLocation(parsing: text, variable: "INTEGRATOR_BROKER_URL")
        }
        if let text = value("INTEGRATOR_SECRET_KEY") {
            secretKeys = try SecretKeyRing(parsing: text, variable: "INTEGRATOR_SECRET_KEY")
        }
        if let text = value("INTEGRATOR_API_TOKEN") ?? value("API_TOKEN") {
            guard text.count >= 16 else {
                throw ConfigurationError(variable: "INTEGRATOR_API_TOKEN", expected: "at least 16 characters")
            }
            apiToken = Secret(text)
        }
        if let text = value("INTEGRATOR_HTTP_HOST") { httpHost = text }
        if let text = value("INTEGRATOR_HTTP_PORT") {
            guard let port = Int(text), (0...65535).contains(port) else {
                throw ConfigurationError(variable: "INTEGRATOR_HTTP_PORT", expected: "a port number from 0 to 65535", got: text)
            }
            httpPort = port
        }
        if let text = value("INTEGRATOR_MAX_BODY_SIZE") {
            guard let size = Int(text), size >= 1024 else {
                throw ConfigurationError(variable: "INTEGRATOR_MAX_BODY_SIZE", expected: "a size in bytes of at least 1024", got: text)
            }
            maxBodySize = size
        }
        if let text = value("LOG_LEVEL") {
            guard let level = Logger.Level(rawValue: text.lowercased()) else {
                throw ConfigurationError(
                    variable: "LOG_LEVEL", expected: "one of trace, debug, info, notice, warning, error, critical", got: text)
            }
            logLevel = level
        }
        if let text = value("INTEGRATOR_OUTBOUND_ALLOW_CIDRS") {
            outboundAllowedRanges = try text.split(separator: ",").map { item throws(ConfigurationError) in
                let cidr = item.trimmingCharacters(in: .whitespaces)
                guard let range = IPAddressRange(cidr) else {
                    throw ConfigurationError(
                        variable: "INTEGRATOR_OUTBOUND_ALLOW_CIDRS",
                        expected: "comma-separated CIDRs such as 10.0.0.0/8 or fd00::/8 (a network address, prefix up to 32 or 128)",
                        got: cidr)
                }
                return range
            }
        }
        try readMetricsSettings(value)
        if let text = value("INTEGRATOR_DOCS_ASSETS_URL") {
            guard let url = APIDocsPages.assetsBase(text) else {
                throw ConfigurationError(
                    variable: "INTEGRATOR_DOCS_ASSETS_URL",
                    expected: "an http(s) URL or an absolute path (/docs-assets) without quotes, spaces or angle brackets", got: text)
            }
            docsAssetsURL = url
        }
        if let text = value("LOG_FORMAT") {
            guard let format = LogFormat(rawValue: text.lowercased()) else {
                throw ConfigurationError(variable: "LOG_FORMAT", expected: "text or json", got: text)
            }
            logFormat = format
        }
    }
}

/// A setting with a bad value. Its description is one line: the variable, what was expected, and the value when it is safe to show.
public struct ConfigurationError: Error, Sendable, CustomStringConvertible {
    public var variable: String
    public var expected: String
    /// The offending value, only for settings that cannot hold a secret.
    public var got: String?

    public init(variable: String, expected: String, got: String? = nil) {
        self.variable = variable
        self.expected = expected
        self.got = got
    }

    public var description: String {
        "\(variable): expected \(expected)" + (got.map { ", got '\($0)'" } ?? "")
    }
}

/// Reads `KEY=value` lines; `#` comments, blank lines, `export ` prefixes and single or double quotes are allowed.
enum DotEnv {
    static func parse(_ text: String) throws(ConfigurationError) -> [String: String] {
        var result: [String: String] = [:]
        for (number, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            var line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            if line.hasPrefix("export ") { line = String(line.dropFirst(7)) }
            guard let equals = line.firstIndex(of: "=") else {
                throw ConfigurationError(variable: ".env line \(number + 1)", expected: "KEY=value")
            }
            let key = line[..<equals].trimmingCharacters(in: .whitespaces)
            var value = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            if value.count >= 2, let first = value.first, first == "\"" || first == "'", value.last == first {
                value = String(value.dropFirst().dropLast())
            }
            result[key] = value
        }
        return result
    }
}

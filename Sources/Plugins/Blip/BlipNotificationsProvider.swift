// The `blip-notifications` provider: a push provider. Each run of its integration (every 5 minutes by schedule)
// takes pending notifications from the outbox or from a business table and sends them through BLiP.
import Foundation
import IntegratorCore
import Logging

/// Where a run takes its notifications from.
public enum BlipSource: String, Sendable, CaseIterable {
    /// The plugin's own table, filled through `POST /api/v1/notifications`.
    case outbox
    /// A table in the customer's PostgreSQL database (the seed's own), read and written back through a mapping.
    case table
}

public struct BlipNotificationsProvider: ProviderBackend {
    public static let providerID = "blip-notifications"
    /// The schedule a new integration is offered: the seed's job ran every 5 minutes.
    public static let defaultSchedule = "*/5 * * * *"

    public let id = Self.providerID
    public let name = "BLiP WhatsApp notifications"
    public let category = "messaging"
    public let allowedCredentialTypes = ["blip"]
    public var suggestedSchedule: String? { Self.defaultSchedule }
    public let configFields: FieldSet = [
        .choice(
            "source", title: "Source", options: BlipSource.allCases.map(\.rawValue),
            help: "outbox: notifications created through the API; table: pending rows of a PostgreSQL table.", default: "outbox"),
        .integer("batch_size", title: "Batch size", help: "Notifications one run sends at most.", default: 500, range: 1...20_000),
        .integer("concurrency", title: "Concurrency", help: "Requests to BLiP in flight at once.", default: 32, range: 1...256),
        .integer(
            "identity_cache_days", title: "Identity cache (days)", help: "How long a phone's WhatsApp account is reused without a new lookup.",
            default: 7, range: 0...365),
        .integer(
            "max_attempts", title: "Attempts", help: "Tries before a rate limit, a 5xx or a timeout fails a notification.", default: 8,
            range: 1...50),
        .integer(
            "requests_per_second", title: "Requests per second",
            help: "A ceiling on requests to BLiP with these credentials; none by default.", range: 1...10_000),
        // The table source.
        .string("database_credentials", title: "Database credentials", help: "Id of `blip-database` credentials (table source).", maxLength: 100),
        .string("table", title: "Table", help: "The notifications table, optionally schema-qualified (table source).", maxLength: 127),
        .string("id_column", title: "Id column", maxLength: 63),
        .string("phone_column", title: "Phone column", maxLength: 63),
        .string("status_column", title: "Status column", maxLength: 63),
        Field(
            name: "parameter_columns", kind: .array(of: .string), title: "Parameter columns",
            help: "Columns whose values fill the template's body parameters, in order (table source)."),
        .string("pending_value", title: "Pending status", help: "The seed's 1.", default: "1", maxLength: 100),
        .string("sent_value", title: "Sent status", help: "The seed's 2.", default: "2", maxLength: 100),
        .string("failed_value", title: "Failed status", default: "3", maxLength: 100),
        .string("template", title: "Template", help: "The template's name (table source).", maxLength: 512),
        .string("namespace", title: "Namespace", help: "The template's namespace (table source).", maxLength: 200),
        .string("language", title: "Language", default: "pt_BR", maxLength: 20),
    ]

    public init() {}

    public func validate(config: [String: JSONValue]) -> [FieldIssue] {
        guard config["source"]?.stringValue == BlipSource.table.rawValue else { return [] }
        var issues: [FieldIssue] = []
        for name in ["database_credentials", "table", "id_column", "phone_column", "status_column", "template", "namespace"]
        where (config[name]?.stringValue ?? "").isEmpty {
            issues.append(FieldIssue(field: "config.\(name)", message: "is required when source is table"))
        }
        for name in ["table"] {
            if let text = config[name]?.stringValue, !text.isEmpty, !BlipTableMapping.isQualifiedName(text) {
                issues.append(FieldIssue(field: "config.\(name)", message: "must be a table name (letters, digits, _; schema.table allowed)"))
            }
        }
        for name in ["id_column", "phone_column", "status_column"] {
            if let text = config[name]?.stringValue, !text.isEmpty, !BlipTableMapping.isName(text) {
                issues.append(FieldIssue(field: "config.\(name)", message: "must be a column name (letters, digits, _)"))
            }
        }
        let parameters = config["parameter_columns"]?.arrayValue ?? []
        if parameters.count > BlipService.maxParameters {
            issues.append(FieldIssue(field: "config.parameter_columns", message: "must have at most \(BlipService.maxParameters) items"))
        }
        for (index, item) in parameters.enumerated() where !BlipTableMapping.isName(item.stringValue ?? "") {
            issues.append(FieldIssue(field: "config.parameter_columns[\(index)]", message: "must be a column name (letters, digits, _)"))
        }
        return issues
    }

    static func settings(_ config: [String: JSONValue]) -> BlipSendSettings {
        BlipSendSettings(
            batchSize: config["batch_size"]?.intValue ?? 500, concurrency: config["concurrency"]?.intValue ?? 32,
            identityTTL: Double(config["identity_cache_days"]?.intValue ?? 7) * 86_400, maxAttempts: config["max_attempts"]?.intValue ?? 8)
    }

    public func fetch(_ context: FetchContext) async throws {
        guard let environment = context.environment else {
            throw PluginError("blip-notifications sends through the plugin environment; run it with a runtime", permanent: true)
        }
        var http = context.http
        http.rateLimit = context.config["requests_per_second"]?.intValue.map { RateLimit(requestsPerSecond: Double($0), burst: $0) }
        let run = BlipRun(
            environment: environment, integrationID: context.integrationID, credentialsID: http.credentialsID ?? context.integrationID,
            api: BlipAPI(http: http), settings: Self.settings(context.config), logger: context.logger)
        let summary: BlipRunSummary
        if context.config["source"]?.stringValue == BlipSource.table.rawValue {
            let mapping = try BlipTableMapping(config: context.config)
            summary = try await run.sendTable(mapping, databaseCredentialsID: context.config["database_credentials"]?.stringValue ?? "")
        } else {
            summary = try await run.sendOutbox()
        }
        context.logger.info("blip notifications run finished", metadata: summary.metadata)
    }
}

/// One run of an integration: claims, sends and records, a chunk at a time, until the batch is used or nothing is due.
public struct BlipRun: Sendable {
    let environment: PluginEnvironment
    let integrationID: String
    let credentialsID: String
    let api: BlipAPI
    let settings: BlipSendSettings
    let logger: Logger
    /// Called after a chunk's sends and before their outcomes are written; tests throw from it to play a worker
    /// that dies in between.
    var afterSend: @Sendable () async throws -> Void = {}

    /// Notifications claimed and sent together: one claim, one identity read, one write of outcomes.
    static let chunkSize = 500

    /// A run over the outbox.
    public func sendOutbox() async throws -> BlipRunSummary {
        let store = BlipStore()
        let engine = environment.database.engine
        var summary = BlipRunSummary()
        while summary.claimed < settings.batchSize {
            try Task.checkCancellation()
            let now = environment.clock.now()
            let limit = min(Self.chunkSize, settings.batchSize - summary.claimed)
            let claimed = try await environment.database.withSQL { sql in
                try await store.claim(
                    integrationID: integrationID, limit: limit, now: now, leaseUntil: now.addingTimeInterval(settings.lease), sql, engine: engine)
            }
            guard !claimed.isEmpty else { break }
            let sent = try await send(claimed)
            try await afterSend()
            let recordedAt = environment.clock.now()
            try await environment.database.transaction { sql in try await store.record(sent.outcomes, at: recordedAt, sql, engine: engine) }
            summary.add(sent.summary)
            logger.debug("blip chunk sent", metadata: sent.summary.metadata)
            if let refused = sent.keyRefused { throw PluginError(refused, permanent: true) }
        }
        return summary
    }
}

extension BlipRun {
    /// A run for a bench or a test, outside the fetch pipeline: `http` must be signed with `blip` credentials.
    public init(
        environment: PluginEnvironment, integrationID: String, credentialsID: String, http: OutboundClient, settings: BlipSendSettings,
        logger: Logger, afterSend: @escaping @Sendable () async throws -> Void = {}
    ) {
        self.init(
            environment: environment, integrationID: integrationID, credentialsID: credentialsID, api: BlipAPI(http: http), settings: settings,
            logger: logger, afterSend: afterSend)
    }
}

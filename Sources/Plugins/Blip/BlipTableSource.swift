// The business-table source: pending rows of a table in the customer's PostgreSQL database (the seed's `CD_STATUS = 1`
// rows), claimed with FOR UPDATE SKIP LOCKED so two workers never take one row, mirrored into the outbox (where their
// message ids are recorded before any send), sent, and written back as sent or failed.
import Foundation
import IntegratorCore
import Logging
import SQLKit

/// Which table and columns hold the notifications, and the status values that mean pending, sent and failed.
struct BlipTableMapping: Sendable, Equatable {
    var table: String
    var idColumn: String
    var phoneColumn: String
    var statusColumn: String
    var parameterColumns: [String]
    var pending: String
    var sent: String
    var failed: String
    var template: BlipAPI.Template

    init(config: [String: JSONValue]) throws {
        func text(_ name: String) throws -> String {
            guard let value = config[name]?.stringValue, !value.isEmpty else {
                throw PluginError("config.\(name) is required when source is table", permanent: true)
            }
            return value
        }
        table = try text("table")
        idColumn = try text("id_column")
        phoneColumn = try text("phone_column")
        statusColumn = try text("status_column")
        parameterColumns = (config["parameter_columns"]?.arrayValue ?? []).compactMap(\.stringValue)
        pending = config["pending_value"]?.stringValue ?? "1"
        sent = config["sent_value"]?.stringValue ?? "2"
        failed = config["failed_value"]?.stringValue ?? "3"
        template = BlipAPI.Template(
            namespace: try text("namespace"), name: try text("template"), language: config["language"]?.stringValue ?? "pt_BR", parameters: [])
        guard [table].allSatisfy(Self.isQualifiedName), ([idColumn, phoneColumn, statusColumn] + parameterColumns).allSatisfy(Self.isName) else {
            throw PluginError("the table mapping names a table or column that is not a plain SQL name", permanent: true)
        }
    }

    /// Letters, digits and `_`, not starting with a digit: a name that can be quoted without surprises.
    static func isName(_ text: String) -> Bool {
        guard let first = text.unicodeScalars.first, (1...63).contains(text.utf8.count), !CharacterSet.decimalDigits.contains(first) else { return false }
        return text.unicodeScalars.allSatisfy { $0.isASCII && (CharacterSet.alphanumerics.contains($0) || $0 == "_") }
    }

    static func isQualifiedName(_ text: String) -> Bool {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        return (1...2).contains(parts.count) && parts.allSatisfy(isName)
    }

    static func quoted(_ name: String) -> String {
        name.split(separator: ".").map { "\"\($0)\"" }.joined(separator: ".")
    }

    /// Where the `blip-database` credentials `credentialsID` point, or the issue with them (never quoting the URL).
    static func location(credentialsID: String, credentials: CredentialsService) async -> Result<DatabaseLocation, ValidationFailure> {
        let refused = ValidationFailure([
            FieldIssue(field: "config.database_credentials", message: "must name blip-database credentials with a postgres:// url")
        ])
        guard let values = try? await credentials.decrypted(id: credentialsID), values.typeID == BlipDatabaseCredentials().id,
            let url = values.secret("url")?.reveal(), let location = try? DatabaseLocation(parsing: url, variable: "url"),
            case .postgres = location
        else { return .failure(refused) }
        return .success(location)
    }

    /// The mapping's problems against the real table, by config field: a missing table or column is named.
    /// - Returns: the status column's type (so status values are cast to it), when there is no problem.
    func check(_ sql: any SQLDatabase) async throws -> Result<String, ValidationFailure> {
        let parts = table.split(separator: ".").map(String.init)
        let schema: SQLQueryString = parts.count == 2 ? "\(bind: parts[0])" : "current_schema()"
        let rows = try await sql.raw(
            """
            SELECT column_name, data_type FROM information_schema.columns
            WHERE table_schema = \(schema) AND table_name = \(bind: parts.last ?? table)
            """
        ).all()
        var types: [String: String] = [:]
        for row in rows { types[try row.decode(column: "column_name", as: String.self)] = try row.decode(column: "data_type", as: String.self) }
        guard !types.isEmpty else {
            return .failure(ValidationFailure([FieldIssue(field: "config.table", message: "no table with this name in the database")]))
        }
        var issues: [FieldIssue] = []
        for (field, column) in [("id_column", idColumn), ("phone_column", phoneColumn), ("status_column", statusColumn)] where types[column] == nil {
            issues.append(FieldIssue(field: "config.\(field)", message: "the table has no column '\(column)'"))
        }
        for (index, column) in parameterColumns.enumerated() where types[column] == nil {
            issues.append(FieldIssue(field: "config.parameter_columns[\(index)]", message: "the table has no column '\(column)'"))
        }
        guard issues.isEmpty, let statusType = types[statusColumn] else { return .failure(ValidationFailure(issues)) }
        return .success(statusType)
    }
}

extension BlipNotificationsProvider: ConfigChecking {
    /// A table source's mapping, checked against the real table when the integration is saved.
    public func check(config: [String: JSONValue], credentials: CredentialsService) async -> [FieldIssue] {
        guard config["source"]?.stringValue == BlipSource.table.rawValue, let mapping = try? BlipTableMapping(config: config) else { return [] }
        let location: DatabaseLocation
        switch await BlipTableMapping.location(credentialsID: config["database_credentials"]?.stringValue ?? "", credentials: credentials) {
        case .success(let found): location = found
        case .failure(let failure): return failure.issues
        }
        do {
            return try await Database.withDatabase(location, logger: Logger(label: "integrator.blip.table"), acquireTimeout: .seconds(5)) { business in
                switch try await business.withSQL({ try await mapping.check($0) }) {
                case .success: return []
                case .failure(let failure): return failure.issues
                }
            }
        } catch {
            // The driver's error may name the server; the URL's password never appears in it, but say only what helps.
            return [FieldIssue(field: "config.database_credentials", message: "the database could not be reached or read to check the table")]
        }
    }
}

extension BlipRun {
    /// A run over a business table. Each chunk is one transaction on the business database that holds its rows
    /// locked while they are sent: a second worker skips them, and a worker that dies releases them as they were.
    func sendTable(_ mapping: BlipTableMapping, databaseCredentialsID: String) async throws -> BlipRunSummary {
        let location: DatabaseLocation
        switch await BlipTableMapping.location(credentialsID: databaseCredentialsID, credentials: environment.credentials) {
        case .success(let found): location = found
        case .failure(let failure): throw PluginError(failure.description, permanent: true)
        }
        return try await Database.withDatabase(location, logger: Logger(label: "integrator.blip.table")) { business in
            let statusType: String
            switch try await business.withSQL({ try await mapping.check($0) }) {
            case .success(let type): statusType = type
            case .failure(let failure): throw PluginError("the table mapping does not fit the table: \(failure.description)", permanent: true)
            }
            var summary = BlipRunSummary()
            while summary.claimed < settings.batchSize {
                try Task.checkCancellation()
                let limit = min(Self.chunkSize, settings.batchSize - summary.claimed)
                let chunk = try await business.transaction { sql in
                    try await sendTableChunk(mapping, statusType: statusType, limit: limit, sql)
                }
                guard let (chunk, keyRefused) = chunk else { break }
                summary.add(chunk)
                if let keyRefused { throw PluginError(keyRefused, permanent: true) }
                // Rows whose retry is not due yet come back in every chunk; stop when a chunk had nothing else.
                if chunk.sent + chunk.failed + chunk.retrying == 0 || chunk.claimed < limit { break }
            }
            return summary
        }
    }

    /// Claims, sends and writes back one chunk inside the business transaction `sql`; `nil` when nothing is pending.
    /// The second value is BLiP's message when it refused the key; the rows' outcomes are written back first.
    private func sendTableChunk(
        _ mapping: BlipTableMapping, statusType: String, limit: Int, _ sql: any SQLDatabase
    ) async throws -> (BlipRunSummary, String?)? {
        typealias M = BlipTableMapping
        let status = M.quoted(mapping.statusColumn)
        let id = M.quoted(mapping.idColumn)
        let parameters = mapping.parameterColumns.enumerated().map { ", \(M.quoted($0.element))::text AS p\($0.offset)" }.joined()
        let rows = try await sql.raw(
            """
            SELECT \(unsafeRaw: id)::text AS row_id, \(unsafeRaw: M.quoted(mapping.phoneColumn))::text AS phone \(unsafeRaw: parameters)
            FROM \(unsafeRaw: M.quoted(mapping.table))
            WHERE \(unsafeRaw: status) = CAST(\(bind: mapping.pending) AS \(unsafeRaw: statusType))
            ORDER BY \(unsafeRaw: id) LIMIT \(bind: limit) FOR UPDATE SKIP LOCKED
            """
        ).all()
        guard !rows.isEmpty else { return nil }
        let now = environment.clock.now()
        var mirrored: [BlipNotification] = []
        for row in rows {
            let rowID = try row.decode(column: "row_id", as: String.self)
            var template = mapping.template
            template.parameters = try mapping.parameterColumns.indices.map { try row.decode(column: "p\($0)", as: String?.self) ?? "" }
            let phone = try row.decode(column: "phone", as: String?.self) ?? ""
            mirrored.append(
                BlipNotification(
                    id: Identifier.make(now: now), integrationID: integrationID, externalID: "table:\(integrationID):\(rowID)",
                    phone: (try? BlipPhone.normalize(phone).get()) ?? phone, template: template, status: .pending,
                    messageID: UUID().uuidString.lowercased(), attempts: 0, nextAttemptAt: now, createdAt: now, updatedAt: now))
        }
        // The mirror rows, with their message ids, commit in the plugin's database before anything is sent: a row
        // sent before a crash is found here next time, already sent or with the same id to send again.
        let store = BlipStore()
        let rowsToMirror = mirrored
        let lease = now.addingTimeInterval(settings.lease)
        let (claimed, settled) = try await environment.database.transaction { ours in
            let existing = try await store.notifications(externalIDs: rowsToMirror.compactMap(\.externalID), ours)
            try await store.insert(rowsToMirror.filter { existing[$0.externalID ?? ""] == nil }, ours)
            let claimed = try await store.claim(externalIDs: rowsToMirror.compactMap(\.externalID), now: now, leaseUntil: lease, ours)
            return (claimed, existing.values.filter { $0.status != .pending })
        }
        let sent = try await send(claimed)
        try await afterSend()
        let recordedAt = environment.clock.now()
        try await environment.database.transaction { ours in try await store.record(sent.outcomes, at: recordedAt, ours, engine: environment.database.engine) }
        // Write back: sent and failed rows get their values; rows due again later stay pending.
        func rowID(_ externalID: String?) -> String { String((externalID ?? "").split(separator: ":", maxSplits: 2).last ?? "") }
        var sentRows = settled.filter { $0.status != .failed }.map { rowID($0.externalID) }
        var failedRows = settled.filter { $0.status == .failed }.map { rowID($0.externalID) }
        let byID = Dictionary(uniqueKeysWithValues: claimed.map { ($0.id, $0) })
        for outcome in sent.outcomes {
            switch outcome.kind {
            case .sent: sentRows.append(rowID(byID[outcome.notificationID]?.externalID))
            case .failed: failedRows.append(rowID(byID[outcome.notificationID]?.externalID))
            case .retry: break
            }
        }
        for (value, ids) in [(mapping.sent, sentRows), (mapping.failed, failedRows)] where !ids.isEmpty {
            try await sql.raw(
                """
                UPDATE \(unsafeRaw: M.quoted(mapping.table)) SET \(unsafeRaw: status) = CAST(\(bind: value) AS \(unsafeRaw: statusType))
                WHERE \(unsafeRaw: id)::text IN (\(binds: ids))
                """
            ).run()
        }
        var summary = sent.summary
        summary.claimed = rows.count
        return (summary, sent.keyRefused)
    }
}

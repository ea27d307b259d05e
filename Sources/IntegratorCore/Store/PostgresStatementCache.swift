// Named server-side statements for the SQL that PostgreSQL runs again and again: parsed once per connection instead of
// at every execution (under load, parsing took a fifth of PostgreSQL's CPU time, since every query went out as an
// unnamed statement). They are still planned per execution; see Database.open.
import Logging
import NIOCore
import PostgresKit
import PostgresNIO
import SQLKit
import Synchronization

/// Which statements this process runs as named statements, by their text and parameter types.
///
/// A statement is named once it has run ``threshold`` times (as JDBC's `prepareThreshold` does), so one-off SQL
/// (migrations, a batch of unusual size) stays unnamed. At most ``capacity`` are named: every connection keeps each one
/// for its life, and PostgreSQL holds a plan for each.
final class PostgresStatementRegistry: Sendable {
    struct Shape: Hashable, Sendable {
        let sql: String
        let types: [PostgresDataType]
    }

    /// Executions before a statement is named; 0 names none.
    let threshold: Int
    let capacity: Int

    private struct State {
        var names: [Shape: String] = [:]
        var executions: [Shape: Int] = [:]
        var nextNumber = 0
    }

    private let state = Mutex(State())

    init(threshold: Int, capacity: Int = 128) {
        self.threshold = threshold
        self.capacity = capacity
    }

    /// The statement's name, or nil while it runs unnamed.
    func name(for shape: Shape) -> String? {
        guard threshold > 0 else { return nil }
        return state.withLock { state -> String? in
            if let name = state.names[shape] { return name }
            guard state.names.count < capacity else { return nil }
            let executions = state.executions[shape, default: 0] + 1
            guard executions >= threshold else {
                // Shapes that never reach the threshold (statements built for each batch size) must not pile up.
                if state.executions.count >= capacity * 8 { state.executions.removeAll(keepingCapacity: true) }
                state.executions[shape] = executions
                return nil
            }
            state.executions[shape] = nil
            state.nextNumber += 1
            let name = "integrator_\(state.nextNumber)"
            state.names[shape] = name
            return name
        }
    }

    /// Stops using `name`: the statement runs unnamed again, and is named afresh at its threshold. For a statement whose
    /// preparation failed (see ``StatementCachingPostgresDatabase``), which the connection would otherwise keep failing.
    func retire(_ name: String) {
        state.withLock { state in
            if let shape = state.names.first(where: { $0.value == name })?.key { state.names[shape] = nil }
        }
    }
}

/// The SQL interface over one pooled PostgreSQL connection, running statements the registry names as named statements
/// and the rest as PostgresKit does.
struct StatementCachingPostgresDatabase: SQLDatabase {
    let base: any SQLDatabase
    let connection: PostgresConnection
    let registry: PostgresStatementRegistry

    var logger: Logger { base.logger }
    var eventLoop: any EventLoop { base.eventLoop }
    var version: (any SQLDatabaseReportedVersion)? { base.version }
    var dialect: any SQLDialect { base.dialect }
    var queryLogLevel: Logger.Level? { base.queryLogLevel }

    func execute(sql query: any SQLExpression, _ onRow: @escaping @Sendable (any SQLRow) -> Void) -> EventLoopFuture<Void> {
        base.execute(sql: query, onRow)
    }

    func execute(sql query: any SQLExpression, _ onRow: @escaping @Sendable (any SQLRow) -> Void) async throws {
        guard registry.threshold > 0 else { return try await base.execute(sql: query, onRow) }
        let (sql, binds) = serialize(query)
        guard let (bindings, types) = Self.bindings(binds) else { return try await base.execute(sql: query, onRow) }
        guard let name = registry.name(for: .init(sql: sql, types: types)) else {
            for try await row in try await connection.query(PostgresQuery(unsafeSQL: sql, binds: bindings), logger: logger) {
                onRow(PostgresRowView(row))
            }
            return
        }
        do {
            let rows = try await NamedStatement.$current.withValue(.init(name: name, sql: sql, types: types)) {
                try await connection.execute(NamedStatement(bindings: bindings), logger: logger)
            }
            for try await row in rows { onRow(PostgresRowView(row)) }
        } catch let error as PSQLError {
            if let state = error.serverInfo?[.sqlState], Self.preparationFailures.contains(where: state.hasPrefix) {
                registry.retire(name)
            }
            throw error
        }
    }

    /// Classes of errors a statement's preparation can fail with. PostgresNIO keeps such a failure for the name on
    /// its connection and repeats it at every later execution, so the name is retired and the statement prepared
    /// afresh: 0A ("cached plan must not change result type", its tables changed), 25 (prepared first inside a
    /// transaction that had already failed), 42 (a table or column missing, as during a migration), and 26 (the
    /// server no longer has the statement: a connection pooler that does not keep them, or a `DEALLOCATE`).
    private static let preparationFailures = ["0A", "25", "26", "42"]

    /// The binds encoded as PostgresKit encodes them, with their types; nil when one needs PostgresKit's slower
    /// `Encodable` path (such statements always run through PostgresKit).
    static func bindings(_ binds: [any Encodable & Sendable]) -> (PostgresBindings, [PostgresDataType])? {
        var bindings = PostgresBindings(capacity: binds.count)
        var types: [PostgresDataType] = []
        types.reserveCapacity(binds.count)
        for bind in binds {
            // A cast looks through an optional that holds a value.
            if let value = bind as? any PostgresThrowingDynamicTypeEncodable {
                guard (try? bindings.append(value, context: .default)) != nil else { return nil }
                types.append(value.psqlType)
            } else if let optional = bind as? any AbsentBind, optional.isAbsent {
                bindings.appendNull()
                types.append(.null)
            } else {
                return nil
            }
        }
        return (bindings, types)
    }
}

/// PostgresNIO caches prepared statements per connection under a static name: one Swift type per statement. This type
/// stands for whichever statement is running; its static requirements read that statement from a task-local value set
/// around the call (PostgresNIO reads them only during it).
private struct NamedStatement: PostgresPreparedStatement {
    struct Current: Sendable {
        var name: String
        var sql: String
        var types: [PostgresDataType]
    }

    @TaskLocal static var current = Current(name: "", sql: "", types: [])

    static var name: String { current.name }
    static var sql: String { current.sql }
    static var bindingDataTypes: [PostgresDataType] { current.types }

    let bindings: PostgresBindings

    func makeBindings() throws -> PostgresBindings { bindings }
    func decodeRow(_ row: PostgresRow) throws -> PostgresRow { row }
}

private protocol AbsentBind {
    var isAbsent: Bool { get }
}

extension Optional: AbsentBind {
    var isAbsent: Bool { self == nil }
}

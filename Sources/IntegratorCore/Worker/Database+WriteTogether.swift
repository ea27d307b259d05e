// Writing several statements as one unit in as few round trips as the engine allows (the worker's hot path).
import SQLKit

extension Database {
    /// Runs `statements` so that they take effect together or not at all.
    ///
    /// On PostgreSQL, when `asOneStatement` holds, they go out as one statement whose parts but the last are
    /// data-modifying `WITH` clauses: one round trip instead of a transaction's five, and atomic like any statement.
    /// The parts share one snapshot, so they must not touch the same row twice; callers that cannot promise that
    /// pass `false` and get a transaction. SQLite always uses a transaction (its statements cost no round trip).
    func writeTogether(_ statements: [SQLQueryString], asOneStatement: Bool = true) async throws {
        guard !statements.isEmpty else { return }
        if engine == .postgres, asOneStatement {
            try await withSQL { sql in try await sql.runTogether(statements, engine: .postgres) }
            return
        }
        try await transaction { sql in
            for statement in statements { try await sql.raw(statement).run() }
        }
    }
}

extension SQLDatabase {
    /// Runs `statements` in order on this connection (inside the caller's transaction, when there is one): on
    /// PostgreSQL as one statement, the others as `WITH` parts of the last, which saves a round trip each. Only for
    /// statements that return nothing the caller reads and never touch one row twice (PostgreSQL runs the parts of
    /// one statement on one snapshot, so a later part does not see an earlier part's rows).
    func runTogether(_ statements: [SQLQueryString], engine: Database.Engine) async throws {
        guard engine == .postgres, let last = statements.last else {
            for statement in statements { try await raw(statement).run() }
            return
        }
        let parts = statements.dropLast().enumerated().map { index, statement -> SQLQueryString in
            "part\(unsafeRaw: String(index)) AS (\(statement))"
        }
        try await raw(parts.isEmpty ? last : "WITH \(parts.joined(separator: ", ")) \(last)").run()
    }
}

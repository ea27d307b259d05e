// Statements run often become named statements on PostgreSQL: what they answer stays the same, a statement whose
// table changed under it recovers, and `prepare_threshold=0` turns it off.
import Foundation
@testable import IntegratorCore
import SQLKit
import Testing

@Suite("Named statements on PostgreSQL", .enabled(if: TestDatabase.engine == .postgres))
struct PreparedStatementTests {
    /// The statements the connection `sql` holds as named statements.
    private static func namedStatements(_ sql: any SQLDatabase) async throws -> [String] {
        try await sql.raw("SELECT statement FROM pg_prepared_statements").all().map { try $0.decode(column: "statement", as: String.self) }
    }

    /// The `answer` column of the one row `query` returns.
    private static func answer(_ sql: any SQLDatabase, _ query: SQLQueryString) async throws -> Int {
        let row = try #require(try await sql.raw(query).first())
        return try row.decode(column: "answer", as: Int.self)
    }

    @Test("a statement run more often than the threshold is named on its connection and answers as before")
    func frequentStatementIsNamed() async throws {
        try await TestDatabase.withDatabase { database in
            try await database.withSQL { sql in
                for number in 1...(PostgresLocation.defaultPrepareThreshold + 3) {
                    let row = try #require(
                        try await sql.raw("SELECT \(bind: "text \(number)") AS label, \(bind: number) * 2 AS twice").first())
                    #expect(try row.decode(column: "label", as: String.self) == "text \(number)")
                    #expect(try row.decode(column: "twice", as: Int.self) == number * 2)
                }
                let named = try await Self.namedStatements(sql)
                #expect(named.contains("SELECT $1 AS label, $2 * 2 AS twice"), "named: \(named)")
            }
        }
    }

    @Test("named statements are planned for each execution's values, not once for all (a plan made on a small table stays bad)")
    func customPlans() async throws {
        try await TestDatabase.withDatabase { database in
            try await database.withSQL { sql in
                let row = try #require(try await sql.raw("SHOW plan_cache_mode").first())
                #expect(try row.decode(column: "plan_cache_mode", as: String.self) == "force_custom_plan")
            }
        }
    }

    @Test("a bind that is NULL at first and a value later runs as two statements, each with its own parameter types")
    func nullThenValue() async throws {
        try await TestDatabase.withDatabase { database in
            try await database.withSQL { sql in
                try await sql.raw("CREATE TABLE prepared_numbers (n INTEGER)").run()
                for _ in 0...PostgresLocation.defaultPrepareThreshold {
                    try await sql.raw("INSERT INTO prepared_numbers (n) VALUES (\(bind: Int?.none))").run()
                }
                for number in 1...(PostgresLocation.defaultPrepareThreshold + 1) {
                    try await sql.raw("INSERT INTO prepared_numbers (n) VALUES (\(bind: Int?.some(number)))").run()
                }
                let row = try #require(try await sql.raw("SELECT count(n) AS present, count(*) AS total, sum(n) AS sum FROM prepared_numbers").first())
                let threshold = PostgresLocation.defaultPrepareThreshold
                #expect(try row.decode(column: "present", as: Int.self) == threshold + 1)
                #expect(try row.decode(column: "total", as: Int.self) == 2 * (threshold + 1))
                #expect(try row.decode(column: "sum", as: Int.self) == (threshold + 1) * (threshold + 2) / 2)
            }
        }
    }

    @Test("a named statement whose table gained a column fails once, then is prepared again and sees the column")
    func changedResultColumns() async throws {
        try await TestDatabase.withDatabase { database in
            try await database.withSQL { sql in
                try await sql.raw("CREATE TABLE prepared_shapes (id TEXT PRIMARY KEY)").run()
                try await sql.raw("INSERT INTO prepared_shapes (id) VALUES ('a')").run()
                for _ in 0...PostgresLocation.defaultPrepareThreshold {
                    _ = try await sql.raw("SELECT * FROM prepared_shapes WHERE id = \(bind: "a")").all()
                }
                try await sql.raw("ALTER TABLE prepared_shapes ADD COLUMN note TEXT DEFAULT 'added'").run()
                await #expect(throws: (any Error).self) {
                    _ = try await sql.raw("SELECT * FROM prepared_shapes WHERE id = \(bind: "a")").all()
                }
                let row = try #require(try await sql.raw("SELECT * FROM prepared_shapes WHERE id = \(bind: "a")").first())
                #expect(try row.decode(column: "note", as: String.self) == "added")
            }
        }
    }

    @Test("a statement named for the first time inside a failed transaction fails there, and works after it")
    func namedInFailedTransaction() async throws {
        try await TestDatabase.withDatabase { database in
            try await database.withSQL { sql in
                let statement = { try await Self.answer(sql, "SELECT \(bind: 41) + 1 AS answer") }
                for _ in 1..<PostgresLocation.defaultPrepareThreshold { #expect(try await statement() == 42) }
                try await sql.raw("BEGIN").run()
                await #expect(throws: (any Error).self) { try await sql.raw("SELECT 1 / \(bind: 0) AS never").run() }
                await #expect(throws: (any Error).self, "the transaction has failed") { _ = try await statement() }
                try await sql.raw("ROLLBACK").run()
                for _ in 1...(PostgresLocation.defaultPrepareThreshold + 1) { #expect(try await statement() == 42) }
            }
        }
    }

    @Test("a named statement the server no longer has (a pooler lost it, DEALLOCATE) fails once, then runs again")
    func deallocated() async throws {
        try await TestDatabase.withDatabase { database in
            try await database.withSQL { sql in
                let statement = { try await Self.answer(sql, "SELECT \(bind: 20) * 2 AS answer") }
                for _ in 1...PostgresLocation.defaultPrepareThreshold { #expect(try await statement() == 40) }
                try await sql.raw("DEALLOCATE ALL").run()
                await #expect(throws: (any Error).self) { _ = try await statement() }
                for _ in 1...(PostgresLocation.defaultPrepareThreshold + 1) { #expect(try await statement() == 40) }
            }
        }
    }

    @Test("prepare_threshold=0 in the database URL names no statement")
    func thresholdZero() async throws {
        try await TestDatabase.withEmptyLocation { location in
            guard case .postgres(var target) = location else { return }
            target.prepareThreshold = 0
            try await Database.withDatabase(.postgres(target), logger: TestDatabase.logger) { database in
                try await database.withSQL { sql in
                    for number in 1...20 { _ = try await sql.raw("SELECT \(bind: number) AS n").all() }
                    #expect(try await Self.namedStatements(sql).isEmpty)
                }
            }
        }
    }
}

@Suite("Which statements are named")
struct PostgresStatementRegistryTests {
    private static func shape(_ sql: String) -> PostgresStatementRegistry.Shape { .init(sql: sql, types: [.text]) }

    @Test("a statement is named at its threshold-th execution and keeps its name; retiring it gives a new one")
    func threshold() {
        let registry = PostgresStatementRegistry(threshold: 3)
        #expect(registry.name(for: Self.shape("a")) == nil)
        #expect(registry.name(for: Self.shape("a")) == nil)
        let name = registry.name(for: Self.shape("a"))
        #expect(name != nil)
        #expect(registry.name(for: Self.shape("a")) == name)
        #expect(registry.name(for: .init(sql: "a", types: [.int8])) == nil, "other parameter types are another statement")
        registry.retire(name!)
        for _ in 1..<3 { #expect(registry.name(for: Self.shape("a")) == nil) }
        let renamed = registry.name(for: Self.shape("a"))
        #expect(renamed != nil && renamed != name)
    }

    @Test("no more than the capacity are named, and threshold 0 names none")
    func capacity() {
        let registry = PostgresStatementRegistry(threshold: 1, capacity: 2)
        #expect(registry.name(for: Self.shape("a")) != nil)
        #expect(registry.name(for: Self.shape("b")) != nil)
        #expect(registry.name(for: Self.shape("c")) == nil)
        #expect(registry.name(for: Self.shape("a")) != nil)
        let off = PostgresStatementRegistry(threshold: 0)
        for _ in 1...10 { #expect(off.name(for: Self.shape("a")) == nil) }
    }
}

// A fresh, migrated database per test: a temporary SQLite file, or a new database on the test PostgreSQL cluster.
import Foundation
import IntegratorCore
import Logging
import PostgresNIO

/// Which engine this run of the suite tests, from `INTEGRATOR_TEST_DATABASE` (`sqlite`, the default, or `postgres`).
enum TestDatabase {
    static var engine: Database.Engine {
        ProcessInfo.processInfo.environment["INTEGRATOR_TEST_DATABASE"] == "postgres" ? .postgres : .sqlite
    }

    static let logger: Logger = {
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        return logger
    }()

    /// Runs `body` with the location of an empty database that is removed afterwards.
    static func withEmptyLocation<T: Sendable>(_ body: @Sendable (DatabaseLocation) async throws -> T) async throws -> T {
        switch engine {
        case .sqlite:
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("integrator-test-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: directory) }
            return try await body(.sqlite(path: directory.appendingPathComponent("test.sqlite").path))
        case .postgres:
            guard let url = ProcessInfo.processInfo.environment["POSTGRES_TEST_URL"] else {
                throw TestSetupError("INTEGRATOR_TEST_DATABASE=postgres needs POSTGRES_TEST_URL (scripts/test.sh sets it)")
            }
            guard case .postgres(let admin) = try DatabaseLocation(parsing: url, variable: "POSTGRES_TEST_URL") else {
                throw TestSetupError("POSTGRES_TEST_URL is not a postgres URL")
            }
            let name = "t_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
            try await adminQuery(admin, "CREATE DATABASE \(name)")
            var location = admin
            location.database = name
            do {
                let value = try await body(.postgres(location))
                try await adminQuery(admin, "DROP DATABASE \(name) WITH (FORCE)")
                return value
            } catch {
                try? await adminQuery(admin, "DROP DATABASE \(name) WITH (FORCE)")
                throw error
            }
        }
    }

    /// Runs `body` with an open, migrated database.
    static func withDatabase<T: Sendable>(_ body: @Sendable (Database) async throws -> T) async throws -> T {
        try await withEmptyLocation { location in
            try await Database.withDatabase(location, logger: logger) { database in
                try await Migrator().migrate(database)
                return try await body(database)
            }
        }
    }

    private static func adminQuery(_ admin: PostgresLocation, _ sql: String) async throws {
        let configuration = PostgresConnection.Configuration(
            host: admin.host, port: admin.port, username: admin.username, password: admin.password?.reveal(),
            database: admin.database, tls: .disable)
        let connection = try await PostgresConnection.connect(configuration: configuration, id: 1, logger: logger)
        defer { Task { try? await connection.close() } }
        try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger)
    }
}

struct TestSetupError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

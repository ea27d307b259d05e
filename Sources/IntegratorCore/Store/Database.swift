// The one handle on the store: a PostgreSQL pool or a single SQLite connection, behind SQLKit.
import Foundation
import Logging
import NIOCore
import NIOPosix
import PostgresKit
import NIOSSL
import PostgresNIO
import SQLKit
import SQLiteKit
import ServiceLifecycle
import Synchronization

/// The store's database. Every query goes through ``withSQL(_:)`` or ``transaction(_:)``, so the two engines look the same to callers.
public final class Database: Service, Sendable {
    /// The engine, for the few places where SQL differs (see ``SQLDialectFacts``).
    public enum Engine: String, Sendable {
        case sqlite
        case postgres
    }

    public let engine: Engine
    public let location: DatabaseLocation
    private let backend: Backend
    private let logger: Logger
    /// How long a query waits for a PostgreSQL connection before the database counts as unavailable.
    private let acquireTimeout: Duration

    private enum Backend: Sendable {
        case postgres(PostgresClient)
        /// SQLite allows one writer; one connection behind a FIFO gate keeps transactions whole and avoids `SQLITE_BUSY`.
        case sqlite(SQLiteConnection, AsyncGate)
    }

    private init(engine: Engine, location: DatabaseLocation, backend: Backend, logger: Logger, acquireTimeout: Duration = .seconds(10)) {
        self.acquireTimeout = acquireTimeout
        self.engine = engine
        self.location = location
        self.backend = backend
        self.logger = logger
    }

    /// Opens the database. PostgreSQL connections are made lazily once ``run()`` is running.
    /// - Parameter acquireTimeout: how long a query may wait for a connection before failing as unavailable.
    public static func open(_ location: DatabaseLocation, logger: Logger, acquireTimeout: Duration = .seconds(10)) async throws -> Database {
        switch location {
        case .sqlite(let path):
            let url = URL(fileURLWithPath: path)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            let connection: SQLiteConnection
            do {
                connection = try await SQLiteConnection.open(storage: .file(path: url.path), logger: logger)
            } catch {
                throw StoreError(code: .unavailable, message: "cannot open SQLite database at \(url.path): \(error)")
            }
            let database = Database(engine: .sqlite, location: location, backend: .sqlite(connection, AsyncGate()), logger: logger)
            try await database.withSQL { sql in
                // WAL lets readers in other processes (the CLI) work while the server writes.
                try await sql.raw("PRAGMA journal_mode=WAL").run()
                try await sql.raw("PRAGMA busy_timeout=5000").run()
                try await sql.raw("PRAGMA foreign_keys=ON").run()
                try await sql.raw("PRAGMA synchronous=NORMAL").run()
            }
            return database
        case .postgres(let target):
            var configuration = PostgresClient.Configuration(
                host: target.host, port: target.port, username: target.username, password: target.password?.reveal(),
                database: target.database, tls: try Self.tls(target.tls))
            configuration.options.maximumConnections = 20
            configuration.options.connectionIdleTimeout = .seconds(60)
            let client = PostgresClient(configuration: configuration, backgroundLogger: logger)
            return Database(
                engine: .postgres, location: location, backend: .postgres(client), logger: logger, acquireTimeout: acquireTimeout)
        }
    }

    private static func tls(_ mode: PostgresLocation.TLSMode) throws -> PostgresClient.Configuration.TLS {
        switch mode {
        case .disable: return .disable
        case .prefer: return .prefer(.makeClientConfiguration())
        case .require: return .require(.makeClientConfiguration())
        }
    }

    /// Keeps the connection pool running until graceful shutdown, then closes the database.
    public func run() async throws {
        switch backend {
        case .postgres(let client):
            await client.run()
        case .sqlite(let connection, _):
            try? await gracefulShutdown()
            try await connection.close()
        }
    }

    /// Runs `body` with the database open (for one-shot commands and tests), then closes it.
    public static func withDatabase<T: Sendable>(
        _ location: DatabaseLocation, logger: Logger, acquireTimeout: Duration = .seconds(10),
        _ body: @Sendable (Database) async throws -> T
    ) async throws -> T {
        let database = try await open(location, logger: logger, acquireTimeout: acquireTimeout)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            if case .postgres(let client) = database.backend {
                group.addTask { await client.run() }
            }
            do {
                let value = try await body(database)
                group.cancelAll()
                try await database.closeIfSQLite()
                return value
            } catch {
                group.cancelAll()
                try? await database.closeIfSQLite()
                throw error
            }
        }
    }

    private func closeIfSQLite() async throws {
        if case .sqlite(let connection, _) = backend { try await connection.close() }
    }

    /// Runs `body` with exclusive use of one connection.
    public func withSQL<T: Sendable>(_ body: @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        do {
            switch backend {
            case .postgres(let client):
                return try await withConnection(client, body)
            case .sqlite(let connection, let gate):
                return try await gate.withPermit {
                    try await body(connection.sql(queryLogLevel: .trace))
                }
            }
        } catch let error as StoreError {
            throw error
        } catch let error as PSQLError where error.code == .server {
            throw StoreError(postgres: error)
        } catch let error as PSQLError {
            logger.error("database unavailable", metadata: ["error": "\(String(reflecting: error.code))"])
            throw StoreError(code: .unavailable, message: "the database is unavailable")
        } catch let error as SQLiteError {
            throw StoreError(sqlite: error)
        }
    }

    /// Leases a pooled connection, giving up after ``acquireTimeout`` if none could be had (the pool itself
    /// would keep retrying for about a minute, leaving API callers hanging on a dead server).
    private func withConnection<T: Sendable>(
        _ client: PostgresClient, _ body: @Sendable (any SQLDatabase) async throws -> T
    ) async throws -> T {
        let leased = LeaseFlag()
        return try await withoutActuallyEscaping(body) { body in
            try await withThrowingTaskGroup(of: T?.self) { group in
                group.addTask {
                    try await client.withConnection { connection in
                        leased.set()
                        return try await body(connection.sql(queryLogLevel: .trace, logger: self.logger))
                    }
                }
                group.addTask {
                    try await Task.sleep(for: self.acquireTimeout)
                    if leased.isSet { return nil }
                    throw StoreError(code: .unavailable, message: "the database is unavailable (no connection within \(self.acquireTimeout))")
                }
                do {
                    while let result = try await group.next() {
                        if let value = result {
                            group.cancelAll()
                            return value
                        }
                    }
                } catch {
                    group.cancelAll()
                    if leased.isSet || error is StoreError { throw error }
                    throw StoreError(code: .unavailable, message: "the database is unavailable")
                }
                throw StoreError(code: .unavailable, message: "the database is unavailable")
            }
        }
    }

    /// Runs `body` in a transaction: committed when it returns, rolled back when it throws.
    public func transaction<T: Sendable>(_ body: @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        try await withSQL { sql in
            try await sql.raw(self.engine == .sqlite ? "BEGIN IMMEDIATE" : "BEGIN").run()
            do {
                let value = try await body(sql)
                try await sql.raw("COMMIT").run()
                return value
            } catch {
                // Not inheriting the caller's cancellation: a cancelled caller must still end its transaction, or the
                // connection (SQLite's only one) stays inside it and every later BEGIN fails.
                await Task { try? await sql.raw("ROLLBACK").run() }.value
                throw error
            }
        }
    }

    /// Calls `onNotification` for every PostgreSQL `NOTIFY` on `channel` until cancelled or the connection drops
    /// (then it throws). On SQLite, which has no notifications, it waits until cancelled.
    public func listen(channel: String, onNotification: @escaping @Sendable () -> Void) async throws {
        guard case .postgres(let client) = backend else {
            while !Task.isCancelled { try await Task.sleep(for: .seconds(3600)) }
            return
        }
        try await client.withConnection { connection in
            try await connection.listen(on: channel) { notifications in
                for try await _ in notifications { onNotification() }
            }
        }
    }

    /// `true` when a trivial query answers.
    public func isReachable() async -> Bool {
        do {
            return try await withTimeout(seconds: 3) {
                try await self.withSQL { sql in try await sql.raw("SELECT 1 AS ok").first() != nil }
            }
        } catch {
            return false
        }
    }

    /// Column types and syntax that differ between the engines.
    public var facts: SQLDialectFacts { SQLDialectFacts(engine: engine) }
}

/// The few spellings that differ between PostgreSQL and SQLite, kept in one place.
public struct SQLDialectFacts: Sendable {
    public let engine: Database.Engine

    /// A point in time. PostgreSQL: `TIMESTAMPTZ`; SQLite stores Unix seconds as `REAL` (what SQLiteNIO binds a `Date` as).
    public var timestamp: String { engine == .postgres ? "TIMESTAMPTZ" : "REAL" }
    public var boolean: String { engine == .postgres ? "BOOLEAN" : "INTEGER" }
    public var bigint: String { engine == .postgres ? "BIGINT" : "INTEGER" }
    /// An increasing integer key, for FIFO order.
    public var autoincrementKey: String { engine == .postgres ? "BIGSERIAL PRIMARY KEY" : "INTEGER PRIMARY KEY AUTOINCREMENT" }
    /// JSON is stored as text on both engines so rows read back identically.
    public var json: String { "TEXT" }
}

/// Runs `operation`, failing with a timeout if it takes longer than `seconds`.
func withTimeout<T: Sendable>(seconds: Double, _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await operation() }
        group.addTask {
            try await Task.sleep(for: .seconds(seconds))
            throw StoreError(code: .unavailable, message: "timed out")
        }
        let first = try await group.next()!
        group.cancelAll()
        return first
    }
}

/// Set once a connection has been leased, read by the acquisition timer.
private final class LeaseFlag: Sendable {
    private let value = Mutex(false)
    func set() { value.withLock { $0 = true } }
    var isSet: Bool { value.withLock { $0 } }
}

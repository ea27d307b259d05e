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

    /// Whom a query works for. API requests may hold only ``requestConnections`` of the pool's connections, so that
    /// the beat and the workers of the same process always find one: without the reserve, 32 busy API clients kept a
    /// chat buffer's flush (about eight queries, each leased on its own) waiting behind them for every lease, and
    /// flushes arrived 155 ms late at the median.
    public enum Work: Sendable {
        case request
        case background
    }

    /// The work the current task does; the API server marks each request's task as ``Work/request``.
    @TaskLocal public static var work: Work = .background

    /// PostgreSQL connections per process.
    public static let poolSize = 20
    /// Of ``poolSize``, how many API requests may hold at once; the rest are kept for background work.
    public static let requestConnections = 15

    private enum Backend: Sendable {
        /// The pool, its registry of prepared statements, and the gate that keeps requests within ``requestConnections``.
        case postgres(PostgresClient, PostgresStatementRegistry, requests: AsyncGate)
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
            configuration.options.maximumConnections = poolSize
            configuration.options.connectionIdleTimeout = .seconds(60)
            // Named statements (see PostgresStatementRegistry) are still planned for each execution's values: a generic
            // plan made while a table was small (an empty records table at a first import) stays a sequential scan as
            // the table grows, and made a 200,000-record fetch five times slower.
            configuration.options.additionalStartupParameters = [("plan_cache_mode", "force_custom_plan")]
            let client = PostgresClient(configuration: configuration, backgroundLogger: logger)
            let statements = PostgresStatementRegistry(threshold: target.prepareThreshold)
            return Database(
                engine: .postgres, location: location,
                backend: .postgres(client, statements, requests: AsyncGate(permits: requestConnections)), logger: logger,
                acquireTimeout: acquireTimeout)
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
        case .postgres(let client, _, _):
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
            if case .postgres(let client, _, _) = database.backend {
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
    public func withSQL<T: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        do {
            switch backend {
            case .postgres(let client, let statements, let requests):
                guard Self.work == .request else { return try await withConnection(client, statements, within: acquireTimeout, body) }
                let deadline = ContinuousClock.now + acquireTimeout
                return try await requests.withPermit(unlessLaterThan: deadline, orThrow: Self.noConnection(within: acquireTimeout)) {
                    // The time spent at the gate counts against the same timeout.
                    try await withConnection(client, statements, within: max(deadline - ContinuousClock.now, .milliseconds(1)), body)
                }
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

    /// Leases a pooled connection and runs `body` on it, in a task of its own that the caller waits for with two
    /// limits. No connection within `timeout`: the call fails as unavailable (the pool itself would keep retrying for
    /// about a minute, leaving API callers hanging on a dead server), and a lease that comes later goes straight back.
    /// The connection closed by the server while `body` runs: the caller walks away after two checks two seconds
    /// apart, because PostgresNIO 1.33 sometimes leaves a lease request, or a query that was running when its backend
    /// was terminated (a restart, a failover), waiting forever, and cancellation reaches neither. Walking away is safe
    /// only then: the pool drops a closed connection, leased or not, and never hands it out again.
    ///
    /// One task does the lease and the call, so a query costs the caller one hop to that task and one back.
    private func withConnection<T: Sendable>(
        _ client: PostgresClient, _ statements: PostgresStatementRegistry, within timeout: Duration,
        _ body: @escaping @Sendable (any SQLDatabase) async throws -> T
    ) async throws -> T {
        let call = PooledCall<T>()
        let logger = logger
        let work = Task {
            do {
                try await client.withConnection { connection in
                    // A lease that comes after the caller gave up goes straight back to the pool.
                    guard call.start(on: connection) else { return }
                    let sql = StatementCachingPostgresDatabase(
                        base: connection.sql(queryLogLevel: .trace, logger: logger), connection: connection, registry: statements)
                    do { call.finish(.success(try await body(sql))) } catch { call.finish(.failure(error)) }
                }
            } catch let error as CancellationError {
                call.finish(.failure(error))
            } catch {
                // The lease itself failed.
                call.finish(.failure(error as? StoreError ?? StoreError(code: .unavailable, message: "the database is unavailable")))
            }
        }
        let leaseDeadline = ContinuousClock.now + timeout
        let checkInterval = Duration.seconds(2)
        return try await withTaskCancellationHandler {
            var closedChecks = 0
            while true {
                let leasing = call.connection == nil
                let wait = leasing ? max(min(leaseDeadline - ContinuousClock.now, checkInterval), .milliseconds(1)) : checkInterval
                if let result = await call.outcome(within: wait) { return try result.get() }
                guard let connection = call.connection else {
                    let noConnection = Self.noConnection(within: timeout)
                    if ContinuousClock.now >= leaseDeadline, call.abandonLease(noConnection) { throw noConnection }
                    continue
                }
                guard connection.isClosed else { continue }
                // One more period for the query to fail on its own, with the server's error, as it normally does.
                closedChecks += 1
                if closedChecks > 1 {
                    logger.error("a query on a connection the database closed never ended; abandoning it")
                    throw StoreError(code: .unavailable, message: "the database closed the connection during a query")
                }
            }
        } onCancel: {
            // A caller still waiting for its lease leaves at once; a running call ends with its query's cancellation.
            _ = call.abandonLease(CancellationError())
            work.cancel()
        }
    }

    static func noConnection(within timeout: Duration) -> StoreError {
        StoreError(code: .unavailable, message: "the database is unavailable (no connection within \(timeout))")
    }

    /// Runs `body` in a transaction: committed when it returns, rolled back when it throws.
    public func transaction<T: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
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
    public func listen(channel: String, onNotification: @escaping @Sendable (_ payload: String) -> Void) async throws {
        guard case .postgres(let client, _, _) = backend else {
            while !Task.isCancelled { try await Task.sleep(for: .seconds(3600)) }
            return
        }
        try await client.withConnection { connection in
            try await connection.listen(on: channel) { notifications in
                for try await notification in notifications { onNotification(notification.payload) }
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

extension SQLDatabase {
    /// Inside a transaction: PostgreSQL delivers a `NOTIFY` on `channel` to its listeners when the transaction commits.
    /// Nothing on SQLite, which has no notifications (its deployments run one process).
    func notifyAtCommit(_ channel: String, payload: String? = nil) async throws {
        guard dialect.name == "postgresql" else { return }
        if let payload {
            try await raw(.notification(on: channel, payload: payload)).run()
        } else {
            try await raw("NOTIFY \(unsafeRaw: channel)").run()
        }
    }
}

extension SQLQueryString {
    /// PostgreSQL's `SELECT pg_notify(…)`: inside a transaction, delivered to the channel's listeners at its commit.
    static func notification(on channel: String, payload: String) -> SQLQueryString {
        "SELECT pg_notify(\(bind: channel), \(bind: payload)) AS notified"
    }
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

/// A database call on a pooled connection, run by a task of its own and awaited by its caller with a time limit.
private final class PooledCall<T: Sendable>: Sendable {
    private enum Phase {
        case leasing
        case running(PostgresConnection)
        case finished(Result<T, any Error>)
        /// The caller stopped waiting for a lease.
        case abandoned

        var isLeasing: Bool {
            if case .leasing = self { return true }
            return false
        }

        /// Leasing or running: not ended yet.
        var isOpen: Bool {
            switch self {
            case .leasing, .running: return true
            case .finished, .abandoned: return false
            }
        }
    }

    private struct State {
        var phase = Phase.leasing
        var waiter: CheckedContinuation<Result<T, any Error>?, Never>?
        var timer: Scheduled<Void>?
    }

    private let state = Mutex(State())

    /// The connection the call runs on, once leased.
    var connection: PostgresConnection? {
        state.withLock { state in
            if case .running(let connection) = state.phase { return connection }
            return nil
        }
    }

    /// The lease came: the call may run on `connection`; `false` when the caller no longer waits for it.
    func start(on connection: PostgresConnection) -> Bool {
        state.withLock { state in
            guard state.phase.isLeasing else { return false }
            state.phase = .running(connection)
            return true
        }
    }

    /// The call ended (or its lease failed); a caller waiting gets `result`. Ignored once the caller left.
    func finish(_ result: Result<T, any Error>) {
        end(as: .finished(result), from: { $0.isOpen }, handing: result)
    }

    /// The caller stops waiting for a lease that has not come; a waiting caller gets `error`. `false` when the lease
    /// came (or the call ended) first.
    func abandonLease(_ error: any Error) -> Bool {
        end(as: .abandoned, from: { $0.isLeasing }, handing: .failure(error))
    }

    /// Moves to `phase` if the call is in a phase `from` accepts, and hands `result` to a waiting caller (its timer
    /// cancelled), outside the lock. `false` when the call was in another phase.
    @discardableResult
    private func end(as phase: Phase, from: (Phase) -> Bool, handing result: Result<T, any Error>) -> Bool {
        let ended = state.withLock { state -> (waiter: CheckedContinuation<Result<T, any Error>?, Never>?, timer: Scheduled<Void>?)? in
            guard from(state.phase) else { return nil }
            state.phase = phase
            defer { state.waiter = nil; state.timer = nil }
            return (state.waiter, state.timer)
        }
        guard let ended else { return false }
        ended.timer?.cancel()
        ended.waiter?.resume(returning: result)
        return true
    }

    /// The outcome, or `nil` when the call has not ended within `limit`.
    func outcome(within limit: Duration) async -> Result<T, any Error>? {
        await withCheckedContinuation { continuation in
            let ready = state.withLock { state -> Result<T, any Error>?? in
                switch state.phase {
                case .finished(let result): return .some(result)
                case .abandoned: return .some(.failure(CancellationError()))
                case .leasing, .running:
                    state.waiter = continuation
                    return nil
                }
            }
            if let ready { continuation.resume(returning: ready); return }
            let timer = MultiThreadedEventLoopGroup.singleton.next().scheduleTask(in: TimeAmount(limit)) {
                let waiter = self.state.withLock { state in
                    defer { state.waiter = nil; state.timer = nil }
                    return state.waiter
                }
                waiter?.resume(returning: nil)
            }
            let endedMeanwhile = state.withLock { state -> Bool in
                if state.waiter == nil { return true }
                state.timer = timer
                return false
            }
            if endedMeanwhile { timer.cancel() }
        }
    }
}

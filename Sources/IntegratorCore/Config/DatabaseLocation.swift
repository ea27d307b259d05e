// Where the store lives, parsed from INTEGRATOR_DATABASE_URL.
import Foundation

/// A SQLite file or a PostgreSQL server.
public enum DatabaseLocation: Sendable, Equatable {
    case sqlite(path: String)
    case postgres(PostgresLocation)

    /// `sqlite://./integrator-data/integrator.sqlite`
    public static let defaultSQLite = DatabaseLocation.sqlite(path: "./integrator-data/integrator.sqlite")

    /// Parses `sqlite://PATH` (relative like `sqlite://./data/x.sqlite`, absolute like `sqlite:///var/x.sqlite`)
    /// or `postgres://USER:PASSWORD@HOST:PORT/DATABASE?sslmode=disable|prefer|require&prepare_threshold=N`.
    public init(parsing text: String, variable: String) throws(ConfigurationError) {
        let expected = "sqlite://PATH or postgres://USER:PASSWORD@HOST:PORT/DATABASE"
        if text.hasPrefix("sqlite://") {
            let path = String(text.dropFirst("sqlite://".count))
            guard !path.isEmpty else { throw ConfigurationError(variable: variable, expected: expected + " (the sqlite path is empty)") }
            self = .sqlite(path: path)
            return
        }
        guard text.hasPrefix("postgres://") || text.hasPrefix("postgresql://") else {
            throw ConfigurationError(variable: variable, expected: expected + " (unknown scheme)")
        }
        // The URL may hold a password, so errors below never repeat it.
        guard let components = URLComponents(string: text), let host = components.host, !host.isEmpty else {
            throw ConfigurationError(variable: variable, expected: expected + " (not a parseable URL with a host)")
        }
        let database = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        guard !database.isEmpty else {
            throw ConfigurationError(variable: variable, expected: expected + " (the database name is missing)")
        }
        guard let user = components.user, !user.isEmpty else {
            throw ConfigurationError(variable: variable, expected: expected + " (the user name is missing)")
        }
        var tls = PostgresLocation.TLSMode.disable
        if let mode = components.queryItems?.first(where: { $0.name == "sslmode" })?.value {
            guard let parsed = PostgresLocation.TLSMode(rawValue: mode) else {
                throw ConfigurationError(variable: variable, expected: "sslmode to be disable, prefer or require")
            }
            tls = parsed
        }
        var prepareThreshold = PostgresLocation.defaultPrepareThreshold
        if let text = components.queryItems?.first(where: { $0.name == "prepare_threshold" })?.value {
            guard let parsed = Int(text), (0...1_000_000).contains(parsed) else {
                throw ConfigurationError(
                    variable: variable, expected: "prepare_threshold to be a whole number from 0 (never prepare statements) to 1000000")
            }
            prepareThreshold = parsed
        }
        self = .postgres(
            PostgresLocation(
                host: host, port: components.port ?? 5432, username: user.removingPercentEncoding ?? user,
                password: components.password.map { Secret($0.removingPercentEncoding ?? $0) }, database: database, tls: tls,
                prepareThreshold: prepareThreshold
            ))
    }

    /// A rendering safe to print: never includes the password.
    public var redacted: String {
        switch self {
        case .sqlite(let path): "sqlite://\(path)"
        case .postgres(let location): "postgres://\(location.username)@\(location.host):\(location.port)/\(location.database)"
        }
    }
}

/// Connection facts for PostgreSQL.
public struct PostgresLocation: Sendable, Equatable {
    public enum TLSMode: String, Sendable {
        case disable
        case prefer
        case require
    }

    public var host: String
    public var port: Int
    public var username: String
    public var password: Secret?
    public var database: String
    public var tls: TLSMode
    /// How many times this process runs a statement before it makes it a named (prepared) statement on each connection,
    /// which PostgreSQL parses once; 0 never does, for a pooler that cannot keep named statements (PgBouncer
    /// before 1.21 in transaction mode).
    public var prepareThreshold: Int

    public static let defaultPrepareThreshold = 5

    public init(
        host: String, port: Int, username: String, password: Secret?, database: String, tls: TLSMode = .disable,
        prepareThreshold: Int = defaultPrepareThreshold
    ) {
        self.prepareThreshold = prepareThreshold
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.database = database
        self.tls = tls
    }
}

/// Which broker carries tasks.
public enum BrokerLocation: Sendable, Equatable {
    /// Queue tables in the store's own database.
    case sql
    /// A RabbitMQ server; the URL may hold a password and is never printed whole.
    case amqp(url: Secret)

    public init(parsing text: String, variable: String) throws(ConfigurationError) {
        if text == "sql" {
            self = .sql
            return
        }
        guard text.hasPrefix("amqp://") || text.hasPrefix("amqps://"), let components = URLComponents(string: text),
            let host = components.host, !host.isEmpty
        else {
            throw ConfigurationError(variable: variable, expected: "sql or amqp://USER:PASSWORD@HOST:PORT/VHOST")
        }
        self = .amqp(url: Secret(text))
    }
}

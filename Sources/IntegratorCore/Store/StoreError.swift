// Errors from the store, with a code the API maps to a status; never carries bound values (they may be secrets).
import PostgresNIO
import SQLiteNIO

/// A store failure. `description` is safe to log and to show: it never contains query parameters.
public struct StoreError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// A unique constraint was violated (a name already taken).
        case conflict
        /// A foreign key blocked the change (something still uses the row).
        case inUse
        case notFound
        /// The database cannot be reached.
        case unavailable
        case other
    }

    public var code: Code
    public var message: String
    /// The constraint involved, when the database named one.
    public var constraint: String?

    public init(code: Code, message: String, constraint: String? = nil) {
        self.code = code
        self.message = message
        self.constraint = constraint
    }

    init(postgres error: PSQLError) {
        let sqlState = error.serverInfo?[.sqlState]
        let constraint = error.serverInfo?[.constraintName]
        switch sqlState {
        case "23505": self.init(code: .conflict, message: "already exists", constraint: constraint)
        case "23503": self.init(code: .inUse, message: "is still referenced", constraint: constraint)
        default:
            self.init(code: .other, message: "database error \(sqlState ?? "?"): \(error.serverInfo?[.message] ?? "unknown")")
        }
    }

    init(sqlite error: SQLiteError) {
        let text = error.message
        if text.contains("UNIQUE constraint failed") {
            self.init(code: .conflict, message: "already exists", constraint: text.components(separatedBy: ": ").last)
        } else if text.contains("FOREIGN KEY constraint failed") {
            self.init(code: .inUse, message: "is still referenced")
        } else if error.reason == .busy || error.reason == .locked {
            self.init(code: .unavailable, message: "the database is busy")
        } else {
            self.init(code: .other, message: "database error: \(text)")
        }
    }

    public var description: String { message }
}

// Users and their personal API tokens.
import Foundation
import SQLKit

/// What a user may do. Each role includes the ones below it.
public enum Role: String, Sendable, Codable, CaseIterable, Comparable {
    /// Reads everything (secrets masked).
    case viewer
    /// Also runs and schedules work.
    case `operator`
    /// Everything, including users and credentials.
    case admin

    private var rank: Int {
        switch self {
        case .viewer: 0
        case .operator: 1
        case .admin: 2
        }
    }

    public static func < (lhs: Role, rhs: Role) -> Bool { lhs.rank < rhs.rank }
}

/// A stored user, without the password hash.
public struct User: Sendable, Equatable {
    public var id: String
    public var username: String
    public var role: Role
    public var createdAt: Date
    public var updatedAt: Date

    public init(id: String, username: String, role: Role, createdAt: Date, updatedAt: Date) {
        self.id = id
        self.username = username
        self.role = role
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }
}

/// A personal API token's record; the token itself is shown once at creation and only its hash is kept.
public struct APITokenRecord: Sendable {
    public var id: String
    public var userID: String
    public var name: String
    public var createdAt: Date
    public var lastUsedAt: Date?
}

/// Reads and writes `users` and `api_tokens`.
public struct UserStore: Sendable {
    let database: Database

    public init(database: Database) { self.database = database }

    public func create(username: String, role: Role, passwordHash: String, now: Date = Date()) async throws -> User {
        let user = User(id: Identifier.make(now: now), username: username, role: role, createdAt: now, updatedAt: now)
        try await database.withSQL { sql in
            try await sql.raw(
                """
                INSERT INTO users (id, username, role, password_hash, created_at, updated_at)
                VALUES (\(bind: user.id), \(bind: username), \(bind: role.rawValue), \(bind: passwordHash), \(bind: now), \(bind: now))
                """
            ).run()
        }
        return user
    }

    public func find(id: String) async throws -> User? {
        try await database.withSQL { sql in
            try await sql.select().column("*").from("users").where("id", .equal, id).first().map(Self.user)
        }
    }

    /// The user and their password hash, for logging in.
    public func findForLogin(username: String) async throws -> (user: User, passwordHash: String)? {
        try await database.withSQL { sql in
            guard let row = try await sql.select().column("*").from("users").where("username", .equal, username).first()
            else { return nil }
            return (try Self.user(row), try row.decode(column: "password_hash", as: String.self))
        }
    }

    public func list(role: Role?, page: PageRequest) async throws -> Page<User> {
        try await database.withSQL { sql in
            var query = sql.select().column("*").from("users")
            if let role { query = query.where("role", .equal, role.rawValue) }
            return try await query.page(page, decode: Self.user, id: \.id)
        }
    }

    public func count(role: Role? = nil) async throws -> Int {
        try await database.withSQL { sql in
            var query = sql.select().column(SQLFunction("COUNT", args: SQLLiteral.all), as: "n").from("users")
            if let role { query = query.where("role", .equal, role.rawValue) }
            return try await query.first()?.decode(column: "n", as: Int.self) ?? 0
        }
    }

    /// Changes role and/or password hash; returns the updated user, or `nil` when there is none.
    public func update(id: String, role: Role?, passwordHash: String?, now: Date = Date()) async throws -> User? {
        try await database.withSQL { sql in
            var query = sql.update("users").set("updated_at", to: now).where("id", .equal, id)
            if let role { query = query.set("role", to: role.rawValue) }
            if let passwordHash { query = query.set("password_hash", to: passwordHash) }
            try await query.run()
            return try await sql.select().column("*").from("users").where("id", .equal, id).first().map(Self.user)
        }
    }

    /// Deletes the user and their tokens; `false` when there was none.
    public func delete(id: String) async throws -> Bool {
        try await database.transaction { sql in
            guard try await sql.select().column("id").from("users").where("id", .equal, id).first() != nil else { return false }
            try await sql.delete(from: "api_tokens").where("user_id", .equal, id).run()
            try await sql.delete(from: "users").where("id", .equal, id).run()
            return true
        }
    }

    // MARK: API tokens

    public func createToken(userID: String, name: String, tokenHash: String, now: Date = Date()) async throws -> APITokenRecord {
        let record = APITokenRecord(id: Identifier.make(now: now), userID: userID, name: name, createdAt: now, lastUsedAt: nil)
        try await database.withSQL { sql in
            try await sql.raw(
                """
                INSERT INTO api_tokens (id, user_id, name, token_hash, created_at)
                VALUES (\(bind: record.id), \(bind: userID), \(bind: name), \(bind: tokenHash), \(bind: now))
                """
            ).run()
        }
        return record
    }

    /// The owner of the token with this hash, marking the token used.
    public func userForToken(hash: String, now: Date = Date()) async throws -> User? {
        try await database.withSQL { sql in
            guard
                let row = try await sql.raw(
                    """
                    SELECT u.* FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = \(bind: hash)
                    """
                ).first()
            else { return nil }
            try await sql.update("api_tokens").set("last_used_at", to: now).where("token_hash", .equal, hash).run()
            return try Self.user(row)
        }
    }

    static func user(_ row: any SQLRow) throws -> User {
        let roleName = try row.decode(column: "role", as: String.self)
        guard let role = Role(rawValue: roleName) else {
            throw StoreError(code: .other, message: "user has unknown role '\(roleName)'")
        }
        return User(
            id: try row.decode(column: "id", as: String.self),
            username: try row.decode(column: "username", as: String.self),
            role: role,
            createdAt: try row.decode(column: "created_at", as: Date.self),
            updatedAt: try row.decode(column: "updated_at", as: Date.self)
        )
    }
}

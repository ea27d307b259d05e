// Stored credentials: public fields as JSON, secret fields as one encrypted envelope.
import Foundation
import SQLKit

/// A credentials row. `secretEnvelope` is ciphertext (see ``SecretBox``); it never leaves the server.
public struct StoredCredentials: Sendable {
    public var id: String
    public var name: String
    public var type: String
    public var publicData: [String: JSONValue]
    public var secretEnvelope: String
    public var createdAt: Date
    public var updatedAt: Date
}

/// Reads and writes `credentials`.
public struct CredentialStore: Sendable {
    let database: Database

    public init(database: Database) { self.database = database }

    public func insert(_ credentials: StoredCredentials) async throws {
        try await database.withSQL { sql in
            try await sql.raw(
                """
                INSERT INTO credentials (id, name, type, public_data, secret_data, created_at, updated_at)
                VALUES (\(bind: credentials.id), \(bind: credentials.name), \(bind: credentials.type),
                        \(bind: JSONValue.object(credentials.publicData).encodedString()), \(bind: credentials.secretEnvelope),
                        \(bind: credentials.createdAt), \(bind: credentials.updatedAt))
                """
            ).run()
        }
    }

    /// Replaces name, public data and the secret envelope of an existing row.
    public func update(_ credentials: StoredCredentials) async throws {
        try await database.withSQL { sql in
            try await sql.update("credentials")
                .set("name", to: credentials.name)
                .set("public_data", to: JSONValue.object(credentials.publicData).encodedString())
                .set("secret_data", to: credentials.secretEnvelope)
                .set("updated_at", to: credentials.updatedAt)
                .where("id", .equal, credentials.id)
                .run()
        }
    }

    public func find(id: String) async throws -> StoredCredentials? {
        try await database.withSQL { sql in
            try await sql.select().column("*").from("credentials").where("id", .equal, id).first().map(Self.decode)
        }
    }

    public func list(type: String?, page: PageRequest) async throws -> Page<StoredCredentials> {
        try await database.withSQL { sql in
            var query = sql.select().column("*").from("credentials")
            if let type { query = query.where("type", .equal, type) }
            return try await query.page(page, decode: Self.decode, id: \.id)
        }
    }

    /// Deletes unless an integration uses the credentials.
    public func delete(id: String) async throws -> DeleteOutcome {
        try await database.transaction { sql in
            guard try await sql.select().column("id").from("credentials").where("id", .equal, id).first() != nil else {
                return .notFound
            }
            let users = try await sql.select().column("name").from("integrations").where("credentials_id", .equal, id)
                .orderBy("name").limit(5).all().map { try $0.decode(column: "name", as: String.self) }
            guard users.isEmpty else { return .inUse(by: users) }
            try await sql.delete(from: "credentials").where("id", .equal, id).run()
            return .deleted
        }
    }

    static func decode(_ row: any SQLRow) throws -> StoredCredentials {
        StoredCredentials(
            id: try row.decode(column: "id", as: String.self),
            name: try row.decode(column: "name", as: String.self),
            type: try row.decode(column: "type", as: String.self),
            publicData: try row.decodeJSON(column: "public_data").objectValue ?? [:],
            secretEnvelope: try row.decode(column: "secret_data", as: String.self),
            createdAt: try row.decode(column: "created_at", as: Date.self),
            updatedAt: try row.decode(column: "updated_at", as: Date.self)
        )
    }
}

/// What a guarded delete did.
public enum DeleteOutcome: Sendable, Equatable {
    case deleted
    case notFound
    /// Refused: these (first few) rows still use it.
    case inUse(by: [String])
}

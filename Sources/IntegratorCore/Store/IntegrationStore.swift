// Stored integrations: a provider, optional credentials, a validated config, and where its tasks run.
import Foundation
import SQLKit

/// An integration row.
public struct Integration: Sendable, Equatable {
    public var id: String
    public var name: String
    public var provider: String
    public var credentialsID: String?
    public var config: [String: JSONValue]
    public var active: Bool
    public var queue: String
    /// 0–9, 9 highest.
    public var priority: Int
    /// Overrides the fetch task's number of attempts; `nil` keeps the handler's default.
    public var maxAttempts: Int?
    public var createdAt: Date
    public var updatedAt: Date
}

/// Filters for listing integrations.
public struct IntegrationFilter: Sendable {
    public var provider: String?
    public var credentialsID: String?
    public var active: Bool?
    public var queue: String?

    public init(provider: String? = nil, credentialsID: String? = nil, active: Bool? = nil, queue: String? = nil) {
        self.provider = provider
        self.credentialsID = credentialsID
        self.active = active
        self.queue = queue
    }
}

/// Reads and writes `integrations`.
public struct IntegrationStore: Sendable {
    let database: Database

    public init(database: Database) { self.database = database }

    public func insert(_ integration: Integration) async throws {
        try await database.withSQL { sql in
            try await sql.raw(
                """
                INSERT INTO integrations (id, name, provider, credentials_id, config, active, queue, priority, max_attempts, created_at, updated_at)
                VALUES (\(bind: integration.id), \(bind: integration.name), \(bind: integration.provider),
                        \(bind: integration.credentialsID), \(bind: JSONValue.object(integration.config).encodedString()),
                        \(bind: integration.active), \(bind: integration.queue), \(bind: integration.priority),
                        \(bind: integration.maxAttempts), \(bind: integration.createdAt), \(bind: integration.updatedAt))
                """
            ).run()
        }
    }

    public func update(_ integration: Integration) async throws {
        try await database.withSQL { sql in
            try await sql.update("integrations")
                .set("name", to: integration.name)
                .set("credentials_id", to: integration.credentialsID)
                .set("config", to: JSONValue.object(integration.config).encodedString())
                .set("active", to: integration.active)
                .set("queue", to: integration.queue)
                .set("priority", to: integration.priority)
                .set("max_attempts", to: integration.maxAttempts)
                .set("updated_at", to: integration.updatedAt)
                .where("id", .equal, integration.id)
                .run()
        }
    }

    public func find(id: String) async throws -> Integration? {
        try await database.withSQL { sql in
            try await sql.select().column("*").from("integrations").where("id", .equal, id).first().map(Self.decode)
        }
    }

    public func list(_ filter: IntegrationFilter, page: PageRequest) async throws -> Page<Integration> {
        try await database.withSQL { sql in
            var query = sql.select().column("*").from("integrations")
            if let provider = filter.provider { query = query.where("provider", .equal, provider) }
            if let credentialsID = filter.credentialsID { query = query.where("credentials_id", .equal, credentialsID) }
            if let active = filter.active { query = query.where("active", .equal, active) }
            if let queue = filter.queue { query = query.where("queue", .equal, queue) }
            return try await query.page(page, decode: Self.decode, id: \.id)
        }
    }

    public func delete(id: String) async throws -> Bool {
        try await database.transaction { sql in
            guard try await sql.select().column("id").from("integrations").where("id", .equal, id).first() != nil else {
                return false
            }
            // Its schedules would only fire fetches that fail; they go with it.
            try await sql.delete(from: "schedules").where("integration_id", .equal, id).run()
            try await sql.delete(from: "integrations").where("id", .equal, id).run()
            return true
        }
    }

    static func decode(_ row: any SQLRow) throws -> Integration {
        Integration(
            id: try row.decode(column: "id", as: String.self),
            name: try row.decode(column: "name", as: String.self),
            provider: try row.decode(column: "provider", as: String.self),
            credentialsID: try row.decode(column: "credentials_id", as: String?.self),
            config: try row.decodeJSON(column: "config").objectValue ?? [:],
            active: try row.decode(column: "active", as: Bool.self),
            queue: try row.decode(column: "queue", as: String.self),
            priority: try row.decode(column: "priority", as: Int.self),
            maxAttempts: try row.decode(column: "max_attempts", as: Int?.self),
            createdAt: try row.decode(column: "created_at", as: Date.self),
            updatedAt: try row.decode(column: "updated_at", as: Date.self)
        )
    }
}

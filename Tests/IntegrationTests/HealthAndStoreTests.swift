// Health endpoints, unknown routes, and the migrator's idempotence on the real database.
import Foundation
import IntegratorCore
import Testing

@Suite("Health and store")
struct HealthAndStoreTests {
    @Test("health and readiness report a connected database without auth")
    func health() async throws {
        try await TestApp.run { app in
            let health = try await app.call(.get, "/health", token: "")
            #expect(health.status == .ok)
            #expect(health.json == ["status": "healthy", "database": "connected"])
            let ready = try await app.call(.get, "/ready", token: "")
            #expect(ready.status == .ok)
            #expect(ready.json["migrations"] == "applied")
            let unknown = try await app.call(.get, "/api/v2/nothing", token: "")
            #expect(unknown.status == .notFound)
            #expect(unknown.errorCode == "not_found")
        }
    }

    @Test("migrating twice changes nothing")
    func migrateTwice() async throws {
        try await TestDatabase.withEmptyLocation { location in
            try await Database.withDatabase(location, logger: TestDatabase.logger) { database in
                #expect(database.engine == TestDatabase.engine)
                let first = try await Migrator().migrate(database)
                #expect(first == Migration.all.map(\.version))
                let second = try await Migrator().migrate(database)
                #expect(second.isEmpty)
                #expect(try await Migrator().appliedVersions(database) == Migration.all.map(\.version))
            }
        }
    }

    @Test("a database that cannot be reached is reported, not hidden")
    func unreachable() async throws {
        let location = try DatabaseLocation(parsing: "postgres://nobody:pw@127.0.0.1:1/none", variable: "test")
        try await Database.withDatabase(location, logger: TestDatabase.logger, acquireTimeout: .seconds(1)) { database in
            #expect(await database.isReachable() == false)
            await #expect(throws: StoreError.self) { try await Migrator().migrate(database) }
        }
    }
}

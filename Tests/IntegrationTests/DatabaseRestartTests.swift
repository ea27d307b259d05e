// Queries in flight when PostgreSQL drops every connection (a restart, a failover) end, with a result or an error:
// none waits forever.
import Foundation
@testable import IntegratorCore
import Synchronization
import Testing

@Suite("Database connections dropped by the server", .serialized, .enabled(if: TestDatabase.engine == .postgres))
struct DatabaseRestartTests {
    /// Waits for `operation` at most `seconds`; `nil` when it has not ended by then (it is left running).
    static func ended<T: Sendable>(within seconds: Double, _ operation: @escaping @Sendable () async throws -> T) async -> Result<T, any Error>? {
        let outcome = Mutex<Result<T, any Error>?>(nil)
        let work = Task {
            let result: Result<T, any Error>
            do { result = .success(try await operation()) } catch { result = .failure(error) }
            outcome.withLock { $0 = result }
        }
        let deadline = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < deadline {
            if let result = outcome.withLock({ $0 }) { return result }
            try? await Task.sleep(for: .milliseconds(20))
        }
        _ = work
        return outcome.withLock { $0 }
    }

    @Test("transactions running while every backend is terminated end within seconds, and the pool serves again")
    func terminatedBackends() async throws {
        try await TestDatabase.withDatabase { database in
            for round in 1...3 {
                let calls = (1...16).map { caller in
                    Task {
                        await Self.ended(within: 20) {
                            try await database.transaction { sql in
                                try await sql.raw("SELECT pg_sleep(0.\(unsafeRaw: String(caller % 5 + 1)))").run()
                                try await sql.raw("SELECT 1 AS one").run()
                            }
                        }
                    }
                }
                try await Task.sleep(for: .milliseconds(150))
                _ = await Self.ended(within: 20) {
                    try await database.withSQL { sql in
                        try await sql.raw(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
                        ).run()
                    }
                }
                var hung = 0
                for call in calls where await call.value == nil { hung += 1 }
                #expect(hung == 0, "round \(round): \(hung) of 16 transactions never ended")
                let served = await Self.ended(within: 20) {
                    try await database.withSQL { sql in try await sql.raw("SELECT 1 AS one").first() != nil }
                }
                #expect((try? served?.get()) == true, "round \(round): the pool serves again")
            }
        }
    }
}

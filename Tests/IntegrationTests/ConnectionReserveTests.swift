// API requests may hold only part of the PostgreSQL pool: the beat and the workers of the same process keep the rest,
// so a burst of requests cannot make every background query wait behind it.
import Foundation
import IntegratorCore
import Synchronization
import Testing

@Suite("Connections kept for background work", .enabled(if: TestDatabase.engine == .postgres))
struct ConnectionReserveTests {
    /// Counts the requests that hold a connection, and lets them all go at once.
    final class Holders: Sendable {
        let holding = Mutex(0)
        let released = Latch()
    }

    @Test("with more requests holding connections than the pool has, a background query still gets one and a further request waits its turn")
    func backgroundKeepsItsShare() async throws {
        try await TestDatabase.withEmptyLocation { location in
            try await Database.withDatabase(location, logger: TestDatabase.logger, acquireTimeout: .seconds(2)) { database in
                let holders = Holders()
                try await withThrowingTaskGroup(of: Void.self) { group in
                    // As many requests as the whole pool: on a pool without a reserve they would take every connection.
                    for _ in 0..<Database.poolSize {
                        group.addTask {
                            _ = try? await Database.$work.withValue(.request) {
                                try await database.withSQL { sql in
                                    try await sql.raw("SELECT 1 AS held").run()
                                    holders.holding.withLock { $0 += 1 }
                                    try await holders.released.wait()
                                }
                            }
                        }
                    }
                    let clock = ContinuousClock()
                    let start = clock.now
                    while holders.holding.withLock({ $0 }) < Database.requestConnections, clock.now - start < .seconds(5) {
                        try await Task.sleep(for: .milliseconds(5))
                    }
                    #expect(holders.holding.withLock { $0 } == Database.requestConnections)

                    let answer = try await database.withSQL { sql in try await sql.raw("SELECT 2 AS background").first()?.decode(column: "background", as: Int.self) }
                    #expect(answer == 2)
                    // A further request waits at the gate; once a holder ends, the permit comes after its deadline
                    // and it fails as unavailable instead of running late.
                    let further = Task {
                        try await Database.$work.withValue(.request) { try await database.withSQL { sql in try await sql.raw("SELECT 3").run() } }
                    }
                    try await Task.sleep(for: .milliseconds(2500))
                    #expect(holders.holding.withLock { $0 } == Database.requestConnections)
                    holders.released.open()
                    let refused = await #expect(throws: StoreError.self) { try await further.value }
                    #expect(refused?.code == .unavailable)
                    try await group.waitForAll()
                }
                // Once they are gone, requests get connections again.
                let after = try await Database.$work.withValue(.request) {
                    try await database.withSQL { sql in try await sql.raw("SELECT 4 AS after").first()?.decode(column: "after", as: Int.self) }
                }
                #expect(after == 4)
            }
        }
    }
}

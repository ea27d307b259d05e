// The statements behind the beat's leadership: a PostgreSQL advisory lock, or the `beat_lease` row on SQLite.
import Foundation
import SQLKit

/// Storage of the beat's lease (see ``LeaderLease`` for how it is used).
struct BeatLeaseStore: Sendable {
    let database: Database

    /// The advisory lock key: any fixed number, distinct from the migrator's.
    static let lockKey: Int64 = 7_242_002

    /// PostgreSQL, on a connection the caller keeps: takes the session advisory lock if nobody holds it.
    static func tryLock(_ sql: any SQLDatabase) async throws -> Bool {
        try await sql.raw("SELECT pg_try_advisory_lock(\(bind: lockKey)) AS won").first()?.decode(column: "won", as: Bool.self) ?? false
    }

    /// PostgreSQL: releases the lock taken on this connection.
    static func unlock(_ sql: any SQLDatabase) async throws {
        _ = try await sql.raw("SELECT pg_advisory_unlock(\(bind: lockKey)) AS released").first()
    }

    /// PostgreSQL: a query on the lock's own connection; if it fails, the lock may be gone with the connection.
    static func checkConnection(_ sql: any SQLDatabase) async throws {
        _ = try await sql.raw("SELECT 1 AS alive").first()
    }

    /// SQLite: takes or renews the lease row for `holder` until `expiresAt`; `false` when another live holder has it.
    func claim(holder: String, at now: Date, expiresAt: Date) async throws -> Bool {
        try await database.withSQL { sql in
            let rows = try await sql.raw(
                """
                INSERT INTO beat_lease (name, holder, expires_at) VALUES ('beat', \(bind: holder), \(bind: expiresAt))
                ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
                WHERE beat_lease.holder = excluded.holder OR beat_lease.expires_at < \(bind: now)
                RETURNING holder
                """
            ).all()
            return !rows.isEmpty
        }
    }

    /// SQLite: gives the lease up, if `holder` has it.
    func release(holder: String) async throws {
        try await database.withSQL { sql in
            try await sql.raw("DELETE FROM beat_lease WHERE name = 'beat' AND holder = \(bind: holder)").run()
        }
    }
}

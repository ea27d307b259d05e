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

/// The leading beat as its own reports describe it.
public struct BeatStatus: Sendable, Equatable {
    /// The leader's identity (host and process).
    public var holder: String
    public var ledSince: Date
    /// Its last report; a leader reports every couple of seconds.
    public var lastSeen: Date

    /// How long a leader may go unreported before fleets are told that nothing fires schedules, retries or timers.
    public static let silenceLimit: TimeInterval = 30

    /// Whether a beat led within ``silenceLimit`` of `now`.
    public func isLeading(at now: Date) -> Bool { now.timeIntervalSince(lastSeen) <= Self.silenceLimit }
}

/// Reads and writes `beat_status`.
public struct BeatStatusStore: Sendable {
    let database: Database

    public init(database: Database) {
        self.database = database
    }

    /// The leading beat's report: `holder` leads since `since`, seen at `now`.
    func report(holder: String, since: Date, at now: Date) async throws {
        try await database.withSQL { sql in
            try await sql.raw(
                """
                INSERT INTO beat_status (name, holder, led_since, last_seen) VALUES ('beat', \(bind: holder), \(bind: since), \(bind: now))
                ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, led_since = excluded.led_since, last_seen = excluded.last_seen
                """
            ).run()
        }
    }

    /// The last leader's report, or `nil` when no beat has ever led on this database.
    public func current() async throws -> BeatStatus? {
        try await database.withSQL { sql in
            try await sql.raw("SELECT holder, led_since, last_seen FROM beat_status WHERE name = 'beat'").first().map { row in
                BeatStatus(
                    holder: try row.decode(column: "holder", as: String.self), ledSince: try row.decode(column: "led_since", as: Date.self),
                    lastSeen: try row.decode(column: "last_seen", as: Date.self))
            }
        }
    }

    /// A sentence for operators when no beat leads at `now`, or `nil` when one does.
    public func silence(at now: Date) async throws -> String? {
        let status = try await current()
        if let status, status.isLeading(at: now) { return nil }
        let since = status.map { "since \($0.lastSeen.apiString) (\(Int(now.timeIntervalSince($0.lastSeen))) s)" } ?? "ever"
        return "no beat has led \(since): schedules, retries and timers are not firing; run `integrator beat` or a worker with --beat"
    }
}

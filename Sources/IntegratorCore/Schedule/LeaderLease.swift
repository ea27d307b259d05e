// One leader among however many beats run: a PostgreSQL advisory lock, or a lease row on SQLite.
import Foundation
import Logging
import SQLKit

/// Elects one leader per database. On PostgreSQL the leader holds a session advisory lock on a connection of its
/// own: if the process dies, even by SIGKILL, the server drops the connection and the lock with it, and a standby
/// (trying once per ``retryInterval``) takes over within seconds. On SQLite a row in `beat_lease` is held by renewing
/// it; a leader that stops renewing loses it when it expires.
struct LeaderLease: Sendable {
    let database: Database
    let holder: String
    let clock: any TimeSource
    let logger: Logger
    var retryInterval: Duration = .seconds(1)
    /// How often the leader checks it still holds the lease.
    var checkInterval: Duration = .seconds(2)
    /// SQLite only: how long a lease lasts without renewal.
    var leaseSeconds: TimeInterval = 6
    /// Told when this process gains and loses the lead.
    var metrics: IntegratorMetrics = .shared

    /// Runs `lead` each time this process wins the lease, until cancelled. `lead` is cancelled when the lease is lost.
    func run(_ lead: @escaping @Sendable () async throws -> Void) async throws {
        var waitingLogged = false
        while !Task.isCancelled {
            let led: Bool
            do {
                led = try await attempt(lead)
            } catch is CancellationError {
                return
            } catch {
                logger.warning("beat lease lost or unavailable", metadata: ["error": "\(error)"])
                led = true
            }
            if !led, !waitingLogged {
                logger.info("another beat leads; standing by")
                waitingLogged = true
            } else if led {
                waitingLogged = false
            }
            try? await Task.sleep(for: retryInterval)
        }
    }

    /// Tries once; if the lease is won, leads until it is lost or the task is cancelled. Returns whether it led.
    private func attempt(_ lead: @escaping @Sendable () async throws -> Void) async throws -> Bool {
        switch database.engine {
        case .postgres:
            return try await database.withSQL { sql in
                guard try await BeatLeaseStore.tryLock(sql) else { return false }
                defer { logger.info("beat leadership ended") }
                // Unlock even when cancelled (in a task of its own), or the pooled connection would keep the lock.
                let unlock = { await Task { try? await BeatLeaseStore.unlock(sql) }.value }
                do {
                    try await leadWhile(lead) {
                        try await BeatLeaseStore.checkConnection(sql)
                        return true
                    }
                } catch {
                    await unlock()
                    throw error
                }
                await unlock()
                return true
            }
        case .sqlite:
            guard try await claimRow() else { return false }
            defer { logger.info("beat leadership ended") }
            // Released even when cancelled, so a standby need not wait for the lease to expire.
            let release = { await Task { try? await releaseRow() }.value }
            do {
                try await leadWhile(lead) { try await claimRow() }
            } catch {
                await release()
                throw error
            }
            await release()
            return true
        }
    }

    /// Runs `lead` next to a loop that calls `stillLeading` every ``checkInterval``; whichever ends first ends both.
    private func leadWhile(
        _ lead: @escaping @Sendable () async throws -> Void, stillLeading: @escaping @Sendable () async throws -> Bool
    ) async throws {
        logger.info("this beat leads")
        metrics.beatLeads(true)
        defer { metrics.beatLeads(false) }
        let since = clock.now()
        let status = BeatStatusStore(database: database)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await lead() }
            group.addTask {
                while true {
                    // Seen by /ready, `integrator status` and workers, which warn when no beat has reported for a while.
                    try await status.report(holder: holder, since: since, at: clock.now())
                    try await Task.sleep(for: checkInterval)
                    guard try await stillLeading() else { throw LeaseLost() }
                }
            }
            defer { group.cancelAll() }
            try await group.next()
        }
    }

    /// Takes or renews the SQLite lease; `false` when another live holder has it.
    private func claimRow() async throws -> Bool {
        let now = clock.now()
        return try await BeatLeaseStore(database: database).claim(holder: holder, at: now, expiresAt: now.addingTimeInterval(leaseSeconds))
    }

    private func releaseRow() async throws {
        try await BeatLeaseStore(database: database).release(holder: holder)
    }
}

/// The leader found it no longer holds the lease.
struct LeaseLost: Error, CustomStringConvertible {
    var description: String { "the beat lease was lost" }
}

// Where the leading beat says it is alive, so the API, the CLI and workers can tell when no beat fires anything.
import SQLKit

extension Migration {
    /// One row, written by the leading beat every few seconds. On PostgreSQL leadership is an advisory lock, which
    /// other processes cannot see; this row makes it visible (and, on SQLite, outlives the lease row's release).
    static let beatStatus = Migration(version: 10, name: "beat_status") { facts in
        [
            """
            CREATE TABLE beat_status (
                name TEXT PRIMARY KEY,
                holder TEXT NOT NULL,
                led_since \(facts.timestamp) NOT NULL,
                last_seen \(facts.timestamp) NOT NULL
            )
            """
        ]
    }
}

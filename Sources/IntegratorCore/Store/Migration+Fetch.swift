// Schema for the fetch pipeline: stored records, per-stream fetch state and change events.
import SQLKit

extension Migration {
    /// Records, fetch state and events.
    ///
    /// Records and fetch state belong to their integration and go with it. Events are a log for delivery: they
    /// carry a copy of the record and outlive both the record and the integration.
    static let fetchPipeline = Migration(version: 5, name: "fetch_pipeline") { facts in
        [
            """
            CREATE TABLE records (
                id TEXT PRIMARY KEY,
                integration_id TEXT NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
                stream TEXT NOT NULL,
                external_id TEXT NOT NULL,
                data \(facts.json) NOT NULL,
                content_hash TEXT NOT NULL,
                first_seen_at \(facts.timestamp) NOT NULL,
                last_seen_at \(facts.timestamp) NOT NULL,
                updated_at \(facts.timestamp) NOT NULL,
                UNIQUE (integration_id, stream, external_id)
            )
            """,
            // Listing one integration's records in id order, and "changed since".
            "CREATE INDEX records_listing ON records (integration_id, id)",
            "CREATE INDEX records_changed ON records (integration_id, updated_at)",
            """
            CREATE TABLE fetch_state (
                integration_id TEXT NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
                stream TEXT NOT NULL,
                cursor \(facts.json) NOT NULL,
                updated_at \(facts.timestamp) NOT NULL,
                PRIMARY KEY (integration_id, stream)
            )
            """,
            """
            CREATE TABLE events (
                id TEXT PRIMARY KEY,
                type TEXT NOT NULL,
                integration_id TEXT NOT NULL,
                stream TEXT NOT NULL,
                record_id TEXT NOT NULL,
                external_id TEXT NOT NULL,
                data \(facts.json) NOT NULL,
                created_at \(facts.timestamp) NOT NULL
            )
            """,
            // No index on created_at: an event's id is a UUIDv7 of its creation time, so "since" becomes a range on the
            // primary key (see EventStore), and every event written costs one index update less.
            "CREATE INDEX events_type ON events (type, id)",
            "CREATE INDEX events_integration ON events (integration_id, id)",
        ]
    }
}

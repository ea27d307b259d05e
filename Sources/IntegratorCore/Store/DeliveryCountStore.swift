// What the RabbitMQ broker keeps in the store: delivery counts of redelivered messages, and the queue names that
// integrations and schedules publish to (for queue statistics without scanning task runs).
import Foundation
import SQLKit

/// One attempt of one task, as delivery counts are kept.
struct DeliveryKey: Hashable, Sendable {
    var taskID: String
    var attempt: Int
}

/// Reads and writes `task_deliveries`.
struct DeliveryCountStore: Sendable {
    let database: Database

    /// Records one more delivery for each occurrence of a key in `redelivered` (all of them messages the broker flagged
    /// as delivered before), in one statement, and returns each key's count. The first delivery was never written,
    /// so a key seen for the first time counts it too.
    func recordRedeliveries(_ redelivered: [DeliveryKey], at now: Date) async throws -> [DeliveryKey: Int] {
        var occurrences: [DeliveryKey: Int] = [:]
        for key in redelivered { occurrences[key, default: 0] += 1 }
        guard !occurrences.isEmpty else { return [:] }
        // A key appears once per statement (PostgreSQL refuses to update a row twice in one upsert); its value is
        // the count a new row starts at, and one more than what an existing row gains.
        let rows: [SQLQueryString] = occurrences.map { key, count in
            "(\(bind: key.taskID), \(bind: key.attempt), \(bind: count + 1), \(bind: now))"
        }
        return try await database.withSQL { sql in
            var counts: [DeliveryKey: Int] = [:]
            let statement: SQLQueryString = """
                INSERT INTO task_deliveries (task_id, attempt, deliveries, updated_at) VALUES \(rows.joined(separator: ", "))
                ON CONFLICT (task_id, attempt) DO UPDATE
                SET deliveries = task_deliveries.deliveries + excluded.deliveries - 1, updated_at = excluded.updated_at
                RETURNING task_id, attempt, deliveries
                """
            for row in try await sql.raw(statement).all() {
                let key = DeliveryKey(taskID: try row.decode(column: "task_id", as: String.self), attempt: try row.decode(column: "attempt", as: Int.self))
                counts[key] = try row.decode(column: "deliveries", as: Int.self)
            }
            return counts
        }
    }

    /// Forgets counts not touched since `before` (their tasks ended long ago).
    func prune(before: Date) async throws {
        try await database.withSQL { sql in
            try await sql.raw("DELETE FROM task_deliveries WHERE updated_at < \(bind: before)").run()
        }
    }
}

/// Queue names the configuration publishes to, read from the small tables that name them.
struct QueueNameStore: Sendable {
    let database: Database

    /// Queues of integrations and schedules.
    func configuredQueues() async throws -> Set<String> {
        try await database.withSQL { sql in
            Set(
                try await sql.raw("SELECT queue FROM integrations UNION SELECT queue FROM schedules").all().map {
                    try $0.decode(column: "queue", as: String.self)
                })
        }
    }
}

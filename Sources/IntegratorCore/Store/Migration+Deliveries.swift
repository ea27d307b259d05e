// Schema for counting deliveries of messages on an external broker.
import SQLKit

extension Migration {
    /// How many times an external broker (RabbitMQ) delivered each attempt of a task. RabbitMQ only flags a message
    /// as redelivered; a row is written for redeliveries alone, so the first delivery of a task costs no write, and the
    /// worker's max-deliveries guard reads the count as it does the SQL queue's `deliveries` column.
    static let deliveryCounts = Migration(version: 8, name: "delivery_counts") { facts in
        [
            """
            CREATE TABLE task_deliveries (
                task_id TEXT NOT NULL,
                attempt INTEGER NOT NULL,
                deliveries INTEGER NOT NULL,
                updated_at \(facts.timestamp) NOT NULL,
                PRIMARY KEY (task_id, attempt)
            )
            """
        ]
    }
}

// Every metric the engine exports: its Prometheus name, help text, type, labels and histogram buckets, in one list.

/// One exported metric family. Its labels take only values from bounded sets (registered task names, queue names,
/// route templates, outcomes): never an id, a tenant or a secret, so the number of series stays small.
public struct MetricDefinition: Sendable, Hashable {
    public enum Kind: String, Sendable {
        case counter, gauge, histogram
    }

    /// The name as exported, with the `integrator_` prefix and its unit (`_total`, `_seconds`).
    public let name: String
    public let help: String
    public let kind: Kind
    public let labels: [String]
    /// Upper bounds of a histogram's buckets; empty for counters and gauges.
    public let buckets: [Duration]
}

/// The metrics Integrator exports at `/metrics`. README.md's "Metrics" section lists the same, with their meaning.
public enum MetricCatalog {
    /// Seconds from a few milliseconds to the 5-minute default task timeout.
    static let taskBuckets: [Duration] = [
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
        .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30), .seconds(60), .seconds(300),
    ]
    /// The beat fires within milliseconds when healthy; seconds mean it stalled.
    static let latenessBuckets: [Duration] = [
        .milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10), .seconds(60),
    ]
    /// Up to the longest endpoint timeout a webhook tenant may set (120 s).
    static let webhookBuckets: [Duration] = [
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
        .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30), .seconds(120),
    ]
    static let httpBuckets: [Duration] = [
        .milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
    ]

    public static let tasks = MetricDefinition(
        name: "integrator_tasks_total",
        help: "Task attempts whose outcome was recorded, by task name and outcome (succeeded, failed, retrying, dead).",
        kind: .counter, labels: ["task", "outcome"], buckets: [])
    public static let taskDuration = MetricDefinition(
        name: "integrator_task_duration_seconds",
        help: "How long task handlers ran, from start to recorded outcome, by task name and outcome.",
        kind: .histogram, labels: ["task", "outcome"], buckets: taskBuckets)
    public static let taskRetries = MetricDefinition(
        name: "integrator_task_retries_total",
        help: "Failed task attempts that were scheduled to run again, by task name.",
        kind: .counter, labels: ["task"], buckets: [])
    public static let deadLetters = MetricDefinition(
        name: "integrator_task_dead_letters_total",
        help: "Tasks moved to the dead letters, by task name and reason (attempts_exhausted, unknown_task, too_many_deliveries).",
        kind: .counter, labels: ["task", "reason"], buckets: [])
    public static let queueDepth = MetricDefinition(
        name: "integrator_queue_depth",
        help: "Tasks ready to run and waiting for a worker, by queue (read from the broker when /metrics is scraped).",
        kind: .gauge, labels: ["queue"], buckets: [])
    public static let queueDelayed = MetricDefinition(
        name: "integrator_queue_delayed",
        help: "Tasks waiting for a retry delay to pass, by queue.",
        kind: .gauge, labels: ["queue"], buckets: [])
    public static let queueInFlight = MetricDefinition(
        name: "integrator_queue_in_flight",
        help: "Tasks claimed by workers and not yet settled, by queue.",
        kind: .gauge, labels: ["queue"], buckets: [])
    public static let queueDead = MetricDefinition(
        name: "integrator_queue_dead_letters",
        help: "Messages waiting in the dead letters, by queue.",
        kind: .gauge, labels: ["queue"], buckets: [])
    public static let beatLateness = MetricDefinition(
        name: "integrator_beat_fire_lateness_seconds",
        help: "How long after its due time the beat fired a schedule or a timer, by kind (schedule, timer).",
        kind: .histogram, labels: ["kind"], buckets: latenessBuckets)
    public static let beatLeader = MetricDefinition(
        name: "integrator_beat_leader",
        help: "1 while a beat in this process holds the leader lease, else 0.",
        kind: .gauge, labels: [], buckets: [])
    public static let webhookDeliveries = MetricDefinition(
        name: "integrator_webhook_deliveries_total",
        help: "Webhook delivery attempts, by what they led to (succeeded, retrying, dead, skipped).",
        kind: .counter, labels: ["outcome"], buckets: [])
    public static let webhookDuration = MetricDefinition(
        name: "integrator_webhook_delivery_duration_seconds",
        help: "How long webhook endpoints took to answer a delivery attempt (or to fail), by outcome.",
        kind: .histogram, labels: ["outcome"], buckets: webhookBuckets)
    public static let httpRequests = MetricDefinition(
        name: "integrator_http_requests_total",
        help: "HTTP requests answered, by route template, method and status code.",
        kind: .counter, labels: ["route", "method", "status"], buckets: [])
    public static let httpDuration = MetricDefinition(
        name: "integrator_http_request_duration_seconds",
        help: "How long the API took to answer, by route template and method.",
        kind: .histogram, labels: ["route", "method"], buckets: httpBuckets)

    public static let all: [MetricDefinition] = [
        tasks, taskDuration, taskRetries, deadLetters, queueDepth, queueDelayed, queueInFlight, queueDead, beatLateness, beatLeader,
        webhookDeliveries, webhookDuration, httpRequests, httpDuration,
    ]

    static let byName: [String: MetricDefinition] = Dictionary(uniqueKeysWithValues: all.map { ($0.name, $0) })
}

// What the engine measures, recorded through swift-metrics into one Prometheus registry per process.
import Foundation
import Metrics
import Prometheus
import Synchronization

/// The engine's metrics (see ``MetricCatalog``). Each metric object is made once per label set and kept, so the
/// hot paths (a task's outcome, a request) pay a dictionary lookup and an atomic add, not a registry lookup.
///
/// A process uses ``shared``: the worker, the beat, the API and the plugins of `integrator` all record there, and
/// `/metrics` exposes it. Tests that check exact values make an instance of their own and hand it to what they run.
public final class IntegratorMetrics: Sendable {
    /// This process's metrics.
    public static let shared = IntegratorMetrics()

    /// Where the metrics live; ``exposition()`` renders it.
    public let registry: PrometheusCollectorRegistry
    /// The swift-metrics factory over ``registry``.
    public let factory: DescribedMetricsFactory

    private let taskOutcomes = LabeledMetrics<TaskOutcomeKey, TaskOutcomeMetrics>()
    private let retries = LabeledMetrics<String, Metrics.Counter>()
    private let deadLetters = LabeledMetrics<DeadLetterKey, Metrics.Counter>()
    private let queueGauges = LabeledMetrics<QueueGaugeKey, Metrics.Gauge>()
    private let lateness = LabeledMetrics<BeatFireKind, Metrics.Timer>()
    private let leader: Metrics.Meter
    private let webhookOutcomes = LabeledMetrics<String, (count: Metrics.Counter, duration: Metrics.Timer)>()
    private let httpRequests = LabeledMetrics<HTTPRequestKey, Metrics.Counter>()
    private let httpDurations = LabeledMetrics<HTTPRouteKey, Metrics.Timer>()

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        let factory = DescribedMetricsFactory(registry: registry)
        self.factory = factory
        self.leader = Metrics.Meter(label: MetricCatalog.beatLeader.name, factory: factory)
        leader.set(0)
    }

    private static let bootstrapped = Mutex(false)

    /// Makes ``shared`` the backend of swift-metrics for this whole process, so metrics that libraries record appear
    /// at `/metrics` too. swift-metrics allows this once per process; later calls do nothing.
    public static func bootstrapProcess() {
        let first = bootstrapped.withLock { done in
            defer { done = true }
            return !done
        }
        if first { MetricsSystem.bootstrap(shared.factory) }
    }

    /// `seconds` as the nanoseconds a histogram records: never negative (clocks of two hosts), and at most a year, so
    /// that a timer due centuries ago (a message scheduled for year 26) still fits an Int64.
    static func nanoseconds(_ seconds: TimeInterval) -> Int64 {
        Int64(min(max(0, seconds), 31_536_000) * 1e9)
    }

    /// The Prometheus text exposition of every metric.
    public func exposition() -> [UInt8] { registry.emitToBuffer() }

    // MARK: Tasks

    /// The label for a task name: a name with a registered handler is a bounded set; anything else a message may
    /// carry is `unknown`.
    public static func taskLabel(_ name: String, in registry: PluginRegistry) -> String {
        registry.taskHandler(name) == nil ? "unknown" : name
    }

    /// An attempt's recorded outcome; `ran` is how long its handler ran, `nil` when it never started.
    public func taskEnded(_ task: String, outcome: TaskState, ran: TimeInterval?) {
        let metrics = taskOutcomes.get(TaskOutcomeKey(task: task, outcome: outcome)) { key in
            let labels = [("task", key.task), ("outcome", key.outcome.rawValue)]
            return TaskOutcomeMetrics(
                count: Metrics.Counter(label: MetricCatalog.tasks.name, dimensions: labels, factory: factory),
                duration: Metrics.Timer(label: MetricCatalog.taskDuration.name, dimensions: labels, factory: factory))
        }
        metrics.count.increment()
        if let ran { metrics.duration.recordNanoseconds(Self.nanoseconds(ran)) }
        if outcome == .retrying {
            retries.get(task) { Metrics.Counter(label: MetricCatalog.taskRetries.name, dimensions: [("task", $0)], factory: factory) }
                .increment()
        }
    }

    /// Why a task went to the dead letters.
    public enum DeadLetterReason: String, Sendable {
        case attemptsExhausted = "attempts_exhausted"
        case unknownTask = "unknown_task"
        case tooManyDeliveries = "too_many_deliveries"
    }

    /// A task recorded dead and moved to the dead letters. Counts its outcome too.
    public func deadLettered(_ task: String, reason: DeadLetterReason, ran: TimeInterval?) {
        taskEnded(task, outcome: .dead, ran: ran)
        deadLetters.get(DeadLetterKey(task: task, reason: reason)) { key in
            Metrics.Counter(
                label: MetricCatalog.deadLetters.name, dimensions: [("task", key.task), ("reason", key.reason.rawValue)], factory: factory)
        }.increment()
    }

    // MARK: Queues

    /// Sets the queue gauges from the broker's figures; the queues in `vanished` (reported before by the same reader,
    /// missing now) read 0. The reader keeps that list: two runtimes in one process (tests) each read their own
    /// broker, and one must not zero the other's queues.
    public func updateQueues(_ stats: [QueueStats], vanished: Set<String>) {
        for queue in vanished {
            for gauge in QueueGauge.allCases { queueGauge(queue, gauge).record(0) }
        }
        for entry in stats {
            queueGauge(entry.queue, .depth).record(entry.ready)
            queueGauge(entry.queue, .delayed).record(entry.delayed)
            queueGauge(entry.queue, .inFlight).record(entry.inFlight)
            queueGauge(entry.queue, .dead).record(entry.dead)
        }
    }

    private func queueGauge(_ queue: String, _ gauge: QueueGauge) -> Metrics.Gauge {
        queueGauges.get(QueueGaugeKey(queue: queue, gauge: gauge)) { key in
            Metrics.Gauge(label: key.gauge.definition.name, dimensions: [("queue", key.queue)], factory: factory)
        }
    }

    // MARK: Beat

    /// What the beat fires.
    public enum BeatFireKind: String, Sendable {
        case schedule, timer
    }

    /// Fires of `kind` due at `dueTimes` that the beat committed at `firedAt`.
    public func beatFired(_ kind: BeatFireKind, dueTimes: [Date], firedAt: Date) {
        guard !dueTimes.isEmpty else { return }
        let timer = lateness.get(kind) {
            Metrics.Timer(label: MetricCatalog.beatLateness.name, dimensions: [("kind", $0.rawValue)], factory: factory)
        }
        for due in dueTimes { timer.recordNanoseconds(Self.nanoseconds(firedAt.timeIntervalSince(due))) }
    }

    /// A beat of this process won (`true`) or lost the leader lease.
    public func beatLeads(_ leads: Bool) {
        if leads { leader.increment() } else { leader.decrement() }
    }

    // MARK: Webhooks

    /// A webhook delivery attempt: what it led to (`succeeded`, `retrying`, `dead`, `skipped`) and how long the
    /// endpoint took.
    public func webhookDelivered(outcome: String, seconds: Double) {
        let metrics = webhookOutcomes.get(outcome) { outcome in
            let labels = [("outcome", outcome)]
            return (
                Metrics.Counter(label: MetricCatalog.webhookDeliveries.name, dimensions: labels, factory: factory),
                Metrics.Timer(label: MetricCatalog.webhookDuration.name, dimensions: labels, factory: factory)
            )
        }
        metrics.count.increment()
        metrics.duration.recordNanoseconds(Self.nanoseconds(seconds))
    }

    // MARK: HTTP

    /// An answered request. `route` is the route's template (`/api/v1/tasks/{id}`), never the path itself.
    public func httpAnswered(route: String, method: String, status: Int, duration: Duration) {
        httpRequests.get(HTTPRequestKey(route: route, method: method, status: status)) { key in
            Metrics.Counter(
                label: MetricCatalog.httpRequests.name,
                dimensions: [("route", key.route), ("method", key.method), ("status", String(key.status))], factory: factory)
        }.increment()
        httpDurations.get(HTTPRouteKey(route: route, method: method)) { key in
            Metrics.Timer(label: MetricCatalog.httpDuration.name, dimensions: [("route", key.route), ("method", key.method)], factory: factory)
        }.record(duration: duration)
    }
}

/// Metric objects by label set, made on first use.
private final class LabeledMetrics<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    private let made = Mutex<[Key: Value]>([:])

    func get(_ key: Key, make: (Key) -> Value) -> Value {
        made.withLock { made in
            if let value = made[key] { return value }
            let value = make(key)
            made[key] = value
            return value
        }
    }
}

private struct TaskOutcomeKey: Hashable, Sendable {
    var task: String
    var outcome: TaskState
}

private struct TaskOutcomeMetrics: Sendable {
    var count: Metrics.Counter
    var duration: Metrics.Timer
}

private struct DeadLetterKey: Hashable, Sendable {
    var task: String
    var reason: IntegratorMetrics.DeadLetterReason
}

private enum QueueGauge: CaseIterable, Sendable {
    case depth, delayed, inFlight, dead

    var definition: MetricDefinition {
        switch self {
        case .depth: MetricCatalog.queueDepth
        case .delayed: MetricCatalog.queueDelayed
        case .inFlight: MetricCatalog.queueInFlight
        case .dead: MetricCatalog.queueDead
        }
    }
}

private struct QueueGaugeKey: Hashable, Sendable {
    var queue: String
    var gauge: QueueGauge
}

private struct HTTPRequestKey: Hashable, Sendable {
    var route: String
    var method: String
    var status: Int
}

private struct HTTPRouteKey: Hashable, Sendable {
    var route: String
    var method: String
}

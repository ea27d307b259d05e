// How the worker's recorded outcomes become metrics: bounded task labels, and why a task was dead-lettered.
import Foundation

extension IntegratorMetrics {
    /// A final outcome the worker's group commit recorded.
    func taskEnded(_ outcome: AttemptOutcome, in registry: PluginRegistry) {
        taskEnded(
            Self.taskLabel(outcome.delivery.message.name, in: registry), outcome: outcome.state,
            ran: outcome.finishedAt.timeIntervalSince(outcome.startedAt))
    }
}

extension Worker {
    /// A failed attempt recorded `retrying`, after its handler ran for `ran` seconds.
    func countRetry(_ delivery: Delivery, ran: TimeInterval) {
        metrics.taskEnded(IntegratorMetrics.taskLabel(delivery.message.name, in: registry), outcome: .retrying, ran: ran)
    }

    /// A task recorded dead. Its reason follows from how the worker got there: no handler for its name, more
    /// deliveries than allowed (neither ran), or its last attempt failed.
    func countDeadLetter(_ delivery: Delivery, ran: TimeInterval) {
        let task = delivery.message.name
        if registry.taskHandler(task) == nil {
            metrics.deadLettered("unknown", reason: .unknownTask, ran: nil)
        } else if delivery.deliveries > options.maxDeliveries {
            metrics.deadLettered(task, reason: .tooManyDeliveries, ran: nil)
        } else {
            metrics.deadLettered(task, reason: .attemptsExhausted, ran: ran)
        }
    }
}

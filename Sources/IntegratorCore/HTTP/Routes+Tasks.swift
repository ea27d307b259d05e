// /api/v1/tasks, /queues, /workers: operators run work, everyone watches it.
import Foundation
import Hummingbird

extension Routes {
    func addTasks(to api: DocumentedRoutes) {
        let group = api.group("tasks")
        group.get(access: .role(.viewer), .listTasks) { request, context in
            return list(try await runtime.tasks.list(try taskFilter(request), page: try pageRequest(request)), render: { Self.render($0) })
        }
        group.post(access: .role(.operator), .enqueueTask) { request, context in
            let message = try await runtime.tasks.enqueue(try await readJSON(request))
            let (run, attempts) = try await runtime.tasks.get(id: message.id)
            return Self.render(run, attempts: attempts).response(status: .accepted)
        }
        group.get(":id", access: .role(.viewer), .getTask) { _, context in
            let (run, attempts) = try await runtime.tasks.get(id: try context.parameters.require("id"))
            return Self.render(run, attempts: attempts).response()
        }
        group.post(":id/retry", access: .role(.operator), .retryTask) { _, context in
            let run = try await runtime.tasks.retry(id: try context.parameters.require("id"))
            return Self.render(run).response(status: .accepted)
        }
        group.delete(":id", access: .role(.operator), .revokeTask) { _, context in
            try await runtime.tasks.revoke(id: try context.parameters.require("id"))
            return Response(status: .noContent)
        }
        api.get("queues", access: .role(.viewer), .listQueues) { _, context in
            let items = try await runtime.tasks.queues().map { stats -> JSONValue in
                .object([
                    "queue": .string(stats.queue), "ready": .number(Double(stats.ready)), "in_flight": .number(Double(stats.inFlight)),
                    "dead": .number(Double(stats.dead)), "delayed": .number(Double(stats.delayed)),
                ])
            }
            return JSONValue.object(["items": .array(items)]).response()
        }
        api.get("workers", access: .role(.viewer), .listWorkers) { _, context in
            let items = try await runtime.tasks.workers().map { worker -> JSONValue in
                .object([
                    "id": .string(worker.id), "host": .string(worker.host), "queues": .array(worker.queues.map(JSONValue.string)),
                    "concurrency": .number(Double(worker.concurrency)), "busy": .number(Double(worker.busy)),
                    "busy_by_queue": .object(worker.busyByQueue.mapValues { .number(Double($0)) }),
                    "started_at": .string(worker.startedAt.apiString), "last_seen": .string(worker.lastSeen.apiString),
                ])
            }
            return JSONValue.object(["items": .array(items)]).response()
        }
    }

    private func taskFilter(_ request: Request) throws -> TaskRunFilter {
        var filter = TaskRunFilter(
            name: query(request, "task"), queue: query(request, "queue"), integrationID: query(request, "integration"),
            scheduleID: query(request, "schedule"))
        var issues: [FieldIssue] = []
        if let state = query(request, "state") {
            filter.state = TaskState(rawValue: state)
            if filter.state == nil {
                issues.append(.init(field: "state", message: "must be one of \(TaskState.allCases.map(\.rawValue).joined(separator: ", "))"))
            }
        }
        for (name, keyPath) in [("since", \TaskRunFilter.since), ("until", \TaskRunFilter.until)] {
            guard let text = query(request, name) else { continue }
            if let date = Date(iso8601: text) {
                filter[keyPath: keyPath] = date
            } else {
                issues.append(.init(field: name, message: Date.iso8601Expectation))
            }
        }
        if !issues.isEmpty { throw APIError.validation(ValidationFailure(issues)) }
        return filter
    }

    static func render(_ run: TaskRun, attempts: [TaskAttempt]? = nil) -> JSONValue {
        func date(_ value: Date?) -> JSONValue { value.map { .string($0.apiString) } ?? .null }
        var object: [String: JSONValue] = [
            "id": .string(run.id), "task": .string(run.name), "args": run.arguments, "queue": .string(run.queue),
            "priority": .number(Double(run.priority)), "state": .string(run.state.rawValue), "attempt": .number(Double(run.attempt)),
            "worker": run.workerID.map(JSONValue.string) ?? .null, "enqueued_at": date(run.enqueuedAt),
            "started_at": date(run.startedAt), "finished_at": date(run.finishedAt),
            "duration_ms": run.durationMilliseconds.map { .number(Double($0)) } ?? .null,
            "error": run.error.map(JSONValue.string) ?? .null, "result": run.result ?? .null,
            "integration": run.integrationID.map(JSONValue.string) ?? .null, "schedule": run.scheduleID.map(JSONValue.string) ?? .null,
            "scheduled_for": date(run.scheduledFor),
        ]
        if let attempts {
            object["attempts"] = .array(attempts.map { attempt in
                .object([
                    "attempt": .number(Double(attempt.attempt)), "state": .string(attempt.state.rawValue),
                    "worker": attempt.workerID.map(JSONValue.string) ?? .null, "deliveries": .number(Double(attempt.deliveries)),
                    "started_at": date(attempt.startedAt), "finished_at": date(attempt.finishedAt),
                    "duration_ms": attempt.durationMilliseconds.map { .number(Double($0)) } ?? .null,
                    "error": attempt.error.map(JSONValue.string) ?? .null,
                ])
            })
        }
        return .object(object)
    }
}

// Task-runs pages: filters (several states at once, task, queue, schedule, integration, time), newest first, retry
// and revoke on one run, on a selection, or on everything the filter selects; and a run's detail with every attempt.
import Foundation
import Hummingbird

extension AdminApp {
    /// Bulk actions on "everything the filter selects" stop after this many runs; the page says so.
    static let bulkCap = 10_000

    func addTaskRuns(to router: Router<APIRequestContext>) {
        view("tasks", on: router) { request in try await taskRunsPage(request) }
        view("tasks/:id", on: router) { request in try await taskRunPage(try request.parameter("id")) }
        for verb in ["retry", "revoke"] {
            action("tasks/\(verb)", on: router) { request in
                var ids = request.form.all("id")
                var capped = false
                if ids.isEmpty, let filterText = request.form["filter"] {
                    let filter = try Self.runFilter(AdminFormValues(urlEncoded: Substring(filterText)))
                    ids = try await queries.runIDs(filter, cap: Self.bulkCap)
                    capped = ids.count == Self.bulkCap
                }
                guard !ids.isEmpty else { return .redirect(Self.back(request, default: "tasks"), notice: "No runs were selected.") }
                var done = 0
                var refused: [String] = []
                for id in ids {
                    do {
                        if verb == "retry" { _ = try await runtime.tasks.retry(id: id) } else { try await runtime.tasks.revoke(id: id) }
                        done += 1
                    } catch let error as ServiceError where error.kind == .conflict || error.kind == .notFound {
                        if refused.count < 3 { refused.append(error.message) }
                    }
                }
                if ids.count == 1, done == 1 {
                    return .redirect("tasks/\(ids[0])", notice: verb == "retry" ? "Retry enqueued." : "Revoked.")
                }
                var notice = "\(verb == "retry" ? "Retried" : "Revoked") \(done) of \(ids.count) run\(ids.count == 1 ? "" : "s")."
                if capped { notice += " Only the newest \(Self.bulkCap) matching runs were taken; run it again for the rest." }
                if !refused.isEmpty { notice += " Not possible for the others, for example: \(refused.joined(separator: "; "))." }
                return .redirect(Self.back(request, default: "tasks"), notice: notice)
            }
        }
    }

    /// The filter the task-runs page's query asks for.
    static func runFilter(_ query: AdminFormValues) throws -> AdminRunFilter {
        var filter = AdminRunFilter()
        var issues: [FieldIssue] = []
        for text in query.all("state").flatMap({ $0.split(separator: ",") }) {
            if let state = TaskState(rawValue: String(text)) {
                filter.states.append(state)
            } else {
                issues.append(.init(field: "state", message: "must be one of \(TaskState.allCases.map(\.rawValue).joined(separator: ", "))"))
            }
        }
        filter.task = query["task"]
        filter.queue = query["queue"]
        filter.integrationID = query["integration"]
        filter.scheduleID = query["schedule"]
        for (name, keyPath) in [("since", \AdminRunFilter.since), ("until", \AdminRunFilter.until)] {
            guard let text = query[name] else { continue }
            if let date = Date(iso8601: text) {
                filter[keyPath: keyPath] = date
            } else {
                issues.append(.init(field: name, message: Date.iso8601Expectation))
            }
        }
        if !issues.isEmpty { throw ValidationFailure(issues) }
        return filter
    }

    func taskRunsPage(_ request: AdminPageRequest) async throws -> AdminPage {
        let filter = try Self.runFilter(request.query)
        let before = request.query["cursor"].flatMap(PageRequest.decodeCursor)
        let page = try await queries.runs(filter, before: before, limit: PageRequest.defaultLimit)
        let integrations = try await runtime.integrations.list(IntegrationFilter(), page: PageRequest(limit: PageRequest.maximumLimit))
        let filterQuery = AdminFormValues(request.query.pairs.filter { !["cursor", "notice"].contains($0.name) })
        let backPath = "tasks" + (filterQuery.pairs.isEmpty ? "" : "?" + filterQuery.encoded)
        let filters = [
            AdminField("state", label: "State", kind: .multiSelect, selected: Set(filter.states.map(\.rawValue)),
                       options: TaskState.allCases.map { ($0.rawValue, $0.rawValue) }),
            AdminField("task", label: "Task", kind: .select, value: filter.task ?? "",
                       options: [("", "any")] + runtime.registry.taskNames.map { ($0, $0) }),
            AdminField("queue", label: "Queue", value: filter.queue ?? ""),
            AdminField("integration", label: "Integration", kind: .select, value: filter.integrationID ?? "",
                       options: [("", "any")] + integrations.items.map { ($0.id, $0.name) }),
            AdminField("schedule", label: "Schedule id", value: filter.scheduleID ?? ""),
            AdminField("since", label: "Enqueued since", value: request.query["since"] ?? "", placeholder: "2026-11-29T00:00:00Z"),
            AdminField("until", label: "Enqueued before", value: request.query["until"] ?? "", placeholder: "2026-11-30T00:00:00Z"),
        ]
        let table = AdminTable(
            columns: ["Task", "State", "Queue", "Attempt", "Enqueued", "Duration", "Integration", "Error"],
            rows: page.runs.map { run in runRow(run, back: backPath) },
            emptyText: "No runs match.", filters: filters,
            nextCursor: page.more ? page.runs.last.map { PageRequest.encodeCursor($0.id) } : nil,
            selection: AdminSelection(buttons: [
                AdminButton("Retry", action: "tasks/retry"), AdminButton("Revoke", action: "tasks/revoke", isDangerous: true),
            ]))
        let everything = ["filter": filterQuery.encoded, "back": backPath]
        return AdminPage(title: "Task runs", sections: [
            .table(table),
            .buttons([
                AdminButton("Retry every failed or dead run the filter selects", action: "tasks/retry", fields: everything,
                            confirm: "Retry every failed or dead run this filter selects (up to \(Self.bulkCap))?"),
                AdminButton("Revoke every queued run the filter selects", action: "tasks/revoke", fields: everything,
                            confirm: "Revoke every run this filter selects that has not started (up to \(Self.bulkCap))?", isDangerous: true),
            ], heading: "Everything the filter selects"),
        ])
    }

    func runRow(_ run: TaskRun, back: String) -> AdminRow {
        var buttons: [AdminButton] = []
        if run.state == .failed || run.state == .dead {
            buttons.append(AdminButton("Retry", action: "tasks/retry", fields: ["id": run.id, "back": back]))
        }
        if run.state == .queued || run.state == .retrying {
            buttons.append(AdminButton("Revoke", action: "tasks/revoke", fields: ["id": run.id, "back": back], isDangerous: true))
        }
        return AdminRow([
            AdminCell(run.name, link: "tasks/\(run.id)"), .state(run.state.rawValue), AdminCell(run.queue), AdminCell("\(run.attempt)"),
            AdminCell(Self.time(run.enqueuedAt)), AdminCell(run.durationMilliseconds.map { "\($0) ms" } ?? "—"),
            run.integrationID.map { AdminCell("integration", link: "integrations/\($0)") } ?? "—",
            AdminCell(String((run.error ?? "").prefix(120))),
        ], buttons: buttons, selectionValue: run.id)
    }

    /// Runs without filters or selection, for other pages.
    func runsTable(_ runs: [TaskRun], selectable: Bool) -> AdminTable {
        AdminTable(
            columns: ["Task", "State", "Queue", "Attempt", "Enqueued", "Duration", "Integration", "Error"],
            rows: runs.map { run in
                var row = runRow(run, back: "tasks")
                if !selectable { row.selectionValue = nil }
                return row
            }, emptyText: "No runs yet.")
    }

    func taskRunPage(_ id: String) async throws -> AdminPage {
        let (run, attempts) = try await runtime.tasks.get(id: id)
        var details = [
            AdminDetail("State", .state(run.state.rawValue)),
            AdminDetail("Id", AdminCell(run.id)),
            AdminDetail("Queue", AdminCell("\(run.queue), priority \(run.priority)")),
            AdminDetail("Attempt", AdminCell("\(run.attempt)")),
            AdminDetail("Worker", AdminCell(run.workerID ?? "—")),
            AdminDetail("Enqueued", AdminCell(Self.time(run.enqueuedAt))),
            AdminDetail("Started", AdminCell(Self.time(run.startedAt))),
            AdminDetail("Finished", AdminCell(Self.time(run.finishedAt))),
            AdminDetail("Duration", AdminCell(run.durationMilliseconds.map { "\($0) ms" } ?? "—")),
        ]
        if let integrationID = run.integrationID {
            details.append(AdminDetail("Integration", AdminCell(integrationID, link: "integrations/\(integrationID)")))
            details.append(AdminDetail("Records", AdminCell("records of this integration", link: "integrations/\(integrationID)/records")))
        }
        if let scheduleID = run.scheduleID { details.append(AdminDetail("Schedule", AdminCell(scheduleID, link: "schedules/\(scheduleID)"))) }
        if let scheduledFor = run.scheduledFor { details.append(AdminDetail("Scheduled for", AdminCell(Self.time(scheduledFor)))) }
        var buttons: [AdminButton] = []
        if run.state == .failed || run.state == .dead { buttons.append(AdminButton("Retry", action: "tasks/retry", fields: ["id": run.id])) }
        if run.state == .queued || run.state == .retrying {
            buttons.append(AdminButton("Revoke", action: "tasks/revoke", fields: ["id": run.id], confirm: "Revoke this run?", isDangerous: true))
        }
        var sections: [AdminSection] = [.details(details), .buttons(buttons)]
        if let error = run.error { sections.append(.warning(error)) }
        sections.append(.json(Self.maskingSecrets(run.arguments), heading: "Arguments"))
        if let result = run.result { sections.append(.json(result, heading: "Result")) }
        sections.append(.table(AdminTable(
            columns: ["Attempt", "State", "Worker", "Deliveries", "Started", "Finished", "Duration", "Error"],
            rows: attempts.map { attempt in
                AdminRow([
                    AdminCell("\(attempt.attempt)"), .state(attempt.state.rawValue), AdminCell(attempt.workerID ?? "—"),
                    AdminCell("\(attempt.deliveries)"), AdminCell(Self.time(attempt.startedAt)), AdminCell(Self.time(attempt.finishedAt)),
                    AdminCell(attempt.durationMilliseconds.map { "\($0) ms" } ?? "—"), AdminCell(attempt.error ?? ""),
                ])
            }, emptyText: "No attempt has started yet."), heading: "Attempts"))
        return AdminPage(title: "Run of \(run.name)", sections: sections)
    }

    /// Arguments with the values of secret-looking keys masked: tasks are free to carry anything in their arguments.
    static func maskingSecrets(_ value: JSONValue) -> JSONValue {
        switch value {
        case .object(let members):
            var masked: [String: JSONValue] = [:]
            for (key, member) in members {
                let lower = key.lowercased()
                let secret = ["password", "secret", "token", "apikey", "api_key", "authorization", "private", "signature"]
                    .contains { lower.contains($0) }
                masked[key] = secret && member != .null ? .string(Secret.mask) : maskingSecrets(member)
            }
            return .object(masked)
        case .array(let items): return .array(items.map(maskingSecrets))
        default: return value
        }
    }
}

// What `integrator bench admin` needs from inside the admin: many finished runs written fast, and the task-runs page
// rendered exactly as a request would get it, without the socket.
import Foundation
import SQLKit

/// Hooks for the admin benchmark.
public enum AdminBenchmark {
    /// Writes `count` finished runs (80 % succeeded, 15 % failed, 5 % dead) over the last `spreadSeconds`, 500 per
    /// statement, straight into `task_runs`.
    public static func fillRuns(_ runtime: Runtime, count: Int, spreadSeconds: Double = 86_400) async throws {
        let now = runtime.clock.now()
        let tasks = ["integration.fetch", "webhooks.deliver", "core.noop", "blip.send"]
        var written = 0
        while written < count {
            let batch = min(500, count - written)
            let rows: [SQLQueryString] = (written..<(written + batch)).map { index in
                let enqueued = now.addingTimeInterval(-spreadSeconds * Double(count - index) / Double(count))
                let state = index % 20 == 0 ? "dead" : index % 20 < 4 ? "failed" : "succeeded"
                let finished = enqueued.addingTimeInterval(0.05)
                let error: String? = state == "succeeded" ? nil : "bench failure \(index)"
                return """
                    (\(bind: Identifier.make(now: enqueued)), \(bind: tasks[index % tasks.count]), \(bind: "{\"n\":\(index)}"),
                     \(bind: index % 3 == 0 ? "low" : "default"), 5, \(bind: state), 1, 'bench-worker', \(bind: enqueued),
                     \(bind: enqueued), \(bind: finished), 50, \(bind: error), NULL, NULL, NULL, \(bind: finished))
                    """
            }
            let statement: SQLQueryString = """
                INSERT INTO task_runs (id, task_name, arguments, queue, priority, state, attempt, worker_id, enqueued_at, started_at,
                    finished_at, duration_ms, error, result, integration_id, schedule_id, updated_at) VALUES \(rows.joined(separator: ", "))
                """
            try await runtime.database.withSQL { sql in try await sql.raw(statement).run() }
            written += batch
        }
    }

    /// The task-runs page's HTML for `query` (`state=failed&state=dead`, `cursor=…`), as an admin would see it.
    public static func renderTaskRuns(_ runtime: Runtime, query: String, templates: AdminBenchmarkTemplates) async throws -> String {
        let app = AdminApp(runtime: runtime, templates: templates.templates)
        let request = AdminPageRequest(
            username: "bench", role: .admin, parameters: [:], query: AdminFormValues(urlEncoded: Substring(query)), form: AdminFormValues())
        let page = try await app.taskRunsPage(request)
        let chrome = AdminChrome(
            username: "bench", role: .admin, csrfToken: "bench", navigation: AdminApp.navigation, pluginNavigation: app.pluginNavigation,
            currentPath: "/admin/tasks", notice: nil, refreshSeconds: nil)
        let object = AdminMarkup.page(page, chrome: chrome, requestQuery: request.query, path: "/admin/tasks")
        return templates.templates.render(object, template: "layout")
    }
}

/// The admin's templates, loaded once for a benchmark.
public struct AdminBenchmarkTemplates: Sendable {
    let templates: AdminTemplates

    public init() throws { templates = try AdminTemplates.load() }
}

// Which integrations still have a task of some name waiting or running, so periodic fan-outs do not pile up.
import SQLKit

extension TaskRunStore {
    /// The ids among `integrationIDs` that have a `name` task queued, running or waiting to retry.
    public func integrationsWithUnfinishedTasks(named name: String, among integrationIDs: [String]) async throws -> Set<String> {
        guard !integrationIDs.isEmpty else { return [] }
        let unfinished = [TaskState.queued, .started, .retrying].map(\.rawValue)
        return try await database.withSQL { sql in
            Set(
                try await sql.select().distinct().column("integration_id").from("task_runs")
                    .where("task_name", .equal, name).where("state", .in, unfinished)
                    .where("integration_id", .in, integrationIDs)
                    .all().map { try $0.decode(column: "integration_id", as: String.self) })
        }
    }
}

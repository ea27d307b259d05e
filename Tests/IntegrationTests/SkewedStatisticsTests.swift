// Statements that find runs by id must keep doing so when the statistics say a state is rare: taken after an idle
// spell (every run finished), they would otherwise lead PostgreSQL to read the runs through the state index — every
// queued run, once per statement — and make each claim cost as much as the whole backlog.
import Foundation
@testable import IntegratorCore
import SQLKit
import Testing

@Suite("Runs found by id whatever the statistics say", .enabled(if: TestDatabase.engine == .postgres))
struct SkewedStatisticsTests {
    @Test("after an idle spell, starting a few of 3,000 queued runs reads them by id, not through the state index")
    func startAfterIdleSpell() async throws {
        try await TestApp.run { app in
            let database = app.runtime.database
            let now = app.clock.now()
            try await database.withSQL { sql in
                try await sql.raw(
                    """
                    INSERT INTO task_runs (id, task_name, arguments, queue, priority, state, attempt, enqueued_at, updated_at)
                    SELECT 'done-' || n, 'skew.test', '{}', 'default', 5, 'succeeded', 1, \(bind: now), \(bind: now)
                    FROM generate_series(1, 300) AS n
                    """
                ).run()
                // What autovacuum would record after the idle spell: no waiting run at all.
                try await sql.raw("ANALYZE task_runs").run()
                try await sql.raw(
                    """
                    INSERT INTO task_runs (id, task_name, arguments, queue, priority, state, attempt, enqueued_at, updated_at)
                    SELECT 'waiting-' || lpad(n::text, 5, '0'), 'skew.test', '{}', 'default', 5, 'queued', 1, \(bind: now), \(bind: now)
                    FROM generate_series(1, 3000) AS n
                    """
                ).run()
            }
            let deliveries = (1...20).map { index in
                Delivery(
                    message: TaskMessage(id: "waiting-" + String(format: "%05d", index), name: "skew.test", enqueuedAt: now),
                    tag: "\(index)", deliveries: 1)
            }
            let plan = try await database.withSQL { sql in
                let statement = TaskRunStore.markStartedStatement(deliveries, workerID: "worker-skew", at: now)
                return try await sql.raw("EXPLAIN \(statement)").all().map { try $0.decode(column: "QUERY PLAN", as: String.self) }
            }
            #expect(!plan.contains { $0.contains("task_runs_state") }, "\(plan.joined(separator: "\n"))")
            #expect(plan.contains { $0.contains("task_runs_pkey") }, "\(plan.joined(separator: "\n"))")

            try await app.runtime.runs.markStarted(deliveries, workerID: "worker-skew", at: now)
            let states = try await database.withSQL { sql in
                try await sql.raw("SELECT state, COUNT(*) AS n FROM task_runs WHERE id LIKE 'waiting-%' GROUP BY state").all()
                    .reduce(into: [String: Int]()) { $0[try $1.decode(column: "state", as: String.self)] = try $1.decode(column: "n", as: Int.self) }
            }
            #expect(states == ["started": 20, "queued": 2980])
        }
    }
}

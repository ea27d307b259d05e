// A worker whose outcome write fails for a moment (a database restart, a failover) writes it again once it can: the
// task runs once and its run does not stay `started`.
import Foundation
@testable import IntegratorCore
import Synchronization
import Testing

/// When it runs, makes the store refuse its outcome for a moment, as a database restart would: a trigger rejects any
/// write of a finished state for this task, and is dropped 1.5 s later.
struct RefusedOutcome: TaskHandler {
    let name = "outcome-test.refused"
    static let runs = Mutex<Int>(0)
    static let database = Mutex<Database?>(nil)

    func run(_ arguments: JSONValue, context: TaskContext) async throws -> JSONValue {
        Self.runs.withLock { $0 += 1 }
        guard let database = Self.database.withLock({ $0 }) else { throw TestSetupError("no database set") }
        let id = context.taskID
        let postgres = database.engine == .postgres
        try await database.withSQL { sql in
            if postgres {
                try await sql.raw(
                    """
                    CREATE FUNCTION refuse_outcome() RETURNS trigger AS $$
                    BEGIN
                        IF NEW.id = '\(unsafeRaw: id)' AND NEW.state <> 'started' AND NEW.state <> 'queued' THEN
                            RAISE EXCEPTION 'outcome refused for the test';
                        END IF;
                        RETURN NEW;
                    END $$ LANGUAGE plpgsql
                    """
                ).run()
                try await sql.raw("CREATE TRIGGER refuse_outcome BEFORE INSERT OR UPDATE ON task_runs FOR EACH ROW EXECUTE FUNCTION refuse_outcome()").run()
            } else {
                try await sql.raw(
                    """
                    CREATE TRIGGER refuse_outcome BEFORE UPDATE ON task_runs
                    WHEN NEW.id = '\(unsafeRaw: id)' AND NEW.state NOT IN ('started', 'queued')
                    BEGIN SELECT RAISE(ABORT, 'outcome refused for the test'); END
                    """
                ).run()
            }
        }
        Task.detached {
            try await Task.sleep(for: .milliseconds(1500))
            try await database.withSQL { sql in
                try await sql.raw(postgres ? "DROP TRIGGER refuse_outcome ON task_runs" : "DROP TRIGGER refuse_outcome").run()
            }
        }
        return [:]
    }
}

@Suite("Outcome retries", .serialized)
struct OutcomeRetryTests {
    static let plugin = Plugin(id: "outcome-test", name: "Outcome test tasks", taskHandlers: [RefusedOutcome()])

    @Test("an outcome the database refuses at first is written when it is back: the task ran once and its run succeeded")
    func outcomeWrittenLater() async throws {
        try await TestApp.run(extraPlugins: [Self.plugin], realClock: true) { app in
            RefusedOutcome.database.withLock { $0 = app.runtime.database }
            let before = RefusedOutcome.runs.withLock { $0 }
            let message = try await app.runtime.tasks.enqueue(["task": "outcome-test.refused", "args": [:]])
            let settled = try await withWorker(app, WorkerOptions(queues: ["default"], concurrency: 2)) { _ in
                try await eventually { try await app.runtime.runs.find(id: message.id)?.state.isFinal == true }
            }
            #expect(settled)
            let run = try await app.runtime.runs.find(id: message.id)
            #expect(run?.state == .succeeded && run?.attempt == 1, "\(String(describing: run))")
            #expect(RefusedOutcome.runs.withLock { $0 } - before == 1, "the task ran once")
        }
    }
}

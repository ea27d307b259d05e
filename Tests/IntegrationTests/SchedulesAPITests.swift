// /api/v1/schedules against a live server: validation, roles, preview, run now, edits.
import Foundation
import IntegratorCore
import SQLKit
import Testing

@Suite("Schedules API")
struct SchedulesAPITests {
    @Test("bad input names every wrong part")
    func validation() async throws {
        try await TestApp.run { app in
            let badCron = try await app.call(
                .post, "/api/v1/schedules",
                body: ["name": "x", "task": "core.noop", "crontab": ["expression": "0 25 * * *", "timezone": "Mars/Olympus"]])
            #expect(badCron.status == .badRequest)
            #expect(badCron.errorFields.sorted() == ["crontab.expression", "crontab.timezone"])
            #expect(badCron.text.contains("hour"), "the message says which field of the expression is wrong: \(badCron.text)")

            let several = try await app.call(
                .post, "/api/v1/schedules",
                body: ["name": "x", "task": "core.noop", "interval": ["every": 5], "clocked": ["at": "2026-01-01T00:00:00Z"]])
            #expect(several.status == .badRequest && several.errorFields == ["interval"] || several.errorFields == ["clocked"])

            let nothing = try await app.call(
                .post, "/api/v1/schedules",
                body: ["task": "nope.task", "interval": ["every": 0], "priority": 12, "misfire": "later", "overlap": "maybe"])
            #expect(nothing.status == .badRequest)
            #expect(
                Set(nothing.errorFields) == ["name", "task", "interval.every", "priority", "misfire", "overlap"],
                "\(nothing.text)")

            let noTiming = try await app.call(.post, "/api/v1/schedules", body: ["name": "x", "task": "core.noop"])
            #expect(noTiming.errorFields == ["interval"])
            let badDate = try await app.call(
                .post, "/api/v1/schedules", body: ["name": "x", "task": "core.noop", "clocked": ["at": "tomorrow"]])
            #expect(badDate.errorFields == ["clocked.at"])
        }
    }

    @Test("operators write, viewers read; names are unique")
    func roles() async throws {
        try await TestApp.run { app in
            let body: JSONValue = ["name": "every-minute", "task": "core.noop", "interval": ["every": 60]]
            let viewer = try await app.token(for: .viewer)
            #expect(try await app.call(.post, "/api/v1/schedules", body: body, token: viewer).status == .forbidden)
            let operatorToken = try await app.token(for: .operator)
            let created = try await app.call(.post, "/api/v1/schedules", body: body, token: operatorToken)
            #expect(created.status == .created)
            #expect(created.json["next_run_at"]?.stringValue == TestApp.startDate.addingTimeInterval(60).formatted(.iso8601WithMilliseconds))
            #expect(created.json["misfire"] == "run_once" && created.json["overlap"] == "skip" && created.json["enabled"] == true)
            #expect(try await app.call(.post, "/api/v1/schedules", body: body, token: operatorToken).status == .conflict)
            let listed = try await app.call(.get, "/api/v1/schedules", token: viewer)
            #expect(listed.json["items"]?.arrayValue?.count == 1)
            let readOnly = try await app.call(
                .patch, "/api/v1/schedules/\(created.json["id"]!.stringValue!)", body: ["total_run_count": 5], token: operatorToken)
            #expect(readOnly.errorFields == ["total_run_count"])
        }
    }

    @Test("preview lists the next fire times in the schedule's zone")
    func preview() async throws {
        try await TestApp.run { app in
            // 2026-10-31T12:00:00Z: the New York fall-back is the next night.
            app.clock.set(Date(timeIntervalSince1970: 1_793_448_000))
            let created = try await app.call(
                .post, "/api/v1/schedules",
                body: ["name": "hourly", "task": "core.noop", "crontab": ["expression": "0 * * * *", "timezone": "America/New_York"]],
                token: TestApp.apiToken)
            let id = try #require(created.json["id"]?.stringValue)
            let preview = try await app.call(.get, "/api/v1/schedules/\(id)/preview?count=40", token: TestApp.apiToken)
            let times = preview.json["times"]?.arrayValue?.compactMap(\.stringValue) ?? []
            #expect(times.count == 40)
            #expect(times.first == "2026-10-31T09:00:00-04:00")
            #expect(times.contains("2026-11-01T01:00:00-04:00") && times.contains("2026-11-01T01:00:00-05:00"))
            #expect(try await app.call(.get, "/api/v1/schedules/\(id)/preview?count=0", token: TestApp.apiToken).errorFields == ["count"])
        }
    }

    @Test("run fires now; disabling clears the next run; delete removes it")
    func runDisableDelete() async throws {
        try await TestApp.run { app in
            let created = try await app.call(
                .post, "/api/v1/schedules", body: ["name": "n", "task": "core.noop", "args": ["x": 1], "interval": ["every": 30]])
            let id = try #require(created.json["id"]?.stringValue)
            let run = try await app.call(.post, "/api/v1/schedules/\(id)/run")
            #expect(run.status == .accepted)
            let taskID = try #require(run.json["task_id"]?.stringValue)
            let task = try await app.call(.get, "/api/v1/tasks/\(taskID)")
            #expect(task.json["schedule"]?.stringValue == id && task.json["args"] == ["x": 1] && task.json["state"] == "queued")
            #expect(try await app.call(.get, "/api/v1/schedules/\(id)").json["total_run_count"] == 1)

            let disabled = try await app.call(.patch, "/api/v1/schedules/\(id)", body: ["enabled": false])
            #expect(disabled.json["enabled"] == false && disabled.json["next_run_at"] == .null)
            let enabled = try await app.call(.patch, "/api/v1/schedules/\(id)", body: ["enabled": true, "interval": ["every": 10]])
            #expect(enabled.json["next_run_at"]?.stringValue != nil && enabled.json["interval"]?["every"] == 10)

            #expect(try await app.call(.delete, "/api/v1/schedules/\(id)").status == .noContent)
            #expect(try await app.call(.get, "/api/v1/schedules/\(id)").status == .notFound)
        }
    }
}

extension SchedulesAPITests {
    @Test("an integration's schedule runs its fetch on its queue, and goes when the integration is deleted")
    func integrationSchedule() async throws {
        try await TestApp.run { app in
            let integration = try await app.call(
                .post, "/api/v1/integrations", body: ["name": "demo", "provider": "demo", "queue": "low", "priority": 2])
            let integrationID = try #require(integration.json["id"]?.stringValue)
            let created = try await app.call(
                .post, "/api/v1/schedules",
                body: ["name": "fetch-demo", "integration": .string(integrationID), "interval": ["every": 300]])
            #expect(created.status == .created)
            #expect(created.json["task"] == "integration.fetch" && created.json["args"] == ["integration_id": .string(integrationID)])
            #expect(created.json["queue"] == "low" && created.json["priority"] == 2)
            let both = try await app.call(
                .post, "/api/v1/schedules",
                body: ["name": "x", "integration": .string(integrationID), "task": "core.noop", "interval": ["every": 5]])
            #expect(both.errorFields == ["task"])
            let scheduleID = try #require(created.json["id"]?.stringValue)
            #expect(try await app.call(.delete, "/api/v1/integrations/\(integrationID)").status == .noContent)
            #expect(try await app.call(.get, "/api/v1/schedules/\(scheduleID)").status == .notFound)
        }
    }
}

extension FormatStyle where Self == Date.ISO8601FormatStyle {
    /// How the API writes instants.
    static var iso8601WithMilliseconds: Date.ISO8601FormatStyle { Date.ISO8601FormatStyle(includingFractionalSeconds: true) }
}

extension SchedulesAPITests {
    @Test("a schedule row that cannot be read is left out of the list instead of failing it")
    func unreadableRowInList() async throws {
        try await TestApp.run { app in
            var ids: [String] = []
            for name in ["first", "broken", "third"] {
                let created = try await app.call(
                    .post, "/api/v1/schedules", body: ["name": .string(name), "task": "core.noop", "interval": ["every": 60]])
                ids.append(try #require(created.json["id"]?.stringValue))
            }
            let brokenID = ids[1]
            try await app.runtime.database.withSQL { sql in
                try await sql.raw("UPDATE schedules SET arguments = '{\"oops\": ' WHERE id = \(bind: brokenID)").run()
            }
            let listed = try await app.call(.get, "/api/v1/schedules")
            #expect(listed.status == .ok)
            #expect(listed.json["items"]?.arrayValue?.compactMap { $0["name"]?.stringValue } == ["first", "third"])
            // Paging past the unreadable row still reaches the last one.
            let firstPage = try await app.call(.get, "/api/v1/schedules?limit=2")
            #expect(firstPage.json["items"]?.arrayValue?.compactMap { $0["name"]?.stringValue } == ["first"])
            let cursor = try #require(firstPage.json["next_cursor"]?.stringValue)
            let secondPage = try await app.call(.get, "/api/v1/schedules?limit=2&cursor=\(cursor)")
            #expect(secondPage.json["items"]?.arrayValue?.compactMap { $0["name"]?.stringValue } == ["third"])
        }
    }
}

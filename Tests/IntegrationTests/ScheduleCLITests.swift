// `integrator schedule preview` and `integrator schedules …` as an admin scripting them would run them.
import Foundation
import IntegratorCore
import Testing

@Suite("Schedule command line")
struct ScheduleCLITests {
    @Test("schedule preview prints fire times with offsets in the given zone, across DST")
    func preview() throws {
        let directory = try CLITests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let fixed = try CLITests.run(
            ["schedule", "preview", "30 2 * * *", "--tz", "America/New_York", "--count", "3", "--from", "2026-03-07T00:00:00Z"],
            in: directory)
        #expect(fixed.status == 0)
        #expect(fixed.stdout == "2026-03-07T02:30:00-05:00\n2026-03-08T03:00:00-04:00\n2026-03-09T02:30:00-04:00\n")
        let hourly = try CLITests.run(
            ["schedule", "preview", "@hourly", "--tz", "Europe/London", "--count", "3", "--from", "2026-10-25T00:30:00Z", "--json"],
            in: directory)
        #expect(try JSONValue.parse(hourly.stdout) == ["2026-10-25T01:00:00+00:00", "2026-10-25T02:00:00+00:00", "2026-10-25T03:00:00+00:00"])
        let london = try CLITests.run(
            ["schedule", "preview", "0 * * * *", "--tz", "Europe/London", "--count", "2", "--from", "2026-10-24T23:30:00Z"],
            in: directory)
        #expect(london.stdout == "2026-10-25T01:00:00+01:00\n2026-10-25T01:00:00+00:00\n", "the repeated hour fires twice")

        let bad = try CLITests.run(["schedule", "preview", "0 0 31 2-13 *"], in: directory)
        #expect(bad.status == 2)
        #expect(bad.stderr.contains("month") && bad.stderr.hasPrefix("integrator: "), "\(bad.stderr)")
        let badZone = try CLITests.run(["schedule", "preview", "* * * * *", "--tz", "Nowhere/City"], in: directory)
        #expect(badZone.status == 2 && badZone.stderr.contains("Nowhere/City"))
    }

    @Test("schedules create, list and delete")
    func crud() async throws {
        let directory = try CLITests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try await TestApp.run { app in
            let environment = [
                "INTEGRATOR_DATABASE_URL": CLITests.url(for: app.runtime.database.location),
                "INTEGRATOR_SECRET_KEY": SecretKeyRing.generateEncodedKey(),
            ]
            let created = try CLITests.run(
                ["schedules", "create", "--name", "nightly", "--task", "core.noop", "--args", #"{"n":1}"#, "--cron", "0 3 * * *",
                 "--tz", "Europe/London"],
                environment: environment, in: directory)
            #expect(created.status == 0, "\(created.stderr)")
            #expect(created.stdout.contains("nightly  core.noop  cron '0 3 * * *' Europe/London  enabled"))
            let invalid = try CLITests.run(
                ["schedules", "create", "--name", "broken", "--task", "core.noop", "--every", "0"], environment: environment, in: directory)
            #expect(invalid.status == 2 && invalid.stderr.contains("interval.every"), "\(invalid.stderr)")
            let listed = try CLITests.run(["schedules", "list", "--json"], environment: environment, in: directory)
            let line = try JSONValue.parse(listed.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
            #expect(line["name"] == "nightly" && line["kind"] == "crontab")
            let deleted = try CLITests.run(["schedules", "delete", "nightly"], environment: environment, in: directory)
            #expect(deleted.status == 0 && deleted.stdout.hasPrefix("Deleted schedule nightly"))
            #expect(try await app.runtime.schedules.list(enabled: nil, integrationID: nil, page: PageRequest()).items.isEmpty)
        }
    }
}

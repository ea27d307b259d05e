// `integrator run` as a user runs it: live progress, the summary, JSON output, and clear failures.
import Foundation
import IntegratorCore
import Plugins
import Testing

@Suite("integrator run")
struct RunCommandTests {
    /// Creates integrations in the store the program will use, through a runtime with the program's key.
    static func create(_ bodies: [JSONValue], at location: DatabaseLocation, key: String) async throws -> [Integration] {
        try await Database.withDatabase(location, logger: TestDatabase.logger) { database in
            let settings = Settings(database: location, secretKeys: try SecretKeyRing(parsing: key, variable: "test"))
            let runtime = try await Runtime(
                settings: settings, database: database, registry: try BuiltinPlugins.registry(), logger: TestDatabase.logger)
            var created: [Integration] = []
            do {
                for body in bodies { created.append(try await runtime.integrations.create(body)) }
            } catch {
                await runtime.shutdown()
                throw error
            }
            await runtime.shutdown()
            return created
        }
    }

    @Test("prints progress while it fetches and a summary at the end; exits 1 with one line when it cannot")
    func foregroundFetch() async throws {
        let directory = try CLITests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try await TestDatabase.withEmptyLocation { location in
            let key = SecretKeyRing.generateEncodedKey()
            let environment = ["INTEGRATOR_DATABASE_URL": CLITests.url(for: location), "INTEGRATOR_SECRET_KEY": key]
            #expect(try CLITests.run(["migrate"], environment: environment, in: directory).status == 0)
            let integrations = try await Self.create(
                [
                    ["name": "cli-demo", "provider": "demo", "config": ["records": 1200, "page_size": 100, "change_fraction": 0]],
                    ["name": "paused", "provider": "demo", "active": false],
                ], at: location, key: key)

            let first = try CLITests.run(["run", "cli-demo", "--interval", "0"], environment: environment, in: directory)
            #expect(first.status == 0, "\(first.stderr)")
            let lines = first.stdout.split(separator: "\n").map(String.init)
            #expect(lines.first == "Fetching 'cli-demo' (provider demo, integration \(integrations[0].id))")
            // One line per write (every 500 records), each with the counts so far, growing to the total.
            let progress = lines.dropFirst().dropLast()
            let stored = progress.compactMap { line -> Int? in
                guard line.hasPrefix("  "), line.contains(" s  "), line.contains(" new, 0 updated, 0 unchanged") else { return nil }
                return line.split(separator: ",").dropFirst().first.flatMap { Int($0.split(separator: " ").first ?? "") }
            }
            #expect(stored.count == progress.count && stored.count >= 2)
            #expect(stored == stored.sorted() && stored.last == 1200)
            #expect(progress.last?.hasSuffix("12 pages, 1200 records: 1200 new, 0 updated, 0 unchanged") == true)
            #expect(lines.last?.hasPrefix("Done: 12 pages, 1200 records: 1200 new, 0 updated, 0 unchanged in ") == true)

            // By id, as JSON: the summary alone on standard output, everything unchanged the second time.
            let second = try CLITests.run(["run", integrations[0].id, "--json"], environment: environment, in: directory)
            #expect(second.status == 0)
            let summary = try JSONValue.parse(second.stdout)
            #expect(summary["new"] == 0 && summary["updated"] == 0 && summary["unchanged"] == 1200)
            #expect(summary["pages"] == 12 && summary["integration"] == .string(integrations[0].id))
            #expect(second.stderr.contains("Fetching 'cli-demo'"))

            let unknown = try CLITests.run(["run", "nope"], environment: environment, in: directory)
            #expect(unknown.status == 1)
            #expect(unknown.stderr == "integrator: no integration with id or name 'nope'\n")
            let paused = try CLITests.run(["run", "paused"], environment: environment, in: directory)
            #expect(paused.status == 1)
            #expect(paused.stderr.hasSuffix("integrator: integration 'paused' is inactive; set \"active\": true to fetch it\n"))
            let noKey = try CLITests.run(["run", "cli-demo"], environment: ["INTEGRATOR_DATABASE_URL": CLITests.url(for: location)], in: directory)
            #expect(noKey.status == 2)
            #expect(noKey.stderr.hasPrefix("integrator: INTEGRATOR_SECRET_KEY: expected"))
        }
    }
}

// The `integrator` program as a user runs it: dev's first start, migrate, users, tokens, plugins, bad settings.
import Foundation
import IntegratorCore
import Plugins
import Testing

@Suite("Command line")
struct CLITests {
    /// The built program, next to the package's other build products.
    static let binary: URL = {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return root.appendingPathComponent(".build/debug/integrator")
    }()

    struct Output {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs the program to completion in `directory` with a clean environment plus `environment`.
    static func run(_ arguments: [String], environment: [String: String] = [:], stdin: String? = nil, in directory: URL) throws -> Output {
        let process = Process()
        process.executableURL = binary
        process.arguments = arguments
        process.currentDirectoryURL = directory
        process.environment = ["PATH": "/usr/bin:/bin", "HOME": directory.path].merging(environment) { _, new in new }
        let out = Pipe(), err = Pipe(), input = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = input
        try process.run()
        if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
        try input.fileHandleForWriting.close()
        let stdoutData = out.fileHandleForReading.readDataToEndOfFile()
        let stderrData = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Output(
            status: process.terminationStatus, stdout: String(decoding: stdoutData, as: UTF8.self),
            stderr: String(decoding: stderrData, as: UTF8.self))
    }

    static func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("integrator-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    static func url(for location: DatabaseLocation) -> String {
        switch location {
        case .sqlite(let path): "sqlite://\(path)"
        case .postgres(let target):
            "postgres://\(target.username):\(target.password?.reveal() ?? "")@\(target.host):\(target.port)/\(target.database)"
        }
    }

    @Test("--version, --help and plugins list answer")
    func basics() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let version = try Self.run(["--version"], in: directory)
        #expect(version.status == 0)
        #expect(version.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "0.1.0")
        let help = try Self.run(["users", "create", "--help"], in: directory)
        #expect(help.stdout.contains("--password-stdin"))
        let plugins = try Self.run(["plugins", "list", "--json"], in: directory)
        #expect(plugins.status == 0)
        let parsed = try JSONValue.parse(plugins.stdout)
        #expect(parsed.arrayValue?.compactMap { $0["id"]?.stringValue } == ["core", "fetch", "generic", "demo", "sympla", "webhooks", "scheduled-messages", "blip", "chat-buffer"])
        let text = try Self.run(["plugins", "list"], in: directory)
        #expect(text.stdout.contains("credentials http-bearer: token (secret)"))
    }

    @Test("a bad setting stops the program with one line naming the variable")
    func badSettings() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let badKey = try Self.run(["serve"], environment: ["INTEGRATOR_SECRET_KEY": "c2hvcnQ="], in: directory)
        #expect(badKey.status == 2)
        #expect(badKey.stderr == "integrator: INTEGRATOR_SECRET_KEY: expected base64 of 32 bytes (key 1 is not); generate one with `openssl rand -base64 32`\n")
        let noKey = try Self.run(["serve"], in: directory)
        #expect(noKey.status == 2)
        #expect(noKey.stderr.hasPrefix("integrator: INTEGRATOR_SECRET_KEY: expected"))
        try "LOG_LEVEL=shouty\n".write(to: directory.appendingPathComponent(".env"), atomically: true, encoding: .utf8)
        let fromDotEnv = try Self.run(["migrate"], in: directory)
        #expect(fromDotEnv.status == 2)
        #expect(fromDotEnv.stderr.contains("LOG_LEVEL: expected one of"))
        let badURL = try Self.run(["migrate", "--database-url", "mysql://root:pw@db/x", "--log-level", "info"], in: directory)
        #expect(badURL.status == 2)
        #expect(!badURL.stderr.contains("pw@"))
    }

    @Test("migrate, users create and tokens create work against the store")
    func administration() async throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try await TestDatabase.withEmptyLocation { location in
            let environment = [
                "INTEGRATOR_DATABASE_URL": Self.url(for: location), "INTEGRATOR_SECRET_KEY": SecretKeyRing.generateEncodedKey(),
            ]
            let first = try Self.run(["migrate"], environment: environment, in: directory)
            #expect(first.status == 0)
            // The engine's versions, then each built-in plugin's under its id, in registration order.
            let applied = Migration.all.map { String($0.version) }
                + BuiltinPlugins.all.flatMap { plugin in plugin.migrations.map { "\(plugin.id):\($0.version)" } }
            #expect(applied.contains("webhooks:1"))
            #expect(first.stdout == "Applied migrations: \(applied.joined(separator: ", ")).\n", "\(first.stdout)")
            #expect(try Self.run(["migrate"], environment: environment, in: directory).stdout == "Database is up to date.\n")

            let created = try Self.run(
                ["users", "create", "--username", "ana", "--role", "operator", "--password-stdin"], environment: environment,
                stdin: "a-long-enough-password\n", in: directory)
            #expect(created.status == 0)
            #expect(created.stdout.hasPrefix("Created operator 'ana'"))
            let weak = try Self.run(
                ["users", "create", "--username", "bo", "--role", "operator", "--password-stdin"], environment: environment,
                stdin: "short", in: directory)
            #expect(weak.status == 2)
            #expect(weak.stderr == "integrator: password: must be at least 12 characters\n")
            let duplicate = try Self.run(
                ["users", "create", "--username", "ana", "--role", "viewer", "--password-stdin"], environment: environment,
                stdin: "a-long-enough-password", in: directory)
            #expect(duplicate.status == 1)
            #expect(duplicate.stderr.contains("already exists"))

            let token = try Self.run(["tokens", "create", "--user", "ana"], environment: environment, in: directory)
            #expect(token.status == 0)
            #expect(token.stdout.hasPrefix("itk_"))
            #expect(try Self.run(["tokens", "create", "--user", "nobody"], environment: environment, in: directory).status == 1)
        }
    }

    /// Starts `integrator dev` in `directory` and waits for its "running" line; returns the process and its standard output so far.
    static func startDev(in directory: URL, port: Int, environment: [String: String] = [:]) async throws -> (Process, String) {
        let process = Process()
        process.executableURL = Self.binary
        process.arguments = ["dev", "--port", String(port)]
        process.currentDirectoryURL = directory
        process.environment = ["PATH": "/usr/bin:/bin", "HOME": directory.path].merging(environment) { _, new in new }
        let stdoutFile = directory.appendingPathComponent("stdout-\(port).txt")
        let stderrFile = directory.appendingPathComponent("stderr-\(port).txt")
        _ = FileManager.default.createFile(atPath: stdoutFile.path, contents: nil)
        _ = FileManager.default.createFile(atPath: stderrFile.path, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: stdoutFile)
        process.standardError = try FileHandle(forWritingTo: stderrFile)
        try process.run()
        for _ in 0..<300 {
            try await Task.sleep(for: .milliseconds(100))
            let text = try String(contentsOf: stdoutFile, encoding: .utf8)
            if text.contains("Integrator is running") { return (process, text) }
            if !process.isRunning { break }
        }
        process.terminate()
        throw TestSetupError("integrator dev did not start")
    }

    @Test("dev starts on a fresh folder, prints a login once, and never writes the secrets it is given")
    func devFirstRun() async throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let port = try FreePort.make()
        let (process, output) = try await Self.startDev(in: directory, port: port)
        defer {
            if process.isRunning { process.terminate() }
            process.waitUntilExit()
        }
        let password = output.split(separator: "\n").first { $0.contains("password:") }?.split(separator: " ").last.map(String.init)
        let adminPassword = try #require(password)
        let client = SimpleHTTP(port: port)
        let login = try await client.call("POST", "/api/v1/auth/token", body: ["username": "admin", "password": .string(adminPassword)])
        let token = try #require(login["access_token"]?.stringValue)
        let secretValue = "ghp_DEV-SECRET-4242424242"
        let created = try await client.call(
            "POST", "/api/v1/credentials", body: ["name": "gh", "type": "http-bearer", "secret": ["token": .string(secretValue)]], token: token)
        #expect(created["secret"]?["token"] == "********")
        let credentialsID = try #require(created["id"]?.stringValue)
        let readBack = try await client.call("GET", "/api/v1/credentials/\(credentialsID)", token: token)
        #expect(readBack["secret"]?["token"] == "********")
        let integration = try await client.call("POST", "/api/v1/integrations", body: ["name": "first", "provider": "demo"], token: token)
        #expect(integration["provider"] == "demo")

        process.terminate()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)

        // A second start keeps the admin and the key: no new password is printed, and the old token still works.
        let secondPort = try FreePort.make()
        let (second, secondOutput) = try await Self.startDev(in: directory, port: secondPort, environment: ["LOG_FORMAT": "json"])
        defer {
            if second.isRunning { second.terminate() }
            second.waitUntilExit()
        }
        #expect(!secondOutput.contains("password:"))
        let me = try await SimpleHTTP(port: secondPort).call("GET", "/api/v1/me", token: token)
        #expect(me["name"] == "admin")
        second.terminate()
        second.waitUntilExit()
        let logLines = try String(contentsOf: directory.appendingPathComponent("stderr-\(secondPort).txt"), encoding: .utf8)
            .split(separator: "\n")
        #expect(logLines.count >= 2)
        for line in logLines {
            let entry = try JSONValue.parse(String(line))
            #expect(entry["level"]?.stringValue != nil && entry["message"]?.stringValue != nil, "not a JSON log line: \(line)")
        }

        for file in try FileManager.default.subpathsOfDirectory(atPath: directory.path) {
            let data = (try? Data(contentsOf: directory.appendingPathComponent(file))) ?? Data()
            #expect(data.range(of: Data(secretValue.utf8)) == nil, "secret found in \(file)")
        }
        let keyPath = directory.appendingPathComponent("integrator-data/secret.key").path
        let keyAttributes = try FileManager.default.attributesOfItem(atPath: keyPath)
        #expect((keyAttributes[.posixPermissions] as? Int) == 0o600)
    }
}

enum FreePort {
    /// A port that was free a moment ago (bind to 0, read the port, close).
    static func make() throws -> Int {
        let socket = Foundation.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(socket) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket, $0, length) } }
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(socket, $0, &length) } }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

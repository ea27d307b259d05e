// Settings: defaults, precedence, and one clear line for every bad value.
import Foundation
import IntegratorCore
import Testing

@Suite("Settings")
struct SettingsTests {
    @Test("defaults match the design")
    func defaults() throws {
        let settings = try Settings(values: [:])
        #expect(settings.database == .sqlite(path: "./integrator-data/integrator.sqlite"))
        #expect(settings.broker == .sql)
        #expect(settings.httpHost == "127.0.0.1")
        #expect(settings.httpPort == 8000)
        #expect(settings.maxBodySize == 1 << 20)
        #expect(settings.logLevel == .info)
        #expect(settings.logFormat == .text)
        #expect(settings.secretKeys == nil)
        #expect(settings.apiToken == nil)
    }

    @Test("values parse, API_TOKEN is an alias")
    func parse() throws {
        let key = SecretKeyRing.generateEncodedKey()
        let settings = try Settings(values: [
            "INTEGRATOR_DATABASE_URL": "postgres://app:p%40ss@db.internal:6543/integrator?sslmode=require&prepare_threshold=0",
            "INTEGRATOR_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672/%2f",
            "INTEGRATOR_SECRET_KEY": key, "API_TOKEN": "a-machine-token-of-length",
            "INTEGRATOR_HTTP_PORT": "9000", "LOG_LEVEL": "DEBUG", "LOG_FORMAT": "json",
        ])
        guard case .postgres(let location) = settings.database else { Issue.record("not postgres"); return }
        #expect(location.host == "db.internal")
        #expect(location.port == 6543)
        #expect(location.username == "app")
        #expect(location.password?.reveal() == "p@ss")
        #expect(location.database == "integrator")
        #expect(location.tls == .require)
        #expect(location.prepareThreshold == 0)
        #expect(settings.database.redacted == "postgres://app@db.internal:6543/integrator")
        #expect(settings.apiToken?.reveal() == "a-machine-token-of-length")
        #expect(settings.httpPort == 9000)
        #expect(settings.logLevel == .debug)
        #expect(settings.logFormat == .json)
        #expect(settings.secretKeys?.all.count == 1)
    }

    @Test("a bad value names its variable and what was expected, without echoing secrets", arguments: [
        ("INTEGRATOR_DATABASE_URL", "mysql://root:hunter2@x/db", "INTEGRATOR_DATABASE_URL: expected sqlite://PATH or postgres://"),
        ("INTEGRATOR_DATABASE_URL", "postgres://user:hunter2@/db", "INTEGRATOR_DATABASE_URL: expected"),
        ("INTEGRATOR_DATABASE_URL", "postgres://user:hunter2@x/db?prepare_threshold=-1",
         "INTEGRATOR_DATABASE_URL: expected prepare_threshold to be a whole number from 0"),
        ("INTEGRATOR_SECRET_KEY", "aHVudGVyMg==", "INTEGRATOR_SECRET_KEY: expected base64 of 32 bytes"),
        ("INTEGRATOR_BROKER_URL", "redis://hunter2@x", "INTEGRATOR_BROKER_URL: expected sql or amqp://"),
        ("INTEGRATOR_HTTP_PORT", "80a", "INTEGRATOR_HTTP_PORT: expected a port number from 0 to 65535, got '80a'"),
        ("LOG_LEVEL", "loud", "LOG_LEVEL: expected one of trace, debug, info, notice, warning, error, critical, got 'loud'"),
        ("LOG_FORMAT", "xml", "LOG_FORMAT: expected text or json, got 'xml'"),
    ])
    func badValues(variable: String, value: String, message: String) {
        do {
            _ = try Settings(values: [variable: value])
            Issue.record("accepted \(variable)=\(value)")
        } catch {
            #expect(error.description.hasPrefix(message))
            #expect(!error.description.contains("hunter2"))
            #expect(!error.description.contains("\n"))
        }
    }

    @Test(".env is read, the environment beats it, flags beat both")
    func precedence() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("env-\(UUID().uuidString)")
        try """
        # comment
        export INTEGRATOR_HTTP_PORT=7000
        LOG_LEVEL="warning"
        INTEGRATOR_HTTP_HOST='0.0.0.0'
        """.write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let settings = try Settings.load(
            environment: ["INTEGRATOR_HTTP_PORT": "7001", "LOG_LEVEL": "error"], dotEnv: file, overrides: ["LOG_LEVEL": "trace"])
        #expect(settings.httpPort == 7001)
        #expect(settings.logLevel == .trace)
        #expect(settings.httpHost == "0.0.0.0")
    }
}

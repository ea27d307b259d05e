// `integrator serve` and `integrator dev`: run the API (and, in dev, everything else) until SIGTERM/SIGINT.
import ArgumentParser
import Foundation
import Hummingbird
import IntegratorCore
import Logging
import Plugins
import ServiceLifecycle

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve the HTTP API. Needs INTEGRATOR_SECRET_KEY; run `integrator migrate` first.")

    @OptionGroup var options: GlobalOptions

    func run() async throws {
        try await reportingErrors {
            let settings = try options.settings()
            try await Server.run(settings: settings, parts: [.api])
        }
    }
}

struct DevCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev",
        abstract: "Run everything in one process on the embedded defaults (SQLite, SQL queue).",
        discussion: """
            Applies migrations, creates a secret key in ./integrator-data/ if INTEGRATOR_SECRET_KEY is not set, \
            creates a first admin if there is none (printing its password once), and serves until stopped.
            """)

    @OptionGroup var options: GlobalOptions

    @Option(help: "Where dev keeps its generated secret key.")
    var dataDirectory = "./integrator-data"

    @Option(help: "Comma-separated queues the built-in worker consumes.")
    var queues = "high,default,low"

    @Option(help: "How many tasks the built-in worker runs at once.")
    var concurrency = 4

    func run() async throws {
        try await reportingErrors {
            var settings = try options.settings()
            if settings.secretKeys == nil {
                settings.secretKeys = try DevSecretKey.loadOrCreate(in: URL(fileURLWithPath: dataDirectory))
            }
            let queueList = queues.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            try await Server.run(
                settings: settings,
                parts: [.migrate, .ensureAdmin, .api, .beat(BeatOptions()), .worker(WorkerOptions(queues: queueList, concurrency: concurrency))])
        }
    }
}

/// The generated key `dev` uses when none is configured, kept in the data folder with owner-only permissions.
enum DevSecretKey {
    static func loadOrCreate(in directory: URL) throws -> SecretKeyRing {
        let file = directory.appendingPathComponent("secret.key")
        let manager = FileManager.default
        if !manager.fileExists(atPath: file.path) {
            try manager.createDirectory(at: directory, withIntermediateDirectories: true)
            let created = manager.createFile(
                atPath: file.path, contents: Data(SecretKeyRing.generateEncodedKey().utf8),
                attributes: [.posixPermissions: 0o600])
            guard created else { throw ConfigurationError(variable: "INTEGRATOR_SECRET_KEY", expected: "a writable \(directory.path)") }
        }
        let text = try String(contentsOf: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        return try SecretKeyRing(parsing: text, variable: "INTEGRATOR_SECRET_KEY (from \(file.path))")
    }
}

/// What one process runs.
enum ServerPart {
    case migrate
    case ensureAdmin
    case api
    case worker(WorkerOptions)
    case beat(BeatOptions)
}

enum Server {
    static func run(settings: Settings, parts: [ServerPart]) async throws {
        let migrate = parts.contains { if case .migrate = $0 { true } else { false } }
        let ensureAdmin = parts.contains { if case .ensureAdmin = $0 { true } else { false } }
        let serveAPI = parts.contains { if case .api = $0 { true } else { false } }
        let logger = Logger(label: "integrator")
        IntegratorMetrics.bootstrapProcess()
        guard settings.secretKeys != nil else {
            throw ConfigurationError(
                variable: "INTEGRATOR_SECRET_KEY", expected: "base64 of 32 bytes (it is not set; `openssl rand -base64 32` makes one)")
        }
        let registry = try BuiltinPlugins.registry()
        if migrate {
            // Before anything starts, so workers never poll tables that do not exist yet.
            let migrator = Migrator(plugins: registry.plugins)
            let applied = try await Database.withDatabase(settings.database, logger: logger) { try await migrator.migrateReporting($0) }
            if !applied.engine.isEmpty || !applied.plugins.isEmpty {
                logger.info("migrations applied", metadata: ["versions": "\(applied.engine)", "plugin_migrations": "\(applied.plugins)"])
            }
        }
        let database = try await Database.open(settings.database, logger: logger)
        let runtime = try await Runtime(settings: settings, database: database, registry: registry, logger: logger)
        var app = APIServer.makeApplication(runtime) { port in
            let url = "http://\(settings.httpHost):\(port)"
            logger.info("listening", metadata: ["http.url": "\(url)", "database": "\(settings.database.redacted)"])
            if ensureAdmin {
                printNow("Integrator is running at \(url)  (API under \(url)/api/v1, health at \(url)/health)")
                printNow("Admin web UI: \(url)/admin  (log in as admin with the password printed when the admin was created)")
            }
        }
        app.beforeServerStarts {
            if ensureAdmin, try await !runtime.users.hasAdmin() {
                let password = PasswordGenerator.make()
                _ = try await runtime.users.create(username: "admin", role: Role.admin.rawValue, password: password)
                printNow(
                    """
                    Created the first admin. This password is shown only once:
                      username: admin
                      password: \(password.reveal())
                    Get a token: curl -s -X POST http://\(settings.httpHost):\(settings.httpPort)/api/v1/auth/token \
                    -H 'content-type: application/json' -d '{"username":"admin","password":"…"}'
                    """)
            }
        }
        var services: [any Service] = [database, runtime.outbound]
        if let broker = runtime.broker as? any BrokerService { services.append(broker) }
        var roles: Set<ProcessRole> = serveAPI ? [.api] : []
        for part in parts {
            if case .worker(let options) = part {
                services.append(runtime.makeWorker(options))
                roles.insert(.worker)
            }
            if case .beat(let options) = part {
                services.append(runtime.makeBeat(options))
                // Idempotent and cheap, so every beat process runs one, leader or not.
                services.append(OrphanedRunReaper(runtime: runtime))
                roles.insert(.beat)
            }
        }
        services += try runtime.pluginServices(for: roles)
        if serveAPI { services.append(app) }
        // Without the API, /metrics has a listener of its own when asked for.
        if !serveAPI, let port = settings.metricsPort {
            services.append(
                MetricsListener.makeApplication(settings: settings, host: settings.metricsHost, port: port, logger: logger) { port in
                    logger.info("serving metrics", metadata: ["metrics.url": "http://\(settings.metricsHost):\(port)/metrics"])
                })
        }
        // Services stop in reverse order: the API first, then workers, the database last.
        let group = ServiceGroup(
            configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}

/// Random passwords for generated accounts.
enum PasswordGenerator {
    static func make(length: Int = 24) -> Secret {
        let alphabet = Array("abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789")
        var generator = SystemRandomNumberGenerator()
        return Secret(String((0..<length).map { _ in alphabet.randomElement(using: &generator)! }))
    }
}

// The `integrator` command: the root command and the options every subcommand shares.
import ArgumentParser
import Foundation
import IntegratorCore
import Logging
import Plugins

@main
struct Integrator: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "integrator",
        abstract: "Plugin-based integration runner: API, beat scheduler and workers.",
        discussion: """
            Settings come from environment variables, then a .env file in the working directory, then flags \
            (each overrides the one before). See README.md for every variable.
            """,
        version: IntegratorVersion.current,
        subcommands: [
            DevCommand.self, ServeCommand.self, WorkerCommand.self, MigrateCommand.self, UsersCommand.self, TokensCommand.self,
            PluginsCommand.self, BenchCommand.self, RunCommand.self, BeatCommand.self, ScheduleCommand.self, SchedulesCommand.self,
            StatusCommand.self, TasksCommand.self, QueuesCommand.self, BackupCommand.self,
        ]
    )
}

enum IntegratorVersion {
    static let current = "0.1.0"
}

/// Flags that override the environment, shared by every command that touches the store or serves.
struct GlobalOptions: ParsableArguments {
    @Option(name: .customLong("database-url"), help: "Overrides INTEGRATOR_DATABASE_URL (sqlite://PATH or postgres://…).")
    var databaseURL: String?

    @Option(name: .customLong("host"), help: "Overrides INTEGRATOR_HTTP_HOST (default 127.0.0.1).")
    var host: String?

    @Option(name: .customLong("port"), help: "Overrides INTEGRATOR_HTTP_PORT (default 8000).")
    var port: String?

    @Option(name: .customLong("log-level"), help: "Overrides LOG_LEVEL: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String?

    @Option(name: .customLong("log-format"), help: "Overrides LOG_FORMAT: text or json.")
    var logFormat: String?

    /// Settings from the environment, `.env` and these flags, plus a command's own `overrides` (by variable name).
    func settings(overriding overrides: [String: String] = [:]) throws(ConfigurationError) -> Settings {
        var overrides = overrides
        overrides["INTEGRATOR_DATABASE_URL"] = databaseURL
        overrides["INTEGRATOR_HTTP_HOST"] = host
        overrides["INTEGRATOR_HTTP_PORT"] = port
        overrides["LOG_LEVEL"] = logLevel
        overrides["LOG_FORMAT"] = logFormat
        let settings = try Settings.load(overrides: overrides)
        LogSetup.bootstrap(level: settings.logLevel, format: settings.logFormat)
        return settings
    }
}

/// Runs a command body, turning known failures into one line on standard error and exit code 2 (1 for the rest).
func reportingErrors(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let error as ExitCode {
        throw error
    } catch let error as ConfigurationError {
        FileHandle.standardError.write(Data("integrator: \(error)\n".utf8))
        throw ExitCode(2)
    } catch let error as RegistryError {
        FileHandle.standardError.write(Data("integrator: \(error)\n".utf8))
        throw ExitCode(2)
    } catch let error as ValidationFailure {
        FileHandle.standardError.write(Data("integrator: \(error)\n".utf8))
        throw ExitCode(2)
    } catch {
        FileHandle.standardError.write(Data("integrator: \(error)\n".utf8))
        throw ExitCode(1)
    }
}

/// Opens the database and builds the runtime around it for a one-shot command, shutting the runtime down after.
/// - Parameters:
///   - migrate: apply missing migrations first (benchmarks, which run on a database of their own).
///   - registry: defaults to the built-in plugins.
func withRuntime<T: Sendable>(
    _ settings: Settings, migrate: Bool = false, registry: PluginRegistry? = nil, outboundOptions: OutboundHTTP.Options? = nil,
    _ body: @Sendable (Runtime) async throws -> T
) async throws -> T {
    let logger = Logger(label: "integrator")
    let registry = try registry ?? BuiltinPlugins.registry()
    return try await Database.withDatabase(settings.database, logger: logger) { database in
        if migrate { _ = try await Migrator(plugins: registry.plugins).migrate(database) }
        let runtime = try await Runtime(
            settings: settings, database: database, registry: registry, logger: logger, outboundOptions: outboundOptions)
        do {
            let value = try await body(runtime)
            await runtime.shutdown()
            return value
        } catch {
            await runtime.shutdown()
            throw error
        }
    }
}

/// Prints a line and flushes at once: `dev` prints its login while it keeps running, often into a pipe.
func printNow(_ text: String) {
    FileHandle.standardOutput.write(Data((text + "\n").utf8))
}

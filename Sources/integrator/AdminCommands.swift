// One-shot administration: migrate, users create, tokens create, plugins list.
import ArgumentParser
import Foundation
import IntegratorCore
import Plugins

struct MigrateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate", abstract: "Apply database migrations. Running it again changes nothing.")

    @OptionGroup var options: GlobalOptions

    func run() async throws {
        try await reportingErrors {
            let settings = try options.settings()
            let migrator = Migrator(plugins: try BuiltinPlugins.registry().plugins)
            let applied = try await Database.withDatabase(settings.database, logger: .init(label: "integrator")) { database in
                try await migrator.migrateReporting(database)
            }
            let names = applied.engine.map(String.init) + applied.plugins
            print(names.isEmpty ? "Database is up to date." : "Applied migrations: \(names.joined(separator: ", ")).")
        }
    }
}

struct UsersCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "users", abstract: "Manage users.", subcommands: [Create.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a user.",
            discussion: "Example: printf '%s' \"$PASSWORD\" | integrator users create --username ana --role operator --password-stdin")

        @Option(help: "Login name: letters, digits, '.', '_', '-', '@'.")
        var username: String

        @Option(help: "admin, operator or viewer.")
        var role: String

        @Flag(help: "Read the password (at least 12 characters) from standard input, so it stays out of shell history.")
        var passwordStdin = false

        @OptionGroup var options: GlobalOptions

        func validate() throws {
            guard passwordStdin else { throw ValidationError("--password-stdin is required: pipe the password in") }
        }

        func run() async throws {
            try await reportingErrors {
                let settings = try options.settings()
                let data = FileHandle.standardInput.readDataToEndOfFile()
                let password = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .newlines)
                let (username, role) = (self.username, self.role)
                try await withRuntime(settings) { runtime in
                    let user = try await runtime.users.create(username: username, role: role, password: Secret(password))
                    print("Created \(user.role.rawValue) '\(user.username)' (id \(user.id)).")
                }
            }
        }
    }
}

struct TokensCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokens", abstract: "Manage personal API tokens.", subcommands: [Create.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a personal API token for a user. It is printed once; only its hash is stored.")

        @Option(help: "The user the token acts as (with that user's role).")
        var user: String

        @Option(help: "A label to recognise the token by.")
        var name = "cli"

        @OptionGroup var options: GlobalOptions

        func run() async throws {
            try await reportingErrors {
                let settings = try options.settings()
                let (user, name) = (self.user, self.name)
                try await withRuntime(settings) { runtime in
                    let (token, _) = try await runtime.users.createPersonalToken(username: user, name: name)
                    // Standard output carries only the token, so `TOKEN=$(integrator tokens create …)` works.
                    print(token.reveal())
                    FileHandle.standardError.write(Data("Token for '\(user)' created; it will not be shown again.\n".utf8))
                }
            }
        }
    }
}

struct PluginsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plugins", abstract: "Inspect the built-in plugins.", subcommands: [List.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List plugins with their credential types, providers and tasks.")

        @Flag(help: "Print JSON, including each field's JSON Schema.")
        var json = false

        func run() async throws {
            try await reportingErrors {
                let registry = try BuiltinPlugins.registry()
                if json {
                    print(JSONValue.array(registry.plugins.map(PluginCatalog.render)).encodedString())
                    return
                }
                for plugin in registry.plugins {
                    print("\(plugin.id) — \(plugin.name): \(plugin.summary)")
                    for type in plugin.credentialsTypes {
                        let fields = type.publicFields.fields.map(\.name) + type.secretFields.fields.map { "\($0.name) (secret)" }
                        print("  credentials \(type.id): \(fields.joined(separator: ", "))")
                    }
                    for provider in plugin.providers {
                        let credentials = provider.allowedCredentialTypes.isEmpty ? "no credentials" : "credentials: \(provider.allowedCredentialTypes.joined(separator: ", "))"
                        print("  provider \(provider.id) [\(provider.category)], \(credentials); config: \(provider.configFields.fields.map(\.name).joined(separator: ", "))")
                    }
                    for handler in plugin.taskHandlers { print("  task \(handler.name)") }
                }
            }
        }
    }
}

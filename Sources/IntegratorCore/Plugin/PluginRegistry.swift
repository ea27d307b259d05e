// The registry of every plugin a process runs with; it refuses inconsistent plugin sets at startup.

/// Looks up credential types, providers and task handlers by id. Built once at startup and then read-only.
public struct PluginRegistry: Sendable {
    public let plugins: [Plugin]
    private let credentialsTypesByID: [String: any CredentialsType]
    private let providersByID: [String: any ProviderBackend]
    private let taskHandlersByName: [String: any TaskHandler]

    /// - Throws: ``RegistryError`` listing every problem: duplicate ids, providers naming unknown credential types,
    ///   field declarations that contradict themselves.
    public init(_ plugins: [Plugin]) throws(RegistryError) {
        var problems: [String] = []
        var pluginIDs: [String: String] = [:]
        var credentialsTypes: [String: any CredentialsType] = [:]
        var credentialOwners: [String: String] = [:]
        var providers: [String: any ProviderBackend] = [:]
        var providerOwners: [String: String] = [:]
        var handlers: [String: any TaskHandler] = [:]
        var handlerOwners: [String: String] = [:]
        var routeOwners: [String: String] = [:]

        for plugin in plugins {
            if pluginIDs[plugin.id] != nil { problems.append("plugin id '\(plugin.id)' is registered twice") }
            pluginIDs[plugin.id] = plugin.id
            for type in plugin.credentialsTypes {
                if let owner = credentialOwners[type.id] {
                    problems.append("credentials type '\(type.id)' is declared by both '\(owner)' and '\(plugin.id)'")
                }
                credentialOwners[type.id] = plugin.id
                credentialsTypes[type.id] = type
                for problem in type.publicFields.declarationProblems() + type.secretFields.declarationProblems() {
                    problems.append("credentials type '\(type.id)': \(problem)")
                }
                let overlap = Set(type.publicFields.fields.map(\.name)).intersection(type.secretFields.fields.map(\.name))
                for name in overlap.sorted() {
                    problems.append("credentials type '\(type.id)': field '\(name)' is both public and secret")
                }
                if type.publicFields.fields.contains(where: \.isSecret) {
                    problems.append("credentials type '\(type.id)': secret fields belong in secretFields")
                }
            }
            for provider in plugin.providers {
                if let owner = providerOwners[provider.id] {
                    problems.append("provider '\(provider.id)' is declared by both '\(owner)' and '\(plugin.id)'")
                }
                providerOwners[provider.id] = plugin.id
                providers[provider.id] = provider
                for problem in provider.configFields.declarationProblems() {
                    problems.append("provider '\(provider.id)': \(problem)")
                }
            }
            for handler in plugin.taskHandlers {
                if let owner = handlerOwners[handler.name] {
                    problems.append("task '\(handler.name)' is handled by both '\(owner)' and '\(plugin.id)'")
                }
                handlerOwners[handler.name] = plugin.id
                handlers[handler.name] = handler
            }
            problems += Self.migrationProblems(plugin)
            for route in plugin.routes {
                let key = "\(route.method) \(Self.routeShape(route.path))"
                if let owner = routeOwners[key] {
                    problems.append("route \(route.method) \(route.path) is declared by both '\(owner)' and '\(plugin.id)'")
                }
                routeOwners[key] = plugin.id
                if !route.path.hasPrefix("/") { problems.append("plugin '\(plugin.id)': route path '\(route.path)' must start with /") }
            }
        }
        for provider in providers.values.sorted(by: { $0.id < $1.id }) {
            for typeID in provider.allowedCredentialTypes where credentialsTypes[typeID] == nil {
                problems.append("provider '\(provider.id)' allows credentials type '\(typeID)', which no plugin declares")
            }
        }
        guard problems.isEmpty else { throw RegistryError(problems: problems) }
        self.plugins = plugins
        self.credentialsTypesByID = credentialsTypes
        self.providersByID = providers
        self.taskHandlersByName = handlers
    }

    public func credentialsType(_ id: String) -> (any CredentialsType)? { credentialsTypesByID[id] }
    public func provider(_ id: String) -> (any ProviderBackend)? { providersByID[id] }
    public func taskHandler(_ name: String) -> (any TaskHandler)? { taskHandlersByName[name] }

    /// Every credentials type, ordered by id.
    public var credentialsTypes: [any CredentialsType] { credentialsTypesByID.values.sorted { $0.id < $1.id } }
    /// Every provider, ordered by id.
    public var providers: [any ProviderBackend] { providersByID.values.sorted { $0.id < $1.id } }
    /// Every task name, sorted.
    public var taskNames: [String] { taskHandlersByName.keys.sorted() }

    /// Every plugin's routes, with the id of the plugin that declared each.
    public var routes: [(pluginID: String, route: PluginRoute)] {
        plugins.flatMap { plugin in plugin.routes.map { (plugin.id, $0) } }
    }

    /// Every change-event subscriber, in plugin registration order.
    public var eventSubscribers: [any ChangeEventSubscriber] { plugins.flatMap(\.eventSubscribers) }

    /// The plugin services that belong in a process running any of `roles`.
    public func services(for roles: Set<ProcessRole>) -> [(pluginID: String, service: PluginService)] {
        plugins.flatMap { plugin in plugin.services.filter { !$0.roles.isDisjoint(with: roles) }.map { (plugin.id, $0) } }
    }

    /// A route path with its parameter names blanked, so `/a/{id}` and `/a/{name}` count as the same route.
    static func routeShape(_ path: String) -> String {
        path.split(separator: "/", omittingEmptySubsequences: false)
            .map { $0.hasPrefix("{") || $0.hasPrefix(":") ? "{}" : String($0) }
            .joined(separator: "/")
    }

    /// Versions must count 1, 2, 3, … without gaps or repeats: a gap would mean a lost migration.
    static func migrationProblems(_ plugin: Plugin) -> [String] {
        let versions = plugin.migrations.map(\.version).sorted()
        guard versions != Array(stride(from: 1, through: versions.count, by: 1)) else { return [] }
        return ["plugin '\(plugin.id)': migration versions must be 1, 2, 3, … without gaps or repeats; found \(versions)"]
    }
}

/// The plugin set cannot run: each problem is one line.
public struct RegistryError: Error, Sendable, CustomStringConvertible {
    public var problems: [String]

    public var description: String {
        "invalid plugin set: " + problems.joined(separator: "; ")
    }
}

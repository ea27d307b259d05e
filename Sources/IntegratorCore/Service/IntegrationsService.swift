// Creating, changing and reading integrations: provider, credentials compatibility, config validation.
import Foundation

/// The integrations use cases, shared by the API and the CLI.
public struct IntegrationsService: Sendable {
    let store: IntegrationStore
    let credentials: CredentialStore
    let registry: PluginRegistry
    let clock: any TimeSource
    /// Opens credentials for providers that check their config against the outside world (``ConfigChecking``).
    let credentialsService: CredentialsService?

    /// Task priorities run from 0 to 9; 9 runs first.
    public static let priorities = 0...9
    public static let defaultPriority = 5
    public static let defaultQueue = "default"
    /// Allowed overrides of a fetch's number of attempts.
    public static let attempts = 1...20

    public init(
        store: IntegrationStore, credentials: CredentialStore, registry: PluginRegistry, clock: any TimeSource,
        credentialsService: CredentialsService? = nil
    ) {
        self.store = store
        self.credentials = credentials
        self.registry = registry
        self.clock = clock
        self.credentialsService = credentialsService
    }

    /// Creates an integration from `{"name", "provider", "credentials", "config", "active", "queue", "priority"}`.
    public func create(_ body: JSONValue) async throws -> Integration {
        var input = try InputObject(body)
        let name = input.string("name", required: true)
        let providerID = input.string("provider", required: true, length: 1...100)
        let credentialsID = input.string("credentials", length: 1...100)
        let configValue = input.raw("config")
        let active = input.bool("active") ?? true
        let queue = readQueue(&input) ?? Self.defaultQueue
        let priority = input.integer("priority", range: Self.priorities) ?? Self.defaultPriority
        let maxAttempts = input.integer("max_attempts", range: Self.attempts)
        var provider: (any ProviderBackend)?
        if let providerID {
            provider = registry.provider(providerID)
            if provider == nil {
                input.addIssue(
                    "provider",
                    "unknown provider '\(providerID)'; known providers: \(registry.providers.map(\.id).joined(separator: ", "))")
            }
        }
        var config: [String: JSONValue] = [:]
        if let provider {
            try await checkCredentials(credentialsID, for: provider, input: &input)
            config = validatedConfig(configValue, for: provider, input: &input)
            await checkOutside(config, for: provider, input: &input)
        }
        try input.finish()
        guard let name, let provider else { throw ValidationFailure(input.issues) }
        let now = clock.now()
        let integration = Integration(
            id: Identifier.make(now: now), name: name, provider: provider.id, credentialsID: credentialsID, config: config,
            active: active, queue: queue, priority: priority, maxAttempts: maxAttempts, createdAt: now, updatedAt: now)
        try await save(integration, insert: true)
        return integration
    }

    /// Changes any of name, credentials, config (merged; null members fall back to defaults), active, queue, priority.
    public func update(id: String, _ body: JSONValue) async throws -> Integration {
        var integration = try await get(id: id)
        guard let provider = registry.provider(integration.provider) else {
            throw ServiceError(.unsupported, "provider '\(integration.provider)' is not registered in this build")
        }
        var input = try InputObject(body)
        if let name = input.string("name") { integration.name = name }
        if let newProvider = input.string("provider", length: 1...100), newProvider != integration.provider {
            input.addIssue("provider", "cannot be changed; create a new integration instead")
        }
        if input.has("credentials") {
            let credentialsID = input.string("credentials", length: 1...100)
            try await checkCredentials(credentialsID, for: provider, input: &input)
            integration.credentialsID = credentialsID
        }
        if let patch = input.object("config") {
            let merged = CredentialsService.merge(integration.config, patch)
            integration.config = validatedConfig(.object(merged), for: provider, input: &input)
            await checkOutside(integration.config, for: provider, input: &input)
        }
        if let active = input.bool("active") { integration.active = active }
        if let queue = readQueue(&input) { integration.queue = queue }
        if let priority = input.integer("priority", range: Self.priorities) { integration.priority = priority }
        if input.has("max_attempts") { integration.maxAttempts = input.integer("max_attempts", range: Self.attempts) }
        try input.finish()
        integration.updatedAt = clock.now()
        try await save(integration, insert: false)
        return integration
    }

    public func get(id: String) async throws -> Integration {
        guard Identifier.isWellFormed(id), let integration = try await store.find(id: id) else {
            throw ServiceError(.notFound, "no integration with id \(id)")
        }
        return integration
    }

    public func list(_ filter: IntegrationFilter, page: PageRequest) async throws -> Page<Integration> {
        try await store.list(filter, page: page)
    }

    public func delete(id: String) async throws {
        guard Identifier.isWellFormed(id), try await store.delete(id: id) else {
            throw ServiceError(.notFound, "no integration with id \(id)")
        }
    }

    private func save(_ integration: Integration, insert: Bool) async throws {
        do {
            if insert { try await store.insert(integration) } else { try await store.update(integration) }
        } catch let error as StoreError where error.code == .conflict {
            throw ServiceError(.conflict, "an integration named '\(integration.name)' already exists")
        } catch let error as StoreError where error.code == .inUse {
            throw ServiceError(.conflict, "the credentials were deleted meanwhile")
        }
    }

    private func readQueue(_ input: inout InputObject) -> String? {
        guard let queue = input.string("queue", length: 1...64) else { return nil }
        if let problem = Self.problem(withQueueName: queue) {
            input.addIssue("queue", problem)
            return nil
        }
        return queue
    }

    /// Why `name` cannot be a queue name (it becomes a RabbitMQ queue name too), or `nil`.
    static func problem(withQueueName name: String) -> String? {
        name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) })
            ? nil : "may contain only letters, digits, '-', '_' and '.'"
    }

    private func checkCredentials(_ credentialsID: String?, for provider: any ProviderBackend, input: inout InputObject)
        async throws
    {
        guard let credentialsID else {
            if provider.requiresCredentials {
                input.addIssue(
                    "credentials",
                    "is required by provider '\(provider.id)' (credentials of type \(provider.allowedCredentialTypes.joined(separator: " or ")))")
            }
            return
        }
        guard provider.requiresCredentials else {
            input.addIssue("credentials", "must be absent: provider '\(provider.id)' uses no credentials")
            return
        }
        guard Identifier.isWellFormed(credentialsID), let stored = try await credentials.find(id: credentialsID) else {
            input.addIssue("credentials", "no credentials with id \(credentialsID)")
            return
        }
        if !provider.allowedCredentialTypes.contains(stored.type) {
            input.addIssue(
                "credentials",
                "are of type '\(stored.type)', but provider '\(provider.id)' accepts \(provider.allowedCredentialTypes.joined(separator: " or "))")
        }
    }

    /// A ``ConfigChecking`` provider's look at the outside world, once everything else about the body is right.
    private func checkOutside(_ config: [String: JSONValue], for provider: any ProviderBackend, input: inout InputObject) async {
        guard input.issues.isEmpty, let checker = provider as? any ConfigChecking, let credentialsService else { return }
        input.add(await checker.check(config: config, credentials: credentialsService))
    }

    private func validatedConfig(_ value: JSONValue?, for provider: any ProviderBackend, input: inout InputObject)
        -> [String: JSONValue]
    {
        var issues: [FieldIssue] = []
        let config = provider.configFields.normalized(value, at: "config", collecting: &issues)
        guard issues.isEmpty else {
            input.add(issues)
            return [:]
        }
        input.add(provider.validate(config: config))
        return config
    }
}

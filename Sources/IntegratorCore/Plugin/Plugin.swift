// A plugin: the bundle of credential types, providers and task handlers that one feature adds.

/// What one plugin contributes. Register it by adding it to the built-in list (or to a registry in tests).
public struct Plugin: Sendable {
    /// Unique plugin id, such as `generic` or `sympla`.
    public var id: String
    public var name: String
    /// One sentence for `integrator plugins list`.
    public var summary: String
    public var credentialsTypes: [any CredentialsType]
    public var providers: [any ProviderBackend]
    public var taskHandlers: [any TaskHandler]

    public init(
        id: String, name: String, summary: String = "", credentialsTypes: [any CredentialsType] = [],
        providers: [any ProviderBackend] = [], taskHandlers: [any TaskHandler] = []
    ) {
        self.id = id
        self.name = name
        self.summary = summary
        self.credentialsTypes = credentialsTypes
        self.providers = providers
        self.taskHandlers = taskHandlers
    }
}

// A plugin: the bundle of credential types, providers, task handlers, routes, services, change-event subscribers and
// tables that one feature adds.

/// What one plugin contributes. Register it by adding it to the built-in list (or to a registry in tests).
///
/// A plugin is a value declared before any process starts, so `integrator plugins list`, the API and every process
/// see the same set. What its code needs at run time (the database, outbound HTTP, credentials, enqueueing, timers,
/// the clock) reaches it through the ``PluginEnvironment`` that each process builds once and hands to every
/// contribution: task handlers through ``TaskContext/environment``, routes and subscribers as a parameter, services
/// when they are made.
public struct Plugin: Sendable {
    /// Unique plugin id, such as `generic` or `sympla`. It also keys the plugin's migrations.
    public var id: String
    public var name: String
    /// One sentence for `integrator plugins list`.
    public var summary: String
    public var credentialsTypes: [any CredentialsType]
    public var providers: [any ProviderBackend]
    public var taskHandlers: [any TaskHandler]
    /// The plugin's own tables, numbered 1, 2, … per plugin (see ``PluginMigration``); applied by `integrator migrate`
    /// and `integrator dev` after the engine's own.
    public var migrations: [PluginMigration]
    /// HTTP routes, each with the role it needs (or none, for routes that authenticate callers themselves).
    public var routes: [PluginRoute]
    /// Long-running work (a listener, a poller), started in the processes it names.
    public var services: [PluginService]
    /// Called inside the transaction that stores change events, so what they write commits with the events.
    public var eventSubscribers: [any ChangeEventSubscriber]
    /// Pages and form actions in the admin web UI (`/admin/…`), each with the role it needs.
    public var pages: [PluginPage]

    public init(
        id: String, name: String, summary: String = "", credentialsTypes: [any CredentialsType] = [],
        providers: [any ProviderBackend] = [], taskHandlers: [any TaskHandler] = [], migrations: [PluginMigration] = [],
        routes: [PluginRoute] = [], services: [PluginService] = [], eventSubscribers: [any ChangeEventSubscriber] = [],
        pages: [PluginPage] = []
    ) {
        self.id = id
        self.name = name
        self.summary = summary
        self.credentialsTypes = credentialsTypes
        self.providers = providers
        self.taskHandlers = taskHandlers
        self.migrations = migrations
        self.routes = routes
        self.services = services
        self.eventSubscribers = eventSubscribers
        self.pages = pages
    }
}

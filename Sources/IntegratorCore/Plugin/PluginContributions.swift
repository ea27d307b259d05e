// What a plugin can add besides credential types, providers and task handlers: tables, routes, services and
// change-event subscribers.
import Hummingbird
import ServiceLifecycle

/// One schema change of a plugin's own tables: a ``Migration`` whose versions count from 1 per plugin. They are
/// recorded under the plugin's id (`plugin_migrations`), so two plugins never compete for a number. A released
/// migration is never edited; the next one is added.
public typealias PluginMigration = Migration

/// Who may call a plugin route.
public enum RouteAccess: Sendable, Equatable {
    /// Anyone: the handler authenticates callers itself (a shared secret header, a signature), or the route is public.
    case open
    /// A signed-in user or token with at least this role; others get 401 or 403 before the handler runs.
    case role(Role)
}

/// An HTTP route of a plugin. Paths are absolute (`/api/v1/webhooks/endpoints/{id}`), so a plugin can keep the paths
/// of a system it replaces; `{name}` segments are read with `context.parameters.require("name")`.
public struct PluginRoute: Sendable {
    public typealias Handler = @Sendable (Request, APIRequestContext, PluginEnvironment) async throws -> Response

    public var method: HTTPRequest.Method
    public var path: String
    public var access: RouteAccess
    /// What the route takes and answers, for the OpenAPI document (`GET /api/v1/schema`).
    public var doc: APIOperation?
    public var handler: Handler

    public init(_ method: HTTPRequest.Method, _ path: String, access: RouteAccess, doc: APIOperation? = nil, handler: @escaping Handler) {
        self.method = method
        self.path = path
        self.access = access
        self.doc = doc
        self.handler = handler
    }
}

/// The kinds of process `integrator` runs; a plugin service names those it belongs in.
public enum ProcessRole: String, Sendable, CaseIterable {
    /// `integrator serve` (and `dev`).
    case api
    /// `integrator worker` (and `dev`).
    case worker
    /// `integrator beat` (and `dev`).
    case beat
}

/// A long-running service of a plugin, made once per process that runs one of `roles`, and stopped with it.
public struct PluginService: Sendable {
    public var name: String
    public var roles: Set<ProcessRole>
    public var make: @Sendable (PluginEnvironment) throws -> any Service

    public init(name: String, roles: Set<ProcessRole>, make: @escaping @Sendable (PluginEnvironment) throws -> any Service) {
        self.name = name
        self.roles = roles
        self.make = make
    }
}

/// Reacts to change events as they are stored. It runs inside the transaction that writes them, so whatever it
/// writes (a delivery row, an enqueued task, a timer) is stored if and only if the events are: nothing is lost when a
/// process dies between the two, and nothing is delivered for events that rolled back. Keep it to a few statements;
/// slow work belongs in a task it enqueues. Throwing rolls the whole batch back (and fails the fetch).
public protocol ChangeEventSubscriber: Sendable {
    /// For logs and errors, such as `webhooks.fan-out`.
    var name: String { get }
    /// Whether this subscriber wants events of `type` (`<provider>.<stream>.created` or `.updated`). Events it does not
    /// want are never decoded for it.
    func accepts(eventType: String) -> Bool
    /// Called with the events of one stored batch that it accepts, in the order they were written.
    func handle(_ events: [ChangeEvent], in transaction: StoreTransaction, environment: PluginEnvironment) async throws
}

extension ChangeEventSubscriber {
    public func accepts(eventType: String) -> Bool { true }
}

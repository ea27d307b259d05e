// Registering a route and documenting it are one call: `DocumentedRoutes` takes the route's access and its
// `APIOperation` with the handler, enforces the access, and records the route for the OpenAPI document.
import Hummingbird
import Synchronization

/// One route as the OpenAPI document lists it.
public struct CatalogedRoute: Sendable {
    public var method: HTTPRequest.Method
    /// The path in OpenAPI's form, `/api/v1/credentials/{id}`.
    public var path: String
    public var access: RouteAccess
    /// `nil` only for a plugin route its plugin left undocumented.
    public var operation: APIOperation?
    /// The plugin that declared the route; `nil` for the engine's own.
    public var pluginID: String?
}

/// The routes registered so far, in registration order. Filled while the router is built, read by the document.
public final class RouteCatalog: Sendable {
    private let entries = Mutex<[CatalogedRoute]>([])

    public init() {}

    func add(_ route: CatalogedRoute) { entries.withLock { $0.append(route) } }

    public var routes: [CatalogedRoute] { entries.withLock { $0 } }
}

/// A router group whose every route is registered with its access and documentation.
struct DocumentedRoutes {
    typealias Handler = @Sendable (Request, APIRequestContext) async throws -> Response

    let group: RouterGroup<APIRequestContext>
    /// The group's path, `/api/v1/credentials`.
    let prefix: String
    let catalog: RouteCatalog
    /// Whether the group's middleware authenticates every caller (routes that need a role) or not (open routes).
    let authenticates: Bool

    init(_ router: Router<APIRequestContext>, catalog: RouteCatalog) {
        self.init(group: router.group(), prefix: "", catalog: catalog, authenticates: false)
    }

    private init(group: RouterGroup<APIRequestContext>, prefix: String, catalog: RouteCatalog, authenticates: Bool) {
        self.group = group
        self.prefix = prefix
        self.catalog = catalog
        self.authenticates = authenticates
    }

    /// The routes under `path`.
    func group(_ path: String) -> DocumentedRoutes {
        DocumentedRoutes(
            group: group.group(RouterPath(path)), prefix: Self.join(prefix, path), catalog: catalog, authenticates: authenticates)
    }

    /// The same path, behind bearer-token authentication: routes added here need a role.
    func authenticated(by users: UsersService) -> DocumentedRoutes {
        DocumentedRoutes(
            group: group.group().add(middleware: AuthenticationMiddleware(users: users)), prefix: prefix, catalog: catalog,
            authenticates: true)
    }

    func get(_ path: String = "", access: RouteAccess, _ operation: APIOperation, use handler: @escaping Handler) {
        on(.get, path, access: access, operation, use: handler)
    }

    func post(_ path: String = "", access: RouteAccess, _ operation: APIOperation, use handler: @escaping Handler) {
        on(.post, path, access: access, operation, use: handler)
    }

    func put(_ path: String = "", access: RouteAccess, _ operation: APIOperation, use handler: @escaping Handler) {
        on(.put, path, access: access, operation, use: handler)
    }

    func patch(_ path: String = "", access: RouteAccess, _ operation: APIOperation, use handler: @escaping Handler) {
        on(.patch, path, access: access, operation, use: handler)
    }

    func delete(_ path: String = "", access: RouteAccess, _ operation: APIOperation, use handler: @escaping Handler) {
        on(.delete, path, access: access, operation, use: handler)
    }

    /// Registers `handler` for `method` at `path` under this group, checking `access` before it runs.
    func on(
        _ method: HTTPRequest.Method, _ path: String, access: RouteAccess, _ operation: APIOperation, use handler: @escaping Handler
    ) {
        let fullPath = Self.join(prefix, path)
        switch access {
        case .open:
            precondition(!authenticates, "\(method) \(fullPath) is open but registered behind authentication")
            group.on(RouterPath(path), method: method, use: handler)
        case .role(let role):
            precondition(
                authenticates, "\(method) \(fullPath) needs the \(role.rawValue) role but is registered without authentication")
            group.on(RouterPath(path), method: method) { request, context in
                _ = try context.require(role)
                return try await handler(request, context)
            }
        }
        catalog.add(CatalogedRoute(method: method, path: RouterPath(fullPath).description, access: access, operation: operation))
    }

    private static func join(_ prefix: String, _ path: String) -> String {
        path.isEmpty ? prefix : "\(prefix)/\(path)"
    }
}

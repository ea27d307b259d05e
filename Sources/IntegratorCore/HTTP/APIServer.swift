// Builds the HTTP application: middleware, the public routes, and the authenticated /api/v1 routes.
import Foundation
import Hummingbird
import Logging

/// The API server of one process.
public enum APIServer {
    /// The Hummingbird application serving `runtime` on the configured host and port.
    /// - Parameter onServerRunning: called with the bound port once listening (tests use port 0).
    public static func makeApplication(
        _ runtime: Runtime, onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> Application<RouterResponder<APIRequestContext>> {
        let router = makeRouter(runtime)
        return Application(
            router: router,
            configuration: .init(
                address: .hostname(runtime.settings.httpHost, port: runtime.settings.httpPort), serverName: "integrator"),
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? 0) },
            logger: runtime.logger
        )
    }

    /// The router alone (used by the application and by tests that need no socket).
    public static func makeRouter(_ runtime: Runtime) -> Router<APIRequestContext> {
        let router = Router(context: APIRequestContext.self)
        // Logging outermost, so it sees the status of rendered errors too.
        router.add(middleware: RequestLogMiddleware())
        router.add(middleware: RequestWorkMiddleware())
        router.add(middleware: HTTPMetricsMiddleware())
        router.add(middleware: ErrorMiddleware())
        let allowedMethods = AllowedMethods()
        router.add(middleware: MethodNotAllowedMiddleware(allowed: allowedMethods))
        let routes = Routes(runtime: runtime)
        // Every route below is registered with its OpenAPI declaration, recorded here for GET /api/v1/schema.
        let catalog = RouteCatalog()
        let root = DocumentedRoutes(router, catalog: catalog)
        routes.addHealth(to: root)
        let metrics = MetricsEndpoint(
            access: MetricsAccess(settings: runtime.settings, host: runtime.settings.httpHost), tasks: runtime.tasks, logger: runtime.logger)
        // Open to the router: MetricsAccess decides, by the bind address and the metrics token.
        root.get("metrics", access: .open, .metrics) { request, _ in try await metrics.respond(request) }
        routes.addAuth(to: root.group("api/v1/auth"))
        let api = root.group("api/v1").authenticated(by: runtime.users)
        routes.addSession(to: api)
        routes.addPlugins(to: api)
        routes.addCredentials(to: api.group("credentials"))
        routes.addIntegrations(to: api.group("integrations"))
        routes.addUsers(to: api.group("users"))
        routes.addTasks(to: api)
        routes.addRecords(to: api)
        routes.addSchedules(to: api.group("schedules"))
        addPluginRoutes(runtime, router: router, catalog: catalog)
        // HTML pages under /admin (and the redirect of /), outside the JSON API and its OpenAPI document.
        AdminUI.add(to: router, runtime)
        routes.addDocumentation(to: root)
        allowedMethods.load(from: router)
        return router
    }

    /// Mounts every plugin route at its absolute path. Routes that need a role pass the same authentication as the
    /// engine's own; open ones reach their handler with no principal.
    static func addPluginRoutes(_ runtime: Runtime, router: Router<APIRequestContext>, catalog: RouteCatalog) {
        let authenticated = router.group().add(middleware: AuthenticationMiddleware(users: runtime.users))
        let environment = runtime.environment
        for (pluginID, route) in runtime.registry.routes {
            let handler = route.handler
            let path = RouterPath(stringLiteral: route.path)
            catalog.add(CatalogedRoute(method: route.method, path: path.description, access: route.access, operation: route.doc, pluginID: pluginID))
            let respond: @Sendable (Request, APIRequestContext) async throws -> Response = { request, context in
                var context = context
                context.logger[metadataKey: "plugin"] = "\(pluginID)"
                return try await handler(request, context, environment)
            }
            switch route.access {
            case .open:
                router.on(path, method: route.method, use: respond)
            case .role(let role):
                authenticated.on(path, method: route.method) { request, context in
                    _ = try context.require(role)
                    return try await respond(request, context)
                }
            }
        }
    }
}

/// Marks the request's queries as ``Database/Work/request``, so that requests leave the beat and the workers of the
/// same process their share of database connections.
struct RequestWorkMiddleware: RouterMiddleware {
    typealias Context = APIRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        try await Database.$work.withValue(.request) { try await next(request, context) }
    }
}

/// One line per request at info: method, path, status, duration. Never headers or bodies.
struct RequestLogMiddleware: RouterMiddleware {
    typealias Context = APIRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        let response = try await next(request, context)
        let milliseconds = (ContinuousClock.now - start).seconds * 1000
        context.logger.info(
            "\(request.method) \(request.uri.path) \(response.status.code)",
            metadata: ["http.duration_ms": "\(String(format: "%.1f", milliseconds))"])
        return response
    }
}

// The admin web UI under /admin: login with the API's users and roles, a session cookie, CSRF tokens on every form,
// and the pages of the engine and of the plugins, rendered on the server.
import Foundation
import Hummingbird
import Logging
import NIOCore

/// Mounts the admin web UI.
public enum AdminUI {
    /// Adds `/admin/…` and the redirect of `/` to `/admin`. Every admin route stays under `/admin`: they are HTML
    /// pages, not part of the JSON API.
    public static func add(to router: Router<APIRequestContext>, _ runtime: Runtime) {
        router.get("/") { _, _ in AdminApp.redirect(to: "/admin") }
        let templates: AdminTemplates
        do {
            templates = try AdminTemplates.load()
        } catch {
            runtime.logger.error("the admin web UI is unavailable", metadata: ["error": "\(error)"])
            router.get("admin/**") { _, _ in
                Response(status: .serviceUnavailable, body: .init(byteBuffer: ByteBuffer(string: "The admin templates are missing.")))
            }
            return
        }
        AdminApp(runtime: runtime, templates: templates).addRoutes(to: router)
    }
}

/// The admin's routes and the request handling they share.
struct AdminApp: Sendable {
    let runtime: Runtime
    let templates: AdminTemplates
    var sessions: AdminSessionStore

    static let sessionCookie = "integrator_session"
    /// Holds the CSRF token of the login form, before there is a session.
    static let loginCookie = "integrator_login"
    static let csrfField = "_csrf"

    init(runtime: Runtime, templates: AdminTemplates, sessions: AdminSessionStore? = nil) {
        self.runtime = runtime
        self.templates = templates
        self.sessions = sessions ?? AdminSessionStore(database: runtime.database, clock: runtime.clock)
    }

    typealias ViewHandler = @Sendable (AdminPageRequest) async throws -> AdminPage
    typealias ActionHandler = @Sendable (AdminPageRequest) async throws -> AdminActionResult

    static let navigation: [(title: String, link: String)] = [
        ("Dashboard", "/admin"), ("Plugins", "/admin/plugins"), ("Credentials", "/admin/credentials"),
        ("Integrations", "/admin/integrations"), ("Schedules", "/admin/schedules"), ("Task runs", "/admin/tasks"),
    ]

    func addRoutes(to router: Router<APIRequestContext>) {
        addSessionRoutes(to: router)
        router.get("admin/assets/:name") { _, context in
            let name = try context.parameters.require("name")
            guard let text = templates.assets[name] else { return Self.plain(.notFound, "no such file") }
            let type = name.hasSuffix(".css") ? "text/css; charset=utf-8" : "text/javascript; charset=utf-8"
            return Response(
                status: .ok, headers: [.contentType: type, .cacheControl: "max-age=300"],
                body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        addDashboard(to: router)
        addPluginCatalog(to: router)
        addCredentials(to: router)
        addIntegrations(to: router)
        addSchedules(to: router)
        addTaskRuns(to: router)
        addPluginPages(to: router)
    }

    // MARK: Pages and actions

    /// A page at `/admin/<path>` (`""` for `/admin` itself) for users holding `role`.
    func view(
        _ path: String, on router: Router<APIRequestContext>, role: Role = .viewer, refreshSeconds: Int? = nil,
        _ handler: @escaping ViewHandler
    ) {
        let full = path.isEmpty ? "/admin" : "/admin/" + path
        let names = Self.parameterNames(in: path)
        router.get(RouterPath(stringLiteral: full)) { request, context in
            guard let session = try await session(of: request) else { return Self.redirectToLogin(from: request) }
            let pageRequest = Self.pageRequest(session, request, context, parameterNames: names, form: AdminFormValues())
            guard session.user.role >= role else { return render(Self.forbiddenPage(role), session, request, status: .forbidden) }
            do {
                let page = try await handler(pageRequest)
                return render(page, session, request, refreshSeconds: refreshSeconds)
            } catch {
                return renderError(error, session, request, context)
            }
        }
    }

    /// A form action at `POST /admin/<path>`: needs a session, the session's CSRF token in the form, and `role`.
    func action(_ path: String, on router: Router<APIRequestContext>, role: Role = .operator, _ handler: @escaping ActionHandler) {
        let names = Self.parameterNames(in: path)
        router.post(RouterPath(stringLiteral: "/admin/" + path)) { request, context in
            guard let session = try await session(of: request) else { return Self.redirectToLogin(from: request) }
            let form = try await readForm(request)
            guard let token = form[Self.csrfField], TokenService.constantTimeEquals(Secret(token), Secret(session.csrfToken)) else {
                context.logger.notice("admin form refused: missing or wrong CSRF token", metadata: ["http.path": "\(request.uri.path)"])
                return render(Self.csrfRefusedPage, session, request, status: .forbidden)
            }
            guard session.user.role >= role else { return render(Self.forbiddenPage(role), session, request, status: .forbidden) }
            do {
                switch try await handler(Self.pageRequest(session, request, context, parameterNames: names, form: form)) {
                case .redirect(let location, let notice):
                    return Self.redirect(to: Self.location(location, notice: notice))
                case .page(let page):
                    return render(page, session, request, status: .unprocessableContent)
                }
            } catch {
                return renderError(error, session, request, context)
            }
        }
    }

    /// The plugins' pages, each at `/admin/<path>` with its role, handed this process's plugin environment.
    func addPluginPages(to router: Router<APIRequestContext>) {
        let environment = runtime.environment
        for page in runtime.registry.plugins.flatMap(\.pages) {
            switch page.kind {
            case .view(let handler):
                view(page.path, on: router, role: page.role) { request in try await handler(request, environment) }
            case .action(let handler):
                action(page.path, on: router, role: page.role) { request in try await handler(request, environment) }
            }
        }
    }

    var pluginNavigation: [(title: String, link: String)] {
        runtime.registry.plugins.flatMap(\.pages).compactMap { page in page.title.map { ($0, "/admin/" + page.path) } }
    }

    // MARK: Rendering

    func render(
        _ page: AdminPage, _ session: AdminSession, _ request: Request, status: HTTPResponse.Status = .ok, refreshSeconds: Int? = nil
    ) -> Response {
        let query = AdminFormValues(urlEncoded: Substring(request.uri.query ?? ""))
        let chrome = AdminChrome(
            username: session.user.username, role: session.user.role, csrfToken: session.csrfToken, navigation: Self.navigation,
            pluginNavigation: pluginNavigation, currentPath: request.uri.path, notice: query["notice"], refreshSeconds: refreshSeconds)
        let object = AdminMarkup.page(page, chrome: chrome, requestQuery: query, path: request.uri.path)
        return Self.html(templates.render(object, template: "layout"), status: status)
    }

    /// An error as a page: what the services say for the caller's mistakes, a request id for everything else.
    func renderError(_ error: any Error, _ session: AdminSession, _ request: Request, _ context: APIRequestContext) -> Response {
        let apiError: APIError
        switch error {
        case let error as APIError: apiError = error
        case let error as ValidationFailure: apiError = .validation(error)
        case let error as ServiceError: apiError = .from(error)
        default:
            context.logger.error(
                "admin page failed", metadata: ["error.type": "\(type(of: error))", "error": "\(error)", "http.path": "\(request.uri.path)"])
            apiError = APIError(.internalServerError, code: "internal_error", message: "internal error; reference request id \(context.id)")
        }
        var sections: [AdminSection] = [.warning(apiError.message)]
        if !apiError.details.isEmpty {
            sections.append(.table(AdminTable(columns: ["Field", "Problem"], rows: apiError.details.map { AdminRow([AdminCell($0.field), AdminCell($0.message)]) })))
        }
        return render(AdminPage(title: "Something went wrong", sections: sections), session, request, status: apiError.status)
    }

    static func forbiddenPage(_ role: Role) -> AdminPage {
        AdminPage(title: "Not allowed", sections: [.warning("This needs the \(role.rawValue) role.")])
    }

    static let csrfRefusedPage = AdminPage(
        title: "Form refused",
        sections: [.warning("The form did not carry this session's security token. Reload the page and try again.")])

    static func html(_ text: String, status: HTTPResponse.Status = .ok, headers extra: HTTPFields = [:]) -> Response {
        var headers: HTTPFields = [
            .contentType: "text/html; charset=utf-8", .cacheControl: "no-store",
            .contentSecurityPolicy:
                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; form-action 'self'; frame-ancestors 'none'",
            .init("X-Frame-Options")!: "DENY", .init("X-Content-Type-Options")!: "nosniff", .init("Referrer-Policy")!: "same-origin",
        ]
        headers.append(contentsOf: extra)
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    static func plain(_ status: HTTPResponse.Status, _ text: String) -> Response {
        Response(status: status, headers: [.contentType: "text/plain; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    static func redirect(to location: String, headers extra: HTTPFields = [:]) -> Response {
        var headers: HTTPFields = [.location: location, .cacheControl: "no-store"]
        headers.append(contentsOf: extra)
        return Response(status: .seeOther, headers: headers)
    }

    /// An absolute admin location with `notice` added to its query.
    static func location(_ path: String, notice: String?) -> String {
        let absolute = AdminMarkup.absolute(path)
        guard let notice else { return absolute }
        return absolute + (absolute.contains("?") ? "&" : "?") + "notice=" + AdminFormValues.encode(notice)
    }

    // MARK: Requests

    func session(of request: Request) async throws -> AdminSession? {
        guard let token = request.cookies[Self.sessionCookie]?.value, !token.isEmpty, token.count <= 128 else { return nil }
        return try await sessions.find(token: token)
    }

    /// The form body, refusing bodies over the configured limit.
    func readForm(_ request: Request) async throws -> AdminFormValues {
        var request = request
        let buffer: ByteBuffer
        do {
            buffer = try await request.collectBody(upTo: runtime.settings.maxBodySize)
        } catch is NIOTooManyBytesError {
            throw APIError(.contentTooLarge, code: "body_too_large", message: "the form is larger than \(runtime.settings.maxBodySize) bytes")
        }
        return AdminFormValues(urlEncoded: Substring(String(buffer: buffer)))
    }

    static func pageRequest(
        _ session: AdminSession, _ request: Request, _ context: APIRequestContext, parameterNames: [String], form: AdminFormValues
    ) -> AdminPageRequest {
        var parameters: [String: String] = [:]
        for name in parameterNames { parameters[name] = context.parameters.get(name) }
        return AdminPageRequest(
            username: session.user.username, role: session.user.role, parameters: parameters,
            query: AdminFormValues(urlEncoded: Substring(request.uri.query ?? "")), form: form)
    }

    /// `id` for each `:id` or `{id}` segment.
    static func parameterNames(in path: String) -> [String] {
        path.split(separator: "/").compactMap { segment in
            if segment.hasPrefix(":") { return String(segment.dropFirst()) }
            if segment.hasPrefix("{"), segment.hasSuffix("}") { return String(segment.dropFirst().dropLast()) }
            return nil
        }
    }

    static func redirectToLogin(from request: Request) -> Response {
        let next = request.method == .get ? request.uri.description : "/admin"
        return redirect(to: "/admin/login?next=" + AdminFormValues.encode(next))
    }

    /// Whether the browser reached us over TLS (directly or through a proxy that says so), for the cookies' Secure flag.
    static func isSecure(_ request: Request) -> Bool {
        request.uri.scheme?.rawValue == "https" || request.headers[.init("X-Forwarded-Proto")!]?.lowercased() == "https"
    }
}

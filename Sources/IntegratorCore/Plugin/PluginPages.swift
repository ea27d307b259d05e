// Pages a plugin adds to the admin web UI, the way it adds routes: a path under /admin, who may open it, and a
// handler that answers with sections (tables, details, forms, buttons) the admin renders in its own layout.

/// One page or one form action of a plugin in the admin web UI.
///
/// Paths are relative to `/admin` (`webhooks/tenants`, `webhooks/events/{id}`); `{name}` segments are read with
/// ``AdminPageRequest/parameter(_:)``. A view answers `GET` with an ``AdminPage``; an action answers the `POST` of a
/// button or form with where to go next. The admin checks the session, the role and the form's CSRF token before
/// either handler runs, so handlers only do their work.
public struct PluginPage: Sendable {
    public typealias ViewHandler = @Sendable (AdminPageRequest, PluginEnvironment) async throws -> AdminPage
    public typealias ActionHandler = @Sendable (AdminPageRequest, PluginEnvironment) async throws -> AdminActionResult

    public enum Kind: Sendable {
        case view(ViewHandler)
        case action(ActionHandler)
    }

    public var path: String
    /// The entry in the admin's navigation; views without one (detail pages) are reached by links.
    public var title: String?
    /// The least role that may open the view or post to the action.
    public var role: Role
    public var kind: Kind

    /// A page answering `GET /admin/<path>`.
    public static func view(
        _ path: String, title: String? = nil, role: Role = .viewer, render: @escaping ViewHandler
    ) -> PluginPage {
        PluginPage(path: path, title: title, role: role, kind: .view(render))
    }

    /// A form action answering `POST /admin/<path>`; operators and above by default.
    public static func action(_ path: String, role: Role = .operator, perform: @escaping ActionHandler) -> PluginPage {
        PluginPage(path: path, title: nil, role: role, kind: .action(perform))
    }
}

// A request whose path exists but not with its method gets 405 with `Allow`, in the JSON error shape, where the
// router alone would answer 404.
import Hummingbird
import Synchronization

/// The methods each registered path answers, filled once the router is built.
final class AllowedMethods: Sendable {
    private let routes = Mutex<[(path: RouterPath, method: HTTPRequest.Method)]>([])

    /// Takes the router's routes; call it after the last route is added.
    func load<Context>(from router: Router<Context>) {
        let described = router.routes.map { (path: $0.path, method: $0.method) }
        routes.withLock { $0 = described }
    }

    /// The methods registered for a path that matches `path`, sorted; empty when none does.
    func methods(for path: String) -> [HTTPRequest.Method] {
        let segments = path.split(separator: "/", omittingEmptySubsequences: true)
        let matching: [HTTPRequest.Method] = routes.withLock { routes in
            routes.filter { Self.matches($0.path, segments) }.map(\.method)
        }
        var seen = Set<String>()
        return matching.filter { seen.insert($0.rawValue).inserted }.sorted { $0.rawValue < $1.rawValue }
    }

    /// Whether the route's path matches the request's segments the way the router's trie would.
    static func matches(_ route: RouterPath, _ segments: [Substring]) -> Bool {
        var index = 0
        for element in route.components {
            // `**` (a recursive wildcard) takes the rest of the path.
            if element.description == "**" { return true }
            guard index < segments.count, element ~= segments[index] else { return false }
            index += 1
        }
        return index == segments.count
    }
}

/// Turns the router's 404 for a known path into 405 with the path's methods in `Allow`.
struct MethodNotAllowedMiddleware: RouterMiddleware {
    typealias Context = APIRequestContext
    let allowed: AllowedMethods

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound {
            let methods = allowed.methods(for: request.uri.path)
            guard !methods.isEmpty, !methods.contains(request.method) else { throw error }
            let list = methods.map(\.rawValue).joined(separator: ", ")
            throw APIError(
                .methodNotAllowed, code: "method_not_allowed",
                message: "\(request.method) is not allowed on \(request.uri.path); allowed: \(list)",
                headers: [.allow: list])
        }
    }
}

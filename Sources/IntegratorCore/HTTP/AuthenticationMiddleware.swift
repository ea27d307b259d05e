// Reads `Authorization: Bearer …` and sets the caller on the context; routes then check roles.
import Hummingbird

/// Rejects requests without a valid bearer token with 401; lets the route decide about roles.
struct AuthenticationMiddleware: RouterMiddleware {
    typealias Context = APIRequestContext
    let users: UsersService

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let header = request.headers[.authorization] else { throw APIError.unauthorized }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { throw APIError.unauthorized }
        let token = parts[1].trimmingCharacters(in: .whitespaces)
        guard !token.isEmpty, let principal = try await users.authenticate(bearer: token) else {
            throw APIError.unauthorized
        }
        var context = context
        context.principal = principal
        context.logger[metadataKey: "auth.principal"] = "\(principal.name)"
        return try await next(request, context)
    }
}

// Turns every error into the JSON error shape; anything unexpected becomes a logged 500 with a request id.
import Hummingbird
import Logging

/// Outermost middleware: nothing leaves the server as anything but the documented error shape.
struct ErrorMiddleware: RouterMiddleware {
    typealias Context = APIRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            return try Self.render(error, request: request, context: context)
        }
    }

    static func render(_ error: any Error, request: Request, context: Context) throws -> Response {
        let apiError: APIError
        switch error {
        case let error as APIError: apiError = error
        case let error as ValidationFailure: apiError = .validation(error)
        case let error as ServiceError: apiError = .from(error)
        case let error as StoreError where error.code == .unavailable:
            apiError = APIError(.serviceUnavailable, code: "unavailable", message: error.message)
        case let error as StoreError where error.code == .conflict:
            apiError = APIError(.conflict, code: "conflict", message: "a row with the same unique value already exists")
        case let error as HTTPError:
            apiError = APIError(error.status, code: code(for: error.status), message: message(for: error))
        default:
            // The error's description might carry internals; callers get the request id, the log gets the rest.
            context.logger.error(
                "request failed", metadata: ["error.type": "\(type(of: error))", "error": "\(error)", "http.path": "\(request.uri.path)"])
            apiError = APIError(
                .internalServerError, code: "internal_error",
                message: "internal error; reference request id \(context.id)")
        }
        return try apiError.response(from: request, context: context)
    }

    static func code(for status: HTTPResponse.Status) -> String {
        switch status {
        case .notFound: "not_found"
        case .methodNotAllowed: "method_not_allowed"
        case .contentTooLarge: "body_too_large"
        case .unauthorized: "unauthorized"
        case .forbidden: "forbidden"
        case .badRequest: "bad_request"
        case .unsupportedMediaType: "unsupported_media_type"
        default: "http_\(status.code)"
        }
    }

    static func message(for error: HTTPError) -> String {
        if let body = error.body, !body.isEmpty { return body }
        switch error.status {
        case .notFound: return "no such endpoint"
        case .contentTooLarge: return "request body is too large"
        default: return error.status.reasonPhrase
        }
    }
}

// The one JSON error shape every failure is rendered in: {"error": {"code", "message", "details"}}.
import Foundation
import Hummingbird

/// An error answer. `message` is shown to the caller, so it never holds a secret or a request payload.
public struct APIError: HTTPResponseError, Sendable, CustomStringConvertible {
    public var status: HTTPResponse.Status
    /// A stable, machine-readable code such as `validation_failed` or `not_found`.
    public var code: String
    public var message: String
    /// Per-field problems for 400 answers.
    public var details: [FieldIssue]
    /// Extra headers (`WWW-Authenticate` on 401).
    public var headers: HTTPFields

    public init(_ status: HTTPResponse.Status, code: String, message: String, details: [FieldIssue] = [], headers: HTTPFields = [:]) {
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers
    }

    public var description: String { "\(status.code) \(code): \(message)" }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var error: [String: JSONValue] = ["code": .string(code), "message": .string(message)]
        error["details"] = .array(details.map { .object(["field": .string($0.field), "message": .string($0.message)]) })
        var response = JSONValue.object(["error": .object(error)]).response(status: status)
        response.headers.append(contentsOf: headers)
        return response
    }

    public static func validation(_ failure: ValidationFailure) -> APIError {
        let fields = failure.issues.map(\.field)
        let summary = fields.count == 1 ? "\(fields[0]) \(failure.issues[0].message)" : "\(fields.count) fields are invalid: \(fields.joined(separator: ", "))"
        return APIError(.badRequest, code: "validation_failed", message: summary, details: failure.issues)
    }

    public static func badRequest(_ message: String, code: String = "bad_request") -> APIError {
        APIError(.badRequest, code: code, message: message)
    }

    public static func notFound(_ message: String) -> APIError {
        APIError(.notFound, code: "not_found", message: message)
    }

    public static let unauthorized = APIError(
        .unauthorized, code: "unauthorized", message: "a valid bearer token is required",
        headers: [.wwwAuthenticate: "Bearer"])

    public static func forbidden(_ needed: Role) -> APIError {
        APIError(.forbidden, code: "forbidden", message: "this needs the \(needed.rawValue) role")
    }

    /// Maps a service or store failure to its answer.
    static func from(_ error: ServiceError) -> APIError {
        switch error.kind {
        case .notFound: APIError(.notFound, code: "not_found", message: error.message)
        case .conflict: APIError(.conflict, code: "conflict", message: error.message)
        case .forbidden: APIError(.forbidden, code: "forbidden", message: error.message)
        case .unsupported: APIError(.badRequest, code: "unsupported", message: error.message)
        case .unavailable: APIError(.serviceUnavailable, code: "unavailable", message: error.message)
        case .upstream: APIError(.badGateway, code: "upstream_error", message: error.message)
        }
    }
}

extension JSONValue {
    /// A JSON response with this value as its body.
    public func response(status: HTTPResponse.Status = .ok) -> Response {
        Response(
            status: status, headers: [.contentType: "application/json; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(string: encodedString())))
    }
}

extension Date {
    /// ISO 8601 with milliseconds, in UTC: the API's one date format.
    public var apiString: String {
        formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }
}

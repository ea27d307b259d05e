// Shared pieces of the route handlers: reading bodies and query parameters, rendering resources.
import Foundation
import Hummingbird
import NIOCore

/// The route handlers, grouped by resource in `Routes+*.swift`.
struct Routes: Sendable {
    let runtime: Runtime

    /// The body as JSON, refusing bodies over the configured limit (413) and text that is not JSON (400).
    func readJSON(_ request: Request) async throws -> JSONValue {
        try await Self.readJSON(request, maxBodySize: runtime.settings.maxBodySize)
    }

    /// The body as JSON, refusing bodies over `maxBodySize` (413) and text that is not JSON (400).
    static func readJSON(_ request: Request, maxBodySize: Int) async throws -> JSONValue {
        var request = request
        let buffer: ByteBuffer
        do {
            buffer = try await request.collectBody(upTo: maxBodySize)
        } catch is NIOTooManyBytesError {
            throw APIError(
                .contentTooLarge, code: "body_too_large",
                message: "request body is larger than \(maxBodySize) bytes")
        }
        guard buffer.readableBytes > 0 else {
            throw APIError.badRequest("request body is empty; send a JSON object", code: "invalid_json")
        }
        do {
            return try JSONValue.parse(buffer.readableBytesView)
        } catch {
            throw APIError.badRequest("request body is not valid JSON", code: "invalid_json")
        }
    }

    /// `limit` (1…500, default 50) and `cursor` from the query string.
    func pageRequest(_ request: Request) throws -> PageRequest { try Self.pageRequest(request) }

    /// `limit` (1…500, default 50) and `cursor` from the query string.
    static func pageRequest(_ request: Request) throws -> PageRequest {
        var page = PageRequest()
        var issues: [FieldIssue] = []
        if let limitText = request.uri.queryParameters["limit"] {
            if let limit = Int(limitText), (1...PageRequest.maximumLimit).contains(limit) {
                page.limit = limit
            } else {
                issues.append(.init(field: "limit", message: "must be an integer from 1 to \(PageRequest.maximumLimit)"))
            }
        }
        if let cursor = request.uri.queryParameters["cursor"], !cursor.isEmpty {
            if let after = PageRequest.decodeCursor(String(cursor)) {
                page.after = after
            } else {
                issues.append(.init(field: "cursor", message: "is not a cursor this API returned"))
            }
        }
        if !issues.isEmpty { throw APIError.validation(ValidationFailure(issues)) }
        return page
    }

    /// A query parameter as a non-empty string.
    func query(_ request: Request, _ name: String) -> String? {
        guard let value = request.uri.queryParameters[Substring(name)], !value.isEmpty else { return nil }
        return String(value)
    }

    /// A boolean query parameter (`true`/`false`).
    func queryBool(_ request: Request, _ name: String) throws -> Bool? {
        guard let text = query(request, name) else { return nil }
        switch text.lowercased() {
        case "true", "1": return true
        case "false", "0": return false
        default: throw APIError.validation(ValidationFailure([.init(field: name, message: "must be true or false")]))
        }
    }

    func list<Item>(_ page: Page<Item>, render: (Item) -> JSONValue) -> Response { Self.list(page, render: render) }

    /// A page as `{"items": [...], "next_cursor": ...}`.
    static func list<Item>(_ page: Page<Item>, render: (Item) -> JSONValue) -> Response {
        JSONValue.object([
            "items": .array(page.items.map(render)),
            "next_cursor": page.nextCursor.map(JSONValue.string) ?? .null,
        ]).response()
    }

    static func render(_ view: CredentialsView) -> JSONValue {
        .object([
            "id": .string(view.id),
            "name": .string(view.name),
            "type": .string(view.type),
            "public": .object(view.publicValues),
            "secret": .object(Dictionary(uniqueKeysWithValues: view.secretNames.map { ($0, JSONValue.string(Secret.mask)) })),
            "created_at": .string(view.createdAt.apiString),
            "updated_at": .string(view.updatedAt.apiString),
        ])
    }

    static func render(_ integration: Integration) -> JSONValue {
        .object([
            "id": .string(integration.id),
            "name": .string(integration.name),
            "provider": .string(integration.provider),
            "credentials": integration.credentialsID.map(JSONValue.string) ?? .null,
            "config": .object(integration.config),
            "active": .bool(integration.active),
            "queue": .string(integration.queue),
            "priority": .number(Double(integration.priority)),
            "max_attempts": integration.maxAttempts.map { .number(Double($0)) } ?? .null,
            "created_at": .string(integration.createdAt.apiString),
            "updated_at": .string(integration.updatedAt.apiString),
        ])
    }

    static func render(_ user: User) -> JSONValue {
        .object([
            "id": .string(user.id),
            "username": .string(user.username),
            "role": .string(user.role.rawValue),
            "created_at": .string(user.createdAt.apiString),
            "updated_at": .string(user.updatedAt.apiString),
        ])
    }
}

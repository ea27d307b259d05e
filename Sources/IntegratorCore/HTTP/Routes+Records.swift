// /api/v1/integrations/{id}/run, …/records, …/state, /records/{id}, /events: running fetches and reading what they stored.
import Foundation
import Hummingbird

extension Routes {
    func addRecords(to api: DocumentedRoutes) {
        let integrations = api.group("integrations")
        integrations.post(":id/run", access: .role(.operator), .runIntegration) { request, context in
            try checkParameters(request, allowed: [])
            let message = try await runtime.fetches.enqueue(integrationID: try context.parameters.require("id"))
            context.logger.info("fetch enqueued", metadata: ["integration.id": "\(message.integrationID ?? "")", "task.id": "\(message.id)"])
            let (run, attempts) = try await runtime.tasks.get(id: message.id)
            return Self.render(run, attempts: attempts).response(status: .accepted)
        }
        integrations.get(":id/records", access: .role(.viewer), .listRecords) { request, context in
            var issues = unknownParameters(request, allowed: ["stream", "updated_since", "limit", "cursor"])
            let filter = RecordFilter(stream: query(request, "stream"), updatedSince: queryDate(request, "updated_since", issues: &issues))
            let page = try pageRequest(request, issues: issues)
            let records = try await runtime.records.list(integrationID: try context.parameters.require("id"), filter, page: page)
            return list(records, render: Self.render)
        }
        integrations.get(":id/state", access: .role(.viewer), .fetchState) { request, context in
            try checkParameters(request, allowed: [])
            let id = try context.parameters.require("id")
            let cursors = try await runtime.records.state(integrationID: id)
            return JSONValue.object([
                "integration": .string(id),
                "streams": .array(cursors.map { cursor in
                    .object(["stream": .string(cursor.stream), "cursor": cursor.cursor, "updated_at": .string(cursor.updatedAt.apiString)])
                }),
            ]).response()
        }
        integrations.delete(":id/state", access: .role(.operator), .resetFetchState) { request, context in
            try checkParameters(request, allowed: ["stream"])
            let id = try context.parameters.require("id")
            let reset = try await runtime.records.resetState(integrationID: id, stream: query(request, "stream"))
            context.logger.info("fetch state reset", metadata: ["integration.id": "\(id)", "fetch.streams_reset": "\(reset)"])
            return Response(status: .noContent)
        }
        api.get("records/:id", access: .role(.viewer), .getRecord) { request, context in
            try checkParameters(request, allowed: [])
            return Self.render(try await runtime.records.get(id: try context.parameters.require("id"))).response()
        }
        api.get("events", access: .role(.viewer), .listEvents) { request, context in
            var issues = unknownParameters(request, allowed: ["type", "integration", "since", "limit", "cursor"])
            let integration = query(request, "integration")
            if let integration, !Identifier.isWellFormed(integration) {
                issues.append(FieldIssue(field: "integration", message: "must be an integration id"))
            }
            let filter = EventFilter(
                type: query(request, "type"), integrationID: integration, since: queryDate(request, "since", issues: &issues))
            let page = try pageRequest(request, issues: issues)
            return list(try await runtime.records.events(filter, page: page), render: Self.render)
        }
    }

    /// Refuses query parameters the endpoint does not know, so a misspelt filter is not silently ignored.
    private func checkParameters(_ request: Request, allowed: Set<String>) throws {
        let issues = unknownParameters(request, allowed: allowed)
        if !issues.isEmpty { throw APIError.validation(ValidationFailure(issues)) }
    }

    /// One issue per query parameter the endpoint does not know.
    private func unknownParameters(_ request: Request, allowed: Set<String>) -> [FieldIssue] {
        let unknown = Set(request.uri.queryParameters.map { String($0.key) }).subtracting(allowed).sorted()
        let known = allowed.isEmpty ? "this endpoint takes none" : "known: \(allowed.sorted().joined(separator: ", "))"
        return unknown.map { FieldIssue(field: $0, message: "is not a known query parameter (\(known))") }
    }

    /// The page request, reporting its problems together with `issues` found in the other parameters.
    private func pageRequest(_ request: Request, issues: [FieldIssue]) throws -> PageRequest {
        let page: PageRequest
        do {
            page = try pageRequest(request)
        } catch let error as APIError where error.code == "validation_failed" {
            throw APIError.validation(ValidationFailure(issues + error.details))
        }
        if !issues.isEmpty { throw APIError.validation(ValidationFailure(issues)) }
        return page
    }

    /// An ISO 8601 date-time parameter, with or without fractional seconds (the API's own dates have them).
    private func queryDate(_ request: Request, _ name: String, issues: inout [FieldIssue]) -> Date? {
        guard let text = query(request, name) else { return nil }
        if let date = Date(iso8601: text) { return date }
        issues.append(FieldIssue(field: name, message: Date.iso8601Expectation))
        return nil
    }

    static func render(_ record: StoredRecord) -> JSONValue {
        .object([
            "id": .string(record.id),
            "integration": .string(record.integrationID),
            "stream": .string(record.stream),
            "external_id": .string(record.externalID),
            "data": record.data,
            "content_hash": .string(record.contentHash),
            "first_seen_at": .string(record.firstSeenAt.apiString),
            "last_seen_at": .string(record.lastSeenAt.apiString),
            "updated_at": .string(record.updatedAt.apiString),
        ])
    }

    static func render(_ event: ChangeEvent) -> JSONValue {
        .object([
            "id": .string(event.id),
            "type": .string(event.type),
            "integration": .string(event.integrationID),
            "stream": .string(event.stream),
            "record_id": .string(event.recordID),
            "external_id": .string(event.externalID),
            "data": event.data,
            "created_at": .string(event.createdAt.apiString),
        ])
    }
}

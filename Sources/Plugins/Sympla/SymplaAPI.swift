// Sympla's public API v3 as the provider uses it: paged listings, and error bodies turned into clear task errors.
import Foundation
import IntegratorCore

/// Which events a listing covers: Sympla's `from` and `published` parameters.
struct SymplaEventFilter: Sendable, Equatable {
    /// `YYYY-MM-DD HH:mm:ss`; events that start at or after it.
    var from: String?
    var published: Bool

    /// A short text that changes when the filter does, kept in cursors: a cursor taken under another filter
    /// points into a different listing and is not resumed.
    var key: String { "published=\(published);from=\(from ?? "")" }
}

/// One page of a listing.
struct SymplaPage: Sendable {
    var items: [JSONValue]
    /// `pagination.has_next`.
    var hasNext: Bool
}

/// Calls Sympla through the plugin's ``OutboundClient`` (which adds the base URL, `s_token`, retries and the SSRF guard).
struct SymplaAPI: Sendable {
    let http: OutboundClient
    /// Only to scrub it from server messages, should a server ever echo it.
    let apiKey: Secret?

    /// `GET /events`, oldest id first.
    func events(page: Int, pageSize: Int, filter: SymplaEventFilter) async throws -> SymplaPage {
        var query = [URLQueryItem(name: "published", value: filter.published ? "true" : "false")]
        if let from = filter.from { query.append(URLQueryItem(name: "from", value: from)) }
        return try await list("/events", page: page, pageSize: pageSize, query: query)
    }

    /// `GET /events/{id}/orders` or `/events/{id}/participants`.
    func perEvent(_ stream: SymplaStream, eventID: Int, page: Int, pageSize: Int) async throws -> SymplaPage {
        try await list("/events/\(eventID)/\(stream.rawValue)", page: page, pageSize: pageSize, query: [])
    }

    /// One page of a listing, sorted by id ascending so resumed runs see the same order.
    private func list(_ path: String, page: Int, pageSize: Int, query: [URLQueryItem]) async throws -> SymplaPage {
        let paging = [
            URLQueryItem(name: "page", value: String(page)), URLQueryItem(name: "page_size", value: String(pageSize)),
            URLQueryItem(name: "field_sort", value: "id"), URLQueryItem(name: "sort", value: "ASC"),
        ]
        let response: OutboundResponse
        do {
            response = try await http.send(.get(path, query: paging + query))
        } catch let error as OutboundError where error.code == .refusedAddress || error.code == .invalidURL {
            // The credentials' base URL is wrong; trying again cannot help.
            throw PluginError("cannot call Sympla: \(error)", permanent: true)
        }
        guard response.isSuccess else { throw Self.error(for: response, path: path, apiKey: apiKey) }
        let body = try? response.json()
        guard let items = body?["data"]?.arrayValue, let hasNext = body?["pagination"]?["has_next"]?.boolValue else {
            throw PluginError("Sympla answered \(path) without `data` and `pagination.has_next`; is base_url Sympla's API?")
        }
        return SymplaPage(items: items, hasNext: hasNext)
    }

    /// A task error for a non-2xx response. Sympla's error body is `{"error": true, "code": …, "message": …}`;
    /// its message is kept (without the key, should it ever contain it) so the run says what Sympla said.
    static func error(for response: OutboundResponse, path: String, apiKey: Secret?) -> PluginError {
        let body = try? response.json()
        var said = ""
        if let message = body?["message"]?.stringValue, !message.isEmpty {
            var text = String(message.prefix(300))
            if let key = apiKey?.reveal(), !key.isEmpty { text = text.replacingOccurrences(of: key, with: Secret.mask) }
            let code = body?["code"].map { $0.stringValue ?? $0.encodedString() }
            said = ": " + (code.map { "\($0) " } ?? "") + text
        }
        let status = "HTTP \(response.status)\(said)"
        switch response.status {
        case 401, 403:
            return PluginError("Sympla refused the API key (\(status)); check the credentials' api_key", permanent: true)
        case 404:
            return PluginError("Sympla has no \(path) (\(status))", permanent: true)
        case 400, 422:
            return PluginError("Sympla rejected the request for \(path) (\(status))", permanent: true)
        case 429:
            return PluginError("Sympla is rate limiting this API key (\(status)); the task will try again later")
        default:
            return PluginError("Sympla failed on \(path) (\(status))")
        }
    }
}

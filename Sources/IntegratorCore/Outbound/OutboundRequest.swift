// One request a plugin sends: method, a path under the client's base URL (or an absolute URL), query, headers, body.
import Foundation

/// What a plugin asks ``OutboundClient`` to send.
public struct OutboundRequest: Sendable {
    /// `GET`, `POST`, … (upper case).
    public var method: String
    /// A path appended to the client's base URL (`/events`), or an absolute `http(s)://` URL.
    public var target: String
    /// Query parameters, percent-encoded when sent. Query strings are never written to errors or logs,
    /// since APIs often take keys there.
    public var query: [URLQueryItem]
    /// Request headers; ``setHeader(_:_:)`` replaces, appending to the array adds.
    public var headers: [(name: String, value: String)]
    public var body: Data?
    /// Whether sending it twice is harmless. Idempotent requests are retried after 5xx responses and connection
    /// errors; others only after a 429, which says the server did not process them. Default: true for
    /// `GET`, `HEAD`, `PUT`, `DELETE` and `OPTIONS`.
    public var isIdempotent: Bool
    /// Overrides the client's timeout for this request, in seconds.
    public var timeout: TimeInterval?

    public init(
        method: String = "GET", _ target: String, query: [URLQueryItem] = [], headers: [(name: String, value: String)] = [],
        body: Data? = nil, timeout: TimeInterval? = nil
    ) {
        self.method = method.uppercased()
        self.target = target
        self.query = query
        self.headers = headers
        self.body = body
        self.isIdempotent = ["GET", "HEAD", "PUT", "DELETE", "OPTIONS"].contains(self.method)
        self.timeout = timeout
    }

    /// A `GET`.
    public static func get(_ target: String, query: [URLQueryItem] = []) -> OutboundRequest {
        OutboundRequest(target, query: query)
    }

    /// A request whose body is `value` as JSON, with `content-type: application/json`.
    public static func json(
        method: String = "POST", _ target: String, _ value: some Encodable, encoder: JSONEncoder = JSONEncoder()
    ) throws -> OutboundRequest {
        OutboundRequest(
            method: method, target, headers: [("content-type", "application/json")], body: try encoder.encode(value))
    }

    /// The first value of header `name` (case-insensitive).
    public func header(_ name: String) -> String? {
        headers.first { HeaderName.matches($0.name, name) }?.value
    }

    /// Sets header `name`, replacing any value it had.
    public mutating func setHeader(_ name: String, _ value: String) {
        headers.removeAll { HeaderName.matches($0.name, name) }
        headers.append((name, value))
    }
}

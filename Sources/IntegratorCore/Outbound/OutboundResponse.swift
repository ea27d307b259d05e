// A response as plugins see it: status, headers and the whole body, with JSON decoding helpers.
import Foundation

/// A complete response. Bodies are read whole, up to the client's ``OutboundClient/maxResponseSize``.
public struct OutboundResponse: Sendable {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: Data

    public init(status: Int, headers: [(name: String, value: String)] = [], body: Data = Data()) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// Whether the status is 2xx.
    public var isSuccess: Bool { (200..<300).contains(status) }

    /// The first value of header `name` (case-insensitive).
    public func header(_ name: String) -> String? {
        headers.first { HeaderName.matches($0.name, name) }?.value
    }

    /// The body decoded as `type`.
    /// - Throws: ``OutboundError`` with code `decoding`, naming the type and the JSON path that did not fit.
    public func decode<T: Decodable>(_ type: T.Type = T.self, using decoder: JSONDecoder = JSONDecoder()) throws -> T {
        do {
            return try decoder.decode(type, from: body)
        } catch let error as DecodingError {
            throw OutboundError(.decoding, detail: "the response is not a \(T.self): \(Self.explain(error))")
        } catch {
            throw OutboundError(.decoding, detail: "the response is not a \(T.self)")
        }
    }

    /// The body as a ``JSONValue``.
    /// - Throws: ``OutboundError`` with code `decoding` when the body is not JSON.
    public func json() throws -> JSONValue {
        do {
            return try JSONValue.parse(body)
        } catch {
            throw OutboundError(.decoding, detail: "the response body is not JSON")
        }
    }

    /// Where decoding failed, without the offending value (it may be anything the server sent).
    private static func explain(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context) -> String {
            let text = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
            return text.isEmpty ? "the top level" : String(text.drop { $0 == "." })
        }
        switch error {
        case .keyNotFound(let key, let context): return "\(path(context)) has no '\(key.stringValue)'"
        case .valueNotFound(_, let context): return "\(path(context)) is null"
        case .typeMismatch(let type, let context): return "\(path(context)) is not a \(type)"
        case .dataCorrupted(let context): return "\(path(context)) is malformed"
        @unknown default: return "unexpected shape"
        }
    }
}

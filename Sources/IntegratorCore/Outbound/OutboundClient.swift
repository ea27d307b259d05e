// The HTTP client a plugin gets in its context: base URL, credentials applied, retries, rate budget, SSRF guard.
//
// For the fetch pipeline: build one per fetch with
//     runtime.outbound.client(for: credentialValues, credentialsID: credentials.id,
//                             type: registry.credentialsType(credentialValues.typeID), logger: logger)
// and pass it as `FetchContext(…, http: client)`. Without credentials use `runtime.outbound.client(logger:)`.
import Foundation
import Logging

/// Sends requests for one plugin call (a fetch, a connection test). A cheap value: copy it and change its
/// settings freely; every copy shares the process's connection pools and rate budgets.
///
/// Every request is checked against the SSRF guard on the address actually connected to, signed by the credentials
/// (when it goes to the base URL's origin), paced by the credentials' rate budget, and retried on 429, on 5xx and
/// on connection errors (the last two only for idempotent requests) with exponential backoff that honours `Retry-After`.
public struct OutboundClient: Sendable {
    /// Relative targets are appended to this (`https://api.sympla.com.br/public/v3` + `/events`). Set from the
    /// credentials when their type provides one.
    public var baseURL: String?
    /// Headers sent with every request that does not set them itself.
    public var headers: [(name: String, value: String)]
    /// Seconds to wait for a response. Default 30.
    public var timeout: TimeInterval
    /// Attempts and backoff for retried requests. Default 4 attempts, 0.5 s doubling up to 30 s, with full jitter.
    public var retry: RetryPolicy
    /// The longest `Retry-After` honoured, in seconds. A server asking for more gets its response returned
    /// instead (the task's own retry comes back later). Default 120.
    public var maxRetryAfter: TimeInterval
    /// The budget of the credentials, shared by every client with the same ``credentialsID``; `nil` for none.
    /// Default: the process's (10 requests/s, bursts of 20) when there are credentials.
    public var rateLimit: RateLimit?
    /// Largest body read, in bytes. Default 16 MiB.
    public var maxResponseSize: Int
    public var logger: Logger
    /// The stored credentials' id: the key of the rate budget.
    public let credentialsID: String?

    let credentials: CredentialValues?
    let authenticator: (any RequestAuthenticating)?
    let engine: OutboundHTTP?

    init(
        engine: OutboundHTTP?, credentials: CredentialValues?, credentialsID: String?,
        authenticator: (any RequestAuthenticating)?, rateLimit: RateLimit?, logger: Logger
    ) {
        self.engine = engine
        self.credentials = credentials
        self.credentialsID = credentialsID
        self.authenticator = authenticator
        self.baseURL = credentials.flatMap { authenticator?.baseURL(for: $0) }
        self.headers = [("accept", "application/json")]
        self.timeout = 30
        self.retry = RetryPolicy(maxAttempts: 4, baseDelay: 0.5, maxDelay: 30)
        self.maxRetryAfter = 120
        self.rateLimit = rateLimit
        self.maxResponseSize = 16 << 20
        self.logger = logger
    }

    /// A client that cannot send: every request fails with code `unavailable`. The default in contexts built
    /// without one (unit tests of code that makes no requests).
    public static var unavailable: OutboundClient {
        OutboundClient(
            engine: nil, credentials: nil, credentialsID: nil, authenticator: nil, rateLimit: nil,
            logger: Logger(label: "integrator.outbound"))
    }

    /// Sends `request` and returns the final response, whatever its status, after any retries.
    /// - Throws: ``OutboundError`` when no response came (refused address, connection failure, timeout),
    ///   ``PluginError`` when the credentials cannot sign it, `CancellationError`.
    public func send(_ request: OutboundRequest) async throws -> OutboundResponse {
        guard let engine else {
            throw OutboundError(.unavailable, detail: "no outbound HTTP client in this context")
        }
        return try await engine.send(request, with: self)
    }

    /// `GET`s `target` and requires a 2xx response.
    /// - Throws: ``OutboundError`` with code `status` (and the response) for any other status.
    public func get(_ target: String, query: [URLQueryItem] = []) async throws -> OutboundResponse {
        let response = try await send(.get(target, query: query))
        guard response.isSuccess else {
            let url = (try? OutboundURL(target: target, base: baseURL, items: []))?.redacted ?? OutboundURL.redact(target)
            throw OutboundError(.status, request: "GET \(url)", detail: "status \(response.status)", response: response)
        }
        return response
    }

    /// `GET`s `target` and decodes the 2xx JSON body as `type`.
    public func getJSON<T: Decodable>(
        _ type: T.Type = T.self, _ target: String, query: [URLQueryItem] = [], decoder: JSONDecoder = JSONDecoder()
    ) async throws -> T {
        try await get(target, query: query).decode(type, using: decoder)
    }

    /// `GET`s `target` and parses the 2xx body as JSON.
    public func getJSON(_ target: String, query: [URLQueryItem] = []) async throws -> JSONValue {
        try await get(target, query: query).json()
    }
}

// Why an outbound request failed. Safe to show and store: it names the method and URL without query or credentials.

/// An outbound request that failed before a usable response, or a response a helper refused.
/// ``description`` holds no secret: URLs are shown without their query, and header values never appear.
public struct OutboundError: Error, Sendable, CustomStringConvertible {
    /// The kind of failure.
    public struct Code: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// The SSRF guard refused the address the host resolved to.
        public static let refusedAddress = Code(rawValue: "refused_address")
        /// The URL is malformed, not http(s), or carries user info.
        public static let invalidURL = Code(rawValue: "invalid_url")
        /// The host name did not resolve.
        public static let resolution = Code(rawValue: "resolution")
        /// Connecting, sending or receiving failed.
        public static let connection = Code(rawValue: "connection")
        /// No response within the timeout.
        public static let timeout = Code(rawValue: "timeout")
        /// The body exceeded the client's size limit.
        public static let tooLarge = Code(rawValue: "too_large")
        /// A helper that requires 2xx got another status; see ``OutboundError/response``.
        public static let status = Code(rawValue: "status")
        /// The body did not decode.
        public static let decoding = Code(rawValue: "decoding")
        /// The context has no HTTP client (a test context or a caller that did not provide one).
        public static let unavailable = Code(rawValue: "unavailable")
    }

    public var code: Code
    /// `GET https://host/path`, without query; empty when no request was formed.
    public var request: String
    /// What went wrong, safe to show.
    public var detail: String
    /// The response, for ``Code/status`` errors. Its body is not part of ``description``.
    public var response: OutboundResponse?
    /// `false` when the request never left (the connection could not be made), so even a `POST` may be sent again.
    public internal(set) var requestWasSent = true

    public init(_ code: Code, request: String = "", detail: String, response: OutboundResponse? = nil) {
        self.code = code
        self.request = request
        self.detail = detail
        self.response = response
    }

    /// The HTTP status, for ``Code/status`` errors.
    public var status: Int? { response?.status }

    /// Whether trying again later could succeed (a network failure, a 5xx, a 429).
    public var isTransient: Bool {
        switch code {
        case .connection, .timeout, .resolution: return true
        case .status: return status.map { $0 == 429 || $0 >= 500 } ?? false
        default: return false
        }
    }

    /// Whether the request can never be sent as it is: the SSRF guard refused its address, or its URL is unusable.
    /// Retrying cannot help; the configuration that names the address has to change.
    public var isRefusedAsConfigured: Bool { code == .refusedAddress || code == .invalidURL }

    public var description: String {
        request.isEmpty ? detail : "\(request): \(detail)"
    }
}

// Outbound HTTP for one process: the pinned connection pools, the SSRF guard, DNS, rate budgets, and the send loop.
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import ServiceLifecycle

/// The process's outbound HTTP. ``Runtime`` owns one; plugins get ``OutboundClient`` views of it through their
/// context. Shut it down once at the end (``shutdown()``, or run it as a `Service` in the process's group).
public final class OutboundHTTP: Sendable, Service {
    /// Behaviour shared by every client of the process.
    public struct Options: Sendable {
        /// Ranges the SSRF guard lets through although they are private, loopback, link-local… Default none.
        public var allowedRanges: [IPAddressRange]
        /// The time and the waiting for backoff and rate budgets. Default the system clock; tests pass a ``ManualSleeper``.
        public var sleeper: any Sleeper
        /// The budget per credentials id for clients that do not set their own. Default 10 requests/s, bursts of 20.
        public var rateLimit: RateLimit
        /// Seconds to establish a connection. Default 10.
        public var connectTimeout: TimeInterval
        /// Seconds a DNS answer is reused. Default 30.
        public var resolutionTTL: TimeInterval
        /// `User-Agent` for requests that set none. Default `Integrator`.
        public var userAgent: String
        /// CA certificates trusted for `https` besides the system's (a private CA). Default none.
        public var trustedCertificates: [NIOSSLCertificate]
        /// Requests sent at once to one host name and address (each on a connection of its own); more wait for their
        /// turn. Default 32.
        public var connectionsPerHost: Int

        public init(
            allowedRanges: [IPAddressRange] = [], sleeper: any Sleeper = SystemSleeper(), rateLimit: RateLimit = .default,
            connectTimeout: TimeInterval = 10, resolutionTTL: TimeInterval = 30, userAgent: String = "Integrator",
            trustedCertificates: [NIOSSLCertificate] = [], connectionsPerHost: Int = 32
        ) {
            self.allowedRanges = allowedRanges
            self.sleeper = sleeper
            self.rateLimit = rateLimit
            self.connectTimeout = connectTimeout
            self.resolutionTTL = resolutionTTL
            self.userAgent = userAgent
            self.trustedCertificates = trustedCertificates
            self.connectionsPerHost = connectionsPerHost
        }
    }

    public let options: Options
    let policy: AddressPolicy
    private let resolver: HostResolver
    private let pool: PinnedConnectionPool
    private let budgets = RateBudgets()
    private let logger: Logger

    public init(options: Options = Options(), logger: Logger) {
        self.options = options
        self.policy = AddressPolicy(allowing: options.allowedRanges)
        self.resolver = HostResolver(ttl: options.resolutionTTL, clock: options.sleeper)
        self.pool = PinnedConnectionPool(
            connectTimeout: options.connectTimeout, maxConnectionsPerTarget: max(1, options.connectionsPerHost),
            trustedCertificates: options.trustedCertificates)
        self.logger = logger
    }

    /// The client for one fetch or connection test.
    /// - Parameters:
    ///   - credentials: decrypted credentials; `type` signs requests with them when it is ``RequestAuthenticating``.
    ///   - credentialsID: the stored credentials' id, which keys the rate budget.
    ///   - type: the credentials' type, from the registry.
    public func client(
        for credentials: CredentialValues?, credentialsID: String?, type: (any CredentialsType)?, logger: Logger
    ) -> OutboundClient {
        var logger = logger
        if let credentialsID { logger[metadataKey: "credentials.id"] = "\(credentialsID)" }
        return OutboundClient(
            engine: self, credentials: credentials, credentialsID: credentialsID,
            authenticator: credentials == nil ? nil : type as? any RequestAuthenticating,
            rateLimit: credentialsID == nil ? nil : options.rateLimit, logger: logger)
    }

    /// A client without credentials.
    public func client(logger: Logger) -> OutboundClient {
        client(for: nil, credentialsID: nil, type: nil, logger: logger)
    }

    /// Waits for the service group's shutdown, then closes every connection.
    public func run() async throws {
        try? await gracefulShutdown()
        await shutdown()
    }

    /// Closes every connection; later requests fail with code `unavailable`. Safe to call more than once.
    public func shutdown() async {
        await pool.shutdown()
    }

    // MARK: Sending

    func send(_ original: OutboundRequest, with client: OutboundClient) async throws -> OutboundResponse {
        var request = original
        // Query items leave the origin as it is, so the URL parsed with them serves the origin check too; it is parsed
        // again only when signing changed the request.
        var url = try OutboundURL(target: request.target, base: client.baseURL, items: request.query)
        if let authenticator = client.authenticator, let credentials = client.credentials,
            try client.baseURL.map({ try OutboundURL(parsing: $0).origin == url.origin }) ?? true
        {
            try authenticator.authenticate(&request, with: credentials)
            url = try OutboundURL(target: request.target, base: client.baseURL, items: request.query)
        }
        for header in client.headers where request.header(header.name) == nil { request.headers.append(header) }
        if request.header("user-agent") == nil { request.headers.append(("user-agent", options.userAgent)) }
        let label = "\(request.method) \(url.redacted)"
        let sleeper = options.sleeper
        var attempt = 0
        while true {
            attempt += 1
            try await waitForBudget(client)
            let response: OutboundResponse
            do {
                response = try await exchange(request, url: url, label: label, attempt: attempt, client: client)
            } catch let error as OutboundError
                where error.isTransient && (request.isIdempotent || !error.requestWasSent)
                && client.retry.allowsRetry(after: attempt)
            {
                let delay = backoff(after: attempt, client.retry)
                client.logger.debug(
                    "outbound request failed, retrying",
                    metadata: ["http.request": "\(label)", "error": "\(error.detail)", "retry.delay_s": "\(delay)"])
                try await sleeper.sleep(seconds: delay)
                continue
            }
            guard let delay = retryDelay(after: response, to: request, attempt: attempt, client: client, label: label) else {
                return response
            }
            try await sleeper.sleep(seconds: delay)
        }
    }

    /// How long to wait before trying `request` again after `response`, or `nil` to return `response` as it is.
    /// A 429 with `Retry-After` also pauses the credentials' budget, so every client of them waits, retrying or not:
    /// the server counts them together.
    private func retryDelay(
        after response: OutboundResponse, to request: OutboundRequest, attempt: Int, client: OutboundClient, label: String
    ) -> TimeInterval? {
        let now = options.sleeper.now()
        let asked = RetryAfter.seconds(from: response.header("retry-after"), now: now)
        if response.status == 429, let asked, let key = client.credentialsID, let limit = client.rateLimit {
            budgets.pause(key, until: now.addingTimeInterval(min(asked, client.maxRetryAfter)), limit: limit, now: now)
        }
        let retryable = response.status == 429 || (response.status >= 500 && request.isIdempotent)
        guard retryable, client.retry.allowsRetry(after: attempt) else { return nil }
        if let asked, asked > client.maxRetryAfter {
            client.logger.debug(
                "server asked to wait longer than allowed; not retrying",
                metadata: ["http.request": "\(label)", "retry_after_s": "\(asked)"])
            return nil
        }
        let delay = asked ?? backoff(after: attempt, client.retry)
        client.logger.debug(
            "outbound request got a retryable status",
            metadata: ["http.request": "\(label)", "http.status": "\(response.status)", "retry.delay_s": "\(delay)"])
        return delay
    }

    private func waitForBudget(_ client: OutboundClient) async throws {
        guard let key = client.credentialsID, let limit = client.rateLimit else { return try Task.checkCancellation() }
        let wait = budgets.reserve(key, limit: limit, now: options.sleeper.now())
        if wait > 0 {
            client.logger.trace("waiting for the rate budget", metadata: ["wait_s": "\(wait)"])
        }
        try await options.sleeper.sleep(seconds: wait)
    }

    private func backoff(after attempt: Int, _ policy: RetryPolicy) -> TimeInterval {
        var generator = SystemRandomNumberGenerator()
        return policy.nextDelay(after: attempt, using: &generator)
    }

    /// One attempt: resolve, check every address, connect to a checked one, read the whole body.
    private func exchange(
        _ request: OutboundRequest, url: OutboundURL, label: String, attempt: Int, client: OutboundClient
    ) async throws -> OutboundResponse {
        let addresses: [IPAddress]
        do {
            addresses = try await resolver.addresses(of: url.host)
        } catch var error as OutboundError {
            error.request = label
            throw error
        }
        for address in addresses {
            if let reason = policy.refusal(for: address) {
                let subject = IPAddress(url.host) == nil ? "\(url.host) → \(address)" : "\(address)"
                throw OutboundError(
                    .refusedAddress, request: label,
                    detail: "refused \(subject) (\(reason)); list it in INTEGRATOR_OUTBOUND_ALLOW_CIDRS to allow it")
            }
        }
        // Later attempts move through the addresses, so one unreachable address does not fail every try.
        let address = addresses[(attempt - 1) % addresses.count]
        let timeout = request.timeout ?? client.timeout
        let limit = client.maxResponseSize
        let exchange = HTTP1Exchange(
            head: Self.head(of: request, url: url), body: request.body.map { ByteBuffer(bytes: $0) },
            deadline: .now() + .milliseconds(Int64(timeout * 1000)), timeout: timeout, responseLimit: limit)
        let target = PinnedConnectionPool.Target(
            host: url.host, address: address, port: url.port ?? url.defaultPort, usesTLS: url.scheme == "https")
        do {
            let response = try await pool.execute(exchange, to: target, mayResend: request.isIdempotent)
            client.logger.debug(
                "outbound request",
                metadata: [
                    "http.request": "\(label)", "http.status": "\(response.status)", "net.peer.address": "\(address)",
                    "http.attempt": "\(attempt)",
                ])
            return response
        } catch var error as OutboundError {
            error.request = label
            throw error
        } catch {
            if Task.isCancelled { throw CancellationError() }
            throw Self.translate(error, label: label, host: url.host)
        }
    }

    /// The request line and headers as sent: `Host` from the URL unless the request names one, and the body's length
    /// as the only framing (whatever length or encoding headers the request carried).
    private static func head(of request: OutboundRequest, url: OutboundURL) -> HTTPRequestHead {
        var headers = HTTPHeaders()
        headers.reserveCapacity(request.headers.count + 2)
        if request.header("host") == nil { headers.add(name: "host", value: url.hostHeader) }
        for header in request.headers
        where !HeaderName.matches(header.name, "content-length") && !HeaderName.matches(header.name, "transfer-encoding") {
            headers.add(name: header.name, value: header.value)
        }
        if let body = request.body {
            headers.add(name: "content-length", value: String(body.count))
        } else if ["POST", "PUT", "PATCH"].contains(request.method) {
            headers.add(name: "content-length", value: "0")
        }
        return HTTPRequestHead(
            version: .http1_1, method: HTTPMethod(rawValue: request.method),
            uri: url.requestTarget, headers: headers)
    }

    /// A transport failure as an ``OutboundError``. NIO's and NIOSSL's descriptions name codes, addresses and TLS
    /// reasons, never headers or queries, so they are safe to keep as detail.
    private static func translate(_ error: any Error, label: String, host: String) -> OutboundError {
        switch error {
        case HTTP1Failure.timedOut(let seconds):
            return OutboundError(.timeout, request: label, detail: "timed out (no complete response within \(seconds) s)")
        case HTTP1Failure.tooLarge(let limit):
            return OutboundError(.tooLarge, request: label, detail: "the response is larger than \(limit) bytes")
        case HTTP1Failure.closed:
            return OutboundError(.connection, request: label, detail: "the server closed the connection before the response was complete")
        case HTTP1Failure.transport(let cause as NIOSSLExtraError) where cause == .failedToValidateHostname:
            return OutboundError(.connection, request: label, detail: "TLS: the server's certificate does not name \(host)")
        case HTTP1Failure.transport(let cause as NIOSSLError):
            return OutboundError(.connection, request: label, detail: "TLS: \(String("\(cause)".prefix(300)))")
        case HTTP1Failure.transport(let cause):
            return OutboundError(.connection, request: label, detail: String("\(cause)".prefix(300)))
        default:
            break
        }
        if isConnectFailure(error) {
            // NIO describes a refused connect as "connection reset (error set): Connection refused (errno: 111)"; the
            // system's own words are clearer.
            let cause = (error as? IOError).map { String(cString: strerror($0.errnoCode)) } ?? String("\(error)".prefix(200))
            var failure = OutboundError(.connection, request: label, detail: "could not connect (\(cause))")
            failure.requestWasSent = false
            return failure
        }
        return OutboundError(.connection, request: label, detail: String("\(error)".prefix(300)))
    }

    /// Errors that can only happen before a byte of the request was written.
    private static func isConnectFailure(_ error: any Error) -> Bool {
        switch error {
        case is NIOConnectionError: return true
        case let error as ChannelError:
            if case .connectTimeout = error { return true }
            return false
        case let error as IOError: return [ECONNREFUSED, ENETUNREACH, EHOSTUNREACH].contains(error.errnoCode)
        default: return false
        }
    }
}

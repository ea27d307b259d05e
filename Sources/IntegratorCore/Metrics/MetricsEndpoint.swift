// GET /metrics: the Prometheus text exposition, behind the token rules of ``MetricsAccess``.
import Foundation
import Hummingbird
import Logging
import Synchronization

/// Who may read `/metrics`. With `INTEGRATOR_METRICS_TOKEN` set, a scrape must send it (or the API token) as a bearer
/// token, wherever the listener is bound. Without it, a listener bound to a loopback address is open (only this host
/// reaches it), and one bound elsewhere takes the API token only.
public struct MetricsAccess: Sendable {
    public var metricsToken: Secret?
    public var apiToken: Secret?
    /// Whether the listener accepts connections from this host only.
    public var loopbackOnly: Bool

    public init(metricsToken: Secret?, apiToken: Secret?, loopbackOnly: Bool) {
        self.metricsToken = metricsToken
        self.apiToken = apiToken
        self.loopbackOnly = loopbackOnly
    }

    /// The rules for a listener bound to `host`.
    public init(settings: Settings, host: String) {
        self.init(metricsToken: settings.metricsToken, apiToken: settings.apiToken, loopbackOnly: Self.isLoopback(host))
    }

    /// `localhost`, 127.0.0.0/8 and ::1; a name or wildcard address (`0.0.0.0`) is not.
    public static func isLoopback(_ host: String) -> Bool {
        if host.lowercased() == "localhost" { return true }
        let unbracketed = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        guard let address = IPAddress(unbracketed) else { return false }
        let loopback = [IPAddressRange("127.0.0.0/8"), IPAddressRange("::1/128")].compactMap { $0 }
        return loopback.contains { $0.contains(address) }
    }

    /// Throws 401 unless the request may read the metrics.
    public func check(_ request: Request) throws {
        let accepted = [metricsToken, apiToken].compactMap { $0 }
        if metricsToken == nil, loopbackOnly { return }
        guard !accepted.isEmpty else {
            throw APIError(
                .unauthorized, code: "unauthorized",
                message: "/metrics on a non-loopback address needs INTEGRATOR_METRICS_TOKEN or INTEGRATOR_API_TOKEN, and neither is set",
                headers: [.wwwAuthenticate: "Bearer"])
        }
        guard let header = request.headers[.authorization] else { throw APIError.unauthorized }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { throw APIError.unauthorized }
        let presented = Secret(parts[1].trimmingCharacters(in: .whitespaces))
        guard accepted.contains(where: { TokenService.constantTimeEquals(presented, $0) }) else { throw APIError.unauthorized }
    }
}

/// Serves `/metrics`. The queue gauges are read from the broker when a scrape comes (at most once a second), by the
/// processes that serve the API only: every one of them sees the same queues, so Prometheus gets the fleet's figures
/// from each API process, not a share of them.
public struct MetricsEndpoint: Sendable {
    let metrics: IntegratorMetrics
    let access: MetricsAccess
    let queues: QueueGaugeRefresh?

    /// - Parameter tasks: where queue figures come from; `nil` leaves the queue gauges out (workers, beats).
    public init(metrics: IntegratorMetrics = .shared, access: MetricsAccess, tasks: TasksService?, logger: Logger) {
        self.metrics = metrics
        self.access = access
        self.queues = tasks.map { QueueGaugeRefresh(tasks: $0, metrics: metrics, logger: logger) }
    }

    /// The endpoint on `router` at `/metrics`.
    public func add<Context: RequestContext>(to router: Router<Context>) {
        router.get("metrics") { request, _ in try await respond(request) }
    }

    public func respond(_ request: Request) async throws -> Response {
        try access.check(request)
        await queues?.refreshIfStale()
        var headers = HTTPFields()
        headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
        headers[.cacheControl] = "no-store"
        return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: metrics.exposition())))
    }
}

/// Reads the broker's queue figures into the gauges, at most once per ``minimumInterval``.
final class QueueGaugeRefresh: Sendable {
    static let minimumInterval: Duration = .seconds(1)
    let tasks: TasksService
    let metrics: IntegratorMetrics
    let logger: Logger
    private let state = Mutex<(last: ContinuousClock.Instant?, failing: Bool)>((nil, false))
    /// Every queue these gauges have shown: one missing from the broker's figures now reads 0.
    private let reported = Mutex<Set<String>>([])

    init(tasks: TasksService, metrics: IntegratorMetrics, logger: Logger) {
        self.tasks = tasks
        self.metrics = metrics
        self.logger = logger
    }

    func refreshIfStale() async {
        let now = ContinuousClock.now
        let due = state.withLock { state in
            guard state.last.map({ now - $0 >= Self.minimumInterval }) ?? true else { return false }
            state.last = now
            return true
        }
        guard due else { return }
        do {
            let stats = try await tasks.queues()
            let current = Set(stats.map(\.queue))
            let vanished = reported.withLock { reported in
                defer { reported.formUnion(current) }
                return reported.subtracting(current)
            }
            metrics.updateQueues(stats, vanished: vanished)
            let recovered = state.withLock { state in
                defer { state.failing = false }
                return state.failing
            }
            if recovered { logger.info("queue figures for /metrics can be read again") }
        } catch {
            // The scrape still answers with the other metrics and the last queue figures read.
            let first = state.withLock { state in
                defer { state.failing = true }
                return !state.failing
            }
            if first { logger.warning("cannot read queue figures for /metrics; the gauges keep their last values", metadata: ["error": "\(error)"]) }
        }
    }
}

// The small HTTP listener of processes without the API (`worker`, `beat`): GET /metrics and nothing else.
import Hummingbird
import Logging

public enum MetricsListener {
    /// A server on `host`:`port` (`0` picks a free port) that serves `/metrics` of this process under the access rules
    /// of `settings`. Queue gauges are left to the API processes.
    /// - Parameter onServerRunning: called with the bound port once listening.
    public static func makeApplication(
        settings: Settings, host: String, port: Int, metrics: IntegratorMetrics = .shared, logger: Logger,
        onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> Application<RouterResponder<BasicRequestContext>> {
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: HTTPMetricsMiddleware(metrics: metrics))
        MetricsEndpoint(metrics: metrics, access: MetricsAccess(settings: settings, host: host), tasks: nil, logger: logger)
            .add(to: router)
        return Application(
            router: router,
            configuration: .init(address: .hostname(host, port: port), serverName: "integrator-metrics"),
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? 0) },
            logger: logger)
    }
}

// `--metrics-port` and `--metrics-host`: the /metrics listener of `worker` and `beat`.
import ArgumentParser

struct MetricsOptions: ParsableArguments {
    @Option(help: """
        Serve Prometheus metrics at http://HOST:PORT/metrics (0 picks a free port). Overrides INTEGRATOR_METRICS_PORT; \
        without either, no listener runs.
        """)
    var metricsPort: String?

    @Option(help: """
        Address of the metrics listener. Overrides INTEGRATOR_METRICS_HOST (default 127.0.0.1, open to local scrapes; \
        any other address needs a bearer token: INTEGRATOR_METRICS_TOKEN or INTEGRATOR_API_TOKEN).
        """)
    var metricsHost: String?

    /// These flags as settings overrides, by variable name.
    var overrides: [String: String] {
        var overrides: [String: String] = [:]
        overrides["INTEGRATOR_METRICS_PORT"] = metricsPort
        overrides["INTEGRATOR_METRICS_HOST"] = metricsHost
        return overrides
    }
}

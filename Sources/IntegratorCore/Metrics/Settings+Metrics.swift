// The settings of /metrics: its token and the listener of processes without the API.

extension Settings {
    /// Reads `INTEGRATOR_METRICS_TOKEN`, `INTEGRATOR_METRICS_HOST` and `INTEGRATOR_METRICS_PORT` through `value`
    /// (the merged value of a variable, `nil` when unset or blank).
    mutating func readMetricsSettings(_ value: (String) -> String?) throws(ConfigurationError) {
        if let text = value("INTEGRATOR_METRICS_TOKEN") {
            guard text.count >= 16 else {
                throw ConfigurationError(variable: "INTEGRATOR_METRICS_TOKEN", expected: "at least 16 characters")
            }
            metricsToken = Secret(text)
        }
        if let text = value("INTEGRATOR_METRICS_HOST") { metricsHost = text }
        if let text = value("INTEGRATOR_METRICS_PORT") {
            guard let port = Int(text), (0...65535).contains(port) else {
                throw ConfigurationError(variable: "INTEGRATOR_METRICS_PORT", expected: "a port number from 0 to 65535", got: text)
            }
            metricsPort = port
        }
    }
}

// Debian's real Prometheus scrapes a running `integrator dev` and a separate `integrator worker --metrics-port`, and a
// PromQL query counts exactly the tasks they completed.
import AsyncHTTPClient
import Foundation
import IntegratorCore
import NIOCore
import Testing

@Suite("Prometheus scraping real processes", .serialized)
struct MetricsPrometheusTests {
    static let prometheus = "/usr/bin/prometheus"

    /// Starts `integrator` with `arguments`, its standard error in `log`.
    static func start(_ arguments: [String], environment: [String: String], log: URL, in directory: URL) throws -> Process {
        let process = Process()
        process.executableURL = CLITests.binary
        process.arguments = arguments
        process.currentDirectoryURL = directory
        process.environment = ["PATH": "/usr/bin:/bin", "HOME": directory.path].merging(environment) { _, new in new }
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        process.standardOutput = FileHandle.nullDevice
        process.standardError = try FileHandle(forWritingTo: log)
        try process.run()
        return process
    }

    static func stop(_ process: Process) {
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
    }

    /// GET `url` with an optional bearer token: the status and body, or `nil` while nothing answers.
    static func get(_ url: String, token: String? = nil) async -> (status: Int, body: String)? {
        var request = HTTPClientRequest(url: url)
        if let token { request.headers.add(name: "authorization", value: "Bearer \(token)") }
        guard let response = try? await HTTPClient.shared.execute(request, timeout: .seconds(10)),
            let body = try? await response.body.collect(upTo: 8 << 20)
        else { return nil }
        return (Int(response.status.code), String(buffer: body))
    }

    /// The value of a PromQL query's single result, or `nil` while it has none.
    static func query(_ prometheusPort: Int, _ promQL: String) async -> Double? {
        var components = URLComponents(string: "http://127.0.0.1:\(prometheusPort)/api/v1/query")!
        components.queryItems = [URLQueryItem(name: "query", value: promQL)]
        guard let url = components.url?.absoluteString, let (status, body) = await get(url), status == 200,
            let json = try? JSONValue.parse(body), let results = json["data"]?["result"]?.arrayValue, results.count == 1,
            let text = results[0]["value"]?.arrayValue?.last?.stringValue
        else { return nil }
        return Double(text)
    }

    /// The status of Prometheus's answer to a query: 200 when it parsed and ran, 400 for bad PromQL.
    static func queryStatus(_ prometheusPort: Int, _ promQL: String) async -> Int? {
        var components = URLComponents(string: "http://127.0.0.1:\(prometheusPort)/api/v1/query")!
        components.queryItems = [URLQueryItem(name: "query", value: promQL)]
        return await get(components.url!.absoluteString)?.status
    }

    /// The PromQL of every panel of Benchmarks/grafana-dashboard.json, with Grafana's variables filled in.
    static func dashboardQueries() throws -> [String] {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let dashboard = try JSONValue.parse(Data(contentsOf: root.appendingPathComponent("Benchmarks/grafana-dashboard.json")))
        let panels = dashboard["panels"]?.arrayValue ?? []
        return panels.flatMap { $0["targets"]?.arrayValue ?? [] }.compactMap { $0["expr"]?.stringValue }.map {
            $0.replacingOccurrences(of: "$job", with: ".*").replacingOccurrences(of: "$__rate_interval", with: "1m")
        }
    }

    @Test("Prometheus scrapes integrator dev, a worker's and a beat's --metrics-port; its query counts every completed task")
    func scrapeDevAndWorker() async throws {
        guard FileManager.default.isExecutableFile(atPath: Self.prometheus) else {
            Issue.record("\(Self.prometheus) is missing: install Debian's prometheus package (scripts/test.sh does)")
            return
        }
        let directory = try CLITests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try await TestDatabase.withEmptyLocation { location in
            let apiToken = "prometheus-test-api-token-0001"
            let metricsToken = "prometheus-test-metrics-token-01"
            let (devPort, workerMetricsPort, prometheusPort) = (try FreePort.make(), try FreePort.make(), try FreePort.make())
            let beatMetricsPort = try FreePort.make()
            let shared = [
                "INTEGRATOR_DATABASE_URL": CLITests.url(for: location), "INTEGRATOR_SECRET_KEY": SecretKeyRing.generateEncodedKey(),
                "INTEGRATOR_API_TOKEN": apiToken, "LOG_LEVEL": "warning",
            ]
            let dev = try Self.start(
                ["dev", "--port", "\(devPort)", "--queues", "dev-tasks", "--data-directory", directory.appendingPathComponent("data").path],
                environment: shared, log: directory.appendingPathComponent("dev.log"), in: directory)
            defer { Self.stop(dev) }
            let devURL = "http://127.0.0.1:\(devPort)"
            let devUp = try await eventually(120) { await Self.get("\(devURL)/health")?.status == 200 }
            try #require(devUp, "integrator dev did not start")

            // Started once dev has migrated the database, so it never polls tables that do not exist yet.
            let worker = try Self.start(
                ["worker", "--queues", "worker-tasks", "--concurrency", "8", "--metrics-port", "\(workerMetricsPort)"],
                environment: shared.merging(["INTEGRATOR_METRICS_TOKEN": metricsToken]) { _, new in new },
                log: directory.appendingPathComponent("worker.log"), in: directory)
            defer { Self.stop(worker) }
            let workerMetrics = "http://127.0.0.1:\(workerMetricsPort)/metrics"
            let workerUp = try await eventually(120) { await Self.get(workerMetrics, token: metricsToken)?.status == 200 }
            try #require(workerUp, "the worker's metrics listener did not start")
            #expect(await Self.get(workerMetrics)?.status == 401, "a metrics token, once set, is required even on loopback")
            // A second beat, standing by while dev's leads.
            let beat = try Self.start(
                ["beat", "--metrics-port", "\(beatMetricsPort)"], environment: shared, log: directory.appendingPathComponent("beat.log"),
                in: directory)
            defer { Self.stop(beat) }

            let config = directory.appendingPathComponent("prometheus.yml")
            try """
                global:
                  scrape_interval: 1s
                  evaluation_interval: 1s
                scrape_configs:
                  - job_name: integrator-dev
                    static_configs:
                      - targets: ["127.0.0.1:\(devPort)"]
                  - job_name: integrator-worker
                    authorization:
                      credentials: "\(metricsToken)"
                    static_configs:
                      - targets: ["127.0.0.1:\(workerMetricsPort)"]
                  - job_name: integrator-beat
                    static_configs:
                      - targets: ["127.0.0.1:\(beatMetricsPort)"]

                """.write(to: config, atomically: true, encoding: .utf8)
            let prometheusLog = directory.appendingPathComponent("prometheus.log")
            _ = FileManager.default.createFile(atPath: prometheusLog.path, contents: nil)
            let prometheus = Process()
            prometheus.executableURL = URL(fileURLWithPath: Self.prometheus)
            prometheus.arguments = [
                "--config.file=\(config.path)", "--storage.tsdb.path=\(directory.appendingPathComponent("tsdb").path)",
                "--web.listen-address=127.0.0.1:\(prometheusPort)",
            ]
            prometheus.currentDirectoryURL = directory
            prometheus.standardOutput = FileHandle.nullDevice
            prometheus.standardError = try FileHandle(forWritingTo: prometheusLog)
            try prometheus.run()
            defer { Self.stop(prometheus) }

            let (onDev, onWorker) = (7, 5)
            for (queue, count) in [("dev-tasks", onDev), ("worker-tasks", onWorker)] {
                for index in 0..<count {
                    let answer = try await SimpleHTTP(port: devPort).call(
                        "POST", "/api/v1/tasks", body: ["task": "core.noop", "queue": .string(queue), "args": ["i": .number(Double(index))]],
                        token: apiToken)
                    // `integrator dev`'s own worker may have run it already by the time the answer is written.
                    #expect(["queued", "started", "succeeded"].contains(answer["state"]?.stringValue ?? ""), "\(answer)")
                }
            }

            let allUp = try await eventually(120) {
                await Self.query(prometheusPort, "sum(up{job=~\"integrator-dev|integrator-worker|integrator-beat\"})") == 3
            }
            let prometheusOutput = String(decoding: (try? Data(contentsOf: prometheusLog)) ?? Data(), as: UTF8.self)
            #expect(allUp, "Prometheus scrapes the three processes: \(prometheusOutput.suffix(2000))")
            let completed = "sum(integrator_tasks_total{task=\"core.noop\",outcome=\"succeeded\"})"
            let counted = try await eventually(120) { await Self.query(prometheusPort, completed) == Double(onDev + onWorker) }
            let total = await Self.query(prometheusPort, completed)
            #expect(counted, "\(completed) = \(String(describing: total))")
            #expect(await Self.query(prometheusPort, "sum(integrator_tasks_total{job=\"integrator-dev\",outcome=\"succeeded\"})") == Double(onDev))
            #expect(await Self.query(prometheusPort, "sum(integrator_tasks_total{job=\"integrator-worker\",outcome=\"succeeded\"})") == Double(onWorker))
            let oneLeader = try await eventually(60) {
                let leaders = await Self.query(prometheusPort, "sum(integrator_beat_leader)")
                let standby = await Self.query(prometheusPort, "sum(integrator_beat_leader{job=\"integrator-beat\"})")
                return leaders == 1 && standby == 0
            }
            #expect(oneLeader, "one of the two beats leads")
            // dev serves the API: its requests and the queue gauges come from there.
            let posts = "sum(integrator_http_requests_total{job=\"integrator-dev\",route=\"/api/v1/tasks\",method=\"POST\",status=\"202\"})"
            #expect(await Self.query(prometheusPort, posts) == Double(onDev + onWorker))
            // Tasks on a queue nobody consumes wait there, and the API process reports them.
            for _ in 0..<3 {
                _ = try await SimpleHTTP(port: devPort).call(
                    "POST", "/api/v1/tasks", body: ["task": "core.noop", "queue": "nobody-consumes"], token: apiToken)
            }
            let waiting = try await eventually(60) {
                await Self.query(prometheusPort, "sum(integrator_queue_depth{job=\"integrator-dev\",queue=\"nobody-consumes\"})") == 3
            }
            #expect(waiting)

            // Every query of the Grafana dashboard is valid PromQL over these metrics.
            for expression in try Self.dashboardQueries() {
                let status = await Self.queryStatus(prometheusPort, expression)
                #expect(status == 200, "\(expression)")
            }

            for process in [beat, worker, dev] {
                process.terminate()
                process.waitUntilExit()
                #expect(process.terminationStatus == 0)
            }
            for log in ["dev.log", "worker.log", "beat.log"] {
                let text = try String(contentsOf: directory.appendingPathComponent(log), encoding: .utf8)
                #expect(!text.contains(metricsToken) && !text.contains(apiToken), "\(log) holds no token")
            }
        }
    }
}

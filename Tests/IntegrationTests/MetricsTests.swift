// /metrics: what the worker, the beat, the API and webhook deliveries record, the access rules, and bounded labels.
import Foundation
import Hummingbird
import HummingbirdTesting
import IntegratorCore
import Testing

@Suite("Prometheus metrics")
struct MetricsTests {
    /// Reads a registry's exposition.
    static func exposition(_ metrics: IntegratorMetrics) throws -> MetricsExposition {
        try MetricsExposition(String(decoding: metrics.exposition(), as: UTF8.self))
    }

    /// Reads `/metrics` of the test app (the process-wide registry, which every test of this process records into).
    static func scrape(_ app: TestApp) async throws -> MetricsExposition {
        let response = try await app.client.json(.get, "/metrics", token: "")
        guard response.status == .ok else { throw TestSetupError("GET /metrics answered \(response.status): \(response.text)") }
        return try MetricsExposition(response.text)
    }

    @Test("the worker counts outcomes by task name, times runs, and counts retries and dead letters; no id is a label")
    func workerOutcomes() async throws {
        try await TestApp.run(extraPlugins: [.testTasks], realClock: true) { app in
            let metrics = IntegratorMetrics()
            let runtime = app.runtime
            let queue = "metrics-\(UUID().uuidString.prefix(8).lowercased())"
            func message(_ name: String) -> TaskMessage { TaskMessage(name: name, queue: queue, enqueuedAt: Date()) }
            var ids: [String] = []
            for _ in 0..<5 { ids.append(try await runtime.tasks.enqueue(message("core.noop")).id) }
            ids.append(try await runtime.tasks.enqueue(message("test.fail")).id)
            ids.append(try await runtime.tasks.enqueue(message("test.permanent")).id)
            // A name no handler has, as a message from another version of the fleet would carry.
            let unknown = message("nobody.handles.this")
            try await runtime.runs.recordQueued(unknown, at: Date())
            try await runtime.broker.publish(unknown)
            ids.append(unknown.id)

            let worker = Worker(
                options: WorkerOptions(queues: [queue], concurrency: 4), broker: runtime.broker, runs: runtime.runs,
                registry: runtime.registry, timers: runtime.timers, environment: runtime.environment, clock: runtime.clock,
                logger: TestDatabase.logger, metrics: metrics)
            let beat = runtime.makeBeat()
            let running = Task { try await worker.run() }
            let beating = Task { try await beat.run() }
            defer {
                running.cancel()
                beating.cancel()
            }
            let allIDs = ids
            let settled = try await eventually {
                let states = try await allIDs.asyncMap { try await runtime.runs.find(id: $0)?.state }
                return states == [.succeeded, .succeeded, .succeeded, .succeeded, .succeeded, .dead, .failed, .dead]
            }
            #expect(settled)
            running.cancel()
            beating.cancel()
            _ = try? await running.value
            _ = try? await beating.value

            let scraped = try Self.exposition(metrics)
            let tasks = "integrator_tasks_total"
            #expect(scraped.value(tasks, ["task": "core.noop", "outcome": "succeeded"]) == 5)
            #expect(scraped.value(tasks, ["task": "test.fail", "outcome": "retrying"]) == 2)
            #expect(scraped.value(tasks, ["task": "test.fail", "outcome": "dead"]) == 1)
            #expect(scraped.value(tasks, ["task": "test.permanent", "outcome": "failed"]) == 1)
            #expect(scraped.value(tasks, ["task": "unknown", "outcome": "dead"]) == 1)
            #expect(scraped.value("integrator_task_retries_total", ["task": "test.fail"]) == 2)
            let deadLetters = "integrator_task_dead_letters_total"
            #expect(scraped.value(deadLetters, ["task": "test.fail", "reason": "attempts_exhausted"]) == 1)
            #expect(scraped.value(deadLetters, ["task": "unknown", "reason": "unknown_task"]) == 1)
            let durations = "integrator_task_duration_seconds_count"
            #expect(scraped.value(durations, ["task": "core.noop", "outcome": "succeeded"]) == 5)
            #expect(scraped.value(durations, ["task": "test.fail", "outcome": "retrying"]) == 2)
            #expect((scraped.value(durations, ["task": "unknown", "outcome": "dead"]) ?? 0) == 0, "a task that never ran has no duration")
            let infinite = scraped.value("integrator_task_duration_seconds_bucket", ["task": "core.noop", "outcome": "succeeded", "le": "+Inf"])
            #expect(infinite == 5)
            #expect(scraped.types["integrator_tasks_total"] == "counter")
            #expect(scraped.types["integrator_task_duration_seconds"] == "histogram")
            #expect(scraped.help["integrator_tasks_total"]?.isEmpty == false)

            let taskLabels = Set(scraped.samples.compactMap { $0.labels["task"] })
            #expect(taskLabels == ["core.noop", "test.fail", "test.permanent", "unknown"])
            #expect(scraped.labelValues.isDisjoint(with: ids), "no task id is a label value")
            #expect(!scraped.text.contains("nobody.handles.this"))
        }
    }

    @Test("requests are counted by route template, method and status, and timed; ids in paths never become labels")
    func httpRoutes() async throws {
        let metrics = IntegratorMetrics()
        let router = Router()
        router.add(middleware: HTTPMetricsMiddleware(metrics: metrics))
        router.get("items/:id") { _, _ in "item" }
        router.post("items/:id") { _, _ -> Response in Response(status: .created) }
        router.get("missing/:id") { _, _ -> String in throw HTTPError(.notFound) }
        let app = Application(router: router)
        try await app.test(.router) { client in
            for id in ["abc-123", "def-456"] {
                try await client.execute(uri: "/items/\(id)", method: .get) { #expect($0.status == .ok) }
            }
            try await client.execute(uri: "/items/ghi-789", method: .post) { #expect($0.status == .created) }
            try await client.execute(uri: "/missing/jkl-000", method: .get) { #expect($0.status == .notFound) }
            try await client.execute(uri: "/nothing/here", method: .get) { #expect($0.status == .notFound) }
        }
        let scraped = try Self.exposition(metrics)
        let requests = "integrator_http_requests_total"
        #expect(scraped.value(requests, ["route": "/items/{id}", "method": "GET", "status": "200"]) == 2)
        #expect(scraped.value(requests, ["route": "/items/{id}", "method": "POST", "status": "201"]) == 1)
        #expect(scraped.value(requests, ["route": "/missing/{id}", "method": "GET", "status": "404"]) == 1)
        #expect(scraped.value("integrator_http_request_duration_seconds_count", ["route": "/items/{id}", "method": "GET"]) == 2)
        #expect(scraped.value(requests, ["route": "unmatched", "method": "GET", "status": "404"]) == 1)
        #expect(Set(scraped.samples.compactMap { $0.labels["route"] }) == ["/items/{id}", "/missing/{id}", "unmatched"])
        for id in ["abc-123", "def-456", "ghi-789", "jkl-000", "/nothing/here"] { #expect(!scraped.text.contains(id)) }
    }

    @Test("the API's /metrics: route templates of real requests, queue gauges read from the broker, text format")
    func apiEndpoint() async throws {
        try await TestApp.run { app in
            let queue = "gauge-\(UUID().uuidString.prefix(8).lowercased())"
            var ids: [String] = []
            for _ in 0..<3 {
                ids.append(try await app.runtime.tasks.enqueue(TaskMessage(name: "core.noop", queue: queue, enqueuedAt: app.runtime.clock.now())).id)
            }
            #expect(try await app.call(.get, "/api/v1/tasks/\(ids[0])").status == .ok)
            let response = try await app.client.json(.get, "/metrics", token: "")
            #expect(response.status == .ok)
            #expect(response.headers[.contentType] == "text/plain; version=0.0.4; charset=utf-8")
            let scraped = try MetricsExposition(response.text)
            #expect(scraped.value("integrator_queue_depth", ["queue": queue]) == 3)
            #expect(scraped.value("integrator_queue_in_flight", ["queue": queue]) == 0)
            #expect(scraped.value("integrator_queue_dead_letters", ["queue": queue]) == 0)
            let route = scraped.value("integrator_http_requests_total", ["route": "/api/v1/tasks/{id}", "method": "GET", "status": "200"])
            #expect((route ?? 0) >= 1)
            #expect(scraped.labelValues.isDisjoint(with: ids))
            #expect(!scraped.text.contains(TestApp.apiToken) && !scraped.text.contains(app.adminToken))
            // Every metric of the catalog that has been recorded carries its help text and type.
            for definition in MetricCatalog.all where scraped.types[definition.name] != nil {
                #expect(scraped.help[definition.name] == definition.help)
                #expect(scraped.types[definition.name] == definition.kind.rawValue)
            }
        }
    }

    @Test("access: open on loopback without a metrics token; a metrics token or the API token elsewhere or when one is set")
    func access() async throws {
        let metricsToken = Secret("metrics-token-for-tests-0001")
        let apiToken = Secret("api-token-for-tests-00000001")
        func statuses(_ access: MetricsAccess) async throws -> [String: Int] {
            let router = Router()
            MetricsEndpoint(metrics: IntegratorMetrics(), access: access, tasks: nil, logger: TestDatabase.logger).add(to: router)
            return try await Application(router: router).test(.router) { client in
                var statuses: [String: Int] = [:]
                for (name, header) in [
                    ("none", nil), ("metrics", "Bearer \(metricsToken.reveal())"), ("api", "Bearer \(apiToken.reveal())"),
                    ("wrong", "Bearer not-the-token-at-all-000"), ("basic", "Basic \(metricsToken.reveal())"),
                ] {
                    let headers: HTTPFields = header.map { [.authorization: $0] } ?? [:]
                    statuses[name] = try await client.execute(uri: "/metrics", method: .get, headers: headers) { response in
                        let body = String(buffer: response.body)
                        #expect(!body.contains(metricsToken.reveal()) && !body.contains(apiToken.reveal()))
                        if response.status == .unauthorized { #expect(response.headers[.wwwAuthenticate] == "Bearer") }
                        return response.status.code
                    }
                }
                return statuses
            }
        }
        let open = try await statuses(MetricsAccess(metricsToken: nil, apiToken: apiToken, loopbackOnly: true))
        #expect(open == ["none": 200, "metrics": 200, "api": 200, "wrong": 200, "basic": 200])
        let tokenSet = try await statuses(MetricsAccess(metricsToken: metricsToken, apiToken: apiToken, loopbackOnly: true))
        #expect(tokenSet == ["none": 401, "metrics": 200, "api": 200, "wrong": 401, "basic": 401])
        let exposed = try await statuses(MetricsAccess(metricsToken: nil, apiToken: apiToken, loopbackOnly: false))
        #expect(exposed == ["none": 401, "metrics": 401, "api": 200, "wrong": 401, "basic": 401])
        let exposedWithToken = try await statuses(MetricsAccess(metricsToken: metricsToken, apiToken: nil, loopbackOnly: false))
        #expect(exposedWithToken == ["none": 401, "metrics": 200, "api": 401, "wrong": 401, "basic": 401])
        let nothing = try await statuses(MetricsAccess(metricsToken: nil, apiToken: nil, loopbackOnly: false))
        #expect(nothing == ["none": 401, "metrics": 401, "api": 401, "wrong": 401, "basic": 401])

        // Without any token, the refusal says what to set.
        let router = Router()
        MetricsEndpoint(metrics: IntegratorMetrics(), access: MetricsAccess(metricsToken: nil, apiToken: nil, loopbackOnly: false), tasks: nil, logger: TestDatabase.logger)
            .add(to: router)
        try await Application(router: router).test(.router) { client in
            try await client.execute(uri: "/metrics", method: .get) { response in
                #expect(String(buffer: response.body).contains("INTEGRATOR_METRICS_TOKEN"))
            }
        }

        for host in ["127.0.0.1", "127.3.2.1", "::1", "[::1]", "localhost", "LOCALHOST"] { #expect(MetricsAccess.isLoopback(host), "\(host)") }
        for host in ["0.0.0.0", "::", "10.0.0.1", "192.168.1.2", "example.com", ""] { #expect(!MetricsAccess.isLoopback(host), "\(host)") }
    }

    @Test("settings: INTEGRATOR_METRICS_TOKEN, _HOST and _PORT are read and checked, and a bad token is never repeated")
    func settings() throws {
        let settings = try Settings(values: [
            "INTEGRATOR_METRICS_TOKEN": "a-metrics-token-of-16+", "INTEGRATOR_METRICS_HOST": "0.0.0.0", "INTEGRATOR_METRICS_PORT": "9464",
        ])
        #expect(settings.metricsToken?.reveal() == "a-metrics-token-of-16+")
        #expect(settings.metricsHost == "0.0.0.0")
        #expect(settings.metricsPort == 9464)
        let defaults = try Settings(values: [:])
        #expect(defaults.metricsToken == nil && defaults.metricsHost == "127.0.0.1" && defaults.metricsPort == nil)
        #expect {
            try Settings(values: ["INTEGRATOR_METRICS_TOKEN": "short-secret"])
        } throws: { error in
            let text = "\(error)"
            return text.contains("INTEGRATOR_METRICS_TOKEN") && text.contains("16") && !text.contains("short-secret")
        }
        #expect {
            try Settings(values: ["INTEGRATOR_METRICS_PORT": "99999"])
        } throws: { "\($0)" == "INTEGRATOR_METRICS_PORT: expected a port number from 0 to 65535, got '99999'" }
    }

    @Test("the beat records fire lateness by kind and whether it leads")
    func beat() async throws {
        try await TestApp.run(realClock: true) { app in
            let metrics = IntegratorMetrics()
            let runtime = app.runtime
            let beat = Beat(
                database: runtime.database, schedules: ScheduleStore(database: runtime.database), timers: runtime.timers,
                dispatcher: runtime.dispatcher, wakeup: runtime.wakeup, clock: runtime.clock, logger: TestDatabase.logger, metrics: metrics)
            #expect(try Self.exposition(metrics).value("integrator_beat_leader") == 0)
            let beating = Task { try await beat.run() }
            defer { beating.cancel() }
            let leads = try await eventually { try Self.exposition(metrics).value("integrator_beat_leader") == 1 }
            #expect(leads)
            // Three timers a second overdue: each fires at least that late.
            let due = Date().addingTimeInterval(-1)
            for index in 0..<3 {
                let message = TaskMessage(name: "core.noop", queue: "lateness-\(index)", enqueuedAt: due)
                try await runtime.timers.upsert(DurableTimer(id: "lateness-\(index)-\(UUID().uuidString)", dueAt: due, message: message), at: Date())
            }
            let fired = try await eventually {
                try Self.exposition(metrics).value("integrator_beat_fire_lateness_seconds_count", ["kind": "timer"]) == 3
            }
            #expect(fired)
            let scraped = try Self.exposition(metrics)
            #expect(scraped.value("integrator_beat_fire_lateness_seconds_bucket", ["kind": "timer", "le": "0.5"]) == 0, "a second late")
            #expect((scraped.value("integrator_beat_fire_lateness_seconds_sum", ["kind": "timer"]) ?? 0) >= 3)
            // A fire centuries late (a message scheduled for year 26) is recorded, capped, in the last bucket.
            metrics.beatFired(.schedule, dueTimes: [Date(timeIntervalSince1970: -61_300_000_000)], firedAt: Date())
            let ancient = try Self.exposition(metrics)
            #expect(ancient.value("integrator_beat_fire_lateness_seconds_bucket", ["kind": "schedule", "le": "60.0"]) == 0)
            #expect(ancient.value("integrator_beat_fire_lateness_seconds_bucket", ["kind": "schedule", "le": "+Inf"]) == 1)
            beating.cancel()
            _ = try? await beating.value
            #expect(try Self.exposition(metrics).value("integrator_beat_leader") == 0, "leadership ended with the beat")
        }
    }

    @Test("webhook deliveries are counted by outcome and timed, without tenant labels")
    func webhooks() async throws {
        let receiver = WebhookReceiver()
        try await receiver.run { baseURL in
            try await TestApp.run(realClock: true) { app in
                let tenant = "metrics-\(UUID().uuidString.prefix(8).lowercased())"
                _ = try await WebhooksTests.configure(app, tenant, url: "\(baseURL)/hook")
                let before = try await Self.scrape(app)
                let succeeded = ["outcome": "succeeded"]
                let countBefore = before.value("integrator_webhook_deliveries_total", succeeded) ?? 0
                let timedBefore = before.value("integrator_webhook_delivery_duration_seconds_count", succeeded) ?? 0
                var ids: [String] = []
                for _ in 0..<3 { ids.append(try await WebhooksTests.send(app, tenant)) }
                try await withWorker(app, WorkerOptions(queues: ["default"], concurrency: 4)) { _ in
                    let arrived = try await eventually { receiver.distinctEventIDs.count == 3 }
                    let drained = try await WebhooksTests.drained(app)
                    #expect(arrived && drained)
                }
                let after = try await Self.scrape(app)
                // Other tests of this process deliver too: at least these three were counted.
                #expect((after.value("integrator_webhook_deliveries_total", succeeded) ?? 0) - countBefore >= 3)
                #expect((after.value("integrator_webhook_delivery_duration_seconds_count", succeeded) ?? 0) - timedBefore >= 3)
                let outcomes = Set(after.samples.filter { $0.name == "integrator_webhook_deliveries_total" }.compactMap { $0.labels["outcome"] })
                #expect(outcomes.isSubset(of: ["succeeded", "retrying", "dead", "skipped"]))
                #expect(!after.text.contains(tenant))
                #expect(after.labelValues.isDisjoint(with: ids))
            }
        }
    }

    @Test("the Grafana dashboard charts only metrics of the catalog, and every metric of the catalog")
    func dashboard() throws {
        let queries = try MetricsPrometheusTests.dashboardQueries()
        #expect(queries.count >= 15)
        let pattern = try Regex("integrator_[a-z_]+")
        var charted: Set<String> = []
        for query in queries {
            for match in query.matches(of: pattern) {
                var name = String(query[match.range])
                for suffix in ["_bucket", "_count", "_sum"] where name.hasSuffix(suffix) { name = String(name.dropLast(suffix.count)) }
                charted.insert(name)
            }
        }
        #expect(charted == Set(MetricCatalog.all.map(\.name)))
    }

    @Test("a worker's metrics listener serves /metrics and nothing else")
    func listener() async throws {
        let metrics = IntegratorMetrics()
        metrics.taskEnded("core.noop", outcome: .succeeded, ran: 0.002)
        let app = MetricsListener.makeApplication(
            settings: Settings(), host: "127.0.0.1", port: 0, metrics: metrics, logger: TestDatabase.logger)
        try await app.test(.live) { client in
            try await client.execute(uri: "/metrics", method: .get) { response in
                #expect(response.status == .ok)
                let scraped = try MetricsExposition(String(buffer: response.body))
                #expect(scraped.value("integrator_tasks_total", ["task": "core.noop", "outcome": "succeeded"]) == 1)
            }
            try await client.execute(uri: "/api/v1/tasks", method: .get) { #expect($0.status == .notFound) }
        }
        let scraped = try Self.exposition(metrics)
        #expect(scraped.value("integrator_http_requests_total", ["route": "/metrics", "method": "GET", "status": "200"]) == 1)
    }
}

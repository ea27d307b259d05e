// `integrator bench chat-buffer`: many users each send a burst of messages through POST /api/message; each user's
// buffer must reach a local receiver exactly once, whole and in order, soon after its deadline.
import ArgumentParser
import Foundation
import Hummingbird
import IntegratorCore
import Logging
import Plugins
import Synchronization

struct ChatBufferBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat-buffer",
        abstract: "Send bursts of chat messages through the API and check that each user's buffer arrives once, in order, on time.",
        discussion: """
            Applies migrations and runs, in this process, the API on 127.0.0.1 (a free port), a beat, a worker and a \
            receiver that answers 200 at once; sets the chat buffer's webhook URL to the receiver through the API. \
            --clients concurrent clients share --users users; each client sends each of its users' --messages messages \
            one after another (POST /api/message with a static token, ttl --ttl), so every user's messages arrive within \
            their ttl. With --rate, the messages go out at that many per second instead, each at its own time (a fixed \
            offered load, whatever the answers take), a user's messages one after the other in order. Checks that every \
            user's buffer arrived exactly once (counted by webhook-id at the receiver) with \
            all its messages in order, and reports violations; flush lateness (arrival minus the deadline the last \
            message's answer gave, p50/p99/max); API messages per second; peak resident memory. Uses a throwaway secret \
            key when INTEGRATOR_SECRET_KEY is not set. Point it at a database of its own (--database-url), and pass \
            --log-level warning: the API logs every request at info.
            """)

    @Option(help: "Users that send a burst each.")
    var users = 10_000

    @Option(help: "Messages per user.")
    var messages = 5

    @Option(help: "The ttl each message carries, in seconds.")
    var ttl = 2

    @Option(help: "Concurrent API clients; each sends its users' messages one request at a time.")
    var clients = 32

    @Option(help: "Messages per second, each sent at its own time (a fixed offered load); 0 sends through --clients as fast as they go.")
    var rate = 0

    @Option(help: "Tasks the worker runs at once (flushes and deliveries).")
    var concurrency = 64

    @OptionGroup var common: BenchRunOptions

    @OptionGroup var options: GlobalOptions

    func validate() throws {
        guard (1...1_000_000).contains(users) else { throw ValidationError("--users must be from 1 to 1000000") }
        guard (1...100).contains(messages) else { throw ValidationError("--messages must be from 1 to 100") }
        guard (1...3600).contains(ttl) else { throw ValidationError("--ttl must be from 1 to 3600") }
        guard (1...1000).contains(clients) else { throw ValidationError("--clients must be from 1 to 1000") }
        guard (1...1000).contains(concurrency) else { throw ValidationError("--concurrency must be from 1 to 1000") }
        guard (0...100_000).contains(rate) else { throw ValidationError("--rate must be from 0 to 100000") }
    }

    func run() async throws {
        try await reportingErrors {
            var overrides = common.brokerURL.map { ["INTEGRATOR_BROKER_URL": $0] } ?? [:]
            overrides["INTEGRATOR_HTTP_HOST"] = "127.0.0.1"
            overrides["INTEGRATOR_HTTP_PORT"] = "0"
            var settings = try options.settings(overriding: overrides)
            try BenchCommand.useEphemeralKeyIfUnset(&settings)
            let token = "bench-" + Identifier.make()
            settings.apiToken = Secret(token)
            let plan = ChatBufferBenchPlan(
                users: users, messages: messages, ttl: ttl, clients: clients, rate: rate, concurrency: concurrency, token: token,
                timeoutSeconds: common.timeout)
            let outbound = OutboundHTTP.Options(allowedRanges: [IPAddressRange("127.0.0.0/8")!])
            let report = try await withRuntime(settings, migrate: true, outboundOptions: outbound) { runtime in
                try await ChatBufferReceiver.run { url, flushes in try await plan.run(on: runtime, receiverURL: url, flushes: flushes) }
            }
            print(common.json ? report.json.encodedString() : report.text)
        }
    }
}

/// What the receiver saw of one user's flushes.
struct ReceivedFlushes: Sendable {
    /// Requests per webhook-id: more than one id is a second flush, a count above 1 a redelivery of the same flush.
    var requestsByID: [String: Int] = [:]
    /// The messages of the first request.
    var messages: [String] = []
    var firstArrival = Date.distantFuture
}

/// A receiver on 127.0.0.1 that notes, per user, each flush's webhook-id, messages and arrival time.
enum ChatBufferReceiver {
    final class Flushes: Sendable {
        private let state = Mutex<[String: ReceivedFlushes]>([:])

        func record(user: String, id: String, messages: [String], at arrival: Date) {
            state.withLock { flushes in
                var received = flushes[user] ?? ReceivedFlushes()
                if received.requestsByID.isEmpty {
                    received.messages = messages
                    received.firstArrival = arrival
                }
                received.requestsByID[id, default: 0] += 1
                flushes[user] = received
            }
        }

        var users: Int { state.withLock { $0.count } }
        var all: [String: ReceivedFlushes] { state.withLock { $0 } }
    }

    static func run<T: Sendable>(_ body: @Sendable (_ url: String, _ flushes: Flushes) async throws -> T) async throws -> T {
        let flushes = Flushes()
        let router = Router()
        router.post("/chat") { request, _ -> HTTPResponse.Status in
            let arrival = Date()
            var request = request
            let bytes = try await request.collectBody(upTo: 1 << 20)
            let json = (try? JSONValue.parse(bytes.readableBytesView)) ?? .null
            let id = request.headers.first { $0.name.canonicalName == "webhook-id" }?.value ?? ""
            if let user = json["user"]?.stringValue {
                flushes.record(user: user, id: id, messages: json["messages"]?.arrayValue?.compactMap(\.stringValue) ?? [], at: arrival)
            }
            return .ok
        }
        return try await LocalServer.serving(router, name: "benchmark's receiver") { baseURL in try await body(baseURL + "/chat", flushes) }
    }
}

struct ChatBufferBenchPlan: Sendable {
    var users: Int
    var messages: Int
    var ttl: Int
    var clients: Int
    /// Messages per second at fixed times; 0 for closed-loop clients.
    var rate: Int
    var concurrency: Int
    var token: String
    var timeoutSeconds: Int

    /// The API's answers for one user: when its last message said the buffer flushes, and whether its messages kept
    /// within the ttl of each other.
    struct Sent: Sendable {
        var flushAt: Date
        var withinTTL: Bool
    }

    /// Each user's answers, written by the users' own tasks.
    final class AnswersByUser: Sendable {
        let answers = Mutex<[String: Sent]>([:])
    }

    func run(on runtime: Runtime, receiverURL: String, flushes: ChatBufferReceiver.Flushes) async throws -> ChatBufferBenchReport {
        let worker = runtime.makeWorker(WorkerOptions(queues: ["default"], concurrency: concurrency))
        let beat = runtime.makeBeat()
        // The clients' own connection pool, apart from the one the deliveries use.
        let http = OutboundHTTP(options: OutboundHTTP.Options(allowedRanges: [IPAddressRange("127.0.0.0/8")!]), logger: runtime.logger)
        var client = http.client(logger: runtime.logger)
        client.retry = RetryPolicy(maxAttempts: 1)
        client.headers = [("authorization", "Bearer \(token)")]
        let api = client
        do {
            let report = try await measure(on: runtime, api: api, worker: worker, beat: beat, receiverURL: receiverURL, flushes: flushes)
            await http.shutdown()
            return report
        } catch {
            await http.shutdown()
            throw error
        }
    }

    private func measure(
        on runtime: Runtime, api: OutboundClient, worker: Worker, beat: Beat, receiverURL: String, flushes: ChatBufferReceiver.Flushes
    ) async throws -> ChatBufferBenchReport {
        try await Self.servingAPI(runtime) { baseURL in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await worker.run() }
                group.addTask { try await beat.run() }
                defer { group.cancelAll() }
                let configured = try await api.send(
                    try .json(method: "PUT", baseURL + "/api/v1/chat-buffer/config", JSONValue.object(["webhook_url": .string(receiverURL)])))
                guard configured.isSuccess else { throw BenchFailure("setting the webhook URL failed: HTTP \(configured.status)") }

                let clock = ContinuousClock()
                let start = clock.now
                let sent = try await send(api, to: baseURL + "/api/message")
                let sendSeconds = (clock.now - start).seconds
                let deadline = clock.now + .seconds(timeoutSeconds)
                while flushes.users < users {
                    if clock.now >= deadline { throw BenchFailure("timed out after \(timeoutSeconds) s: \(flushes.users) of \(users) users flushed") }
                    try await Task.sleep(for: .milliseconds(10))
                }
                // A second flush or a redelivery would come right behind the first.
                try await Task.sleep(for: .seconds(2))
                return report(sent: sent, received: flushes.all, sendSeconds: sendSeconds, database: runtime.database.engine.rawValue,
                    broker: QueueBenchPlan.brokerName(runtime.settings.broker))
            }
        }
    }

    /// Sends every user's messages (through closed-loop clients, or at the fixed rate); returns each user's last answer.
    private func send(_ api: OutboundClient, to url: String) async throws -> [String: Sent] {
        if rate > 0 {
            // Message n (user n / messages) is due n / rate seconds after the start; a user's task sends its messages
            // in order, each no sooner than its time, so a slow answer delays only that user. A discarding group
            // frees each user's task when it ends, so thousands of finished ones do not add to the peak RSS.
            let sent = AnswersByUser()
            try await withThrowingDiscardingTaskGroup { group in
                let clock = ContinuousClock()
                let start = clock.now
                let interval = Duration.seconds(1) / rate
                for index in 0..<users {
                    let first = index * messages
                    try await clock.sleep(until: start + interval * first)
                    group.addTask {
                        let user = "bench-user-\(index)"
                        let answer = try await sendBurst(api, to: url, user: user) { number in start + interval * (first + number - 1) }
                        sent.answers.withLock { $0[user] = answer }
                    }
                }
            }
            return sent.answers.withLock { $0 }
        }
        return try await withThrowingTaskGroup(of: [String: Sent].self) { group in
            for client in 0..<clients {
                group.addTask {
                    var sent: [String: Sent] = [:]
                    for index in stride(from: client, to: users, by: clients) {
                        let user = "bench-user-\(index)"
                        sent[user] = try await sendBurst(api, to: url, user: user) { _ in nil }
                    }
                    return sent
                }
            }
            var all: [String: Sent] = [:]
            all.reserveCapacity(users)
            for try await part in group { all.merge(part) { first, _ in first } }
            return all
        }
    }

    /// Sends one user's messages one after the other, message `number` no sooner than `notBefore(number)` if it gives a
    /// time; returns the last answer's deadline and whether the messages kept within the ttl of each other.
    private func sendBurst(
        _ api: OutboundClient, to url: String, user: String, notBefore: (Int) -> ContinuousClock.Instant?
    ) async throws -> Sent {
        var flushAt = Date.distantPast
        var withinTTL = true
        var previous = ContinuousClock.now
        for number in 1...messages {
            if let due = notBefore(number) { try await Task.sleep(until: due, clock: .continuous) }
            let answer = try await api.send(
                try .json(method: "POST", url, JSONValue.object(["user": .string(user), "message": .string("m\(number)"), "ttl": .number(Double(ttl))])))
            guard answer.status == 200, let text = try answer.json()["flush_at"]?.stringValue, let date = Date(iso8601: text) else {
                throw BenchFailure("POST /api/message answered HTTP \(answer.status): \(String(decoding: answer.body.prefix(300), as: UTF8.self))")
            }
            let now = ContinuousClock.now
            if number > 1, (now - previous).seconds >= Double(ttl) { withinTTL = false }
            previous = now
            flushAt = date
        }
        return Sent(flushAt: flushAt, withinTTL: withinTTL)
    }

    private func report(
        sent: [String: Sent], received: [String: ReceivedFlushes], sendSeconds: Double, database: String, broker: String
    ) -> ChatBufferBenchReport {
        let expected = (1...messages).map { "m\($0)" }
        var report = ChatBufferBenchReport(
            broker: broker, database: database, users: users, messages: messages, ttl: ttl, clients: clients, rate: rate, concurrency: concurrency,
            sendSeconds: sendSeconds, peakRSSMiB: QueueBenchPlan.peakResidentMiB())
        var lateness: [Double] = []
        lateness.reserveCapacity(users)
        for (user, answer) in sent {
            if !answer.withinTTL { report.sentOutsideTTL += 1 }
            guard let flushes = received[user] else {
                report.missing += 1
                continue
            }
            if flushes.requestsByID.count > 1 { report.flushedMoreThanOnce += 1 }
            report.redeliveries += flushes.requestsByID.values.reduce(0) { $0 + $1 - 1 }
            if flushes.messages != expected { report.wrongBatches += 1 }
            lateness.append(flushes.firstArrival.timeIntervalSince(answer.flushAt) * 1000)
        }
        lateness.sort()
        report.latenessP50 = QueueBenchPlan.percentile(lateness, 0.50)
        report.latenessP99 = QueueBenchPlan.percentile(lateness, 0.99)
        report.latenessMax = lateness.last ?? 0
        return report
    }

    /// Serves the runtime's API on 127.0.0.1 and a free port while `body` runs; `body` gets its base URL.
    static func servingAPI<T: Sendable>(_ runtime: Runtime, _ body: @Sendable (String) async throws -> T) async throws -> T {
        try await LocalServer.serving(name: "API", logger: runtime.logger, { announce in
            APIServer.makeApplication(runtime, onServerRunning: announce)
        }, body)
    }
}

struct ChatBufferBenchReport: Sendable {
    var broker: String
    var database: String
    var users: Int
    var messages: Int
    var ttl: Int
    var clients: Int
    /// Messages per second at fixed times; 0 for closed-loop clients.
    var rate: Int
    var concurrency: Int
    var sendSeconds: Double
    var peakRSSMiB: Double
    /// Users whose buffer never arrived.
    var missing = 0
    /// Users whose messages arrived in more than one flush (more than one webhook-id).
    var flushedMoreThanOnce = 0
    /// Users whose first flush did not hold exactly their messages in order.
    var wrongBatches = 0
    /// Extra requests carrying a webhook-id already received (delivery retries; receivers drop them by id).
    var redeliveries = 0
    /// Users two of whose messages were a ttl or more apart (the client was too slow for the test to mean anything).
    var sentOutsideTTL = 0
    var latenessP50 = 0.0
    var latenessP99 = 0.0
    var latenessMax = 0.0

    var violations: Int { missing + flushedMoreThanOnce + wrongBatches }
    var messageRate: Double { Double(users * messages) / max(sendSeconds, 1e-9) }

    var text: String {
        """
        integrator chat buffer benchmark: broker \(broker), database \(database)
          users \(users) × \(messages) messages, ttl \(ttl) s, \(rate > 0 ? "fixed rate \(rate) messages/s" : "\(clients) API clients"), worker concurrency \(concurrency)
          API        \(BenchNumber.text(messageRate)) messages/s  (\(BenchNumber.text(sendSeconds, 2)) s to send all through POST /api/message)
          flushes    \(users - missing) users flushed; violations \(violations): \(missing) missing, \(flushedMoreThanOnce) flushed more than once, \(wrongBatches) not all messages in order
          redelivered \(redeliveries) requests with a webhook-id already received; \(sentOutsideTTL) users sent slower than their ttl
          lateness   p50 \(BenchNumber.text(latenessP50, 1)) ms, p99 \(BenchNumber.text(latenessP99, 1)) ms, max \(BenchNumber.text(latenessMax, 1)) ms  (arrival − the last message's flush_at)
          peak RSS   \(BenchNumber.text(peakRSSMiB, 1)) MiB  (the whole process: clients, API, beat, worker, receiver, database client)
        """
    }

    var json: JSONValue {
        [
            "system": "integrator", "benchmark": "chat-buffer", "broker": .string(broker), "database": .string(database),
            "users": .number(Double(users)), "messages": .number(Double(messages)), "ttl": .number(Double(ttl)),
            "clients": .number(Double(clients)), "rate": .number(Double(rate)), "concurrency": .number(Double(concurrency)),
            "send_seconds": BenchNumber.json(sendSeconds, 3), "message_rate": BenchNumber.json(messageRate),
            "missing": .number(Double(missing)), "flushed_more_than_once": .number(Double(flushedMoreThanOnce)),
            "wrong_batches": .number(Double(wrongBatches)), "redeliveries": .number(Double(redeliveries)),
            "sent_outside_ttl": .number(Double(sentOutsideTTL)), "lateness_p50_ms": BenchNumber.json(latenessP50),
            "lateness_p99_ms": BenchNumber.json(latenessP99), "lateness_max_ms": BenchNumber.json(latenessMax),
            "peak_rss_mib": BenchNumber.json(peakRSSMiB),
        ]
    }
}

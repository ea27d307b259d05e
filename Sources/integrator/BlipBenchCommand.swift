// `integrator bench blip`: pending notifications sent through a fast local fake BLiP, with a cold and a warm identity cache.
import ArgumentParser
import Foundation
import Hummingbird
import IntegratorCore
import Plugins
import Synchronization

struct BlipBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "blip",
        abstract: "Send pending BLiP notifications to a local fake BLiP and measure sends per second.",
        discussion: """
            Applies migrations, starts a fake BLiP on 127.0.0.1 that answers account lookups and accepts messages at once, \
            creates blip credentials and a blip-notifications integration for it, and stores --notifications pending \
            notifications to as many phones. The cold round runs the integration once (as integration.fetch does): each \
            notification needs an account lookup, a template send and its status write. The warm round stores as many \
            again to the same phones and runs again: the accounts come from the identity cache. Reports notifications \
            sent per second per round (from the run's start to its end) and the process's peak resident memory. Uses a \
            throwaway secret key when INTEGRATOR_SECRET_KEY is not set. Point it at a database of its own (--database-url).
            """)

    @Option(help: "Notifications per round.")
    var notifications = 10_000

    @Option(help: "Requests to BLiP in flight at once (the integration's concurrency).")
    var concurrency = 64

    @OptionGroup var common: BenchRunOptions

    @OptionGroup var options: GlobalOptions

    func validate() throws {
        guard (1...1_000_000).contains(notifications) else { throw ValidationError("--notifications must be from 1 to 1000000") }
        guard (1...256).contains(concurrency) else { throw ValidationError("--concurrency must be from 1 to 256") }
    }

    func run() async throws {
        try await reportingErrors {
            var settings = try options.settings(overriding: [:])
            try BenchCommand.useEphemeralKeyIfUnset(&settings)
            let plan = BlipBenchPlan(notifications: notifications, concurrency: concurrency)
            let outbound = OutboundHTTP.Options(allowedRanges: [IPAddressRange("127.0.0.0/8")!])
            let report = try await withRuntime(settings, migrate: true, outboundOptions: outbound) { runtime in
                try await BlipBenchFake.run { baseURL, received in try await plan.run(on: runtime, baseURL: baseURL, received: received) }
            }
            print(common.json ? report.json.encodedString() : report.text)
        }
    }
}

/// A fake BLiP as fast as it can be: every number has an account, every message is accepted; message ids are counted.
enum BlipBenchFake {
    final class Received: Sendable {
        private let ids = Mutex<Set<String>>([])
        private let lookupCount = Atomic<Int>(0)

        func message(_ id: String) { _ = ids.withLock { $0.insert(id) } }
        func lookup() { lookupCount.add(1, ordering: .relaxed) }
        var messages: Int { ids.withLock { $0.count } }
        var lookups: Int { lookupCount.load(ordering: .relaxed) }
    }

    static func run<T: Sendable>(_ body: @Sendable (_ baseURL: String, _ received: Received) async throws -> T) async throws -> T {
        let received = Received()
        let router = Router()
        router.post("/commands") { request, _ -> Response in
            let json = (try? JSONValue.parse(Data(try await request.body.collect(upTo: 1 << 16).readableBytesView))) ?? .null
            received.lookup()
            let phone = String((json["uri"]?.stringValue ?? "").split(separator: "/").last ?? "").dropFirst()
            let answer: JSONValue = [
                "id": json["id"] ?? .null, "method": "get", "status": "success",
                "resource": ["alternativeAccount": .string("\(phone)@wa.gw.msging.net")],
            ]
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: .init(string: answer.encodedString())))
        }
        router.post("/messages") { request, _ -> HTTPResponse.Status in
            let json = (try? JSONValue.parse(Data(try await request.body.collect(upTo: 1 << 16).readableBytesView))) ?? .null
            if let id = json["id"]?.stringValue { received.message(id) }
            return .accepted
        }
        return try await LocalServer.serving(router, name: "fake BLiP") { baseURL in try await body(baseURL, received) }
    }
}

struct BlipBenchPlan: Sendable {
    var notifications: Int
    var concurrency: Int

    func run(on runtime: Runtime, baseURL: String, received: BlipBenchFake.Received) async throws -> BlipBenchReport {
        let environment = runtime.environment
        let suffix = Identifier.make().suffix(8).lowercased()
        let credentials = try await environment.credentials.create([
            "name": .string("bench-blip-\(suffix)"), "type": "blip", "public": ["base_url": .string(baseURL)],
            "secret": ["key": .string(UUID().uuidString)],
        ])
        let integration = try await environment.integrations.create([
            "name": .string("bench-blip-\(suffix)"), "provider": "blip-notifications", "credentials": .string(credentials.id),
            "config": ["batch_size": .number(Double(notifications)), "concurrency": .number(Double(concurrency))],
        ])
        let service = BlipService(environment: environment)
        var rounds: [BlipBenchReport.Round] = []
        for name in ["cold", "warm"] {
            for start in stride(from: 0, to: notifications, by: BlipService.maxBulk) {
                let bodies: [JSONValue] = (start..<min(start + BlipService.maxBulk, notifications)).map { index in
                    [
                        "phone": .string("+55119\(String(format: "%08d", index))"), "template": "pedido_pronto", "namespace": "bench",
                        "parameters": ["Cliente", .string(String(index))], "integration": .string(integration.id),
                    ]
                }
                _ = try await service.create(contentsOf: bodies)
            }
            let messagesBefore = received.messages
            let lookupsBefore = received.lookups
            let clock = ContinuousClock()
            let started = clock.now
            _ = try await runtime.fetches.run(integrationID: integration.id, logger: environment.logger)
            let seconds = (clock.now - started).seconds
            let sent = received.messages - messagesBefore
            guard sent == notifications else {
                throw BenchFailure("the \(name) round sent \(sent) of \(notifications) notifications")
            }
            rounds.append(.init(name: name, seconds: seconds, sent: sent, lookups: received.lookups - lookupsBefore))
        }
        return BlipBenchReport(
            database: runtime.database.engine.rawValue, notifications: notifications, concurrency: concurrency, rounds: rounds,
            peakRSSMiB: QueueBenchPlan.peakResidentMiB())
    }
}

struct BlipBenchReport: Sendable {
    struct Round: Sendable {
        var name: String
        var seconds: Double
        var sent: Int
        var lookups: Int
        var rate: Double { Double(sent) / max(seconds, 1e-9) }
    }

    var database: String
    var notifications: Int
    var concurrency: Int
    var rounds: [Round]
    var peakRSSMiB: Double

    var text: String {
        let lines = rounds.map { round in
            let name = round.name.padding(toLength: 5, withPad: " ", startingAt: 0)
            return "  \(name)  \(BenchNumber.text(round.rate)) sent/s  (\(BenchNumber.text(round.seconds, 2)) s, \(round.lookups) account lookups)"
        }
        return """
            integrator BLiP benchmark: database \(database), \(notifications) notifications per round, concurrency \(concurrency)
            \(lines.joined(separator: "\n"))
              peak RSS  \(BenchNumber.text(peakRSSMiB, 1)) MiB  (the whole process: runs, fake BLiP, database client)
            """
    }

    var json: JSONValue {
        var object: [String: JSONValue] = [
            "system": "integrator", "benchmark": "blip", "database": .string(database), "notifications": .number(Double(notifications)),
            "concurrency": .number(Double(concurrency)), "peak_rss_mib": BenchNumber.json(peakRSSMiB),
        ]
        for round in rounds {
            object["\(round.name)_rate"] = BenchNumber.json(round.rate)
            object["\(round.name)_seconds"] = BenchNumber.json(round.seconds, 3)
            object["\(round.name)_lookups"] = .number(Double(round.lookups))
        }
        return .object(object)
    }
}

// A fake webhook receiver on 127.0.0.1: records every request exactly as it arrived (headers, raw body bytes, arrival
// time) and answers from a script the test can change while deliveries are under way.
import Foundation
import HTTPTypes
import Hummingbird
import IntegratorCore
import NIOCore
import Synchronization

final class WebhookReceiver: Sendable {
    /// One request as it arrived.
    struct Hit: Sendable {
        var path: String
        /// Every header field in arrival order, names lowercased; a name sent twice appears twice.
        var fields: [(name: String, value: String)]
        var body: [UInt8]
        var receivedAt: Date

        /// The value of header `name` (any case); repeated fields joined with ", ".
        func header(_ name: String) -> String? {
            let values = fields.filter { $0.name == name.lowercased() }.map(\.value)
            return values.isEmpty ? nil : values.joined(separator: ", ")
        }

        /// How many fields named `name` arrived.
        func count(of name: String) -> Int { fields.filter { $0.name == name.lowercased() }.count }

        var eventID: String? { header("X-Event-ID") ?? header("webhook-id") }
        var json: JSONValue { (try? JSONValue.parse(body)) ?? .null }
    }

    /// What the receiver answers to one request.
    struct Reply: Sendable {
        var status: Int
        var headers: [String: String] = [:]
        var body: String = #"{"received": true}"#
        /// How long the receiver waits before answering (to outlast a sender's timeout).
        var delay: Duration = .zero

        static let ok = Reply(status: 200)
        static func status(_ status: Int, headers: [String: String] = [:]) -> Reply { Reply(status: status, headers: headers) }
    }

    /// Chooses the reply to a request from the request and its attempt number (1 for the first request carrying its
    /// event id, 2 for the next, …).
    struct Script: Sendable {
        let reply: @Sendable (_ hit: Hit, _ attempt: Int) -> Reply

        static let ok = Script { _, _ in .ok }
        static func always(_ reply: Reply) -> Script { Script { _, _ in reply } }
        /// The first `times` requests of each event get `failure`, the later ones `then`.
        static func failing(_ times: Int, with failure: Reply, then success: Reply = .ok) -> Script {
            Script { _, attempt in attempt <= times ? failure : success }
        }
    }

    private struct State {
        var hits: [Hit] = []
        var scripts: [String: Script] = [:]
        var fallback = Script.ok
        var attempts: [String: Int] = [:]
    }

    private let state = Mutex(State())

    init() {}

    /// Answers requests to `path` (all paths without a script of their own when nil) from `script` from now on.
    func script(_ script: Script, for path: String? = nil) {
        state.withLock { state in
            if let path { state.scripts[path] = script } else { state.fallback = script }
        }
    }

    /// Every request so far, oldest first.
    var hits: [Hit] { state.withLock { $0.hits } }

    func hits(path: String) -> [Hit] { hits.filter { $0.path == path } }
    func hits(event eventID: String) -> [Hit] { hits.filter { $0.eventID == eventID } }
    var distinctEventIDs: Set<String> { Set(hits.compactMap(\.eventID)) }

    /// Waits (polling, up to `seconds`) until at least `count` requests carried `eventID`.
    func waitForHits(event eventID: String, count: Int = 1, upTo seconds: Double = 20) async throws -> Bool {
        try await eventually(seconds) { self.hits(event: eventID).count >= count }
    }

    /// Waits until at least `count` requests arrived at `path`.
    func waitForHits(path: String, count: Int = 1, upTo seconds: Double = 20) async throws -> Bool {
        try await eventually(seconds) { self.hits(path: path).count >= count }
    }

    /// Runs the receiver while `body` runs; `body` gets its base URL (`http://127.0.0.1:PORT`), under which every path
    /// is answered.
    func run<T: Sendable>(_ body: @Sendable (_ baseURL: String) async throws -> T) async throws -> T {
        let router = Router()
        router.on("**", method: .post) { request, _ in try await self.receive(request) }
        router.on("/", method: .post) { request, _ in try await self.receive(request) }
        return try await LocalHTTPServer.run(router) { port in try await body("http://127.0.0.1:\(port)") }
    }

    private func receive(_ request: Request) async throws -> Response {
        var request = request
        let body = try await request.collectBody(upTo: 4 << 20)
        let hit = Hit(
            path: request.uri.path, fields: request.headers.map { (name: $0.name.canonicalName.lowercased(), value: $0.value) },
            body: Array(body.readableBytesView), receivedAt: Date())
        let reply = state.withLock { state -> Reply in
            state.hits.append(hit)
            let key = hit.eventID ?? ""
            state.attempts[key, default: 0] += 1
            let script = state.scripts[hit.path] ?? state.fallback
            return script.reply(hit, state.attempts[key] ?? 1)
        }
        if reply.delay > .zero { try await Task.sleep(for: reply.delay) }
        var fields: HTTPFields = [.contentType: "application/json"]
        for (name, value) in reply.headers { fields[HTTPField.Name(name)!] = value }
        return Response(status: .init(code: reply.status), headers: fields, body: .init(byteBuffer: ByteBuffer(string: reply.body)))
    }
}

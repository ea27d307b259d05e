// A fake of BLiP's HTTP API on 127.0.0.1: `/commands` (the WhatsApp account lookup and the bot's own account) and
// `/messages`, with the `Authorization: Key …` check, unknown numbers, and scripted failures (429 with Retry-After, 5xx).
import Foundation
import HTTPTypes
import Hummingbird
import IntegratorCore
import NIOCore
import Synchronization

final class FakeBlip: Sendable {
    /// One request as the fake saw it.
    struct Seen: Sendable {
        var path: String
        var authorization: String?
        var body: JSONValue
    }

    private struct Scripted {
        var path: String
        var status: Int
        var headers: [String: String]
        var times: Int
    }

    private struct State {
        var requests: [Seen] = []
        var unknown: Set<String> = []
        var scripted: [Scripted] = []
    }

    let key: String
    private let state = Mutex(State())

    init(key: String = "ZmFrZS1ibGlwLWtleS0wMTIzNDU2Nzg5") {
        self.key = key
    }

    /// Numbers (E.164) WhatsApp does not know; every other number has an account.
    func unknown(_ phones: String...) {
        state.withLock { $0.unknown.formUnion(phones) }
    }

    /// Answers the next `times` requests to `path` (`/commands` or `/messages`) with `status` and `headers`.
    func fail(_ path: String, status: Int, headers: [String: String] = [:], times: Int = 1) {
        state.withLock { $0.scripted.append(Scripted(path: path, status: status, headers: headers, times: times)) }
    }

    var requests: [Seen] { state.withLock { $0.requests } }
    var lookups: [Seen] { requests.filter { $0.path == "/commands" && $0.body["to"] == "postmaster@wa.gw.msging.net" } }
    var messages: [Seen] { requests.filter { $0.path == "/messages" } }

    /// Message ids BLiP received, each once however often it was posted: BLiP takes a repeated id as the same message.
    var messageIDs: Set<String> { Set(messages.compactMap { $0.body["id"]?.stringValue }) }

    /// Distinct message ids received per recipient account.
    func messageIDs(to account: String) -> Set<String> {
        Set(messages.filter { $0.body["to"]?.stringValue == account }.compactMap { $0.body["id"]?.stringValue })
    }

    static func account(of phone: String) -> String { "\(phone.dropFirst())@wa.gw.msging.net" }

    /// Runs the fake while `body` runs; `body` gets the base URL.
    func run<T: Sendable>(_ body: @Sendable (_ baseURL: String) async throws -> T) async throws -> T {
        let router = Router()
        for path in ["/commands", "/messages"] {
            router.post(RouterPath(path)) { request, _ in
                let buffer = try await request.body.collect(upTo: 1 << 20)
                let json = (try? JSONValue.parse(Data(buffer.readableBytesView))) ?? .null
                return self.answer(path: path, authorization: request.headers[.authorization], body: json)
            }
        }
        return try await LocalHTTPServer.run(router) { port in try await body("http://127.0.0.1:\(port)") }
    }

    private func answer(path: String, authorization: String?, body: JSONValue) -> Response {
        state.withLock { state in
            state.requests.append(Seen(path: path, authorization: authorization, body: body))
            if let index = state.scripted.firstIndex(where: { $0.path == path && $0.times > 0 }) {
                state.scripted[index].times -= 1
                let scripted = state.scripted[index]
                return Self.response(scripted.status, "", headers: scripted.headers)
            }
            guard authorization == "Key \(key)" else { return Self.response(401, "") }
            if path == "/messages" { return Self.response(202, "") }
            let id = body["id"] ?? .null
            if body["uri"] == "/account" {
                return Self.json(["id": id, "method": "get", "status": "success", "resource": ["fullName": "Loja Teste", "identity": "loja@msging.net"]])
            }
            let uri = body["uri"]?.stringValue ?? ""
            let prefix = "lime://wa.gw.msging.net/accounts/"
            guard uri.hasPrefix(prefix) else {
                return Self.json(["id": id, "method": "get", "status": "failure", "reason": ["code": 1, "description": "Unknown command"]])
            }
            let phone = String(uri.dropFirst(prefix.count))
            if state.unknown.contains(phone) {
                return Self.json(["id": id, "method": "get", "status": "failure", "reason": ["code": 67, "description": "Resource not found"]])
            }
            return Self.json([
                "id": id, "method": "get", "status": "success", "type": "application/vnd.lime.account+json",
                "resource": [
                    "alternativeAccount": .string(Self.account(of: phone)), "identity": .string(Self.account(of: phone)),
                    "phoneNumber": .string(phone), "source": "WhatsApp",
                ],
            ])
        }
    }

    private static func json(_ value: JSONValue) -> Response {
        response(200, value.encodedString(), headers: ["Content-Type": "application/json"])
    }

    private static func response(_ status: Int, _ body: String, headers: [String: String] = [:]) -> Response {
        var fields = HTTPFields()
        for (name, value) in headers { fields[HTTPField.Name(name)!] = value }
        return Response(status: .init(code: status), headers: fields, body: .init(byteBuffer: ByteBuffer(string: body)))
    }
}

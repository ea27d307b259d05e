// A fake of Sympla's public API v3 on 127.0.0.1: events, orders and participants, paged and sorted like the real one,
// with the `s_token` check, Sympla's error body, and scripted failures (429 with Retry-After, 5xx, …).
import Foundation
import HTTPTypes
import Hummingbird
import IntegratorCore
import NIOCore
import Synchronization

/// The fake API. Seed it, then `run` it and point `sympla` credentials at the base URL it gives.
final class FakeSympla: Sendable {
    /// One request as the fake saw it.
    struct SeenRequest: Sendable {
        var path: String
        var query: [String: String]
        /// The `s_token` header, if any.
        var token: String?
        var page: Int { query["page"].flatMap(Int.init) ?? 1 }
    }

    /// A scripted answer for the next `times` requests to `path` (and `page`, when set).
    private struct Failure {
        var path: String
        var page: Int?
        var status: Int
        var headers: [String: String]
        var body: String
        var times: Int
    }

    private struct State {
        var events: [[String: JSONValue]] = []
        var orders: [Int: [JSONValue]] = [:]
        var participants: [Int: [JSONValue]] = [:]
        var requests: [SeenRequest] = []
        var failures: [Failure] = []
    }

    /// The key the fake accepts.
    let token: String
    private let state = Mutex(State())

    init(token: String = "fake-sympla-key-0123456789abcdef") {
        self.token = token
    }

    /// Adds `events` published events (ids 1001, 1002, …), each with `orders` orders and `participants` participants.
    func seed(events: Int, orders: Int = 0, participants: Int = 0) {
        state.withLock { state in
            for index in 1...events {
                let id = 1000 + state.events.count + 1
                state.events.append([
                    "id": .number(Double(id)), "name": .string("Event \(index)"),
                    "start_date": .string(String(format: "2024-%02d-%02d 19:00:00", (index - 1) % 12 + 1, (index - 1) % 28 + 1)),
                    "end_date": .string(String(format: "2024-%02d-%02d 23:00:00", (index - 1) % 12 + 1, (index - 1) % 28 + 1)),
                    "published": 1, "cancelled": 0, "private_event": 0, "reference_id": .number(Double(id)),
                    "url": .string("https://www.sympla.com.br/event__\(id)"),
                ])
                state.orders[id] = (0..<orders).map { number in
                    [
                        "id": .string("O\(id)-\(number)"), "event_id": .number(Double(id)), "order_status": "A",
                        "order_date": "2024-01-10 10:00:00", "order_total_sale_price": 50, "buyer_first_name": "Ana",
                        "buyer_last_name": "Lima", "buyer_email": .string("buyer\(number)@example.com"),
                    ]
                }
                state.participants[id] = (0..<participants).map { number in
                    [
                        "id": .number(Double(id * 1000 + number)), "event_id": .number(Double(id)),
                        "order_id": .string("O\(id)-\(number)"), "order_status": "A", "first_name": "Ana", "last_name": "Lima",
                        "email": .string("p\(number)@example.com"), "ticket_number": .string("T\(id)-\(number)"),
                        "checkin": ["id": .number(Double(number)), "check_in": false],
                    ]
                }
            }
        }
    }

    /// Changes event `id` (a field of the raw object).
    func updateEvent(_ id: Int, _ field: String, to value: JSONValue) {
        state.withLock { state in
            guard let index = state.events.firstIndex(where: { $0["id"]?.intValue == id }) else { return }
            state.events[index][field] = value
        }
    }

    /// Answers the next `times` requests to `path` (such as `/events` or `/events/1001/orders`), or only those for
    /// `page`, with `status`, `headers` and `body` instead of data.
    func fail(
        _ path: String, page: Int? = nil, status: Int, headers: [String: String] = [:],
        body: String = #"{"error": true, "code": 500, "message": "scripted failure"}"#, times: Int = 1
    ) {
        state.withLock { $0.failures.append(Failure(path: path, page: page, status: status, headers: headers, body: body, times: times)) }
    }

    /// Every request so far, oldest first. Paths are relative to the base URL.
    var requests: [SeenRequest] { state.withLock { $0.requests } }

    /// Runs the fake while `body` runs; `body` gets the base URL (`http://127.0.0.1:PORT/public/v3`).
    func run<T: Sendable>(_ body: @Sendable (_ baseURL: String) async throws -> T) async throws -> T {
        let router = Router()
        router.get("public/v3/events") { request, _ in
            self.answer(request, path: "/events") { state in
                let published = request.uri.queryParameters["published"].map { $0 != "false" } ?? true
                let from = request.uri.queryParameters["from"].map(String.init)
                return state.events.filter { event in
                    (!published || event["published"] == 1) && (from.map { (event["start_date"]?.stringValue ?? "") >= $0 } ?? true)
                }.map(JSONValue.object)
            }
        }
        for listing in ["orders", "participants"] {
            router.get("public/v3/events/{id}/\(listing)") { request, context in
                let id = context.parameters.get("id", as: Int.self) ?? 0
                return self.answer(request, path: "/events/\(id)/\(listing)") { state in
                    listing == "orders" ? state.orders[id] : state.participants[id]
                }
            }
        }
        return try await LocalHTTPServer.run(router) { port in try await body("http://127.0.0.1:\(port)/public/v3") }
    }

    /// Records the request, then answers with a scripted failure, 401, 400, 404 or one page of `items`.
    private func answer(_ request: Request, path: String, items: (State) -> [JSONValue]?) -> Response {
        var query: [String: String] = [:]
        for (name, value) in request.uri.queryParameters { query[String(name)] = String(value) }
        let seen = SeenRequest(path: path, query: query, token: request.headers[HTTPField.Name("s_token")!])
        return state.withLock { state in
            state.requests.append(seen)
            if let index = state.failures.firstIndex(where: { $0.path == path && ($0.page == nil || $0.page == seen.page) && $0.times > 0 }) {
                state.failures[index].times -= 1
                let failure = state.failures[index]
                return Self.response(failure.status, failure.body, headers: failure.headers)
            }
            guard seen.token == token else {
                return Self.response(401, #"{"error": true, "code": 401, "message": "Token inválido"}"#)
            }
            let page = seen.page
            let pageSize = query["page_size"].flatMap(Int.init) ?? 100
            guard page >= 1, (1...200).contains(pageSize) else {
                return Self.response(400, #"{"error": true, "code": 400, "message": "page ou page_size inválido"}"#)
            }
            guard var all = items(state) else {
                return Self.response(404, #"{"error": true, "code": 404, "message": "Evento não encontrado"}"#)
            }
            all.sort { Self.sortKey($0) < Self.sortKey($1) }
            if query["sort"]?.uppercased() == "DESC" { all.reverse() }
            let start = min(all.count, (page - 1) * pageSize)
            let slice = Array(all[start..<min(all.count, start + pageSize)])
            let pages = max(1, (all.count + pageSize - 1) / pageSize)
            let body: JSONValue = [
                "data": .array(slice),
                "pagination": [
                    "has_next": .bool(page < pages), "has_prev": .bool(page > 1), "quantity": .number(Double(all.count)),
                    "offset": .number(Double(start)), "page": .number(Double(page)), "page_size": .number(Double(pageSize)),
                    "total_page": .number(Double(pages)),
                ],
                "sort": ["field_sort": "id", "sort": .string(query["sort"]?.uppercased() ?? "ASC")],
            ]
            return Self.response(200, body.encodedString())
        }
    }

    /// Numbers before strings, each in its own order (event and participant ids are numbers, order ids text).
    private static func sortKey(_ item: JSONValue) -> String {
        if let number = item["id"]?.intValue { return String(format: "0%020d", number) }
        return "1" + (item["id"]?.stringValue ?? "")
    }

    private static func response(_ status: Int, _ body: String, headers: [String: String] = [:]) -> Response {
        var fields: HTTPFields = [.contentType: "application/json"]
        for (name, value) in headers { fields[HTTPField.Name(name)!] = value }
        return Response(status: .init(code: status), headers: fields, body: .init(byteBuffer: ByteBuffer(string: body)))
    }
}

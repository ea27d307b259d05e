// The Sympla plugin without a network: config checks, record shapes, error mapping, request signing.
import Foundation
import IntegratorCore
import Testing

@testable import Plugins

@Suite("Sympla plugin")
struct SymplaTests {
    let provider = SymplaProvider()

    @Test("config defaults: published events only, the events stream, 100 per page")
    func configDefaults() throws {
        let config = try provider.configFields.normalize([:], at: "config")
        #expect(config["published"] == true)
        #expect(config["streams"] == ["events"])
        #expect(config["page_size"] == 100)
        #expect(config["from_date"] == nil)
    }

    @Test("bad config names every bad field", arguments: [
        (["from_date": "2023-01-01"], ["config.from_date"]),
        (["from_date": "2023-02-30 10:00:00"], ["config.from_date"]),
        (["from_date": "2023-01-01T00:00:00"], ["config.from_date"]),
        (["streams": ["events", "tickets"]], ["config.streams[1]"]),
        (["streams": []], ["config.streams"]),
        (["page_size": 201, "published": "yes"], ["config.page_size", "config.published"]),
        (["from_date": "2023-01-01 00:00:00", "streams": ["orders", "participants"], "page_size": 200], []),
    ] as [([String: JSONValue], [String])])
    func configIssues(config: [String: JSONValue], fields: [String]) {
        let issues = provider.configFields.issues(in: .object(config), at: "config")
        #expect(Set(issues.map(\.field)) == Set(fields))
    }

    @Test("the from_date issue says which format is expected")
    func fromDateMessage() {
        let issues = provider.configFields.issues(in: ["from_date": "01/02/2023"], at: "config")
        #expect(issues.first?.message.contains("YYYY-MM-DD HH:mm:ss") == true)
    }

    @Test("credentials sign with s_token and default the base URL")
    func credentialsSign() throws {
        let type = SymplaCredentials()
        let credentials = CredentialValues(typeID: "sympla", publicValues: [:], secretValues: ["api_key": Secret("k-123")])
        var request = OutboundRequest.get("/events")
        try type.authenticate(&request, with: credentials)
        #expect(request.header("s_token") == "k-123")
        #expect(type.baseURL(for: credentials) == "https://api.sympla.com.br/public/v3")
        let custom = CredentialValues(typeID: "sympla", publicValues: ["base_url": "http://127.0.0.1:9/v3"], secretValues: [:])
        #expect(type.baseURL(for: custom) == "http://127.0.0.1:9/v3")
        #expect(throws: PluginError.self) { try type.authenticate(&request, with: custom) }
    }

    @Test("credentials fields: base_url must be a URL, api_key is a secret of at most 64 characters")
    func credentialsFields() {
        let type = SymplaCredentials()
        #expect(type.publicFields.issues(in: ["base_url": "ftp://x"], at: "public").map(\.field) == ["public.base_url"])
        #expect(type.secretFields.issues(in: ["api_key": .string(String(repeating: "a", count: 65))], at: "secret").map(\.field) == ["secret.api_key"])
        #expect(type.secretFields.issues(in: [:], at: "secret").map(\.field) == ["secret.api_key"])
        #expect(type.secretFields.secretNames == ["api_key"])
    }

    @Test("401 and 403 become permanent errors that quote Sympla but never the key", arguments: [401, 403])
    func authErrors(status: Int) {
        let body = #"{"error": true, "code": 1001, "message": "Token s3cr3t-key inválido"}"#
        let error = SymplaAPI.error(
            for: OutboundResponse(status: status, body: Data(body.utf8)), path: "/events", apiKey: Secret("s3cr3t-key"))
        #expect(error.isPermanent)
        #expect(error.message.contains("HTTP \(status)"))
        #expect(error.message.contains("1001"))
        #expect(error.message.contains("inválido"))
        #expect(!error.message.contains("s3cr3t-key"))
    }

    @Test("other statuses: 404 and 400 are permanent, 429 and 5xx are retried")
    func otherErrors() {
        func error(_ status: Int, _ body: String = "") -> PluginError {
            SymplaAPI.error(for: OutboundResponse(status: status, body: Data(body.utf8)), path: "/events/9/orders", apiKey: nil)
        }
        #expect(error(404).isPermanent)
        #expect(error(404).message.contains("/events/9/orders"))
        #expect(error(400, #"{"error": true, "code": "E2", "message": "page_size inválido"}"#).message.contains("E2 page_size inválido"))
        #expect(error(400).isPermanent)
        #expect(!error(429).isPermanent)
        #expect(!error(503, "<html>oops</html>").isPermanent)
        #expect(error(503, "<html>oops</html>").message == "Sympla failed on /events/9/orders (HTTP 503)")
    }

    @Test("events normalize to the documented shape")
    func normalizeEvent() throws {
        let raw: JSONValue = [
            "id": 1234, "start_date": "2024-03-01 19:00:00", "end_date": "2024-03-01 23:00:00", "name": "Show",
            "detail": "<p>x</p>", "private_event": 0, "published": 1, "cancelled": 0, "image": "https://img/x.png",
            "url": "https://www.sympla.com.br/show__1234", "reference_id": 99,
            "address": ["name": "Teatro", "city": "Recife", "state": "PE"], "host": ["name": "Org", "description": "d"],
            "category_prim": ["name": "Música"], "category_sec": ["name": "Rock"],
        ]
        let record = try provider.normalize(RawRecord(stream: "events", externalID: "1234", data: raw))
        #expect(record.externalID == "1234")
        #expect(
            record.data == [
                "id": 1234, "reference_id": 99, "name": "Show", "detail": "<p>x</p>", "start_date": "2024-03-01 19:00:00",
                "end_date": "2024-03-01 23:00:00", "url": "https://www.sympla.com.br/show__1234", "image": "https://img/x.png",
                "published": true, "cancelled": false, "private": false,
                "address": ["name": "Teatro", "city": "Recife", "state": "PE"], "host": ["name": "Org", "description": "d"],
                "categories": ["Música", "Rock"],
            ])
    }

    @Test("orders normalize to the documented shape")
    func normalizeOrder() throws {
        let raw: JSONValue = [
            "id": "Q0ABC12", "event_id": 1234, "order_date": "2024-02-01 10:00:00", "order_status": "A",
            "updated_date": "2024-02-01 10:05:00", "approved_date": "2024-02-01 10:05:00", "transaction_type": "CREDIT_CARD",
            "order_total_sale_price": 120.5, "order_total_net_value": 110, "buyer_first_name": "Ana",
            "buyer_last_name": "Lima", "buyer_email": "ana@example.com",
        ]
        let record = try provider.normalize(RawRecord(stream: "orders", externalID: "Q0ABC12", data: raw))
        #expect(
            record.data == [
                "id": "Q0ABC12", "event_id": 1234, "status": "A", "order_date": "2024-02-01 10:00:00",
                "updated_date": "2024-02-01 10:05:00", "approved_date": "2024-02-01 10:05:00",
                "transaction_type": "CREDIT_CARD", "total": 120.5, "net_value": 110,
                "buyer": ["first_name": "Ana", "last_name": "Lima", "email": "ana@example.com"],
            ])
    }

    @Test("participants normalize, with check-in as an object or a list")
    func normalizeParticipant() throws {
        let raw: JSONValue = [
            "id": 77, "event_id": 1234, "order_id": "Q0ABC12", "order_status": "A", "first_name": "Ana", "last_name": "Lima",
            "email": "ana@example.com", "ticket_number": "ABCD-EF-1234", "ticket_num_qr_code": "ABCDEF1234",
            "ticket_name": "Inteira", "ticket_sale_price": 60,
            "checkin": ["id": 5, "check_in": true, "check_in_date": "2024-03-01 19:10:00"],
        ]
        let record = try provider.normalize(RawRecord(stream: "participants", externalID: "77", data: raw))
        #expect(
            record.data == [
                "id": 77, "event_id": 1234, "order_id": "Q0ABC12", "order_status": "A", "first_name": "Ana", "last_name": "Lima",
                "email": "ana@example.com",
                "ticket": ["number": "ABCD-EF-1234", "qr_code": "ABCDEF1234", "name": "Inteira", "sale_price": 60],
                "checked_in": true, "checked_in_at": "2024-03-01 19:10:00",
            ])
        var listed = raw
        if case .object(var object) = listed {
            object["checkin"] = [["id": 5, "check_in": false], ["id": 6, "check_in": 1, "check_in_date": "2024-03-01 20:00:00"]]
            listed = .object(object)
        }
        let second = try provider.normalize(RawRecord(stream: "participants", externalID: "77", data: listed))
        #expect(second.data["checked_in"] == true)
        #expect(second.data["checked_in_at"] == "2024-03-01 20:00:00")
    }

    @Test("per-event cursors resume after the last finished event, or inside the one in progress")
    func perEventCursor() {
        let filter = SymplaEventFilter(from: nil, published: true)
        let fresh = PerEventCursor(nil, filter: filter)
        #expect(fresh == PerEventCursor())
        #expect(fresh.firstPage(of: 5) == 1)
        let inside = PerEventCursor(eventsPage: 2, eventID: 7, nextPage: 3)
        #expect(inside.firstPage(of: 6) == nil)
        #expect(inside.firstPage(of: 7) == 3)
        #expect(inside.firstPage(of: 8) == 1)
        let finished = PerEventCursor(eventsPage: 2, eventID: 7)
        #expect(finished.firstPage(of: 7) == nil)
        #expect(PerEventCursor(inside.json(filter: filter), filter: filter) == inside)
        let otherFilter = SymplaEventFilter(from: "2024-01-01 00:00:00", published: true)
        #expect(PerEventCursor(inside.json(filter: filter), filter: otherFilter) == PerEventCursor())
    }
}

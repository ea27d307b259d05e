// The BLiP plugin without a network: Brazilian phone normalisation, request shapes, error mapping, config rules.
import Foundation
import IntegratorCore
import Testing

@testable import Plugins

@Suite("BLiP plugin")
struct BlipUnitTests {
    @Test(
        "phone numbers are normalised to E.164",
        arguments: [
            // Mobiles with the ninth digit, written every usual way.
            ("+55 11 98765-4321", "+5511987654321"),
            ("+5511987654321", "+5511987654321"),
            ("5511987654321", "+5511987654321"),
            ("(11) 98765-4321", "+5511987654321"),
            ("11 9 8765 4321", "+5511987654321"),
            ("11.98765.4321", "+5511987654321"),
            ("0055 11 98765 4321", "+5511987654321"),
            // Trunk prefix, and trunk prefix with a carrier code (15, 21, 41).
            ("011 98765-4321", "+5511987654321"),
            ("0 15 11 98765-4321", "+5511987654321"),
            ("(0xx21) 98765-4321".replacingOccurrences(of: "xx", with: "21"), "+5521987654321"),
            ("041 41 9876-5432", "+5541998765432"),
            // Mobiles without the ninth digit get it.
            ("(21) 8765-4321", "+5521987654321"),
            ("+55 31 7654-3210", "+5531976543210"),
            ("556187654321", "+5561987654321"),
            // Landlines stay eight digits.
            ("(11) 3456-7890", "+551134567890"),
            ("+55 51 2345 6789", "+555123456789"),
            ("05521 4567 8901", "+552145678901"),
            // 55 the area code (Rio Grande do Sul), not the country.
            ("(55) 99876-5432", "+5555998765432"),
            ("55 3222-1234", "+555532221234"),
        ])
    func normalises(input: String, expected: String) {
        #expect(BlipPhone.normalize(input) == .success(expected))
    }

    @Test(
        "numbers that cannot be Brazilian phones are refused with the reason",
        arguments: [
            ("", BlipPhone.Problem.empty),
            ("  ", .empty),
            ("+1 415 555 0100", .notBrazilian),
            ("+351 912 345 678", .notBrazilian),
            ("11 98765-432a", .unreadable),
            ("11+987654321", .unreadable),
            ("(20) 98765-4321", .unknownAreaCode(20)),
            ("(10) 3456-7890", .unknownAreaCode(10)),
            ("+55 23 98765 4321", .unknownAreaCode(23)),
            ("(29) 8765-4321", .unknownAreaCode(29)),
            ("98765-4321", .wrongLength(digits: 9)),
            ("+55 11 98765 43210", .wrongLength(digits: 12)),
            ("(11) 1234-5678", .notSubscriberNumber),
            ("(11) 0234-5678", .notSubscriberNumber),
            ("(11) 81234-5678", .notSubscriberNumber),
        ])
    func refuses(input: String, problem: BlipPhone.Problem) {
        #expect(BlipPhone.normalize(input) == .failure(problem))
    }

    @Test("every one of the 67 area codes is accepted and no other two-digit code is")
    func areaCodes() {
        #expect(BlipPhone.areaCodes.count == 67)
        for code in 10...99 {
            let accepted = (try? BlipPhone.normalize("(\(code)) 3456-7890").get()) != nil
            #expect(accepted == BlipPhone.areaCodes.contains(code), "DDD \(code)")
        }
    }

    @Test("a problem's text never repeats the number")
    func problemsDoNotEchoTheNumber() {
        for input in ["+1 415 555 0100", "(20) 98765-4321", "98765-4321", "(11) 1234-5678", "11 98765-432a"] {
            guard case .failure(let problem) = BlipPhone.normalize(input) else {
                Issue.record("\(input) was accepted")
                continue
            }
            #expect(!problem.description.contains("98765"))
            #expect(!problem.description.contains("415"))
            #expect(!problem.description.contains("1234"))
        }
    }

    @Test("credentials sign with `Authorization: Key …` and default to BLiP's endpoint")
    func credentialsSign() throws {
        let type = BlipCredentials()
        let credentials = CredentialValues(typeID: "blip", publicValues: [:], secretValues: ["key": Secret("a2V5LWZvci10ZXN0cw==")])
        var request = OutboundRequest(method: "POST", "/messages")
        try type.authenticate(&request, with: credentials)
        #expect(request.header("Authorization") == "Key a2V5LWZvci10ZXN0cw==")
        #expect(type.baseURL(for: credentials) == "https://http.msging.net")
        #expect(type.secretFields.issues(in: ["key": "k", "status_secret": "short"], at: "secret").map(\.field) == ["secret.status_secret"])
    }

    @Test("the template message has BLiP's shape")
    func messageShape() {
        let body = BlipAPI.messageBody(
            messageID: "m-1", to: "5511987654321@wa.gw.msging.net",
            template: BlipAPI.Template(namespace: "ns", name: "pedido_pronto", language: "pt_BR", parameters: ["Ana", "42"]))
        #expect(body["id"] == "m-1")
        #expect(body["to"] == "5511987654321@wa.gw.msging.net")
        #expect(body["type"] == "application/json")
        #expect(body["content"]?["type"] == "template")
        let template = body["content"]?["template"]
        #expect(template?["namespace"] == "ns")
        #expect(template?["name"] == "pedido_pronto")
        #expect(template?["language"] == ["code": "pt_BR", "policy": "deterministic"])
        #expect(template?["components"] == [["type": "body", "parameters": [["type": "text", "text": "Ana"], ["type": "text", "text": "42"]]]])
    }

    @Test("HTTP answers are sorted into permanent and passing failures, the key never quoted")
    func failures() {
        let refused = BlipAPI.failure(OutboundResponse(status: 401), what: "the message")
        #expect(refused.permanent && refused.keyRefused)
        let limited = BlipAPI.failure(OutboundResponse(status: 429, headers: [("Retry-After", "12")]), what: "the message")
        #expect(!limited.permanent && limited.retryAfter == 12)
        #expect(!BlipAPI.failure(OutboundResponse(status: 503), what: "the message").permanent)
        let rejected = BlipAPI.failure(
            OutboundResponse(status: 400, body: Data(#"{"reason": {"code": 67, "description": "Template not found"}}"#.utf8)), what: "the message")
        #expect(rejected.permanent)
        #expect(rejected.message == "BLiP rejected the message (HTTP 400) (67 Template not found)")
    }

    @Test("backoff doubles from 30 s to an hour; Retry-After wins")
    func backoff() {
        let settings = BlipSendSettings()
        #expect(settings.delay(afterAttempt: 1, retryAfter: nil) == 30)
        #expect(settings.delay(afterAttempt: 3, retryAfter: nil) == 120)
        #expect(settings.delay(afterAttempt: 20, retryAfter: nil) == 3600)
        #expect(settings.delay(afterAttempt: 1, retryAfter: 90) == 90)
    }

    @Test("the table source needs its mapping, named by field")
    func tableConfig() throws {
        let provider = BlipNotificationsProvider()
        let config = try provider.configFields.normalize(["source": "table", "table": "x;drop", "id_column": "1id"], at: "config")
        let fields = provider.validate(config: config).map(\.field)
        #expect(
            fields == [
                "config.database_credentials", "config.phone_column", "config.status_column", "config.template", "config.namespace",
                "config.table", "config.id_column",
            ])
        #expect(provider.validate(config: try provider.configFields.normalize([:], at: "config")).isEmpty)
    }

    @Test("status secrets compare equal only when equal")
    func secretComparison() {
        #expect(BlipService.constantTimeEquals("abcdefghijklmnop", "abcdefghijklmnop"))
        #expect(!BlipService.constantTimeEquals("abcdefghijklmnop", "abcdefghijklmnoq"))
        #expect(!BlipService.constantTimeEquals("abcdefghijklmnop", "abcdefghijklmno"))
        #expect(!BlipService.constantTimeEquals("", "a"))
    }
}

// BLiP's HTTP API as the plugin uses it: the WhatsApp account lookup (a command), template messages, and the bot's
// own account for the connection test. Every answer is sorted into "done", "failed for good" or "try again later".
import Foundation
import IntegratorCore

/// Calls BLiP through an ``OutboundClient`` signed by ``BlipCredentials`` (base URL and `Authorization: Key …`).
struct BlipAPI: Sendable {
    static let whatsAppGateway = "postmaster@wa.gw.msging.net"

    var http: OutboundClient

    /// Why a call did not succeed. Messages quote BLiP's reason, never the key or the request.
    struct Failure: Error, Sendable, CustomStringConvertible {
        var message: String
        /// Retrying cannot help (an unknown number, a rejected key, a refused template).
        var permanent: Bool
        /// The key itself was refused: every other call with it will fail the same way.
        var keyRefused = false
        /// Seconds BLiP asked to wait (`Retry-After`).
        var retryAfter: Double?

        var description: String { message }
    }

    /// The template message to send.
    struct Template: Sendable, Equatable {
        var namespace: String
        var name: String
        var language: String
        var parameters: [String]
    }

    /// `get lime://wa.gw.msging.net/accounts/{+55…}`: the customer's WhatsApp account (`alternativeAccount`), or
    /// `nil` when WhatsApp does not know the number (BLiP answers 200 with `"status": "failure"` then).
    func whatsAppAccount(for phone: String) async throws -> Result<String, Failure> {
        let body: JSONValue = [
            "id": .string(UUID().uuidString.lowercased()), "to": .string(Self.whatsAppGateway), "method": "get",
            "uri": .string("lime://wa.gw.msging.net/accounts/\(phone)"),
        ]
        let answer = try await command(body, what: "the WhatsApp account lookup")
        if answer["status"]?.stringValue == "failure" {
            return .failure(Failure(message: "WhatsApp has no account for this number (\(Self.reason(answer)))", permanent: true))
        }
        guard let account = answer["resource"]?["alternativeAccount"]?.stringValue ?? answer["resource"]?["identity"]?.stringValue,
            !account.isEmpty
        else {
            throw Failure(message: "BLiP answered the account lookup without resource.alternativeAccount; is base_url BLiP's?", permanent: false)
        }
        return .success(account)
    }

    /// `get /account`: the bot's own account, a command that proves the key works and changes nothing.
    func botAccountName() async throws -> String? {
        let answer = try await command(
            ["id": .string(UUID().uuidString.lowercased()), "method": "get", "uri": "/account"], what: "the bot's account")
        guard answer["status"]?.stringValue != "failure" else {
            throw Failure(message: "BLiP refused the command (\(Self.reason(answer)))", permanent: true)
        }
        return answer["resource"]?["fullName"]?.stringValue ?? answer["resource"]?["name"]?.stringValue
    }

    /// `POST /messages`: one WhatsApp template message with the id the plugin chose (and recorded) for it, so a
    /// repeated send after a crash is the same message to BLiP.
    func send(messageID: String, to account: String, template: Template) async throws {
        let body = Self.messageBody(messageID: messageID, to: account, template: template)
        var request = OutboundRequest(method: "POST", "/messages", headers: [("content-type", "application/json")], body: Data(body.encodedString().utf8))
        request.isIdempotent = false
        let response = try await call(request, what: "the message")
        guard response.isSuccess else { throw Self.failure(response, what: "the message") }
    }

    static func messageBody(messageID: String, to account: String, template: Template) -> JSONValue {
        [
            "id": .string(messageID), "to": .string(account), "type": "application/json",
            "content": [
                "type": "template",
                "template": [
                    "namespace": .string(template.namespace), "name": .string(template.name),
                    "language": ["code": .string(template.language), "policy": "deterministic"],
                    "components": [
                        ["type": "body", "parameters": .array(template.parameters.map { ["type": "text", "text": .string($0)] })]
                    ],
                ],
            ],
        ]
    }

    private func command(_ body: JSONValue, what: String) async throws -> JSONValue {
        var request = OutboundRequest(method: "POST", "/commands", headers: [("content-type", "application/json")], body: Data(body.encodedString().utf8))
        // A `get` command changes nothing, so it may be repeated after a 5xx or a lost connection.
        request.isIdempotent = true
        let response = try await call(request, what: what)
        guard response.isSuccess else { throw Self.failure(response, what: what) }
        guard let answer = try? response.json() else {
            throw Failure(message: "BLiP answered \(what) with a body that is not JSON; is base_url BLiP's?", permanent: false)
        }
        return answer
    }

    private func call(_ request: OutboundRequest, what: String) async throws -> OutboundResponse {
        do {
            return try await http.send(request)
        } catch let error as OutboundError {
            // A refused address or a broken URL is the credentials' base_url: retrying cannot help.
            throw Failure(message: "cannot reach BLiP for \(what): \(error)", permanent: error.isRefusedAsConfigured)
        }
    }

    /// `code description` of a command's `reason`.
    static func reason(_ answer: JSONValue) -> String {
        let code = answer["reason"]?["code"].map { $0.intValue.map(String.init) ?? $0.stringValue ?? "" } ?? ""
        let description = String((answer["reason"]?["description"]?.stringValue ?? "no reason given").prefix(200))
        return code.isEmpty ? description : "\(code) \(description)"
    }

    static func failure(_ response: OutboundResponse, what: String) -> Failure {
        let said = (try? response.json()).map { " (\(reason($0)))" } ?? ""
        let status = "HTTP \(response.status)"
        switch response.status {
        case 401, 403:
            return Failure(message: "BLiP refused the key (\(status)); check the credentials' key", permanent: true, keyRefused: true)
        case 429:
            return Failure(
                message: "BLiP is rate limiting this bot (\(status))", permanent: false,
                retryAfter: RetryAfter.seconds(from: response.header("retry-after"), now: Date()))
        case 500...:
            return Failure(message: "BLiP failed on \(what) (\(status))", permanent: false)
        default:
            return Failure(message: "BLiP rejected \(what) (\(status))\(said)", permanent: true)
        }
    }
}

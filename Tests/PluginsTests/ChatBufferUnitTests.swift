// The chat buffer's pure parts: reading a message, the webhook body, processed_at, settings, route access.
import Foundation
import IntegratorCore
import Testing

@testable import Plugins

@Suite("Chat buffer plugin, units")
struct ChatBufferUnitTests {
    @Test("a seed message keeps every field but ttl; a whole-number user is keyed by its digits")
    func parsesSeedMessages() throws {
        let body: JSONValue = [
            "id_agente": 1, "user": "joao.silva", "token": "token123", "message": "Olá!", "ttl": 30, "desconhecido": ["a": 1],
        ]
        let message = try ChatBufferMessage.parse(body, options: ChatBufferOptions())
        #expect(message.userKey == "joao.silva")
        #expect(message.ttl == 30 && message.maxWait == 300)
        #expect(message.fields == ["id_agente": 1, "user": "joao.silva", "token": "token123", "message": "Olá!", "desconhecido": ["a": 1]])
        #expect(message.savedText == "Mensagem salva para usuário joao.silva, expira em 30 segundos")

        let numeric = try ChatBufferMessage.parse(["user": 5511999999999, "message": 7, "max_wait": 60], options: ChatBufferOptions(defaultTTL: 9))
        #expect(numeric.userKey == "5511999999999" && numeric.ttl == 9 && numeric.maxWait == 60)
        #expect(numeric.fields["message"] == 7)
        #expect(numeric.savedText == "Mensagem salva para usuário 5511999999999, expira em 9 segundos")
        let nullTTL = try ChatBufferMessage.parse(["user": "u", "message": "m", "ttl": nil], options: ChatBufferOptions())
        #expect(nullTTL.ttl == 15, "null means the default, not 'never'")
    }

    @Test("every bad field is reported at once, by name, never with its value")
    func reportsEveryBadField() {
        let cases: [(JSONValue, [String])] = [
            ([:], ["user", "message"]),
            (["user": "u", "message": "m", "ttl": 0, "max_wait": 86_401], ["ttl", "max_wait"]),
            (["user": ["nested": true], "message": "m", "ttl": "secret-value"], ["user", "ttl"]),
            (["user": .string(String(repeating: "u", count: 513)), "message": "m"], ["user"]),
            (["user": "tab\there", "message": "m"], ["user"]),
            ("just text", ["body"]),
        ]
        for (body, fields) in cases {
            do {
                _ = try ChatBufferMessage.parse(body, options: ChatBufferOptions())
                Issue.record("accepted \(body)")
            } catch {
                #expect(error.issues.map(\.field) == fields, "\(body)")
                #expect(!error.description.contains("secret-value"))
            }
        }
    }

    @Test("the webhook body: later messages' fields win, earlier-only fields stay, messages in order, user_id = user")
    func webhookBody() {
        let at = Date(timeIntervalSince1970: 1_738_199_985.25)
        let body = ChatBufferWebhookBody.make(
            [
                ["user": "ana", "message": "oi", "foto": "a.jpg", "modo": "chat"],
                ["user": "ana", "message": "tudo bem?", "modo": "audio", "user_id": "spoofed", "messages": "spoofed"],
            ], processedAt: at)
        #expect(
            body == [
                "user": "ana", "user_id": "ana", "foto": "a.jpg", "modo": "audio", "messages": ["oi", "tudo bem?"],
                "processed_at": "2025-01-30T01:19:45.250000",
            ])
    }

    @Test("processed_at is UTC without an offset, with microseconds, like Python's isoformat in a UTC container")
    func processedTime() {
        #expect(ChatBufferWebhookBody.processedTime(Date(timeIntervalSince1970: 0)) == "1970-01-01T00:00:00.000000")
        #expect(ChatBufferWebhookBody.processedTime(Date(timeIntervalSince1970: 1_738_199_985.123456)) == "2025-01-30T01:19:45.123456")
        #expect(ChatBufferWebhookBody.processedTime(Date(timeIntervalSince1970: -0.5)) == "1969-12-31T23:59:59.500000")
    }

    @Test("settings: WEBHOOK_URL as in the seed, the namespaced name first; a bad URL or flag stops startup without echoing the URL")
    func optionsFromEnvironment() throws {
        #expect(try ChatBufferOptions.fromEnvironment([:]).webhookURL == nil)
        #expect(try ChatBufferOptions.fromEnvironment([:]).isPublic == false)
        let seed = try ChatBufferOptions.fromEnvironment(["WEBHOOK_URL": "https://hooks.example/process"])
        #expect(seed.webhookURL == "https://hooks.example/process")
        let both = try ChatBufferOptions.fromEnvironment([
            "WEBHOOK_URL": "https://old.example/", "INTEGRATOR_CHAT_BUFFER_WEBHOOK_URL": "http://new.example/hook",
            "INTEGRATOR_CHAT_BUFFER_PUBLIC": "TRUE",
        ])
        #expect(both.webhookURL == "http://new.example/hook" && both.isPublic)
        do {
            _ = try ChatBufferOptions.fromEnvironment(["WEBHOOK_URL": "ftp://user:hunter2@files.example/"])
            Issue.record("a non-http URL was accepted")
        } catch let error as ConfigurationError {
            #expect(error.variable == "WEBHOOK_URL" && !error.description.contains("hunter2"))
        }
        #expect(throws: ConfigurationError.self) { try ChatBufferOptions.fromEnvironment(["INTEGRATOR_CHAT_BUFFER_PUBLIC": "maybe"]) }
    }

    @Test("POST /api/message needs an operator unless the buffer is public; the settings always need an admin")
    func routeAccess() {
        func access(_ options: ChatBufferOptions) -> [String: RouteAccess] {
            Dictionary(uniqueKeysWithValues: ChatBufferRoutes.all(options: options).map { ("\($0.method) \($0.path)", $0.access) })
        }
        #expect(access(ChatBufferOptions())["POST /api/message"] == .role(.operator))
        #expect(access(ChatBufferOptions(isPublic: true))["POST /api/message"] == .open)
        #expect(access(ChatBufferOptions(isPublic: true))["PUT /api/v1/chat-buffer/config"] == .role(.admin))
        #expect(BuiltinPlugins.all.contains { $0.id == "chat-buffer" })
    }
}

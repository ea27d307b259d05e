// Credentials through the real HTTP API: masking, encryption at rest, merges, connection tests, bad input.
import Foundation
import IntegratorCore
import SQLKit
import Testing

@Suite("Credentials API")
struct CredentialsAPITests {
    static let secretValue = "tok-SUPERSECRET-0123456789"

    @Test("created credentials read back masked, and the secret is stored only encrypted")
    func createAndReadMasked() async throws {
        try await TestApp.run { app in
            let created = try await app.call(
                .post, "/api/v1/credentials",
                body: ["name": "github", "type": "http-bearer", "secret": ["token": .string(Self.secretValue)]])
            #expect(created.status == .created)
            #expect(created.json["secret"]?["token"] == .string("********"))
            #expect(!created.text.contains(Self.secretValue))
            let id = try #require(created.json["id"]?.stringValue)

            let read = try await app.call(.get, "/api/v1/credentials/\(id)")
            #expect(read.status == .ok)
            #expect(read.json["name"] == "github")
            #expect(read.json["type"] == "http-bearer")
            #expect(read.json["secret"] == ["token": "********"])
            #expect(!read.text.contains(Self.secretValue))

            let listed = try await app.call(.get, "/api/v1/credentials")
            #expect(listed.json["items"]?.arrayValue?.count == 1)
            #expect(!listed.text.contains(Self.secretValue))

            let stored = try await app.runtime.database.withSQL { sql in
                try await sql.raw("SELECT public_data, secret_data FROM credentials").all().map {
                    try $0.decode(column: "public_data", as: String.self) + $0.decode(column: "secret_data", as: String.self)
                }
            }
            #expect(stored.count == 1)
            #expect(!stored[0].contains(Self.secretValue))
            #expect(stored[0].contains("v1."))

            let decrypted = try await app.runtime.credentials.decrypted(id: id)
            #expect(decrypted.secret("token")?.reveal() == Self.secretValue)
            #expect(!"\(decrypted)".contains(Self.secretValue))
        }
    }

    @Test("PATCH changes public fields without resending secrets, and can replace a secret")
    func patchKeepsSecrets() async throws {
        try await TestApp.run { app in
            let created = try await app.call(
                .post, "/api/v1/credentials",
                body: ["name": "api", "type": "http-header", "public": ["header_name": "X-Key"], "secret": ["value": "first-value"]])
            let id = try #require(created.json["id"]?.stringValue)

            let renamed = try await app.call(.patch, "/api/v1/credentials/\(id)", body: ["public": ["header_name": "X-Api-Key"], "name": "api2"])
            #expect(renamed.status == .ok)
            #expect(renamed.json["public"]?["header_name"] == "X-Api-Key")
            #expect(renamed.json["name"] == "api2")
            #expect(try await app.runtime.credentials.decrypted(id: id).secret("value")?.reveal() == "first-value")

            let rotated = try await app.call(.patch, "/api/v1/credentials/\(id)", body: ["secret": ["value": "second-value"]])
            #expect(rotated.status == .ok)
            #expect(!rotated.text.contains("second-value"))
            #expect(try await app.runtime.credentials.decrypted(id: id).secret("value")?.reveal() == "second-value")

            let removeRequired = try await app.call(.patch, "/api/v1/credentials/\(id)", body: ["secret": ["value": nil]])
            #expect(removeRequired.status == .badRequest)
            #expect(removeRequired.errorFields == ["secret.value"])
            #expect(try await app.runtime.credentials.decrypted(id: id).secret("value")?.reveal() == "second-value")

            let changeType = try await app.call(.patch, "/api/v1/credentials/\(id)", body: ["type": "http-bearer"])
            #expect(changeType.status == .badRequest)
            #expect(changeType.errorFields == ["type"])
        }
    }

    @Test("bad credentials input is a 400 naming every bad field, and stores nothing")
    func badInput() async throws {
        try await TestApp.run { app in
            let unknownType = try await app.call(.post, "/api/v1/credentials", body: ["name": "x", "type": "nope", "secret": [:]])
            #expect(unknownType.status == .badRequest)
            #expect(unknownType.errorFields == ["type"])
            #expect(unknownType.text.contains("http-bearer"))

            let missingSecret = try await app.call(.post, "/api/v1/credentials", body: ["name": "x", "type": "http-bearer"])
            #expect(missingSecret.status == .badRequest)
            #expect(missingSecret.errorFields == ["secret.token"])

            let wrongTypes = try await app.call(
                .post, "/api/v1/credentials",
                body: ["name": 5, "type": "http-basic", "public": ["username": true], "secret": ["password": 42], "extra": 1])
            #expect(wrongTypes.status == .badRequest)
            #expect(Set(wrongTypes.errorFields) == ["name", "public.username", "secret.password", "extra"])
            #expect(wrongTypes.errorCode == "validation_failed")

            let crossField = try await app.call(
                .post, "/api/v1/credentials",
                body: ["name": "x", "type": "http-header", "public": ["header_name": "Bad Header"], "secret": ["value": "v"]])
            #expect(crossField.status == .badRequest)
            #expect(crossField.errorFields == ["public.header_name"])

            let malformed = try await app.client.json(.post, "/api/v1/credentials", rawBody: "{\"name\": ", token: app.adminToken)
            #expect(malformed.status == .badRequest)
            #expect(malformed.errorCode == "invalid_json")

            let notObject = try await app.call(.post, "/api/v1/credentials", body: ["a", "b"])
            #expect(notObject.status == .badRequest)

            let missing = try await app.call(.get, "/api/v1/credentials/\(Identifier.make())")
            #expect(missing.status == .notFound)
            #expect(missing.errorCode == "not_found")
            let garbageID = try await app.call(.get, "/api/v1/credentials/not-an-id")
            #expect(garbageID.status == .notFound)

            let listed = try await app.call(.get, "/api/v1/credentials")
            #expect(listed.json["items"] == [])
        }
    }

    @Test("a secret sent where it does not belong is not echoed in the error")
    func secretNotEchoed() async throws {
        try await TestApp.run { app in
            let response = try await app.call(
                .post, "/api/v1/credentials",
                body: ["name": "x", "type": "http-bearer", "secret": ["token": .string(Self.secretValue), "tokn": .string(Self.secretValue)]])
            #expect(response.status == .badRequest)
            #expect(response.errorFields == ["secret.tokn"])
            #expect(!response.text.contains(Self.secretValue))
        }
    }

    @Test("bodies over the limit are refused with 413")
    func oversizedBody() async throws {
        try await TestApp.run(maxBodySize: 4096) { app in
            let big = String(repeating: "a", count: 10_000)
            let response = try await app.call(.post, "/api/v1/credentials", body: ["name": .string(big), "type": "http-bearer"])
            #expect(response.status == .contentTooLarge)
            #expect(response.errorCode == "body_too_large")
        }
    }

    @Test("duplicate names conflict; credentials in use cannot be deleted")
    func conflicts() async throws {
        try await TestApp.run(extraPlugins: [.testing]) { app in
            let body: JSONValue = ["name": "shared", "type": "http-header", "public": ["header_name": "X-Key"], "secret": ["value": "v"]]
            let first = try await app.call(.post, "/api/v1/credentials", body: body)
            #expect(first.status == .created)
            let again = try await app.call(.post, "/api/v1/credentials", body: body)
            #expect(again.status == .conflict)
            let id = try #require(first.json["id"]?.stringValue)

            let integration = try await app.call(
                .post, "/api/v1/integrations",
                body: ["name": "uses-it", "provider": "header-only", "credentials": .string(id), "config": ["base_url": "https://example.com"]])
            #expect(integration.status == .created)

            let refused = try await app.call(.delete, "/api/v1/credentials/\(id)")
            #expect(refused.status == .conflict)
            #expect(refused.text.contains("uses-it"))
            #expect(try await app.call(.get, "/api/v1/credentials/\(id)").status == .ok)

            let integrationID = try #require(integration.json["id"]?.stringValue)
            #expect(try await app.call(.delete, "/api/v1/integrations/\(integrationID)").status == .noContent)
            #expect(try await app.call(.delete, "/api/v1/credentials/\(id)").status == .noContent)
            #expect(try await app.call(.get, "/api/v1/credentials/\(id)").status == .notFound)
        }
    }

    @Test("connection tests run the type's check; types without one say so")
    func connectionTest() async throws {
        try await TestApp.run(extraPlugins: [.testing]) { app in
            let good = try await app.call(.post, "/api/v1/credentials", body: ["name": "good", "type": "checked-key", "secret": ["api_key": "good-key"]])
            let bad = try await app.call(.post, "/api/v1/credentials", body: ["name": "bad", "type": "checked-key", "secret": ["api_key": "bad-key"]])
            let bearer = try await app.call(.post, "/api/v1/credentials", body: ["name": "b", "type": "http-bearer", "secret": ["token": "t"]])
            let goodResult = try await app.call(.post, "/api/v1/credentials/\(good.json["id"]!.stringValue!)/test")
            #expect(goodResult.status == .ok)
            #expect(goodResult.json["ok"] == true)
            let badResult = try await app.call(.post, "/api/v1/credentials/\(bad.json["id"]!.stringValue!)/test")
            #expect(badResult.json["ok"] == false)
            #expect(badResult.json["message"] == "the service rejected the API key")
            #expect(!badResult.text.contains("bad-key"))
            let unsupported = try await app.call(.post, "/api/v1/credentials/\(bearer.json["id"]!.stringValue!)/test")
            #expect(unsupported.status == .badRequest)
            #expect(unsupported.errorCode == "unsupported")
        }
    }
}
